/* test_pool.c -- work off the loop (pool.c, offload.c): 10,000 requests with
 * every result back on the loop's thread; FIFO start order; cancel before a
 * request starts (it never runs) and while it runs (it finishes); abandon
 * (the loop no longer waits, the pool drops the request); cloop_to_thread
 * in a task, cancelled and timed out while it runs; name resolution on the
 * pool; the pool's size from $CLOOP_POOL_THREADS. Blocking jobs wait on a
 * gate the test opens, never on time. */
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define MS 1000000LL

/* A gate: jobs block in gate_wait until the test opens it. */
typedef struct gate {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int open;
  int waiting; /* jobs blocked in it now */
} gate;

static gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

static void gate_reset(void) {
  pthread_mutex_lock(&g.lock);
  g.open = 0;
  g.waiting = 0;
  pthread_mutex_unlock(&g.lock);
}

static void gate_wait(void) {
  pthread_mutex_lock(&g.lock);
  g.waiting++;
  pthread_cond_broadcast(&g.cond);
  while (!g.open)
    pthread_cond_wait(&g.cond, &g.lock);
  g.waiting--;
  pthread_mutex_unlock(&g.lock);
}

static void gate_open(void) {
  pthread_mutex_lock(&g.lock);
  g.open = 1;
  pthread_cond_broadcast(&g.cond);
  pthread_mutex_unlock(&g.lock);
}

static int gate_waiting(void) {
  pthread_mutex_lock(&g.lock);
  int n = g.waiting;
  pthread_mutex_unlock(&g.lock);
  return n;
}

/* Waits until n jobs are blocked in the gate (they are running). */
static void gate_until_waiting(int n) {
  pthread_mutex_lock(&g.lock);
  while (g.waiting < n)
    pthread_cond_wait(&g.cond, &g.lock);
  pthread_mutex_unlock(&g.lock);
}

typedef struct job {
  cloop_work w;
  int id;
  int ran;        /* set on the pool thread */
  int done_calls; /* set on the loop */
  int result;
  pthread_t ran_on;
  pthread_t done_on;
  int block;      /* wait in the gate */
} job;

static _Atomic int started_order[64];
static _Atomic int nstarted;

static void job_work(cloop_work *w) {
  job *j = w->data;
  j->ran_on = pthread_self();
  int k = atomic_fetch_add(&nstarted, 1);
  if (k < 64)
    started_order[k] = j->id;
  if (j->block)
    gate_wait();
  j->ran = 1;
}

static void job_done(cloop_work *w) {
  job *j = w->data;
  j->done_calls++;
  j->result = w->result;
  j->done_on = pthread_self();
}

static cloop_loop *loop_with_pool(cloop_pool **pool, int threads) {
  cloop_loop *loop;
  ASSERT_EQ(cloop_loop_new(&loop, NULL), 0);
  ASSERT_EQ(cloop_pool_new(pool, threads), 0);
  cloop_loop_set_pool(loop, *pool);
  return loop;
}

