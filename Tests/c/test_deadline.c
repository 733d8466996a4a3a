/* test_deadline.c -- deadline scopes (asyncio's timeout()): expiry in a
 * sleep, an await and a gather; a scope that does not expire; nesting both
 * ways round; and the misuse of leaving scopes out of order or returning
 * inside one. On the manual clock (test_run_task_manual): each deadline
 * fires exactly when due, and no test waits for one. */
#include "test.h"

#define MS 1000000LL

static cloop_loop *my_loop(void) {
  return cloop_task_loop(cloop_current_task());
}

/* ---- expiry -------------------------------------------------------------- */

static intptr_t expire_in_sleep(void *arg) {
  (void)arg;
  cloop_loop *loop = my_loop();
  cloop_deadline d;
  uint64_t start = cloop_now(loop); /* deadlines count from the loop's clock */
  ASSERT_EQ(cloop_deadline_enter(&d, 10 * MS), 0);
  ASSERT_EQ(cloop_timer_count(loop), 1); /* the scope's timer */
  ASSERT_EQ(cloop_sleep(10000 * MS), -ETIMEDOUT);
  ASSERT_EQ(cloop_now(loop), start + 10 * MS); /* at the deadline exactly */
  ASSERT_EQ(cloop_timer_count(loop), 0); /* the sleep's timer went too */
  /* Every await inside the expired scope returns -ETIMEDOUT at once. */
  ASSERT_EQ(cloop_sleep(0), -ETIMEDOUT);
  ASSERT_EQ(cloop_sleep(10000 * MS), -ETIMEDOUT);
  ASSERT_EQ(cloop_timer_count(loop), 0);
  ASSERT_EQ(cloop_deadline_exit(&d), -ETIMEDOUT);
  /* Outside it, awaits work again. */
  ASSERT_EQ(cloop_sleep(1 * MS), 0);

  /* A scope entered with no time left is expired from the start. */
  ASSERT_EQ(cloop_deadline_enter(&d, 0), 0);
  ASSERT_EQ(cloop_sleep(0), -ETIMEDOUT);
  ASSERT_EQ(cloop_deadline_exit(&d), -ETIMEDOUT);
  ASSERT_EQ(cloop_deadline_enter(&d, -5 * MS), 0);
  ASSERT_EQ(cloop_deadline_exit(&d), -ETIMEDOUT);
  ASSERT_EQ(cloop_sleep(0), 0);
  return 0;
}

TEST_IMPL_SWITCH(deadline_expires_in_sleep) {
  ASSERT_EQ(test_run_task_manual(opts, expire_in_sleep, NULL), 0);
  return 0;
}

static intptr_t expire_in_await(void *arg) {
  (void)arg;
  cloop_future never;
  cloop_future_init(&never, my_loop());
  cloop_deadline d;
  uint64_t start = cloop_now(my_loop());
  ASSERT_EQ(cloop_deadline_enter(&d, 5 * MS), 0);
  intptr_t v = 42;
  ASSERT_EQ(cloop_await(&never, &v), -ETIMEDOUT);
  ASSERT_EQ(cloop_now(my_loop()), start + 5 * MS);
  ASSERT_EQ(v, 42);
  ASSERT_EQ(never.state, CLOOP_PENDING); /* left alone */
  ASSERT_EQ(cloop_deadline_exit(&d), -ETIMEDOUT);
  ASSERT_EQ(cloop_timer_count(my_loop()), 0);
  return 0;
}

TEST_IMPL_SWITCH(deadline_expires_in_await) {
  ASSERT_EQ(test_run_task_manual(opts, expire_in_await, NULL), 0);
  return 0;
}

static intptr_t no_expiry(void *arg) {
  (void)arg;
  cloop_loop *loop = my_loop();
  cloop_deadline d;
  uint64_t start = cloop_now(loop);
  ASSERT_EQ(cloop_deadline_enter(&d, 5000 * MS), 0);
  ASSERT_EQ(cloop_timer_count(loop), 1);
  ASSERT_EQ(cloop_sleep(2 * MS), 0);
  ASSERT_EQ(cloop_sleep(0), 0);
  ASSERT_EQ(cloop_timer_count(loop), 1);
  ASSERT_EQ(cloop_deadline_exit(&d), 0);
  ASSERT_EQ(cloop_timer_count(loop), 0); /* its timer is gone */
  ASSERT_EQ(cloop_now(loop), start + 2 * MS); /* nothing waited for it */
  return 5;
}

