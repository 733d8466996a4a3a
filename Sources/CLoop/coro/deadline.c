/* deadline.c -- deadline scopes, asyncio's timeout(): cancellation at a
 * deadline, reported as -ETIMEDOUT.
 *
 * A scope is plain values in the caller's struct; the task keeps the
 * earliest deadline of the scopes it is in (scope_min) and one timer armed
 * at it. When the timer fires, every scope whose deadline has passed is
 * expired (deadline_hit), and every await inside one returns -ETIMEDOUT
 * until the task leaves it: expiry is level-triggered, as Trio's cancel
 * scopes are. */
#include <errno.h>
#include <stdint.h>

#include "coro/task.h"

/* The task's one deadline timer waits for the earliest deadline of its
   scopes. Scopes keep only plain values, so that nothing the loop touches
   lives on the task's stack (a shared-stack task's stack is elsewhere while
   it is parked). */
void cloop__deadline_passed(void *arg) {
  cloop_task *t = arg;
  uint64_t now = cloop_now(t->loop); /* every scope already past expires */
  t->deadline_hit = now > t->scope_min ? now : t->scope_min;
  cloop__task_interrupt(t);
}

static void arm_deadline(cloop_task *t) {
  cloop_timer_cancel(t->loop, &t->deadline_timer);
  if (t->scope_min != UINT64_MAX && t->scope_min > t->deadline_hit &&
      cloop_call_at(t->loop, &t->deadline_timer, t->scope_min) < 0)
    t->deadline_hit = t->scope_min; /* no memory for the timer: expire now */
}

int cloop_deadline_enter(cloop_deadline *d, int64_t timeout_ns) {
  cloop_task *t = cloop__task_or_abort("cloop_deadline_enter");
  uint64_t now = cloop_now(t->loop);
  uint64_t when = timeout_ns <= 0 ? now : now + (uint64_t)timeout_ns;
  d->when = when < now ? UINT64_MAX - 1 : when;
  d->outer_min = t->scope_min;
  d->outer = t->deadlines;
  t->deadlines = d;
  if (timeout_ns <= 0 && now > t->deadline_hit)
    t->deadline_hit = now; /* passed already */
  if (d->when < t->scope_min) {
    t->scope_min = d->when;
    arm_deadline(t);
  }
  return 0;
}

int cloop_deadline_exit(cloop_deadline *d) {
  cloop_task *t = cloop__task_or_abort("cloop_deadline_exit");
  if (t->deadlines != d)
    cloop__misuse("cloop_deadline_exit: task '%s' leaves a deadline scope "
                  "that is not its innermost", cloop_task_name(t));
  t->deadlines = d->outer;
  int expired = d->when <= t->deadline_hit;
  if (t->scope_min != d->outer_min) {
    t->scope_min = d->outer_min;
    arm_deadline(t);
  }
  return expired ? -ETIMEDOUT : 0;
}
