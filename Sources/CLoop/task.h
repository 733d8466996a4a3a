/* task.h -- the layout of a task, shared by task.c, future.c, coro.c (for
 * the overflow message) and loop.c (closing). Internal. */
#ifndef CLOOP_TASK_H
#define CLOOP_TASK_H

#include "coro.h"
#include "internal.h"

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
  char *saved;             /* shared: its frames while another owns the
                              stack; save_inline, or the heap if larger */
  size_t saved_len, saved_cap;
  int refs;                /* the caller's reference + the running task's */
  struct cloop_task *prev, *next; /* the loop's tasks not yet freed */
  struct cloop__task_waiter waiter; /* sync.c */
  uint64_t id;             /* spawn order, for the default name */
  char name[32];           /* "" until cloop_task_name makes "task-<id>" */
  char save_inline[];      /* CLOOP__SAVE_INLINE bytes, in the same slab slot */
};

/* A shallow shared-stack task parks with about 128 bytes in use; this much
   rides in the task's own slot, so saving it needs no allocation. */
#define CLOOP__SAVE_INLINE 192

/* The loop's task slab holds objects of this size. */
#define CLOOP__TASK_SLOT (sizeof(struct cloop_task) + CLOOP__SAVE_INLINE)

/* The step handle's function: resumes the task (asyncio's Task.__step). */
void cloop__task_step(void *task);
/* The end of a step whose task has finished (task.c). */
void cloop__task_finish(struct cloop_task *t);
/* Makes the shared stack t's (task.c). */
void cloop__shared_swap_in(cloop_loop *loop, struct cloop_task *t);

/* Switches from the loop's stack into t until it parks or finishes. Inline
   so that the loop's batch can resume a task from its own frame (loop.c):
   a task switch inside a called function costs the call, and the return
   after it, which the CPU mispredicts after every switch -- together about
   a quarter of an await. */
static inline void cloop__task_resume(cloop_loop *loop, struct cloop_task *t) {
  if (t->shared && loop->shared_owner != t)
    cloop__shared_swap_in(loop, t);
  loop->current = t;
  cloop__running = t;
  cloop__ctx_switch(&loop->main_ctx, &t->ctx, loop->switch_mode);
  cloop__running = NULL;
  loop->current = NULL;
  if (t->finished)
    cloop__task_finish(t);
}

/* Why an await of the running task t must return at once: 0, -ECANCELED
   (consumed) or -ETIMEDOUT (task.c). */
int cloop__interruption(struct cloop_task *t);

/* In a task: parks until f is complete, ignoring cancellation and
   deadlines (they stay pending for the next await); returns 0 or f's error
   (task.c). For undoing an operation after an interrupted await (net.c). */
int cloop__await_quiet(cloop_future *f);

/* Completes any future, a task's included (future.c). */
int cloop__future_complete(cloop_future *f, int state, intptr_t value, int err);

/* Loop close: cancels live tasks, runs until they unwind, reports failures
   never retrieved and frees every task (task.c). */
void cloop__tasks_close(cloop_loop *loop);

#endif
