/* task.c -- asyncio's Task on stackful coroutines: spawn, await, sleep,
 * gather, cancellation, deadline scopes, and closing.
 *
 * A task runs on its own stack. Its step handle (asyncio's Task.__step)
 * switches from the loop's stack into the task; an await switches back.
 * Where the task waits is where its step handle is parked: in a future's
 * waiters, behind its sleep timer, or on the ready ring for sleep(0).
 * Whoever completes that puts the step handle on the ready ring, and the
 * next batch resumes the task. Cancelling a parked task takes the step
 * handle back from where it was parked and queues it with a reason. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "ring.h"
#include "task.h"

#ifdef CLOOP__ASAN
#include <sanitizer/asan_interface.h>
#endif

/* ---- switching in and out --------------------------------------------- */

static void task_entry(void *arg);
static void deadline_passed(void *arg);

/* Called by every awaiting function: the task running now, or abort. */
static cloop_task *running_task(const char *fn) {
  cloop_task *t = cloop__running;
  if (!t)
    cloop__misuse("%s called outside a task (on the loop's own stack or "
                  "another thread)", fn);
  return t;
}

/* Back to the loop; returns when the task is resumed. */
static inline __attribute__((always_inline)) void suspend(cloop_task *t) {
  cloop__ctx_switch(&t->ctx, &t->loop->main_ctx, t->loop->switch_mode);
}

/* ---- the shared stack --------------------------------------------------- */

static int on_shared_stack(const cloop_loop *loop, const void *p) {
  return loop->shared_lo && (const char *)p >= loop->shared_lo &&
         (const char *)p < loop->shared_lo + loop->stacks.size;
}

/* Makes the shared stack t's: the owner's used part [sp, top) goes to its
   heap buffer, t's comes back to the same addresses (or, the first time,
   t's context is made there). Cost: a copy of both tasks' used bytes. */
void cloop__shared_swap_in(cloop_loop *loop, cloop_task *t) {
  char *top = loop->shared_lo + loop->stacks.size;
#ifdef CLOOP__ASAN
  /* The frames moved in and out do not match ASan's shadow of them. */
  __asan_unpoison_memory_region(loop->shared_lo, loop->stacks.size);
#endif
  cloop_task *old = loop->shared_owner;
  if (old) {
    char *sp = cloop__ctx_sp(&old->ctx, loop->switch_mode);
    size_t used = (size_t)(top - sp);
    if (used > old->saved_cap) {
      char *buf = realloc(old->saved == old->save_inline ? NULL : old->saved, used);
      if (!buf)
        cloop__misuse("out of memory saving the stack of task '%s' (%zu bytes)",
                      cloop_task_name(old), used);
      old->saved = buf;
      old->saved_cap = used;
    }
    memcpy(old->saved, sp, used);
    old->saved_len = used;
  }
  if (!t->started) {
    if (cloop__ctx_make(&t->ctx, loop->switch_mode, loop->shared_lo,
                        loop->stacks.size, task_entry, t) < 0)
      cloop__misuse("out of memory starting task '%s'", cloop_task_name(t));
    t->started = 1;
  } else {
    memcpy(top - t->saved_len, t->saved, t->saved_len);
  }
  loop->shared_owner = t;
}

void cloop__task_step(void *arg) {
  cloop_task *t = arg;
  cloop__task_resume(t->loop, t);
}

/* The coroutine's entry. A task cancelled before it first ran never runs
   its body (asyncio throws CancelledError in at the first step). */
static void task_entry(void *arg) {
  cloop_task *t = arg;
  t->result = t->cancel_pending && !t->always_run ? -ECANCELED : t->fn(t->arg);
  if (t->deadlines)
    cloop__misuse("task '%s' returned inside a deadline scope "
                  "(call cloop_deadline_exit first)", cloop_task_name(t));
  t->finished = 1;
  cloop__ctx_exit(&t->ctx, &t->loop->main_ctx, t->loop->switch_mode);
}

/* ---- lifetime ----------------------------------------------------------- */

static void task_free(cloop_task *t) {
  cloop_loop *loop = t->loop;
  if (t->prev)
    t->prev->next = t->next;
  else
    loop->tasks = t->next;
  if (t->next)
    t->next->prev = t->prev;
  cloop__ctx_free(&t->ctx);
  if (t->saved != t->save_inline)
    free(t->saved);
  cloop__slab_give(&loop->task_slab, t);
}

