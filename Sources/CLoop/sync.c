/* sync.c -- asyncio's Event, Lock, Semaphore and bounded Queue for tasks.
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
 * Queue bookkeeping. A slot counts as used while it holds an item (len),
 * while an item sits in a woken getter's record (inflight), or while it is
 * promised to a woken putter (slot_grants). The invariants:
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

#include "internal.h"
#include "task.h"

typedef struct cloop__waiter waiter; /* task.h: each task has one */

/* ---- the FIFO list of waiters ------------------------------------------- */

static void push(cloop__waitlist *l, waiter *w) {
  w->next = NULL;
  w->prev = l->last;
  if (l->last)
    l->last->next = w;
  else
    l->first = w;
  l->last = w;
}

static void unlink_waiter(cloop__waitlist *l, waiter *w) {
  if (w->prev)
    w->prev->next = w->next;
  else
    l->first = w->next;
  if (w->next)
    w->next->prev = w->prev;
  else
    l->last = w->prev;
}

/* Takes the first waiter off l and hands it value. l must not be empty. */
static cloop_task *wake_first(cloop__waitlist *l, intptr_t value) {
  waiter *w = l->first;
  unlink_waiter(l, w);
  cloop_future_set_result(&w->done, value);
  return w->task;
}

/* ---- waiting ------------------------------------------------------------ */

/* Start of every waiting call: aborts outside a task, and returns the
   task's pending cancellation or expired deadline (what any await would
   return), else 0. An await on a complete future does exactly that check
   without suspending. */
static cloop_task *enter(const char *fn, int *r) {
  cloop_task *t = cloop_current_task();
  if (!t)
    cloop__misuse("%s called outside a task (on the loop's own stack or "
                  "another thread)", fn);
  *r = cloop__interruption(t);
  return t;
}

/* Parks t at the tail of l until a waker hands it its turn. Returns 0 with
   *value the handed value, or the interruption (-ECANCELED / -ETIMEDOUT)
   with *handed telling whether the turn had been handed anyway (then
   *value is set too). The record is the task's own (task.h). */
static int wait_turn(cloop_task *t, cloop__waitlist *l, intptr_t *value,
                     int *handed) {
  waiter *w = &t->waiter;
  *handed = 0;
  cloop_future_init(&w->done, cloop_task_loop(t));
  w->task = t;
  push(l, w);
  int r = cloop_await(&w->done, value);
  if (cloop_future_done(&w->done)) {
    *handed = 1;
    if (value)
      *value = w->done.value; /* cloop_await sets it only when it returns 0 */
  } else {
    unlink_waiter(l, w);
  }
  return r;
}

/* ---- Event --------------------------------------------------------------- */

void cloop_event_init(cloop_event *e) {
  e->waiters.first = e->waiters.last = NULL;
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

void cloop_event_set(cloop_event *e) {
  if (e->is_set)
    return;
  e->is_set = 1;
  while (e->waiters.first) /* in the order they came */
    wake_first(&e->waiters, 0);
}

void cloop_event_clear(cloop_event *e) { e->is_set = 0; }

int cloop_event_is_set(const cloop_event *e) { return e->is_set; }

/* ---- Lock ---------------------------------------------------------------- */

void cloop_lock_init(cloop_lock *l) {
  l->waiters.first = l->waiters.last = NULL;
  l->owner = NULL;
}

/* The holder lets go: the first waiter becomes the owner at once. */
static void lock_pass(cloop_lock *l) {
  l->owner = l->waiters.first ? wake_first(&l->waiters, 0) : NULL;
}

int cloop_lock_acquire(cloop_lock *l) {
  int r, handed;
  cloop_task *t = enter("cloop_lock_acquire", &r);
  if (r)
    return r;
  if (!l->owner) { /* no owner implies nobody waiting: no one to overtake */
    l->owner = t;
    return 0;
  }
  if (l->owner == t)
    cloop__misuse("task '%s' acquires lock %p that it already holds (a "
                  "cloop_lock is not reentrant)", cloop_task_name(t), (void *)l);
  r = wait_turn(t, &l->waiters, NULL, &handed);
  if (r && handed)
    lock_pass(l); /* it was ours already: hand it on, not hold it */
  return r;
}

void cloop_lock_release(cloop_lock *l) {
  cloop_task *t = cloop_current_task();
  if (!l->owner)
    cloop__misuse("cloop_lock_release on lock %p that is not held", (void *)l);
  if (l->owner != t)
    cloop__misuse("cloop_lock_release on lock %p by %s%s%s, which does not "
                  "hold it", (void *)l, t ? "task '" : "code outside a task",
                  t ? cloop_task_name(t) : "", t ? "'" : "");
  lock_pass(l);
}

int cloop_lock_locked(const cloop_lock *l) { return l->owner != NULL; }

/* ---- Semaphore ------------------------------------------------------------ */

void cloop_semaphore_init(cloop_semaphore *s, size_t value) {
  s->waiters.first = s->waiters.last = NULL;
  s->value = value;
}

int cloop_semaphore_acquire(cloop_semaphore *s) {
  int r, handed;
  cloop_task *t = enter("cloop_semaphore_acquire", &r);
  if (r)
    return r;
  if (s->value > 0) { /* permits left implies nobody waiting */
    s->value--;
    return 0;
  }
  r = wait_turn(t, &s->waiters, NULL, &handed);
  if (r && handed)
    cloop_semaphore_release(s); /* the permit was ours: pass it on */
  return r;
}

void cloop_semaphore_release(cloop_semaphore *s) {
  if (s->waiters.first)
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
  q->getters.first = q->getters.last = NULL;
  q->putters.first = q->putters.last = NULL;
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

/* Places an item that has a slot: straight to the first waiting getter,
   else at the tail of the buffer. */
static void give(cloop_queue *q, intptr_t item) {
  if (q->getters.first) {
    q->inflight++;
    wake_first(&q->getters, item);
  } else {
    buf_push_tail(q, item);
  }
}

/* Promises each free slot to the next waiting putter. */
static void grant_slots(cloop_queue *q) {
  while (q->putters.first && q->len + q->inflight + q->slot_grants < q->cap) {
    q->slot_grants++;
    wake_first(&q->putters, 0);
  }
}

int cloop_queue_try_put(cloop_queue *q, intptr_t item) {
  /* putters.first alone implies no free slot; the test is belt and braces. */
  if (q->putters.first || q->len + q->inflight + q->slot_grants >= q->cap)
    return -EAGAIN;
  give(q, item);
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
      give(q, item);
    else
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
      grant_slots(q); /* its slot is free now */
    } else if (q->getters.first) {
      q->inflight++; /* not ours after all: the next getter's */
      wake_first(&q->getters, v);
    } else {
      buf_push_head(q, v); /* the oldest item; its slot is still counted */
    }
  }
  return r;
}

size_t cloop_queue_size(const cloop_queue *q) { return q->len; }
