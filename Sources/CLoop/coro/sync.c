/* sync.c -- asyncio's Event, Lock, Semaphore and bounded Queue for tasks,
 * and for callbacks.
 *
 * Built on the coroutine level: a waiting task puts its waiter record
 * (every task has one, task.h) at the tail of the primitive's FIFO list and awaits the
 * record's future. A waker takes the first record off the list and completes
 * its future; completing it *is* the hand-off -- of the lock, a permit, a
 * queue slot, or a queue item -- so a task that comes later cannot barge in
 * between the wake-up and the moment the woken task runs.
 *
 * Cancellation (or an expired deadline scope) ends the await early. If the
 * record was still on the list, nothing was handed: the task unlinks it and
 * returns the error. If the record had already been handed something, the
 * task passes it on (lock, permit, slot) or back (item) before returning the
 * error, so no wake-up is swallowed (asyncio's Lock/Semaphore/Queue do the
 * same).
 *
 * Callback waiters. A task's record is a cloop_waiter whose callback
 * completes the task's future; the *_cb calls link a caller's cloop_waiter
 * with any callback into the same list, so one FIFO serves both (the Swift
 * layer parks its async tasks this way, and its fibers as tasks). A
 * callback's hand-off is complete when its callback returns: there is no
 * "woken but not run yet" state, so cancelling a callback waiter is only
 * unlinking it, and the queue gives a callback getter its item, or takes a
 * callback putter's item, on the spot rather than counting it in flight.
 * The price is that the callback runs inside the waker's call (a release,
 * a set, a put); the header forbids it to use the same primitive, and every
 * waker finishes its own bookkeeping before it calls one.
 *
 * Queue bookkeeping. A slot counts as used while it holds an item (len),
 * while an item sits in a woken getter task's record (inflight), or while
 * it is promised to a woken putter task (slot_grants). The invariants:
 *   len + inflight + slot_grants <= cap
 *   getters waiting  => len == 0          (an item never waits beside a getter)
 *   putters waiting  => no slot is free   (a slot never waits beside a putter)
 * A put hands its item straight to the first waiting getter; a woken getter
 * that is cancelled gives the item to the next getter or back to the head
 * of the buffer, which has room because the item still counted (inflight).
 * A woken putter only gets a slot promised and places its item when it runs,
 * so a cancelled put never added anything. */
#include <errno.h>
#include <stdlib.h>

#include "coro/task.h"
#include "loop/list.h"

typedef cloop_waiter waiter;

/* ---- the FIFO list of waiters (list.h) ------------------------------------ */

static waiter *first(cloop_link *l) {
  return list_empty(l) ? NULL : CLOOP__CONTAINER(l->next, waiter, link);
}

/* A task's record: the turn is the task's once its future is complete. */
static void task_woken(waiter *w, intptr_t value) {
  cloop_task *t = w->arg;
  cloop_future_set_result(&t->waiter.done, value);
}

static int is_task(const waiter *w) { return w->fn == task_woken; }

/* Takes the first waiter off l and hands it value. l must not be empty;
   the caller's bookkeeping must be done, as a callback runs here (and may
   free its record). */
static void wake_first(cloop_link *l, intptr_t value) {
  waiter *w = first(l);
  list_remove(&w->link);
  w->fn(w, value);
}

void cloop_waiter_init(cloop_waiter *w, cloop_waiter_fn fn, void *arg) {
  w->fn = fn;
  w->arg = arg;
  w->link.next = w->link.prev = NULL;
  w->item = 0;
}

int cloop_waiter_cancel(cloop_waiter *w) {
  if (!w->link.next)
    return 0;
  list_remove(&w->link);
  return 1;
}

/* ---- waiting ------------------------------------------------------------ */

/* Start of every waiting call: aborts outside a task, and returns the
   task's pending cancellation or expired deadline (what any await would
   return), else 0. An await on a complete future does exactly that check
   without suspending. */
static cloop_task *enter(const char *fn, int *r) {
  cloop_task *t = cloop__task_or_abort(fn);
  *r = cloop__interruption(t);
  return t;
}

/* Parks t at the tail of l until a waker hands it its turn. Returns 0 with
   *value the handed value, or the interruption (-ECANCELED / -ETIMEDOUT)
   with *handed telling whether the turn had been handed anyway (then
   *value is set too). The record is the task's own (task.h). */
static int wait_turn(cloop_task *t, cloop_link *l, intptr_t *value,
                     int *handed) {
  waiter *w = &t->waiter.w;
  cloop_future *done = &t->waiter.done;
  *handed = 0;
  cloop_future_init(done, cloop_task_loop(t));
  cloop_waiter_init(w, task_woken, t);
  list_push(l, &w->link);
  int r = cloop_await(done, value);
  if (cloop_future_done(done)) {
    *handed = 1;
    if (value)
      *value = done->value; /* cloop_await sets it only when it returns 0 */
  } else {
    list_remove(&w->link);
  }
  return r;
}

