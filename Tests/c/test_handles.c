/* test_handles.c -- call_soon: FIFO order, the per-iteration snapshot,
 * cancel, and the double-scheduling misuse. */
#include "test.h"

/* A handle that appends its id to a shared log when it runs. */
typedef struct logged {
  cloop_handle h;
  int id;
  int *log, *nlog;
} logged;

static void log_run(void *arg) {
  logged *l = arg;
  l->log[(*l->nlog)++] = l->id;
}

TEST_IMPL(handles_fifo) {
  enum { N = 100 };
  cloop_loop *loop;
  logged hs[N];
  int log[N], nlog = 0;
  ASSERT_EQ(cloop_loop_new(&loop, NULL), 0);

  /* Scheduled in a scrambled order; they must run in that order. */
  for (int i = 0; i < N; i++) {
    int id = (i * 37) % N;
    hs[id] = (logged){CLOOP_HANDLE_INIT(log_run, &hs[id]), id, log, &nlog};
  }
  for (int i = 0; i < N; i++) {
    cloop_call_soon(loop, &hs[(i * 37) % N].h);
    ASSERT_EQ(cloop_handle_queued(&hs[(i * 37) % N].h), 1);
  }

  ASSERT_EQ(cloop_run_once(loop, 0), 0);
  ASSERT_EQ(nlog, N);
  for (int i = 0; i < N; i++) {
    ASSERT_EQ(log[i], (i * 37) % N);
    ASSERT_EQ(cloop_handle_queued(&hs[i].h), 0);
  }
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* A runs, counts itself, queues B and re-queues itself. */
typedef struct snap {
  cloop_loop *loop;
  cloop_handle a, b;
  int a_runs, b_runs;
} snap;

static void snap_b(void *arg) { ((snap *)arg)->b_runs++; }

static void snap_a(void *arg) {
  snap *s = arg;
  s->a_runs++;
  if (!cloop_handle_queued(&s->b))
    cloop_call_soon(s->loop, &s->b);
  if (s->a_runs < 3)
    cloop_call_soon(s->loop, &s->a);
}

TEST_IMPL(handles_snapshot) {
  snap s = {0};
  ASSERT_EQ(cloop_loop_new(&s.loop, NULL), 0);
  cloop_handle_init(&s.a, snap_a, &s);
  cloop_handle_init(&s.b, snap_b, &s);
  cloop_call_soon(s.loop, &s.a);

  /* Each iteration runs only what was queued when its batch began. */
  ASSERT_EQ(cloop_run_once(s.loop, 0), 1);
  ASSERT_EQ(s.a_runs, 1);
  ASSERT_EQ(s.b_runs, 0);
  ASSERT_EQ(cloop_handle_queued(&s.a), 1);
  ASSERT_EQ(cloop_handle_queued(&s.b), 1);

  ASSERT_EQ(cloop_run_once(s.loop, 0), 1);
  ASSERT_EQ(s.a_runs, 2);
  ASSERT_EQ(s.b_runs, 1);

  ASSERT_EQ(cloop_run_once(s.loop, 0), 1);
  ASSERT_EQ(s.a_runs, 3);
  ASSERT_EQ(s.b_runs, 2);
  ASSERT_EQ(cloop_handle_queued(&s.a), 0);

  ASSERT_EQ(cloop_run_once(s.loop, 0), 0);
  ASSERT_EQ(s.a_runs, 3);
  ASSERT_EQ(s.b_runs, 3);
  ASSERT_EQ(cloop_loop_free(s.loop), 0);
  return 0;
}

/* Handle 0, when it runs, cancels handle 2 (in the same batch, not yet run)
   and queues handle 3 (for the next batch). */
typedef struct cancel_ctx {
  cloop_loop *loop;
  logged hs[4];
  int log[8], nlog;
  int cancel_result;
} cancel_ctx;

static void cancel_first(void *arg) {
  cancel_ctx *c = arg;
  log_run(&c->hs[0]);
  c->cancel_result = cloop_handle_cancel(c->loop, &c->hs[2].h);
  cloop_call_soon(c->loop, &c->hs[3].h);
}

TEST_IMPL(handles_cancel) {
  static cancel_ctx c;
  ASSERT_EQ(cloop_loop_new(&c.loop, NULL), 0);
  for (int i = 0; i < 4; i++)
    c.hs[i] = (logged){CLOOP_HANDLE_INIT(log_run, &c.hs[i]), i, c.log, &c.nlog};
  c.hs[0].h.arg = &c;
  c.hs[0].h.fn = cancel_first;
  logged x = {CLOOP_HANDLE_INIT(log_run, &x), 9, c.log, &c.nlog};

  /* Cancel before the loop runs: once 1, then 0; never runs. */
  cloop_call_soon(c.loop, &x.h);
  for (int i = 0; i < 3; i++)
    cloop_call_soon(c.loop, &c.hs[i].h);
  ASSERT_EQ(cloop_handle_cancel(c.loop, &x.h), 1);
  ASSERT_EQ(cloop_handle_queued(&x.h), 0);
  ASSERT_EQ(cloop_handle_cancel(c.loop, &x.h), 0);
  ASSERT_EQ(cloop_handle_cancel(c.loop, &c.hs[3].h), 0); /* never queued */

  ASSERT_EQ(cloop_run_once(c.loop, 0), 1);
  ASSERT_EQ(c.cancel_result, 1);
  ASSERT_EQ(c.nlog, 2);
  ASSERT_EQ(c.log[0], 0);
  ASSERT_EQ(c.log[1], 1);
  ASSERT_EQ(cloop_handle_queued(&c.hs[2].h), 0);

  ASSERT_EQ(cloop_run_once(c.loop, 0), 0);
  ASSERT_EQ(c.nlog, 3);
  ASSERT_EQ(c.log[2], 3);

  /* A cancelled handle can be queued again and then runs. */
  cloop_call_soon(c.loop, &x.h);
  ASSERT_EQ(cloop_run(c.loop), 0);
  ASSERT_EQ(c.nlog, 4);
  ASSERT_EQ(c.log[3], 9);
  ASSERT_EQ(cloop_loop_free(c.loop), 0);
  return 0;
}

static void nop(void *arg) { (void)arg; }

static void double_schedule(void *arg) {
  (void)arg;
  cloop_loop *loop;
  cloop_handle h = CLOOP_HANDLE_INIT(nop, NULL);
  if (cloop_loop_new(&loop, NULL) != 0)
    return;
  cloop_call_soon(loop, &h);
  cloop_call_soon(loop, &h); /* must abort here */
}

TEST_IMPL(handles_double_schedule_aborts) {
  test_expect_abort("cloop_call_soon twice", double_schedule, NULL, "misuse");
  return 0;
}
