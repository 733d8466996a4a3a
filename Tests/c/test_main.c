/* test_main.c -- cloop_main (asyncio.run) and cloop_spawn_periodic. */
#include "test.h"

#include <sys/wait.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#define MS 1000000LL

static cloop_loop *my_loop(void) {
  return cloop_task_loop(cloop_current_task());
}

/* ---- cloop_main ------------------------------------------------------------- */

static intptr_t main_returns(void *arg) {
  ASSERT(cloop_current_task() != NULL);
  ASSERT_EQ(strcmp(cloop_task_name(cloop_current_task()), "main"), 0);
  ASSERT_EQ(cloop_sleep(1 * MS), 0);
  return (intptr_t)arg;
}

TEST_IMPL_SWITCH(main_result_and_error) {
  ASSERT_EQ(cloop_main(main_returns, (void *)42, opts), 42);
  ASSERT_EQ(cloop_main(main_returns, (void *)0, opts), 0);
  ASSERT_EQ(cloop_main(main_returns, (void *)(intptr_t)-EIO, opts), -EIO);
  ASSERT_EQ(cloop_main(main_returns, (void *)(intptr_t)-ECANCELED, opts), -ECANCELED);
  ASSERT(cloop_current_task() == NULL);
  return 0;
}

static struct {
  cloop_future never;
  int r_sleep, r_future, r_cleanup;
  int unwound_sleep, unwound_future, started;
} lo;

static intptr_t left_sleeping(void *arg) {
  (void)arg;
  lo.started++;
  lo.r_sleep = cloop_sleep(10000 * MS);
  lo.r_cleanup = cloop_sleep(1 * MS); /* unwinding may await */
  lo.unwound_sleep++;
  return lo.r_sleep;
}

static intptr_t left_on_future(void *arg) {
  (void)arg;
  lo.started++;
  lo.r_future = cloop_await(&lo.never, NULL);
  lo.unwound_future++;
  return lo.r_future;
}

static intptr_t main_leaves_tasks(void *arg) {
  (void)arg;
  cloop_task *held;
  cloop_future_init(&lo.never, my_loop());
  ASSERT_EQ(cloop_spawn(my_loop(), NULL, left_sleeping, NULL, "sleeper"), 0);
  ASSERT_EQ(cloop_spawn(my_loop(), &held, left_on_future, NULL, "waiter"), 0);
  ASSERT_EQ(cloop_sleep(2 * MS), 0);
  ASSERT_EQ(lo.started, 2);
  cloop_task_release(held);
  return 7;
}

TEST_IMPL_SWITCH(main_cancels_leftover_tasks) {
  memset(&lo, 0, sizeof lo);
  uint64_t start = test_clock_ns();
  ASSERT_EQ(cloop_main(main_leaves_tasks, NULL, opts), 7);
  ASSERT_LT(test_clock_ns() - start, 1000 * MS);
  ASSERT_EQ(lo.r_sleep, -ECANCELED);
  ASSERT_EQ(lo.r_cleanup, 0);
  ASSERT_EQ(lo.unwound_sleep, 1);
  ASSERT_EQ(lo.r_future, -ECANCELED);
  ASSERT_EQ(lo.unwound_future, 1);
  return 0;
}

/* A main parked on something nothing can complete: cloop_main does not
   hang; it returns an error (-EDEADLK here) after cancelling and unwinding
   main and the rest. */
static struct {
  cloop_future never;
  int main_r, other_r, other_unwound;
} dl;

static intptr_t dl_other(void *arg) {
  (void)arg;
  dl.other_r = cloop_await(&dl.never, NULL);
  dl.other_unwound++;
  return dl.other_r;
}

static intptr_t dl_main(void *arg) {
  (void)arg;
  cloop_future_init(&dl.never, my_loop());
  ASSERT_EQ(cloop_spawn(my_loop(), NULL, dl_other, NULL, "other"), 0);
  dl.main_r = cloop_await(&dl.never, NULL);
  return 5;
}

static void run_deadlocked_main(void *arg) {
  intptr_t r = cloop_main(dl_main, NULL, arg);
  fprintf(stderr, "cloop_main returned %ld\n", (long)r);
  if (r != -EDEADLK || dl.main_r != -ECANCELED || dl.other_r != -ECANCELED ||
      dl.other_unwound != 1)
    _exit(3);
}