/* Drops one reference. The last one frees the task -- unless it failed
   and nobody read its error: then it stays for the report at close. */
static void task_unref(cloop_task *t) {
  if (--t->refs > 0)
    return;
  if (t->future.state == CLOOP_FAILED && !t->future.retrieved)
    return;
  task_free(t);
}

/* A private stack goes back to the pool; the shared one just has no
   owner whose frames need saving. */
static void release_stack(cloop_task *t) {
  if (!t->shared)
    cloop__stack_give(&t->loop->stacks, t->ctx.stack_lo);
  else if (t->loop->shared_owner == t)
    t->loop->shared_owner = NULL;
  if (t->saved != t->save_inline)
    free(t->saved);
  t->saved = t->save_inline;
  t->saved_len = 0;
  t->saved_cap = CLOOP__SAVE_INLINE;
}

/* On the loop's stack, right after the task's last switch. */
void cloop__task_finish(cloop_task *t) {
  cloop_loop *loop = t->loop;
  release_stack(t);
  loop->live_tasks--;
  intptr_t r = t->result;
  if (r >= 0)
    cloop__future_complete(&t->future, CLOOP_DONE, r, 0);
  else if (r == -ECANCELED) /* also when it only passed a child's on */
    cloop__future_complete(&t->future, CLOOP_CANCELLED, 0, -ECANCELED);
  else
    cloop__future_complete(&t->future, CLOOP_FAILED, 0,
                           r >= INT32_MIN ? (int)r : -EINVAL);
  task_unref(t);
}

int cloop_spawn(cloop_loop *loop, cloop_task **out, cloop_task_fn fn,
                void *arg, const char *name) {
  cloop_spawn_options opts = {name, CLOOP_STACK_DEFAULT_MODE};
  return cloop_spawn_ex(loop, out, fn, arg, &opts);
}

int cloop_spawn_ex(cloop_loop *loop, cloop_task **out, cloop_task_fn fn,
                   void *arg, const cloop_spawn_options *opts) {
  CLOOP__CHECK(loop, "cloop_spawn");
  cloop_stack_mode mode = opts && opts->stack ? opts->stack : loop->task_stack;
  cloop_task *t = cloop__slab_alloc(&loop->task_slab); /* zeroed */
  if (!t)
    return -ENOMEM;
  t->saved = t->save_inline;
  t->saved_cap = CLOOP__SAVE_INLINE;
  if (mode == CLOOP_STACK_SHARED) {
    /* Its context is made on the shared stack when it first runs. */
    if (!loop->shared_lo && !(loop->shared_lo = cloop__stack_take(&loop->stacks))) {
      cloop__slab_give(&loop->task_slab, t);
      return -ENOMEM;
    }
    t->shared = 1;
  } else {
    char *stack = cloop__stack_take(&loop->stacks);
    if (!stack) {
      cloop__slab_give(&loop->task_slab, t);
      return -ENOMEM;
    }
    if (cloop__ctx_make(&t->ctx, loop->switch_mode, stack, loop->stacks.size,
                        task_entry, t) < 0) {
      cloop__stack_give(&loop->stacks, stack);
      cloop__slab_give(&loop->task_slab, t);
      return -ENOMEM;
    }
  }
  if (loop->live_tasks == 0)
    cloop__overflow_guard_init(); /* cheap after the first time */
  cloop_future_init(&t->future, loop);
  t->future.is_task = 1;
  cloop_handle_init(&t->step, cloop__task_step, t);
  cloop_timer_init(&t->sleep_timer, cloop__task_step, t);
  cloop_timer_init(&t->deadline_timer, deadline_passed, t);
  t->scope_min = UINT64_MAX;
  t->loop = loop;
  t->fn = fn;
  t->arg = arg;
  t->refs = out ? 2 : 1;
  loop->tasks_spawned++;
  t->id = loop->tasks_spawned;
  if (opts && opts->name) { /* a default name is made when first asked for */
    size_t len = strnlen(opts->name, sizeof t->name - 1);
    memcpy(t->name, opts->name, len);
    t->name[len] = 0;
  }
  t->next = loop->tasks;
  if (loop->tasks)
    loop->tasks->prev = t;
  loop->tasks = t;
  loop->live_tasks++;
  cloop_call_soon(loop, &t->step);
  if (out)
    *out = t;
  return 0;
}