TEST_IMPL_SWITCH(deadline_not_expired) {
  ASSERT_EQ(test_run_task_manual(opts, no_expiry, NULL), 5);
  return 0;
}

/* ---- nesting ------------------------------------------------------------- */

static intptr_t nested_inner_shorter(void *arg) {
  (void)arg;
  cloop_deadline outer, inner;
  uint64_t start = cloop_now(my_loop());
  ASSERT_EQ(cloop_deadline_enter(&outer, 5000 * MS), 0);
  ASSERT_EQ(cloop_deadline_enter(&inner, 5 * MS), 0);
  ASSERT_EQ(cloop_sleep(10000 * MS), -ETIMEDOUT);
  ASSERT_EQ(cloop_now(my_loop()), start + 5 * MS);
  ASSERT_EQ(cloop_deadline_exit(&inner), -ETIMEDOUT); /* the inner reports */
  ASSERT_EQ(cloop_sleep(1 * MS), 0); /* the outer still has time */
  ASSERT_EQ(cloop_timer_count(my_loop()), 1);
  ASSERT_EQ(cloop_deadline_exit(&outer), 0);
  ASSERT_EQ(cloop_timer_count(my_loop()), 0);
  return 0;
}

TEST_IMPL_SWITCH(deadline_nested_inner_shorter) {
  ASSERT_EQ(test_run_task_manual(opts, nested_inner_shorter, NULL), 0);
  return 0;
}

static intptr_t nested_outer_shorter(void *arg) {
  (void)arg;
  cloop_deadline outer, inner;
  ASSERT_EQ(cloop_deadline_enter(&outer, 5 * MS), 0);
  ASSERT_EQ(cloop_deadline_enter(&inner, 5000 * MS), 0);
  ASSERT_EQ(cloop_sleep(10000 * MS), -ETIMEDOUT);
  ASSERT_EQ(cloop_sleep(0), -ETIMEDOUT); /* still, inside the inner */
  ASSERT_EQ(cloop_deadline_exit(&inner), 0); /* not the inner's deadline */
  ASSERT_EQ(cloop_sleep(0), -ETIMEDOUT);     /* still inside the outer */
  ASSERT_EQ(cloop_deadline_exit(&outer), -ETIMEDOUT);
  ASSERT_EQ(cloop_timer_count(my_loop()), 0);
  ASSERT_EQ(cloop_sleep(1 * MS), 0);

  /* Both passed (while the task ran): each scope reports its own. (A
     sleep(0) here could still return 0: the task's step runs before the
     iteration's due timers, as in asyncio, so the next await is the one
     that sees the deadline.) */
  ASSERT_EQ(cloop_deadline_enter(&outer, 2 * MS), 0);
  ASSERT_EQ(cloop_deadline_enter(&inner, 1 * MS), 0);
  cloop_debug_advance_clock(my_loop(), 3 * MS); /* a busy 3 ms, exactly */
  ASSERT_EQ(cloop_sleep(10000 * MS), -ETIMEDOUT);
  ASSERT_EQ(cloop_sleep(0), -ETIMEDOUT);
  ASSERT_EQ(cloop_deadline_exit(&inner), -ETIMEDOUT);
  ASSERT_EQ(cloop_sleep(10000 * MS), -ETIMEDOUT);
  ASSERT_EQ(cloop_deadline_exit(&outer), -ETIMEDOUT);
  ASSERT_EQ(cloop_sleep(0), 0);
  return 0;
}

TEST_IMPL_SWITCH(deadline_nested_outer_shorter) {
  ASSERT_EQ(test_run_task_manual(opts, nested_outer_shorter, NULL), 0);
  return 0;
}

/* ---- a gather inside an expiring scope ---------------------------------- */

