/* test_sync_cb.c -- callback waiters (cloop_waiter and the *_cb calls):
 * one FIFO shared with tasks, the hand-off done inside the waking call,
 * cancellation that loses no wake-up and no item, a lock held by code
 * outside tasks, the try calls, misuse, and a chain of 10,000 callback
 * putters feeding 10,000 callback getters (a loop, not a recursion). */
#include "test.h"

/* A callback waiter of the tests: logs its id and the value it was handed;
   a lock or permit it received is released later from a handle (a
   callback may not use the primitive that wakes it). */
typedef struct cbw {
  cloop_waiter w;
  int id;
  int woken;
  cloop_handle release; /* set up by hold_then_release */
} cbw;

/* What a worker task waits on. */
enum { EVENT, LOCK, SEM, GET, PUT };

typedef struct worker {
  int kind, id;
  int r;
  int done;
  intptr_t item; /* PUT: what it puts; GET: what it got */
  cloop_task *t;
} worker;

static struct {
  cloop_loop *loop;
  cloop_event ev;
  cloop_lock lock;
  cloop_semaphore sem;
  cloop_queue q;
  intptr_t buf[4];
  int log[64];
  intptr_t val[64];
  int nlog;
  int inside, max_inside;
  worker w[8];
} S;

static void reset(void) { memset(&S, 0, sizeof S); }

static void logged(int id, intptr_t v) {
  ASSERT_LT(S.nlog, 64);
  S.val[S.nlog] = v;
  S.log[S.nlog++] = id;
}

static void expect_log(const int *want, int n) {
  ASSERT_EQ(S.nlog, n);
  for (int i = 0; i < n; i++)
    ASSERT_EQ(S.log[i], want[i]);
}

static void yield_n(int n) {
  while (n-- > 0)
    ASSERT_EQ(cloop_sleep(0), 0);
}

static void enter_critical(void) {
  S.inside++;
  if (S.inside > S.max_inside)
    S.max_inside = S.inside;
}

static void cb_woken(cloop_waiter *w, intptr_t value) {
  cbw *c = w->arg;
  ASSERT(w->link.next == NULL); /* off the list before its callback runs */
  c->woken++;
  logged(c->id, value);
}

static void release_lock_later(void *arg) {
  (void)arg;
  S.inside--;
  cloop_lock_release(&S.lock); /* outside tasks, as it was taken */
}

/* For a lock or permit: log, hold it until a handle of the next batch. */
static void cb_hold(cloop_waiter *w, intptr_t value) {
  cbw *c = w->arg;
  cb_woken(w, value);
  enter_critical();
  cloop_call_soon(S.loop, &c->release);
}

static void cbw_init(cbw *c, int id, cloop_waiter_fn fn, void (*release)(void *)) {
  memset(c, 0, sizeof *c);
  c->id = id;
  cloop_waiter_init(&c->w, fn, c);
  cloop_handle h = CLOOP_HANDLE_INIT(release, c);
  c->release = h;
}

static intptr_t work(void *arg) {
  worker *me = arg;
  switch (me->kind) {
  case EVENT:
    if ((me->r = cloop_event_wait(&S.ev)) == 0)
      logged(me->id, 0);
    break;
  case LOCK:
    if ((me->r = cloop_lock_acquire(&S.lock)) == 0) {
      logged(me->id, 0);
      enter_critical();
      ASSERT_EQ(cloop_sleep(0), 0);
      S.inside--;
      cloop_lock_release(&S.lock);
    }
    break;
  case SEM:
    if ((me->r = cloop_semaphore_acquire(&S.sem)) == 0)
      logged(me->id, 0); /* keeps the permit */
    break;
  case GET:
    if ((me->r = cloop_queue_get(&S.q, &me->item)) == 0)
      logged(me->id, me->item);
    break;
  case PUT:
    if ((me->r = cloop_queue_put(&S.q, me->item)) == 0)
      logged(me->id, me->item);
    break;
  }
  me->done = 1;
  return 0;
}

/* Starts worker `id` (also its index in S.w) and lets it reach its wait. */
static void spawn_worker(int kind, int id, intptr_t item) {
  S.w[id] = (worker){.kind = kind, .id = id, .item = item};
  ASSERT_EQ(cloop_spawn(S.loop, &S.w[id].t, work, &S.w[id], NULL), 0);
  yield_n(1);
}

static void release_worker(int id) {
  ASSERT(S.w[id].done);
  cloop_task_release(S.w[id].t);
}

