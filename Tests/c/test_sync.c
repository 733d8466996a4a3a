/* test_sync.c -- Event, Lock, Semaphore and Queue: FIFO order of waiters,
 * hand-off without barging, counts, blocking both ways, cancellation while
 * parked and right after a wake-up, deadlines (also one expiring in the
 * very batch of the hand-off), misuse, mixed waits, and a ring of 10,000
 * tasks passing tokens through bounded queues. */
#include "test.h"

#define MS 1000000LL

/* ---- shared helpers ------------------------------------------------------- */

/* What a worker task waits on. */
enum { EVENT, LOCK, SEM, GET, PUT };

typedef struct worker {
  int kind, i;
  int r;        /* what its waiting call returned */
  int done;
  intptr_t got; /* GET: the item; PUT: the item it puts */
  cloop_task *t;
} worker;

static struct {
  cloop_event ev;
  cloop_lock lock;
  cloop_semaphore sem;
  cloop_queue q;
  intptr_t buf[16];
  int log[64], nlog;   /* indexes of the workers whose wait succeeded */
  int inside, max_inside;
  worker w[8];
  uint64_t deadline;   /* published by a deadline worker */
} S;

static void reset(void) { memset(&S, 0, sizeof S); }

static cloop_loop *cur_loop(void) { return cloop_task_loop(cloop_current_task()); }

static void yield_n(int n) {
  while (n-- > 0)
    ASSERT_EQ(cloop_sleep(0), 0);
}

/* Inside a lock or semaphore: counts who else is inside, across a yield. */
static void hold(void) {
  S.inside++;
  if (S.inside > S.max_inside)
    S.max_inside = S.inside;
  ASSERT_EQ(cloop_sleep(0), 0);
  S.inside--;
}

static intptr_t work(void *arg) {
  worker *me = arg;
  switch (me->kind) {
  case EVENT:
    me->r = cloop_event_wait(&S.ev);
    break;
  case LOCK:
    me->r = cloop_lock_acquire(&S.lock);
    if (me->r == 0) {
      ASSERT(S.lock.owner == cloop_current_task());
      hold();
      cloop_lock_release(&S.lock);
    }
    break;
  case SEM:
    me->r = cloop_semaphore_acquire(&S.sem);
    if (me->r == 0) {
      hold();
      cloop_semaphore_release(&S.sem);
    }
    break;
  case GET:
    me->r = cloop_queue_get(&S.q, &me->got);
    break;
  case PUT:
    me->r = cloop_queue_put(&S.q, me->got);
    break;
  }
  if (me->r == 0)
    S.log[S.nlog++] = me->i;
  me->done = 1;
  return 0;
}

/* Spawns workers first..first+n-1 of `kind` (a putter puts 100 + i) and
   yields once, so that they have run up to their wait. */
static void spawn_workers(int kind, int first, int n) {
  for (int i = first; i < first + n; i++) {
    S.w[i] = (worker){.kind = kind, .i = i, .got = kind == PUT ? 100 + i : 0};
    ASSERT_EQ(cloop_spawn(cur_loop(), &S.w[i].t, work, &S.w[i], NULL), 0);
  }
  yield_n(1);
}

static void release_workers(int n) {
  for (int i = 0; i < n; i++) {
    ASSERT(S.w[i].done);
    cloop_task_release(S.w[i].t);
  }
}

static void expect_log(const int *want, int n) {
  ASSERT_EQ(S.nlog, n);
  for (int i = 0; i < n; i++)
    ASSERT_EQ(S.log[i], want[i]);
}

static intptr_t get_now(void) {
  intptr_t v = -1;
  ASSERT_EQ(cloop_queue_try_get(&S.q, &v), 0);
  return v;
}

/* ---- Event ------------------------------------------------------------------ */

static void set_event_cb(void *arg) { cloop_event_set(arg); }

static intptr_t event_main(void *arg) {
  (void)arg;
  cloop_event_init(&S.ev);
  spawn_workers(EVENT, 0, 5);
  for (int i = 0; i < 5; i++)
    ASSERT(!S.w[i].done);
  ASSERT(!cloop_event_is_set(&S.ev));
  cloop_event_set(&S.ev);
  ASSERT(cloop_event_is_set(&S.ev));
  ASSERT(!cloop_waiting(&S.ev.waiters));
  yield_n(1);
  expect_log((int[]){0, 1, 2, 3, 4}, 5); /* all of them, in order */

  /* Set: a wait returns at once, without yielding (nobody else ran). */
  S.nlog = 0;
  spawn_workers(EVENT, 5, 1); /* runs and returns during this yield */
  ASSERT(S.w[5].done);
  ASSERT_EQ(cloop_event_wait(&S.ev), 0);

  /* Cleared: waits park again; a callback (outside any task) sets it. */
  cloop_event_clear(&S.ev);
  ASSERT(!cloop_event_is_set(&S.ev));
  spawn_workers(EVENT, 6, 1);
  ASSERT(!S.w[6].done);
  cloop_handle h = CLOOP_HANDLE_INIT(set_event_cb, &S.ev);
  cloop_call_soon(cur_loop(), &h);
  yield_n(2);
  ASSERT(S.w[6].done);
  ASSERT_EQ(S.w[6].r, 0);
  release_workers(7);
  return 0;
}

