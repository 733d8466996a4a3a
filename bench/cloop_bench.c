/* CLoop side of the callbacks, timers, timers-cancel, switch and future
   workloads of /work/shared/peers/WORKLOADS.md. The loop workloads print
   one RESULT line per loop backend (cloop-epoll, ...); switch and future
   one per coroutine switch mode (cloop = asm, cloop-fast, cloop-ucontext).

   usage: cloop-bench callbacks|timers|timers-cancel|switch|future [--n N]

   Timing boundaries follow the peers' (shared/peers/c/uv_bench.c):
   - the loop is created, and its cached time refreshed, before the clock;
   - random inputs (delays, the cancel order) are drawn before the clock,
     and the timers' memory is one array allocated (not touched) before it;
   - timers-cancel times insert + cancel only; the run until idle that
     follows is untimed and must return at once with no timer fired.
   switch follows shared/peers/c/switch_fcontext.cpp: N rounded up to even,
   the other side started before the clock, only the ping-pong timed.
   future follows shared/peers/python/bench.py: the clock runs inside the
   task, around the N create/call_soon/await rounds only (not the spawn,
   the task's first switch or the loop's start and end).
   Any failed check prints a message on stderr and exits 1. */
#include <cloop.h>

/* The raw context switch (internal to CLoop): cloop__ctx_make,
   cloop__ctx_switch, the stack pool. bench/CMakeLists.txt adds
   Sources/CLoop to the include path. */
#include "coro/stack.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- shared helpers (as shared/peers/c/common.h) ------------------------ */

static uint64_t rng_state;

static void rng_reset(void) { rng_state = 42; }

static inline uint64_t rng_next(void) {
  rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
  return rng_state >> 33;
}

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void print_result(const char *workload, const char *impl, uint64_t n,
                         double value, const char *unit) {
  printf("RESULT workload=%s impl=%s n=%" PRIu64 " value=%.2f unit=%s\n",
         workload, impl, n, value, unit);
  fflush(stdout);
}

static const char *g_workload = "cloop-bench";

/* Prints "<workload>: <message>" on stderr and exits 1. */
__attribute__((noreturn, format(printf, 1, 2))) static void
fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", g_workload);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static void *xmalloc(size_t size) {
  void *p = malloc(size ? size : 1);
  if (!p)
    fail("out of memory (%zu bytes)", size);
  return p;
}

/* ---- loop variants ------------------------------------------------------ */

/* One RESULT line per entry. A backend the machine or build lacks
   (cloop_loop_new returns CLOOP_ENOBACKEND) is skipped with a note. */
static const struct variant {
  const char *impl;
  cloop_backend backend;
} VARIANTS[] = {
    {"cloop-epoll", CLOOP_BACKEND_EPOLL},
    {"cloop-uring", CLOOP_BACKEND_URING},
};

#define NVARIANTS (sizeof VARIANTS / sizeof VARIANTS[0])

/* A new loop on v's backend, or NULL (after a note) if it is unavailable. */
static cloop_loop *new_loop(const struct variant *v) {
  cloop_options opts;
  cloop_options_init(&opts);
  opts.backend = v->backend;
  cloop_loop *loop = NULL;
  int rc = cloop_loop_new(&loop, &opts);
  if (rc == CLOOP_ENOBACKEND) {
    fprintf(stderr, "%s: %s: backend %s not available (%s), skipped\n",
            g_workload, v->impl, cloop_backend_name(v->backend),
            cloop_strerror(rc));
    return NULL;
  }
  if (rc < 0)
    fail("%s: cloop_loop_new: %s", v->impl, cloop_strerror(rc));
  if (cloop_loop_backend(loop) != v->backend)
    fail("%s: asked for backend %s, got %s", v->impl,
         cloop_backend_name(v->backend),
         cloop_backend_name(cloop_loop_backend(loop)));
  /* Timers count from the cached time: make it current, untimed. */
  cloop_update_time(loop);
  return loop;
}

static void free_loop(const struct variant *v, cloop_loop *loop) {
  int rc = cloop_loop_free(loop);
  if (rc < 0)
    fail("%s: cloop_loop_free: %s", v->impl, cloop_strerror(rc));
}

