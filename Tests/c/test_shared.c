/* test_shared.c -- shared-stack (copy-stack) tasks: mixed with private ones,
 * the documented safe way to hand data between tasks, and a million of
 * them alive at once. */
#include "test.h"

/* ---- private and shared tasks exchanging data through queues ------------ */

enum { ROUNDS = 2000 };

static struct {
  cloop_queue to_shared, to_private;
  intptr_t buf_a[4], buf_b[4];
  intptr_t private_sum, shared_sum;
} mx;

/* Private: sends 1..ROUNDS, reads back each doubled. */
static intptr_t mx_private(void *arg) {
  (void)arg;
  for (intptr_t i = 1; i <= ROUNDS; i++) {
    ASSERT_EQ(cloop_queue_put(&mx.to_shared, i), 0);
    intptr_t v;
    ASSERT_EQ(cloop_queue_get(&mx.to_private, &v), 0);
    ASSERT_EQ(v, 2 * i);
    mx.private_sum += v;
  }
  return 0;
}

/* Shared: doubles what arrives. Two of them share the stack and the work,
   so the stack changes hands between them (and each copy in and out is
   checked by the values the private task reads back). */
static intptr_t mx_shared(void *arg) {
  intptr_t count = (intptr_t)arg, local_sum = 0;
  char scratch[512]; /* locals that must survive copy-out and copy-in */
  for (size_t i = 0; i < sizeof scratch; i++)
    scratch[i] = (char)(i * 7 + count);
  for (intptr_t i = 0; i < count; i++) {
    intptr_t v;
    ASSERT_EQ(cloop_queue_get(&mx.to_shared, &v), 0);
    local_sum += v;
    ASSERT_EQ(cloop_queue_put(&mx.to_private, 2 * v), 0);
  }
  for (size_t i = 0; i < sizeof scratch; i++)
    ASSERT_EQ(scratch[i], (char)(i * 7 + count));
  mx.shared_sum += local_sum;
  return local_sum;
}

