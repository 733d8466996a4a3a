/* loop.c -- the event loop: creation, one iteration (asyncio's _run_once),
 * run/stop, the cached clock and call_soon. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loop/list.h"
#include "loop/loop.h"
/* The one coroutine-level header included here: the batch resumes a task
   in place (see iterate). */
#include "coro/task.h"

__thread char cloop__thread_marker __attribute__((tls_model("initial-exec")));
/* The loop whose cloop_run / cloop_run_once is on this thread's stack. */
static __thread cloop_loop *running_loop;

void cloop_options_init(cloop_options *opts) {
  memset(opts, 0, sizeof *opts);
  opts->backend = CLOOP_BACKEND_AUTO;
}

/* The backend asked for: the option, else $CLOOP_BACKEND, else auto. */
static int pick_backend(const cloop_options *opts, cloop_backend *out) {
  cloop_backend b = opts ? opts->backend : CLOOP_BACKEND_AUTO;
  if (b != CLOOP_BACKEND_AUTO && b != CLOOP_BACKEND_EPOLL &&
      b != CLOOP_BACKEND_URING)
    return cloop__bad_setting(CLOOP_EBADOPTION, "cloop_options.backend is %d: "
                              "expected CLOOP_BACKEND_AUTO, _EPOLL or _URING",
                              (int)b);
  const char *env = getenv("CLOOP_BACKEND");
  if (b == CLOOP_BACKEND_AUTO && env && *env) {
    if (strcmp(env, "epoll") == 0)
      b = CLOOP_BACKEND_EPOLL;
    else if (strcmp(env, "uring") == 0 || strcmp(env, "io_uring") == 0)
      b = CLOOP_BACKEND_URING;
    else if (strcmp(env, "auto") != 0)
      return cloop__bad_setting(CLOOP_EBADENV, "CLOOP_BACKEND=\"%.40s\": "
                                "expected epoll, uring (or io_uring) or auto", env);
  }
  *out = b;
  return 0;
}

int cloop_loop_new(cloop_loop **out, const cloop_options *opts) {
  cloop_backend backend = CLOOP_BACKEND_AUTO;
  cloop__bad_setting(0, NULL); /* no detail left from an earlier failure */
  int r = pick_backend(opts, &backend);
  if (r < 0)
    return r;
  cloop_loop *loop = calloc(1, sizeof *loop);
  if (!loop)
    return -ENOMEM;
  list_init(&loop->ready);
  list_init(&loop->ts_ring);
  list_init(&loop->processes);
  pthread_mutex_init(&loop->ts_lock, NULL);
  cloop__slab_init(&loop->interests, cloop__interest_size);
  loop->owner = &cloop__thread_marker;
  if ((r = cloop__coro_open(loop, opts)) < 0) {
    pthread_mutex_destroy(&loop->ts_lock);
    free(loop);
    return r;
  }
  /* Auto tries io_uring (set-up plus an opcode probe) and falls back to
     epoll on any failure: EPERM under seccomp or io_uring_disabled,
     ENOSYS on old kernels, ENOMEM from RLIMIT_MEMLOCK. io_uring asked for
     by name does not fall back. */
#ifdef CLOOP_NO_URING /* built without the io_uring backend */
  loop->ops = &cloop__epoll_ops;
  r = backend == CLOOP_BACKEND_URING ? CLOOP_ENOBACKEND : loop->ops->init(loop);
#else
  loop->ops = backend == CLOOP_BACKEND_EPOLL ? &cloop__epoll_ops
                                             : &cloop__uring_ops;
  r = loop->ops->init(loop);
#endif
  if (r < 0 && backend == CLOOP_BACKEND_AUTO) {
    loop->ops = &cloop__epoll_ops;
    r = loop->ops->init(loop);
  } else if (r < 0 && backend == CLOOP_BACKEND_URING) {
    r = CLOOP_ENOBACKEND;
  }
  if (r < 0) {
    cloop__coro_close(loop, 1);
    pthread_mutex_destroy(&loop->ts_lock);
    free(loop);
    return r;
  }
  cloop_update_time(loop);
  *out = loop;
  return 0;
}

int cloop_loop_free(cloop_loop *loop) {
  CLOOP__CHECK(loop, "cloop_loop_free");
  if (loop->running)
    cloop__misuse("cloop_loop_free called while the loop is running");
  cloop__coro_close(loop, 0); /* the tasks first: they may hold the rest */
  pthread_mutex_lock(&loop->ts_lock);
  int ts_busy = !list_empty(&loop->ts_ring);
  pthread_mutex_unlock(&loop->ts_lock);
  if (ts_busy || !list_empty(&loop->ready) || loop->timers.len || loop->alive)
    return -EBUSY;
  cloop__processes_discard(loop); /* children nobody waits for: reaped elsewhere */
  loop->ops->close(loop);
  cloop__coro_close(loop, 1);
  cloop__slab_free(&loop->interests);
  cloop__heap_free(&loop->timers);
  free(loop->fds);
  pthread_mutex_destroy(&loop->ts_lock);
  free(loop);
  return 0;
}