static void check_run(const struct variant *v, int rc) {
  if (rc < 0)
    fail("%s: cloop_run: %s", v->impl, cloop_strerror(rc));
  if (rc != 0)
    fail("%s: cloop_run returned %d, expected 0 (nothing left)", v->impl, rc);
}

/* ---- callbacks ---------------------------------------------------------- */

#define CHAINS 64

static struct {
  cloop_loop *loop;
  uint64_t left; /* callbacks still to run, queued ones included */
} cb;

/* One step of a chain: arg is the chain's own handle. While at least CHAINS
   callbacks are still due besides the other queued chains, it re-queues
   itself, so exactly N callbacks run in total. */
static void on_callback(void *arg) {
  if (--cb.left >= CHAINS)
    cloop_call_soon(cb.loop, (cloop_handle *)arg);
}

static uint64_t bench_callbacks(const struct variant *v, cloop_loop *loop,
                                uint64_t n) {
  static cloop_handle chains[CHAINS];
  uint64_t nchains = n < CHAINS ? n : CHAINS;
  cb.loop = loop;
  cb.left = n;

  uint64_t t0 = now_ns();
  for (uint64_t i = 0; i < nchains; i++) {
    cloop_handle_init(&chains[i], on_callback, &chains[i]);
    cloop_call_soon(loop, &chains[i]);
  }
  int rc = cloop_run(loop);
  uint64_t t1 = now_ns();

  check_run(v, rc);
  if (cb.left != 0)
    fail("%s: %" PRIu64 " of %" PRIu64 " callbacks did not run", v->impl,
         cb.left, n);
  for (uint64_t i = 0; i < nchains; i++)
    if (cloop_handle_queued(&chains[i]))
      fail("%s: chain %" PRIu64 " is still queued", v->impl, i);
  return t1 - t0;
}

/* ---- timers ------------------------------------------------------------- */

static uint64_t timers_fired;

static void on_timer(void *arg) {
  (void)arg;
  timers_fired++;
}

static uint64_t bench_timers(const struct variant *v, cloop_loop *loop,
                             uint64_t n) {
  cloop_timer *timers = xmalloc(n * sizeof *timers);
  int64_t *delay_ns = xmalloc(n * sizeof *delay_ns);
  rng_reset();
  for (uint64_t i = 0; i < n; i++)
    delay_ns[i] = (int64_t)(rng_next() % 1000) * 1000; /* µs -> ns */
  timers_fired = 0;

  uint64_t t0 = now_ns();
  for (uint64_t i = 0; i < n; i++) {
    cloop_timer_init(&timers[i], on_timer, NULL);
    int rc = cloop_call_later(loop, &timers[i], delay_ns[i]);
    if (rc < 0)
      fail("%s: cloop_call_later: %s", v->impl, cloop_strerror(rc));
  }
  int rc = cloop_run(loop);
  uint64_t t1 = now_ns();

  check_run(v, rc);
  if (timers_fired != n)
    fail("%s: %" PRIu64 " of %" PRIu64 " timers fired", v->impl,
         timers_fired, n);
  if (cloop_timer_count(loop) != 0)
    fail("%s: %zu timers left in the heap", v->impl, cloop_timer_count(loop));
  for (uint64_t i = 0; i < n; i++)
    if (cloop_timer_active(&timers[i]))
      fail("%s: timer %" PRIu64 " still active after firing", v->impl, i);
  free(delay_ns);
  free(timers);
  return t1 - t0;
}

/* ---- timers-cancel ------------------------------------------------------ */