/* ---- Lock: tasks and callbacks in one FIFO ---------------------------------- */

static intptr_t lock_main(void *arg) {
  (void)arg;
  cbw c1, c3, c4, c5;
  cbw_init(&c1, 101, cb_hold, release_lock_later);
  cbw_init(&c3, 103, cb_hold, release_lock_later);
  cbw_init(&c4, 104, cb_hold, release_lock_later);
  cbw_init(&c5, 105, cb_hold, release_lock_later);
  cloop_lock_init(&S.lock);

  ASSERT_EQ(cloop_lock_try_acquire(&S.lock), 0); /* held by this task */
  ASSERT(S.lock.owner == cloop_current_task());
  ASSERT_EQ(cloop_lock_try_acquire(&S.lock), -EAGAIN);
  spawn_worker(LOCK, 0, 0);
  ASSERT_EQ(cloop_lock_acquire_cb(&S.lock, &c1.w), 1);
  spawn_worker(LOCK, 2, 0);
  ASSERT_EQ(cloop_lock_acquire_cb(&S.lock, &c3.w), 1);
  ASSERT_EQ(cloop_lock_acquire_cb(&S.lock, &c4.w), 1);
  ASSERT_EQ(cloop_waiter_cancel(&c4.w), 1); /* leaves no trace */
  ASSERT_EQ(cloop_waiter_cancel(&c4.w), 0);
  ASSERT(c4.w.link.next == NULL);

  cloop_lock_release(&S.lock); /* to worker 0, which has not run yet */
  ASSERT(cloop_lock_locked(&S.lock));
  ASSERT(S.lock.owner == S.w[0].t);
  ASSERT_EQ(cloop_lock_try_acquire(&S.lock), -EAGAIN); /* no barging */
  while (S.nlog < 4 || cloop_lock_locked(&S.lock))
    yield_n(1);
  expect_log((int[]){0, 101, 2, 103}, 4);
  ASSERT_EQ(S.max_inside, 1);
  ASSERT_EQ(c4.woken, 0);

  /* Free: a callback acquire succeeds at once, without its callback, and
     the lock is held by code outside tasks. */
  ASSERT_EQ(cloop_lock_acquire_cb(&S.lock, &c5.w), 0);
  ASSERT_EQ(c5.woken, 0);
  ASSERT(cloop_lock_locked(&S.lock));
  ASSERT(S.lock.owner == NULL);
  cloop_call_soon(S.loop, &c5.release);
  S.inside++;
  yield_n(1);
  ASSERT(!cloop_lock_locked(&S.lock));

  /* A cancelled callback waiter does not swallow the hand-off. */
  ASSERT_EQ(cloop_lock_acquire(&S.lock), 0);
  cbw_init(&c1, 111, cb_hold, release_lock_later);
  ASSERT_EQ(cloop_lock_acquire_cb(&S.lock, &c1.w), 1);
  spawn_worker(LOCK, 3, 0);
  ASSERT_EQ(cloop_waiter_cancel(&c1.w), 1);
  cloop_lock_release(&S.lock);
  ASSERT(S.lock.owner == S.w[3].t);
  yield_n(3);
  ASSERT(!cloop_lock_locked(&S.lock));
  ASSERT_EQ(S.log[S.nlog - 1], 3);
  ASSERT_EQ(c1.woken, 0);

  release_worker(0);
  release_worker(2);
  release_worker(3);
  return 0;
}

TEST_IMPL_SWITCH(sync_cb_lock_fifo_mixed) {
  reset();
  cloop_loop *loop;
  LOOP_NEW_OPTS(loop, opts);
  S.loop = loop;
  ASSERT_EQ(test_run_loop(loop, lock_main, NULL), 0);
  return 0;
}

/* ---- Event and Semaphore -------------------------------------------------- */

