/* test_cancel.c -- cancelling tasks: parked on a future, in a sleep, in a
 * gather, in sleep(0), and a task cancelling itself. */
#include "test.h"

#define MS 1000000LL

/* ---- parked on a future ------------------------------------------------- */

static struct {
  cloop_loop *loop;
  cloop_future f, g;
  int phase, r1, r2;
  intptr_t v2;
} cf;

static intptr_t cf_body(void *arg) {
  (void)arg;
  cf.r1 = cloop_await(&cf.f, NULL);
  ASSERT_EQ(cloop_future_done(&cf.f), 0); /* the future is left alone */
  cf.phase = 1;
  cf.r2 = cloop_await(&cf.g, &cf.v2); /* the cancellation was used up */
  cf.phase = 2;
  return 3; /* it caught the cancellation: it ends done, not cancelled */
}

TEST_IMPL_SWITCH(cancel_parked_on_future) {
  memset(&cf, 0, sizeof cf);
  LOOP_NEW_OPTS(cf.loop, opts);
  cloop_future_init(&cf.f, cf.loop);
  cloop_future_init(&cf.g, cf.loop);
  cloop_task *t;
  ASSERT_EQ(cloop_spawn(cf.loop, &t, cf_body, NULL, "parked"), 0);
  ASSERT_EQ(cloop_run_once(cf.loop, 0), 0);
  ASSERT_EQ(cf.phase, 0); /* parked on f */

  ASSERT_EQ(cloop_task_cancel(t), 1);
  ASSERT_EQ(cf.f.state, CLOOP_PENDING);
  ASSERT_EQ(cloop_run_once(cf.loop, 0), 0);
  ASSERT_EQ(cf.r1, -ECANCELED);
  ASSERT_EQ(cf.phase, 1); /* now parked on g */
  ASSERT_EQ(cf.f.state, CLOOP_PENDING);

  /* f completes now: the task left its waiters, so it must not wake. */
  ASSERT_EQ(cloop_future_set_result(&cf.f, 5), 0);
  ASSERT_EQ(cloop_run_once(cf.loop, 0), 0);
  ASSERT_EQ(cf.phase, 1);

  ASSERT_EQ(cloop_future_set_result(&cf.g, 9), 0);
  ASSERT_EQ(cloop_run(cf.loop), 0);
  ASSERT_EQ(cf.phase, 2);
  ASSERT_EQ(cf.r2, 0);
  ASSERT_EQ(cf.v2, 9);
  ASSERT_EQ(cloop_task_future(t)->state, CLOOP_DONE);
  ASSERT_EQ(cloop_task_future(t)->value, 3);
  ASSERT_EQ(cloop_task_cancel(t), 0);
  cloop_task_release(t);
  ASSERT_EQ(cloop_loop_free(cf.loop), 0);
  return 0;
}

/* ---- in a sleep ------------------------------------------------------------ */

static struct {
  int r[2];
  uint64_t slept[2];
  int unwound[2];
  cloop_timer canceller;
} cs;

static intptr_t long_sleeper(void *arg) {
  int i = (int)(intptr_t)arg;
  uint64_t start = test_clock_ns();
  cs.r[i] = cloop_sleep(10000 * MS);
  cs.slept[i] = test_clock_ns() - start;
  cs.unwound[i] = 1;
  return cs.r[i];
}

static void cancel_task_cb(void *arg) { ASSERT_EQ(cloop_task_cancel(arg), 1); }

static intptr_t cs_main(void *arg) {
  (void)arg;
  cloop_loop *loop = cloop_task_loop(cloop_current_task());
  cloop_task *a, *b;
  ASSERT_EQ(cloop_spawn(loop, &a, long_sleeper, (void *)0, "sleeper-a"), 0);
  ASSERT_EQ(cloop_spawn(loop, &b, long_sleeper, (void *)1, "sleeper-b"), 0);
  ASSERT_EQ(cloop_sleep(2 * MS), 0);
  ASSERT_EQ(cloop_timer_count(loop), 2); /* the two sleeps */

  /* Cancelled from a task: its sleep timer goes at once. */
  ASSERT_EQ(cloop_task_cancel(a), 1);
  ASSERT_EQ(cloop_timer_count(loop), 1);
  ASSERT_EQ(cloop_task_join(a), -ECANCELED);
  ASSERT_EQ(cs.r[0], -ECANCELED);
  ASSERT_LT(cs.slept[0], 1000 * MS);
  ASSERT_EQ(cloop_task_future(a)->state, CLOOP_CANCELLED);

  /* Cancelled from a timer callback on the loop's stack. */
  cloop_timer_init(&cs.canceller, cancel_task_cb, b);
  ASSERT_EQ(cloop_call_later(loop, &cs.canceller, 1 * MS), 0);
  ASSERT_EQ(cloop_timer_count(loop), 2);
  ASSERT_EQ(cloop_task_join(b), -ECANCELED);
  ASSERT_EQ(cloop_timer_count(loop), 0);
  ASSERT_EQ(cs.r[1], -ECANCELED);
  ASSERT_LT(cs.slept[1], 1000 * MS);
  ASSERT_EQ(cloop_task_future(b)->state, CLOOP_CANCELLED);
  cloop_task_release(a);
  cloop_task_release(b);
  return 0;
}

