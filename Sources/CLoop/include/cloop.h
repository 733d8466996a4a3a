/* cloop.h -- CLoop, Python asyncio's event loop rebuilt in C.
 *
 * The one public header, in two parts as the sources are in two folders.
 * The callback level (loop/): a loop, handles on an intrusive ready ring,
 * timers on a 4-ary heap, fd watchers, a thread-safe call, I/O operations
 * that complete with a callback, name resolution and the TCP socket
 * policy. Every node (handle, timer, watcher, operation) lives in the
 * caller's memory, so scheduling allocates nothing. The coroutine level
 * (coro/), built on it: futures, tasks on stackful coroutines, sleep,
 * gather, deadlines, Event/Lock/Semaphore/Queue, and socket calls that park
 * only the calling task.
 *
 * Errors: functions return >= 0 on success and -errno on failure, as
 * liburing and libuv do. The library's own codes (CLOOP_E*) sit far below
 * the errno range; cloop_strerror() names both. Misuse -- a programmer
 * error such as scheduling a handle that is already queued or calling a
 * loop from another thread -- aborts with a message that names it.
 *
 * Threads: a loop belongs to the thread that created it. cloop_call_threadsafe
 * is the one function another thread may call on it (and cloop_promise_set_*,
 * which goes through it). A cloop_group runs N loops on N threads.
 */
#ifndef CLOOP_H
#define CLOOP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- version ----------------------------------------------------------- */

/* The version of this header; cloop_version() is the library's, which may
   differ when a program is linked against another build. */
#define CLOOP_VERSION_MAJOR 0
#define CLOOP_VERSION_MINOR 2
#define CLOOP_VERSION_PATCH 0
#define CLOOP_VERSION \
  (CLOOP_VERSION_MAJOR * 10000 + CLOOP_VERSION_MINOR * 100 + CLOOP_VERSION_PATCH)

/* The library's CLOOP_VERSION (e.g. 200 for 0.2.0). */
int cloop_version(void);
/* The same as text, "0.2.0". */
const char *cloop_version_string(void);

/* ---- errors ------------------------------------------------------------ */

#define CLOOP_ENOBACKEND (-20001) /* the backend asked for is not available */
#define CLOOP_ENOHOST (-20002)    /* a host name that resolves to no address */
#define CLOOP_ENODELIM (-20003)   /* max bytes read, and no delimiter in them */
#define CLOOP_EBADENV (-20004)    /* $CLOOP_BACKEND or $CLOOP_SWITCH not understood */
#define CLOOP_EBADOPTION (-20005) /* a cloop_options field out of range */

/* A static message for err (a -errno value or a CLOOP_E* code). */
const char *cloop_strerror(int err);

/* After cloop_loop_new (or cloop_main) failed with CLOOP_EBADENV or
   CLOOP_EBADOPTION on this thread: which setting, the value given and the
   values accepted, e.g. `CLOOP_BACKEND="URING": expected epoll, uring (or
   io_uring) or auto`. "" otherwise. Valid until the next cloop_loop_new
   on this thread. */
const char *cloop_error_detail(void);

/* ---- the loop ---------------------------------------------------------- */

typedef struct cloop_loop cloop_loop;

typedef enum cloop_backend {
  CLOOP_BACKEND_AUTO = 0, /* $CLOOP_BACKEND if set, else the best that works */
  CLOOP_BACKEND_EPOLL = 1,
  CLOOP_BACKEND_URING = 2,
} cloop_backend;

/* How coroutines switch (the coroutine level below). */
typedef enum cloop_switch {
  CLOOP_SWITCH_AUTO = 0,  /* $CLOOP_SWITCH (asm|fast|ucontext) if set, else asm */
  CLOOP_SWITCH_ASM = 1,   /* hand-written: callee-saved registers + FP control */
  CLOOP_SWITCH_FAST = 2,  /* asm without the FP control state; see below */
  CLOOP_SWITCH_UCONTEXT = 3, /* glibc swapcontext: portable, for tools */
} cloop_switch;

/* CLOOP_SWITCH_FAST skips saving MXCSR and the x87 control word (libaco's
   "shared FPU env"): every coroutine of the loop then shares one rounding
   mode and exception mask. Safe unless some code changes them (fesetround,
   fesetenv, _MM_SET_ROUNDING_MODE) and suspends before restoring them; then
   the change leaks into whatever runs next on the thread. */

/* Where a task's frames live (the coroutine level below).
 *
 * PRIVATE: its own guarded stack from the loop's pool. A switch is a
 * register swap (about 5 ns here); a parked task keeps the pages it touched
 * resident (4 KiB at least). Pointers into its stack stay valid while it is
 * parked. The choice for tasks that run long, go deep or share pointers to
 * their locals.
 *
 * SHARED: it runs on one loop-wide stack; when another shared task needs
 * that stack, the used part (a few hundred bytes for a shallow task) is
 * copied out to the heap, and copied back before the task resumes (libaco's
 * copy-stack). A resume then costs a copy of both tasks' used bytes, but a
 * parked task costs only those bytes: the choice for very many small
 * tasks. Hazard: while it is parked its stack holds another task's frames,
 * so the address of one of its locals must not be used by anything else
 * while it waits -- not by another task, and not by the loop (a future it
 * awaits, a handle or timer it schedules). Put such things in the heap or
 * in memory of the task's spawner. cloop_await aborts on a future in the
 * shared stack. */
typedef enum cloop_stack_mode {
  CLOOP_STACK_DEFAULT_MODE = 0, /* the loop's default (PRIVATE unless set) */
  CLOOP_STACK_PRIVATE = 1,
  CLOOP_STACK_SHARED = 2,
} cloop_stack_mode;

typedef struct cloop_options {
  cloop_backend backend;
  cloop_switch switch_mode;
  size_t stack_size; /* usable bytes per task stack; 0: CLOOP_STACK_DEFAULT */
  cloop_stack_mode task_stack; /* tasks' default */
} cloop_options;

/* 256 KiB: Swift code (print, JSONEncoder) peaked at 23.5 KiB here and C
   code with a few KiB-sized buffers needs more; ten times the Swift peak
   leaves room. Only the touched pages cost memory. Below each stack lies a
   CLOOP_STACK_GUARD region that faults on overflow. */
#define CLOOP_STACK_DEFAULT ((size_t)256 << 10)
#define CLOOP_STACK_GUARD ((size_t)64 << 10)

/* Fills opts with the defaults (auto backend). */
void cloop_options_init(cloop_options *opts);

/* Creates a loop owned by the calling thread; opts may be NULL.
   Returns 0, -ENOMEM, CLOOP_EBADENV (a $CLOOP_BACKEND or $CLOOP_SWITCH it
   does not understand), CLOOP_EBADOPTION (an opts field out of range, a
   stack_size under 16 KiB), CLOOP_ENOBACKEND, or the errno of a failed
   epoll_create1/eventfd/io_uring_setup. */
int cloop_loop_new(cloop_loop **out, const cloop_options *opts);

/* Closes the loop: first cancels the tasks still alive and runs the loop
   until they have unwound, reports failed tasks whose error nobody
   retrieved, and frees all tasks (task pointers are then invalid). Then it
   frees the loop and returns 0 -- or returns -EBUSY and frees nothing else
   while handles are queued, timers pending, watchers active or references
   held. */
int cloop_loop_free(cloop_loop *loop);

/* Runs iterations until cloop_stop() or until nothing is left to wait for
   (no queued handle, pending timer, active watcher or reference).
   Returns 1 when stopped, 0 when nothing was left, or -errno. */
int cloop_run(cloop_loop *loop);

/* Runs one iteration, waiting at most timeout_ns for I/O and timers
   (-1: as long as needed, 0: not at all). Returns 1 while work remains,
   0 when nothing is left, or -errno. */
int cloop_run_once(cloop_loop *loop, int64_t timeout_ns);

/* Makes cloop_run return after the current iteration's batch. */
void cloop_stop(cloop_loop *loop);

/* How many batches the loop has begun running (step 4 of an iteration).
   A handle queued while the count is c runs in batch c + 1: a queue of its
   own behind one handle (as the Swift layer keeps its jobs) tells by it
   whether that handle's batch has begun, and so whether an entry queued
   now may still run with it or must wait for the next batch. */
uint64_t cloop_batch_count(const cloop_loop *loop);

/* The loop's cached monotonic time in nanoseconds; timers count from it.
   It is read from the clock at most once per iteration, after the poll,
   when first needed (an iteration that needs no time reads no clock). */
uint64_t cloop_now(cloop_loop *loop);

/* Refreshes the cached time from CLOCK_MONOTONIC. */
void cloop_update_time(cloop_loop *loop);

/* The backend the loop runs: CLOOP_BACKEND_EPOLL or CLOOP_BACKEND_URING. */
cloop_backend cloop_loop_backend(const cloop_loop *loop);

/* "epoll" or "io_uring". */
const char *cloop_backend_name(cloop_backend backend);

/* What the loop's backend runs, for logs and bug reports: "epoll", or
   "io_uring (" the ring's set-up tier -- SINGLE_ISSUER|DEFER_TASKRUN (Linux
   6.1), SINGLE_ISSUER|COOP_TASKRUN (6.0) or COOP_TASKRUN (5.19) --, whether
   the ring fd is registered, whether I/O operations are io_uring's own or
   run on readiness, and whether socket receives are multishot into
   provided buffers ")". The text stays valid until the next call on this
   loop. CLOOP_URING_TIER=2 or 3 and CLOOP_URING_MULTISHOT=0 choose lower
   tiers (for tests). Loop thread only. */