static intptr_t event_sem_main(void *arg) {
  (void)arg;
  cbw c1, c3, c4, c5;
  cbw_init(&c1, 101, cb_woken, NULL);
  cbw_init(&c3, 103, cb_woken, NULL);
  cbw_init(&c4, 104, cb_woken, NULL);
  cbw_init(&c5, 105, cb_woken, NULL);

  /* Event: set wakes every waiter in order; a callback's runs inside set,
     a task's once it runs. */
  cloop_event_init(&S.ev);
  spawn_worker(EVENT, 0, 0);
  ASSERT_EQ(cloop_event_wait_cb(&S.ev, &c1.w), 1);
  spawn_worker(EVENT, 2, 0);
  ASSERT_EQ(cloop_event_wait_cb(&S.ev, &c3.w), 1);
  ASSERT_EQ(cloop_event_wait_cb(&S.ev, &c4.w), 1);
  ASSERT_EQ(cloop_waiter_cancel(&c4.w), 1);
  cloop_event_set(&S.ev);
  expect_log((int[]){101, 103}, 2);
  yield_n(1);
  expect_log((int[]){101, 103, 0, 2}, 4);
  ASSERT_EQ(c4.woken, 0);
  ASSERT_EQ(cloop_event_wait_cb(&S.ev, &c5.w), 0); /* set: at once */
  ASSERT_EQ(c5.woken, 0);
  cloop_event_clear(&S.ev);
  ASSERT_EQ(cloop_event_wait_cb(&S.ev, &c5.w), 1);
  cloop_event_set(&S.ev);
  ASSERT_EQ(c5.woken, 1);
  release_worker(0);
  release_worker(2);

  /* Semaphore: each release hands one permit to the next waiter, task or
     callback, in arrival order; the value stays 0 meanwhile. */
  S.nlog = 0;
  cbw_init(&c1, 101, cb_woken, NULL);
  cbw_init(&c4, 104, cb_woken, NULL);
  cloop_semaphore_init(&S.sem, 1);
  ASSERT_EQ(cloop_semaphore_acquire_cb(&S.sem, &c5.w), 0); /* a permit at once */
  ASSERT_EQ(cloop_semaphore_value(&S.sem), 0);
  ASSERT_EQ(cloop_semaphore_try_acquire(&S.sem), -EAGAIN);
  spawn_worker(SEM, 0, 0);
  ASSERT_EQ(cloop_semaphore_acquire_cb(&S.sem, &c1.w), 1);
  ASSERT_EQ(cloop_semaphore_acquire_cb(&S.sem, &c4.w), 1);
  spawn_worker(SEM, 2, 0);
  ASSERT_EQ(cloop_waiter_cancel(&c4.w), 1);
  cloop_semaphore_release(&S.sem); /* to worker 0 */
  cloop_semaphore_release(&S.sem); /* to c1, now */
  expect_log((int[]){101}, 1);
  ASSERT_EQ(cloop_semaphore_try_acquire(&S.sem), -EAGAIN); /* no barging */
  cloop_semaphore_release(&S.sem); /* to worker 2, not the cancelled c4 */
  ASSERT_EQ(cloop_semaphore_value(&S.sem), 0);
  yield_n(1);
  expect_log((int[]){101, 0, 2}, 3);
  cloop_semaphore_release(&S.sem);
  ASSERT_EQ(cloop_semaphore_value(&S.sem), 1);
  ASSERT_EQ(cloop_semaphore_try_acquire(&S.sem), 0);
  ASSERT_EQ(c4.woken, 0);
  release_worker(0);
  release_worker(2);
  return 0;
}

TEST_IMPL_SWITCH(sync_cb_event_semaphore) {
  reset();
  cloop_loop *loop;
  LOOP_NEW_OPTS(loop, opts);
  S.loop = loop;
  ASSERT_EQ(test_run_loop(loop, event_sem_main, NULL), 0);
  return 0;
}

/* ---- Queue ------------------------------------------------------------------ */

