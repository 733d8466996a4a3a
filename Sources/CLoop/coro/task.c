/* task.c -- asyncio's Task on stackful coroutines: spawn, await, sleep,
 * gather and cancellation. (Deadline scopes are deadline.c's, cloop_main
 * and periodic tasks run.c's, closing runtime.c's.)
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

#include "coro/task.h"
#include "loop/list.h"

#ifdef CLOOP__ASAN
#include <sanitizer/asan_interface.h>
#endif

/* ---- switching in and out --------------------------------------------- */

static void task_entry(void *arg);

/* Back to the loop; returns when the task is resumed. */
static inline __attribute__((always_inline)) void suspend(cloop_task *t) {
  struct cloop__coro *c = t->loop->coro;
  cloop__ctx_switch(&t->ctx, &c->main_ctx, c->switch_mode);
}

/* ---- the shared stack --------------------------------------------------- */

/* Makes the shared stack t's: the owner's used part [sp, top) goes to its
   heap buffer, t's comes back to the same addresses (or, the first time,
   t's context is made there). Cost: a copy of both tasks' used bytes. */
void cloop__shared_swap_in(cloop_loop *loop, cloop_task *t) {
  struct cloop__coro *c = loop->coro;
  char *top = c->shared_lo + c->stacks.size;
#ifdef CLOOP__ASAN
  /* The frames moved in and out do not match ASan's shadow of them. */
  __asan_unpoison_memory_region(c->shared_lo, c->stacks.size);
#endif
  cloop_task *old = c->shared_owner;
  if (old) {
    char *sp = cloop__ctx_sp(&old->ctx, c->switch_mode);
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
    if (cloop__ctx_make(&t->ctx, c->switch_mode, c->shared_lo,
                        c->stacks.size, task_entry, t) < 0)
      cloop__misuse("out of memory starting task '%s'", cloop_task_name(t));
    t->ctx.name = t->name;
    t->ctx.id = t->id;
    t->started = 1;
  } else {
    memcpy(top - t->saved_len, t->saved, t->saved_len);
  }
  c->shared_owner = t;
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
  struct cloop__coro *c = t->loop->coro;
  cloop__ctx_exit(&t->ctx, &c->main_ctx, c->switch_mode);
}

/* ---- lifetime ----------------------------------------------------------- */

void cloop__task_free(cloop_task *t) {
  list_remove(&t->node);
  cloop__ctx_free(&t->ctx);
  if (t->saved != t->save_inline)
    free(t->saved);
  cloop__slab_give(&t->loop->coro->task_slab, t);
}

/* Drops one reference. The last one frees the task -- unless it failed
   and nobody read its error: then it stays for the report at close. */
static void task_unref(cloop_task *t) {
  if (--t->refs > 0)
    return;
  if (t->future.state == CLOOP_FAILED && !t->future.retrieved)
    return;
  cloop__task_free(t);
}

/* A private stack goes back to the pool; the shared one just has no
   owner whose frames need saving. */
void cloop__task_release_stack(cloop_task *t) {
  struct cloop__coro *c = t->loop->coro;
  if (!t->shared)
    cloop__stack_give(&c->stacks, t->ctx.stack_lo);
  else if (c->shared_owner == t)
    c->shared_owner = NULL;
  if (t->saved != t->save_inline)
    free(t->saved);
  t->saved = t->save_inline;
  t->saved_len = 0;
  t->saved_cap = CLOOP__SAVE_INLINE;
}

