/* runtime.c -- the coroutine level's state of a loop (loop.h's hook): set
 * up with the loop, and torn down when it closes -- asyncio.run's ending:
 * the live tasks are cancelled and run until they have unwound, failures
 * nobody retrieved are reported, and every task is freed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "coro/task.h"
#include "loop/list.h"

/* The size of net.c's per-call operation object. */
extern const size_t cloop__net_op_size;

int cloop__coro_open(cloop_loop *loop, const cloop_options *opts) {
  cloop_switch switch_mode;
  int r = cloop__switch_resolve(opts ? opts->switch_mode : CLOOP_SWITCH_AUTO,
                                &switch_mode);
  if (r < 0)
    return r;
  size_t stack_size = opts && opts->stack_size ? opts->stack_size
                                                : CLOOP_STACK_DEFAULT;
  if (stack_size < 16384)
    return cloop__bad_setting(CLOOP_EBADOPTION, "cloop_options.stack_size is "
                              "%zu bytes: the least is 16384 (16 KiB)", stack_size);
  if (opts && opts->task_stack != CLOOP_STACK_DEFAULT_MODE &&
      opts->task_stack != CLOOP_STACK_PRIVATE && opts->task_stack != CLOOP_STACK_SHARED)
    return cloop__bad_setting(CLOOP_EBADOPTION, "cloop_options.task_stack is %d: "
                              "expected CLOOP_STACK_DEFAULT_MODE, _PRIVATE or _SHARED",
                              (int)opts->task_stack);
  struct cloop__coro *c = calloc(1, sizeof *c);
  if (!c)
    return -ENOMEM;
  c->switch_mode = switch_mode;
  c->task_stack = opts && opts->task_stack == CLOOP_STACK_SHARED
                      ? CLOOP_STACK_SHARED : CLOOP_STACK_PRIVATE;
  list_init(&c->tasks);
  cloop__stack_pool_init(&c->stacks, stack_size);
  cloop__slab_init(&c->task_slab, CLOOP__TASK_SLOT);
  cloop__slab_init(&c->net_ops, cloop__net_op_size);
  loop->coro = c;
  return 0;
}

static void report_unretrieved(cloop_task *t, int err, void *arg) {
  (void)arg;
  fprintf(stderr, "cloop: task '%s' failed with %d (%s) and nobody "
                  "retrieved its error\n", cloop_task_name(t), err, cloop_strerror(err));
}

static cloop_task *task_of(cloop_link *l) {
  return CLOOP__CONTAINER(l, cloop_task, node);
}

/* asyncio.run's ending: cancel each live task once and run the loop until
   they have unwound. A task spawned while others unwind is cancelled in
   the next round. Newest first, as they were spawned backwards. */
static void close_tasks(cloop_loop *loop, struct cloop__coro *c) {
  if (c->current)
    cloop__misuse("closing a loop from inside its task '%s'",
                  cloop_task_name(c->current));
  loop->running = 1;
  c->closing = 1;
  while (c->live_tasks) {
    for (cloop_link *l = c->tasks.prev; l != &c->tasks; l = l->prev) {
      cloop_task *t = task_of(l);
      if (!t->finished && !t->closing) {
        t->closing = 1;
        cloop_task_cancel(t);
      }
    }
    if (cloop__iterate(loop, -1) <= 0)
      break; /* what is left is parked on something nothing will complete */
  }
  loop->running = 0;
  cloop_unretrieved_fn hook = c->unretrieved ? c->unretrieved : report_unretrieved;
  while (!list_empty(&c->tasks)) {
    cloop_task *t = task_of(c->tasks.prev);
    if (!t->finished) {
      fprintf(stderr, "cloop: task '%s' was still parked after being "
                      "cancelled; its stack is dropped\n", cloop_task_name(t));
      cloop__task_release_stack(t);
      c->live_tasks--;
      if (t->step.link.next)
        cloop_handle_cancel(loop, &t->step);
      cloop_timer_cancel(loop, &t->sleep_timer);
      cloop_timer_cancel(loop, &t->deadline_timer);
    } else if (t->future.state == CLOOP_FAILED && !t->future.retrieved) {
      hook(t, t->future.error, c->unretrieved_arg);
    }
    cloop__task_free(t);
  }
}

void cloop__coro_close(cloop_loop *loop, int free_state) {
  struct cloop__coro *c = loop->coro;
  if (!c)
    return;
  close_tasks(loop, c);
  if (!free_state)
    return;
  cloop__stack_pool_free(&c->stacks);
  cloop__slab_free(&c->task_slab);
  cloop__slab_free(&c->net_ops);
  cloop__ctx_free(&c->main_ctx);
  free(c);
  loop->coro = NULL;
}

void cloop_set_unretrieved_hook(cloop_loop *loop, cloop_unretrieved_fn fn,
                                void *arg) {
  CLOOP__CHECK(loop, "cloop_set_unretrieved_hook");
  loop->coro->unretrieved = fn;
  loop->coro->unretrieved_arg = arg;
}

cloop_switch cloop_loop_switch(const cloop_loop *loop) {
  return loop->coro->switch_mode;
}