static intptr_t queue_main(void *arg) {
  (void)arg;
  cbw c[8];
  for (int i = 0; i < 8; i++)
    cbw_init(&c[i], 100 + i, cb_woken, NULL);
  intptr_t v = -1;
  ASSERT_EQ(cloop_queue_init(&S.q, S.buf, 2), 0);

  /* Getters in one FIFO: a callback getter takes its item inside the put;
     a task getter keeps its slot until it runs. */
  ASSERT_EQ(cloop_queue_get_cb(&S.q, &v, &c[1].w), 1);
  spawn_worker(GET, 0, 0);
  ASSERT_EQ(cloop_queue_get_cb(&S.q, &v, &c[2].w), 1);
  ASSERT_EQ(cloop_queue_try_put(&S.q, 10), 0);
  ASSERT_EQ(cloop_queue_try_put(&S.q, 11), 0); /* to worker 0 */
  ASSERT_EQ(cloop_queue_try_put(&S.q, 12), 0);
  expect_log((int[]){101, 102}, 2);
  ASSERT_EQ(S.val[0], 10);
  ASSERT_EQ(S.val[1], 12);
  ASSERT_EQ(cloop_queue_size(&S.q), 0);
  ASSERT_EQ(cloop_queue_try_put(&S.q, 13), 0);
  ASSERT_EQ(cloop_queue_try_put(&S.q, 14), -EAGAIN); /* 13 + worker 0's */

  /* Putters: a callback putter's item goes in when a slot frees up. */
  ASSERT_EQ(cloop_queue_put_cb(&S.q, 14, &c[3].w), 1);
  ASSERT_EQ(cloop_queue_put_cb(&S.q, 15, &c[4].w), 1);
  yield_n(1); /* worker 0 takes 11: its slot goes to c[3], in its get */
  expect_log((int[]){101, 102, 103, 0}, 4);
  ASSERT_EQ(S.val[3], 11);
  ASSERT_EQ(cloop_queue_size(&S.q), 2);
  ASSERT_EQ(cloop_queue_try_get(&S.q, &v), 0);
  ASSERT_EQ(v, 13);
  ASSERT_EQ(c[4].woken, 1); /* placed 15 in the freed slot */
  ASSERT_EQ(cloop_queue_get_cb(&S.q, &v, &c[5].w), 0); /* at once */
  ASSERT_EQ(v, 14);
  ASSERT_EQ(c[5].woken, 0);
  ASSERT_EQ(cloop_queue_try_get(&S.q, &v), 0);
  ASSERT_EQ(v, 15);
  ASSERT_EQ(cloop_queue_try_get(&S.q, &v), -EAGAIN);
  release_worker(0);

  /* A cancelled callback getter loses no item; a cancelled callback putter
     put nothing. */
  S.nlog = 0;
  for (int i = 0; i < 8; i++)
    cbw_init(&c[i], 100 + i, cb_woken, NULL);
  ASSERT_EQ(cloop_queue_get_cb(&S.q, &v, &c[1].w), 1);
  ASSERT_EQ(cloop_queue_get_cb(&S.q, &v, &c[2].w), 1);
  ASSERT_EQ(cloop_waiter_cancel(&c[1].w), 1);
  ASSERT_EQ(cloop_queue_try_put(&S.q, 20), 0);
  expect_log((int[]){102}, 1);
  ASSERT_EQ(S.val[0], 20);
  ASSERT_EQ(cloop_queue_try_put(&S.q, 21), 0);
  ASSERT_EQ(cloop_queue_try_put(&S.q, 22), 0);
  ASSERT_EQ(cloop_queue_put_cb(&S.q, 30, &c[3].w), 1);
  ASSERT_EQ(cloop_waiter_cancel(&c[3].w), 1);
  ASSERT_EQ(cloop_queue_try_get(&S.q, &v), 0);
  ASSERT_EQ(v, 21);
  ASSERT_EQ(cloop_queue_try_get(&S.q, &v), 0);
  ASSERT_EQ(v, 22);
  ASSERT_EQ(cloop_queue_try_get(&S.q, &v), -EAGAIN); /* no 30 */
  ASSERT_EQ(c[1].woken + c[3].woken, 0);

  /* A getter task woken with an item and cancelled before it runs passes
     the item on to the next getter, a callback. */
  S.nlog = 0;
  spawn_worker(GET, 0, 0);
  ASSERT_EQ(cloop_queue_get_cb(&S.q, &v, &c[4].w), 1);
  ASSERT_EQ(cloop_queue_try_put(&S.q, 40), 0); /* to worker 0 */
  ASSERT_EQ(c[4].woken, 0);
  cloop_task_cancel(S.w[0].t);
  yield_n(1);
  ASSERT_EQ(S.w[0].r, -ECANCELED);
  expect_log((int[]){104}, 1);
  ASSERT_EQ(S.val[0], 40);
  release_worker(0);

  /* A putter task promised a slot and cancelled before it runs passes the
     slot on to the next putter, a callback. */
  S.nlog = 0;
  ASSERT_EQ(cloop_queue_try_put(&S.q, 1), 0);
  ASSERT_EQ(cloop_queue_try_put(&S.q, 2), 0);
  spawn_worker(PUT, 0, 50);
  ASSERT_EQ(cloop_queue_put_cb(&S.q, 51, &c[5].w), 1);
  ASSERT_EQ(cloop_queue_try_get(&S.q, &v), 0); /* slot promised to worker 0 */
  ASSERT_EQ(v, 1);
  ASSERT_EQ(c[5].woken, 0);
  cloop_task_cancel(S.w[0].t);
  yield_n(1);
  ASSERT_EQ(S.w[0].r, -ECANCELED);
  expect_log((int[]){105}, 1);
  ASSERT_EQ(cloop_queue_try_get(&S.q, &v), 0);
  ASSERT_EQ(v, 2);
  ASSERT_EQ(cloop_queue_try_get(&S.q, &v), 0);
  ASSERT_EQ(v, 51);
  ASSERT_EQ(cloop_queue_try_get(&S.q, &v), -EAGAIN);
  release_worker(0);
  return 0;
}