TEST_IMPL_SWITCH(sync_event_set_wakes_all_fifo) {
  reset();
  ASSERT_EQ(test_run_task(opts, event_main, NULL), 0);
  return 0;
}

/* ---- Lock ------------------------------------------------------------------- */

static intptr_t lock_main(void *arg) {
  (void)arg;
  cloop_lock_init(&S.lock);
  ASSERT(!cloop_lock_locked(&S.lock));
  ASSERT_EQ(cloop_lock_acquire(&S.lock), 0);
  ASSERT(cloop_lock_locked(&S.lock));
  spawn_workers(LOCK, 0, 4);
  for (int i = 0; i < 4; i++)
    ASSERT(!S.w[i].done);
  /* The release hands the lock to the first waiter at once... */
  cloop_lock_release(&S.lock);
  ASSERT(cloop_lock_locked(&S.lock));
  ASSERT(S.lock.owner == S.w[0].t);
  /* ...so this task, acquiring again before w0 even ran, queues behind
     all four: no barging. */
  ASSERT_EQ(cloop_lock_acquire(&S.lock), 0);
  expect_log((int[]){0, 1, 2, 3}, 4);
  ASSERT_EQ(S.max_inside, 1);
  ASSERT(S.lock.owner == cloop_current_task());
  cloop_lock_release(&S.lock);
  ASSERT(!cloop_lock_locked(&S.lock));
  ASSERT(!cloop_waiting(&S.lock.waiters));
  yield_n(1);
  release_workers(4);
  return 0;
}

TEST_IMPL_SWITCH(sync_lock_fifo_handoff_no_barging) {
  reset();
  ASSERT_EQ(test_run_task(opts, lock_main, NULL), 0);
  return 0;
}

/* Misuse, each in a child that must abort naming it. */
static int misuse_which;

static intptr_t misuse_holder(void *arg) {
  (void)arg;
  ASSERT_EQ(cloop_lock_acquire(&S.lock), 0);
  ASSERT_EQ(cloop_sleep(5 * MS), 0);
  return 0;
}

static intptr_t misuse_task(void *arg) {
  (void)arg;
  switch (misuse_which) {
  case 0: /* release a lock nobody holds */
    cloop_lock_release(&S.lock);
    break;
  case 1: /* release a lock another task holds */
    ASSERT_EQ(cloop_spawn(cur_loop(), NULL, misuse_holder, NULL, "holder"), 0);
    yield_n(1);
    ASSERT(cloop_lock_locked(&S.lock));
    cloop_lock_release(&S.lock);
    break;
  case 2: /* acquire again while holding it */
    ASSERT_EQ(cloop_lock_acquire(&S.lock), 0);
    cloop_lock_acquire(&S.lock);
    break;
  case 3: /* acquire and keep it, for case 4 */
    ASSERT_EQ(cloop_lock_acquire(&S.lock), 0);
    break;
  }
  return 0;
}

static void misuse_child(void *arg) {
  (void)arg;
  reset();
  cloop_lock_init(&S.lock);
  cloop_semaphore_init(&S.sem, 0);
  cloop_event_init(&S.ev);
  cloop_queue_init(&S.q, S.buf, 4);
  switch (misuse_which) {
  case 4: /* release outside any task, by code that does not hold it */
    cloop_main(misuse_task, NULL, NULL);
    cloop_lock_release(&S.lock);
    break;
  case 5:
    cloop_lock_acquire(&S.lock);
    break;
  case 6:
    cloop_semaphore_acquire(&S.sem);
    break;
  case 7:
    cloop_event_wait(&S.ev);
    break;
  case 8: {
    intptr_t v;
    cloop_queue_get(&S.q, &v);
    break;
  }
  case 9:
    cloop_queue_put(&S.q, 1);
    break;
  default:
    cloop_main(misuse_task, NULL, NULL);
  }
}

TEST_IMPL(sync_misuse_aborts) {
  static const char *what[] = {
      "releasing a lock not held",
      "releasing a lock another task holds",
      "acquiring a held lock again in its holder",
      "(unused)",
      "releasing a held lock outside a task",
      "cloop_lock_acquire outside a task",
      "cloop_semaphore_acquire outside a task",
      "cloop_event_wait outside a task",
      "cloop_queue_get outside a task",
      "cloop_queue_put outside a task",
  };
  for (int i = 0; i < 10; i++) {
    if (i == 3)
      continue;
    misuse_which = i;
    test_expect_abort(what[i], misuse_child, NULL, "misuse");
  }
  return 0;
}

/* ---- Semaphore -------------------------------------------------------------- */

static void release_sem_cb(void *arg) { cloop_semaphore_release(arg); }

