/* test_timers.c -- call_later / call_at on the 4-ary heap: order, ties,
 * edge delays, cancel, and the cached clock across a real sleep. */
#include "test.h"

#include <pthread.h>
#include <time.h>

#define MS 1000000LL

typedef struct fired {
  cloop_timer t;
  cloop_loop *loop;
  int id;
  int runs;
  uint64_t now_at_run;
  int *log, *nlog;
} fired;

static void on_fire(void *arg) {
  fired *f = arg;
  f->runs++;
  f->now_at_run = cloop_now(f->loop);
  if (f->log)
    f->log[(*f->nlog)++] = f->id;
}

static void fired_init(fired *f, cloop_loop *loop, int id, int *log,
                       int *nlog) {
  memset(f, 0, sizeof *f);
  cloop_timer_init(&f->t, on_fire, f);
  f->loop = loop;
  f->id = id;
  f->log = log;
  f->nlog = nlog;
}

TEST_IMPL(timers_order_ties) {
  enum { N = 1000 };
  cloop_loop *loop;
  fired *fs = calloc(N, sizeof *fs);
  int *log = calloc(N, sizeof *log), nlog = 0;
  ASSERT(fs && log);
  ASSERT_EQ(cloop_loop_new(&loop, NULL), 0);
  cloop_debug_manual_clock(loop, TEST_CLOCK_START); /* exact: no sleeping */

  /* Only 10 distinct deadlines, 1 ms away, so almost every timer ties. */
  uint64_t base = cloop_now(loop) + 1 * MS;
  for (int i = 0; i < N; i++) {
    fired_init(&fs[i], loop, i, log, &nlog);
    ASSERT_EQ(cloop_call_at(loop, &fs[i].t, base + (uint64_t)(i * 7919 % 10) * 1000), 0);
    ASSERT_EQ(fs[i].t.deadline, base + (uint64_t)(i * 7919 % 10) * 1000);
  }
  ASSERT_EQ(cloop_timer_count(loop), N);
  ASSERT_EQ(cloop_debug_verify_heap(loop), 0);

  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(nlog, N);
  for (int k = 0; k < N; k++) {
    fired *f = &fs[log[k]];
    ASSERT_EQ(f->runs, 1);
    ASSERT_EQ(f->now_at_run, f->t.deadline); /* never early, nor late */
    if (k > 0) {
      fired *prev = &fs[log[k - 1]];
      ASSERT_LE(prev->t.deadline, f->t.deadline);
      if (prev->t.deadline == f->t.deadline)
        ASSERT_LT(prev->id, f->id); /* ties in scheduling order */
    }
  }
  ASSERT_EQ(cloop_timer_count(loop), 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  free(fs);
  free(log);
  return 0;
}

TEST_IMPL(timers_negative_delay) {
  cloop_loop *loop;
  fired f, g;
  ASSERT_EQ(cloop_loop_new(&loop, NULL), 0);
  fired_init(&f, loop, 0, NULL, NULL);
  fired_init(&g, loop, 1, NULL, NULL);

  uint64_t now = cloop_now(loop);
  ASSERT_EQ(cloop_call_later(loop, &f.t, -5000 * MS), 0);
  ASSERT_EQ(f.t.deadline, now);
  ASSERT_EQ(cloop_call_later(loop, &g.t, INT64_MIN), 0);
  ASSERT_EQ(g.t.deadline, now);
  ASSERT_EQ(cloop_timer_active(&f.t), 1);
  ASSERT_EQ(cloop_timer_count(loop), 2);

  /* Due at once: the first iteration runs both, without waiting. */
  ASSERT_EQ(cloop_run_once(loop, 0), 0);
  ASSERT_EQ(f.runs, 1);
  ASSERT_EQ(g.runs, 1);
  ASSERT_EQ(cloop_timer_active(&f.t), 0);
  ASSERT_EQ(cloop_timer_count(loop), 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* Sleeps 10 ms, then wakes the loop with a thread-safe call. */
typedef struct waker {
  cloop_loop *loop;
  cloop_handle h;
  int runs;
} waker;

static void *wake_later(void *arg) {
  waker *w = arg;
  usleep(10000);
  cloop_call_threadsafe(w->loop, &w->h);
  return NULL;
}

static void count_run(void *arg) { (*(int *)arg)++; }

TEST_IMPL(timers_huge_delay) {
  cloop_loop *loop;
  fired f, g, near;
  ASSERT_EQ(cloop_loop_new(&loop, NULL), 0);
  fired_init(&f, loop, 0, NULL, NULL);
  fired_init(&g, loop, 1, NULL, NULL);
  fired_init(&near, loop, 2, NULL, NULL);

  uint64_t now = cloop_now(loop);
  ASSERT_EQ(cloop_call_later(loop, &f.t, INT64_MAX), 0);
  ASSERT_EQ(cloop_call_at(loop, &g.t, UINT64_MAX), 0);
  /* Saturated, not wrapped: still far in the future (>= 292 years of
     monotonic time), whatever the cap. Plain ASSERT: these values do not
     fit the long long that ASSERT_GE prints. */
  ASSERT(f.t.deadline >= now);
  ASSERT(f.t.deadline >= (uint64_t)INT64_MAX);
  ASSERT(g.t.deadline >= (uint64_t)INT64_MAX);
  ASSERT_EQ(cloop_debug_verify_heap(loop), 0);

  /* A near timer still fires first and on time; the far ones stay. */
  ASSERT_EQ(cloop_call_later(loop, &near.t, 2 * MS), 0);
  while (near.runs == 0)
    ASSERT_EQ(cloop_run_once(loop, 1000 * MS), 1);
  ASSERT_GE(near.now_at_run, now + 2 * MS);
  ASSERT_EQ(cloop_run_once(loop, 0), 1);
  ASSERT_EQ(cloop_run_once(loop, 1 * MS), 1);
  ASSERT_EQ(f.runs, 0);
  ASSERT_EQ(g.runs, 0);
  ASSERT_EQ(cloop_timer_active(&f.t), 1);
  ASSERT_EQ(cloop_timer_active(&g.t), 1);
  ASSERT_EQ(cloop_timer_count(loop), 2);

  /* With only the far timers left, an unbounded wait must really wait
     (no bogus timeout from the distance to them) and wake for a call. */
  waker w = {loop, CLOOP_HANDLE_INIT(count_run, &w.runs), 0};
  pthread_t tid;
  ASSERT_EQ(pthread_create(&tid, NULL, wake_later, &w), 0);
  int iterations = 0;
  for (; w.runs == 0; iterations++)
    ASSERT_EQ(cloop_run_once(loop, -1), 1);
  ASSERT_LE(iterations, 3);
  ASSERT_EQ(pthread_join(tid, NULL), 0);
  ASSERT_GE(cloop_now(loop), now + 10 * MS);
  ASSERT_EQ(f.runs, 0);
  ASSERT_EQ(g.runs, 0);

  ASSERT_EQ(cloop_timer_cancel(loop, &f.t), 1);
  ASSERT_EQ(cloop_timer_cancel(loop, &g.t), 1);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

TEST_IMPL(timers_cancel_count) {
  cloop_loop *loop;
  fired f[3];
  ASSERT_EQ(cloop_loop_new(&loop, NULL), 0);
  for (int i = 0; i < 3; i++) {
    fired_init(&f[i], loop, i, NULL, NULL);
    ASSERT_EQ(cloop_timer_active(&f[i].t), 0);
    ASSERT_EQ(cloop_call_later(loop, &f[i].t, (i + 1) * 1000 * MS), 0);
    ASSERT_EQ(cloop_timer_count(loop), i + 1);
  }

  ASSERT_EQ(cloop_timer_cancel(loop, &f[1].t), 1);
  ASSERT_EQ(cloop_timer_count(loop), 2);
  ASSERT_EQ(cloop_timer_active(&f[1].t), 0);
  ASSERT_EQ(f[1].t.index, CLOOP_TIMER_IDLE);
  ASSERT_EQ(cloop_timer_cancel(loop, &f[1].t), 0);
  ASSERT_EQ(cloop_timer_count(loop), 2);
  ASSERT_EQ(cloop_debug_verify_heap(loop), 0);

  ASSERT_EQ(cloop_timer_cancel(loop, &f[0].t), 1);
  ASSERT_EQ(cloop_timer_count(loop), 1);
  ASSERT_EQ(cloop_timer_cancel(loop, &f[2].t), 1);
  ASSERT_EQ(cloop_timer_count(loop), 0);

  /* Nothing left: the loop ends without waiting for the cancelled ones. */
  ASSERT_EQ(cloop_run(loop), 0);
  for (int i = 0; i < 3; i++)
    ASSERT_EQ(f[i].runs, 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

TEST_IMPL(timers_cancel_random_100k) {
  enum { N = 100000 };
  cloop_loop *loop;
  cloop_timer *ts = calloc(N, sizeof *ts);
  uint32_t *order = calloc(N, sizeof *order);
  uint64_t seed = 0x9E3779B97F4A7C15ULL;
  ASSERT(ts && order);
  ASSERT_EQ(cloop_loop_new(&loop, NULL), 0);

  /* Delays up to ~50 s in 1 ms steps: random, with many ties. */
  for (uint32_t i = 0; i < N; i++) {
    cloop_timer_init(&ts[i], NULL, NULL);
    int64_t delay = (int64_t)(test_rand(&seed) % 50000) * MS;
    ASSERT_EQ(cloop_call_later(loop, &ts[i], delay), 0);
    order[i] = i;
  }
  ASSERT_EQ(cloop_timer_count(loop), N);
  ASSERT_EQ(cloop_debug_verify_heap(loop), 0);

  for (uint32_t i = N - 1; i > 0; i--) { /* Fisher-Yates */
    uint32_t j = (uint32_t)(test_rand(&seed) % (i + 1));
    uint32_t tmp = order[i];
    order[i] = order[j];
    order[j] = tmp;
  }
  for (uint32_t k = 0; k < N; k++) {
    cloop_timer *t = &ts[order[k]];
    ASSERT_EQ(cloop_timer_cancel(loop, t), 1);
    ASSERT_EQ(t->index, CLOOP_TIMER_IDLE);
    if ((k + 1) % 1000 == 0) {
      ASSERT_EQ(cloop_debug_verify_heap(loop), 0);
      ASSERT_EQ(cloop_timer_count(loop), N - 1 - k);
    }
  }
  ASSERT_EQ(cloop_timer_count(loop), 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  free(ts);
  free(order);
  return 0;
}

/* a, b and c are due in the same iteration. a cancels b, which is then due
   but not yet run, and schedules d, also due, which as work queued by this
   batch waits for the next one; c cancels d before that. */
typedef struct due_ctx {
  cloop_loop *loop;
  fired a, b, c, d;
  int b_was_due, cancel_b, cancel_d;
} due_ctx;

static void a_run(void *arg) {
  due_ctx *q = arg;
  q->a.runs++;
  q->b_was_due = cloop_timer_active(&q->b.t) &&
                 q->b.t.deadline <= cloop_now(q->loop);
  q->cancel_b = cloop_timer_cancel(q->loop, &q->b.t);
  ASSERT_EQ(cloop_call_at(q->loop, &q->d.t, cloop_now(q->loop)), 0);
}

static void c_run(void *arg) {
  due_ctx *q = arg;
  q->c.runs++;
  q->cancel_d = cloop_timer_cancel(q->loop, &q->d.t);
}

TEST_IMPL(timers_cancel_queued) {
  due_ctx q;
  memset(&q, 0, sizeof q);
  q.b_was_due = q.cancel_b = q.cancel_d = -1;
  ASSERT_EQ(cloop_loop_new(&q.loop, NULL), 0);
  fired_init(&q.a, q.loop, 0, NULL, NULL);
  fired_init(&q.b, q.loop, 1, NULL, NULL);
  fired_init(&q.c, q.loop, 2, NULL, NULL);
  fired_init(&q.d, q.loop, 3, NULL, NULL);
  cloop_timer_init(&q.a.t, a_run, &q);
  cloop_timer_init(&q.c.t, c_run, &q);

  uint64_t due = cloop_now(q.loop);
  ASSERT_EQ(cloop_call_at(q.loop, &q.a.t, due), 0);
  ASSERT_EQ(cloop_call_at(q.loop, &q.b.t, due), 0);
  ASSERT_EQ(cloop_call_at(q.loop, &q.c.t, due), 0);

  ASSERT_EQ(cloop_run_once(q.loop, 0), 0);
  ASSERT_EQ(q.a.runs, 1);
  ASSERT_EQ(q.b_was_due, 1); /* so the cancel was of a due timer */
  ASSERT_EQ(q.cancel_b, 1);
  ASSERT_EQ(q.b.runs, 0);
  ASSERT_EQ(q.c.runs, 1);
  ASSERT_EQ(q.cancel_d, 1);
  ASSERT_EQ(q.d.runs, 0);
  ASSERT_EQ(cloop_timer_active(&q.b.t), 0);
  ASSERT_EQ(cloop_timer_active(&q.d.t), 0);
  ASSERT_EQ(cloop_timer_count(q.loop), 0);

  ASSERT_EQ(cloop_run(q.loop), 0);
  ASSERT_EQ(q.b.runs, 0);
  ASSERT_EQ(q.d.runs, 0);
  ASSERT_EQ(cloop_loop_free(q.loop), 0);
  return 0;
}

/* Due timers run in the batch after the handles queued before it, and
   what a batch schedules -- handles or due timers -- waits for the next. */
typedef struct batch_ctx {
  cloop_loop *loop;
  cloop_timer t;
  cloop_handle h1, h2;
  char log[8];
  int nlog;
} batch_ctx;

static void batch_h(void *arg) {
  batch_ctx *b = arg;
  b->log[b->nlog++] = 'h';
}

static void batch_t(void *arg) {
  batch_ctx *b = arg;
  b->log[b->nlog++] = 't';
  if (b->nlog < 4) {
    ASSERT_EQ(cloop_call_later(b->loop, &b->t, 0), 0);
    cloop_call_soon(b->loop, &b->h2);
  }
}

TEST_IMPL(timers_batch_order) {
  batch_ctx b;
  memset(&b, 0, sizeof b);
  ASSERT_EQ(cloop_loop_new(&b.loop, NULL), 0);
  cloop_timer_init(&b.t, batch_t, &b);
  cloop_handle_init(&b.h1, batch_h, &b);
  cloop_handle_init(&b.h2, batch_h, &b);

  ASSERT_EQ(cloop_call_at(b.loop, &b.t, cloop_now(b.loop)), 0);
  cloop_call_soon(b.loop, &b.h1);
  ASSERT_EQ(cloop_run_once(b.loop, 0), 1);
  ASSERT_EQ(b.nlog, 2);
  ASSERT(memcmp(b.log, "ht", 2) == 0);

  ASSERT_EQ(cloop_run_once(b.loop, 0), 0);
  ASSERT_EQ(b.nlog, 4);
  ASSERT(memcmp(b.log, "htht", 4) == 0);
  ASSERT_EQ(cloop_loop_free(b.loop), 0);
  return 0;
}

static void nop(void *arg) { (void)arg; }

static void cancel_on_other_loop(void *arg) {
  (void)arg;
  cloop_loop *a, *b;
  cloop_timer t;
  if (cloop_loop_new(&a, NULL) || cloop_loop_new(&b, NULL))
    return;
  cloop_timer_init(&t, nop, NULL);
  if (cloop_call_later(a, &t, 1000 * MS))
    return;
  cloop_timer_cancel(b, &t); /* must abort here */
}

TEST_IMPL(timers_cancel_other_loop_aborts) {
  test_expect_abort("cloop_timer_cancel on another loop",
                    cancel_on_other_loop, NULL, "misuse");
  return 0;
}

static void schedule_twice(void *arg) {
  (void)arg;
  cloop_loop *loop;
  cloop_timer t;
  if (cloop_loop_new(&loop, NULL))
    return;
  cloop_timer_init(&t, nop, NULL);
  if (cloop_call_later(loop, &t, 1000 * MS))
    return;
  cloop_call_later(loop, &t, 1000 * MS); /* must abort here */
}

TEST_IMPL(timers_reschedule_pending_aborts) {
  test_expect_abort("cloop_call_later on a pending timer", schedule_twice,
                    NULL, "misuse");
  return 0;
}

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

TEST_IMPL_POLL(timers_sleep_5ms) {
  cloop_loop *loop;
  fired f;
  LOOP_NEW(loop, backend);

  /* cloop_update_time follows the real clock. */
  uint64_t before = cloop_now(loop);
  usleep(2000);
  cloop_update_time(loop);
  ASSERT_GE(cloop_now(loop), before + 2 * MS);

  fired_init(&f, loop, 0, NULL, NULL);
  uint64_t t0 = cloop_now(loop), real0 = mono_ns(), prev = t0;
  ASSERT_EQ(cloop_call_later(loop, &f.t, 5 * MS), 0);
  int iterations = 0;
  while (f.runs == 0) {
    int r = cloop_run_once(loop, -1);
    ASSERT_GE(r, 0);
    ASSERT_GE(cloop_now(loop), prev); /* never backwards */
    prev = cloop_now(loop);
    iterations++;
  }
  ASSERT_GE(f.now_at_run, t0 + 5 * MS);
  ASSERT_GE(mono_ns() - real0, 5 * MS);
  ASSERT_LT(mono_ns() - real0, 2000 * MS);
  /* The wait is in the poll, not a spin of zero-timeout iterations. */
  ASSERT_LE(iterations, 10);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}