void cloop__loop_discard(cloop_loop *loop) {
  cloop__signals_discard(loop); /* first: it unqueues its handles */
  cloop__processes_discard(loop);
  while (!list_empty(&loop->ready))
    list_pop(&loop->ready);
  while (loop->timers.len)
    cloop__heap_remove(&loop->timers, loop->timers.len - 1);
  for (int fd = 0; fd < loop->nfds; fd++) {
    if (loop->fds[fd].reader)
      cloop_unwatch(loop, loop->fds[fd].reader);
    if (loop->fds[fd].writer)
      cloop_unwatch(loop, loop->fds[fd].writer);
  }
  pthread_mutex_lock(&loop->ts_lock);
  while (!list_empty(&loop->ts_ring))
    list_pop(&loop->ts_ring);
  atomic_store(&loop->ts_pending, 0);
  pthread_mutex_unlock(&loop->ts_lock);
  loop->alive = 0;
}

/* A clock read costs about 20 ns here; a batch of cheap callbacks that
   schedules no timer should not pay it. */
uint64_t cloop_now(cloop_loop *loop) {
  if (!loop->now_fresh)
    cloop_update_time(loop);
  return loop->now;
}

void cloop_update_time(cloop_loop *loop) {
  loop->now = loop->manual_clock ? loop->manual_now : cloop__clock_ns();
  loop->now_fresh = 1;
}

void cloop_debug_manual_clock(cloop_loop *loop, uint64_t start_ns) {
  CLOOP__CHECK(loop, "cloop_debug_manual_clock");
  loop->manual_clock = 1;
  loop->manual_now = start_ns;
  cloop_update_time(loop);
}

void cloop_debug_advance_clock(cloop_loop *loop, uint64_t ns) {
  CLOOP__CHECK(loop, "cloop_debug_advance_clock");
  if (!loop->manual_clock)
    cloop__misuse("cloop_debug_advance_clock on a loop without a manual clock");
  loop->manual_now += ns;
  cloop_update_time(loop);
}

cloop_backend cloop_loop_backend(const cloop_loop *loop) {
  return loop->ops->backend;
}

const char *cloop_loop_backend_info(cloop_loop *loop) {
  CLOOP__CHECK(loop, "cloop_loop_backend_info");
  return loop->ops->info ? loop->ops->info(loop) : cloop_backend_name(loop->ops->backend);
}

const char *cloop_backend_name(cloop_backend backend) {
  switch (backend) {
  case CLOOP_BACKEND_EPOLL: return "epoll";
  case CLOOP_BACKEND_URING: return "io_uring";
  default: return "auto";
  }
}

void cloop_ref(cloop_loop *loop) {
  CLOOP__CHECK(loop, "cloop_ref");
  loop->alive++;
}

void cloop_unref(cloop_loop *loop) {
  CLOOP__CHECK(loop, "cloop_unref");
  if (loop->alive == 0)
    cloop__misuse("cloop_unref without a matching cloop_ref");
  loop->alive--;
}

void cloop_call_soon(cloop_loop *loop, cloop_handle *h) {
  CLOOP__CHECK(loop, "cloop_call_soon");
  if (__builtin_expect(h->link.next != NULL, 0))
    cloop__misuse("cloop_call_soon: handle %p is already queued", (void *)h);
  list_push(&loop->ready, &h->link);
}

int cloop_handle_cancel(cloop_loop *loop, cloop_handle *h) {
  CLOOP__CHECK(loop, "cloop_handle_cancel");
  if (!h->link.next)
    return 0;
  list_remove(&h->link);
  return 1;
}

void cloop_stop(cloop_loop *loop) {
  CLOOP__CHECK(loop, "cloop_stop");
  loop->stopping = 1;
}

/* A manual clock (tests) jumps to the earliest deadline when the loop would
   otherwise wait for it: what a poll with that timeout would have done on
   the real clock, as tokio's paused time does. Only while nothing else came
   in (no I/O, no thread-safe call) and within the caller's timeout. */
static void advance_manual(cloop_loop *loop, int64_t wait) {
  if (wait <= 0 || atomic_load_explicit(&loop->ts_pending, memory_order_acquire) ||
      !list_empty(&loop->ready))
    return;
  loop->manual_now += (uint64_t)wait;
  cloop_update_time(loop);
}

/* One iteration, in the order of asyncio's _run_once (docs/walkthrough.md). Returns 1 while work remains, 0 when
   nothing is left, or -errno from the poller. */
