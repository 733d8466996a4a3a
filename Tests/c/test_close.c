/* test_close.c -- closing a loop that has tasks: failures nobody retrieved
 * are reported (hook or stderr), retrieved and cancelled ones are not;
 * tasks still parked are cancelled and unwound by cloop_loop_free. */
#include "test.h"

#include <sys/wait.h>

#define MS 1000000LL

static intptr_t fail_with(void *arg) {
  ASSERT_EQ(cloop_sleep(0), 0);
  return (intptr_t)arg;
}

static intptr_t sleep_long(void *arg) {
  (void)arg;
  return cloop_sleep(10000 * MS);
}

/* ---- reporting failures nobody retrieved ------------------------------- */

static struct {
  int calls;
  char names[8][32];
  int errs[8];
  void *arg;
} rep;

static void record_hook(cloop_task *t, int err, void *arg) {
  ASSERT_LT(rep.calls, 8);
  snprintf(rep.names[rep.calls], sizeof rep.names[0], "%s", cloop_task_name(t));
  rep.errs[rep.calls] = err;
  rep.arg = arg;
  rep.calls++;
}

static int reported(const char *name) {
  int n = 0;
  for (int i = 0; i < rep.calls; i++)
    if (strcmp(rep.names[i], name) == 0)
      n++;
  return n;
}

static intptr_t joiner(void *arg) {
  return cloop_task_join(arg); /* reads the error: retrieved */
}

TEST_IMPL_SWITCH(close_reports_unretrieved) {
  cloop_loop *loop;
  int token;
  memset(&rep, 0, sizeof rep);
  LOOP_NEW_OPTS(loop, opts);
  cloop_set_unretrieved_hook(loop, record_hook, &token);

  cloop_task *seen, *held, *cancelled, *ok, *join_seen;
  /* Reported: a detached failure, and one whose reference is held. */
  ASSERT_EQ(cloop_spawn(loop, NULL, fail_with, (void *)(intptr_t)-EIO, "doomed"), 0);
  ASSERT_EQ(cloop_spawn(loop, &held, fail_with, (void *)(intptr_t)-ENOSPC, "held"), 0);
  /* Not reported: awaited by another task; cancelled; succeeded. */
  ASSERT_EQ(cloop_spawn(loop, &seen, fail_with, (void *)(intptr_t)-EPIPE, "seen"), 0);
  ASSERT_EQ(cloop_spawn(loop, &join_seen, joiner, seen, "joiner"), 0);
  ASSERT_EQ(cloop_spawn(loop, &cancelled, sleep_long, NULL, "cancelled"), 0);
  ASSERT_EQ(cloop_spawn(loop, &ok, fail_with, (void *)5, "fine"), 0);
  ASSERT_EQ(cloop_spawn(loop, NULL, fail_with, (void *)(intptr_t)-ECANCELED,
                        "gave-up"), 0);
  ASSERT_EQ(cloop_run_once(loop, 0), 1);
  ASSERT_EQ(cloop_task_cancel(cancelled), 1);
  ASSERT_EQ(cloop_run(loop), 0);

  ASSERT_EQ(cloop_task_future(seen)->state, CLOOP_FAILED);
  ASSERT_EQ(cloop_task_future(join_seen)->state, CLOOP_FAILED); /* passed on */
  ASSERT_EQ(cloop_task_future(join_seen)->error, -EPIPE);
  ASSERT_EQ(cloop_task_future(cancelled)->state, CLOOP_CANCELLED);
  ASSERT_EQ(rep.calls, 0); /* nothing before close */
  cloop_task_release(seen);
  cloop_task_release(cancelled);
  cloop_task_release(ok);
  /* join_seen failed too and nobody read its error: it is reported. */
  cloop_task_release(join_seen);

  ASSERT_EQ(cloop_loop_free(loop), 0);
  ASSERT_EQ(rep.calls, 3);
  ASSERT_EQ(reported("doomed"), 1);
  ASSERT_EQ(reported("held"), 1);
  ASSERT_EQ(reported("joiner"), 1);
  for (int i = 0; i < rep.calls; i++) {
    if (strcmp(rep.names[i], "doomed") == 0)
      ASSERT_EQ(rep.errs[i], -EIO);
    else if (strcmp(rep.names[i], "held") == 0)
      ASSERT_EQ(rep.errs[i], -ENOSPC);
    else
      ASSERT_EQ(rep.errs[i], -EPIPE);
  }
  ASSERT(rep.arg == &token);
  (void)held; /* freed by the close with the rest */
  return 0;
}

