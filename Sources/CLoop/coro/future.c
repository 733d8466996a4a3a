/* future.c -- asyncio's Future: pending until completed once.
 *
 * What waits on a future is a handle parked in its `waiters` ring: a done
 * callback, or the step handle of a task in cloop_await. Completing the
 * future moves the whole ring onto the loop's ready ring in O(1) -- the
 * "suspend by not re-registering" of the asyncio write-ups: a parked task
 * is simply not on the ready ring until its future puts it back. */
#include <errno.h>

#include "coro/task.h"
#include "loop/list.h"

/* Sets the outcome and wakes every waiter, in the order they parked. */
static int complete(cloop_future *f, int state, intptr_t value, int err) {
  CLOOP__CHECK(f->loop, "completing a future");
  if (f->state != CLOOP_PENDING)
    return -EALREADY;
  f->state = (uint8_t)state;
  f->value = value;
  f->error = err;
  list_splice(&f->loop->ready, &f->waiters);
  return 0;
}

/* The task's future is the task's to complete (task.c, task_finish). */
int cloop__future_complete(cloop_future *f, int state, intptr_t value, int err) {
  return complete(f, state, value, err);
}

int cloop_future_set_result(cloop_future *f, intptr_t value) {
  if (f->is_task)
    cloop__misuse("cloop_future_set_result on a task's future");
  return complete(f, CLOOP_DONE, value, 0);
}

int cloop_future_set_error(cloop_future *f, int err) {
  if (f->is_task)
    cloop__misuse("cloop_future_set_error on a task's future");
  if (err >= 0)
    cloop__misuse("cloop_future_set_error with %d: an error is < 0", err);
  return complete(f, CLOOP_FAILED, 0, err);
}

int cloop_future_cancel(cloop_future *f) {
  if (f->is_task)
    return cloop_task_cancel((cloop_task *)f); /* the future is its first member */
  return complete(f, CLOOP_CANCELLED, 0, -ECANCELED) == 0;
}

void cloop_future_add_done(cloop_future *f, cloop_handle *h) {
  if (f->state != CLOOP_PENDING) {
    cloop_call_soon(f->loop, h);
    return;
  }
  CLOOP__CHECK(f->loop, "cloop_future_add_done");
  if (h->link.next)
    cloop__misuse("cloop_future_add_done: handle %p is already queued", (void *)h);
  list_push(&f->waiters, &h->link);
}