static int dg_unwound;

static intptr_t dg_kid(void *arg) {
  int r = cloop_sleep((int64_t)(intptr_t)arg * MS);
  if (r == 0)
    return (intptr_t)arg;
  dg_unwound++;
  return r;
}

static intptr_t deadline_gather(void *arg) {
  (void)arg;
  cloop_loop *loop = my_loop();
  cloop_task *kids[3];
  cloop_future *fs[3];
  static const intptr_t ms[3] = {1, 10000, 10000};
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(cloop_spawn(loop, &kids[i], dg_kid, (void *)ms[i], NULL), 0);
    fs[i] = cloop_task_future(kids[i]);
  }
  cloop_deadline d;
  intptr_t res[3];
  uint64_t start = cloop_now(loop);
  ASSERT_EQ(cloop_deadline_enter(&d, 20 * MS), 0);
  ASSERT_EQ(cloop_gather(fs, 3, res), -ETIMEDOUT);
  ASSERT_EQ(cloop_now(loop), start + 20 * MS); /* nothing waited longer */
  ASSERT_EQ(dg_unwound, 2); /* both long kids finished before the return */
  ASSERT_EQ(res[0], 1);
  ASSERT_EQ(res[1], -ECANCELED);
  ASSERT_EQ(res[2], -ECANCELED);
  ASSERT_EQ(fs[1]->state, CLOOP_CANCELLED);
  ASSERT_EQ(fs[2]->state, CLOOP_CANCELLED);
  ASSERT_EQ(cloop_deadline_exit(&d), -ETIMEDOUT);
  ASSERT_EQ(cloop_timer_count(loop), 0);
  for (int i = 0; i < 3; i++)
    cloop_task_release(kids[i]);
  return 0;
}

TEST_IMPL_SWITCH(deadline_in_gather) {
  dg_unwound = 0;
  ASSERT_EQ(test_run_task_manual(opts, deadline_gather, NULL), 0);
  return 0;
}

/* A cancellation inside a scope is a cancellation, not a timeout. */
static intptr_t cancel_in_scope(void *arg) {
  (void)arg;
  cloop_deadline d;
  ASSERT_EQ(cloop_deadline_enter(&d, 5000 * MS), 0);
  int r = cloop_sleep(10000 * MS);
  int e = cloop_deadline_exit(&d);
  ASSERT_EQ(e, 0);
  return r;
}

static intptr_t cancel_in_scope_main(void *arg) {
  (void)arg;
  cloop_task *t;
  ASSERT_EQ(cloop_spawn(my_loop(), &t, cancel_in_scope, NULL, "scoped"), 0);
  ASSERT_EQ(cloop_sleep(1 * MS), 0);
  ASSERT_EQ(cloop_task_cancel(t), 1);
  ASSERT_EQ(cloop_task_join(t), -ECANCELED);
  ASSERT_EQ(cloop_timer_count(my_loop()), 0);
  cloop_task_release(t);
  return 0;
}

TEST_IMPL_SWITCH(deadline_cancel_inside_scope) {
  ASSERT_EQ(test_run_task_manual(opts, cancel_in_scope_main, NULL), 0);
  return 0;
}

/* ---- misuse --------------------------------------------------------------- */

static intptr_t exit_out_of_order(void *arg) {
  (void)arg;
  cloop_deadline a, b;
  ASSERT_EQ(cloop_deadline_enter(&a, 1000 * MS), 0);
  ASSERT_EQ(cloop_deadline_enter(&b, 1000 * MS), 0);
  cloop_deadline_exit(&a); /* b is the innermost */
  return 0;
}

static intptr_t return_inside_scope(void *arg) {
  (void)arg;
  cloop_deadline d;
  ASSERT_EQ(cloop_deadline_enter(&d, 1000 * MS), 0);
  ASSERT_EQ(cloop_sleep(0), 0);
  return 0;
}

static void run_in_child(void *arg) {
  void **a = arg;
  test_run_task(a[0], (cloop_task_fn)(uintptr_t)a[1], NULL);
}