TEST_IMPL(pool_10k_jobs) {
  enum { N = 10000 };
  cloop_pool *pool;
  cloop_loop *loop = loop_with_pool(&pool, 4);
  ASSERT_EQ(cloop_pool_size(pool), 4);
  job *jobs = calloc(N, sizeof *jobs);
  for (int i = 0; i < N; i++) {
    jobs[i].id = i;
    ASSERT_EQ(cloop_queue_work(loop, &jobs[i].w, job_work, job_done, &jobs[i]), 0);
  }
  ASSERT_EQ(cloop_run(loop), 0); /* returns once every done has run */
  pthread_t me = pthread_self();
  for (int i = 0; i < N; i++) {
    ASSERT_EQ(jobs[i].ran, 1);
    ASSERT_EQ(jobs[i].done_calls, 1);
    ASSERT_EQ(jobs[i].result, 0);
    ASSERT(pthread_equal(jobs[i].done_on, me)); /* back on the loop's thread */
    ASSERT(!pthread_equal(jobs[i].ran_on, me));
  }
  /* A request may be queued again once its done has run. */
  ASSERT_EQ(cloop_queue_work(loop, &jobs[0].w, job_work, job_done, &jobs[0]), 0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(jobs[0].done_calls, 2);
  ASSERT_EQ(cloop_queue_work(loop, &jobs[0].w, NULL, job_done, &jobs[0]), -EINVAL);
  free(jobs);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  cloop_pool_free(pool);
  return 0;
}

/* One thread, blocked by job 0: the others wait in order; one cancelled
   while queued never runs, one cancelled while running finishes. */
TEST_IMPL(pool_cancel_and_order) {
  cloop_pool *pool;
  cloop_loop *loop = loop_with_pool(&pool, 1);
  gate_reset();
  atomic_store(&nstarted, 0);
  job j[5];
  memset(j, 0, sizeof j);
  for (int i = 0; i < 5; i++) {
    j[i].id = i;
    j[i].block = i == 0;
    ASSERT_EQ(cloop_queue_work(loop, &j[i].w, job_work, job_done, &j[i]), 0);
  }
  gate_until_waiting(1); /* job 0 runs, the rest are queued */
  ASSERT_EQ(cloop_work_cancel(&j[2].w), 1);
  ASSERT_EQ(cloop_work_cancel(&j[2].w), 0);
  ASSERT_EQ(cloop_work_cancel(&j[0].w), 0); /* running: it cannot be */
  ASSERT_EQ(cloop_run_once(loop, 0), 1);
  ASSERT_EQ(j[2].done_calls, 1); /* from the ready ring, at once */
  ASSERT_EQ(j[2].result, -ECANCELED);
  gate_open();
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(j[2].ran, 0);
  for (int i = 0; i < 5; i++)
    ASSERT_EQ(j[i].done_calls, 1);
  ASSERT_EQ(j[0].result, 0);
  ASSERT_EQ(atomic_load(&nstarted), 4);
  static const int want[] = {0, 1, 3, 4}; /* FIFO, 2 left out */
  for (int k = 0; k < 4; k++)
    ASSERT_EQ(started_order[k], want[k]);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  cloop_pool_free(pool);
  return 0;
}

static _Atomic int drops;

static void job_drop(cloop_work *w) {
  (void)w;
  atomic_fetch_add(&drops, 1);
}

/* Abandoned while running: the loop stops waiting for it at once; the
   pool drops it when the work returns, and done never runs. Abandoned
   while queued: dropped at once, never run. */
TEST_IMPL(pool_abandon) {
  cloop_pool *pool;
  cloop_loop *loop = loop_with_pool(&pool, 1);
  gate_reset();
  atomic_store(&drops, 0);
  job a = {0}, b = {0};
  a.block = 1;
  ASSERT_EQ(cloop_queue_work(loop, &a.w, job_work, job_done, &a), 0);
  ASSERT_EQ(cloop_queue_work(loop, &b.w, job_work, job_done, &b), 0);
  gate_until_waiting(1);
  ASSERT_EQ(cloop_work_abandon(&b.w, job_drop), 1);
  ASSERT_EQ(atomic_load(&drops), 1); /* queued: dropped here */
  ASSERT_EQ(cloop_work_abandon(&a.w, job_drop), 1);
  ASSERT_EQ(cloop_work_abandon(&a.w, job_drop), 0);
  ASSERT_EQ(cloop_run(loop), 0); /* nothing left to wait for: returns */
  gate_open();
  while (atomic_load(&drops) < 2)
    usleep(100);
  ASSERT_EQ(a.ran, 1);
  ASSERT_EQ(b.ran, 0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(a.done_calls, 0);
  ASSERT_EQ(b.done_calls, 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  cloop_pool_free(pool);
  return 0;
}

/* ---- cloop_to_thread ------------------------------------------------------ */

static intptr_t blocking_answer(void *arg) {
  gate_wait();
  return (intptr_t)arg;
}

static intptr_t add_one(void *arg) {
  if (pthread_equal(pthread_self(), *(pthread_t *)arg))
    return -EDEADLK; /* ran on the loop's thread */
  return 41 + 1;
}

static intptr_t waiter_task(void *arg) {
  return cloop_to_thread(blocking_answer, arg);
}

static intptr_t to_thread_main(void *arg) {
  (void)arg;
  cloop_loop *loop = cloop_task_loop(cloop_current_task());
  pthread_t me = pthread_self();
  ASSERT_EQ(cloop_to_thread(add_one, &me), 42);
  ASSERT_EQ(cloop_to_thread(NULL, NULL), -EINVAL);

  /* Cancelled while the function runs: at once, and the result is
     dropped when it comes. */
  gate_reset();
  cloop_task *t;
  ASSERT_EQ(cloop_spawn(loop, &t, waiter_task, (void *)7, "waiter"), 0);
  while (gate_waiting() == 0)
    ASSERT_EQ(cloop_sleep(0), 0);
  ASSERT_EQ(cloop_task_cancel(t), 1);
  ASSERT_EQ(cloop_task_join(t), -ECANCELED);
  cloop_task_release(t);
  /* A deadline: -ETIMEDOUT, the same way. */
  cloop_deadline d;
  ASSERT_EQ(cloop_deadline_enter(&d, 1 * MS), 0);
  ASSERT_EQ(cloop_to_thread(blocking_answer, (void *)8), -ETIMEDOUT);
  ASSERT_EQ(cloop_deadline_exit(&d), -ETIMEDOUT);
  gate_open();
  /* The pool is free again afterwards. */
  ASSERT_EQ(cloop_to_thread(add_one, &me), 42);
  return 0;
}

TEST_IMPL(pool_to_thread) {
  ASSERT_EQ(test_run_task(NULL, to_thread_main, NULL), 0);
  return 0;
}

/* ---- the resolver uses the pool ------------------------------------------ */

static int resolved_calls, resolved_result;

static void on_resolved(cloop_resolve *req) {
  resolved_calls++;
  resolved_result = req->result;
  cloop_resolve_free(req);
}

TEST_IMPL(pool_runs_the_resolver) {
  cloop_pool *pool;
  cloop_loop *loop = loop_with_pool(&pool, 1);
  gate_reset();
  job blocker = {0};
  blocker.block = 1;
  ASSERT_EQ(cloop_queue_work(loop, &blocker.w, job_work, job_done, &blocker), 0);
  gate_until_waiting(1);
  /* The lookup waits behind the blocked job: the pool runs it. */
  cloop_resolve req;
  memset(&req, 0, sizeof req);
  ASSERT_EQ(cloop_resolve_start(loop, &req, "localhost", 80, SOCK_STREAM, 0,
                                on_resolved, NULL), 0);
  for (int i = 0; i < 3; i++)
    ASSERT_EQ(cloop_run_once(loop, 0), 1);
  ASSERT_EQ(resolved_calls, 0);
  /* Cancelled before it started: it never runs. */
  ASSERT_EQ(cloop_resolve_cancel(&req), 1);
  ASSERT_EQ(cloop_run_once(loop, 0), 1);
  ASSERT_EQ(resolved_calls, 1);
  ASSERT_EQ(resolved_result, -ECANCELED);
  gate_open();
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(blocker.done_calls, 1);
  /* And one that runs. */
  ASSERT_EQ(cloop_resolve_start(loop, &req, "localhost", 80, SOCK_STREAM, 0,
                                on_resolved, NULL), 0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(resolved_calls, 2);
  ASSERT_EQ(resolved_result, 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  cloop_pool_free(pool);
  return 0;
}

/* The process-wide pool's size comes from $CLOOP_POOL_THREADS (read once,
   so in a child of its own). */
static void print_default_size(void *arg) {
  (void)arg;
  setenv("CLOOP_POOL_THREADS", "3", 1);
  fprintf(stderr, "size=%d\n", cloop_pool_size(cloop_pool_default()));
}

TEST_IMPL(pool_default_size_from_env) {
  char out[64];
  int status = test_child_stderr(print_default_size, NULL, out, sizeof out);
  ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT(strstr(out, "size=3") != NULL);
  ASSERT_EQ(cloop_pool_new(&(cloop_pool *){NULL}, 2000), -EINVAL);
  return 0;
}