/* Without a hook: stderr, from a child whose stderr is captured. */
static void close_without_hook(void *arg) {
  const cloop_options *opts = arg;
  cloop_loop *loop;
  cloop_task *quiet;
  ASSERT_EQ(cloop_loop_new(&loop, opts), 0);
  ASSERT_EQ(cloop_spawn(loop, NULL, fail_with, (void *)(intptr_t)-ECONNRESET,
                        "lonely-task"), 0);
  ASSERT_EQ(cloop_spawn(loop, &quiet, sleep_long, NULL, "quiet-task"), 0);
  ASSERT_EQ(cloop_run_once(loop, 0), 1);
  ASSERT_EQ(cloop_task_cancel(quiet), 1);
  ASSERT_EQ(cloop_run(loop), 0);
  cloop_task_release(quiet);
  fputs("before-close\n", stderr);
  int r = cloop_loop_free(loop);
  fputs("after-close\n", stderr);
  if (r != 0)
    _exit(3);
}

TEST_IMPL_SWITCH(close_reports_unretrieved_stderr) {
  char buf[4096];
  int status = test_child_stderr(close_without_hook, (void *)opts, buf, sizeof buf);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
      !strstr(buf, "lonely-task"))
    fprintf(stderr, "the child (status %#x) wrote:\n%s\n", status, buf);
  ASSERT(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  char *before = strstr(buf, "before-close"), *after = strstr(buf, "after-close");
  ASSERT(before && after);
  char *name = strstr(before, "lonely-task");
  ASSERT(name != NULL && name < after); /* written by cloop_loop_free */
  ASSERT(strstr(buf, "quiet-task") == NULL); /* cancelled: not reported */
  /* and the error is named, as a number or as text */
  ASSERT(strstr(before, "-104") || strcasestr(before, "reset"));
  return 0;
}

/* ---- closing with tasks still parked ----------------------------------- */

static struct {
  cloop_future never;
  int r_future, r_sleep, r_gather, r_kid[2], r_cleanup;
  int after_future, after_sleep, after_gather, after_kid;
  int kid_running;
} cp;

static intptr_t parked_on_future(void *arg) {
  (void)arg;
  cp.r_future = cloop_await(&cp.never, NULL);
  cp.after_future++; /* cleanup, after the await returned */
  return cp.r_future;
}

static intptr_t parked_in_sleep(void *arg) {
  (void)arg;
  cp.r_sleep = cloop_sleep(10000 * MS);
  /* Unwinding may await: the cancellation was used up. */
  cp.r_cleanup = cloop_sleep(1 * MS);
  cp.after_sleep++;
  return cp.r_sleep;
}

static intptr_t gather_kid(void *arg) {
  int i = (int)(intptr_t)arg;
  cp.kid_running++;
  cp.r_kid[i] = cloop_sleep(10000 * MS);
  cp.kid_running--;
  cp.after_kid++;
  return cp.r_kid[i];
}

static intptr_t parked_in_gather(void *arg) {
  (void)arg;
  cloop_loop *loop = cloop_task_loop(cloop_current_task());
  cloop_task *kids[2];
  cloop_future *fs[2];
  for (int i = 0; i < 2; i++) {
    ASSERT_EQ(cloop_spawn(loop, &kids[i], gather_kid, (void *)(intptr_t)i, NULL), 0);
    fs[i] = cloop_task_future(kids[i]);
  }
  cp.r_gather = cloop_gather(fs, 2, NULL);
  ASSERT_EQ(cp.kid_running, 0);
  for (int i = 0; i < 2; i++)
    cloop_task_release(kids[i]);
  cp.after_gather++;
  return cp.r_gather;
}

TEST_IMPL_SWITCH(close_cancels_parked_tasks) {
  cloop_loop *loop;
  memset(&cp, 0, sizeof cp);
  memset(&rep, 0, sizeof rep);
  LOOP_NEW_OPTS(loop, opts);
  cloop_set_unretrieved_hook(loop, record_hook, NULL);
  cloop_future_init(&cp.never, loop);
  cloop_task *held;
  ASSERT_EQ(cloop_spawn(loop, NULL, parked_on_future, NULL, "on-future"), 0);
  ASSERT_EQ(cloop_spawn(loop, &held, parked_in_sleep, NULL, "in-sleep"), 0);
  ASSERT_EQ(cloop_spawn(loop, NULL, parked_in_gather, NULL, "in-gather"), 0);
  for (int i = 0; i < 3; i++)
    ASSERT_EQ(cloop_run_once(loop, 0), 1);
  ASSERT_EQ(cp.kid_running, 2);
  ASSERT_EQ(cp.after_future + cp.after_sleep + cp.after_gather, 0);
  ASSERT_EQ(cloop_timer_count(loop), 3);

  uint64_t start = test_clock_ns();
  ASSERT_EQ(cloop_loop_free(loop), 0);
  ASSERT_LT(test_clock_ns() - start, 1000 * MS);

  ASSERT_EQ(cp.r_future, -ECANCELED);
  ASSERT_EQ(cp.after_future, 1);
  ASSERT_EQ(cp.r_sleep, -ECANCELED);
  ASSERT_EQ(cp.r_cleanup, 0);
  ASSERT_EQ(cp.after_sleep, 1);
  ASSERT_EQ(cp.r_gather, -ECANCELED);
  ASSERT_EQ(cp.after_gather, 1);
  ASSERT_EQ(cp.r_kid[0], -ECANCELED);
  ASSERT_EQ(cp.r_kid[1], -ECANCELED);
  ASSERT_EQ(cp.after_kid, 2);
  ASSERT_EQ(cp.kid_running, 0);
  ASSERT_EQ(rep.calls, 0); /* cancelled tasks are not failures */
  (void)held;
  return 0;
}

