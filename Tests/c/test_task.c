/* test_task.c -- tasks: spawn, names, join, sleep (order, sleep(0),
 * sleep_until), how a task's future ends, a tree of tasks spawned from
 * tasks, and 100,000 tasks alive at once. */
#include "test.h"

#define MS 1000000LL

/* ---- spawn, names, current task ------------------------------------------ */

static struct {
  cloop_loop *loop;
  cloop_task *t[3];
  int order[8], norder;
} sp;

static intptr_t sp_body(void *arg) {
  int i = (int)(intptr_t)arg;
  sp.order[sp.norder++] = i;
  ASSERT(cloop_current_task() == sp.t[i]);
  ASSERT(cloop_task_loop(cloop_current_task()) == sp.loop);
  return 10 + i;
}

TEST_IMPL_SWITCH(task_spawn_runs_next_iteration) {
  memset(&sp, 0, sizeof sp);
  LOOP_NEW_OPTS(sp.loop, opts);
  ASSERT(cloop_current_task() == NULL);
  ASSERT_EQ(cloop_spawn(sp.loop, &sp.t[0], sp_body, (void *)0, "first"), 0);
  ASSERT_EQ(cloop_spawn(sp.loop, &sp.t[1], sp_body, (void *)1, NULL), 0);
  ASSERT_EQ(cloop_spawn(sp.loop, &sp.t[2], sp_body, (void *)2,
                        "a-name-much-longer-than-thirty-one-bytes"), 0);
  ASSERT_EQ(sp.norder, 0); /* not yet: they run in the next iteration */
  ASSERT_EQ(strcmp(cloop_task_name(sp.t[0]), "first"), 0);
  ASSERT(strlen(cloop_task_name(sp.t[1])) > 0); /* a default name */
  ASSERT_EQ(strcmp(cloop_task_name(sp.t[2]), "a-name-much-longer-than-thirty-"), 0);
  ASSERT_EQ(cloop_run(sp.loop), 0);
  ASSERT(cloop_current_task() == NULL);
  ASSERT_EQ(sp.norder, 3);
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(sp.order[i], i);
    ASSERT_EQ(cloop_task_future(sp.t[i])->state, CLOOP_DONE);
    ASSERT_EQ(cloop_task_future(sp.t[i])->value, 10 + i);
    cloop_task_release(sp.t[i]);
  }
  ASSERT_EQ(cloop_loop_free(sp.loop), 0);
  return 0;
}

/* ---- the user word ------------------------------------------------------ */

/* Each task sees its own word after every switch, on the task's own stack
   or the shared one; a new task's is NULL, and outside tasks there is none. */
static int uw_rounds_done;

static intptr_t uw_body(void *arg) {
  cloop_task *self = cloop_current_task();
  ASSERT(cloop_current_task_user() == NULL); /* not set yet */
  cloop_task_set_user(self, arg);
  for (int i = 0; i < 3; i++) {
    ASSERT(cloop_current_task_user() == arg);
    ASSERT_EQ(cloop_sleep(0), 0); /* the other task runs meanwhile */
  }
  ASSERT(cloop_current_task_user() == arg);
  uw_rounds_done++;
  return 0;
}