static uint64_t bench_timers_cancel(const struct variant *v, cloop_loop *loop,
                                    uint64_t n) {
  cloop_timer *timers = xmalloc(n * sizeof *timers);
  int64_t *delay_ns = xmalloc(n * sizeof *delay_ns);
  uint64_t *order = xmalloc(n * sizeof *order);
  rng_reset();
  /* The delays first, then the Fisher-Yates indices; order[0] goes first. */
  for (uint64_t i = 0; i < n; i++)
    delay_ns[i] = (int64_t)(1000000 + rng_next() % 1000000) * 1000;
  for (uint64_t i = 0; i < n; i++)
    order[i] = i;
  for (uint64_t i = n - 1; i >= 1; i--) {
    uint64_t j = rng_next() % (i + 1), tmp = order[i];
    order[i] = order[j];
    order[j] = tmp;
  }
  timers_fired = 0;
  uint64_t cancelled = 0;

  uint64_t t0 = now_ns();
  for (uint64_t i = 0; i < n; i++) {
    cloop_timer_init(&timers[i], on_timer, NULL);
    int rc = cloop_call_later(loop, &timers[i], delay_ns[i]);
    if (rc < 0)
      fail("%s: cloop_call_later: %s", v->impl, cloop_strerror(rc));
  }
  for (uint64_t i = 0; i < n; i++)
    cancelled += (uint64_t)cloop_timer_cancel(loop, &timers[order[i]]);
  uint64_t t1 = now_ns();

  /* Untimed: the loop has nothing left, so it must return at once. */
  int rc = cloop_run(loop);
  uint64_t t2 = now_ns();

  check_run(v, rc);
  if (cancelled != n)
    fail("%s: cloop_timer_cancel returned 1 for %" PRIu64 " of %" PRIu64
         " timers",
         v->impl, cancelled, n);
  if (timers_fired != 0)
    fail("%s: %" PRIu64 " cancelled timers fired", v->impl, timers_fired);
  if (t2 - t1 >= 500000000u)
    fail("%s: the idle run took %.3f s, it should return at once", v->impl,
         (double)(t2 - t1) / 1e9);
  if (cloop_timer_count(loop) != 0)
    fail("%s: %zu timers left in the heap", v->impl, cloop_timer_count(loop));
  for (uint64_t i = 0; i < n; i++)
    if (cloop_timer_active(&timers[i]))
      fail("%s: timer %" PRIu64 " still active after its cancel", v->impl, i);
  free(order);
  free(delay_ns);
  free(timers);
  return t1 - t0;
}

/* ---- switch modes (switch, future) -------------------------------------- */

/* One RESULT line per entry. A mode this machine lacks (the asm ones off
   x86-64, where cloop__switch_resolve falls back to ucontext) is skipped
   with a note rather than measured under a name that would not fit. */
static const struct switch_variant {
  const char *impl;
  cloop_switch mode;
} SWITCH_VARIANTS[] = {
    {"cloop", CLOOP_SWITCH_ASM},
    {"cloop-fast", CLOOP_SWITCH_FAST},
    {"cloop-ucontext", CLOOP_SWITCH_UCONTEXT},
};

#define NSWITCH_VARIANTS (sizeof SWITCH_VARIANTS / sizeof SWITCH_VARIANTS[0])

static int switch_available(const struct switch_variant *v) {
  cloop_switch resolved;
  if (cloop__switch_resolve(v->mode, &resolved) < 0)
    fail("%s: cloop__switch_resolve rejected mode %s", v->impl,
         cloop_switch_name(v->mode));
  if (resolved != v->mode) {
    fprintf(stderr, "%s: %s: switch %s not available here (it would be %s), "
                    "skipped\n",
            g_workload, v->impl, cloop_switch_name(v->mode),
            cloop_switch_name(resolved));
    return 0;
  }
  return 1;
}

/* ---- switch ------------------------------------------------------------- */

/* The raw switch of coro.h, as the boost peer times jump_fcontext: main
   and pong hand control to each other. Pong counts the times it gets
   control in a local (a callee-saved register across the switch, so the
   count costs the timed loop nothing) and publishes it when stopped: after
   the start and R timed rounds it must be R + 1, as each of main's R
   switches must have come back from exactly one run of pong.
   (Counters in memory, bumped by both sides, cost 0.15-0.2 ns a transfer:
   the compiler merged them into 16-byte loads that the other side's 8-byte
   store had to forward into.) */
static struct {
  cloop__ctx main, pong;
  cloop_switch mode;
  int stop;
  uint64_t pong_runs; /* times pong got control, set when it stops */
} sw;

