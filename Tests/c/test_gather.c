/* test_gather.c -- cloop_gather: results in argument order, the first
 * failure by position, gathers of gathers, plain and task futures mixed,
 * and zero futures. (Cancelled and timed-out gathers: test_cancel.c,
 * test_deadline.c.) */
#include "test.h"

#define MS 1000000LL

static cloop_loop *my_loop(void) {
  return cloop_task_loop(cloop_current_task());
}

/* A child: sleeps ms, notes its index (from order_base) when it
   finishes, returns value. */
typedef struct kid {
  int64_t ms;
  intptr_t value;
} kid;

static int finish_order[16], nfinish;

static kid *order_base;

static intptr_t order_kid(void *arg) {
  kid *k = arg;
  ASSERT_EQ(cloop_sleep(k->ms * MS), 0);
  finish_order[nfinish++] = (int)(k - order_base);
  return k->value;
}

static intptr_t argument_order(void *arg) {
  (void)arg;
  kid kids[5] = {{30, 300}, {10, 100}, {20, 200}, {1, 10}, {15, 150}};
  order_base = kids;
  cloop_task *t[5];
  cloop_future *fs[5];
  intptr_t res[5];
  for (int i = 0; i < 5; i++) {
    ASSERT_EQ(cloop_spawn(my_loop(), &t[i], order_kid, &kids[i], NULL), 0);
    fs[i] = cloop_task_future(t[i]);
  }
  ASSERT_EQ(cloop_gather(fs, 5, res), 0);
  static const int finished[5] = {3, 1, 4, 2, 0}; /* by deadline */
  ASSERT_EQ(nfinish, 5);
  for (int i = 0; i < 5; i++) {
    ASSERT_EQ(finish_order[i], finished[i]);
    ASSERT_EQ(res[i], kids[i].value); /* but results by argument */
    cloop_task_release(t[i]);
  }
  /* results may be NULL. */
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(cloop_spawn(my_loop(), &t[i], order_kid, &kids[i + 1], NULL), 0);
    fs[i] = cloop_task_future(t[i]);
  }
  ASSERT_EQ(cloop_gather(fs, 3, NULL), 0);
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(fs[i]->state, CLOOP_DONE);
    cloop_task_release(t[i]);
  }
  return 0;
}

TEST_IMPL_SWITCH(gather_argument_order) {
  nfinish = 0;
  ASSERT_EQ(test_run_task(opts, argument_order, NULL), 0);
  return 0;
}

/* ---- the first failure by position ---------------------------------------- */

static int hook_calls;

static void count_hook(cloop_task *t, int err, void *arg) {
  (void)arg;
  fprintf(stderr, "unexpected report: task '%s' error %d\n",
          cloop_task_name(t), err);
  hook_calls++;
}

static intptr_t first_failure(void *arg) {
  (void)arg;
  /* 1 fails at 20 ms, 3 fails first, at 2 ms; 0, 2 and 4 succeed. */
  kid kids[5] = {{5, 1}, {20, -EIO}, {10, 3}, {2, -EPIPE}, {1, 5}};
  order_base = kids;
  cloop_task *t[5];
  cloop_future *fs[5];
  intptr_t res[5];
  for (int i = 0; i < 5; i++) {
    ASSERT_EQ(cloop_spawn(my_loop(), &t[i], order_kid, &kids[i], NULL), 0);
    fs[i] = cloop_task_future(t[i]);
  }
  ASSERT_EQ(cloop_gather(fs, 5, res), -EIO);
  ASSERT_EQ(nfinish, 5); /* it waited for all, failures or not */
  ASSERT_EQ(finish_order[0], 4);
  ASSERT_EQ(finish_order[1], 3); /* -EPIPE came first in time */
  ASSERT_EQ(res[0], 1);
  ASSERT_EQ(res[1], -EIO);
  ASSERT_EQ(res[2], 3);
  ASSERT_EQ(res[3], -EPIPE);
  ASSERT_EQ(res[4], 5);
  ASSERT_EQ(fs[1]->state, CLOOP_FAILED);
  ASSERT_EQ(fs[3]->state, CLOOP_FAILED);
  for (int i = 0; i < 5; i++)
    cloop_task_release(t[i]); /* gather read their errors: no report */
  return 0;
}

