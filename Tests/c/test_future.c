/* test_future.c -- futures and cloop_await: who wakes, in what order, with
 * which value; completing twice; done callbacks; and the misuse of
 * completing a task's future or awaiting outside a task. */
#include "test.h"

#define MS 1000000LL

/* ---- await order and results ------------------------------------------ */

/* What each task saw, in the order the tasks resumed. */
typedef struct seen {
  int who;
  int r;
  intptr_t value;
} seen;

static struct {
  cloop_loop *loop;
  cloop_future f[6];
  cloop_handle soon[2];
  cloop_timer timer[3];
  seen log[32];
  int nlog;
  cloop_handle probe; /* runs only if an await goes back to the loop */
  int probe_runs;
} ao;

static void ao_probe(void *arg) { (void)arg; ao.probe_runs++; }

static void ao_note(int who, int r, intptr_t value) {
  ASSERT_LT(ao.nlog, 32);
  ao.log[ao.nlog++] = (seen){who, r, value};
}

static void complete_f0(void *arg) { (void)arg; ASSERT_EQ(cloop_future_set_result(&ao.f[0], 7), 0); }
static void complete_f1(void *arg) { (void)arg; ASSERT_EQ(cloop_future_set_result(&ao.f[1], 100), 0); }
static void fail_f2(void *arg) { (void)arg; ASSERT_EQ(cloop_future_set_error(&ao.f[2], -EIO), 0); }
static void complete_f3(void *arg) { (void)arg; ASSERT_EQ(cloop_future_set_result(&ao.f[3], 300), 0); }
static void complete_f4(void *arg) { (void)arg; ASSERT_EQ(cloop_future_set_result(&ao.f[4], 44), 0); }

/* Task 1: a future a 20 ms timer completes, then one already complete. */
static intptr_t ao_task1(void *arg) {
  (void)arg;
  intptr_t v = -1;
  int r = cloop_await(&ao.f[1], &v);
  ao_note(1, r, v);
  /* f[0] completed long ago: the await returns without going back to the
     loop, so the handle queued just before it has not run. */
  cloop_call_soon(ao.loop, &ao.probe);
  v = -1;
  r = cloop_await(&ao.f[0], &v);
  ASSERT_EQ(ao.probe_runs, 0);
  ao_note(1, r, v);
  return 1;
}

/* Task 2: a future a call_soon callback completes in the first batch. */
static intptr_t ao_task2(void *arg) {
  (void)arg;
  intptr_t v = -1;
  int r = cloop_await(&ao.f[0], &v);
  ao_note(2, r, v);
  return 2;
}

/* Task 3: a future a 10 ms timer fails; *value is left alone. */
static intptr_t ao_task3(void *arg) {
  (void)arg;
  intptr_t v = -1;
  int r = cloop_await(&ao.f[2], &v);
  ASSERT_EQ(v, -1);
  ao_note(3, r, v);
  /* A NULL value pointer is allowed. */
  r = cloop_await(&ao.f[3], NULL);
  ao_note(3, r, ao.f[3].value);
  return 3;
}

/* Tasks 4, 5, 6: all on f[4]; they wake in the order they parked. */
static intptr_t ao_waiter(void *arg) {
  intptr_t v = -1;
  int r = cloop_await(&ao.f[4], &v);
  ao_note((int)(intptr_t)arg, r, v);
  return 0;
}

