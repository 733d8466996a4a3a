/* task.h -- the coroutine level's internals: a loop's coroutine state, the
 * layout of a task, and what the files of coro/ share about tasks. Also
 * included by loop/loop.c for the one resume shortcut. Internal. */
#ifndef CLOOP_TASK_H
#define CLOOP_TASK_H

#include "coro/coro.h"
#include "coro/stack.h"
#include "loop/list.h"
#include "loop/loop.h"

/* The coroutine level's state of one loop (loop.h's hook; runtime.c sets
   it up and tears it down). */
struct cloop__coro {
  cloop_switch switch_mode;
  cloop__ctx main_ctx;          /* the loop's own stack, while a task runs */
  struct cloop_task *current;   /* the task running, or NULL */
  cloop_link tasks;             /* every task not yet freed */
  size_t live_tasks;            /* tasks not finished */
  uint64_t tasks_spawned;       /* for default names */
  cloop__stack_pool stacks;
  cloop__slab_pool task_slab;   /* struct cloop_task + its inline save area */
  cloop__slab_pool net_ops;     /* net.c's operation objects */
  cloop_stack_mode task_stack;  /* tasks' default: PRIVATE or SHARED */
  char *shared_lo;              /* the shared stack, from the pool */
  struct cloop_task *shared_owner; /* whose frames are on it now */
  cloop_unretrieved_fn unretrieved;
  void *unretrieved_arg;
  uint8_t closing;              /* close_tasks has begun: remote spawns are refused */
};

/* Where a suspended task is parked; what cancelling it must undo. */
enum {
  PARK_NONE = 0, /* running, or queued to run */
  PARK_FUTURE,   /* its step handle waits in a future's waiters */
  PARK_SLEEP,    /* its sleep timer is pending */
  PARK_YIELD,    /* its step handle is queued: sleep(0) */
};

/* A task's place in a sync primitive's FIFO list (sync.c): a cloop_waiter
   whose callback completes `done`, which the task awaits. A task waits for
   one thing at a time, so the record lives in the task: nothing the loop
   touches is on a (possibly shared, moving) task stack. */
struct cloop__task_waiter {
  cloop_waiter w;    /* w.arg is the task */
  cloop_future done; /* completed by the waker: the turn is handed over */
};

struct cloop_task {
  cloop_future future;     /* first: the task's result */
  cloop_handle step;       /* runs task_step: switch into the task */
  cloop__ctx ctx;
  cloop_loop *loop;
  cloop_task_fn fn;
  void *arg;
  intptr_t result;         /* what fn returned */
  cloop_timer sleep_timer; /* cloop_sleep's; its callback is task_step too */
  cloop_future *parked_on; /* PARK_FUTURE */
  cloop_deadline *deadlines; /* innermost deadline scope */
  cloop_timer deadline_timer; /* armed at scope_min */
  uint64_t scope_min;      /* earliest deadline of the scopes entered */
  uint64_t deadline_hit;   /* latest deadline seen to pass, 0 if none */
  uint8_t park;
  uint8_t cancel_pending;  /* the next await returns -ECANCELED */
  uint8_t finished;        /* fn returned; the stack is back in the pool */
  uint8_t closing;         /* cancelled by the loop's close */
  uint8_t shared;          /* runs on the loop's shared stack */
  uint8_t always_run;      /* its body runs even if cancelled before */
  uint8_t started;         /* a shared task's context exists */
  uint8_t shielded;        /* depth of shield scopes (deadline.c) */
  char *saved;             /* shared: its frames while another owns the
                              stack; save_inline, or the heap if larger */
  size_t saved_len, saved_cap;
  int refs;                /* the caller's reference + the running task's */
  cloop_link node;         /* in the loop's list of tasks not yet freed */
  struct cloop__task_waiter waiter; /* sync.c */
  uint64_t id;             /* spawn order, for the default name */
  char name[32];           /* "" until cloop_task_name makes "task-<id>" */
  void *user;              /* cloop_task_set_user's word, NULL until set */
  char save_inline[];      /* CLOOP__SAVE_INLINE bytes, in the same slab slot */
};