TEST_IMPL_SWITCH(sync_cb_queue) {
  reset();
  cloop_loop *loop;
  LOOP_NEW_OPTS(loop, opts);
  S.loop = loop;
  ASSERT_EQ(test_run_loop(loop, queue_main, NULL), 0);
  return 0;
}

/* ---- a chain: callback putters feeding callback getters --------------------- */

/* With cap 1 and the slot held by a getter task that has not run, N
   callback getters and N callback putters both wait. When the task runs,
   its freed slot takes putter 0's item to getter 0, which frees the slot
   for putter 1, and so on: N hand-offs inside one call, in order, on a
   stack that a recursion of that depth would overflow. */
enum { CHAIN = 10000 };
static int chain_next; /* the getter expected next */

static void chain_got(cloop_waiter *w, intptr_t value) {
  ASSERT_EQ((intptr_t)(w->arg), chain_next);
  ASSERT_EQ(value, 1000 + chain_next);
  chain_next++;
}

static void chain_put(cloop_waiter *w, intptr_t value) {
  (void)w;
  ASSERT_EQ(value, 0);
}

static intptr_t chain_main(void *arg) {
  (void)arg;
  cloop_waiter *getters = calloc(CHAIN, sizeof *getters);
  cloop_waiter *putters = calloc(CHAIN, sizeof *putters);
  ASSERT(getters && putters);
  intptr_t v;
  ASSERT_EQ(cloop_queue_init(&S.q, S.buf, 1), 0);
  spawn_worker(GET, 0, 0);
  ASSERT_EQ(cloop_queue_try_put(&S.q, 7), 0); /* to worker 0: slot used */
  for (intptr_t i = 0; i < CHAIN; i++) {
    cloop_waiter_init(&getters[i], chain_got, (void *)i);
    ASSERT_EQ(cloop_queue_get_cb(&S.q, &v, &getters[i]), 1);
    cloop_waiter_init(&putters[i], chain_put, NULL);
    ASSERT_EQ(cloop_queue_put_cb(&S.q, 1000 + i, &putters[i]), 1);
  }
  yield_n(1);
  ASSERT_EQ(S.w[0].item, 7);
  ASSERT_EQ(chain_next, CHAIN);
  ASSERT_EQ(cloop_queue_size(&S.q), 0);
  ASSERT(!cloop_waiting(&S.q.getters) && !cloop_waiting(&S.q.putters));
  release_worker(0);
  free(getters);
  free(putters);
  return 0;
}

TEST_IMPL_SWITCH(sync_cb_queue_chain_10k) {
  reset();
  cloop_options o = *opts;
  o.stack_size = 64 << 10; /* small: a recursion would run off it */
  cloop_loop *loop;
  LOOP_NEW_OPTS(loop, &o);
  S.loop = loop;
  ASSERT_EQ(test_run_loop(loop, chain_main, NULL), 0);
  return 0;
}

/* ---- misuse --------------------------------------------------------------- */

static int misuse_which;

static intptr_t release_in_task(void *arg) {
  (void)arg;
  cloop_lock_release(&S.lock);
  return 0;
}

static void misuse_child(void *arg) {
  (void)arg;
  reset();
  cloop_lock_init(&S.lock);
  cloop_event_init(&S.ev);
  cbw c;
  cbw_init(&c, 1, cb_woken, NULL);
  switch (misuse_which) {
  case 0: /* a task releases a lock that code outside tasks holds */
    ASSERT_EQ(cloop_lock_try_acquire(&S.lock), 0);
    cloop_main(release_in_task, NULL, NULL);
    break;
  case 1: /* a waiter that already waits, passed again */
    ASSERT_EQ(cloop_event_wait_cb(&S.ev, &c.w), 1);
    cloop_event_wait_cb(&S.ev, &c.w);
    break;
  }
}

TEST_IMPL(sync_cb_misuse_aborts) {
  static const char *what[] = {
      "a task releasing a lock held outside tasks",
      "a cloop_waiter passed again while it waits",
  };
  for (int i = 0; i < 2; i++) {
    misuse_which = i;
    test_expect_abort(what[i], misuse_child, NULL, "misuse");
  }
  return 0;
}