/* Parks a callback waiter: 1, what the *_cb calls return when w waits. */
static int wait_cb(cloop_link *l, waiter *w) {
  if (w->link.next)
    cloop__misuse("cloop_waiter %p is already waiting", (void *)w);
  list_push(l, &w->link);
  return 1;
}

/* ---- Event --------------------------------------------------------------- */

void cloop_event_init(cloop_event *e) {
  list_init(&e->waiters);
  e->is_set = 0;
}

int cloop_event_wait(cloop_event *e) {
  int r, handed;
  cloop_task *t = enter("cloop_event_wait", &r);
  if (r || e->is_set)
    return r;
  /* A waiter woken and then cancelled has nothing to pass on: the event
     stays set for everyone. */
  return wait_turn(t, &e->waiters, NULL, &handed);
}

int cloop_event_wait_cb(cloop_event *e, cloop_waiter *w) {
  return e->is_set ? 0 : wait_cb(&e->waiters, w);
}

void cloop_event_set(cloop_event *e) {
  if (e->is_set)
    return;
  e->is_set = 1;
  /* In the order they came. Callbacks may not touch the event (cloop.h),
     so the list only shrinks. */
  while (first(&e->waiters))
    wake_first(&e->waiters, 0);
}

void cloop_event_clear(cloop_event *e) { e->is_set = 0; }

int cloop_event_is_set(const cloop_event *e) { return e->is_set; }

/* ---- Lock ---------------------------------------------------------------- */

void cloop_lock_init(cloop_lock *l) {
  list_init(&l->waiters);
  l->owner = NULL;
  l->held = 0;
}

/* The holder lets go: the first waiter becomes the holder at once (a
   callback waiter as "code outside tasks"). */
static void lock_pass(cloop_lock *l) {
  waiter *w = first(&l->waiters);
  l->held = w != NULL;
  l->owner = w && is_task(w) ? w->arg : NULL;
  if (w)
    wake_first(&l->waiters, 0);
}

/* Takes the lock for owner if it is free: 0, else -EAGAIN. */
static int take(cloop_lock *l, cloop_task *owner) {
  if (l->held) /* free implies nobody waiting: no one to overtake */
    return -EAGAIN;
  l->held = 1;
  l->owner = owner;
  return 0;
}

int cloop_lock_try_acquire(cloop_lock *l) {
  return take(l, cloop_current_task());
}

int cloop_lock_acquire(cloop_lock *l) {
  int r, handed;
  cloop_task *t = enter("cloop_lock_acquire", &r);
  if (r || take(l, t) == 0)
    return r;
  if (l->owner == t)
    cloop__misuse("task '%s' acquires lock %p that it already holds (a "
                  "cloop_lock is not reentrant)", cloop_task_name(t), (void *)l);
  r = wait_turn(t, &l->waiters, NULL, &handed);
  if (r && handed)
    lock_pass(l); /* it was ours already: hand it on, not hold it */
  return r;
}

int cloop_lock_acquire_cb(cloop_lock *l, cloop_waiter *w) {
  /* Held by code outside tasks, also when called in a task: it is a
     callback that will hold it if it must wait. */
  return take(l, NULL) == 0 ? 0 : wait_cb(&l->waiters, w);
}

void cloop_lock_release(cloop_lock *l) {
  cloop_task *t = cloop_current_task();
  if (!l->held)
    cloop__misuse("cloop_lock_release on lock %p that is not held", (void *)l);
  if (l->owner != t)
    cloop__misuse("cloop_lock_release on lock %p by %s%s%s, which does not "
                  "hold it (%s%s%s does)", (void *)l,
                  t ? "task '" : "code outside a task",
                  t ? cloop_task_name(t) : "", t ? "'" : "",
                  l->owner ? "task '" : "code outside tasks",
                  l->owner ? cloop_task_name(l->owner) : "",
                  l->owner ? "'" : "");
  lock_pass(l);
}

int cloop_lock_locked(const cloop_lock *l) { return l->held; }

/* ---- Semaphore ------------------------------------------------------------ */

void cloop_semaphore_init(cloop_semaphore *s, size_t value) {
  list_init(&s->waiters);
  s->value = value;
}

int cloop_semaphore_try_acquire(cloop_semaphore *s) {
  if (s->value == 0) /* permits left implies nobody waiting */
    return -EAGAIN;
  s->value--;
  return 0;
}

int cloop_semaphore_acquire(cloop_semaphore *s) {
  int r, handed;
  cloop_task *t = enter("cloop_semaphore_acquire", &r);
  if (r || cloop_semaphore_try_acquire(s) == 0)
    return r;
  r = wait_turn(t, &s->waiters, NULL, &handed);
  if (r && handed)
    cloop_semaphore_release(s); /* the permit was ours: pass it on */
  return r;
}