static intptr_t sem_main(void *arg) {
  (void)arg;
  cloop_semaphore_init(&S.sem, 2);
  spawn_workers(SEM, 0, 6);
  ASSERT_EQ(S.inside, 2); /* w0 and w1 got in; w2..w5 wait */
  ASSERT_EQ(cloop_semaphore_value(&S.sem), 0);
  for (int i = 2; i < 6; i++)
    ASSERT(!S.w[i].done);
  yield_n(1); /* w0, w1 release: their permits go straight to w2, w3 */
  ASSERT_EQ(cloop_semaphore_value(&S.sem), 0);
  yield_n(10);
  expect_log((int[]){0, 1, 2, 3, 4, 5}, 6);
  ASSERT_EQ(S.max_inside, 2);
  ASSERT_EQ(cloop_semaphore_value(&S.sem), 2);
  release_workers(6);

  /* Releases add up; a release from a callback hands a permit on too. */
  reset();
  cloop_semaphore_init(&S.sem, 0);
  for (int i = 0; i < 3; i++)
    cloop_semaphore_release(&S.sem);
  ASSERT_EQ(cloop_semaphore_value(&S.sem), 3);
  for (int i = 0; i < 3; i++)
    ASSERT_EQ(cloop_semaphore_acquire(&S.sem), 0);
  ASSERT_EQ(cloop_semaphore_value(&S.sem), 0);
  S.w[0] = (worker){.kind = SEM};
  ASSERT_EQ(cloop_spawn(cur_loop(), &S.w[0].t, work, &S.w[0], NULL), 0);
  yield_n(1);
  ASSERT(!S.w[0].done);
  cloop_handle h = CLOOP_HANDLE_INIT(release_sem_cb, &S.sem);
  cloop_call_soon(cur_loop(), &h);
  yield_n(4);
  ASSERT(S.w[0].done);
  ASSERT_EQ(S.w[0].r, 0);
  ASSERT_EQ(cloop_semaphore_value(&S.sem), 1); /* it released its permit */
  release_workers(1);
  return 0;
}

TEST_IMPL_SWITCH(sync_semaphore_counts_fifo) {
  reset();
  ASSERT_EQ(test_run_task(opts, sem_main, NULL), 0);
  return 0;
}

/* ---- Queue --------------------------------------------------------------------- */

static intptr_t queue_try_main(void *arg) {
  (void)arg;
  intptr_t v;
  ASSERT_EQ(cloop_queue_init(&S.q, NULL, 3), -EINVAL);
  ASSERT_EQ(cloop_queue_init(&S.q, S.buf, 0), -EINVAL);
  ASSERT_EQ(cloop_queue_init(&S.q, S.buf, 3), 0);
  ASSERT_EQ(cloop_queue_try_get(&S.q, &v), -EAGAIN);
  /* Around the ring buffer several times, never above 3. */
  intptr_t next_in = 0, next_out = 0;
  for (int round = 0; round < 10; round++) {
    while (cloop_queue_try_put(&S.q, next_in) == 0)
      next_in++;
    ASSERT_EQ(cloop_queue_size(&S.q), 3);
    ASSERT_EQ(cloop_queue_try_put(&S.q, 99), -EAGAIN);
    int take = 1 + round % 3;
    for (int i = 0; i < take; i++) {
      ASSERT_EQ(cloop_queue_try_get(&S.q, &v), 0);
      ASSERT_EQ(v, next_out++);
    }
    ASSERT_EQ(cloop_queue_size(&S.q), 3 - take);
  }
  /* The blocking calls do not park when they need not. */
  while (cloop_queue_size(&S.q)) {
    ASSERT_EQ(cloop_queue_get(&S.q, &v), 0);
    ASSERT_EQ(v, next_out++);
  }
  ASSERT_EQ(cloop_queue_put(&S.q, 5), 0);
  ASSERT_EQ(cloop_queue_get(&S.q, NULL), 0);
  ASSERT_EQ(cloop_queue_try_get(&S.q, &v), -EAGAIN);
  return 0;
}

TEST_IMPL_SWITCH(sync_queue_try_and_wrap) {
  reset();
  ASSERT_EQ(test_run_task(opts, queue_try_main, NULL), 0);
  return 0;
}

static intptr_t queue_get_main(void *arg) {
  (void)arg;
  ASSERT_EQ(cloop_queue_init(&S.q, S.buf, 2), 0);
  spawn_workers(GET, 0, 3);
  for (int i = 0; i < 3; i++)
    ASSERT(!S.w[i].done);
  /* Each put goes straight to the first waiting getter; the items count
     against the capacity until those getters have run. */
  ASSERT_EQ(cloop_queue_try_put(&S.q, 10), 0);
  ASSERT_EQ(cloop_queue_try_put(&S.q, 11), 0);
  ASSERT_EQ(cloop_queue_size(&S.q), 0);
  ASSERT_EQ(cloop_queue_try_put(&S.q, 12), -EAGAIN);
  yield_n(1);
  expect_log((int[]){0, 1}, 2);
  ASSERT_EQ(S.w[0].got, 10);
  ASSERT_EQ(S.w[1].got, 11);
  ASSERT(!S.w[2].done);
  ASSERT_EQ(cloop_queue_put(&S.q, 12), 0);
  yield_n(1);
  ASSERT_EQ(S.w[2].got, 12);
  ASSERT_EQ(S.q.inflight, 0);
  release_workers(3);
  return 0;
}

TEST_IMPL_SWITCH(sync_queue_get_blocks_fifo) {
  reset();
  ASSERT_EQ(test_run_task(opts, queue_get_main, NULL), 0);
  return 0;
}

