/* internal.h -- what the files of CLoop share: the loop's layout, the
 * poller contract, and the misuse checks. Not installed. */
#ifndef CLOOP_INTERNAL_H
#define CLOOP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "cloop.h"
#include "coro.h"

/* ---- the poller contract ----------------------------------------------
 *
 * A backend (poll_epoll.c, poll_uring.c) defines one ops table.
 * The loop calls every op on its own thread, except wake.
 *
 *   init(loop)     sets up the backend's state in loop->poller; returns 0
 *                  or -errno. On failure it leaves nothing behind.
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
  int (*init)(cloop_loop *loop);
  void (*close)(cloop_loop *loop);
  int (*watch)(cloop_loop *loop, int fd, int old_mask, int new_mask);
  int (*poll)(cloop_loop *loop, int64_t timeout_ns);
  void (*wake)(cloop_loop *loop);
  /* Optional, for a backend with I/O operations of its own (io.c):
     op_start submits op (0 or -errno; on success the backend later calls
     cloop__op_complete(op, result) exactly once, unless op_cancel came
     first); op_cancel forgets an op in flight, whose completion, if it
     still arrives, must be dropped. When op_cancel returns, the kernel is
     done with the op and its buffer. If the op had already finished in
     the kernel, op_cancel may instead complete it with that result
     (cloop__op_complete), so that no data or accepted fd is lost; io.c
     then leaves it be. NULL: io.c's readiness path. */
  int (*op_start)(cloop_loop *loop, cloop_op *op);
  void (*op_cancel)(cloop_loop *loop, cloop_op *op);
} cloop__poller_ops;

extern const cloop__poller_ops cloop__epoll_ops;
extern const cloop__poller_ops cloop__uring_ops;

/* Called by a poller for each ready fd; mask is CLOOP_READABLE|WRITABLE
   (both on error or hang-up). Queues the watchers of those directions. */
void cloop__fd_ready(cloop_loop *loop, int fd, int mask);

/* Grows the fd table to hold fd (watch.c). Returns 0 or -ENOMEM. */
int cloop__fd_reserve(cloop_loop *loop, int fd);

/* A new fd from socket(2)/accept(2): drops table state left by an fd of
   the same number that was closed behind the loop's back (io.c). */
void cloop__fd_fresh(cloop_loop *loop, int fd);

/* Ends an I/O operation with result and queues its callback (io.c). */
void cloop__op_complete(cloop_op *op, int result);

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

/* ---- fixed-size objects (slab.c) ------------------------------------- */

typedef struct cloop__slab {
  void *base;
  size_t bytes;
} cloop__slab;

typedef struct cloop__slab_pool {
  size_t size;       /* object size, 16-byte multiple */
  void *free;        /* free list, linked through the objects' first word */
  cloop__slab *slabs;
  size_t nslabs, cap;
  size_t next_bytes; /* the next slab's size */
} cloop__slab_pool;

void cloop__slab_init(cloop__slab_pool *p, size_t size);
void *cloop__slab_alloc(cloop__slab_pool *p);
void cloop__slab_give(cloop__slab_pool *p, void *obj);
void cloop__slab_free(cloop__slab_pool *p);

/* The size of io.c's standing registrations, for the loop's interests. */
extern const size_t cloop__interest_size;

/* The size of net.c's per-call operation object, for the loop's net_ops. */
extern const size_t cloop__net_op_size;

/* ---- the loop --------------------------------------------------------- */

typedef struct cloop__fd_slot {
  cloop_watcher *reader, *writer;
  cloop_op *op_in, *op_out; /* I/O operations in flight per side (io.c) */
  struct cloop__interest *interest[2]; /* io.c's standing registrations:
                                          receiving side, sending side */
} cloop__fd_slot;

struct cloop_loop {
  cloop_handle ready;     /* the ready ring's sentinel */
  uint64_t now;           /* cached monotonic ns, valid if now_fresh */
  int now_fresh;          /* cleared after each poll, see cloop_now */
  cloop__heap timers;
  const void *owner;      /* the owning thread's marker, see CLOOP__CHECK */
  uint32_t alive;         /* active watchers + references */
  uint32_t nwatchers;     /* active fd watchers */
  int stopping;
  int running;
  void *data;             /* the embedder's, see cloop_loop_set_data */

  /* fd watchers, indexed by fd */
  cloop__fd_slot *fds;
  int nfds;

  /* thread-safe calls: a locked ring drained once per iteration */
  pthread_mutex_t ts_lock;
  cloop_handle ts_ring;
  atomic_int ts_pending;

  /* the coroutine level (task.c) */
  cloop_switch switch_mode;
  cloop__ctx main_ctx;          /* the loop's own stack, while a task runs */
  struct cloop_task *current;   /* the task running, or NULL */
  struct cloop_task *tasks;     /* every task not yet freed */
  size_t live_tasks;            /* tasks not finished */
  uint64_t tasks_spawned;       /* for default names */
  cloop__stack_pool stacks;
  cloop__slab_pool task_slab;   /* struct cloop_task + its inline save area */
  cloop__slab_pool interests;   /* io.c's (cloop__interest_size) */
  cloop__slab_pool net_ops;     /* net.c's operation objects (cloop__net_op_size) */
  cloop_stack_mode task_stack;  /* tasks' default: PRIVATE or SHARED */
  char *shared_lo;              /* the shared stack, from the pool */
  struct cloop_task *shared_owner; /* whose frames are on it now */
  cloop_unretrieved_fn unretrieved;
  void *unretrieved_arg;

  const cloop__poller_ops *ops;
  int poll_pending;       /* see the poller contract */
  union {
    struct { int epfd, wakefd; void *events; int nevents; } epoll;
    struct cloop__uring *uring; /* poll_uring.c's, keeping liburing.h there */
  } poller;
};

/* ---- misuse ----------------------------------------------------------- */

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

#endif
