/* deadline.c -- deadline scopes, asyncio's timeout(): cancellation at a
 * deadline, reported as -ETIMEDOUT; shield scopes, asyncio's shield, that
 * hold cancellation and outer deadlines off; and wait_for, a timeout that
 * cancels what it waited for.
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

static int enter(cloop_task *t, cloop_deadline *d, int64_t timeout_ns,
                 int shield) {
  uint64_t now = cloop_now(t->loop);
  uint64_t when = timeout_ns <= 0 ? now : now + (uint64_t)timeout_ns;
  d->when = when < now || timeout_ns == CLOOP_NO_DEADLINE ? UINT64_MAX - 1 : when;
  d->outer_min = t->scope_min;
  d->outer = t->deadlines;
  d->shield = shield;
  t->deadlines = d;
  if (timeout_ns <= 0 && now > t->deadline_hit)
    t->deadline_hit = now; /* passed already */
  if (shield) {
    /* Only its own deadline and those of scopes inside it count now. */
    t->shielded++;
    t->scope_min = d->when;
    arm_deadline(t);
  } else if (d->when < t->scope_min) {
    t->scope_min = d->when;
    arm_deadline(t);
  }
  return 0;
}

int cloop_deadline_enter(cloop_deadline *d, int64_t timeout_ns) {
  cloop_task *t = cloop__task_or_abort("cloop_deadline_enter");
  return enter(t, d, timeout_ns, 0);
}

int cloop_shield_enter(cloop_deadline *d, int64_t timeout_ns) {
  cloop_task *t = cloop__task_or_abort("cloop_shield_enter");
  return enter(t, d, timeout_ns, 1);
}

int cloop_deadline_exit(cloop_deadline *d) {
  cloop_task *t = cloop__task_or_abort("cloop_deadline_exit");
  if (t->deadlines != d)
    cloop__misuse("cloop_deadline_exit: task '%s' leaves a deadline scope "
                  "that is not its innermost", cloop_task_name(t));
  t->deadlines = d->outer;
  int expired = d->when <= t->deadline_hit;
  if (d->shield) {
    t->shielded--;
    /* An outer deadline that passed while shielded (its timer was not
       armed) expires now, for the next await. */
    uint64_t now = cloop_now(t->loop);
    if (d->outer_min <= now && now > t->deadline_hit)
      t->deadline_hit = now;
  }
  if (t->scope_min != d->outer_min) {
    t->scope_min = d->outer_min;
    arm_deadline(t);
  }
  return expired ? -ETIMEDOUT : 0;
}

intptr_t cloop_wait_for(cloop_task *other, int64_t timeout_ns) {
  cloop_task *t = cloop__task_or_abort("cloop_wait_for");
  cloop_future *f = cloop_task_future(other);
  cloop_deadline d;
  enter(t, &d, timeout_ns, 0);
  intptr_t value = 0;
  int r = cloop_await(f, &value);
  int expired = cloop_deadline_exit(&d);
  if (r != -ETIMEDOUT && r != -ECANCELED)
    return r < 0 ? r : value;
  if (!cloop_future_done(f)) {
    /* asyncio's wait_for: what it waited for does not outlive it. */
    cloop_task_cancel(other);
    cloop__await_quiet(f);
    return r;
  }
  /* It finished as the time ran out: its result is not lost to it. */
  if (r == -ETIMEDOUT && expired) {
    r = cloop__outcome(f, &value);
    return r < 0 ? r : value;
  }
  return r;
}