static intptr_t queue_put_main(void *arg) {
  (void)arg;
  intptr_t v;
  ASSERT_EQ(cloop_queue_init(&S.q, S.buf, 2), 0);
  ASSERT_EQ(cloop_queue_put(&S.q, 1), 0);
  ASSERT_EQ(cloop_queue_put(&S.q, 2), 0);
  spawn_workers(PUT, 0, 3); /* 100, 101, 102: all park, the queue is full */
  for (int i = 0; i < 3; i++)
    ASSERT(!S.w[i].done);
  ASSERT_EQ(cloop_queue_try_put(&S.q, 99), -EAGAIN);
  intptr_t want[] = {1, 2, 100, 101, 102};
  for (int i = 0; i < 5; i++) {
    ASSERT_EQ(cloop_queue_get(&S.q, &v), 0); /* parks for 100 onwards */
    ASSERT_EQ(v, want[i]);
  }
  yield_n(2);
  expect_log((int[]){0, 1, 2}, 3);
  ASSERT_EQ(cloop_queue_try_get(&S.q, &v), -EAGAIN);
  ASSERT_EQ(S.q.slot_grants, 0);
  release_workers(3);
  return 0;
}

TEST_IMPL_SWITCH(sync_queue_put_blocks_fifo) {
  reset();
  ASSERT_EQ(test_run_task(opts, queue_put_main, NULL), 0);
  return 0;
}

/* ---- cancellation while parked ------------------------------------------------ */

/* w0, w1, w2 wait; w1 is cancelled while parked; then w0 and w2 are served
   and w1 has taken nothing. */
static void cancel_parked(int kind) {
  reset();
  cloop_event_init(&S.ev);
  cloop_lock_init(&S.lock);
  cloop_semaphore_init(&S.sem, 0);
  ASSERT_EQ(cloop_queue_init(&S.q, S.buf, kind == PUT ? 1 : 2), 0);
  if (kind == LOCK)
    ASSERT_EQ(cloop_lock_acquire(&S.lock), 0);
  if (kind == PUT)
    ASSERT_EQ(cloop_queue_put(&S.q, 1), 0);
  spawn_workers(kind, 0, 3);
  for (int i = 0; i < 3; i++)
    ASSERT(!S.w[i].done);
  ASSERT_EQ(cloop_task_cancel(S.w[1].t), 1);
  yield_n(1);
  ASSERT(S.w[1].done);
  ASSERT_EQ(S.w[1].r, -ECANCELED);
  ASSERT(!S.w[0].done && !S.w[2].done);

  intptr_t v;
  switch (kind) {
  case EVENT:
    cloop_event_set(&S.ev);
    break;
  case LOCK:
    cloop_lock_release(&S.lock);
    break;
  case SEM:
    cloop_semaphore_release(&S.sem);
    cloop_semaphore_release(&S.sem);
    break;
  case GET:
    ASSERT_EQ(cloop_queue_put(&S.q, 10), 0);
    ASSERT_EQ(cloop_queue_put(&S.q, 11), 0);
    break;
  case PUT:
    for (int i = 0; i < 3; i++) {
      static const intptr_t want[] = {1, 100, 102}; /* w1's 101 never went in */
      ASSERT_EQ(cloop_queue_get(&S.q, &v), 0);
      ASSERT_EQ(v, want[i]);
    }
    break;
  }
  yield_n(6);
  expect_log((int[]){0, 2}, 2);
  ASSERT_EQ(S.w[0].r, 0);
  ASSERT_EQ(S.w[2].r, 0);
  switch (kind) {
  case LOCK:
    ASSERT(!cloop_lock_locked(&S.lock));
    ASSERT_EQ(S.max_inside, 1);
    break;
  case SEM:
    ASSERT_EQ(cloop_semaphore_value(&S.sem), 2); /* both permits back */
    break;
  case GET:
    ASSERT_EQ(S.w[0].got, 10);
    ASSERT_EQ(S.w[2].got, 11);
    ASSERT_EQ(S.w[1].got, 0);
    break;
  }
  ASSERT_EQ(cloop_queue_try_get(&S.q, &v), -EAGAIN); /* no item left over */
  ASSERT_EQ(S.q.inflight + S.q.slot_grants, 0);
  ASSERT(!cloop_waiting(&S.ev.waiters) && !cloop_waiting(&S.lock.waiters) &&
         !cloop_waiting(&S.sem.waiters) && !cloop_waiting(&S.q.getters) &&
         !cloop_waiting(&S.q.putters));
  release_workers(3);
}

static intptr_t cancel_parked_main(void *arg) {
  (void)arg;
  for (int kind = EVENT; kind <= PUT; kind++)
    cancel_parked(kind);
  return 0;
}

TEST_IMPL_SWITCH(sync_cancel_while_parked) {
  ASSERT_EQ(test_run_task(opts, cancel_parked_main, NULL), 0);
  return 0;
}

/* ---- cancellation right after the wake-up -------------------------------------- */

/* The waker hands its thing to w0 and cancels w0 in the same step, before
   w0 ran: w0 returns -ECANCELED and the thing goes on to w1 (or back). */