void cloop_task_release(cloop_task *t) {
  CLOOP__CHECK(t->loop, "cloop_task_release");
  if (t->refs <= (t->finished ? 0 : 1))
    cloop__misuse("cloop_task_release on task '%s' without a reference", cloop_task_name(t));
  task_unref(t);
}

cloop_future *cloop_task_future(cloop_task *t) { return &t->future; }

cloop_task *cloop_current_task(void) { return cloop__running; }

cloop_loop *cloop_task_loop(const cloop_task *t) { return t->loop; }

const char *cloop_task_name(const cloop_task *ct) {
  cloop_task *t = (cloop_task *)ct; /* the name is made once, on demand */
  if (!t->name[0])
    snprintf(t->name, sizeof t->name, "task-%llu", (unsigned long long)t->id);
  return t->name;
}

void cloop_set_unretrieved_hook(cloop_loop *loop, cloop_unretrieved_fn fn,
                                void *arg) {
  loop->unretrieved = fn;
  loop->unretrieved_arg = arg;
}

/* ---- cancellation ------------------------------------------------------- */

/* Wakes a parked task early: takes its step handle back from where it is
   parked and queues it. The task then finds why in cancel_pending or
   deadline_hit. */
static void interrupt(cloop_task *t) {
  switch (t->park) {
  case PARK_FUTURE:
    if (t->step.next)
      cloop_handle_cancel(t->loop, &t->step); /* out of the future's waiters */
    cloop_call_soon(t->loop, &t->step);
    t->park = PARK_NONE;
    break;
  case PARK_SLEEP:
    cloop_timer_cancel(t->loop, &t->sleep_timer);
    cloop_call_soon(t->loop, &t->step);
    t->park = PARK_NONE;
    break;
  default: /* running, or already queued: it sees the flag at its next await */
    break;
  }
}

int cloop_task_cancel(cloop_task *t) {
  CLOOP__CHECK(t->loop, "cloop_task_cancel");
  if (t->finished)
    return 0;
  t->cancel_pending = 1;
  interrupt(t);
  return 1;
}

/* Why an await must return now: 0, -ECANCELED (consumed) or -ETIMEDOUT. */
static inline int interruption(cloop_task *t) {
  if (t->cancel_pending) {
    t->cancel_pending = 0;
    return -ECANCELED;
  }
  return t->scope_min <= t->deadline_hit ? -ETIMEDOUT : 0;
}

int cloop__interruption(cloop_task *t) { return interruption(t); }

/* ---- awaiting --------------------------------------------------------------- */

/* Parks t until f is complete. Returns 0 then, or the interruption that
   came first. quiet ignores interruptions (gather, while the children it
   cancelled unwind); a wake-up by one just parks again. */
static inline __attribute__((always_inline)) int
wait_for(cloop_task *t, cloop_future *f, int quiet) {
  for (;;) {
    if (!quiet) {
      int r = interruption(t);
      if (r)
        return r;
    }
    if (f->state != CLOOP_PENDING)
      return 0;
    if (f->loop != t->loop)
      cloop__misuse("task '%s' awaits a future of another loop", cloop_task_name(t));
    if (f == &t->future)
      cloop__misuse("task '%s' awaits its own future", cloop_task_name(t));
    if (t->shared && on_shared_stack(t->loop, f))
      cloop__misuse("task '%s' runs on the shared stack and awaits a future "
                    "on it, which moves while it is parked (see "
                    "CLOOP_STACK_SHARED)", cloop_task_name(t));
    t->park = PARK_FUTURE;
    t->parked_on = f;
    ring_push(&f->waiters, &t->step);
    suspend(t);
    t->park = PARK_NONE;
    t->parked_on = NULL;
  }
}

/* Reads a complete future's outcome: 0 and its value, or its error. */
static int outcome(cloop_future *f, intptr_t *value) {
  f->retrieved = 1;
  if (f->state == CLOOP_DONE) {
    if (value)
      *value = f->value;
    return 0;
  }
  return f->error;
}