TEST_IMPL_SWITCH(future_await_order) {
  memset(&ao, 0, sizeof ao);
  LOOP_NEW_OPTS(ao.loop, opts);
  for (int i = 0; i < 6; i++)
    cloop_future_init(&ao.f[i], ao.loop);
  cloop_task *t[6];
  ASSERT_EQ(cloop_spawn(ao.loop, &t[0], ao_task1, NULL, "one"), 0);
  ASSERT_EQ(cloop_spawn(ao.loop, &t[1], ao_task2, NULL, "two"), 0);
  ASSERT_EQ(cloop_spawn(ao.loop, &t[2], ao_task3, NULL, "three"), 0);
  for (int i = 3; i < 6; i++)
    ASSERT_EQ(cloop_spawn(ao.loop, &t[i], ao_waiter, (void *)(intptr_t)(i + 1), NULL), 0);

  /* Queued after the tasks' first steps: f[0] completes in the first
     batch, once task 2 is parked on it. */
  cloop_handle_init(&ao.soon[0], complete_f0, NULL);
  cloop_call_soon(ao.loop, &ao.soon[0]);
  cloop_handle_init(&ao.soon[1], complete_f4, NULL);
  cloop_handle_init(&ao.probe, ao_probe, NULL);

  /* First iteration: every task parks, then f[0]'s callback wakes task 2. */
  ASSERT_EQ(cloop_run_once(ao.loop, 0), 1);
  ASSERT_EQ(ao.nlog, 0);
  for (int i = 0; i < 6; i++)
    ASSERT_EQ(cloop_future_done(cloop_task_future(t[i])), 0);
  cloop_call_soon(ao.loop, &ao.soon[1]); /* f[4] completes next batch */
  /* The timers start only now, so however slow the first iteration was
     (an emulator, a loaded machine), none is due before f[4]'s callback
     has run: in its batch, due timers come after it. */
  cloop_timer_init(&ao.timer[0], complete_f1, NULL);
  cloop_timer_init(&ao.timer[1], fail_f2, NULL);
  cloop_timer_init(&ao.timer[2], complete_f3, NULL);
  cloop_update_time(ao.loop);
  ASSERT_EQ(cloop_call_later(ao.loop, &ao.timer[0], 20 * MS), 0);
  ASSERT_EQ(cloop_call_later(ao.loop, &ao.timer[1], 10 * MS), 0);
  ASSERT_EQ(cloop_call_later(ao.loop, &ao.timer[2], 15 * MS), 0);
  ASSERT_EQ(cloop_run(ao.loop), 0);
  ASSERT_EQ(ao.probe_runs, 1);

  static const seen want[] = {
      {2, 0, 7},                               /* call_soon, first */
      {4, 0, 44}, {5, 0, 44}, {6, 0, 44},      /* parking order */
      {3, -EIO, -1},                           /* timer at 10 ms */
      {3, 0, 300},                             /* timer at 15 ms */
      {1, 0, 100}, {1, 0, 7},                  /* timer at 20 ms, then done */
  };
  ASSERT_EQ(ao.nlog, (int)(sizeof want / sizeof want[0]));
  for (int i = 0; i < ao.nlog; i++) {
    ASSERT_EQ(ao.log[i].who, want[i].who);
    ASSERT_EQ(ao.log[i].r, want[i].r);
    ASSERT_EQ(ao.log[i].value, want[i].value);
  }
  for (int i = 0; i < 6; i++) {
    cloop_future *f = cloop_task_future(t[i]);
    ASSERT_EQ(f->state, CLOOP_DONE);
    ASSERT_EQ(f->value, i < 3 ? i + 1 : 0);
    cloop_task_release(t[i]);
  }
  ASSERT_EQ(cloop_loop_free(ao.loop), 0);
  return 0;
}

/* ---- completing twice --------------------------------------------------- */

static struct {
  cloop_loop *loop;
  cloop_future f, g, h;
  intptr_t got;
  int r, wakes;
} tw;

static intptr_t tw_waiter(void *arg) {
  (void)arg;
  tw.r = cloop_await(&tw.f, &tw.got);
  tw.wakes++;
  /* g was cancelled before anything else completed it. */
  intptr_t v = 5;
  ASSERT_EQ(cloop_await(&tw.g, &v), -ECANCELED);
  ASSERT_EQ(v, 5);
  ASSERT_EQ(cloop_await(&tw.h, NULL), -EPIPE);
  return 0;
}