int cloop_semaphore_acquire_cb(cloop_semaphore *s, cloop_waiter *w) {
  return cloop_semaphore_try_acquire(s) == 0 ? 0 : wait_cb(&s->waiters, w);
}

void cloop_semaphore_release(cloop_semaphore *s) {
  if (first(&s->waiters))
    wake_first(&s->waiters, 0); /* the permit goes straight to it */
  else
    s->value++;
}

size_t cloop_semaphore_value(const cloop_semaphore *s) { return s->value; }

/* ---- Queue ----------------------------------------------------------------- */

int cloop_queue_init(cloop_queue *q, intptr_t *buf, size_t cap) {
  if (!buf || cap == 0)
    return -EINVAL;
  q->buf = buf;
  q->cap = cap;
  q->head = q->len = q->inflight = q->slot_grants = 0;
  list_init(&q->getters);
  list_init(&q->putters);
  return 0;
}

static void buf_push_tail(cloop_queue *q, intptr_t item) {
  size_t i = q->head + q->len;
  q->buf[i >= q->cap ? i - q->cap : i] = item;
  q->len++;
}

static void buf_push_head(cloop_queue *q, intptr_t item) {
  q->head = q->head ? q->head - 1 : q->cap - 1;
  q->buf[q->head] = item;
  q->len++;
}

static intptr_t buf_pop_head(cloop_queue *q) {
  intptr_t item = q->buf[q->head];
  q->head = q->head + 1 == q->cap ? 0 : q->head + 1;
  q->len--;
  return item;
}

static int has_free_slot(const cloop_queue *q) {
  return q->len + q->inflight + q->slot_grants < q->cap;
}

/* Places an item that has a slot: straight to the first waiting getter,
   else into the buffer (at the head for an item coming back from a
   cancelled getter: it is the oldest). A getter task keeps the slot
   counted until it runs; a callback getter frees it at once, so callers
   follow this with grant_slots. */
static void give(cloop_queue *q, intptr_t item, int at_head) {
  waiter *w = first(&q->getters);
  if (!w) {
    if (at_head)
      buf_push_head(q, item);
    else
      buf_push_tail(q, item);
    return;
  }
  if (is_task(w))
    q->inflight++;
  wake_first(&q->getters, item);
}

/* Hands each free slot to the next waiting putter: a task gets it
   promised, a callback's item is placed now (a loop, not recursion, when
   that item frees its slot again at once by going to a callback getter). */
static void grant_slots(cloop_queue *q) {
  waiter *w;
  while ((w = first(&q->putters)) && has_free_slot(q)) {
    if (is_task(w)) {
      q->slot_grants++;
      wake_first(&q->putters, 0);
    } else {
      list_remove(&w->link);
      give(q, w->item, 0);
      w->fn(w, 0);
    }
  }
}

int cloop_queue_try_put(cloop_queue *q, intptr_t item) {
  /* putters.first alone implies no free slot; the test is belt and braces. */
  if (first(&q->putters) || !has_free_slot(q))
    return -EAGAIN;
  give(q, item, 0);
  grant_slots(q);
  return 0;
}

int cloop_queue_try_get(cloop_queue *q, intptr_t *item) {
  if (!q->len)
    return -EAGAIN;
  intptr_t v = buf_pop_head(q);
  if (item)
    *item = v;
  grant_slots(q);
  return 0;
}

int cloop_queue_put(cloop_queue *q, intptr_t item) {
  int r, handed;
  cloop_task *t = enter("cloop_queue_put", &r);
  if (r || cloop_queue_try_put(q, item) == 0)
    return r;
  r = wait_turn(t, &q->putters, NULL, &handed);
  if (handed) {
    q->slot_grants--; /* the promised slot: use it, or give it to the next */
    if (r == 0)
      give(q, item, 0);
    grant_slots(q);
  }
  return r;
}

int cloop_queue_get(cloop_queue *q, intptr_t *item) {
  int r, handed;
  intptr_t v;
  cloop_task *t = enter("cloop_queue_get", &r);
  if (r || cloop_queue_try_get(q, item) == 0)
    return r;
  r = wait_turn(t, &q->getters, &v, &handed);
  if (handed) {
    q->inflight--;
    if (r == 0) {
      if (item)
        *item = v;
    } else {
      give(q, v, 1); /* not ours after all: the next getter's, or the head */
    }
    grant_slots(q); /* its slot is free now, or freed by a callback getter */
  }
  return r;
}

int cloop_queue_put_cb(cloop_queue *q, intptr_t item, cloop_waiter *w) {
  if (cloop_queue_try_put(q, item) == 0)
    return 0;
  w->item = item;
  return wait_cb(&q->putters, w);
}

int cloop_queue_get_cb(cloop_queue *q, intptr_t *item, cloop_waiter *w) {
  return cloop_queue_try_get(q, item) == 0 ? 0 : wait_cb(&q->getters, w);
}

size_t cloop_queue_size(const cloop_queue *q) { return q->len; }