int cloop_await(cloop_future *f, intptr_t *value) {
  cloop_task *t = running_task("cloop_await");
  int r = wait_for(t, f, 0);
  return r ? r : outcome(f, value);
}

int cloop__await_quiet(cloop_future *f) {
  cloop_task *t = running_task("cloop__await_quiet");
  wait_for(t, f, 1);
  return outcome(f, NULL);
}

intptr_t cloop_task_join(cloop_task *other) {
  intptr_t value = 0;
  int r = cloop_await(&other->future, &value);
  return r ? r : value;
}

int cloop_sleep_until(uint64_t deadline_ns) {
  cloop_task *t = running_task("cloop_sleep");
  int r = interruption(t);
  if (r)
    return r;
  r = cloop_call_at(t->loop, &t->sleep_timer, deadline_ns);
  if (r < 0)
    return r;
  t->park = PARK_SLEEP;
  suspend(t);
  t->park = PARK_NONE;
  return interruption(t);
}

int cloop_sleep(int64_t ns) {
  cloop_task *t = running_task("cloop_sleep");
  if (ns > 0) {
    uint64_t now = cloop_now(t->loop), when = now + (uint64_t)ns;
    return cloop_sleep_until(when < now ? UINT64_MAX : when);
  }
  int r = interruption(t);
  if (r)
    return r;
  cloop_call_soon(t->loop, &t->step); /* sleep(0): to the back of the line */
  t->park = PARK_YIELD;
  suspend(t);
  t->park = PARK_NONE;
  return interruption(t);
}

int cloop_gather(cloop_future *const *futures, size_t n, intptr_t *results) {
  cloop_task *t = running_task("cloop_gather");
  int first_error = 0, interrupted = 0;
  for (size_t i = 0; i < n; i++) {
    int r = interrupted ? 0 : wait_for(t, futures[i], 0);
    if (r) {
      /* This task was cancelled or timed out: cancel what is left and
         wait for it quietly, so that no child outlives the gather. */
      interrupted = r;
      for (size_t j = i; j < n; j++)
        cloop_future_cancel(futures[j]);
    }
    if (interrupted)
      wait_for(t, futures[i], 1);
    intptr_t value = 0;
    int err = outcome(futures[i], &value);
    if (results)
      results[i] = err ? err : value;
    if (err && !first_error)
      first_error = err;
  }
  return interrupted ? interrupted : first_error;
}

/* ---- deadline scopes ----------------------------------------------------------- */

/* The task's one deadline timer waits for the earliest deadline of its
   scopes. Scopes keep only plain values, so that nothing the loop touches
   lives on the task's stack (a shared-stack task's stack is elsewhere while
   it is parked). */
static void deadline_passed(void *arg) {
  cloop_task *t = arg;
  uint64_t now = cloop_now(t->loop); /* every scope already past expires */
  t->deadline_hit = now > t->scope_min ? now : t->scope_min;
  interrupt(t);
}

static void arm_deadline(cloop_task *t) {
  cloop_timer_cancel(t->loop, &t->deadline_timer);
  if (t->scope_min != UINT64_MAX && t->scope_min > t->deadline_hit &&
      cloop_call_at(t->loop, &t->deadline_timer, t->scope_min) < 0)
    t->deadline_hit = t->scope_min; /* no memory for the timer: expire now */
}