const char *cloop_loop_backend_info(cloop_loop *loop);

/* The loop whose cloop_run or cloop_run_once is running on this thread
   (the innermost, if one loop's callback runs another), or NULL. */
cloop_loop *cloop_running_loop(void);

/* 1 if the calling thread owns loop (the one that created it), else 0.
   Any thread may ask. */
int cloop_loop_is_owner(const cloop_loop *loop);

/* One pointer for the embedder (the Swift layer keeps its EventLoop
   there); the loop never reads it. NULL until set. */
void cloop_loop_set_data(cloop_loop *loop, void *data);
void *cloop_loop_data(const cloop_loop *loop);

/* A reference keeps cloop_run from returning for lack of work, e.g. while
   another thread will still make thread-safe calls. */
void cloop_ref(cloop_loop *loop);
void cloop_unref(cloop_loop *loop);

/* ---- handles: asyncio's Handle, call_soon ------------------------------ */

typedef void (*cloop_fn)(void *arg);

/* The link of the library's one intrusive list (circular, with a
   sentinel, as libuv's queue.h): the ready ring, a future's waiters, a
   primitive's waiting list. The library's; next == NULL while unlinked. */
typedef struct cloop_link {
  struct cloop_link *next, *prev;
} cloop_link;

/* A callback and its argument, linked into the ready ring while queued
   (link.next != NULL exactly then). */
typedef struct cloop_handle {
  cloop_link link;
  cloop_fn fn;
  void *arg;
} cloop_handle;

#define CLOOP_HANDLE_INIT(fn, arg) {{NULL, NULL}, (fn), (arg)}

/* Sets the callback of an idle handle. (Inline: it sits on hot paths.) */
static inline void cloop_handle_init(cloop_handle *h, cloop_fn fn, void *arg) {
  h->link.next = h->link.prev = NULL;
  h->fn = fn;
  h->arg = arg;
}

/* Queues h to run in the next batch (asyncio's call_soon). O(1), no
   allocation. Queueing a handle that is already queued aborts. */
void cloop_call_soon(cloop_loop *loop, cloop_handle *h);

/* Takes h off the ready ring. Returns 1 if it was queued, else 0. */
int cloop_handle_cancel(cloop_loop *loop, cloop_handle *h);

/* 1 while h is queued, else 0. */
static inline int cloop_handle_queued(const cloop_handle *h) {
  return h->link.next != NULL;
}

/* Queues h from any thread and wakes the loop (asyncio's
   call_soon_threadsafe). h must stay untouched until its callback starts;
   queueing it again before then aborts. */
void cloop_call_threadsafe(cloop_loop *loop, cloop_handle *h);

/* ---- timers: asyncio's TimerHandle, call_later / call_at -------------- */

/* A timer is a handle with a deadline. While pending it sits in the loop's
   4-ary heap at `index`. The iteration that finds it due runs it after
   the handles already queued, in deadline order, ties in scheduling order
   (asyncio's TimerHandle moved to the ready queue). */
typedef struct cloop_timer {
  cloop_handle handle;
  cloop_loop *loop; /* the loop it was last scheduled on */
  uint64_t deadline; /* monotonic ns */
  uint32_t index;    /* heap slot, or CLOOP_TIMER_IDLE */
} cloop_timer;

#define CLOOP_TIMER_IDLE UINT32_MAX

/* Prepares an idle timer; required before its first use. */
void cloop_timer_init(cloop_timer *t, cloop_fn fn, void *arg);

/* Schedules t to fire delay_ns after cloop_now(loop); a negative delay
   acts as zero and a huge one saturates. O(log n). Returns 0 or -ENOMEM
   (heap growth). Scheduling a timer that is pending aborts. */
int cloop_call_later(cloop_loop *loop, cloop_timer *t, int64_t delay_ns);

/* Schedules t to fire at the monotonic time when_ns (a past time fires in
   the next iteration). Returns 0 or -ENOMEM. */
int cloop_call_at(cloop_loop *loop, cloop_timer *t, uint64_t when_ns);

/* Cancels t: out of the heap at once, O(log n); a due timer that has not
   run yet is cancelled too. Returns 1 if it was pending, else 0.
   Cancelling a timer of another loop aborts. */
int cloop_timer_cancel(cloop_loop *loop, cloop_timer *t);

/* 1 while t is pending (in the heap, or set aside for the next
   iteration), else 0. */
static inline int cloop_timer_active(const cloop_timer *t) {
  return t->index != CLOOP_TIMER_IDLE || t->handle.link.next != NULL;
}

/* Number of timers in the loop's heap. */
size_t cloop_timer_count(const cloop_loop *loop);

/* ---- fd watchers: asyncio's add_reader / add_writer ------------------- */

enum { CLOOP_READABLE = 1, CLOOP_WRITABLE = 2 };

/* Watches one direction of one fd. While the fd is ready (level-triggered)
   the watcher's handle is queued once per iteration. An error or hang-up
   on the fd wakes both directions, so the callback's syscall sees it. */
typedef struct cloop_watcher {
  cloop_handle handle;
  cloop_loop *loop; /* NULL while idle: zeroed memory is an idle watcher */
  int fd;
  int dir; /* CLOOP_READABLE or CLOOP_WRITABLE */
} cloop_watcher;

/* Starts watching fd in one direction, calling fn(arg) when it is ready.
   Returns 0, -EEXIST (fd already watched in that direction), -EBADF,
   -EPERM (fd cannot be polled, e.g. a regular file), -EINVAL, -ENOMEM.
   Starting a watcher that is active aborts. */
int cloop_watch(cloop_loop *loop, cloop_watcher *w, int fd, int dir,
                cloop_fn fn, void *arg);

/* Stops w, also if its handle is queued; safe inside its own callback and
   after the fd was closed. Returns 1 if it was active, else 0. */
int cloop_unwatch(cloop_loop *loop, cloop_watcher *w);

/* Prepares an idle watcher (zeroing it does the same). */
void cloop_watcher_init(cloop_watcher *w);

/* ---- signals: asyncio's add_signal_handler ---------------------------- */

/* Watches one signal (SIGTERM, SIGINT, SIGHUP, SIGUSR1, ...) through the
   loop's signalfd: when it arrives, the watcher's handle is queued once and
   its callback runs from the ready ring, in a batch like any event, never
   inside a signal handler. Every watcher of the signal in the process, on
   any loop, sees every arrival; arrivals while the callback has not run yet
   coalesce, and `count` says how many there were. While watched, the
   signal is blocked in the watching loops' threads (their masks restored
   when their last watcher of it stops), and a process-wide handler moves
   one that reaches another thread to a watching loop's (the previous
   action restored when the last watcher in the process stops). An active
   watcher keeps the loop alive (like an fd watcher). Zero it (or
   cloop_signal_init) before its first use; it must not move while active. */
typedef struct cloop_signal {
  cloop_handle handle;  /* the callback, queued when the signal arrives */
  cloop_loop *loop;     /* NULL while idle */
  int signo;
  unsigned count;       /* arrivals not yet taken (cloop_signal_take) */
  cloop_link node;      /* the library's */
} cloop_signal;

void cloop_signal_init(cloop_signal *s);
/* Starts watching signo, calling fn(arg) when it arrives (fn may be NULL:
   the watcher only counts, for cloop_signal_wait). Returns 0, -EINVAL
   (SIGKILL, SIGSTOP, or a fault signal: SIGSEGV, SIGBUS, SIGILL, SIGFPE;
   or no such signal), -EMFILE (64 loops watch signo already), -ENOMEM, or
   the errno of signalfd. Starting an active watcher aborts. */
int cloop_signal_start(cloop_loop *loop, cloop_signal *s, int signo,
                       cloop_fn fn, void *arg);
/* Stops s (also inside its callback). Returns 1 if it was active, else 0.
   A signal still pending when the last watcher of it on a thread stops
   meets the signal's previous action then. */
int cloop_signal_stop(cloop_signal *s);
/* Returns the arrivals counted since the last take, and clears them. */
unsigned cloop_signal_take(cloop_signal *s);

/* ---- child processes: asyncio's create_subprocess_exec --------------

   A child started with its arguments, environment, working folder and
   standard streams; its exit is learnt through a pidfd, on both backends.
   A piped stream is a socket (one end of a socketpair, as in libuv), so the
   I/O operations and task calls read and write it like a connection; the
   program sees an ordinary fd. Every child is reaped: when it exits, or --
   after its owner lets go or its loop closes -- by the library. */

enum {
  CLOOP_STDIO_INHERIT = -1, /* the child shares ours */
  CLOOP_STDIO_PIPE = -2,    /* a stream between us: cloop_process.stdio[i] */
  CLOOP_STDIO_NULL = -3,    /* /dev/null */
  /* an fd >= 0: given to the child as it is */
};

typedef struct cloop_process_options {
  const char *file;   /* a path, or a name looked up in $PATH */
  char *const *argv;  /* NULL-terminated; argv[0] is the program's name */
  char *const *envp;  /* NULL-terminated; NULL: this process's environment */
  const char *cwd;    /* NULL: this process's */
  int stdio[3];       /* for stdin, stdout, stderr: CLOOP_STDIO_* or an fd */
} cloop_process_options;

typedef struct cloop_process cloop_process;
typedef void (*cloop_process_fn)(cloop_process *p);