TEST_IMPL_SWITCH(future_complete_twice) {
  memset(&tw, 0, sizeof tw);
  LOOP_NEW_OPTS(tw.loop, opts);
  cloop_future_init(&tw.f, tw.loop);
  cloop_future_init(&tw.g, tw.loop);
  cloop_future_init(&tw.h, tw.loop);
  ASSERT_EQ(cloop_spawn(tw.loop, NULL, tw_waiter, NULL, "waiter"), 0);
  ASSERT_EQ(cloop_run_once(tw.loop, 0), 0); /* it parks on f */

  ASSERT_EQ(cloop_future_set_result(&tw.f, 11), 0);
  ASSERT_EQ(cloop_future_set_result(&tw.f, 22), -EALREADY);
  ASSERT_EQ(cloop_future_set_error(&tw.f, -EIO), -EALREADY);
  ASSERT_EQ(cloop_future_cancel(&tw.f), 0);
  ASSERT_EQ(tw.f.state, CLOOP_DONE);
  ASSERT_EQ(tw.f.value, 11);

  ASSERT_EQ(cloop_future_cancel(&tw.g), 1);
  ASSERT_EQ(cloop_future_cancel(&tw.g), 0);
  ASSERT_EQ(cloop_future_set_result(&tw.g, 1), -EALREADY);
  ASSERT_EQ(tw.g.state, CLOOP_CANCELLED);
  ASSERT_EQ(tw.g.error, -ECANCELED);

  ASSERT_EQ(cloop_future_set_error(&tw.h, -EPIPE), 0);
  ASSERT_EQ(cloop_future_set_result(&tw.h, 3), -EALREADY);
  ASSERT_EQ(cloop_future_set_error(&tw.h, -EIO), -EALREADY);
  ASSERT_EQ(tw.h.state, CLOOP_FAILED);
  ASSERT_EQ(tw.h.error, -EPIPE);

  ASSERT_EQ(cloop_run(tw.loop), 0);
  ASSERT_EQ(tw.r, 0);
  ASSERT_EQ(tw.got, 11); /* the first completion's value */
  ASSERT_EQ(tw.wakes, 1);
  ASSERT_EQ(cloop_loop_free(tw.loop), 0);
  return 0;
}

/* ---- done callbacks ----------------------------------------------------- */

static struct {
  cloop_loop *loop;
  cloop_future f;
  cloop_handle cb[4];
  int runs[4];
  int order[16], norder;
} dc;

static void dc_run(void *arg) {
  int i = (int)(intptr_t)arg;
  dc.runs[i]++;
  dc.order[dc.norder++] = i;
}

static intptr_t dc_task(void *arg) {
  (void)arg;
  intptr_t v;
  ASSERT_EQ(cloop_await(&dc.f, &v), 0);
  dc.order[dc.norder++] = 9; /* the task parked before the callbacks */
  return v;
}

TEST_IMPL_SWITCH(future_done_callbacks) {
  memset(&dc, 0, sizeof dc);
  LOOP_NEW_OPTS(dc.loop, opts);
  cloop_future_init(&dc.f, dc.loop);
  for (int i = 0; i < 4; i++)
    cloop_handle_init(&dc.cb[i], dc_run, (void *)(intptr_t)i);
  cloop_task *t;
  ASSERT_EQ(cloop_spawn(dc.loop, &t, dc_task, NULL, NULL), 0);
  ASSERT_EQ(cloop_run_once(dc.loop, 0), 0); /* parked */

  cloop_future_add_done(&dc.f, &dc.cb[0]);
  cloop_future_add_done(&dc.f, &dc.cb[1]);
  cloop_future_add_done(&dc.f, &dc.cb[3]);
  ASSERT_EQ(cloop_handle_cancel(dc.loop, &dc.cb[3]), 1); /* taken back */
  ASSERT_EQ(cloop_run_once(dc.loop, 0), 0); /* nothing to run yet */
  ASSERT_EQ(dc.norder, 0);

  ASSERT_EQ(cloop_future_set_result(&dc.f, 5), 0);
  cloop_future_add_done(&dc.f, &dc.cb[2]); /* after completion: queued */
  ASSERT_EQ(cloop_future_set_result(&dc.f, 6), -EALREADY); /* no re-run */
  ASSERT_EQ(cloop_run(dc.loop), 0);

  ASSERT_EQ(dc.norder, 4);
  ASSERT_EQ(dc.order[0], 9);
  ASSERT_EQ(dc.order[1], 0);
  ASSERT_EQ(dc.order[2], 1);
  ASSERT_EQ(dc.order[3], 2);
  ASSERT_EQ(dc.runs[0], 1);
  ASSERT_EQ(dc.runs[1], 1);
  ASSERT_EQ(dc.runs[2], 1);
  ASSERT_EQ(dc.runs[3], 0);

  /* Added to a long-complete future: runs in the next batch, once. */
  cloop_future_add_done(&dc.f, &dc.cb[3]);
  ASSERT_EQ(cloop_handle_queued(&dc.cb[3]), 1);
  ASSERT_EQ(cloop_run(dc.loop), 0);
  ASSERT_EQ(cloop_run(dc.loop), 0);
  ASSERT_EQ(dc.runs[3], 1);
  ASSERT_EQ(dc.runs[0], 1);
  ASSERT_EQ(cloop_task_future(t)->value, 5);
  cloop_task_release(t);
  ASSERT_EQ(cloop_loop_free(dc.loop), 0);
  return 0;
}