/* A shallow shared-stack task parks with about 128 bytes in use; this much
   rides in the task's own slot, so saving it needs no allocation. */
#define CLOOP__SAVE_INLINE 192

/* The loop's task slab holds objects of this size. */
#define CLOOP__TASK_SLOT (sizeof(struct cloop_task) + CLOOP__SAVE_INLINE)

/* The task running on this thread, or NULL: the container of the running
   context (stack.h), which only tasks set. */
static inline struct cloop_task *cloop__running_task(void) {
  cloop__ctx *c = cloop__running_ctx;
  return c ? CLOOP__CONTAINER(c, struct cloop_task, ctx) : NULL;
}

/* The task running now, or a stop naming fn: every call that waits must
   run in a task. */
static inline struct cloop_task *cloop__task_or_abort(const char *fn) {
  struct cloop_task *t = cloop__running_task();
  if (__builtin_expect(!t, 0))
    cloop__misuse("%s called outside a task (on the loop's own stack or "
                  "another thread)", fn);
  return t;
}

/* Whether p lies on the loop's shared stack while t runs there: such an
   address moves while t is parked. */
static inline int cloop__on_shared_stack(const struct cloop_task *t,
                                         const void *p) {
  const struct cloop__coro *c = t->loop->coro;
  return t->shared && (const char *)p >= c->shared_lo &&
         (const char *)p < c->shared_lo + c->stacks.size;
}

/* The step handle's function: resumes the task (asyncio's Task.__step). */
void cloop__task_step(void *task);
/* The end of a step whose task has finished (task.c). */
void cloop__task_finish(struct cloop_task *t);
/* Makes the shared stack t's (task.c). */
void cloop__shared_swap_in(cloop_loop *loop, struct cloop_task *t);

/* Switches from the loop's stack into t until it parks or finishes. Inline
   so that the loop's batch can resume a task from its own frame (loop.c,
   where the gain is measured). */
static inline void cloop__task_resume(cloop_loop *loop, struct cloop_task *t) {
  struct cloop__coro *c = loop->coro;
  if (t->shared && c->shared_owner != t)
    cloop__shared_swap_in(loop, t);
  c->current = t;
  cloop__running_ctx = &t->ctx;
  cloop__ctx_switch(&c->main_ctx, &t->ctx, c->switch_mode);
  cloop__running_ctx = NULL;
  c->current = NULL;
  if (t->finished)
    cloop__task_finish(t);
}

/* Why an await of the running task t must return at once: 0, -ECANCELED
   (consumed) or -ETIMEDOUT (task.c). */
int cloop__interruption(struct cloop_task *t);

/* Puts back a cancellation that an await consumed but did not act on
   (net.c: the operation finished first and its result is returned), so
   the task's next await sees it. */
static inline void cloop__keep_cancel(struct cloop_task *t) {
  t->cancel_pending = 1;
}

/* In a task: parks until f is complete, ignoring cancellation and
   deadlines (they stay pending for the next await); returns 0 or f's error
   (task.c). For undoing an operation after an interrupted await (net.c). */
int cloop__await_quiet(cloop_future *f);

/* Reads a complete future's outcome: 0 and its value, or its error (task.c). */
int cloop__outcome(cloop_future *f, intptr_t *value);

/* Completes any future, a task's included (future.c). */
int cloop__future_complete(cloop_future *f, int state, intptr_t value, int err);

/* Wakes a parked task early, without a reason of its own: it finds why in
   cancel_pending or deadline_hit (task.c, for deadline.c). */
void cloop__task_interrupt(struct cloop_task *t);

/* The deadline timer's callback (deadline.c). */
void cloop__deadline_passed(void *task);

/* Frees a task's memory: out of the loop's list, back to the slab (task.c). */
void cloop__task_free(struct cloop_task *t);
/* Gives a task's stack back (task.c). */
void cloop__task_release_stack(struct cloop_task *t);

#endif
