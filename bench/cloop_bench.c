/* CLoop side of the callbacks, timers and timers-cancel workloads of
   /work/shared/peers/WORKLOADS.md, one RESULT line per loop backend.

   usage: cloop-bench callbacks|timers|timers-cancel [--n N]

   Timing boundaries follow the peers' (shared/peers/c/uv_bench.c):
   - the loop is created, and its cached time refreshed, before the clock;
   - random inputs (delays, the cancel order) are drawn before the clock,
     and the timers' memory is one array allocated (not touched) before it;
   - timers-cancel times insert + cancel only; the run until idle that
     follows is untimed and must return at once with no timer fired.
   Any failed check prints a message on stderr and exits 1. */
#include <cloop.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    /* {"cloop-uring", CLOOP_BACKEND_URING}, */
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

/* ---- main --------------------------------------------------------------- */

static const struct workload {
  const char *name;
  uint64_t default_n;
  uint64_t (*run)(const struct variant *, cloop_loop *, uint64_t);
} WORKLOADS[] = {
    {"callbacks", 5000000, bench_callbacks},
    {"timers", 1000000, bench_timers},
    {"timers-cancel", 1000000, bench_timers_cancel},
};

static void usage(void) {
  fprintf(stderr, "usage: cloop-bench callbacks|timers|timers-cancel [--n N]\n");
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