struct cloop_process {
  int pid;
  int stdio[3];       /* our end of each piped stream (non-blocking), or -1 */
  int exited;         /* 1 once reaped; then: */
  int exit_code;      /* 0-255 if it exited, -1 if a signal ended it */
  int term_signal;    /* the signal that ended it, or 0 */
  void *data;         /* the caller's */
  /* the library's: */
  cloop_loop *loop;
  int pidfd;
  cloop_watcher watcher;
  cloop_process_fn on_exit;
  cloop_link node;
  uint8_t watching, released;
};

/* Starts the program (vfork and exec; a failed exec is reported through
   a close-on-exec pipe as its errno: -ENOENT, -EACCES, -ENOEXEC, never as
   a child that exits 127).
   The child gets a fresh signal mask and default handlers. Returns 0, or
   -EINVAL, -ENOMEM, -EMFILE, or the exec's error; then no child runs. */
int cloop_process_spawn(cloop_loop *loop, cloop_process *p,
                        const cloop_process_options *opts);
/* Calls on_exit(p) from the ready ring once the child has exited and been
   reaped (exit_code / term_signal set); meanwhile the loop stays alive.
   Returns 0, -ECHILD if it was reaped already, -EINVAL for a process not
   running here. Watching twice aborts. */
int cloop_process_watch(cloop_process *p, cloop_process_fn on_exit, void *data);
/* Stops waiting (the child is still reaped when it exits). Returns 1 if
   it was watched, else 0. */
int cloop_process_unwatch(cloop_process *p);
/* Sends signo to the child (pidfd_send_signal: never to a recycled pid).
   Returns 0, -ESRCH once it was reaped, -errno. */
int cloop_process_kill(cloop_process *p, int signo);
/* Lets go of p: its streams are closed and p's memory is the caller's
   again; a child still running is reaped by the loop when it exits (which
   does not keep the loop alive), or by a reaper thread if the loop closes
   first. Returns 1 if it was still running, else 0. */
int cloop_process_release(cloop_process *p);

/* ---- I/O operations: asyncio's sock_* on the callback level ----------- */

/* One accept, connect, recv or send (or a datagram's recvmsg or sendmsg)
   on a non-blocking socket, in the caller's memory. It completes exactly once: fn(op) runs from the ready
   ring with op->result >= 0 (bytes moved, 0 meaning EOF for recv; the new
   fd for accept, itself non-blocking and close-on-exec; 0 for connect) or
   -errno: -ECANCELED after cloop_op_cancel, -EBADF when cloop_close_fd
   closed its fd, -ECONNRESET / -EPIPE from a reset peer (a send never
   raises SIGPIPE). On epoll an operation tries its syscall and, on EAGAIN,
   waits for readiness and tries again; on io_uring it is submitted and
   completes with its completion. At most one operation per side of an fd
   at a time: the receiving side (accept, recv, recvmsg) and the sending
   side (connect, send, sendmsg). Zero an operation's memory before its first use; after
   its callback has run it may be started again. Close an fd that has had
   operations with cloop_close_fd (cloop_sock_close in a task), not
   close(2): the loop keeps its registration between operations. */
enum { CLOOP_OP_ACCEPT = 1, CLOOP_OP_CONNECT, CLOOP_OP_RECV, CLOOP_OP_SEND,
       CLOOP_OP_RECVMSG, CLOOP_OP_SENDMSG };

typedef struct cloop_op cloop_op;
typedef void (*cloop_op_fn)(cloop_op *op);

struct cloop_op {
  cloop_handle handle;     /* the completion, queued on the ready ring */
  cloop_loop *loop;
  cloop_op_fn fn;
  void *data;              /* the caller's */
  int kind;
  int fd;
  int flags;               /* recv/send: MSG_* flags */
  int result;
  void *buf;               /* recv/send */
  size_t len;
  struct sockaddr_storage addr; /* connect, sendmsg: where to; accept,
                                   recvmsg: who sent it */
  socklen_t addrlen;       /* 0 for a sendmsg on a connected socket */
  int msg_flags;           /* recvmsg: the kernel's (MSG_TRUNC: cut short) */
  uint8_t state;           /* idle, in flight, complete */
  uint8_t connecting;      /* epoll connect: waiting for writability */
  uint64_t tag;            /* io_uring: the submission's user_data */
  /* recvmsg/sendmsg: the kernel's view of buf and addr, which io_uring
     reads (and writes back) until the completion: 72 bytes. */
  struct msghdr msg;
  struct iovec iov;
};

/* Each returns 0 once the operation is under way, or -EBUSY (an operation
   of the same side is in flight on fd), -EBADF, -EINVAL, -ENOMEM; then fn
   is not called. */
int cloop_op_recv(cloop_loop *loop, cloop_op *op, int fd, void *buf,
                  size_t len, int flags, cloop_op_fn fn, void *data);
int cloop_op_send(cloop_loop *loop, cloop_op *op, int fd, const void *buf,
                  size_t len, int flags, cloop_op_fn fn, void *data);
int cloop_op_accept(cloop_loop *loop, cloop_op *op, int fd, cloop_op_fn fn,
                    void *data);
/* One datagram (recvmsg(2)): op->result is the bytes kept (at most len),
   op->addr/addrlen the sender, and op->msg_flags has MSG_TRUNC when the
   datagram was longer than len -- its tail is gone, so never ignore it. */
int cloop_op_recvmsg(cloop_loop *loop, cloop_op *op, int fd, void *buf,
                     size_t len, int flags, cloop_op_fn fn, void *data);
/* One datagram of len bytes (sendmsg(2)) to addr, or to the connected
   peer when addr is NULL; op->result is len. -EINVAL: addrlen too big. */
int cloop_op_sendmsg(cloop_loop *loop, cloop_op *op, int fd, const void *buf,
                     size_t len, const struct sockaddr *addr,
                     socklen_t addrlen, int flags, cloop_op_fn fn, void *data);
int cloop_op_connect(cloop_loop *loop, cloop_op *op, int fd,
                     const struct sockaddr *addr, socklen_t addrlen,
                     cloop_op_fn fn, void *data);

/* Ends an operation in flight early: it completes with -ECANCELED (its
   callback still runs, once), or with its result if it had finished
   first. A zero-copy send on io_uring ($CLOOP_URING_SEND_ZC) that has sent
   keeps its buffer until the kernel lets go of it: its callback, with the
   bytes sent, comes then (cloop_close_fd likewise). Returns 1 if it was
   in flight, else 0. */
int cloop_op_cancel(cloop_loop *loop, cloop_op *op);

/* Completes the fd's operations in flight with -EBADF, stops its watchers,
   then close(2)s it. Returns 0 or -errno from close. */
int cloop_close_fd(cloop_loop *loop, int fd);

/* ---- work off the loop: asyncio's run_in_executor, libuv's uv_queue_work */

/* A bounded pool of threads for blocking calls. One process-wide pool
   (cloop_pool_default: $CLOOP_POOL_THREADS threads, else 4, started as
   work comes) serves every loop that was not given its own. */
typedef struct cloop_pool cloop_pool;
typedef struct cloop_work cloop_work;
typedef void (*cloop_work_fn)(cloop_work *w);

/* One request, in the caller's memory (zero it before its first use). */
struct cloop_work {
  cloop_handle handle;   /* its completion, back on the loop */
  cloop_link node;       /* in the pool's queue */
  cloop_loop *loop;
  cloop_pool *pool;
  cloop_work_fn work;    /* runs on a pool thread */
  cloop_work_fn done;    /* runs on the loop's thread, once */
  cloop_work_fn drop;    /* see cloop_work_abandon */
  void *data;            /* the caller's */
  int result;            /* in done: 0 (work ran) or -ECANCELED (it never did) */
  int state;             /* the library's */
};

/* A pool of at most threads threads (0: 4), started as work comes.
   Returns 0, -EINVAL (more than 1024), -ENOMEM. */
int cloop_pool_new(cloop_pool **out, int threads);
/* Stops and joins the pool's threads; no work may still be queued (it
   aborts if some is) or running. */
void cloop_pool_free(cloop_pool *p);
/* The process-wide pool (made on first use), or NULL without memory. */
cloop_pool *cloop_pool_default(void);
/* The most threads p may run. */
int cloop_pool_size(const cloop_pool *p);
/* Gives loop its own pool (NULL: the process-wide one again). */
void cloop_loop_set_pool(cloop_loop *loop, cloop_pool *p);

/* Runs work(w) on a thread of the loop's pool, then done(w) on the loop's
   thread (w->result 0). The loop stays alive until done has run. Returns
   0, or -EINVAL, -ENOMEM, -EAGAIN (no thread could start); then neither
   runs. Requests start in the order queued. */
int cloop_queue_work(cloop_loop *loop, cloop_work *w, cloop_work_fn work,
                     cloop_work_fn done, void *data);
/* Takes back a request no thread has started: work never runs and done
   runs with -ECANCELED (from the ready ring); returns 1. A request that is
   running (or done) cannot be cancelled: returns 0, and done comes as
   usual. */
int cloop_work_cancel(cloop_work *w);
/* Forgets a request, whatever its state: done will not run and the loop
   no longer waits for it. drop(w) runs once when nobody else holds w --
   at once for a request not started, on the pool thread when a running
   work returns (so drop may only free memory: it must not touch the
   loop, which may be gone), or on the loop for one that had finished.
   Returns 1, or 0 if w was idle. For a caller that gives up waiting for a
   blocking call (a task cancelled while it waits). */
int cloop_work_abandon(cloop_work *w, cloop_work_fn drop);