/* ---- misuse --------------------------------------------------------------- */

static intptr_t park_forever(void *arg) {
  cloop_future *f = arg;
  return cloop_await(f, NULL);
}

typedef struct misuse_ctx {
  const cloop_options *opts;
  int which;
} misuse_ctx;

static void complete_task_future(void *arg) {
  misuse_ctx *m = arg;
  cloop_loop *loop;
  cloop_task *t;
  cloop_future f;
  ASSERT_EQ(cloop_loop_new(&loop, m->opts), 0);
  cloop_future_init(&f, loop);
  ASSERT_EQ(cloop_spawn(loop, &t, park_forever, &f, "victim"), 0);
  ASSERT_EQ(cloop_run_once(loop, 0), 0);
  if (m->which == 0)
    cloop_future_set_result(cloop_task_future(t), 1);
  else
    cloop_future_set_error(cloop_task_future(t), -EIO);
}

TEST_IMPL_SWITCH(future_set_task_future_aborts) {
  misuse_ctx m = {opts, 0};
  test_expect_abort("cloop_future_set_result on a task's future",
                    complete_task_future, &m, "set_result on a task's future");
  m.which = 1;
  test_expect_abort("cloop_future_set_error on a task's future",
                    complete_task_future, &m, "set_error on a task's future");
  return 0;
}

static void await_on_loop_stack(void *arg) {
  cloop_future *f = arg;
  cloop_await(f, NULL);
}

static void await_outside(void *arg) {
  misuse_ctx *m = arg;
  cloop_loop *loop;
  cloop_future f;
  ASSERT_EQ(cloop_loop_new(&loop, m->opts), 0);
  cloop_future_init(&f, loop);
  switch (m->which) {
  case 0: /* on the thread's own stack, no loop running */
    cloop_await(&f, NULL);
    break;
  case 1: { /* in a callback on the loop's stack */
    cloop_handle h = CLOOP_HANDLE_INIT(await_on_loop_stack, &f);
    cloop_call_soon(loop, &h);
    cloop_run(loop);
    break;
  }
  case 2:
    cloop_sleep(1 * MS);
    break;
  case 3:
    cloop_gather(NULL, 0, NULL);
    break;
  }
}

TEST_IMPL_SWITCH(future_await_outside_task_aborts) {
  static const char *what[] = {
      "cloop_await on the main stack", "cloop_await in a loop callback",
      "cloop_sleep outside a task", "cloop_gather outside a task"};
  for (int i = 0; i < 4; i++) {
    misuse_ctx m = {opts, i};
    test_expect_abort(what[i], await_outside, &m, "misuse");
  }
  return 0;
}

/* Awaiting its own future (it would never complete), a future of another
   loop, or -- on the shared stack -- a future in the task's own locals
   (they move while it is parked): each aborts naming the misuse. */
static intptr_t await_own(void *arg) {
  (void)arg;
  return cloop_await(cloop_task_future(cloop_current_task()), NULL);
}

static intptr_t await_other_loops(void *arg) {
  return cloop_await(arg, NULL);
}

static intptr_t await_local(void *arg) {
  (void)arg;
  cloop_future mine;
  cloop_future_init(&mine, cloop_task_loop(cloop_current_task()));
  return cloop_await(&mine, NULL);
}

static void await_misuse(void *arg) {
  misuse_ctx *m = arg;
  cloop_options o = *m->opts;
  cloop_loop *loop, *other;
  cloop_future f;
  if (m->which == 2)
    o.task_stack = CLOOP_STACK_SHARED;
  ASSERT_EQ(cloop_loop_new(&loop, &o), 0);
  ASSERT_EQ(cloop_loop_new(&other, &o), 0);
  cloop_future_init(&f, other);
  cloop_task_fn fns[3] = {await_own, await_other_loops, await_local};
  ASSERT_EQ(cloop_spawn(loop, NULL, fns[m->which], &f, "culprit"), 0);
  cloop_run(loop);
}

TEST_IMPL_SWITCH(future_await_misuse_aborts) {
  misuse_ctx m = {opts, 0};
  test_expect_abort("a task awaiting its own future", await_misuse, &m,
                    "awaits its own future");
  m.which = 1;
  test_expect_abort("awaiting a future of another loop", await_misuse, &m,
                    "another loop");
  m.which = 2;
  test_expect_abort("a shared-stack task awaiting a future in its locals",
                    await_misuse, &m, "shared stack");
  return 0;
}