TEST_IMPL_SWITCH(cancel_in_sleep) {
  memset(&cs, 0, sizeof cs);
  uint64_t start = test_clock_ns();
  ASSERT_EQ(test_run_task(opts, cs_main, NULL), 0);
  ASSERT_LT(test_clock_ns() - start, 1000 * MS);
  ASSERT_EQ(cs.unwound[0] + cs.unwound[1], 2);
  return 0;
}

/* ---- in a gather ------------------------------------------------------------- */

enum { KIDS = 4 };

static struct {
  cloop_loop *loop;
  cloop_task *kid[KIDS];
  cloop_future plain;
  int running, unwound;
  int kid_r[KIDS];
  int gather_r;
  intptr_t results[KIDS + 1];
  int checked;
} cg;

/* Kid 0 finishes at once with 100; the others sleep long. On being
   cancelled a kid takes a few ms to clean up (an await of its own) before
   it returns: gather must wait for that too. */
static intptr_t cg_kid(void *arg) {
  int i = (int)(intptr_t)arg;
  if (i == 0)
    return 100;
  cg.running++;
  int r = cloop_sleep(10000 * MS);
  cg.kid_r[i] = r;
  ASSERT_EQ(cloop_sleep((int64_t)i * MS), 0); /* cleanup that awaits */
  cg.running--;
  cg.unwound++;
  return r;
}

static intptr_t cg_parent(void *arg) {
  (void)arg;
  cloop_future *fs[KIDS + 1];
  for (int i = 0; i < KIDS; i++) {
    ASSERT_EQ(cloop_spawn(cg.loop, &cg.kid[i], cg_kid, (void *)(intptr_t)i, NULL), 0);
    fs[i] = cloop_task_future(cg.kid[i]);
  }
  fs[KIDS] = &cg.plain; /* a plain future nobody completes */
  cg.gather_r = cloop_gather(fs, KIDS + 1, cg.results);

  /* When gather returns, no kid is left running. */
  ASSERT_EQ(cg.running, 0);
  ASSERT_EQ(cg.unwound, KIDS - 1);
  ASSERT_EQ(cloop_task_future(cg.kid[0])->state, CLOOP_DONE);
  for (int i = 1; i < KIDS; i++) {
    ASSERT_EQ(cg.kid_r[i], -ECANCELED);
    ASSERT_EQ(cloop_task_future(cg.kid[i])->state, CLOOP_CANCELLED);
  }
  ASSERT_EQ(cg.plain.state, CLOOP_CANCELLED);
  ASSERT_EQ(cloop_timer_count(cg.loop), 0);
  cg.checked = 1;
  for (int i = 0; i < KIDS; i++)
    cloop_task_release(cg.kid[i]);
  return cg.gather_r;
}

static intptr_t cg_main(void *arg) {
  (void)arg;
  cloop_task *p;
  ASSERT_EQ(cloop_spawn(cg.loop, &p, cg_parent, NULL, "parent"), 0);
  /* Let the parent spawn its kids and the kids park (no fixed sleep: a
     slow or loaded machine must not change what this checks). */
  for (int spins = 0; cg.running < KIDS - 1 && spins < 1000; spins++)
    ASSERT_EQ(cloop_sleep(0), 0);
  ASSERT_EQ(cg.running, KIDS - 1);
  ASSERT_EQ(cloop_task_cancel(p), 1);
  ASSERT_EQ(cloop_task_join(p), -ECANCELED);
  ASSERT_EQ(cloop_task_future(p)->state, CLOOP_CANCELLED);
  cloop_task_release(p);
  return 0;
}

TEST_IMPL_SWITCH(cancel_in_gather) {
  memset(&cg, 0, sizeof cg);
  LOOP_NEW_OPTS(cg.loop, opts);
  cloop_future_init(&cg.plain, cg.loop);
  cloop_task *m;
  uint64_t start = test_clock_ns();
  ASSERT_EQ(cloop_spawn(cg.loop, &m, cg_main, NULL, "main"), 0);
  ASSERT_EQ(cloop_run(cg.loop), 0);
  ASSERT_LT(test_clock_ns() - start, 1000 * MS);
  ASSERT_EQ(cloop_task_future(m)->state, CLOOP_DONE);
  ASSERT_EQ(cg.checked, 1);
  ASSERT_EQ(cg.gather_r, -ECANCELED);
  ASSERT_EQ(cg.results[0], 100);
  for (int i = 1; i <= KIDS; i++)
    ASSERT_EQ(cg.results[i], -ECANCELED);
  cloop_task_release(m);
  ASSERT_EQ(cloop_loop_free(cg.loop), 0);
  return 0;
}