/* ---- files: libuv's uv_fs_*, io_uring's file requests ----------------- */

/* One file operation in the caller's memory (zero it before its first
   use), completing with a callback like a cloop_op. On io_uring each is
   the kernel's own request (OPENAT, READ, WRITE, FSYNC, STATX, CLOSE); on
   epoll, or io_uring on a kernel without a synchronous cancel, it runs on
   the loop's work pool (regular files are always "ready" to epoll), where
   a read goes into the request's own buffer and is copied into buf on the
   loop's thread, and a write is copied out of buf when it starts: the
   pool path costs a copy, and buf is never touched once the operation has
   ended or been cancelled. There a read of at most 1 MiB is first tried
   on the loop's thread with preadv2(RWF_NOWAIT), which never waits for
   the disk: what the page cache holds is read into buf at once (fn still
   comes from the ready ring), the rest goes to the pool
   ($CLOOP_FILE_NOWAIT=0: all of it). Any number may be in flight on one
   fd. */
typedef struct cloop_file_op cloop_file_op;
typedef void (*cloop_file_fn)(cloop_file_op *op);

/* What a stat returns (statx's basic fields). */
typedef struct cloop_file_info {
  uint64_t size;     /* bytes */
  uint64_t blocks;   /* 512-byte blocks allocated: fewer than size says for a
                        file with holes */
  uint32_t mode;     /* st_mode: the type (S_ISREG, S_ISDIR) and permissions */
  uint32_t nlink;
  int64_t mtime_ns;  /* last modification, ns since the Unix epoch */
} cloop_file_info;

enum {
  CLOOP_FILE_OPEN = 1, CLOOP_FILE_CLOSE, CLOOP_FILE_READ, CLOOP_FILE_WRITE,
  CLOOP_FILE_FSYNC, CLOOP_FILE_STAT
};

struct cloop_file_op {
  cloop_handle handle;  /* the completion, queued on the ready ring */
  cloop_loop *loop;
  cloop_file_fn fn;
  void *data;           /* the caller's */
  int kind;             /* CLOOP_FILE_* */
  int fd;
  int flags;            /* open: O_* (O_CLOEXEC is added); fsync: 1 for data only */
  unsigned mode;        /* open: the permissions of a file it creates */
  int result;           /* in fn: bytes, the new fd, or 0; or -errno */
  uint8_t state;        /* the library's: idle, in flight, complete */
  const char *path;     /* open, stat by path: read until fn runs */
  void *buf;            /* read, write */
  size_t len;
  uint64_t offset;      /* read, write: the file position (below 2^63) */
  cloop_file_info info; /* stat: the answer */
  uint64_t tag;         /* io_uring: the submission's user_data */
  void *job;            /* the pool path's request */
  unsigned char kbuf[256] __attribute__((aligned(8))); /* io_uring: the
                                       kernel's struct statx */
};

/* Each returns 0 once the operation is under way (fn then runs exactly
   once, on the loop's thread, from the ready ring), or -EINVAL (an offset
   at or past 2^63, a NULL path), -ENOMEM, -EAGAIN (no pool thread could
   start); then fn is not called. Starting an op in flight aborts. The
   result comes in op->result: open, the new fd (non-blocking is not set:
   files ignore it) or -ENOENT, -EACCES, -EISDIR, -EEXIST, -EMFILE, ...;
   read, the bytes read (fewer than len only at end of file; 0 there);
   write, the bytes written (fewer only on -ENOSPC's way); close, fsync,
   stat, 0. */
int cloop_file_op_open(cloop_loop *loop, cloop_file_op *op, const char *path,
                       int flags, unsigned mode, cloop_file_fn fn, void *data);
int cloop_file_op_close(cloop_loop *loop, cloop_file_op *op, int fd,
                        cloop_file_fn fn, void *data);
int cloop_file_op_read(cloop_loop *loop, cloop_file_op *op, int fd, void *buf,
                       size_t len, uint64_t offset, cloop_file_fn fn,
                       void *data);
int cloop_file_op_write(cloop_loop *loop, cloop_file_op *op, int fd,
                        const void *buf, size_t len, uint64_t offset,
                        cloop_file_fn fn, void *data);
/* datasync 1: fdatasync's promise (the data and the size, not the times). */
int cloop_file_op_fsync(cloop_loop *loop, cloop_file_op *op, int fd,
                        int datasync, cloop_file_fn fn, void *data);
/* Of the open file fd, or (fd < 0) of path, following symbolic links. */
int cloop_file_op_stat(cloop_loop *loop, cloop_file_op *op, int fd,
                       const char *path, cloop_file_fn fn, void *data);
/* Ends an op in flight: fn runs with -ECANCELED from the ready ring, and
   returns 1. On io_uring the cancel is synchronous (the kernel is done
   with buf when it returns); a request that had finished first keeps its
   result instead (fn gets the bytes or the new fd) and 0 is returned. On
   the pool an op not started never runs; a running one finishes on its
   thread and its result is dropped there (an fd it opened is closed). A
   cancelled write may have reached the file. Returns 0 for an idle op. */
int cloop_file_op_cancel(cloop_loop *loop, cloop_file_op *op);

/* ---- name resolution: libuv's uv_getaddrinfo --------------------------- */

struct addrinfo;
typedef struct cloop_resolve cloop_resolve;
typedef void (*cloop_resolve_fn)(cloop_resolve *req);

/* A name lookup in the caller's memory (zero it before its first use). It
   completes once: fn(req) runs from the ready ring with req->result 0 and
   req->addrs the addresses (getaddrinfo's order; free them with
   cloop_resolve_free), or req->result CLOOP_ENOHOST (no such host),
   -EAGAIN (the resolver failed for now), -ECANCELED, -ENOMEM or -errno. */
struct cloop_resolve {
  cloop_handle handle;     /* the completion, queued on the ready ring */
  cloop_loop *loop;
  cloop_resolve_fn fn;
  void *data;              /* the caller's */
  int result;
  struct addrinfo *addrs;
  struct cloop__lookup *lookup; /* the library's: the lookup in flight */
};

/* Resolves host:port for socktype (SOCK_STREAM, SOCK_DGRAM); flags 0, or
   AI_PASSIVE for an address to bind. A numeric host is parsed here; a name
   is looked up on a thread of its own, off the loop's, and the answer comes
   back through cloop_call_threadsafe (the loop stays alive meanwhile).
   Returns 0, or -EINVAL (no host, a port outside 0-65535), -ENOMEM,
   -EAGAIN (no thread now); then fn is not called. */
int cloop_resolve_start(cloop_loop *loop, cloop_resolve *req, const char *host,
                        int port, int socktype, int flags, cloop_resolve_fn fn,
                        void *data);
/* Ends a lookup early: fn runs with -ECANCELED, and the thread's answer is
   dropped when it comes. Returns 1 if the lookup was in flight, else 0 (its
   callback may still be queued). */
int cloop_resolve_cancel(cloop_resolve *req);
/* Frees req->addrs (none is fine). */
void cloop_resolve_free(cloop_resolve *req);

/* ---- TCP: listening, accepting, connecting (the socket policy) --------

   One policy for every user: the coroutine level's cloop_sock_accept and
   cloop_tcp_connect are these callback-level helpers and a wait, and the
   Swift layer calls them too. Sockets are non-blocking and close-on-exec;
   TCP_NODELAY is set on accepted and connected TCP sockets. */

enum { CLOOP_REUSEPORT = 1 }; /* cloop_tcp_listen flags */

/* Binds and listens (SO_REUSEADDR; SO_REUSEPORT with CLOOP_REUSEPORT) on
   host -- numeric ("127.0.0.1", "::1"), NULL for every IPv4 interface,
   "localhost" for 127.0.0.1, or a name, which is looked up here, blocking
   -- and port (0 picks a free one; read it with cloop_sock_port). Needs no
   task. Returns the fd, or -EINVAL (a port outside 0-65535),
   CLOOP_ENOHOST, -EADDRINUSE, -errno. */
int cloop_tcp_listen(const char *host, int port, int backlog, int flags);

/* The local port of a bound socket, or -errno. */
int cloop_sock_port(int fd);

typedef struct cloop_acceptor cloop_acceptor;
typedef void (*cloop_acceptor_fn)(cloop_acceptor *a);

/* Accepts one connection, with the policy a server needs: a connection
   that left before it was taken (ECONNABORTED) is skipped; out of file
   descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) the error is
   reported after a 10 ms pause, since the connection stays queued and a
   caller that retried at once would spin. fn(a) runs once from the ready
   ring with a->result the new fd (its peer in a->op.addr) or -errno. Zero
   it before its first use. */
struct cloop_acceptor {
  cloop_op op;
  cloop_timer pause;
  cloop_acceptor_fn fn;
  void *data;              /* the caller's */
  int result;
  uint8_t state, cancelled; /* the library's */
};

/* Returns 0, or what cloop_op_accept returns (then fn is not called). */
int cloop_accept_start(cloop_loop *loop, cloop_acceptor *a, int fd,
                       cloop_acceptor_fn fn, void *data);
/* Ends it early: fn runs with -ECANCELED, or with the fd if one had been
   accepted already. Returns 1 if it was under way, else 0. */
int cloop_accept_cancel(cloop_acceptor *a);

typedef struct cloop_connector cloop_connector;
typedef void (*cloop_connector_fn)(cloop_connector *c);