static int uw_run(cloop_loop *loop, cloop_stack_mode stack) {
  static int words[2];
  cloop_spawn_options o = {NULL, stack};
  ASSERT_EQ(cloop_spawn_ex(loop, NULL, uw_body, &words[0], &o), 0);
  ASSERT_EQ(cloop_spawn_ex(loop, NULL, uw_body, &words[1], &o), 0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT(cloop_current_task_user() == NULL);
  return 0;
}

TEST_IMPL_SWITCH(task_user_word) {
  cloop_loop *loop;
  LOOP_NEW_OPTS(loop, opts);
  uw_rounds_done = 0;
  ASSERT(cloop_current_task_user() == NULL);
  ASSERT_EQ(uw_run(loop, CLOOP_STACK_DEFAULT_MODE), 0);
  ASSERT_EQ(uw_run(loop, CLOOP_STACK_SHARED), 0);
  ASSERT_EQ(uw_rounds_done, 4);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* ---- join and how a task's future ends --------------------------------- */

static intptr_t returns_arg(void *arg) {
  ASSERT_EQ(cloop_sleep(0), 0);
  return (intptr_t)arg;
}

static intptr_t join_all(void *arg) {
  (void)arg;
  cloop_loop *loop = cloop_task_loop(cloop_current_task());
  cloop_task *ok, *failed, *cancelled, *quick;
  ASSERT_EQ(cloop_spawn(loop, &ok, returns_arg, (void *)1234, "ok"), 0);
  ASSERT_EQ(cloop_spawn(loop, &failed, returns_arg, (void *)(intptr_t)-EIO, "failed"), 0);
  ASSERT_EQ(cloop_spawn(loop, &cancelled, returns_arg, (void *)(intptr_t)-ECANCELED, "cancelled"), 0);
  ASSERT_EQ(cloop_spawn(loop, &quick, returns_arg, (void *)0, "quick"), 0);

  ASSERT_EQ(cloop_task_join(ok), 1234);
  ASSERT_EQ(cloop_task_join(failed), -EIO);
  ASSERT_EQ(cloop_task_join(cancelled), -ECANCELED);
  ASSERT_EQ(cloop_task_future(ok)->state, CLOOP_DONE);
  ASSERT_EQ(cloop_task_future(failed)->state, CLOOP_FAILED);
  ASSERT_EQ(cloop_task_future(failed)->error, -EIO);
  /* A task that returns -ECANCELED, cancelled or not, ends cancelled. */
  ASSERT_EQ(cloop_task_future(cancelled)->state, CLOOP_CANCELLED);
  ASSERT_EQ(cloop_task_future(cancelled)->error, -ECANCELED);

  /* Joining a finished task again returns the same at once; so does
     cancelling it: 0, nothing changes. */
  ASSERT_EQ(cloop_sleep(1 * MS), 0);
  ASSERT_EQ(cloop_task_future(quick)->state, CLOOP_DONE);
  ASSERT_EQ(cloop_task_cancel(quick), 0);
  ASSERT_EQ(cloop_task_cancel(ok), 0);
  ASSERT_EQ(cloop_task_cancel(failed), 0);
  ASSERT_EQ(cloop_task_join(quick), 0);
  ASSERT_EQ(cloop_task_join(ok), 1234);
  ASSERT_EQ(cloop_task_future(ok)->state, CLOOP_DONE);
  ASSERT_EQ(cloop_task_future(failed)->state, CLOOP_FAILED);

  cloop_task_release(ok);
  cloop_task_release(failed);
  cloop_task_release(cancelled);
  cloop_task_release(quick);
  return 77;
}

TEST_IMPL_SWITCH(task_join_results) {
  ASSERT_EQ(test_run_task(opts, join_all, NULL), 77);
  return 0;
}

/* ---- cancelling a task before it first runs ------------------------------ */

static int never_ran;

static intptr_t must_not_run(void *arg) {
  (void)arg;
  never_ran = 0;
  return 1;
}

static intptr_t cancel_early_main(void *arg) {
  (void)arg;
  cloop_loop *loop = cloop_task_loop(cloop_current_task());
  cloop_task *t;
  never_ran = 1;
  ASSERT_EQ(cloop_spawn(loop, &t, must_not_run, NULL, "early"), 0);
  ASSERT_EQ(cloop_task_cancel(t), 1);
  ASSERT_EQ(cloop_task_join(t), -ECANCELED);
  ASSERT_EQ(never_ran, 1);
  ASSERT_EQ(cloop_task_future(t)->state, CLOOP_CANCELLED);
  ASSERT_EQ(cloop_task_future(t)->error, -ECANCELED);
  ASSERT_EQ(cloop_task_cancel(t), 0); /* finished */
  cloop_task_release(t);
  return 0;
}

TEST_IMPL_SWITCH(task_cancel_before_first_run) {
  ASSERT_EQ(test_run_task(opts, cancel_early_main, NULL), 0);

  /* The same from the loop's stack, with nobody awaiting it. */
  cloop_loop *loop;
  cloop_task *t;
  LOOP_NEW_OPTS(loop, opts);
  never_ran = 1;
  ASSERT_EQ(cloop_spawn(loop, &t, must_not_run, NULL, "early"), 0);
  ASSERT_EQ(cloop_task_cancel(t), 1);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(never_ran, 1);
  ASSERT_EQ(cloop_task_future(t)->state, CLOOP_CANCELLED);
  ASSERT_EQ(cloop_task_cancel(t), 0);
  cloop_task_release(t);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* ---- sleep ----------------------------------------------------------------- */

static struct {
  cloop_loop *loop;
  int order[16], norder;
  uint64_t started;
  char trace[64];
  int ntrace;
} sl;

/* Sleeps count from the loop's cached time (cloop_now), as timers do, so
   "never early" is checked against that clock. */
static intptr_t sleeper(void *arg) {
  intptr_t ms = (intptr_t)arg;
  uint64_t before = cloop_now(sl.loop);
  ASSERT_EQ(cloop_sleep(ms * MS), 0);
  /* On the manual clock: exactly at its deadline, never early nor late. */
  ASSERT_EQ(cloop_now(sl.loop), before + (uint64_t)(ms * MS));
  ASSERT_EQ(cloop_now(sl.loop), sl.started + (uint64_t)(ms * MS));
  sl.order[sl.norder++] = (int)ms;
  return ms;
}

TEST_IMPL_SWITCH(task_sleep_deadline_order) {
  static const int ms[] = {30, 10, 25, 1, 15, 5, 20};
  enum { N = sizeof ms / sizeof ms[0] };
  memset(&sl, 0, sizeof sl);
  LOOP_NEW_OPTS(sl.loop, opts);
  cloop_debug_manual_clock(sl.loop, TEST_CLOCK_START);
  sl.started = cloop_now(sl.loop);
  cloop_task *t[N];
  for (int i = 0; i < N; i++)
    ASSERT_EQ(cloop_spawn(sl.loop, &t[i], sleeper, (void *)(intptr_t)ms[i], NULL), 0);
  ASSERT_EQ(cloop_run(sl.loop), 0);
  static const int want[] = {1, 5, 10, 15, 20, 25, 30};
  ASSERT_EQ(sl.norder, N);
  for (int i = 0; i < N; i++) {
    ASSERT_EQ(sl.order[i], want[i]);
    ASSERT_EQ(cloop_task_future(t[i])->value, ms[i]);
    cloop_task_release(t[i]);
  }
  ASSERT_EQ(cloop_timer_count(sl.loop), 0);
  ASSERT_EQ(cloop_loop_free(sl.loop), 0);
  return 0;
}

/* a and b each write a letter, sleep(0), write another: sleep(0) lets the
   other run in between. A negative sleep does the same. */
static intptr_t yielder(void *arg) {
  char c = (char)(intptr_t)arg;
  sl.trace[sl.ntrace++] = c;
  ASSERT_EQ(cloop_sleep(0), 0);
  sl.trace[sl.ntrace++] = (char)(c - 'a' + 'A');
  ASSERT_EQ(cloop_sleep(-5 * MS), 0);
  sl.trace[sl.ntrace++] = (char)(c - 'a' + '1');
  return 0;
}

/* One step per iteration each, interleaved; no timer is involved. */
TEST_IMPL_SWITCH(task_sleep_zero_yields) {
  memset(&sl, 0, sizeof sl);
  LOOP_NEW_OPTS(sl.loop, opts);
  ASSERT_EQ(cloop_spawn(sl.loop, NULL, yielder, (void *)'a', NULL), 0);
  ASSERT_EQ(cloop_spawn(sl.loop, NULL, yielder, (void *)'b', NULL), 0);
  ASSERT_EQ(cloop_spawn(sl.loop, NULL, yielder, (void *)'c', NULL), 0);
  ASSERT_EQ(cloop_run_once(sl.loop, 0), 1);
  ASSERT_EQ(sl.ntrace, 3);
  ASSERT_EQ(cloop_timer_count(sl.loop), 0); /* sleep(0) is no timer */
  ASSERT_EQ(cloop_run_once(sl.loop, 0), 1);
  ASSERT_EQ(sl.ntrace, 6);
  ASSERT_EQ(cloop_run(sl.loop), 0);
  sl.trace[sl.ntrace] = 0;
  ASSERT_EQ(strcmp(sl.trace, "abcABC123"), 0);
  ASSERT_EQ(cloop_loop_free(sl.loop), 0);
  return 0;
}

static intptr_t until_body(void *arg) {
  (void)arg;
  cloop_loop *loop = cloop_task_loop(cloop_current_task());
  uint64_t start = cloop_now(loop), deadline = start + 12 * MS;
  ASSERT_EQ(cloop_sleep_until(deadline), 0);
  ASSERT_EQ(cloop_now(loop), deadline); /* the manual clock: exactly */
  ASSERT_EQ(cloop_timer_count(loop), 0);

  /* A deadline already past returns after one trip through the loop. */
  sl.ntrace = 0;
  ASSERT_EQ(cloop_spawn(loop, NULL, yielder, (void *)'x', NULL), 0);
  ASSERT_EQ(cloop_sleep_until(start), 0);
  ASSERT_GE(sl.ntrace, 1); /* the task spawned just now ran meanwhile */
  ASSERT_EQ(cloop_sleep_until(0), 0);
  return 0;
}

TEST_IMPL_SWITCH(task_sleep_until) {
  memset(&sl, 0, sizeof sl);
  ASSERT_EQ(test_run_task_manual(opts, until_body, NULL), 0);
  ASSERT_EQ(sl.ntrace, 3);
  return 0;
}

/* ---- a tree of tasks spawned from tasks --------------------------------- */

enum { TREE_DEPTH = 4, TREE_FANOUT = 3 };

static int tree_nodes, tree_live, tree_peak;

/* A node's value is its id; it returns the sum of its subtree. Leaves
   sleep a little, inner nodes join children in reverse order. */
static intptr_t tree_node(void *arg) {
  intptr_t id = (intptr_t)arg;
  int depth = 0;
  for (intptr_t x = id; x > 0; x = (x - 1) / TREE_FANOUT)
    depth++;
  tree_nodes++;
  if (++tree_live > tree_peak)
    tree_peak = tree_live;
  intptr_t sum = id;
  if (depth < TREE_DEPTH) {
    cloop_loop *loop = cloop_task_loop(cloop_current_task());
    cloop_task *kids[TREE_FANOUT];
    for (int k = 0; k < TREE_FANOUT; k++) {
      char name[32];
      snprintf(name, sizeof name, "node-%ld", (long)(id * TREE_FANOUT + 1 + k));
      ASSERT_EQ(cloop_spawn(loop, &kids[k], tree_node,
                            (void *)(id * TREE_FANOUT + 1 + k), name), 0);
    }
    for (int k = TREE_FANOUT; k-- > 0;) {
      intptr_t r = cloop_task_join(kids[k]);
      ASSERT_GE(r, 0);
      sum += r;
      cloop_task_release(kids[k]);
    }
  } else {
    ASSERT_EQ(cloop_sleep((int64_t)(id % 3) * MS / 2), 0);
  }
  tree_live--;
  return sum;
}

TEST_IMPL_SWITCH(task_tree_spawned_from_tasks) {
  /* ids 0 .. n-1 of a complete tree: depth 0 is the root, leaves at
     TREE_DEPTH. */
  int n = 0;
  for (int d = 0, w = 1; d <= TREE_DEPTH; d++, w *= TREE_FANOUT)
    n += w;
  tree_nodes = tree_live = tree_peak = 0;
  intptr_t r = test_run_task(opts, tree_node, (void *)0);
  ASSERT_EQ(tree_nodes, n);
  ASSERT_EQ(r, (intptr_t)n * (n - 1) / 2);
  ASSERT_EQ(tree_live, 0);
  ASSERT_EQ(tree_peak, n); /* the whole tree was alive at once */
  return 0;
}

/* ---- 100,000 tasks alive at once ---------------------------------------- */

enum { MANY = 100000 };

static int many_live, many_peak, many_done;

static intptr_t many_body(void *arg) {
  intptr_t i = (intptr_t)arg;
  if (++many_live > many_peak)
    many_peak = many_live;
  /* 1 to 3 ms: every task is parked before the first one wakes. */
  ASSERT_EQ(cloop_sleep(1 * MS + (int64_t)(i % 5) * MS / 2), 0);
  many_live--;
  many_done++;
  return i * 3 + 1;
}

static intptr_t many_main(void *arg) {
  (void)arg;
  cloop_loop *loop = cloop_task_loop(cloop_current_task());
  cloop_task **tasks = malloc(MANY * sizeof *tasks);
  cloop_future **futures = malloc(MANY * sizeof *futures);
  intptr_t *results = malloc(MANY * sizeof *results);
  ASSERT(tasks && futures && results);
  for (intptr_t i = 0; i < MANY; i++) {
    ASSERT_EQ(cloop_spawn(loop, &tasks[i], many_body, (void *)i, NULL), 0);
    futures[i] = cloop_task_future(tasks[i]);
  }
  ASSERT_EQ(cloop_gather(futures, MANY, results), 0);
  ASSERT_EQ(many_peak, MANY);
  ASSERT_EQ(many_done, MANY);
  for (intptr_t i = 0; i < MANY; i++) {
    ASSERT_EQ(results[i], i * 3 + 1);
    cloop_task_release(tasks[i]);
  }
  free(tasks);
  free(futures);
  free(results);
  return 0;
}

TEST_IMPL_SWITCH(task_100k_concurrent) {
  SKIP_IF_TSAN_TASKS(100000);
  cloop_options o = *opts; /* the default stack size: 32 GB of address space */
#if defined(__SANITIZE_ADDRESS__)
  /* ASan's swapcontext clears the shadow of the whole stack switched to
     (32 KiB of shadow per 256 KiB stack, per switch): 3.8 GB and 8 s for
     this test with ucontext. Smaller stacks keep it to a quarter. */
  o.stack_size = 64 << 10;
#endif
  if (o.task_stack != CLOOP_STACK_SHARED && !cloop_debug_guard_markers()) {
    /* mprotect guards (an older kernel, or qemu-user): one mapping per
       stack and guard, and vm.max_map_count caps them. */
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    long limit = 0;
    if (f && fscanf(f, "%ld", &limit) != 1)
      limit = 0;
    if (f)
      fclose(f);
    if (limit < 2 * MANY + 1000)
      SKIP("stack guards are made with mprotect here and vm.max_map_count "
           "(%ld) allows about %ld private stacks, fewer than %d",
           limit, limit / 2, (int)MANY);
  }
  many_live = many_peak = many_done = 0;
  ASSERT_EQ(test_run_task(&o, many_main, NULL), 0);
  ASSERT_EQ(many_live, 0);
  return 0;
}

/* ---- loops on two threads at once ------------------------------------- */

/* Each thread runs its own loop with tasks that yield and sleep; a task
   always sees itself as the current task and its own loop (the running
   task is per thread), and every result comes back right. */
enum { THREAD_TASKS = 500, THREAD_ROUNDS = 20 };

typedef struct thread_run {
  const cloop_options *opts;
  cloop_loop *loop;
  int wrong, done;
  intptr_t sum;
} thread_run;

static intptr_t thread_task(void *arg) {
  thread_run *tr = arg;
  cloop_task *me = cloop_current_task();
  for (int i = 0; i < THREAD_ROUNDS; i++) {
    if (cloop_current_task() != me || cloop_task_loop(me) != tr->loop)
      tr->wrong++;
    int r = i % 4 == 3 ? cloop_sleep(MS / 10) : cloop_sleep(0);
    if (r != 0)
      tr->wrong++;
  }
  tr->done++;
  return 1;
}

#include <pthread.h>

static void *thread_main(void *arg) {
  thread_run *tr = arg;
  if (cloop_loop_new(&tr->loop, tr->opts) != 0)
    return NULL;
  cloop_task *t[THREAD_TASKS];
  for (int i = 0; i < THREAD_TASKS; i++)
    if (cloop_spawn(tr->loop, &t[i], thread_task, tr, NULL) != 0)
      return NULL;
  if (cloop_run(tr->loop) != 0)
    return NULL;
  for (int i = 0; i < THREAD_TASKS; i++) {
    cloop_future *f = cloop_task_future(t[i]);
    if (f->state == CLOOP_DONE)
      tr->sum += f->value;
    cloop_task_release(t[i]);
  }
  if (cloop_current_task() != NULL)
    tr->wrong++;
  if (cloop_loop_free(tr->loop) != 0)
    tr->wrong++;
  return NULL;
}

TEST_IMPL_SWITCH(task_loops_on_two_threads) {
  thread_run runs[2];
  pthread_t tids[2];
  memset(runs, 0, sizeof runs);
  for (int i = 0; i < 2; i++) {
    runs[i].opts = opts;
    ASSERT_EQ(pthread_create(&tids[i], NULL, thread_main, &runs[i]), 0);
  }
  for (int i = 0; i < 2; i++) {
    ASSERT_EQ(pthread_join(tids[i], NULL), 0);
    ASSERT_EQ(runs[i].wrong, 0);
    ASSERT_EQ(runs[i].done, THREAD_TASKS);
    ASSERT_EQ(runs[i].sum, THREAD_TASKS);
  }
  return 0;
}

/* ---- the same on the shared stack (CLOOP_STACK_SHARED) ------------------ */

TEST_SHARED_STACK(task_join_results)
TEST_SHARED_STACK(task_sleep_deadline_order)
TEST_SHARED_STACK(task_tree_spawned_from_tasks)
TEST_SHARED_STACK(task_100k_concurrent)