static void cancel_woken(int kind, int nworkers) {
  reset();
  cloop_event_init(&S.ev);
  cloop_lock_init(&S.lock);
  cloop_semaphore_init(&S.sem, 0);
  ASSERT_EQ(cloop_queue_init(&S.q, S.buf, kind == PUT ? 1 : 2), 0);
  if (kind == LOCK)
    ASSERT_EQ(cloop_lock_acquire(&S.lock), 0);
  if (kind == PUT)
    ASSERT_EQ(cloop_queue_put(&S.q, 1), 0);
  spawn_workers(kind, 0, nworkers);

  intptr_t v;
  switch (kind) {
  case EVENT:
    cloop_event_set(&S.ev);
    break;
  case LOCK:
    cloop_lock_release(&S.lock);
    ASSERT(S.lock.owner == S.w[0].t); /* handed over already */
    break;
  case SEM:
    cloop_semaphore_release(&S.sem);
    ASSERT_EQ(cloop_semaphore_value(&S.sem), 0); /* handed over already */
    break;
  case GET:
    ASSERT_EQ(cloop_queue_try_put(&S.q, 7), 0); /* handed to w0 */
    if (nworkers == 1) {
      /* Fill the buffer behind it: w0's item must still fit back in. */
      ASSERT_EQ(cloop_queue_try_put(&S.q, 8), 0);
      ASSERT_EQ(cloop_queue_try_put(&S.q, 9), -EAGAIN);
    }
    break;
  case PUT:
    ASSERT_EQ(cloop_queue_try_get(&S.q, &v), 0); /* a slot promised to w0 */
    ASSERT_EQ(v, 1);
    ASSERT_EQ(cloop_queue_try_put(&S.q, 5), -EAGAIN); /* not ours to take */
    break;
  }
  ASSERT_EQ(cloop_task_cancel(S.w[0].t), 1);
  yield_n(6);
  ASSERT(S.w[0].done);
  ASSERT_EQ(S.w[0].r, -ECANCELED);

  if (nworkers == 2) {
    /* Event: w1 was woken too; everything else: w1 got what w0 passed on. */
    expect_log((int[]){1}, 1);
    ASSERT_EQ(S.w[1].r, 0);
  } else {
    expect_log(NULL, 0);
  }
  switch (kind) {
  case EVENT:
    ASSERT(cloop_event_is_set(&S.ev));
    break;
  case LOCK:
    ASSERT(!cloop_lock_locked(&S.lock));
    ASSERT_EQ(cloop_lock_acquire(&S.lock), 0); /* free, at once */
    cloop_lock_release(&S.lock);
    break;
  case SEM:
    ASSERT_EQ(cloop_semaphore_value(&S.sem), 1); /* the one permit, back */
    break;
  case GET:
    if (nworkers == 2) {
      ASSERT_EQ(S.w[1].got, 7);
      ASSERT_EQ(cloop_queue_size(&S.q), 0);
    } else {
      ASSERT_EQ(cloop_queue_size(&S.q), 2); /* 7 back at the head, before 8 */
      ASSERT_EQ(get_now(), 7);
      ASSERT_EQ(get_now(), 8);
    }
    break;
  case PUT:
    if (nworkers == 2) {
      ASSERT_EQ(cloop_queue_size(&S.q), 1);
      ASSERT_EQ(get_now(), 101); /* w1's, and w0's 100 never went in */
    } else {
      ASSERT_EQ(cloop_queue_size(&S.q), 0);
      ASSERT_EQ(cloop_queue_try_put(&S.q, 5), 0); /* the slot came back */
      ASSERT_EQ(get_now(), 5);
    }
    break;
  }
  ASSERT_EQ(cloop_queue_try_get(&S.q, &v), -EAGAIN);
  ASSERT_EQ(S.q.inflight + S.q.slot_grants, 0);
  release_workers(nworkers);
}

static intptr_t cancel_woken_main(void *arg) {
  (void)arg;
  for (int kind = EVENT; kind <= PUT; kind++) {
    cancel_woken(kind, 2); /* passed on to the next waiter */
    cancel_woken(kind, 1); /* passed back: nobody else waits */
  }
  return 0;
}

TEST_IMPL_SWITCH(sync_cancel_after_wake) {
  ASSERT_EQ(test_run_task(opts, cancel_woken_main, NULL), 0);
  return 0;
}

/* ---- deadlines ---------------------------------------------------------------------- */

/* In a 2 ms deadline scope, waits on something that never comes. */
static intptr_t deadline_work(void *arg) {
  worker *me = arg;
  cloop_deadline d;
  ASSERT_EQ(cloop_deadline_enter(&d, 2 * MS), 0);
  S.deadline = d.when;
  work(me);
  ASSERT_EQ(cloop_deadline_exit(&d), -ETIMEDOUT);
  return 0;
}