static inline __attribute__((always_inline)) int
iterate(cloop_loop *loop, int64_t timeout_ns) {
  /* 1. How long may the poll wait? Not at all while work is ready; until
     the earliest timer; without limit while only watchers or references
     keep the loop alive. */
  int64_t wait;
  int ts = atomic_load_explicit(&loop->ts_pending, memory_order_acquire);
  if (!list_empty(&loop->ready) || ts) {
    wait = 0;
  } else if (loop->timers.len) {
    cloop_update_time(loop); /* the last batch took time: count from now */
    uint64_t due = loop->timers.e[0].deadline;
    wait = due <= loop->now ? 0
         : due - loop->now > INT64_MAX ? INT64_MAX : (int64_t)(due - loop->now);
  } else if (loop->alive) {
    wait = -1;
  } else {
    return 0;
  }
  if (timeout_ns >= 0 && (wait < 0 || wait > timeout_ns))
    wait = timeout_ns;

  /* 2. Poll. With work ready and no fd watched, a zero-timeout poll could
     only report the wake-up, which ts_pending already tells: skip the
     syscall. With watchers it runs every iteration, so ready work never
     starves I/O; with submissions queued (poll_pending) too. */
  if (wait != 0 || loop->nwatchers || loop->poll_pending) {
    int manual = __builtin_expect(loop->manual_clock, 0) && loop->timers.len;
    int r = loop->ops->poll(loop, manual ? 0 : wait);
    if (r < 0)
      return r;
    if (manual && r == 0)
      advance_manual(loop, wait);
    ts = 1; /* a wake-up may have arrived during the poll */
  }
  if (ts)
    cloop__drain_threadsafe(loop);
  loop->now_fresh = 0;

  /* 3. The due timers join the batch behind the ready handles: those due
     now and scheduled before now. */
  uint64_t now = 0, seq_limit = loop->timers.next_seq;
  int timers_due = loop->timers.len &&
                   loop->timers.e[0].deadline <= (now = cloop_now(loop));

  /* 4. Run the handles queued now; those they queue wait for the next
     iteration. The batch moves to a local sentinel in O(1); a handle in it
     can still be cancelled, since unlinking needs no head.
     The one exception to "call h->fn": a task's step handle resumes the
     task right here, the switch inlined into this frame (coro/task.h). A
     switch inside a called function costs the call and the return after
     it, which the CPU mispredicts after every switch. Measured with
     bench/cloop_bench.c's future (a million create/call_soon/await
     rounds), three runs each, 2026-12-02: 56 ns a round with it, 66-67 ns
     built with -DCLOOP_NO_RESUME_SHORTCUT: a sixth of an await. */
  cloop_link batch;
  list_init(&batch);
  list_splice(&batch, &loop->ready);
  loop->batches++;
  while (!list_empty(&batch)) {
    cloop_handle *h = list_handle(list_pop(&batch));
#ifndef CLOOP_NO_RESUME_SHORTCUT
    if (h->fn == cloop__task_step)
      cloop__task_resume(loop, h->arg);
    else
#endif
      h->fn(h->arg);
  }
  if (timers_due)
    cloop__run_due_timers(loop, now, seq_limit);

  return !list_empty(&loop->ready) || loop->timers.len || loop->alive ||
         atomic_load_explicit(&loop->ts_pending, memory_order_relaxed);
}

int cloop__iterate(cloop_loop *loop, int64_t timeout_ns) {
  return iterate(loop, timeout_ns);
}

int cloop_run_once(cloop_loop *loop, int64_t timeout_ns) {
  CLOOP__CHECK(loop, "cloop_run_once");
  if (loop->running)
    cloop__misuse("cloop_run_once called from a callback of the same loop");
  loop->running = 1;
  cloop_loop *outer = running_loop; /* another loop's callback may run this */
  running_loop = loop;
  int r = cloop__iterate(loop, timeout_ns);
  running_loop = outer;
  loop->running = 0;
  return r;
}

int cloop_run(cloop_loop *loop) {
  CLOOP__CHECK(loop, "cloop_run");
  if (loop->running)
    cloop__misuse("cloop_run called from a callback of the same loop");
  loop->running = 1;
  cloop_loop *outer = running_loop;
  running_loop = loop;
  int r;
  do {
    r = iterate(loop, -1); /* inline: no call and return per iteration */
    if (r >= 0 && loop->stopping)
      r = 1;
  } while (r > 0 && !loop->stopping);
  running_loop = outer;
  loop->stopping = 0;
  loop->running = 0;
  return r;
}

cloop_loop *cloop_running_loop(void) { return running_loop; }

uint64_t cloop_batch_count(const cloop_loop *loop) {
  CLOOP__CHECK(loop, "cloop_batch_count");
  return loop->batches;
}

int cloop_loop_is_owner(const cloop_loop *loop) {
  return loop->owner == &cloop__thread_marker;
}

void cloop_loop_set_data(cloop_loop *loop, void *data) {
  CLOOP__CHECK(loop, "cloop_loop_set_data");
  loop->data = data;
}

void *cloop_loop_data(const cloop_loop *loop) { return loop->data; }
