/* timer.c -- asyncio's TimerHandle: call_later, call_at, cancel, and
 * running the due ones.
 *
 * A timer waits in the heap until its deadline. In asyncio's _run_once the
 * due timers are moved to the ready queue behind the handles already there
 * and run with them. Here they run straight out of the heap, right after
 * those handles: the same order, without a second pass over every due
 * timer's memory (a million due timers are a million scattered cache
 * misses per pass). */
#include "loop/loop.h"
#include "loop/list.h"

void cloop_timer_init(cloop_timer *t, cloop_fn fn, void *arg) {
  cloop_handle_init(&t->handle, fn, arg);
  t->loop = NULL;
  t->deadline = 0;
  t->index = CLOOP_TIMER_IDLE;
}

int cloop_call_at(cloop_loop *loop, cloop_timer *t, uint64_t when_ns) {
  CLOOP__CHECK(loop, "cloop_call_at");
  if (cloop_timer_active(t))
    cloop__misuse("timer %p scheduled while already pending "
                  "(cancel it first)", (void *)t);
  t->loop = loop;
  t->deadline = when_ns;
  return cloop__heap_push(&loop->timers, t);
}

int cloop_call_later(cloop_loop *loop, cloop_timer *t, int64_t delay_ns) {
  uint64_t delay = delay_ns < 0 ? 0 : (uint64_t)delay_ns; /* asyncio: <0 is 0 */
  uint64_t now = cloop_now(loop), when = now + delay;
  if (when < now)
    when = UINT64_MAX; /* saturate: a timer for the end of time */
  return cloop_call_at(loop, t, when);
}

int cloop_timer_cancel(cloop_loop *loop, cloop_timer *t) {
  CLOOP__CHECK(loop, "cloop_timer_cancel");
  if (!cloop_timer_active(t))
    return 0;
  if (t->loop != loop)
    cloop__misuse("cloop_timer_cancel: timer %p belongs to another loop",
                  (void *)t);
  if (t->index != CLOOP_TIMER_IDLE)
    cloop__heap_remove(&loop->timers, t->index);
  else
    list_remove(&t->handle.link);
  return 1;
}

/* The last part of an iteration's batch. A timer is part of it if it was
   due at `now` and scheduled before the batch began (seq < seq_limit). One
   scheduled by a callback of this batch waits for the next iteration, like
   any handle: it is set aside on `later` while the due ones run, then
   queued behind the handles this batch queued, in deadline order -- where
   asyncio would put it next time. A callback may cancel a due timer not yet
   run, or a set-aside one (it is queued, so cancel unlinks it). */
void cloop__run_due_timers(cloop_loop *loop, uint64_t now, uint64_t seq_limit) {
  cloop__heap *heap = &loop->timers;
  cloop_link later;
  list_init(&later);
  while (heap->len && heap->e[0].deadline <= now) {
    cloop_timer *t = heap->e[0].timer;
    int scheduled_in_batch = heap->e[0].seq >= seq_limit;
    cloop__heap_remove(heap, 0);
    if (scheduled_in_batch)
      list_push(&later, &t->handle.link);
    else
      t->handle.fn(t->handle.arg);
  }
  list_splice(&loop->ready, &later);
}