static void pong_entry(void *arg) {
  (void)arg;
  const cloop_switch mode = sw.mode;
  uint64_t runs = 0;
  while (!sw.stop) {
    runs++;
    cloop__ctx_switch(&sw.pong, &sw.main, mode);
  }
  sw.pong_runs = runs;
  cloop__ctx_exit(&sw.pong, &sw.main, mode);
}

static uint64_t bench_switch_one(const struct switch_variant *v,
                                 uint64_t rounds) {
  cloop__stack_pool pool;
  cloop__stack_pool_init(&pool, CLOOP_STACK_DEFAULT);
  char *stack = cloop__stack_take(&pool);
  if (!stack)
    fail("%s: cloop__stack_take: out of memory", v->impl);
  memset(&sw, 0, sizeof sw);
  sw.mode = v->mode;
  int rc = cloop__ctx_make(&sw.pong, v->mode, stack, pool.size, pong_entry,
                           NULL);
  if (rc < 0)
    fail("%s: cloop__ctx_make: %s", v->impl, cloop_strerror(rc));
  const cloop_switch mode = v->mode;
  cloop__ctx_switch(&sw.main, &sw.pong, mode); /* start pong, untimed */

  uint64_t t0 = now_ns();
  for (uint64_t i = 0; i < rounds; i++)
    cloop__ctx_switch(&sw.main, &sw.pong, mode);
  uint64_t t1 = now_ns();

  /* Untimed: pong leaves its loop, publishes its count and ends with
     cloop__ctx_exit, which comes back here. */
  sw.stop = 1;
  cloop__ctx_switch(&sw.main, &sw.pong, mode);
  if (sw.pong_runs != 1 + rounds)
    fail("%s: pong ran %" PRIu64 " times for %" PRIu64 " transfers, expected "
         "%" PRIu64 " (the start and one per round)",
         v->impl, sw.pong_runs, 2 * rounds, 1 + rounds);
  cloop__ctx_free(&sw.pong);
  cloop__ctx_free(&sw.main);
  cloop__stack_give(&pool, stack);
  cloop__stack_pool_free(&pool);
  return t1 - t0;
}

/* cloop-yield: the switch workload as two tasks handing over through the
   loop, each cloop_sleep(0) parking one and resuming the other (the C twin
   of tinyasync-fiber's hand-over): two switches and a trip through the
   ready ring per transfer, where the raw switch above is one switch. */
static struct {
  uint64_t rounds, other_runs;
} yl;

static intptr_t yield_other(void *arg) {
  (void)arg;
  for (uint64_t i = 0; i <= yl.rounds; i++) {
    yl.other_runs++;
    if (cloop_sleep(0) < 0)
      return -1;
  }
  return 0;
}

static intptr_t yield_main(void *arg) {
  uint64_t *wall = arg;
  cloop_loop *loop = cloop_task_loop(cloop_current_task());
  cloop_task *other;
  if (cloop_spawn(loop, &other, yield_other, NULL, "other") < 0)
    return -1;
  cloop_sleep(0); /* the other side starts and parks in its first yield */
  uint64_t t0 = now_ns();
  for (uint64_t i = 0; i < yl.rounds; i++)
    cloop_sleep(0);
  *wall = now_ns() - t0;
  intptr_t r = cloop_task_join(other);
  cloop_task_release(other);
  return r;
}

static void bench_yield(uint64_t rounds) {
  memset(&yl, 0, sizeof yl);
  yl.rounds = rounds;
  uint64_t wall = 0;
  cloop_options opts;
  cloop_options_init(&opts);
  opts.backend = CLOOP_BACKEND_EPOLL;
  intptr_t r = cloop_main(yield_main, &wall, &opts);
  if (r != 0 || yl.other_runs != rounds + 1)
    fail("cloop-yield: %" PRIdPTR ", the other task ran %" PRIu64 " times for "
         "%" PRIu64 " rounds", r, yl.other_runs, rounds);
  print_result("switch", "cloop-yield", 2 * rounds,
               (double)wall / (double)(2 * rounds), "ns/op");
}