/* A loop whose tasks have all finished closes at once; so does one that
   never had any. */
TEST_IMPL_SWITCH(close_after_tasks_finished) {
  cloop_loop *loop;
  cloop_task *t;
  LOOP_NEW_OPTS(loop, opts);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  LOOP_NEW_OPTS(loop, opts);
  ASSERT_EQ(cloop_spawn(loop, &t, fail_with, (void *)3, NULL), 0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(cloop_task_future(t)->value, 3);
  cloop_task_release(t);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* A task that spawns another while it unwinds: the close cancels the new
   one too (in its next round) and still returns 0 promptly. */
static int respawned_ran, respawned_cancelled;

static intptr_t respawned(void *arg) {
  (void)arg;
  respawned_ran++;
  int r = cloop_sleep(10000 * MS);
  respawned_cancelled += r == -ECANCELED;
  return r;
}

static intptr_t spawns_while_unwinding(void *arg) {
  (void)arg;
  int r = cloop_sleep(10000 * MS);
  ASSERT_EQ(r, -ECANCELED);
  ASSERT_EQ(cloop_spawn(cloop_task_loop(cloop_current_task()), NULL, respawned,
                        NULL, "respawned"), 0);
  return r;
}

TEST_IMPL_SWITCH(close_cancels_tasks_spawned_while_unwinding) {
  cloop_loop *loop;
  LOOP_NEW_OPTS(loop, opts);
  respawned_ran = respawned_cancelled = 0;
  ASSERT_EQ(cloop_spawn(loop, NULL, spawns_while_unwinding, NULL, "parent"), 0);
  ASSERT_EQ(cloop_run_once(loop, 0), 1);
  uint64_t start = test_clock_ns();
  ASSERT_EQ(cloop_loop_free(loop), 0);
  ASSERT_LT(test_clock_ns() - start, 1000 * MS);
  /* Cancelled before it ran (its body never runs) or in its sleep. */
  ASSERT_EQ(respawned_ran, respawned_cancelled);
  return 0;
}

/* A task that will not unwind -- it parks again, on something nothing
   completes -- cannot hold up the close: cloop_loop_free drops it, says so
   on stderr naming it, and returns 0. */
static cloop_future stubborn_future;

static intptr_t stubborn(void *arg) {
  (void)arg;
  ASSERT_EQ(cloop_await(&stubborn_future, NULL), -ECANCELED);
  cloop_await(&stubborn_future, NULL); /* parks again; never resumes */
  fprintf(stderr, "stubborn resumed\n");
  return 0;
}

static void close_with_stubborn(void *arg) {
  cloop_loop *loop;
  ASSERT_EQ(cloop_loop_new(&loop, arg), 0);
  cloop_future_init(&stubborn_future, loop);
  ASSERT_EQ(cloop_spawn(loop, NULL, stubborn, NULL, "stubborn-task"), 0);
  ASSERT_EQ(cloop_run_once(loop, 0), 0);
  int r = cloop_loop_free(loop);
  fprintf(stderr, "cloop_loop_free returned %d\n", r);
}

TEST_IMPL_SWITCH(close_drops_task_that_will_not_unwind) {
  char buf[4096];
  int status = test_child_stderr(close_with_stubborn, (void *)opts, buf, sizeof buf);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
      !strstr(buf, "cloop_loop_free returned 0\n"))
    fprintf(stderr, "the child (status %#x) wrote:\n%s\n", status, buf);
  ASSERT(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  ASSERT(strstr(buf, "cloop_loop_free returned 0\n") != NULL);
  ASSERT(strstr(buf, "stubborn-task") != NULL);
  ASSERT(strstr(buf, "stubborn resumed") == NULL);
  return 0;
}

/* Closing the loop from inside one of its tasks is misuse. */
static intptr_t closes_own_loop(void *arg) {
  (void)arg;
  cloop_loop_free(cloop_task_loop(cloop_current_task()));
  return 0;
}

static void run_closer(void *arg) {
  cloop_loop *loop;
  ASSERT_EQ(cloop_loop_new(&loop, arg), 0);
  ASSERT_EQ(cloop_spawn(loop, NULL, closes_own_loop, NULL, "closer"), 0);
  cloop_run(loop);
}

TEST_IMPL_SWITCH(close_from_inside_a_task_aborts) {
  test_expect_abort("cloop_loop_free inside a task", run_closer, (void *)opts,
                    "misuse");
  return 0;
}

/* ---- the same on the shared stack (CLOOP_STACK_SHARED) ------------------ */

TEST_SHARED_STACK(close_reports_unretrieved)
TEST_SHARED_STACK(close_cancels_parked_tasks)