TEST_IMPL_SWITCH(deadline_exit_out_of_order_aborts) {
  void *a[2] = {(void *)opts, (void *)(uintptr_t)exit_out_of_order};
  test_expect_abort("exiting the outer scope first", run_in_child, a, "misuse");
  test_expect_abort("exiting the outer scope first", run_in_child, a,
                    "innermost");
  return 0;
}

TEST_IMPL_SWITCH(deadline_return_inside_scope_aborts) {
  void *a[2] = {(void *)opts, (void *)(uintptr_t)return_inside_scope};
  test_expect_abort("a task returning inside a deadline scope", run_in_child,
                    a, "misuse");
  test_expect_abort("a task returning inside a deadline scope", run_in_child,
                    a, "test-main"); /* the message names the task */
  return 0;
}

/* ---- the same on the shared stack (CLOOP_STACK_SHARED) ------------------ */

TEST_SHARED_STACK(deadline_nested_inner_shorter)
TEST_SHARED_STACK(deadline_nested_outer_shorter)
TEST_SHARED_STACK(deadline_in_gather)

/* ---- shield scopes ------------------------------------------------------------ */

static int cleanup_done;

/* Parks until cancelled, then does its clean-up -- 10 ms of awaits -- in a
   shield, which the cancellation already delivered cannot cut short. */
static intptr_t cleans_up(void *arg) {
  (void)arg;
  cloop_loop *loop = my_loop();
  int r = cloop_sleep(10000 * MS);
  ASSERT_EQ(r, -ECANCELED);
  cloop_deadline shield;
  ASSERT_EQ(cloop_shield_enter(&shield, CLOOP_NO_DEADLINE), 0);
  uint64_t start = cloop_now(loop);
  ASSERT_EQ(cloop_sleep(5 * MS), 0);   /* "write the goodbye" */
  ASSERT_EQ(cloop_sleep(5 * MS), 0);   /* "wait for it to drain" */
  ASSERT_EQ(cloop_now(loop), start + 10 * MS);
  ASSERT_EQ(cloop_deadline_exit(&shield), 0);
  cleanup_done = 1;
  return r;
}

/* Cancelled while inside the shield: every await inside goes on; the
   first one after it meets the cancellation. */
static intptr_t shielded_when_cancelled(void *arg) {
  (void)arg;
  cloop_loop *loop = my_loop();
  cloop_deadline shield;
  ASSERT_EQ(cloop_shield_enter(&shield, CLOOP_NO_DEADLINE), 0);
  uint64_t start = cloop_now(loop);
  ASSERT_EQ(cloop_sleep(10 * MS), 0); /* cancelled meanwhile: it sleeps on */
  ASSERT_EQ(cloop_now(loop), start + 10 * MS);
  ASSERT_EQ(cloop_sleep(0), 0);
  ASSERT_EQ(cloop_deadline_exit(&shield), 0);
  cleanup_done = 1;
  return cloop_sleep(0); /* -ECANCELED, kept for here */
}

