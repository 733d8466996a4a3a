/* group_bench.c -- the group's workloads for bench/project-bench:
 *
 *   group-callbacks: each of L loops of a cloop_group runs WORKLOADS.md's
 *     callbacks workload (64 chains re-scheduling themselves with
 *     call_soon until N callbacks have run on that loop) at the same time;
 *     value: aggregate callbacks per second over all loops, one RESULT per
 *     L (1 and 2 by default: impl cloop-group-1, cloop-group-2). The goal
 *     is 2 loops >= 1.8 x one: nothing is shared on the hot path.
 *   cross-loop: a task on loop 0 hands a zero-work call to loop 1
 *     (cloop_spawn_remote) and awaits its result, N times; ns per round
 *     trip (two thread-safe calls, a spawn on loop 1, a wake-up of each
 *     loop when it was idle).
 *
 *   usage: cloop-group-bench group-callbacks|cross-loop [--n N] [--loops L] */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cloop.h"

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void fail(const char *what, int rc) {
  fprintf(stderr, "cloop-group-bench: %s: %s\n", what, cloop_strerror(rc));
  exit(1);
}

/* ---- group-callbacks ---------------------------------------------------- */

#define CHAINS 64

struct per_loop;
struct chain {
  cloop_handle h;
  struct per_loop *p;
};

/* One loop's state, a cache line (and more) of its own. */
struct per_loop {
  cloop_loop *loop;
  uint64_t left;
  struct chain chains[CHAINS];
  cloop_handle start;
  uint64_t t0, t1;
  _Atomic int done;
} __attribute__((aligned(128)));

static struct per_loop *pl;
static uint64_t per_loop_n;
static _Atomic int go;

static void on_chain(void *arg);

static void start_chains(void *arg) {
  struct per_loop *p = arg;
  while (!atomic_load_explicit(&go, memory_order_acquire)) {
  } /* all loops start together */
  p->left = per_loop_n;
  p->t0 = now_ns();
  for (int i = 0; i < CHAINS; i++) {
    p->chains[i].p = p;
    cloop_handle_init(&p->chains[i].h, on_chain, &p->chains[i]);
    cloop_call_soon(p->loop, &p->chains[i].h);
  }
}

/* One step of a chain: re-queues itself while at least CHAINS callbacks
   are due besides the queued chains, as cloop_bench.c's callbacks does. */
static void on_chain(void *arg) {
  struct chain *c = arg;
  struct per_loop *p = c->p;
  if (--p->left >= CHAINS) {
    cloop_call_soon(p->loop, &c->h);
  } else if (p->left == 0) {
    p->t1 = now_ns();
    atomic_store(&p->done, 1);
  }
}

static void bench_group_callbacks(int loops, uint64_t n) {
  cloop_group_options o;
  cloop_group_options_init(&o);
  o.loops = loops;
  o.pin = 1;
  o.loop.backend = CLOOP_BACKEND_EPOLL;
  cloop_group *g;
  int rc = cloop_group_start(&g, &o);
  if (rc < 0)
    fail("cloop_group_start", rc);
  pl = aligned_alloc(128, sizeof *pl * (size_t)loops);
  memset(pl, 0, sizeof *pl * (size_t)loops);
  per_loop_n = n;
  atomic_store(&go, 0);
  for (int i = 0; i < loops; i++) {
    pl[i].loop = cloop_group_loop(g, i);
    cloop_handle_init(&pl[i].start, start_chains, &pl[i]);
    cloop_call_threadsafe(pl[i].loop, &pl[i].start);
  }
  usleep(20000); /* every loop is in start_chains, spinning on go */
  atomic_store_explicit(&go, 1, memory_order_release);
  uint64_t first = UINT64_MAX, last = 0;
  for (int i = 0; i < loops; i++) {
    while (!atomic_load(&pl[i].done))
      usleep(200);
    if (pl[i].t0 < first)
      first = pl[i].t0;
    if (pl[i].t1 > last)
      last = pl[i].t1;
  }
  rc = cloop_group_stop(g, 0);
  if (rc < 0)
    fail("cloop_group_stop", rc);
  double per_s = (double)n * loops / ((double)(last - first) / 1e9);
  printf("RESULT workload=group-callbacks impl=cloop-group-%d n=%" PRIu64
         " value=%.0f unit=callbacks/s\n", loops, n * (uint64_t)loops, per_s);
  fflush(stdout);
  free(pl);
}

/* ---- cross-loop --------------------------------------------------------- */

static cloop_group *xg;
static uint64_t xn, xwall;
static _Atomic int xdone;

static intptr_t zero_work(void *arg) {
  (void)arg;
  return 1;
}

static intptr_t cross_task(void *arg) {
  (void)arg;
  cloop_loop *a = cloop_group_loop(xg, 0), *b = cloop_group_loop(xg, 1);
  uint64_t t0 = now_ns();
  for (uint64_t i = 0; i < xn; i++) {
    cloop_promise *p;
    int rc = cloop_spawn_remote(a, b, &p, zero_work, NULL, NULL);
    if (rc < 0)
      fail("cloop_spawn_remote", rc);
    intptr_t v;
    rc = cloop_await(cloop_promise_future(p), &v);
    if (rc < 0 || v != 1)
      fail("cloop_await", rc);
    cloop_promise_release(p);
  }
  xwall = now_ns() - t0;
  atomic_store(&xdone, 1);
  return 0;
}

static void start_cross(void *arg) {
  (void)arg;
  int rc = cloop_spawn(cloop_group_loop(xg, 0), NULL, cross_task, NULL, "cross");
  if (rc < 0)
    fail("cloop_spawn", rc);
}

static void bench_cross_loop(uint64_t n) {
  cloop_group_options o;
  cloop_group_options_init(&o);
  o.loops = 2;
  o.pin = 1;
  o.loop.backend = CLOOP_BACKEND_EPOLL;
  int rc = cloop_group_start(&xg, &o);
  if (rc < 0)
    fail("cloop_group_start", rc);
  xn = n;
  cloop_handle h = CLOOP_HANDLE_INIT(start_cross, NULL);
  cloop_call_threadsafe(cloop_group_loop(xg, 0), &h);
  while (!atomic_load(&xdone))
    usleep(1000);
  rc = cloop_group_stop(xg, 0);
  if (rc < 0)
    fail("cloop_group_stop", rc);
  printf("RESULT workload=cross-loop impl=cloop-group n=%" PRIu64
         " value=%.1f unit=ns/op\n", n, (double)xwall / (double)n);
  fflush(stdout);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: cloop-group-bench group-callbacks|cross-loop [--n N] [--loops L]\n");
    return 2;
  }
  const char *w = argv[1];
  uint64_t n = 0;
  int loops = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--n") == 0)
      n = strtoull(argv[i + 1], NULL, 10);
    else if (strcmp(argv[i], "--loops") == 0)
      loops = atoi(argv[i + 1]);
  }
  if (strcmp(w, "group-callbacks") == 0) {
    if (!n)
      n = 5000000;
    if (loops) {
      bench_group_callbacks(loops, n);
    } else {
      bench_group_callbacks(1, n);
      bench_group_callbacks(2, n);
    }
  } else if (strcmp(w, "cross-loop") == 0) {
    bench_cross_loop(n ? n : 100000);
  } else {
    fprintf(stderr, "cloop-group-bench: unknown workload %s\n", w);
    return 2;
  }
  return 0;
}