static intptr_t deadline_main(void *arg) {
  (void)arg;
  intptr_t v;
  cloop_event_init(&S.ev);
  cloop_lock_init(&S.lock);
  cloop_semaphore_init(&S.sem, 0);
  ASSERT_EQ(cloop_queue_init(&S.q, S.buf, 1), 0);
  ASSERT_EQ(cloop_lock_acquire(&S.lock), 0);
  /* One waiter of each kind but PUT; GET waits on the empty S.q. PUT
     comes after, once S.q is full. */
  for (int kind = EVENT; kind <= GET; kind++) {
    S.w[kind] = (worker){.kind = kind, .i = kind};
    ASSERT_EQ(cloop_spawn(cur_loop(), &S.w[kind].t, deadline_work, &S.w[kind], NULL), 0);
  }
  uint64_t start = test_clock_ns();
  for (int kind = EVENT; kind <= GET; kind++)
    ASSERT_EQ(cloop_task_join(S.w[kind].t), 0);
  ASSERT_GE(test_clock_ns() - start, 2 * MS);
  for (int kind = EVENT; kind <= GET; kind++)
    ASSERT_EQ(S.w[kind].r, -ETIMEDOUT);
  ASSERT(!cloop_waiting(&S.ev.waiters) && !cloop_waiting(&S.lock.waiters) &&
         !cloop_waiting(&S.sem.waiters) && !cloop_waiting(&S.q.getters));
  ASSERT(S.lock.owner == cloop_current_task()); /* untouched */
  ASSERT_EQ(cloop_semaphore_value(&S.sem), 0);

  ASSERT_EQ(cloop_queue_put(&S.q, 1), 0); /* nobody took it: it stays */
  ASSERT_EQ(cloop_queue_size(&S.q), 1);
  S.w[PUT] = (worker){.kind = PUT, .i = PUT, .got = 100};
  ASSERT_EQ(cloop_spawn(cur_loop(), &S.w[PUT].t, deadline_work, &S.w[PUT], NULL), 0);
  ASSERT_EQ(cloop_task_join(S.w[PUT].t), 0);
  ASSERT_EQ(S.w[PUT].r, -ETIMEDOUT);
  ASSERT(!cloop_waiting(&S.q.putters));
  ASSERT_EQ(get_now(), 1); /* and 100 never went in */
  ASSERT_EQ(cloop_queue_try_get(&S.q, &v), -EAGAIN);
  expect_log(NULL, 0);
  release_workers(5);

  /* An expired scope (or a pending cancellation) makes a waiting call
     return at once, even one that would not have parked, touching
     nothing. */
  cloop_lock_release(&S.lock);
  cloop_semaphore_release(&S.sem);
  cloop_event_set(&S.ev);
  cloop_deadline d;
  ASSERT_EQ(cloop_deadline_enter(&d, 0), 0);
  ASSERT_EQ(cloop_lock_acquire(&S.lock), -ETIMEDOUT);
  ASSERT_EQ(cloop_semaphore_acquire(&S.sem), -ETIMEDOUT);
  ASSERT_EQ(cloop_event_wait(&S.ev), -ETIMEDOUT);
  ASSERT_EQ(cloop_queue_put(&S.q, 3), -ETIMEDOUT);
  ASSERT_EQ(cloop_deadline_exit(&d), -ETIMEDOUT);
  ASSERT(!cloop_lock_locked(&S.lock));
  ASSERT_EQ(cloop_semaphore_value(&S.sem), 1);
  ASSERT_EQ(cloop_queue_size(&S.q), 0);
  ASSERT_EQ(cloop_task_cancel(cloop_current_task()), 1);
  ASSERT_EQ(cloop_lock_acquire(&S.lock), -ECANCELED);
  ASSERT(!cloop_lock_locked(&S.lock));
  ASSERT_EQ(cloop_lock_acquire(&S.lock), 0); /* the cancellation was used up */
  cloop_lock_release(&S.lock);
  return 0;
}

TEST_IMPL_SWITCH(sync_deadline_while_waiting) {
  reset();
  ASSERT_EQ(test_run_task(opts, deadline_main, NULL), 0);
  return 0;
}

/* A deadline that expires in the very batch in which the waiter was handed
   its lock / permit / item / slot, after the hand-off: the timer that wakes
   this task is due 1 ns before the waiter's deadline, and both are due in
   the same iteration, so this task hands over first and the deadline
   interrupts the woken waiter before it runs. */
static void deadline_at_handoff(int kind) {
  reset();
  cloop_lock_init(&S.lock);
  cloop_semaphore_init(&S.sem, 0);
  ASSERT_EQ(cloop_queue_init(&S.q, S.buf, 1), 0);
  if (kind == LOCK)
    ASSERT_EQ(cloop_lock_acquire(&S.lock), 0);
  if (kind == PUT)
    ASSERT_EQ(cloop_queue_put(&S.q, 1), 0);
  S.w[0] = (worker){.kind = kind, .got = kind == PUT ? 100 : 0};
  ASSERT_EQ(cloop_spawn(cur_loop(), &S.w[0].t, deadline_work, &S.w[0], NULL), 0);
  yield_n(1);
  ASSERT(!S.w[0].done);
  ASSERT(S.deadline != 0);
  while (test_clock_ns() <= S.deadline + 100000)
    ; /* busy: the loop cannot run the deadline's timer meanwhile */
  ASSERT_EQ(cloop_sleep_until(S.deadline - 1), 0);

  intptr_t v;
  switch (kind) {
  case LOCK:
    cloop_lock_release(&S.lock);
    ASSERT(S.lock.owner == S.w[0].t);
    break;
  case SEM:
    cloop_semaphore_release(&S.sem);
    ASSERT_EQ(cloop_semaphore_value(&S.sem), 0);
    break;
  case GET:
    ASSERT_EQ(cloop_queue_try_put(&S.q, 7), 0);
    ASSERT_EQ(S.q.inflight, 1);
    break;
  case PUT:
    ASSERT_EQ(get_now(), 1);
    ASSERT_EQ(S.q.slot_grants, 1);
    break;
  }
  ASSERT(!S.w[0].done);
  ASSERT_EQ(cloop_task_join(S.w[0].t), 0);
  ASSERT_EQ(S.w[0].r, -ETIMEDOUT);
  switch (kind) {
  case LOCK:
    ASSERT(!cloop_lock_locked(&S.lock));
    break;
  case SEM:
    ASSERT_EQ(cloop_semaphore_value(&S.sem), 1);
    break;
  case GET:
    ASSERT_EQ(get_now(), 7);
    break;
  case PUT:
    ASSERT_EQ(S.q.slot_grants, 0);
    ASSERT_EQ(cloop_queue_size(&S.q), 0);
    break;
  }
  ASSERT_EQ(cloop_queue_try_get(&S.q, &v), -EAGAIN);
  ASSERT_EQ(S.q.inflight, 0);
  release_workers(1);
}