/* Connects over TCP to host:port: resolves host (cloop_resolve), then
   tries each address in turn until one connects. fn(c) runs once from the
   ready ring with c->result the connected fd or the last attempt's error
   (-ECONNREFUSED, -ETIMEDOUT, -ENETUNREACH, ...; CLOOP_ENOHOST, -EAGAIN
   from the lookup). Zero it before its first use. */
struct cloop_connector {
  cloop_resolve resolve;
  cloop_op op;
  cloop_connector_fn fn;
  void *data;              /* the caller's */
  int result;
  /* the library's: */
  struct addrinfo *next;   /* the addresses not tried yet */
  int fd, last_error;
  uint8_t state, cancelled;
};

/* Returns 0, or -EINVAL, -ENOMEM, -EAGAIN (then fn is not called). */
int cloop_connect_start(cloop_loop *loop, cloop_connector *c, const char *host,
                        int port, cloop_connector_fn fn, void *data);
/* Ends it early: fn runs with -ECANCELED, or with the fd if the connect
   had succeeded already. Returns 1 if it was under way, else 0. */
int cloop_connect_cancel(cloop_connector *c);

/* ---- Unix domain stream sockets --------------------------------------

   The same stream as TCP's (accept with cloop_accept_start, I/O with the
   operations above or the task calls below); only the addresses differ. A
   name is a path, or "@name" for a Linux abstract name (no file; gone with
   the socket). A path that does not fit (107 bytes, 108 for an abstract
   name with its '@') is -ENAMETOOLONG, never cut short. */

enum { CLOOP_UNLINK_STALE = 1 }; /* cloop_unix_listen flags */

/* Binds and listens on a Unix stream socket at path. A socket file left by
   a dead server is -EADDRINUSE, unless flags has CLOOP_UNLINK_STALE: then
   a socket file nobody listens on (a connect to it is refused) is removed
   and the bind tried again; a live server's is never taken. Needs no task.
   Returns the fd, or -ENAMETOOLONG, -EADDRINUSE, -EINVAL (no path, bad
   flags), -EACCES, -errno. The file stays after close (remove it, or use
   an abstract name). */
int cloop_unix_listen(const char *path, int backlog, int flags);

/* The connector (cloop_connector) on a Unix socket path: fn(c) runs once
   from the ready ring with c->result the connected fd, or -ENOENT (no
   such file), -ECONNREFUSED (nobody listens), -EACCES, ...; cancel with
   cloop_connect_cancel. Returns 0, or -ENAMETOOLONG, -EINVAL, -errno (then
   fn is not called). */
int cloop_connect_unix_start(cloop_loop *loop, cloop_connector *c,
                             const char *path, cloop_connector_fn fn,
                             void *data);

/* The process, user and group of the peer of a connected Unix socket
   (SO_PEERCRED: who connected, or who listened); any pointer may be NULL.
   Returns 0 or -errno. */
int cloop_sock_peercred(int fd, int *pid, int *uid, int *gid);

/* ---- UDP: datagram sockets -------------------------------------------

   Set-up calls that need no task (none of them waits). Datagrams move
   with cloop_op_recvmsg/cloop_op_sendmsg, or with cloop_udp_recvfrom and
   cloop_udp_sendto in a task; a connected socket may also use the plain
   recv/send operations and calls. Sockets are non-blocking and
   close-on-exec. */

enum { CLOOP_UDP_REUSEADDR = 1, CLOOP_UDP_REUSEPORT = 2 }; /* cloop_udp_bind flags */

/* Fills *out from a numeric host ("127.0.0.1", "::1", "fe80::1%lo"; NULL
   for 0.0.0.0) and port. Returns the address's length, or -EINVAL (not a
   numeric address, port outside 0-65535). No lookup, so no waiting. */
int cloop_sockaddr_parse(const char *host, int port,
                         struct sockaddr_storage *out);
/* The printable host and port of addr (IPv4 or IPv6) into host (at least
   INET6_ADDRSTRLEN + IF_NAMESIZE bytes); returns 0 or -EAFNOSUPPORT. */
int cloop_sockaddr_format(const struct sockaddr *addr, char *host,
                          size_t hostlen, int *port);

/* A UDP socket bound to addr (IPv6 sockets are IPv6-only; port 0 picks a
   free one, read it with cloop_sock_port); flags CLOOP_UDP_REUSEADDR,
   CLOOP_UDP_REUSEPORT. Returns the fd, or -EINVAL (bad flags or length),
   -EADDRINUSE, -EADDRNOTAVAIL (no such local address: ::1 without IPv6),
   -EAFNOSUPPORT, -errno. */
int cloop_udp_open(const struct sockaddr *addr, socklen_t addrlen, int flags);
/* cloop_udp_open on a numeric host and port (cloop_sockaddr_parse). */
int cloop_udp_bind(const char *host, int port, int flags);
/* Connects fd to one peer (connect(2): no handshake, so no wait): sends
   without an address go there, only its datagrams are received, and an
   ICMP "port unreachable" comes back as -ECONNREFUSED from the next
   receive or send. An address of family AF_UNSPEC dissolves it. Returns 0
   or -errno. */
int cloop_udp_connect(int fd, const struct sockaddr *addr, socklen_t addrlen);
/* SO_BROADCAST on (1) or off (0): sends to a broadcast address are
   refused with -EACCES without it. Returns 0 or -errno. */
int cloop_udp_set_broadcast(int fd, int on);
/* Joins (join 1) or leaves (0) the multicast group (numeric, IPv4 or IPv6
   as the socket) on the interface named iface ("lo", "eth0"; NULL: the
   kernel's choice by route). IP_ADD_MEMBERSHIP / IPV6_JOIN_GROUP and
   their drops. Returns 0, or -EINVAL (not a multicast address), -ENODEV
   (no such interface), -EADDRNOTAVAIL (leaving a group not joined),
   -errno. */
int cloop_udp_membership(int fd, const char *group, const char *iface,
                         int join);
/* IP_MULTICAST_LOOP / IPV6_MULTICAST_LOOP: whether this host's own
   sockets get what fd sends to a group (the kernel's default: 1). */
int cloop_udp_set_multicast_loop(int fd, int on);

/* ---- a group of loops: one per core ---------------------------------

   N loops on N threads, thread-per-core and shared-nothing (Seastar's,
   SwiftNIO's MultiThreadedEventLoopGroup): each loop is a loop of its own
   (backend, ring, heap, task slabs, stack pool), created on its own
   thread and run there. A task never changes loop. Between loops there is
   one path, the target loop's cloop_call_threadsafe: scheduling a callback
   on loop i is cloop_call_threadsafe(cloop_group_loop(g, i), h); spawning a
   task there with its result awaitable elsewhere is cloop_spawn_remote;
   completing a future from another thread is a cloop_promise. */
typedef struct cloop_group cloop_group;

typedef struct cloop_group_options {
  int loops;            /* 0: the CPUs of the process's affinity mask */
  int pin;              /* 1: loop i runs only on the i-th CPU of that mask */
  cloop_options loop;   /* every loop's options (cloop_options_init) */
  /* On loop i's thread, before it runs (may be NULL): a place to start
     its listeners or tasks. */
  void (*on_start)(cloop_loop *loop, int index, void *arg);
  /* On loop i's thread when the group stops (may be NULL): stop accepting
     and tell long-lived tasks to finish; the group's own listeners are
     closed already. */
  void (*on_stop)(cloop_loop *loop, int index, void *arg);
  void *arg;            /* for on_start and on_stop */
} cloop_group_options;

/* Fills opts with the defaults: one loop per CPU, not pinned, default
   loop options. */
void cloop_group_options_init(cloop_group_options *opts);

/* Starts the loops (opts may be NULL), each on a thread of its own, and
   returns once every loop exists and runs. Returns 0, -EINVAL (loops < 0
   or over 1024), -ENOMEM, -errno of pthread_create, or what a loop's
   cloop_loop_new returned (then no loop is left running). */
int cloop_group_start(cloop_group **out, const cloop_group_options *opts);

/* The number of loops. Any thread. */
int cloop_group_size(const cloop_group *g);

/* The default number of loops: the CPUs in the calling process's affinity
   mask (sched_getaffinity), at least 1. Any thread; one system call. */
int cloop_group_default_size(void);

/* Loop i (0 <= i < size; else aborts). Any thread; only loop i's thread
   may use it but through cloop_call_threadsafe. */
cloop_loop *cloop_group_loop(const cloop_group *g, int i);

/* The next loop round-robin (one relaxed atomic add, shared by the
   callers of this function only). Any thread. */
cloop_loop *cloop_group_next(cloop_group *g);

/* The index of loop in g, or -1 if it is not g's. Any thread. */
int cloop_group_index(const cloop_group *g, const cloop_loop *loop);

/* Graceful stop, from a thread that is none of the group's: on each loop
   the group's listeners close and on_stop runs; each loop then runs until
   nothing is left or drain_ns have passed; what is still alive is
   cancelled and run until it has unwound, and failures nobody retrieved
   are reported (cloop_set_unretrieved_hook, per loop); then the loops are
   freed, the threads joined and g freed. Returns 0, or -EBUSY if a loop
   could not be freed (something it holds never ended: a watcher, a
   reference, an unreleased cloop_promise; it is left allocated). */
int cloop_group_stop(cloop_group *g, int64_t drain_ns);