static intptr_t shield_main(void *arg) {
  (void)arg;
  cloop_loop *loop = my_loop();
  cloop_task *t;
  cleanup_done = 0;
  ASSERT_EQ(cloop_spawn(loop, &t, cleans_up, NULL, "cleaner"), 0);
  ASSERT_EQ(cloop_sleep(1 * MS), 0);
  ASSERT_EQ(cloop_task_cancel(t), 1);
  ASSERT_EQ(cloop_task_join(t), -ECANCELED);
  ASSERT_EQ(cleanup_done, 1);
  cloop_task_release(t);

  cleanup_done = 0;
  ASSERT_EQ(cloop_spawn(loop, &t, shielded_when_cancelled, NULL, "shielded"), 0);
  ASSERT_EQ(cloop_sleep(1 * MS), 0);
  ASSERT_EQ(cloop_task_cancel(t), 1);
  ASSERT_EQ(cloop_task_join(t), -ECANCELED);
  ASSERT_EQ(cleanup_done, 1);
  cloop_task_release(t);

  /* An outer deadline waits for the shield to end; its own applies. */
  uint64_t start = cloop_now(loop);
  cloop_deadline outer, shield;
  ASSERT_EQ(cloop_deadline_enter(&outer, 5 * MS), 0);
  ASSERT_EQ(cloop_shield_enter(&shield, CLOOP_NO_DEADLINE), 0);
  ASSERT_EQ(cloop_sleep(10 * MS), 0); /* past the outer deadline */
  ASSERT_EQ(cloop_now(loop), start + 10 * MS);
  ASSERT_EQ(cloop_deadline_exit(&shield), 0);
  ASSERT_EQ(cloop_sleep(0), -ETIMEDOUT); /* now the outer one */
  ASSERT_EQ(cloop_deadline_exit(&outer), -ETIMEDOUT);
  start = cloop_now(loop);
  ASSERT_EQ(cloop_shield_enter(&shield, 3 * MS), 0);
  ASSERT_EQ(cloop_sleep(10 * MS), -ETIMEDOUT);
  ASSERT_EQ(cloop_now(loop), start + 3 * MS);
  ASSERT_EQ(cloop_deadline_exit(&shield), -ETIMEDOUT);
  ASSERT_EQ(cloop_sleep(0), 0);
  ASSERT_EQ(cloop_timer_count(loop), 0);
  return 0;
}

TEST_IMPL_SWITCH(deadline_shield_scopes) {
  ASSERT_EQ(test_run_task_manual(opts, shield_main, NULL), 0);
  return 0;
}

/* ---- wait_for: a timeout that cancels what it waited for ---------------- */

static int kid_unwound;

static intptr_t slow_kid(void *arg) {
  int r = cloop_sleep((int64_t)(intptr_t)arg * MS);
  if (r < 0) {
    kid_unwound = 1; /* its clean-up ran */
    return r;
  }
  return 7;
}

static intptr_t wait_for_outer(void *arg) {
  return cloop_wait_for((cloop_task *)arg, 1000 * MS);
}

static intptr_t wait_for_main(void *arg) {
  (void)arg;
  cloop_loop *loop = my_loop();
  cloop_task *kid;
  uint64_t start = cloop_now(loop);
  /* In time: its result. */
  ASSERT_EQ(cloop_spawn(loop, &kid, slow_kid, (void *)5, "kid"), 0);
  ASSERT_EQ(cloop_wait_for(kid, 10 * MS), 7);
  cloop_task_release(kid);
  /* Too slow: cancelled, and finished (its clean-up ran) before the
     -ETIMEDOUT; nothing is left running. */
  kid_unwound = 0;
  start = cloop_now(loop);
  ASSERT_EQ(cloop_spawn(loop, &kid, slow_kid, (void *)100, "kid"), 0);
  ASSERT_EQ(cloop_wait_for(kid, 10 * MS), -ETIMEDOUT);
  ASSERT_EQ(cloop_now(loop), start + 10 * MS);
  ASSERT_EQ(kid_unwound, 1);
  ASSERT_EQ(cloop_task_future(kid)->state, CLOOP_CANCELLED);
  cloop_task_release(kid);
  ASSERT_EQ(cloop_timer_count(loop), 0);
  /* The waiter cancelled: the kid too. */
  kid_unwound = 0;
  cloop_task *waiter;
  ASSERT_EQ(cloop_spawn(loop, &kid, slow_kid, (void *)100, "kid"), 0);
  ASSERT_EQ(cloop_spawn(loop, &waiter, wait_for_outer, kid, "waiter"), 0);
  ASSERT_EQ(cloop_sleep(1 * MS), 0);
  ASSERT_EQ(cloop_task_cancel(waiter), 1);
  ASSERT_EQ(cloop_task_join(waiter), -ECANCELED);
  ASSERT_EQ(kid_unwound, 1);
  ASSERT(cloop_future_done(cloop_task_future(kid)));
  cloop_task_release(waiter);
  cloop_task_release(kid);
  return 0;
}

TEST_IMPL_SWITCH(deadline_wait_for_cancels_on_expiry) {
  ASSERT_EQ(test_run_task_manual(opts, wait_for_main, NULL), 0);
  return 0;
}