static intptr_t deadline_handoff_main(void *arg) {
  (void)arg;
  deadline_at_handoff(LOCK);
  deadline_at_handoff(SEM);
  deadline_at_handoff(GET);
  deadline_at_handoff(PUT);
  return 0;
}

TEST_IMPL_SWITCH(sync_deadline_at_handoff) {
  ASSERT_EQ(test_run_task(opts, deadline_handoff_main, NULL), 0);
  return 0;
}

/* ---- mixed waits --------------------------------------------------------------------- */

/* 50 workers wait for a start event (set by a timer callback), then each,
   under a semaphore of 3, takes a lock to bump a counter across a yield
   and puts its number into a queue of 4 that one consumer drains. */
#define MIXED 50

static struct {
  cloop_event start;
  cloop_semaphore sem;
  cloop_lock lock;
  cloop_queue q;
  intptr_t buf[4];
  int in_sem, max_in_sem, in_lock, max_in_lock, counter;
  intptr_t sum, got;
} M;

static intptr_t mixed_worker(void *arg) {
  intptr_t i = (intptr_t)arg;
  ASSERT_EQ(cloop_event_wait(&M.start), 0);
  ASSERT_EQ(cloop_semaphore_acquire(&M.sem), 0);
  if (++M.in_sem > M.max_in_sem)
    M.max_in_sem = M.in_sem;
  ASSERT_EQ(cloop_lock_acquire(&M.lock), 0);
  if (++M.in_lock > M.max_in_lock)
    M.max_in_lock = M.in_lock;
  int c = M.counter;
  ASSERT_EQ(cloop_sleep(0), 0);
  M.counter = c + 1; /* a lost update if the lock let two in */
  M.in_lock--;
  cloop_lock_release(&M.lock);
  ASSERT_EQ(cloop_queue_put(&M.q, i), 0);
  M.in_sem--;
  cloop_semaphore_release(&M.sem);
  return i;
}

static intptr_t mixed_consumer(void *arg) {
  (void)arg;
  for (int n = 0; n < MIXED; n++) {
    intptr_t v;
    ASSERT_EQ(cloop_queue_get(&M.q, &v), 0);
    M.sum += v;
    M.got++;
    if (n % 7 == 0)
      ASSERT_EQ(cloop_sleep(100000), 0); /* let the queue fill up */
  }
  return MIXED;
}

static void start_cb(void *arg) { cloop_event_set(arg); }

static intptr_t mixed_main(void *arg) {
  (void)arg;
  cloop_loop *loop = cur_loop();
  cloop_event_init(&M.start);
  cloop_semaphore_init(&M.sem, 3);
  cloop_lock_init(&M.lock);
  ASSERT_EQ(cloop_queue_init(&M.q, M.buf, 4), 0);
  cloop_task *t[MIXED + 1];
  cloop_future *f[MIXED + 1];
  intptr_t results[MIXED + 1];
  for (intptr_t i = 0; i < MIXED; i++)
    ASSERT_EQ(cloop_spawn(loop, &t[i], mixed_worker, (void *)i, NULL), 0);
  ASSERT_EQ(cloop_spawn(loop, &t[MIXED], mixed_consumer, NULL, "consumer"), 0);
  cloop_timer start;
  cloop_timer_init(&start, start_cb, &M.start);
  ASSERT_EQ(cloop_call_later(loop, &start, 1 * MS), 0);
  for (int i = 0; i <= MIXED; i++)
    f[i] = cloop_task_future(t[i]);
  ASSERT_EQ(cloop_gather(f, MIXED + 1, results), 0);
  for (int i = 0; i < MIXED; i++)
    ASSERT_EQ(results[i], i);
  ASSERT_EQ(results[MIXED], MIXED);
  ASSERT_EQ(M.counter, MIXED);
  ASSERT_EQ(M.max_in_lock, 1);
  ASSERT_EQ(M.max_in_sem, 3);
  ASSERT_EQ(M.got, MIXED);
  ASSERT_EQ(M.sum, MIXED * (MIXED - 1) / 2);
  ASSERT_EQ(cloop_semaphore_value(&M.sem), 3);
  ASSERT(!cloop_lock_locked(&M.lock));
  ASSERT_EQ(cloop_queue_size(&M.q), 0);
  for (int i = 0; i <= MIXED; i++)
    cloop_task_release(t[i]);
  return 0;
}