/* Listening across the group. fn(loop, fd, arg) runs on the loop that is
   to serve each accepted connection (the fd is the callee's). By default
   each loop has its own listening socket on host:port with SO_REUSEPORT and
   the kernel spreads connections over them; with CLOOP_GROUP_ACCEPTOR
   loop 0 alone accepts and hands the fds round-robin to every loop
   (through their thread-safe calls), for setups where SO_REUSEPORT is not
   wanted. The sockets close when the group stops. Any thread. Returns
   the port (port 0 picks one), or what cloop_tcp_listen returns, -ENOMEM. */
enum { CLOOP_GROUP_ACCEPTOR = 2 }; /* cloop_group_listen flags */
typedef void (*cloop_group_conn_fn)(cloop_loop *loop, int fd, void *arg);
int cloop_group_listen(cloop_group *g, const char *host, int port,
                       int backlog, int flags, cloop_group_conn_fn fn,
                       void *arg);

/* Connections accepted so far by (REUSEPORT) or handed to (ACCEPTOR) loop
   i through the group's listeners. Any thread (a relaxed load). */
uint64_t cloop_group_accepted(const cloop_group *g, int i);

/* ---- coroutine level: futures ---------------------------------------- */

/* A future is pending until it is completed once, with a value, an error
   or a cancellation (asyncio's Future). What waits on it -- a task in
   cloop_await, a done callback -- is a handle parked in `waiters`; on
   completion the whole list joins the ready ring in O(1). It lives in the
   caller's memory and must not move while anything waits on it. */
enum { CLOOP_PENDING = 0, CLOOP_DONE = 1, CLOOP_FAILED = 2, CLOOP_CANCELLED = 3 };

typedef struct cloop_future {
  cloop_link waiters;   /* sentinel of the parked handles' links */
  cloop_loop *loop;
  intptr_t value;       /* CLOOP_DONE */
  int error;            /* CLOOP_FAILED / CLOOP_CANCELLED: -errno */
  uint8_t state;
  uint8_t retrieved;    /* a result or error was read (cloop_await) */
  uint8_t is_task;      /* a task's own future */
} cloop_future;

/* Prepares a pending future of loop. (Inline: one per await.) */
static inline void cloop_future_init(cloop_future *f, cloop_loop *loop) {
  f->waiters.next = f->waiters.prev = &f->waiters;
  f->loop = loop;
  f->value = 0;
  f->error = 0;
  f->state = CLOOP_PENDING;
  f->retrieved = 0;
  f->is_task = 0;
}

/* Completes f. Return 0, or -EALREADY if f was already complete (e.g.
   cancelled first); completing a task's future from outside aborts. */
int cloop_future_set_result(cloop_future *f, intptr_t value);
int cloop_future_set_error(cloop_future *f, int err); /* err < 0 */
/* Completes f as cancelled (-ECANCELED); for a task's future it cancels
   the task. Returns 1 if f was pending, else 0. */
int cloop_future_cancel(cloop_future *f);

static inline int cloop_future_done(const cloop_future *f) {
  return f->state != CLOOP_PENDING;
}

/* Queues h (asyncio's add_done_callback) when f completes; at once if it
   already has. Take it back with cloop_handle_cancel. */
void cloop_future_add_done(cloop_future *f, cloop_handle *h);

/* ---- coroutine level: tasks ------------------------------------------- */

/* A task is a coroutine with its own stack plus a future for its result
   (asyncio's Task). Its body returns >= 0 as its result or -errno as its
   error; returning -ECANCELED after being cancelled ends it cancelled.
   Awaiting functions may be called only inside a task: elsewhere they
   abort. They return -ECANCELED when the task is cancelled while parked (or
   was cancelled before) and -ETIMEDOUT inside an expired deadline scope. */
typedef struct cloop_task cloop_task;
typedef intptr_t (*cloop_task_fn)(void *arg);

/* Starts fn(arg) as a task; it first runs in the next iteration. With out
   non-NULL the caller gets a reference and must drop it with
   cloop_task_release; with out NULL the task is detached. name (may be
   NULL) is copied, up to 31 bytes. Takes a stack from the loop's pool: no
   syscall unless the pool is empty. Returns 0, -ENOMEM. */
int cloop_spawn(cloop_loop *loop, cloop_task **out, cloop_task_fn fn,
                void *arg, const char *name);

/* cloop_spawn with the stack chosen per task. */
typedef struct cloop_spawn_options {
  const char *name;       /* may be NULL */
  cloop_stack_mode stack; /* 0: the loop's default */
} cloop_spawn_options;

int cloop_spawn_ex(cloop_loop *loop, cloop_task **out, cloop_task_fn fn,
                   void *arg, const cloop_spawn_options *opts);

/* Drops the caller's reference; the task's memory goes when the task has
   finished too. A failure nobody retrieved is still reported at close. */
void cloop_task_release(cloop_task *t);

/* The task's future: complete when the task has finished. */
cloop_future *cloop_task_future(cloop_task *t);

/* Requests cancellation: the await t is parked in returns -ECANCELED (or,
   if it is not parked, its next one). Returns 1 if t had not finished. */
int cloop_task_cancel(cloop_task *t);

/* The task running on this thread now, or NULL outside tasks. */
cloop_task *cloop_current_task(void);
/* The loop a task runs on; in a task, cloop_task_loop(cloop_current_task())
   is the loop to spawn more on. */
cloop_loop *cloop_task_loop(const cloop_task *t);
const char *cloop_task_name(const cloop_task *t);

/* One word the code that spawned a task keeps with it (TinyAsync keeps its
   fiber's bookkeeping here), NULL until set. cloop_current_task_user() is
   the running task's word, NULL outside tasks: one call where a lookup
   through cloop_current_task() and a thread-specific key cost three. */
void cloop_task_set_user(cloop_task *t, void *user);
void *cloop_current_task_user(void);

/* In a task: parks until f is complete. Returns 0 with *value (may be
   NULL) set, or f's error, or -ECANCELED / -ETIMEDOUT for this task.
   Cancelling a parked task stops its wait but leaves f alone (asyncio
   would cancel f; here cancel f yourself if that is meant). */
int cloop_await(cloop_future *f, intptr_t *value);

/* In a task: awaits t's result. Returns it (>= 0) or -errno. */
intptr_t cloop_task_join(cloop_task *t);

/* In a task: sleeps ns nanoseconds on the loop's timers; ns <= 0 yields
   to the loop once (asyncio's sleep(0)). Returns 0 or -ECANCELED /
   -ETIMEDOUT. cloop_sleep_until takes a cloop_now()-based deadline. */
int cloop_sleep(int64_t ns);
int cloop_sleep_until(uint64_t deadline_ns);

/* In a task: waits for all n futures (asyncio's gather). results[i] (may
   be NULL) gets future i's value, or its error (< 0). Returns 0, or the
   first error by position. If the waiting task is cancelled or its
   deadline passes, the futures still pending are cancelled and awaited, so
   none is left running; then it returns -ECANCELED / -ETIMEDOUT. */
int cloop_gather(cloop_future *const *futures, size_t n, intptr_t *results);

/* In a task: runs fn(arg) on a thread of the loop's work pool (asyncio's
   to_thread) and returns what it returned; only this task waits. Cancelled
   or timed out while it waits, it returns -ECANCELED / -ETIMEDOUT at once:
   an fn not started never runs, a running one finishes on its thread and
   its result is dropped. Also -ENOMEM, -EAGAIN (no thread could start). */
intptr_t cloop_to_thread(cloop_task_fn fn, void *arg);

/* In a task: waits until the started watcher s (of this task's loop)
   has counted an arrival of its signal, and takes the count: returns it
   (>= 1), or -ECANCELED / -ETIMEDOUT, or -EINVAL for a watcher not
   started. A signal that arrives while no task waits stays counted, so the
   next wait returns at once. Do not stop a watcher a task waits on (cancel
   the task). */
int cloop_signal_wait(cloop_signal *s);

/* In a task: waits until the child p has exited (reaped: exit_code /
   term_signal set). Returns 0, or -ECANCELED / -ETIMEDOUT (it goes on
   running; wait again, kill it, or release it). */
int cloop_process_wait(cloop_process *p);

/* In a task: parks until fd, which the caller owns, is ready in dir
   (CLOOP_READABLE or CLOOP_WRITABLE; asyncio's add_reader / add_writer as
   an await, for a C library that owns its socket). Returns 0 (an error or
   hang-up on fd counts as ready: the caller's syscall sees it),
   -ECANCELED / -ETIMEDOUT, or cloop_watch's errors: -EEXIST (fd already
   watched in that direction on this loop), -EBADF, -EPERM (a regular
   file), -EINVAL (dir), -ENOMEM. Readiness is consumed by nothing: the
   caller's I/O after it may still get EAGAIN (wait again). Keep fd open
   while a task waits on it: a closed fd leaves epoll's set without a word,
   so the task would stay parked until cancelled (cancel it first). */
int cloop_wait_fd(int fd, int dir);

/* ---- coroutine level: across loops and threads ------------------------ */

/* A future of one loop that any thread may complete, once (asyncio's
   loop.call_soon_threadsafe(fut.set_result, v)): the completion travels
   through the loop's thread-safe call, and whatever awaits the future
   resumes on its own loop. On the heap (it does not move, so shared-stack
   tasks may await it), with two references: the owner's, dropped by
   cloop_promise_release, and the completer's, dropped by completing it.
   Until it is completed or released it holds a reference on its loop
   (cloop_ref), so cloop_run waits for it. */
typedef struct cloop_promise cloop_promise;

