/* loop.h -- what the files of the callback level share, and what the
 * coroutine level (coro/) builds on: the loop's layout, the poller
 * contract, the timer heap, the clock and the misuse checks. Not
 * installed. Nothing here knows of coroutines but the one hook below
 * ("the coroutine level's state"). */
#ifndef CLOOP_LOOP_H
#define CLOOP_LOOP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "cloop.h"
#include "loop/slab.h"

/* ---- the poller contract ----------------------------------------------
 *
 * A backend (poll_epoll.c, poll_uring.c) defines one poller ops table,
 * and may give io.c a second one for I/O operations (below).
 * The loop calls every op on its own thread, except wake.
 *
 *   init(loop)     sets up the backend's state in loop->poller, and
 *                  loop->io if it has I/O operations; returns 0 or -errno.
 *                  On failure it leaves nothing behind.
 *   close(loop)    releases that state.
 *   watch(loop, fd, old, new)
 *                  changes the interest on fd from the CLOOP_READABLE|
 *                  CLOOP_WRITABLE mask `old` to `new` (either may be 0).
 *                  Returns 0 or -errno (-EBADF, -EPERM, -ENOMEM). On
 *                  removal (new == 0) errors are ignored: the fd may be
 *                  closed already.
 *   poll(loop, timeout_ns)
 *                  waits at most timeout_ns (-1: without limit, 0: not at
 *                  all) and reports each ready fd with cloop__fd_ready().
 *                  A wake() makes it return early. Returns the number of
 *                  events reported or -errno; EINTR is 0.
 *   wake(loop)     callable from any thread: makes a poll in progress, or
 *                  the next one, return promptly.
 *
 * loop->poll_pending: a backend that queues work which only poll() sends
 * (io_uring's batched SQEs: a watch, an unwatch) sets it, and poll() clears
 * it. While it is set the loop does not skip the poll (it polls with a zero
 * timeout if work is ready), so queued submissions are never starved.
 */
typedef struct cloop__poller_ops {
  cloop_backend backend;
  const char *(*info)(cloop_loop *loop); /* cloop_loop_backend_info */
  int (*init)(cloop_loop *loop);
  void (*close)(cloop_loop *loop);
  int (*watch)(cloop_loop *loop, int fd, int old_mask, int new_mask);
  int (*poll)(cloop_loop *loop, int64_t timeout_ns);
  void (*wake)(cloop_loop *loop);
} cloop__poller_ops;

/* A backend with I/O operations of its own (io_uring) gives io.c a second
   table; init sets loop->io to it, or leaves it NULL (epoll, or io_uring
   on a kernel without a synchronous cancel), and io.c then runs each
   operation on the readiness path. Called on the loop's thread.

   start(loop, op)   submits op: 0 or -errno. On success the backend later
                     calls cloop__op_complete(op, result) exactly once,
                     unless cancel came first.
   cancel(loop, op)  forgets an op in flight, whose completion, if it still
                     arrives, must be dropped. When it returns, the kernel
                     is done with the op and its buffer. If the op had
                     already finished in the kernel, cancel may instead
                     complete it with that result (cloop__op_complete), so
                     that no data or accepted fd is lost; io.c then leaves
                     it be. */
typedef struct cloop__io_ops {
  int (*start)(cloop_loop *loop, cloop_op *op);
  /* Returns 0, or 1 if the backend keeps op, which then completes by
     itself later with its result (a zero-copy send whose bytes are sent
     but whose buffer the kernel still holds). */
  int (*cancel)(cloop_loop *loop, cloop_op *op);
  /* fd is being closed, or its number was handed out again: drop what the
     backend keeps for it between operations (after its ops have ended). */
  void (*forget_fd)(cloop_loop *loop, int fd);
  /* A receive that does not wait, from what the backend holds for fd;
     CLOOP__NOT_HELD when it holds nothing (then recv(2) may run). */
  ssize_t (*recv_now)(cloop_loop *loop, int fd, void *buf, size_t len, int flags);
  /* File operations (file.c), with start's and cancel's promises; NULL:
     they run on the work pool. */
  int (*file_start)(cloop_loop *loop, cloop_file_op *op);
  void (*file_cancel)(cloop_loop *loop, cloop_file_op *op);
} cloop__io_ops;