/* On the loop's stack, right after the task's last switch. */
void cloop__task_finish(cloop_task *t) {
  cloop__task_release_stack(t);
  t->loop->coro->live_tasks--;
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
  struct cloop__coro *c = loop->coro;
  cloop_stack_mode mode = opts && opts->stack ? opts->stack : c->task_stack;
  cloop_task *t = cloop__slab_alloc(&c->task_slab); /* zeroed */
  if (!t)
    return -ENOMEM;
  t->saved = t->save_inline;
  t->saved_cap = CLOOP__SAVE_INLINE;
  c->tasks_spawned++;
  t->id = c->tasks_spawned;
  if (mode == CLOOP_STACK_SHARED) {
    /* Its context is made on the shared stack when it first runs. */
    if (!c->shared_lo && !(c->shared_lo = cloop__stack_take(&c->stacks))) {
      cloop__slab_give(&c->task_slab, t);
      return -ENOMEM;
    }
    t->shared = 1;
  } else {
    char *stack = cloop__stack_take(&c->stacks);
    if (!stack) {
      cloop__slab_give(&c->task_slab, t);
      return -ENOMEM;
    }
    if (cloop__ctx_make(&t->ctx, c->switch_mode, stack, c->stacks.size,
                        task_entry, t) < 0) {
      cloop__stack_give(&c->stacks, stack);
      cloop__slab_give(&c->task_slab, t);
      return -ENOMEM;
    }
    t->ctx.name = t->name; /* for the overflow report */
    t->ctx.id = t->id;
  }
  if (c->live_tasks == 0)
    cloop__overflow_guard_init(); /* cheap after the first time */
  cloop_future_init(&t->future, loop);
  t->future.is_task = 1;
  cloop_handle_init(&t->step, cloop__task_step, t);
  cloop_timer_init(&t->sleep_timer, cloop__task_step, t);
  cloop_timer_init(&t->deadline_timer, cloop__deadline_passed, t);
  t->scope_min = UINT64_MAX;
  t->loop = loop;
  t->fn = fn;
  t->arg = arg;
  t->refs = out ? 2 : 1;
  if (opts && opts->name) { /* a default name is made when first asked for */
    size_t len = strnlen(opts->name, sizeof t->name - 1);
    memcpy(t->name, opts->name, len);
    t->name[len] = 0;
  }
  list_push(&c->tasks, &t->node);
  c->live_tasks++;
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

cloop_task *cloop_current_task(void) { return cloop__running_task(); }

cloop_loop *cloop_task_loop(const cloop_task *t) { return t->loop; }

void cloop_task_set_user(cloop_task *t, void *user) { t->user = user; }

void *cloop_current_task_user(void) {
  cloop_task *t = cloop__running_task();
  return t ? t->user : NULL;
}

const char *cloop_task_name(const cloop_task *ct) {
  cloop_task *t = (cloop_task *)ct; /* the name is made once, on demand */
  if (!t->name[0])
    snprintf(t->name, sizeof t->name, "task-%llu", (unsigned long long)t->id);
  return t->name;
}

/* ---- cancellation ------------------------------------------------------- */

/* Wakes a parked task early: takes its step handle back from where it is
   parked and queues it. The task then finds why in cancel_pending or
   deadline_hit. */
void cloop__task_interrupt(cloop_task *t) {
  switch (t->park) {
  case PARK_FUTURE:
    if (t->step.link.next)
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
  if (!t->shielded) /* a shielded wait goes on; its exit shows the cancel */
    cloop__task_interrupt(t);
  return 1;
}

/* Why an await must return now: 0, -ECANCELED (consumed) or -ETIMEDOUT. */
static inline int interruption(cloop_task *t) {
  if (t->cancel_pending && !t->shielded) { /* a shield keeps it for later */
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
    if (cloop__on_shared_stack(t, f))
      cloop__misuse("task '%s' runs on the shared stack and awaits a future "
                    "on it, which moves while it is parked (see "
                    "CLOOP_STACK_SHARED)", cloop_task_name(t));
    t->park = PARK_FUTURE;
    t->parked_on = f;
    list_push(&f->waiters, &t->step.link);
    suspend(t);
    t->park = PARK_NONE;
    t->parked_on = NULL;
  }
}

/* Reads a complete future's outcome: 0 and its value, or its error. */
int cloop__outcome(cloop_future *f, intptr_t *value) {
  f->retrieved = 1;
  if (f->state == CLOOP_DONE) {
    if (value)
      *value = f->value;
    return 0;
  }
  return f->error;
}

int cloop_await(cloop_future *f, intptr_t *value) {
  cloop_task *t = cloop__task_or_abort("cloop_await");
  int r = wait_for(t, f, 0);
  return r ? r : cloop__outcome(f, value);
}

int cloop__await_quiet(cloop_future *f) {
  cloop_task *t = cloop__task_or_abort("cloop__await_quiet");
  wait_for(t, f, 1);
  return cloop__outcome(f, NULL);
}

intptr_t cloop_task_join(cloop_task *other) {
  intptr_t value = 0;
  int r = cloop_await(&other->future, &value);
  return r ? r : value;
}

int cloop_sleep_until(uint64_t deadline_ns) {
  cloop_task *t = cloop__task_or_abort("cloop_sleep");
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
  cloop_task *t = cloop__task_or_abort("cloop_sleep");
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
  cloop_task *t = cloop__task_or_abort("cloop_gather");
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
    int err = cloop__outcome(futures[i], &value);
    if (results)
      results[i] = err ? err : value;
    if (err && !first_error)
      first_error = err;
  }
  return interrupted ? interrupted : first_error;
}