/* On loop's thread. Returns 0 or -ENOMEM. */
int cloop_promise_new(cloop_loop *loop, cloop_promise **out);
/* Its future, on its loop: cloop_await it, add done callbacks. */
cloop_future *cloop_promise_future(cloop_promise *p);
/* Any thread, once: completes the future (err < 0; -ECANCELED ends it
   cancelled). Returns 0, or -EALREADY if it was completed before (p is
   then untouched). After a 0, p may be gone. */
int cloop_promise_set_result(cloop_promise *p, intptr_t value);
int cloop_promise_set_error(cloop_promise *p, int err);
/* On its loop's thread, once nothing awaits the future: drops the owner's
   reference. A completion that comes later is dropped. */
void cloop_promise_release(cloop_promise *p);

/* On home's thread: spawns fn(arg) as a task on target (another loop,
   e.g. of a group; home itself works too) through target's thread-safe
   call, and gives a promise of home that completes with the task's result
   or error. The task runs and ends on target; a cloop_future of home is
   what waits. Release the promise when done with it; if it is released
   before the task fails, the failure is reported as unretrieved at
   target's close. A target that is closing answers -ECANCELED without
   running fn. Returns 0, -ENOMEM. */
int cloop_spawn_remote(cloop_loop *home, cloop_loop *target,
                       cloop_promise **out, cloop_task_fn fn, void *arg,
                       const char *name);

/* ---- coroutine level: deadlines, running a main task ------------------ */

/* A deadline scope (asyncio's timeout()): from enter to exit, once the
   deadline has passed every await of the task returns -ETIMEDOUT. Scopes
   nest (exit them in reverse order); each reports whether its own deadline
   passed. The struct is the task's own bookkeeping: the loop never touches
   it, so it may live on any stack (the timer is the task's). */
typedef struct cloop_deadline {
  uint64_t when;          /* monotonic ns */
  uint64_t outer_min;     /* the task's earliest deadline before entering */
  struct cloop_deadline *outer;
  int shield;             /* a shield scope (cloop_shield_enter) */
} cloop_deadline;

/* A timeout that never passes, for cloop_shield_enter. */
#define CLOOP_NO_DEADLINE INT64_MAX

/* In a task: enters a scope ending timeout_ns from now (<= 0: already
   passed). Returns 0 or -ENOMEM. */
int cloop_deadline_enter(cloop_deadline *d, int64_t timeout_ns);
/* Leaves the innermost scope d. Returns -ETIMEDOUT if it expired, else 0. */
int cloop_deadline_exit(cloop_deadline *d);

/* In a task: enters a shield scope (asyncio's shield, Trio's shielded
   cancel scope), for clean-up that must run to its end: inside it the
   task's awaits ignore its cancellation and the deadlines of the scopes
   around it -- both are kept, and the first await after cloop_deadline_exit
   meets them -- while its own timeout_ns (CLOOP_NO_DEADLINE for none) and
   the scopes inside it still apply. Leave it with cloop_deadline_exit. */
int cloop_shield_enter(cloop_deadline *d, int64_t timeout_ns);

/* In a task: asyncio's wait_for on a task: awaits other's result for at
   most timeout_ns, and on expiry cancels other and waits until it has
   finished (its clean-up has run) before returning -ETIMEDOUT. If this task
   is cancelled meanwhile, other is cancelled and awaited the same way and
   -ECANCELED returned. Returns other's result (>= 0) or error otherwise.
   (cloop_task_join inside a deadline scope instead leaves other running.) */
intptr_t cloop_wait_for(cloop_task *other, int64_t timeout_ns);

/* asyncio.run: creates a loop with opts (may be NULL), runs fn(arg) as the
   main task until it finishes, cancels what is left, closes the loop and
   returns main's result (>= 0) or -errno -- -EDEADLK if main stays parked
   with nothing left that could wake it (asyncio would hang). */
intptr_t cloop_main(cloop_task_fn fn, void *arg, const cloop_options *opts);

/* Spawns a task calling fn(arg) every interval_ns (the first call after
   one interval), at a fixed rate: a late call does not shift the next.
   It ends when fn returns < 0 (that is its error) or when cancelled. */
int cloop_spawn_periodic(cloop_loop *loop, cloop_task **out, cloop_task_fn fn,
                         void *arg, int64_t interval_ns, const char *name);

/* Called at loop close for each task that failed and whose error nobody
   retrieved (asyncio's "exception was never retrieved"). The default
   prints the task's name and error on stderr. */
typedef void (*cloop_unretrieved_fn)(cloop_task *t, int err, void *arg);
void cloop_set_unretrieved_hook(cloop_loop *loop, cloop_unretrieved_fn fn,
                                void *arg);

/* What the stack overflow report advises after "its stack is N KiB; "
   (default: "raise cloop_options.stack_size, or keep large values off the
   stack"), for an embedder whose users set the size elsewhere (the Swift
   layer). Process-wide; advice must stay valid. Call it before tasks run. */
void cloop_set_overflow_advice(const char *advice);

/* The switch the loop's coroutines use (never AUTO). */
cloop_switch cloop_loop_switch(const cloop_loop *loop);
const char *cloop_switch_name(cloop_switch mode);

/* ---- coroutine level: Event, Lock, Semaphore, Queue ------------------- */

/* asyncio's synchronisation primitives for tasks (sync.c). Each lives in
   the caller's memory, belongs to one loop's thread, and allocates nothing:
   a waiting task links the waiter record every task has into the
   primitive's FIFO list (so shared-stack tasks use them freely). A
   primitive must not move once initialised (its list points to itself)
   and must not be dropped while anything waits on it.

   Waking is handing over: a release gives the lock or permit, and a put
   gives its item, straight to the first waiter, so a task that comes
   later cannot overtake one that waits.

   The waiting calls (wait, acquire, put, get) must run in a task (else
   they abort) and, like every await, return 0 or -ECANCELED / -ETIMEDOUT,
   also at once without touching the primitive when the task was cancelled
   before or its deadline scope has expired. An interrupted call did
   nothing: a lock, permit or queue slot handed to it in the meantime goes
   on to the next waiter, an item handed to a get goes to the next getter
   or back to the head of the queue.

   Code that is no task (a callback; the Swift layer's async tasks) waits
   with the *_cb calls and a cloop_waiter record of its own, which joins the
   same FIFO list as the tasks: both kinds are served in one arrival order.
   A *_cb call returns 0 if it succeeded at once (fn is not called), or 1
   if w now waits. When w's turn comes, the waking call (a set, release,
   put or get) hands it over and calls fn(w, value) before it returns --
   the lock, permit, slot or item is already w's owner's, so no wake-up can
   be lost between the two; value is the item for a get, else 0. fn must
   not use the same primitive (schedule that work instead) and may free w.
   Until then cloop_waiter_cancel(w) takes w off the list, having received
   nothing. w must not move while it waits. */

typedef struct cloop_waiter cloop_waiter;
/* Called once with the waiter whose turn it is; value: see above. */
typedef void (*cloop_waiter_fn)(cloop_waiter *w, intptr_t value);

struct cloop_waiter {
  cloop_waiter_fn fn; /* set by cloop_waiter_init */
  void *arg;          /* yours */
  /* the library's: */
  cloop_link link;    /* in the primitive's waiting list while it waits */
  intptr_t item;      /* a waiting cloop_queue_put_cb's item */
};

/* 1 while anything waits in a primitive's waiting list (its `waiters`,
   `getters` or `putters`), else 0. */
static inline int cloop_waiting(const cloop_link *list) {
  return list->next != list;
}

void cloop_waiter_init(cloop_waiter *w, cloop_waiter_fn fn, void *arg);
/* Takes w off the list it waits in: returns 1, and fn will not be called;
   0 if w was not waiting (its fn has run, or it never waited). */
int cloop_waiter_cancel(cloop_waiter *w);

/* Event: a flag that tasks can wait for (asyncio.Event). */
typedef struct cloop_event {
  cloop_link waiters;
  int is_set;
} cloop_event;

void cloop_event_init(cloop_event *e);         /* starts clear */
int cloop_event_wait(cloop_event *e);          /* in a task: until set */
int cloop_event_wait_cb(cloop_event *e, cloop_waiter *w); /* 0 if set, or 1 */
void cloop_event_set(cloop_event *e);          /* wakes all waiters, FIFO */
void cloop_event_clear(cloop_event *e);        /* later waits park again */
int cloop_event_is_set(const cloop_event *e);

/* Lock: mutual exclusion between tasks (asyncio.Lock), not reentrant.
   Releasing a lock that is not held, or that another task holds, aborts;
   so does acquiring it again in the task that holds it. A task that ends
   while holding it leaves it held. A lock taken by a *_cb call, or by a
   try call outside tasks, is held by "code outside tasks": any code
   outside tasks may release it, and no task may. */
typedef struct cloop_lock {
  cloop_link waiters;
  cloop_task *owner; /* the holding task; NULL if free or held outside tasks */
  int held;
} cloop_lock;

void cloop_lock_init(cloop_lock *l);
int cloop_lock_acquire(cloop_lock *l);         /* in a task */
int cloop_lock_acquire_cb(cloop_lock *l, cloop_waiter *w); /* 0, or 1: waits */
int cloop_lock_try_acquire(cloop_lock *l);     /* 0, or -EAGAIN if held */
void cloop_lock_release(cloop_lock *l);        /* by the holder */
int cloop_lock_locked(const cloop_lock *l);

/* Semaphore: `value` permits (asyncio.Semaphore). release may be called
   from any code of the loop's thread, also outside tasks; it is not
   bounded by the initial value. */