#define CLOOP__NOT_HELD (-((ssize_t)1 << 40)) /* below every -errno */

/* A receive that does not wait (io.c): the bytes the backend holds for fd
   (io_uring's stream queue) first, else recv(2) with MSG_DONTWAIT.
   Returns the count, 0 at end of stream, -EAGAIN, or -errno. Whatever
   reads a socket that has had recv operations reads it through this. */
ssize_t cloop__recv_now(cloop_loop *loop, int fd, void *buf, size_t len, int flags);

extern const cloop__poller_ops cloop__epoll_ops;
extern const cloop__poller_ops cloop__uring_ops;
extern const cloop__io_ops cloop__uring_io_ops;

/* Called by a poller for each ready fd; mask is CLOOP_READABLE|WRITABLE
   (both on error or hang-up). Queues the watchers of those directions. */
void cloop__fd_ready(cloop_loop *loop, int fd, int mask);

/* Grows the fd table to hold fd (watch.c). Returns 0 or -ENOMEM. */
int cloop__fd_reserve(cloop_loop *loop, int fd);

/* A new fd from socket(2)/accept(2): drops table state left by an fd of
   the same number that was closed behind the loop's back (io.c). */
void cloop__fd_fresh(cloop_loop *loop, int fd);

/* Starts connector c on one address sa, skipping the lookup (tcp.c; for
   unix.c). Returns 0 or -errno (then fn is not called). */
int cloop__connect_addr(cloop_loop *loop, cloop_connector *c,
                        const struct sockaddr *sa, socklen_t len,
                        cloop_connector_fn fn, void *data);

/* Ends an I/O operation with result and queues its callback (io.c). */
void cloop__op_complete(cloop_op *op, int result);
/* Ends a file operation with result and queues its callback (file.c). */
void cloop__file_complete(cloop_file_op *op, int result);
/* Fills info from a struct statx (file.c; both paths). */
void cloop__file_info_from_statx(cloop_file_info *info, const void *statx);
/* Points a recvmsg/sendmsg op's msghdr at its buffer and address (io.c). */
void cloop__op_msg_prepare(cloop_op *op);

/* ---- the timer heap (heap.c) ------------------------------------------ */

/* A heap entry keeps the sort key beside the timer pointer, so sifting
   compares keys without touching the timers (Go's runtime/time.go).
   seq breaks ties between equal deadlines in scheduling order. */
typedef struct cloop__heap_entry {
  uint64_t deadline;
  uint64_t seq;
  cloop_timer *timer;
} cloop__heap_entry;

typedef struct cloop__heap {
  cloop__heap_entry *e;
  uint32_t len, cap;
  uint64_t next_seq;
} cloop__heap;

int cloop__heap_push(cloop__heap *h, cloop_timer *t);
void cloop__heap_remove(cloop__heap *h, uint32_t i);

/* Runs the timers due at `now` that were scheduled before sequence number
   seq_limit, in (deadline, seq) order (timer.c). */
void cloop__run_due_timers(cloop_loop *loop, uint64_t now, uint64_t seq_limit);
void cloop__heap_free(cloop__heap *h);

/* The size of io.c's standing registrations, for the loop's interests. */
extern const size_t cloop__interest_size;

/* ---- the loop --------------------------------------------------------- */

typedef struct cloop__fd_slot {
  cloop_watcher *reader, *writer;
  cloop_op *op_in, *op_out; /* I/O operations in flight per side (io.c) */
  struct cloop__interest *interest[2]; /* io.c's standing registrations:
                                          receiving side, sending side */
} cloop__fd_slot;

struct cloop_loop {
  cloop_link ready;       /* the ready ring's sentinel (list.h) */
  uint64_t now;           /* cached monotonic ns, valid if now_fresh */
  int now_fresh;          /* cleared after each poll, see cloop_now */
  cloop__heap timers;
  const void *owner;      /* the owning thread's marker, see CLOOP__CHECK */
  uint32_t alive;         /* active watchers + references */
  uint32_t nwatchers;     /* active fd watchers */
  int stopping;
  int running;
  uint64_t batches;       /* batches begun, see cloop_batch_count */
  void *data;             /* the embedder's, see cloop_loop_set_data */