static void bench_switch(uint64_t n) {
  /* A round is two transfers: to pong and back. */
  uint64_t rounds = (n + 1) / 2;
  int measured = 0;
  for (size_t i = 0; i < NSWITCH_VARIANTS; i++) {
    const struct switch_variant *v = &SWITCH_VARIANTS[i];
    if (!switch_available(v))
      continue;
    uint64_t wall = bench_switch_one(v, rounds);
    print_result("switch", v->impl, 2 * rounds,
                 (double)wall / (double)(2 * rounds), "ns/op");
    measured++;
  }
  if (!measured)
    fail("no switch mode could run");
  bench_yield(rounds);
}

/* ---- future ------------------------------------------------------------- */

/* One round's future and the handle that completes it with `value`. They
   live on the task's stack, as a local future would. */
struct future_round {
  cloop_future future;
  cloop_handle set;
  intptr_t value;
};

static const struct switch_variant *fut_variant;

static void on_set_result(void *arg) {
  struct future_round *r = arg;
  int rc = cloop_future_set_result(&r->future, r->value);
  if (rc != 0)
    fail("%s: cloop_future_set_result: %s", fut_variant->impl,
         cloop_strerror(rc));
}

static struct {
  cloop_loop *loop;
  uint64_t n;
  uint64_t wall;
} fut;

/* The task: N times create a future, call_soon its completion, await it.
   Returns N once every value has checked out. */
static intptr_t future_task(void *arg) {
  (void)arg;
  cloop_loop *loop = fut.loop;
  uint64_t n = fut.n;
  uint64_t t0 = now_ns();
  for (uint64_t i = 0; i < n; i++) {
    struct future_round r;
    cloop_future_init(&r.future, loop);
    r.value = (intptr_t)i;
    cloop_handle_init(&r.set, on_set_result, &r);
    cloop_call_soon(loop, &r.set);
    intptr_t value = -1;
    int rc = cloop_await(&r.future, &value);
    if (rc != 0)
      fail("%s: cloop_await: %s", fut_variant->impl, cloop_strerror(rc));
    if (value != (intptr_t)i)
      fail("%s: round %" PRIu64 ": awaited %" PRIdPTR ", expected %" PRIu64,
           fut_variant->impl, i, value, i);
  }
  uint64_t t1 = now_ns();
  fut.wall = t1 - t0;
  return (intptr_t)n;
}

static uint64_t bench_future_one(const struct switch_variant *v, uint64_t n) {
  fut_variant = v;
  cloop_options opts;
  cloop_options_init(&opts);
  opts.backend = CLOOP_BACKEND_EPOLL;
  opts.switch_mode = v->mode;
  cloop_loop *loop = NULL;
  int rc = cloop_loop_new(&loop, &opts);
  if (rc < 0)
    fail("%s: cloop_loop_new: %s", v->impl, cloop_strerror(rc));
  if (cloop_loop_backend(loop) != CLOOP_BACKEND_EPOLL)
    fail("%s: asked for backend epoll, got %s", v->impl,
         cloop_backend_name(cloop_loop_backend(loop)));
  if (cloop_loop_switch(loop) != v->mode)
    fail("%s: asked for switch %s, got %s", v->impl,
         cloop_switch_name(v->mode),
         cloop_switch_name(cloop_loop_switch(loop)));
  fut.loop = loop;
  fut.n = n;
  fut.wall = 0;

  cloop_task *task = NULL;
  rc = cloop_spawn(loop, &task, future_task, NULL, "future");
  if (rc < 0)
    fail("%s: cloop_spawn: %s", v->impl, cloop_strerror(rc));
  rc = cloop_run(loop);
  if (rc < 0)
    fail("%s: cloop_run: %s", v->impl, cloop_strerror(rc));
  if (rc != 0)
    fail("%s: cloop_run returned %d, expected 0 (nothing left)", v->impl, rc);

  cloop_future *done = cloop_task_future(task);
  if (done->state != CLOOP_DONE)
    fail("%s: the task ended in state %d with error %d (%s)", v->impl,
         done->state, done->error, cloop_strerror(done->error));
  if (done->value != (intptr_t)n)
    fail("%s: the task returned %" PRIdPTR ", expected %" PRIu64, v->impl,
         done->value, n);
  cloop_task_release(task);
  rc = cloop_loop_free(loop);
  if (rc < 0)
    fail("%s: cloop_loop_free: %s", v->impl, cloop_strerror(rc));
  return fut.wall;
}