TEST_IMPL_SWITCH(main_parked_forever_returns) {
  char buf[4096];
  memset(&dl, 0, sizeof dl);
  int status = test_child_stderr(run_deadlocked_main, (void *)opts, buf, sizeof buf);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fprintf(stderr, "the child (status %#x) wrote:\n%s\n", status, buf);
  ASSERT(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  return 0;
}

/* ---- periodic tasks ---------------------------------------------------------- */

static struct {
  int calls;
  uint64_t at[256];  /* test_clock_ns() of each call */
  int fail_on;       /* return -EIO on this call (1-based), 0: never */
  int overrun_on;    /* busy-wait overrun_ns on this call */
  uint64_t overrun_ns;
} pe;

static intptr_t tick(void *arg) {
  (void)arg;
  uint64_t now = test_clock_ns();
  if (pe.calls < 256)
    pe.at[pe.calls] = now;
  pe.calls++;
  if (pe.calls == pe.overrun_on)
    while (test_clock_ns() < now + pe.overrun_ns)
      ;
  if (pe.calls == pe.fail_on)
    return -EIO;
  return 0;
}

/* Calls come one interval apart on a fixed grid: never before
   start + k * interval; over a window, as many as the window holds, give
   or take (the bounds are loose: behaviour, not speed). */
static intptr_t periodic_rate(void *arg) {
  (void)arg;
  const int64_t interval = 5 * MS;
  cloop_task *p;
  uint64_t start = cloop_now(my_loop());
  ASSERT_EQ(cloop_spawn_periodic(my_loop(), &p, tick, NULL, interval, "ticker"), 0);
  ASSERT_EQ(strcmp(cloop_task_name(p), "ticker"), 0);
  ASSERT_EQ(cloop_sleep(3 * MS), 0);
  ASSERT_EQ(pe.calls, 0); /* the first call comes after one interval */
  ASSERT_EQ(cloop_sleep(100 * MS), 0);
  uint64_t end = test_clock_ns();
  ASSERT_EQ(cloop_task_cancel(p), 1);
  int calls = pe.calls;
  ASSERT_GE(calls, 5);                                 /* ~20 expected */
  ASSERT_LE(calls, (int)((end - start) / interval) + 1); /* no bunching */
  for (int k = 0; k < calls && k < 256; k++)
    ASSERT_GE(pe.at[k], start + (uint64_t)(k + 1) * interval);
  ASSERT_EQ(cloop_task_join(p), -ECANCELED);
  ASSERT_EQ(cloop_task_future(p)->state, CLOOP_CANCELLED);
  /* Cancelled: no call after it. */
  ASSERT_EQ(cloop_sleep(3 * interval), 0);
  ASSERT_EQ(pe.calls, calls);
  cloop_task_release(p);
  return 0;
}

TEST_IMPL_SWITCH(periodic_fixed_rate_and_cancel) {
  memset(&pe, 0, sizeof pe);
  ASSERT_EQ(test_run_task(opts, periodic_rate, NULL), 0);
  return 0;
}

static intptr_t periodic_error(void *arg) {
  (void)arg;
  cloop_task *p;
  pe.fail_on = 3;
  ASSERT_EQ(cloop_spawn_periodic(my_loop(), &p, tick, NULL, 2 * MS, NULL), 0);
  ASSERT_EQ(cloop_task_join(p), -EIO);
  ASSERT_EQ(cloop_task_future(p)->state, CLOOP_FAILED);
  ASSERT_EQ(cloop_task_future(p)->error, -EIO);
  ASSERT_EQ(pe.calls, 3);
  ASSERT_EQ(cloop_sleep(10 * MS), 0);
  ASSERT_EQ(pe.calls, 3); /* stopped */
  ASSERT_EQ(cloop_timer_count(my_loop()), 0);
  cloop_task_release(p);
  /* A bad interval is refused. */
  ASSERT_EQ(cloop_spawn_periodic(my_loop(), &p, tick, NULL, 0, NULL), -EINVAL);
  ASSERT_EQ(cloop_spawn_periodic(my_loop(), &p, tick, NULL, -1, NULL), -EINVAL);
  return 0;
}

TEST_IMPL_SWITCH(periodic_stops_on_error) {
  memset(&pe, 0, sizeof pe);
  ASSERT_EQ(test_run_task(opts, periodic_error, NULL), 0);
  return 0;
}

/* A call that overruns by more than an interval: the ticks it missed are
   skipped, not made up late ("a late call does not shift the next"; task.c:
   "ticks missed while a call overran are skipped, not bunched"). Interval
   20 ms; call 2 (due at 40 ms) busy-waits 45 ms, to about 85 ms: ticks 60
   and 80 are missed, and the next call is due at 100 ms. */
static intptr_t periodic_overrun(void *arg) {
  (void)arg;
  const int64_t interval = 20 * MS;
  cloop_task *p;
  pe.overrun_on = 2;
  pe.overrun_ns = 45 * MS;
  uint64_t start = cloop_now(my_loop());
  ASSERT_EQ(cloop_spawn_periodic(my_loop(), &p, tick, NULL, interval, NULL), 0);
  while (pe.calls < 4)
    ASSERT_EQ(cloop_sleep(5 * MS), 0);
  ASSERT_EQ(cloop_task_cancel(p), 1);
  ASSERT_EQ(cloop_task_join(p), -ECANCELED);
  cloop_task_release(p);
  ASSERT_GE(pe.at[0], start + 1 * interval);
  ASSERT_GE(pe.at[1], start + 2 * interval);
  if (pe.at[2] < start + 5 * interval)
    fprintf(stderr, "call 3 came %.1f ms after the start; the overrun "
            "ended at %.1f ms and the next tick on the grid is at %.1f ms\n",
            (pe.at[2] - start) / 1e6, (pe.at[1] + pe.overrun_ns - start) / 1e6,
            5.0 * interval / 1e6);
  ASSERT_GE(pe.at[2], start + 5 * interval);
  ASSERT_GE(pe.at[3], start + 6 * interval);
  return 0;
}

TEST_IMPL_SWITCH(periodic_overrun_skips_missed_ticks) {
  memset(&pe, 0, sizeof pe);
  ASSERT_EQ(test_run_task(opts, periodic_overrun, NULL), 0);
  return 0;
}

/* Cancelled before its first step (or closed with the loop before it ran):
   what cloop_spawn_periodic allocated must still be freed. glibc's
   mallinfo2 counts the bytes in use -- freed chunks parked in the
   per-thread cache (7 per size) count too, so the rounds measured come
   after enough warm-up rounds to fill it. Under ASan (which replaces
   malloc) LeakSanitizer reports a leak when the test process exits. */
static size_t heap_in_use(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
  return mallinfo2().uordblks;
#else
  return 0;
#endif
}

static intptr_t ignored_tick(void *arg) {
  (void)arg;
  return 0;
}

static void periodic_never_run(const cloop_options *opts) {
  cloop_loop *loop;
  cloop_task *p;
  LOOP_NEW_OPTS(loop, opts);
  ASSERT_EQ(cloop_spawn_periodic(loop, &p, ignored_tick, NULL, 1 * MS, "early"), 0);
  ASSERT_EQ(cloop_task_cancel(p), 1); /* before it ever ran */
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(cloop_task_future(p)->state, CLOOP_CANCELLED);
  cloop_task_release(p);
  /* And one the close cancels before it ran. */
  ASSERT_EQ(cloop_spawn_periodic(loop, NULL, ignored_tick, NULL, 1 * MS, "closed"), 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
}

TEST_IMPL_SWITCH(periodic_cancelled_before_first_run_frees) {
  enum { WARM = 10, ROUNDS = 10 };
  for (int i = 0; i < WARM; i++)
    periodic_never_run(opts);
  size_t before = heap_in_use();
  for (int i = 0; i < ROUNDS; i++)
    periodic_never_run(opts);
  size_t after = heap_in_use();
  if (after != before)
    fprintf(stderr, "heap in use grew by %zu bytes over %d rounds\n",
            after - before, ROUNDS);
  ASSERT_EQ(after, before);
  return 0;
}

/* ---- the same on the shared stack (CLOOP_STACK_SHARED) ------------------ */

TEST_SHARED_STACK(main_cancels_leftover_tasks)
TEST_SHARED_STACK(periodic_fixed_rate_and_cancel)