  /* fd watchers, indexed by fd */
  cloop__fd_slot *fds;
  int nfds;

  /* thread-safe calls: a locked ring drained once per iteration */
  pthread_mutex_t ts_lock;
  cloop_link ts_ring;
  atomic_int ts_pending;

  cloop__slab_pool interests;   /* io.c's (cloop__interest_size) */
  struct cloop_pool *pool;      /* its own work pool, or NULL: the default */
  int file_nowait;              /* file.c's: 0 not yet read, 1 on, 2 off */
  struct cloop__signals *signals; /* signal.c's, while signals are watched */
  cloop_link processes;         /* process.c's: children not yet reaped */
  struct cloop__coro *coro;     /* the coroutine level's state, see below */

  /* the clock: monotonic, or a manual one for tests (cloop_debug_manual_clock) */
  int manual_clock;
  uint64_t manual_now;

  const cloop__poller_ops *ops;
  const cloop__io_ops *io; /* the backend's I/O operations, or NULL */
  int poll_pending;       /* see the poller contract */
  union {
    struct { int epfd, wakefd; void *events; int nevents; } epoll;
    struct cloop__uring *uring; /* poll_uring.c's, keeping liburing.h there */
  } poller;
};

/* ---- misuse ----------------------------------------------------------- */

/* Returns code (a CLOOP_EBAD* error) after keeping the message for
   cloop_error_detail on this thread; code 0 clears it (error.c). */
int cloop__bad_setting(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prints "cloop: misuse: <what>" and aborts. */
_Noreturn void cloop__misuse(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* A marker whose address differs per thread; initial-exec keeps taking its
   address to one instruction, with no __tls_get_addr call. */
extern __thread char cloop__thread_marker
    __attribute__((tls_model("initial-exec")));

#define CLOOP__CHECK(loop, fn)                                              \
  do {                                                                      \
    if (__builtin_expect((loop)->owner != &cloop__thread_marker, 0))        \
      cloop__misuse("%s called on a loop from a thread that does not own "  \
                    "it (use cloop_call_threadsafe)", fn);                  \
  } while (0)

void cloop__drain_threadsafe(cloop_loop *loop);

/* One iteration (loop.c): 1 while work remains, 0 when nothing is left,
   or -errno. */
int cloop__iterate(cloop_loop *loop, int64_t timeout_ns);

/* Drops every queued handle, pending timer, watcher and reference, so the
   loop can be freed (loop.c; cloop_main's ending). */
void cloop__loop_discard(cloop_loop *loop);

/* Stops every signal watcher of the loop (signal.c; for discard). */
void cloop__signals_discard(cloop_loop *loop);

/* Starts the exit watcher of a child just spawned (process.c, for
   process_spawn.c). Returns 0 or -errno. */
int cloop__process_watch_exit(cloop_loop *loop, cloop_process *p);

/* Hands the children not yet reaped to the reaper thread (process.c; when
   the loop is discarded or freed). */
void cloop__processes_discard(cloop_loop *loop);

/* CLOCK_MONOTONIC in nanoseconds; about 20 ns here (vDSO). */
static inline uint64_t cloop__clock_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the coroutine level's state --------------------------------------

   The callback level knows nothing of coroutines but this hook: a loop
   carries the coroutine level's state (struct cloop__coro, coro/task.h:
   the switch, the stack pool, the task slab, the running task), which
   coro/runtime.c sets up when the loop is made and tears down first when
   it is freed. The one other crossing is the loop's batch resuming a task
   in place (loop.c, beside its measurement). */
struct cloop__coro;

/* Sets up loop->coro from opts (may be NULL). Returns 0, -ENOMEM, or an
   error naming a bad switch mode or stack size. */
int cloop__coro_open(cloop_loop *loop, const cloop_options *opts);

/* Cancels the live tasks, runs the loop until they have unwound, reports
   failures nobody retrieved and frees every task; with free_state, also
   the state itself (the loop is going away). */
void cloop__coro_close(cloop_loop *loop, int free_state);

#endif