static void bench_future(uint64_t n) {
  int measured = 0;
  for (size_t i = 0; i < NSWITCH_VARIANTS; i++) {
    const struct switch_variant *v = &SWITCH_VARIANTS[i];
    if (!switch_available(v))
      continue;
    uint64_t wall = bench_future_one(v, n);
    print_result("future", v->impl, n, (double)wall / (double)n, "ns/op");
    measured++;
  }
  if (!measured)
    fail("no switch mode could run");
}

/* ---- spawn and sleepers: many tasks, private or shared stacks ----------- */

/* Each variant runs in a child process of its own: peak RSS is the
   process's, and the first variant's must not count against the second. */
static const struct stack_variant {
  const char *impl;
  cloop_stack_mode stack;
} STACK_VARIANTS[] = {
    {"cloop", CLOOP_STACK_PRIVATE},
    {"cloop-shared", CLOOP_STACK_SHARED},
};

static double peak_rss_mib(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_maxrss / 1024.0;
}

static struct {
  uint64_t n;
  cloop_stack_mode stack;
  const intptr_t *sleep_ms; /* sleepers: task i sleeps sleep_ms[i] */
} many;

static intptr_t spawn_child(void *arg) {
  int r = cloop_sleep(0); /* yield to the loop once */
  return r < 0 ? r : (intptr_t)arg;
}

static intptr_t sleeper_child(void *arg) {
  return cloop_sleep((intptr_t)arg * 1000000);
}

/* Spawns N tasks of body (argument i, or sleep_ms[i]), gathers them and
   returns the sum of their results. */
static intptr_t many_main(void *arg) {
  cloop_task_fn body = (cloop_task_fn)arg;
  cloop_loop *loop = cloop_task_loop(cloop_current_task());
  uint64_t n = many.n;
  cloop_task **tasks = xmalloc(n * sizeof *tasks);
  cloop_future **futures = xmalloc(n * sizeof *futures);
  intptr_t *results = xmalloc(n * sizeof *results);
  cloop_spawn_options opts = {NULL, many.stack};
  for (uint64_t i = 0; i < n; i++) {
    void *a = (void *)(many.sleep_ms ? many.sleep_ms[i] : (intptr_t)i);
    int rc = cloop_spawn_ex(loop, &tasks[i], body, a, &opts);
    if (rc < 0)
      fail("cloop_spawn_ex: %s", cloop_strerror(rc));
    futures[i] = cloop_task_future(tasks[i]);
  }
  int rc = cloop_gather(futures, n, results);
  if (rc < 0)
    fail("cloop_gather: %s", cloop_strerror(rc));
  intptr_t sum = 0;
  for (uint64_t i = 0; i < n; i++) {
    sum += results[i];
    cloop_task_release(tasks[i]);
  }
  free(tasks);
  free(futures);
  free(results);
  return sum;
}

/* Runs body's workload once per stack variant, each in a child process;
   the child prints its RESULT lines. */