TEST_IMPL_SWITCH(sync_mixed_waits) {
  memset(&M, 0, sizeof M);
  ASSERT_EQ(test_run_task(opts, mixed_main, NULL), 0);
  return 0;
}

/* ---- a ring of 10,000 tasks ----------------------------------------------------------- */

/* Task i gets tokens from queue i (capacity 1) and puts them into queue
   i+1. TOKENS tokens start spread over the ring and each makes HOPS hops,
   so queues fill up and putters park as well as getters. The task that
   retires the last token sends STOP round, and the ring unwinds. */
#define RING 10000
#define TOKENS 32
#define HOPS (2 * RING) /* each token goes round twice */
#define STOP ((intptr_t)-1)

static struct {
  cloop_queue *q;
  intptr_t *bufs;
  int *hops_by_task;
  int *hops_by_token;
  uint8_t *finished;
  int alive;
  long total;
} R;

static intptr_t ring_task(void *arg) {
  intptr_t i = (intptr_t)arg, next = (i + 1) % RING;
  for (;;) {
    intptr_t x;
    ASSERT_EQ(cloop_queue_get(&R.q[i], &x), 0);
    if (x == STOP) {
      if (!R.finished[next])
        ASSERT_EQ(cloop_queue_put(&R.q[next], STOP), 0);
      break;
    }
    R.hops_by_task[i]++;
    R.total++;
    if (++R.hops_by_token[x] < HOPS) {
      ASSERT_EQ(cloop_queue_put(&R.q[next], x), 0);
    } else if (--R.alive == 0) {
      ASSERT_EQ(cloop_queue_put(&R.q[next], STOP), 0);
      break;
    }
  }
  R.finished[i] = 1;
  return 0;
}

static intptr_t ring_main(void *arg) {
  (void)arg;
  cloop_loop *loop = cur_loop();
  R.q = calloc(RING, sizeof *R.q);
  R.bufs = calloc(RING, sizeof *R.bufs);
  R.hops_by_task = calloc(RING, sizeof *R.hops_by_task);
  R.hops_by_token = calloc(TOKENS, sizeof *R.hops_by_token);
  R.finished = calloc(RING, 1);
  cloop_task **t = calloc(RING, sizeof *t);
  cloop_future **f = calloc(RING, sizeof *f);
  ASSERT(R.q && R.bufs && R.hops_by_task && R.hops_by_token && R.finished && t && f);
  for (int i = 0; i < RING; i++)
    ASSERT_EQ(cloop_queue_init(&R.q[i], &R.bufs[i], 1), 0);
  for (intptr_t i = 0; i < RING; i++) {
    ASSERT_EQ(cloop_spawn(loop, &t[i], ring_task, (void *)i, NULL), 0);
    f[i] = cloop_task_future(t[i]);
  }
  R.alive = TOKENS;
  for (intptr_t k = 0; k < TOKENS; k++)
    ASSERT_EQ(cloop_queue_put(&R.q[k * (RING / TOKENS)], k), 0);
  ASSERT_EQ(cloop_gather(f, RING, NULL), 0);

  ASSERT_EQ(R.total, (long)TOKENS * HOPS);
  for (int k = 0; k < TOKENS; k++)
    ASSERT_EQ(R.hops_by_token[k], HOPS);
  long sum = 0;
  for (int i = 0; i < RING; i++) {
    ASSERT(R.finished[i]);
    ASSERT_EQ(cloop_queue_size(&R.q[i]), 0);
    ASSERT(!cloop_waiting(&R.q[i].getters) && !cloop_waiting(&R.q[i].putters));
    ASSERT_EQ(R.q[i].inflight + R.q[i].slot_grants, 0);
    /* Every token passes every task HOPS / RING times. */
    ASSERT_EQ(R.hops_by_task[i], TOKENS * (HOPS / RING));
    sum += R.hops_by_task[i];
    cloop_task_release(t[i]);
  }
  ASSERT_EQ(sum, R.total);
  free(R.q);
  free(R.bufs);
  free(R.hops_by_task);
  free(R.hops_by_token);
  free(R.finished);
  free(t);
  free(f);
  return 0;
}

TEST_IMPL_SWITCH(sync_queue_ring_10k) {
  SKIP_IF_TSAN_TASKS(10000);
  memset(&R, 0, sizeof R);
  ASSERT_EQ(test_run_task(opts, ring_main, NULL), 0);
  return 0;
}

/* The same on the shared stack, where each wait allocates its record. */
TEST_IMPL_SWITCH(sync_queue_ring_10k_shared_stack) {
  SKIP_IF_TSAN_TASKS(10000);
  memset(&R, 0, sizeof R);
  cloop_options o = *opts;
  o.task_stack = CLOOP_STACK_SHARED;
  ASSERT_EQ(test_run_task(&o, ring_main, NULL), 0);
  return 0;
}
