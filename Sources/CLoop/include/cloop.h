/* cloop.h -- CLoop, Python asyncio's event loop rebuilt in C.
 *
 * The one public header. This is the callback level: a loop, handles on an
 * intrusive ready ring, timers on a 4-ary heap, fd watchers and a
 * thread-safe call. Every node (handle, timer, watcher) lives in the
 * caller's memory, so scheduling allocates nothing.
 *
 * Errors: functions return >= 0 on success and -errno on failure, as
 * liburing and libuv do. The library's own codes (CLOOP_E*) sit far below
 * the errno range; cloop_strerror() names both. Misuse -- a programmer
 * error such as scheduling a handle that is already queued or calling a
 * loop from another thread -- aborts with a message that names it.
 *
 * Threads: a loop belongs to the thread that created it. cloop_call_threadsafe
 * is the one function another thread may call.
 */
#ifndef CLOOP_H
#define CLOOP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ------------------------------------------------------------ */

#define CLOOP_ENOBACKEND (-20001) /* the backend asked for is not available */

/* A static message for err (a -errno value or a CLOOP_E* code). */
const char *cloop_strerror(int err);

/* ---- the loop ---------------------------------------------------------- */

typedef struct cloop_loop cloop_loop;

typedef enum cloop_backend {
  CLOOP_BACKEND_AUTO = 0, /* $CLOOP_BACKEND if set, else the best that works */
  CLOOP_BACKEND_EPOLL = 1,
  CLOOP_BACKEND_URING = 2,
} cloop_backend;

typedef struct cloop_options {
  cloop_backend backend;
} cloop_options;

/* Fills opts with the defaults (auto backend). */
void cloop_options_init(cloop_options *opts);

/* Creates a loop owned by the calling thread; opts may be NULL.
   Returns 0, -ENOMEM, -EINVAL (bad $CLOOP_BACKEND), CLOOP_ENOBACKEND, or
   the errno of a failed epoll_create1/eventfd. */
int cloop_loop_new(cloop_loop **out, const cloop_options *opts);

/* Frees the loop. Returns 0, or -EBUSY (and frees nothing) while handles
   are queued, timers pending, watchers active or references held. */
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

/* A reference keeps cloop_run from returning for lack of work, e.g. while
   another thread will still make thread-safe calls. */
void cloop_ref(cloop_loop *loop);
void cloop_unref(cloop_loop *loop);

/* ---- handles: asyncio's Handle, call_soon ------------------------------ */

typedef void (*cloop_fn)(void *arg);

/* A callback and its argument, linked into the ready ring while queued.
   next/prev are the loop's; next != NULL exactly while queued. */
typedef struct cloop_handle {
  struct cloop_handle *next, *prev;
  cloop_fn fn;
  void *arg;
} cloop_handle;

#define CLOOP_HANDLE_INIT(fn, arg) {NULL, NULL, (fn), (arg)}

/* Sets the callback of an idle handle. */
void cloop_handle_init(cloop_handle *h, cloop_fn fn, void *arg);

/* Queues h to run in the next batch (asyncio's call_soon). O(1), no
   allocation. Queueing a handle that is already queued aborts. */
void cloop_call_soon(cloop_loop *loop, cloop_handle *h);

/* Takes h off the ready ring. Returns 1 if it was queued, else 0. */
int cloop_handle_cancel(cloop_loop *loop, cloop_handle *h);

/* 1 while h is queued, else 0. */
static inline int cloop_handle_queued(const cloop_handle *h) {
  return h->next != NULL;
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
  return t->index != CLOOP_TIMER_IDLE || t->handle.next != NULL;
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

/* ---- for tests -------------------------------------------------------- */

/* Checks the timer heap: every parent's key <= its children's and every
   timer's index matches its slot. Returns 0, or -1 and prints the fault. */
int cloop_debug_verify_heap(const cloop_loop *loop);

#ifdef __cplusplus
}
#endif
#endif /* CLOOP_H */