TEST_IMPL_SWITCH(gather_first_failure_by_position) {
  cloop_loop *loop;
  cloop_task *t;
  LOOP_NEW_OPTS(loop, opts);
  nfinish = 0;
  hook_calls = 0;
  cloop_set_unretrieved_hook(loop, count_hook, NULL);
  ASSERT_EQ(cloop_spawn(loop, &t, first_failure, NULL, NULL), 0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(cloop_task_future(t)->state, CLOOP_DONE);
  cloop_task_release(t);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  ASSERT_EQ(hook_calls, 0);
  return 0;
}

/* ---- gathers of gathers ---------------------------------------------------- */

/* A group gathers `n` leaves of its own (leaf j of group g sleeps
   (g + j) % 4 ms and returns g * 100 + j) and returns their sum. */
static intptr_t leaf(void *arg) {
  intptr_t id = (intptr_t)arg;
  ASSERT_EQ(cloop_sleep((id / 100 + id % 100) % 4 * MS), 0);
  return id;
}

static intptr_t group(void *arg) {
  intptr_t g = (intptr_t)arg;
  int n = (int)(g % 3) + 2;
  cloop_task *t[8];
  cloop_future *fs[8] = {NULL};
  intptr_t res[8];
  for (int j = 0; j < n; j++) {
    ASSERT_EQ(cloop_spawn(my_loop(), &t[j], leaf, (void *)(g * 100 + j), NULL), 0);
    fs[j] = cloop_task_future(t[j]);
  }
  ASSERT_EQ(cloop_gather(fs, (size_t)n, res), 0);
  intptr_t sum = 0;
  for (int j = 0; j < n; j++) {
    ASSERT_EQ(res[j], g * 100 + j);
    sum += res[j];
    cloop_task_release(t[j]);
  }
  return sum;
}

static intptr_t gather_of_gathers(void *arg) {
  (void)arg;
  enum { GROUPS = 6 };
  cloop_task *t[GROUPS];
  cloop_future *fs[GROUPS];
  intptr_t res[GROUPS], want_total = 0, total = 0;
  for (int g = 0; g < GROUPS; g++) {
    ASSERT_EQ(cloop_spawn(my_loop(), &t[g], group, (void *)(intptr_t)g, NULL), 0);
    fs[g] = cloop_task_future(t[g]);
  }
  ASSERT_EQ(cloop_gather(fs, GROUPS, res), 0);
  for (int g = 0; g < GROUPS; g++) {
    int n = g % 3 + 2;
    intptr_t want = (intptr_t)g * 100 * n + n * (n - 1) / 2;
    ASSERT_EQ(res[g], want);
    want_total += want;
    total += res[g];
    cloop_task_release(t[g]);
  }
  ASSERT_EQ(total, want_total);
  return total;
}

TEST_IMPL_SWITCH(gather_of_gathers) {
  /* groups 0..5 have 2,3,4,2,3,4 leaves */
  intptr_t want = 0;
  for (int g = 0; g < 6; g++) {
    int n = g % 3 + 2;
    want += (intptr_t)g * 100 * n + n * (n - 1) / 2;
  }
  ASSERT_EQ(test_run_task(opts, gather_of_gathers, NULL), want);
  return 0;
}

/* ---- plain futures and task futures, mixed ---------------------------- */

static struct {
  cloop_future plain[3];
  cloop_timer timer;
  cloop_handle soon;
} mx;

static void mx_timer(void *arg) { (void)arg; ASSERT_EQ(cloop_future_set_result(&mx.plain[1], 11), 0); }
static void mx_soon(void *arg) { (void)arg; ASSERT_EQ(cloop_future_set_result(&mx.plain[2], 22), 0); }

static intptr_t mixed(void *arg) {
  (void)arg;
  cloop_loop *loop = my_loop();
  for (int i = 0; i < 3; i++)
    cloop_future_init(&mx.plain[i], loop);
  ASSERT_EQ(cloop_future_set_result(&mx.plain[0], 7), 0); /* already done */
  cloop_timer_init(&mx.timer, mx_timer, NULL);
  ASSERT_EQ(cloop_call_later(loop, &mx.timer, 8 * MS), 0);
  cloop_handle_init(&mx.soon, mx_soon, NULL);
  cloop_call_soon(loop, &mx.soon);

  kid kids[2] = {{4, 400}, {0, 500}};
  order_base = kids;
  cloop_task *t[2];
  for (int i = 0; i < 2; i++)
    ASSERT_EQ(cloop_spawn(loop, &t[i], order_kid, &kids[i], NULL), 0);
  cloop_future *fs[5] = {&mx.plain[1], cloop_task_future(t[0]), &mx.plain[0],
                         cloop_task_future(t[1]), &mx.plain[2]};
  intptr_t res[5];
  ASSERT_EQ(cloop_gather(fs, 5, res), 0);
  ASSERT_EQ(res[0], 11);
  ASSERT_EQ(res[1], 400);
  ASSERT_EQ(res[2], 7);
  ASSERT_EQ(res[3], 500);
  ASSERT_EQ(res[4], 22);
  for (int i = 0; i < 2; i++)
    cloop_task_release(t[i]);

  /* A plain future's failure counts by position like a task's. */
  cloop_future bad;
  cloop_future_init(&bad, loop);
  ASSERT_EQ(cloop_future_set_error(&bad, -ENOENT), 0);
  ASSERT_EQ(cloop_spawn(loop, &t[0], order_kid, &kids[0], NULL), 0);
  cloop_future *fs2[3] = {cloop_task_future(t[0]), &bad, &mx.plain[0]};
  ASSERT_EQ(cloop_gather(fs2, 3, res), -ENOENT);
  ASSERT_EQ(res[0], 400);
  ASSERT_EQ(res[1], -ENOENT);
  ASSERT_EQ(res[2], 7);
  cloop_task_release(t[0]);
  return 0;
}

TEST_IMPL_SWITCH(gather_mixed_futures) {
  nfinish = 0;
  ASSERT_EQ(test_run_task(opts, mixed, NULL), 0);
  return 0;
}

/* ---- zero futures ------------------------------------------------------------ */

static intptr_t gather_none(void *arg) {
  (void)arg;
  intptr_t sentinel = 99;
  ASSERT_EQ(cloop_gather(NULL, 0, NULL), 0);
  ASSERT_EQ(cloop_gather(NULL, 0, &sentinel), 0);
  ASSERT_EQ(sentinel, 99); /* nothing written */
  cloop_future *none[1] = {NULL};
  ASSERT_EQ(cloop_gather(none, 0, &sentinel), 0);
  return 3;
}

TEST_IMPL_SWITCH(gather_zero_futures) {
  ASSERT_EQ(test_run_task(opts, gather_none, NULL), 3);
  return 0;
}

/* ---- the same on the shared stack (CLOOP_STACK_SHARED) ------------------ */

TEST_SHARED_STACK(gather_of_gathers)