/* ---- a task cancelling itself, and cancel while queued -------------------- */

static int kid_cancelled;

static intptr_t sleepy_kid(void *arg) {
  (void)arg;
  int r = cloop_sleep(10000 * MS);
  kid_cancelled = r == -ECANCELED;
  return r;
}

static intptr_t self_canceller(void *arg) {
  (void)arg;
  cloop_task *me = cloop_current_task();
  cloop_loop *loop = cloop_task_loop(me);
  cloop_future done;
  cloop_future_init(&done, loop);
  ASSERT_EQ(cloop_future_set_result(&done, 8), 0);

  /* Not parked: the next await returns -ECANCELED, once. */
  ASSERT_EQ(cloop_task_cancel(me), 1);
  ASSERT_EQ(cloop_sleep(0), -ECANCELED);
  ASSERT_EQ(cloop_sleep(0), 0);

  /* Even an await of a future that is complete already. */
  ASSERT_EQ(cloop_task_cancel(me), 1);
  intptr_t v = 0;
  ASSERT_EQ(cloop_await(&done, &v), -ECANCELED);
  ASSERT_EQ(v, 0);
  ASSERT_EQ(cloop_await(&done, &v), 0);
  ASSERT_EQ(v, 8);

  /* A long sleep returns at once, with no timer left behind. */
  ASSERT_EQ(cloop_task_cancel(me), 1);
  uint64_t start = test_clock_ns();
  ASSERT_EQ(cloop_sleep(10000 * MS), -ECANCELED);
  ASSERT_LT(test_clock_ns() - start, 1000 * MS);
  ASSERT_EQ(cloop_timer_count(loop), 0);
  ASSERT_EQ(cloop_sleep_until(cloop_now(loop) + 1 * MS), 0);

  /* A gather entered already cancelled cancels its futures and waits
     for them. */
  cloop_task *kid;
  ASSERT_EQ(cloop_spawn(loop, &kid, sleepy_kid, NULL, "kid"), 0);
  ASSERT_EQ(cloop_sleep(0), 0); /* the kid parks in its sleep */
  ASSERT_EQ(cloop_task_cancel(me), 1);
  cloop_future *fs[1] = {cloop_task_future(kid)};
  intptr_t res = 0;
  ASSERT_EQ(cloop_gather(fs, 1, &res), -ECANCELED);
  ASSERT_EQ(res, -ECANCELED);
  ASSERT_EQ(kid_cancelled, 1);
  ASSERT_EQ(cloop_task_future(kid)->state, CLOOP_CANCELLED);
  cloop_task_release(kid);
  ASSERT_EQ(cloop_sleep(0), 0);
  return 12;
}

TEST_IMPL_SWITCH(cancel_self) {
  kid_cancelled = 0;
  ASSERT_EQ(test_run_task(opts, self_canceller, NULL), 12);
  return 0;
}

/* Two tasks in one batch: the first goes to sleep(0), the second cancels
   it while its step is queued; the sleep(0) returns -ECANCELED. */
static struct {
  cloop_task *yielder;
  int r;
} cy;

static intptr_t cy_yielder(void *arg) {
  (void)arg;
  cy.r = cloop_sleep(0);
  return 0;
}

static intptr_t cy_canceller(void *arg) {
  (void)arg;
  ASSERT_EQ(cloop_task_cancel(cy.yielder), 1);
  return 0;
}

TEST_IMPL_SWITCH(cancel_while_queued) {
  cloop_loop *loop;
  LOOP_NEW_OPTS(loop, opts);
  cy.r = 1;
  ASSERT_EQ(cloop_spawn(loop, &cy.yielder, cy_yielder, NULL, "yielder"), 0);
  ASSERT_EQ(cloop_spawn(loop, NULL, cy_canceller, NULL, "canceller"), 0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(cy.r, -ECANCELED);
  ASSERT_EQ(cloop_task_future(cy.yielder)->state, CLOOP_DONE);
  cloop_task_release(cy.yielder);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* ---- the same on the shared stack (CLOOP_STACK_SHARED) ------------------ */

TEST_SHARED_STACK(cancel_in_sleep)
TEST_SHARED_STACK(cancel_in_gather)
TEST_SHARED_STACK(cancel_self)
