/* test_loop.c -- run / run_once / stop, when a loop may be freed, and
 * which backend it reports. */
#include "test.h"

#include <fcntl.h>

#define MS 1000000LL

static void count_run(void *arg) { (*(int *)arg)++; }

TEST_IMPL(loop_run_empty) {
  cloop_loop *loop;
  int h_runs = 0, t_runs = 0;
  cloop_handle h = CLOOP_HANDLE_INIT(count_run, &h_runs);
  cloop_timer t;
  ASSERT_EQ(cloop_loop_new(&loop, NULL), 0);

  /* Nothing to wait for: every way of running returns 0 at once. */
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(cloop_run_once(loop, 0), 0);
  ASSERT_EQ(cloop_run_once(loop, -1), 0);

  /* It returns 0 again once the work it had is done. */
  cloop_timer_init(&t, count_run, &t_runs);
  ASSERT_EQ(cloop_call_later(loop, &t, 1 * MS), 0);
  cloop_call_soon(loop, &h);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(h_runs, 1);
  ASSERT_EQ(t_runs, 1);
  ASSERT_EQ(cloop_timer_count(loop), 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* A handle queued while the batch count is c runs in batch c + 1: what
   cloop_batch_count promises to a queue kept behind one handle. */
typedef struct batch_ctx {
  cloop_loop *loop;
  cloop_handle first, second, third;
  cloop_timer timer;
  uint64_t seen[4];
} batch_ctx;

static void batch_first(void *arg) {
  batch_ctx *b = arg;
  b->seen[0] = cloop_batch_count(b->loop);
  cloop_call_soon(b->loop, &b->third); /* queued now: runs in the next batch */
}
static void batch_second(void *arg) {
  batch_ctx *b = arg;
  b->seen[1] = cloop_batch_count(b->loop);
}
static void batch_third(void *arg) {
  batch_ctx *b = arg;
  b->seen[2] = cloop_batch_count(b->loop);
}
static void batch_timer(void *arg) {
  batch_ctx *b = arg;
  b->seen[3] = cloop_batch_count(b->loop);
}

TEST_IMPL(loop_batch_count) {
  batch_ctx b = {0};
  ASSERT_EQ(cloop_loop_new(&b.loop, NULL), 0);
  cloop_debug_manual_clock(b.loop, 1000 * MS);
  cloop_handle_init(&b.first, batch_first, &b);
  cloop_handle_init(&b.second, batch_second, &b);
  cloop_handle_init(&b.third, batch_third, &b);
  cloop_timer_init(&b.timer, batch_timer, &b);
  uint64_t c = cloop_batch_count(b.loop);
  ASSERT_EQ(c, 0);
  cloop_call_soon(b.loop, &b.first);
  cloop_call_soon(b.loop, &b.second);
  ASSERT_EQ(cloop_call_later(b.loop, &b.timer, 0), 0);
  ASSERT_EQ(cloop_batch_count(b.loop), c); /* queueing begins no batch */
  ASSERT_EQ(cloop_run(b.loop), 0);
  ASSERT_EQ(b.seen[0], c + 1); /* both queued at c: batch c + 1 */
  ASSERT_EQ(b.seen[1], c + 1);
  ASSERT_EQ(b.seen[2], c + 2); /* queued during batch c + 1 */
  ASSERT_EQ(b.seen[3], c + 1); /* due timers run after the batch, in it */
  ASSERT_EQ(cloop_loop_free(b.loop), 0);
  return 0;
}

/* `stopper` stops the loop; `spinner` re-queues itself forever and stops
   the loop on its 3rd run. */
typedef struct stop_ctx {
  cloop_loop *loop;
  cloop_handle stopper, spinner;
  int stopper_runs, spinner_runs;
} stop_ctx;

static void stopper_run(void *arg) {
  stop_ctx *s = arg;
  s->stopper_runs++;
  cloop_stop(s->loop);
}

static void spinner_run(void *arg) {
  stop_ctx *s = arg;
  s->spinner_runs++;
  cloop_call_soon(s->loop, &s->spinner);
  if (s->spinner_runs == 3)
    cloop_stop(s->loop);
}

TEST_IMPL(loop_stop) {
  stop_ctx s;
  cloop_timer far;
  int far_runs = 0;
  memset(&s, 0, sizeof s);
  ASSERT_EQ(cloop_loop_new(&s.loop, NULL), 0);
  cloop_handle_init(&s.stopper, stopper_run, &s);
  cloop_handle_init(&s.spinner, spinner_run, &s);
  cloop_timer_init(&far, count_run, &far_runs);
  ASSERT_EQ(cloop_call_later(s.loop, &far, 1000000 * MS), 0);

  /* The stop ends the run after the current batch, which spinner is in. */
  cloop_call_soon(s.loop, &s.stopper);
  cloop_call_soon(s.loop, &s.spinner);
  ASSERT_EQ(cloop_run(s.loop), 1);
  ASSERT_EQ(s.stopper_runs, 1);
  ASSERT_EQ(s.spinner_runs, 1);
  ASSERT_EQ(cloop_handle_queued(&s.spinner), 1);
  ASSERT_EQ(cloop_timer_active(&far), 1);

  /* The stop was used up: a new run goes on until the next one. */
  ASSERT_EQ(cloop_run(s.loop), 1);
  ASSERT_EQ(s.spinner_runs, 3);
  ASSERT_EQ(s.stopper_runs, 1);

  ASSERT_EQ(cloop_handle_cancel(s.loop, &s.spinner), 1);
  ASSERT_EQ(cloop_timer_cancel(s.loop, &far), 1);
  ASSERT_EQ(cloop_run(s.loop), 0);
  ASSERT_EQ(far_runs, 0);
  ASSERT_EQ(cloop_loop_free(s.loop), 0);
  return 0;
}

TEST_IMPL(loop_free_busy) {
  cloop_loop *loop;
  int runs = 0, p[2];
  cloop_handle h = CLOOP_HANDLE_INIT(count_run, &runs);
  cloop_timer t;
  cloop_watcher w;
  ASSERT_EQ(cloop_loop_new(&loop, NULL), 0);
  cloop_timer_init(&t, count_run, &runs);
  cloop_watcher_init(&w);
  ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);

  ASSERT_EQ(cloop_call_later(loop, &t, 1000 * MS), 0);
  ASSERT_EQ(cloop_loop_free(loop), -EBUSY);
  ASSERT_EQ(cloop_timer_cancel(loop, &t), 1);

  cloop_call_soon(loop, &h);
  ASSERT_EQ(cloop_loop_free(loop), -EBUSY);
  ASSERT_EQ(cloop_handle_cancel(loop, &h), 1);

  cloop_ref(loop);
  ASSERT_EQ(cloop_loop_free(loop), -EBUSY);
  cloop_unref(loop);

  ASSERT_EQ(cloop_watch(loop, &w, p[0], CLOOP_READABLE, count_run, &runs), 0);
  ASSERT_EQ(cloop_loop_free(loop), -EBUSY);
  ASSERT_EQ(cloop_unwatch(loop, &w), 1);

  /* Each refusal left the loop whole: it still runs, then frees. */
  ASSERT_EQ(cloop_call_later(loop, &t, 1 * MS), 0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(runs, 1);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  close(p[0]);
  close(p[1]);
  return 0;
}

TEST_IMPL(loop_backend_epoll) {
  cloop_loop *loop;
  cloop_options opts;
  cloop_options_init(&opts);
  ASSERT_EQ(opts.backend, CLOOP_BACKEND_AUTO);
  ASSERT(strcmp(cloop_backend_name(CLOOP_BACKEND_EPOLL), "epoll") == 0);
  ASSERT(strcmp(cloop_backend_name(CLOOP_BACKEND_URING), "io_uring") == 0);

  opts.backend = CLOOP_BACKEND_EPOLL;
  ASSERT_EQ(cloop_loop_new(&loop, &opts), 0);
  ASSERT_EQ(cloop_loop_backend(loop), CLOOP_BACKEND_EPOLL);
  ASSERT(strcmp(cloop_backend_name(cloop_loop_backend(loop)), "epoll") == 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);

  /* Asked for through the environment. */
  ASSERT_EQ(setenv("CLOOP_BACKEND", "epoll", 1), 0);
  ASSERT_EQ(cloop_loop_new(&loop, NULL), 0);
  ASSERT_EQ(cloop_loop_backend(loop), CLOOP_BACKEND_EPOLL);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}
