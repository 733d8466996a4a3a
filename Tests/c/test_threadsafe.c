/* test_threadsafe.c -- cloop_call_threadsafe under contention, and the
 * misuse of calling anything else from a thread that does not own the
 * loop. */
#include "test.h"

#include <pthread.h>

#define MS 1000000LL

enum { THREADS = 4, PER_THREAD = 100000 };

typedef struct item {
  cloop_handle h;
  int runs;
} item;

/* Loop-thread state: touched only by callbacks, so no atomics. */
static struct {
  cloop_loop *loop;
  pthread_t loop_thread;
  long total;
  long off_thread;
} ts;

static void item_run(void *arg) {
  item *it = arg;
  it->runs++;
  if (!pthread_equal(pthread_self(), ts.loop_thread))
    ts.off_thread++;
  if (++ts.total == (long)THREADS * PER_THREAD)
    cloop_unref(ts.loop); /* the last one lets cloop_run return */
}

static void *producer(void *arg) {
  item *items = arg;
  for (int i = 0; i < PER_THREAD; i++) {
    cloop_handle_init(&items[i].h, item_run, &items[i]);
    cloop_call_threadsafe(ts.loop, &items[i].h);
  }
  return NULL;
}

TEST_IMPL_POLL(threadsafe_4x100k) {
  pthread_t tids[THREADS];
  item *items[THREADS];
  LOOP_NEW(ts.loop, backend);
  ts.loop_thread = pthread_self();

  cloop_ref(ts.loop);
  for (int t = 0; t < THREADS; t++) {
    items[t] = calloc(PER_THREAD, sizeof(item));
    ASSERT(items[t] != NULL);
    ASSERT_EQ(pthread_create(&tids[t], NULL, producer, items[t]), 0);
  }
  ASSERT_EQ(cloop_run(ts.loop), 0);
  for (int t = 0; t < THREADS; t++)
    ASSERT_EQ(pthread_join(tids[t], NULL), 0);
  ASSERT_EQ(cloop_run_once(ts.loop, 0), 0); /* nothing arrives late */

  ASSERT_EQ(ts.total, (long)THREADS * PER_THREAD);
  ASSERT_EQ(ts.off_thread, 0);
  for (int t = 0; t < THREADS; t++) {
    for (int i = 0; i < PER_THREAD; i++) {
      if (items[t][i].runs != 1)
        fprintf(stderr, "thread %d, handle %d ran %d times\n", t, i,
                items[t][i].runs);
      ASSERT_EQ(items[t][i].runs, 1);
      ASSERT_EQ(cloop_handle_queued(&items[t][i].h), 0);
    }
    free(items[t]);
  }
  ASSERT_EQ(cloop_loop_free(ts.loop), 0);
  return 0;
}

/* The loop, kept alive only by a reference, blocks in the poll until a
   thread-safe call 10 ms later wakes it. */
typedef struct wake_ctx {
  cloop_loop *loop;
  cloop_handle h;
  int runs;
} wake_ctx;

static void wake_run(void *arg) {
  wake_ctx *w = arg;
  w->runs++;
  cloop_unref(w->loop);
}

static void *wake_later(void *arg) {
  wake_ctx *w = arg;
  usleep(10000);
  cloop_call_threadsafe(w->loop, &w->h);
  return NULL;
}

TEST_IMPL_POLL(threadsafe_wakeup) {
  wake_ctx w = {NULL, CLOOP_HANDLE_INIT(wake_run, &w), 0};
  pthread_t tid;
  LOOP_NEW(w.loop, backend);
  cloop_ref(w.loop);

  uint64_t before = cloop_now(w.loop);
  ASSERT_EQ(pthread_create(&tid, NULL, wake_later, &w), 0);
  int iterations = 0, r;
  do {
    r = cloop_run_once(w.loop, -1);
    iterations++;
  } while (r == 1);
  ASSERT_EQ(r, 0);
  ASSERT_EQ(w.runs, 1);
  ASSERT_LE(iterations, 3); /* it slept in the poll, it did not spin */
  ASSERT_GE(cloop_now(w.loop), before + 10 * MS);
  ASSERT_EQ(pthread_join(tid, NULL), 0);
  ASSERT_EQ(cloop_loop_free(w.loop), 0);
  return 0;
}

/* Which loop function the foreign thread calls. */
enum { CALL_SOON, CALL_LATER, RUN_ONCE, NCALLS };

static void nop(void *arg) { (void)arg; }

static struct {
  cloop_loop *loop;
  int call;
} wrong;

static void *foreign_thread(void *arg) {
  (void)arg;
  static cloop_handle h = CLOOP_HANDLE_INIT(nop, NULL);
  static cloop_timer t;
  switch (wrong.call) {
  case CALL_SOON:
    cloop_call_soon(wrong.loop, &h);
    break;
  case CALL_LATER:
    cloop_timer_init(&t, nop, NULL);
    cloop_call_later(wrong.loop, &t, 1000 * MS);
    break;
  case RUN_ONCE:
    cloop_run_once(wrong.loop, 0);
    break;
  }
  return NULL;
}

static void call_from_foreign_thread(void *arg) {
  pthread_t tid;
  wrong.call = *(int *)arg;
  if (cloop_loop_new(&wrong.loop, NULL))
    return;
  if (pthread_create(&tid, NULL, foreign_thread, NULL))
    return;
  pthread_join(tid, NULL); /* reached only if the call did not abort */
}

TEST_IMPL(threadsafe_wrong_thread_aborts) {
  static const char *what[NCALLS] = {
      "cloop_call_soon from another thread",
      "cloop_call_later from another thread",
      "cloop_run_once from another thread",
  };
  for (int call = 0; call < NCALLS; call++)
    test_expect_abort(what[call], call_from_foreign_thread, &call, "misuse");
  return 0;
}