TEST_IMPL_SWITCH(shared_and_private_exchange_through_queues) {
  memset(&mx, 0, sizeof mx);
  cloop_loop *loop;
  LOOP_NEW_OPTS(loop, opts);
  ASSERT_EQ(cloop_queue_init(&mx.to_shared, mx.buf_a, 4), 0);
  ASSERT_EQ(cloop_queue_init(&mx.to_private, mx.buf_b, 4), 0);
  cloop_spawn_options priv = {"private", CLOOP_STACK_PRIVATE};
  cloop_spawn_options shared = {"shared", CLOOP_STACK_SHARED};
  cloop_task *p, *s1, *s2;
  ASSERT_EQ(cloop_spawn_ex(loop, &p, mx_private, NULL, &priv), 0);
  ASSERT_EQ(cloop_spawn_ex(loop, &s1, mx_shared, (void *)(intptr_t)(ROUNDS / 2), &shared), 0);
  ASSERT_EQ(cloop_spawn_ex(loop, &s2, mx_shared, (void *)(intptr_t)(ROUNDS / 2), &shared), 0);
  ASSERT_EQ(cloop_run(loop), 0);
  intptr_t n = ROUNDS;
  ASSERT_EQ(mx.shared_sum, n * (n + 1) / 2);
  ASSERT_EQ(mx.private_sum, n * (n + 1));
  ASSERT_EQ(cloop_task_future(p)->state, CLOOP_DONE);
  ASSERT_EQ(cloop_task_future(s1)->state, CLOOP_DONE);
  ASSERT_EQ(cloop_task_future(s2)->state, CLOOP_DONE);
  ASSERT_EQ(cloop_task_future(s1)->value + cloop_task_future(s2)->value,
            n * (n + 1) / 2);
  cloop_task_release(p);
  cloop_task_release(s1);
  cloop_task_release(s2);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* ---- the safe pattern: data handed over lives outside the shared stack -- */

/* The hazard (cloop.h, CLOOP_STACK_SHARED): while a shared-stack task is
   parked, its stack holds another task's frames. The safe pattern: what
   another task reads while the owner may be parked lives in the heap (or
   in memory of the spawner), and the owner's locals are only copied. */
typedef struct message {
  cloop_future ready; /* awaited by the reader: not on anyone's stack */
  char text[64];
} message;

static intptr_t writer(void *arg) {
  message *m = arg;
  char local[64]; /* built on the shared stack ... */
  snprintf(local, sizeof local, "written by %s", cloop_task_name(cloop_current_task()));
  ASSERT_EQ(cloop_sleep(0), 0); /* ... survives being parked ... */
  memcpy(m->text, local, sizeof local); /* ... and is copied out to share */
  ASSERT_EQ(cloop_future_set_result(&m->ready, 1), 0);
  ASSERT_EQ(cloop_sleep(0), 0); /* parked while the reader reads */
  return 0;
}

static intptr_t reader(void *arg) {
  message *m = arg;
  ASSERT_EQ(cloop_await(&m->ready, NULL), 0);
  char expect[64];
  snprintf(expect, sizeof expect, "written by %s", "writer");
  ASSERT_EQ(strcmp(m->text, expect), 0);
  return (intptr_t)strlen(m->text);
}

TEST_IMPL_SWITCH(shared_safe_pattern_heap_handoff) {
  cloop_loop *loop;
  cloop_options o = *opts;
  o.task_stack = CLOOP_STACK_SHARED;
  LOOP_NEW_OPTS(loop, &o);
  message *m = calloc(1, sizeof *m);
  ASSERT(m != NULL);
  cloop_future_init(&m->ready, loop);
  cloop_spawn_options w = {"writer", 0}, r = {"reader", 0};
  cloop_task *tw, *tr;
  ASSERT_EQ(cloop_spawn_ex(loop, &tr, reader, m, &r), 0);
  ASSERT_EQ(cloop_spawn_ex(loop, &tw, writer, m, &w), 0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(cloop_task_future(tr)->value, (intptr_t)strlen("written by writer"));
  ASSERT_EQ(cloop_task_future(tw)->state, CLOOP_DONE);
  cloop_task_release(tr);
  cloop_task_release(tw);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  free(m);
  return 0;
}

/* ---- a million shared-stack tasks alive at once -------------------------- */

static struct {
  cloop_event go;
  intptr_t alive, max_alive;
} mil;

static intptr_t mil_task(void *arg) {
  mil.alive++;
  if (mil.alive > mil.max_alive)
    mil.max_alive = mil.alive;
  int r = cloop_event_wait(&mil.go); /* all parked at once */
  mil.alive--;
  return r < 0 ? r : (intptr_t)arg;
}

static intptr_t mil_main(void *arg) {
  intptr_t n = (intptr_t)arg;
  cloop_loop *loop = cloop_task_loop(cloop_current_task());
  cloop_task **ts = malloc((size_t)n * sizeof *ts);
  cloop_future **fs = malloc((size_t)n * sizeof *fs);
  ASSERT(ts && fs);
  cloop_spawn_options o = {NULL, CLOOP_STACK_SHARED};
  for (intptr_t i = 0; i < n; i++) {
    ASSERT_EQ(cloop_spawn_ex(loop, &ts[i], mil_task, (void *)(i & 1023), &o), 0);
    fs[i] = cloop_task_future(ts[i]);
  }
  while (mil.alive < n) /* let every one of them start and park */
    ASSERT_EQ(cloop_sleep(0), 0);
  cloop_event_set(&mil.go);
  intptr_t *results = malloc((size_t)n * sizeof *results);
  ASSERT(results != NULL);
  ASSERT_EQ(cloop_gather(fs, (size_t)n, results), 0);
  intptr_t sum = 0;
  for (intptr_t i = 0; i < n; i++) {
    ASSERT_EQ(results[i], i & 1023);
    sum += results[i];
    cloop_task_release(ts[i]);
  }
  free(results);
  free(fs);
  free(ts);
  return sum > 0 ? 0 : -1;
}

TEST_IMPL(shared_million_tasks_alive) {
  SKIP_IF_TSAN_TASKS(100000);
  /* Under ASan each swap of the shared stack re-tags its shadow memory; a
     tenth of the tasks keeps the test in its time limit there. */
#if defined(__SANITIZE_ADDRESS__)
  intptr_t n = 100000;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  intptr_t n = 100000;
#else
  intptr_t n = 1000000;
#endif
#else
  intptr_t n = 1000000;
#endif
  memset(&mil, 0, sizeof mil);
  cloop_event_init(&mil.go);
  cloop_options o;
  cloop_options_init(&o);
  ASSERT_EQ(cloop_main(mil_main, (void *)n, &o), 0);
  ASSERT_EQ(mil.max_alive, n);
  ASSERT_EQ(mil.alive, 0);
  return 0;
}