int cloop_deadline_enter(cloop_deadline *d, int64_t timeout_ns) {
  cloop_task *t = running_task("cloop_deadline_enter");
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
  cloop_task *t = running_task("cloop_deadline_exit");
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

/* ---- main and periodic tasks --------------------------------------------------- */

typedef struct periodic {
  cloop_task_fn fn;
  void *arg;
  int64_t interval;
} periodic;

static intptr_t periodic_body(void *arg) {
  periodic p = *(periodic *)arg;
  free(arg);
  cloop_loop *loop = cloop__running->loop;
  uint64_t next = cloop_now(loop) + (uint64_t)p.interval;
  for (;;) {
    int r = cloop_sleep_until(next);
    if (r < 0)
      return r;
    intptr_t v = p.fn(p.arg);
    if (v < 0)
      return v;
    /* Fixed rate: the next tick counts from this one's due time; ticks
       missed while a call overran are skipped, not bunched. The clock is
       read afresh: the cached time is from before the call. */
    cloop_update_time(loop);
    uint64_t now = cloop_now(loop);
    next += (uint64_t)p.interval;
    if (next <= now)
      next += ((now - next) / (uint64_t)p.interval + 1) * (uint64_t)p.interval;
  }
}

int cloop_spawn_periodic(cloop_loop *loop, cloop_task **out, cloop_task_fn fn,
                         void *arg, int64_t interval_ns, const char *name) {
  if (interval_ns <= 0)
    return -EINVAL;
  periodic *p = malloc(sizeof *p);
  if (!p)
    return -ENOMEM;
  *p = (periodic){fn, arg, interval_ns};
  cloop_task *t;
  int r = cloop_spawn(loop, &t, periodic_body, p, name);
  if (r < 0) {
    free(p);
    return r;
  }
  /* Its body frees p, so it must run even if cancelled before starting:
     then its first sleep returns -ECANCELED. */
  t->always_run = 1;
  if (out)
    *out = t;
  else
    cloop_task_release(t);
  return 0;
}

intptr_t cloop_main(cloop_task_fn fn, void *arg, const cloop_options *opts) {
  cloop_loop *loop;
  int r = cloop_loop_new(&loop, opts);
  if (r < 0)
    return r;
  cloop_task *main_task;
  r = cloop_spawn(loop, &main_task, fn, arg, "main");
  if (r < 0) {
    cloop_loop_free(loop);
    return r;
  }
  while (!main_task->finished) {
    r = cloop_run_once(loop, -1);
    if (r <= 0 && !main_task->finished) {
      /* Nothing can wake main: report it rather than hang. */
      fprintf(stderr, "cloop: main task is parked with nothing left that "
                      "could wake it\n");
      r = r < 0 ? r : -EDEADLK;
      break;
    }
  }
  intptr_t value = 0;
  if (r >= 0) {
    int err = outcome(&main_task->future, &value);
    value = err ? err : value;
  } else {
    value = r;
  }
  cloop_task_release(main_task);
  /* asyncio.run's ending: cancel the other tasks and let them unwind,
     then drop whatever callbacks are left. */
  cloop__tasks_close(loop);
  cloop__loop_discard(loop);
  cloop_loop_free(loop);
  return value;
}

/* ---- closing --------------------------------------------------------------------- */

static void report_unretrieved(cloop_task *t, int err, void *arg) {
  (void)arg;
  fprintf(stderr, "cloop: task '%s' failed with %d (%s) and nobody "
                  "retrieved its error\n", cloop_task_name(t), err, cloop_strerror(err));
}

void cloop__tasks_close(cloop_loop *loop) {
  if (loop->current)
    cloop__misuse("closing a loop from inside its task '%s'", cloop_task_name(loop->current));
  /* asyncio.run's ending: cancel each live task once and run the loop
     until they have unwound. A task spawned while others unwind is
     cancelled in the next round. */
  loop->running = 1;
  while (loop->live_tasks) {
    for (cloop_task *t = loop->tasks; t; t = t->next)
      if (!t->finished && !t->closing) {
        t->closing = 1;
        cloop_task_cancel(t);
      }
    if (cloop__iterate(loop, -1) <= 0)
      break; /* what is left is parked on something nothing will complete */
  }
  loop->running = 0;
  cloop_unretrieved_fn hook = loop->unretrieved ? loop->unretrieved : report_unretrieved;
  while (loop->tasks) {
    cloop_task *t = loop->tasks;
    if (!t->finished) {
      fprintf(stderr, "cloop: task '%s' was still parked after being "
                      "cancelled; its stack is dropped\n", cloop_task_name(t));
      release_stack(t);
      loop->live_tasks--;
      if (t->step.next)
        cloop_handle_cancel(loop, &t->step);
      cloop_timer_cancel(loop, &t->sleep_timer);
      cloop_timer_cancel(loop, &t->deadline_timer);
    } else if (t->future.state == CLOOP_FAILED && !t->future.retrieved) {
      hook(t, t->future.error, loop->unretrieved_arg);
    }
    task_free(t);
  }
}