static void run_many(const char *workload, uint64_t n, cloop_task_fn body,
                     intptr_t expect, int report_ms) {
  for (size_t i = 0; i < sizeof STACK_VARIANTS / sizeof STACK_VARIANTS[0]; i++) {
    const struct stack_variant *v = &STACK_VARIANTS[i];
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
      fail("fork: %s", strerror(errno));
    if (pid == 0) {
      many.n = n;
      many.stack = v->stack;
      uint64_t t0 = now_ns();
      intptr_t sum = cloop_main(many_main, (void *)body, NULL);
      uint64_t t1 = now_ns();
      if (sum != expect)
        fail("%s: the tasks' results add up to %" PRIdPTR ", expected %" PRIdPTR,
             v->impl, sum, expect);
      if (report_ms)
        print_result(workload, v->impl, n, (double)(t1 - t0) / 1e6, "ms");
      else
        print_result(workload, v->impl, n, (double)(t1 - t0) / (double)n, "ns/op");
      print_result(workload, v->impl, n, peak_rss_mib(), "MiB");
      exit(0);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
      fail("%s: the child running it failed", v->impl);
  }
}

/* spawn: task i yields once and returns i; gather all; the sum must be
   N(N-1)/2. Timed from the first spawn to the loop's close. */
static void bench_spawn(uint64_t n) {
  many.sleep_ms = NULL;
  run_many("spawn", n, spawn_child, (intptr_t)(n * (n - 1) / 2), 0);
}

/* sleepers: N tasks at once, task i sleeps next() % 1000 ms (drawn before
   the clock); wall time from the first spawn to the loop's close. */
static void bench_sleepers(uint64_t n) {
  intptr_t *ms = xmalloc(n * sizeof *ms);
  rng_reset();
  for (uint64_t i = 0; i < n; i++)
    ms[i] = (intptr_t)(rng_next() % 1000);
  many.sleep_ms = ms;
  run_many("sleepers", n, sleeper_child, 0, 1);
  free(ms);
}

/* ---- main --------------------------------------------------------------- */

/* A loop workload runs once per backend variant (run); a coroutine
   workload runs its own variants and prints its lines (run_all). */
static const struct workload {
  const char *name;
  uint64_t default_n;
  uint64_t (*run)(const struct variant *, cloop_loop *, uint64_t);
  void (*run_all)(uint64_t);
} WORKLOADS[] = {
    {"callbacks", 5000000, bench_callbacks, NULL},
    {"timers", 1000000, bench_timers, NULL},
    {"timers-cancel", 1000000, bench_timers_cancel, NULL},
    {"switch", 10000000, NULL, bench_switch},
    {"future", 1000000, NULL, bench_future},
    {"spawn", 1000000, NULL, bench_spawn},
    {"sleepers", 100000, NULL, bench_sleepers},
};

static void usage(void) {
  fprintf(stderr, "usage: cloop-bench "
                  "callbacks|timers|timers-cancel|switch|future|spawn|sleepers [--n N]\n");
  exit(2);
}

/* N from "--n N" (or "--n=N") among argv[2..], else dflt. */
static uint64_t parse_n(int argc, char **argv, uint64_t dflt) {
  uint64_t n = dflt;
  for (int i = 2; i < argc; i++) {
    const char *text = NULL;
    if (strcmp(argv[i], "--n") == 0 && i + 1 < argc)
      text = argv[++i];
    else if (strncmp(argv[i], "--n=", 4) == 0)
      text = argv[i] + 4;
    else {
      fprintf(stderr, "cloop-bench: bad argument '%s': the only option is --n N\n",
              argv[i]);
      usage();
    }
    char *end;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    /* The timer heap's slots are 32-bit (CLOOP_TIMER_IDLE is UINT32_MAX). */
    if (errno || end == text || *end || text[0] == '-' || value == 0 ||
        value >= UINT32_MAX) {
      fprintf(stderr, "cloop-bench: bad N '%s' (0 < N < 2^32)\n", text);
      usage();
    }
    n = value;
  }
  return n;
}

int main(int argc, char **argv) {
  if (argc < 2)
    usage();
  const struct workload *w = NULL;
  for (size_t i = 0; i < sizeof WORKLOADS / sizeof WORKLOADS[0]; i++)
    if (strcmp(argv[1], WORKLOADS[i].name) == 0)
      w = &WORKLOADS[i];
  if (!w) {
    fprintf(stderr, "cloop-bench: unknown workload '%s'\n", argv[1]);
    usage();
  }
  g_workload = w->name;
  uint64_t n = parse_n(argc, argv, w->default_n);
  if (w->run_all) {
    w->run_all(n);
    return 0;
  }

  int measured = 0;
  for (size_t i = 0; i < NVARIANTS; i++) {
    const struct variant *v = &VARIANTS[i];
    cloop_loop *loop = new_loop(v);
    if (!loop)
      continue;
    uint64_t wall = w->run(v, loop, n);
    free_loop(v, loop);
    print_result(w->name, v->impl, n, (double)wall / (double)n, "ns/op");
    measured++;
  }
  if (!measured)
    fail("no backend variant could run");
  return 0;
}