typedef struct cloop_semaphore {
  cloop_link waiters;
  size_t value; /* permits free; 0 while tasks wait */
} cloop_semaphore;

void cloop_semaphore_init(cloop_semaphore *s, size_t value);
int cloop_semaphore_acquire(cloop_semaphore *s); /* in a task */
int cloop_semaphore_acquire_cb(cloop_semaphore *s, cloop_waiter *w); /* 0/1 */
int cloop_semaphore_try_acquire(cloop_semaphore *s); /* 0, or -EAGAIN */
void cloop_semaphore_release(cloop_semaphore *s);
size_t cloop_semaphore_value(const cloop_semaphore *s);

/* Queue: a bounded FIFO of intptr_t items in a caller's buffer of `cap`
   items (asyncio.Queue(maxsize)). Waiting putters and waiting getters are
   each served in arrival order. A slot stays counted as used from a put
   until the getter that was handed the item has run, so a queue may be
   full while cloop_queue_size is below cap. The try_ calls also work
   outside tasks (e.g. in callbacks). */
typedef struct cloop_queue {
  intptr_t *buf;
  size_t cap, head, len;
  size_t inflight;    /* items handed to getter tasks that have not run yet */
  size_t slot_grants; /* slots promised to putter tasks that have not run yet */
  cloop_link getters, putters;
} cloop_queue;

/* Returns 0, or -EINVAL if buf is NULL or cap is 0. */
int cloop_queue_init(cloop_queue *q, intptr_t *buf, size_t cap);
/* In a task: parks while the queue is full. */
int cloop_queue_put(cloop_queue *q, intptr_t item);
/* In a task: parks while it is empty; *item (item may be NULL) gets the
   oldest item. */
int cloop_queue_get(cloop_queue *q, intptr_t *item);
/* Without waiting: 0, or -EAGAIN when full (put) or empty (get). */
int cloop_queue_try_put(cloop_queue *q, intptr_t item);
int cloop_queue_try_get(cloop_queue *q, intptr_t *item);
/* By callback: 0 if put at once, or 1: w waits with item, which the queue
   takes when fn runs (value 0). A cancelled w put nothing. */
int cloop_queue_put_cb(cloop_queue *q, intptr_t item, cloop_waiter *w);
/* By callback: 0 with *item the oldest item, or 1: w waits, and fn gets
   the item as value. */
int cloop_queue_get_cb(cloop_queue *q, intptr_t *item, cloop_waiter *w);
/* Items in the buffer now. */
size_t cloop_queue_size(const cloop_queue *q);

/* ---- coroutine level: sockets (the seeds' create_connection, ----------
   sock_sendall, sock_recv, and the server side) --------------------------

   Each call that waits runs in a task and parks only that task, on the
   I/O operations above; it takes part in cancellation and deadline scopes
   (-ECANCELED / -ETIMEDOUT, with the operation cancelled underneath).
   Sockets are non-blocking and close-on-exec; TCP_NODELAY is set on
   connected and accepted TCP sockets. Errors are -errno. */

/* In a task: connects to host:port over TCP (cloop_connect_start: a name
   is resolved off the loop's thread; each address is tried in turn).
   Returns the fd, or -ECONNREFUSED, -ETIMEDOUT, -EHOSTUNREACH, ...; a
   failed name lookup is CLOOP_ENOHOST (no such host) or -EAGAIN (try
   later). */
int cloop_tcp_connect(const char *host, int port);

/* In a task: connects to the Unix stream socket at path (or "@name");
   returns the fd, or -ENOENT, -ECONNREFUSED, -ENAMETOOLONG, ... */
int cloop_unix_connect(const char *path);

/* In a task: the next connection's fd (cloop_accept_start's policy: out
   of file descriptors, -EMFILE or -ENFILE comes after a 10 ms pause, so a
   retrying accept loop does not spin). */
int cloop_sock_accept(int fd);

/* In a task: up to len bytes; 0 at EOF. */
ssize_t cloop_sock_recv(int fd, void *buf, size_t len);

/* In a task: sends some of buf; returns the count (> 0). */
ssize_t cloop_sock_send(int fd, const void *buf, size_t len);

/* In a task: sends all of buf across partial writes; returns len, or an
   error (then how much went out is unknown: close the connection). */
ssize_t cloop_sock_sendall(int fd, const void *buf, size_t len);

/* In a task: reads up to and including the first `delim` (the seed's
   sock_recv that stops at a delimiter), never past it: bytes after it stay
   in the socket for the next read. Returns the count, or at EOF what came
   before it (0 if nothing), or CLOOP_ENODELIM once max bytes hold no
   delimiter (those bytes are consumed). */
ssize_t cloop_sock_recv_until(int fd, void *buf, size_t max,
                              const void *delim, size_t delim_len);

/* shutdown(2) of one or both directions. */
int cloop_sock_shutdown(int fd, int how);

/* In a task: sends one datagram of len bytes to addr (NULL: the
   connected peer); returns len, or -ECONNREFUSED (a connected socket's
   peer had refused an earlier one), -EMSGSIZE (over 65507 bytes for
   IPv4), -EACCES (broadcast without SO_BROADCAST), ... */
ssize_t cloop_udp_sendto(int fd, const void *buf, size_t len,
                         const struct sockaddr *addr, socklen_t addrlen);
/* In a task: receives one datagram into buf; returns the bytes kept (at
   most len; 0 for an empty datagram), with the sender in *addr and *addrlen
   (either may be NULL; *addrlen in: the room at addr) and *flags_out
   (may be NULL) CLOOP_UDP_TRUNCATED when the datagram was longer than
   len and its tail was dropped. */
ssize_t cloop_udp_recvfrom(int fd, void *buf, size_t len,
                           struct sockaddr *addr, socklen_t *addrlen,
                           int *flags_out);
enum { CLOOP_UDP_TRUNCATED = 1 }; /* in cloop_udp_recvfrom's flags_out */

/* In a task: closes fd; a task parked on it wakes with -EBADF. (Outside
   a task, cloop_close_fd does the same.) */
int cloop_sock_close(int fd);

/* ---- coroutine level: files --------------------------------------------

   Each call runs in a task and parks only that task, on the file
   operations above (io_uring's requests, or the work pool); it takes part
   in cancellation and deadline scopes (-ECANCELED / -ETIMEDOUT, with the
   operation cancelled underneath; a read or open that had finished first
   returns its result and the interruption waits for the next await).
   Buffers and paths may live on a shared stack (they are copied). Errors
   are -errno. */

/* In a task: opens path (O_* flags, O_CLOEXEC added; mode for O_CREAT).
   Returns the fd, or -ENOENT, -EACCES, -EISDIR, -EEXIST, -EMFILE, ... */
int cloop_file_open(const char *path, int flags, unsigned mode);
/* In a task: closes fd. */
int cloop_file_close(int fd);
/* In a task: up to len bytes at offset; fewer only at the end of the
   file, 0 past it. */
ssize_t cloop_file_pread(int fd, void *buf, size_t len, uint64_t offset);
/* In a task: writes some of buf at offset; returns the count. */
ssize_t cloop_file_pwrite(int fd, const void *buf, size_t len, uint64_t offset);
/* In a task: fsync(2), or fdatasync(2) when datasync is 1. */
int cloop_file_fsync(int fd, int datasync);
/* In a task: stats the open file fd, or (fd < 0) path, into *out. */
int cloop_file_stat(int fd, const char *path, cloop_file_info *out);
/* In a task: reads fd from offset 0 to its end into a malloc'd buffer
   (*out, with a NUL after its *len bytes; free it). Returns 0 or -errno
   (then *out is NULL). */
int cloop_file_read_all(int fd, void **out, size_t *len);
/* In a task: writes all of buf at offset across partial writes; returns
   len or -errno (-ENOSPC, ...; how much reached the file is then unknown). */
ssize_t cloop_file_write_all(int fd, const void *buf, size_t len,
                             uint64_t offset);
/* In a task: sends len bytes of filefd from offset into the socket sockfd
   (read in 64 KiB chunks, each sent with cloop_sock_sendall; one buffer
   for the whole call). Returns the bytes sent: len, or fewer if the file
   ends first; or -errno from either side. */
ssize_t cloop_file_send(int sockfd, int filefd, uint64_t offset, size_t len);

/* ---- for tests -------------------------------------------------------- */

/* Checks the timer heap: every parent's key <= its children's and every
   timer's index matches its slot. Returns 0, or -1 and prints the fault. */
int cloop_debug_verify_heap(const cloop_loop *loop);

/* Puts the loop on a manual clock that starts at start_ns: cloop_now then
   moves only by cloop_debug_advance_clock and, when the loop would wait for
   its earliest timer with nothing else to do (no I/O arrived in a poll
   that does not wait), by jumping to that deadline -- what the wait would
   have done on the real clock, as tokio's paused time does. An iteration
   that may not wait (cloop_run_once(loop, 0)) never moves it. For tests
   that must be exact, not sleepy. */
void cloop_debug_manual_clock(cloop_loop *loop, uint64_t start_ns);
/* Moves a manual clock forward by ns. */
void cloop_debug_advance_clock(cloop_loop *loop, uint64_t ns);

/* How stack guards are made here: 1 for page-table guard markers
   (MADV_GUARD_INSTALL, no mapping per stack), 0 for mprotect, whose one
   mapping per guard lets vm.max_map_count (65530 by default) cap a process
   near 32,000 private stacks. */
int cloop_debug_guard_markers(void);

#ifdef __cplusplus
}
#endif
#endif /* CLOOP_H */
