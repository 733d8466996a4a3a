/* offload.c -- asyncio's to_thread for tasks: a blocking function run on
 * the loop's work pool (loop/pool.c) while only the calling task waits.
 *
 * The request lives on the heap, not on the task's stack: a task that is
 * cancelled or times out stops waiting at once, and the request must
 * outlive it. It is then abandoned (cloop_work_abandon): a function not yet
 * started never runs; one that is running finishes on its thread, and its
 * result is dropped there with the request. */
#include <errno.h>
#include <stdlib.h>

#include "coro/task.h"

typedef struct offload {
  cloop_work work;
  cloop_future done; /* completed on the loop with fn's result */
  cloop_task_fn fn;
  void *arg;
  intptr_t result;
} offload;

static void offload_run(cloop_work *w) {
  offload *o = w->data;
  o->result = o->fn(o->arg);
}

static void offload_done(cloop_work *w) {
  offload *o = w->data;
  cloop_future_set_result(&o->done, 0);
}

static void offload_drop(cloop_work *w) {
  free(w->data);
}

intptr_t cloop_to_thread(cloop_task_fn fn, void *arg) {
  cloop_task *t = cloop__task_or_abort("cloop_to_thread");
  int r = cloop__interruption(t);
  if (r)
    return r;
  if (!fn)
    return -EINVAL;
  offload *o = calloc(1, sizeof *o);
  if (!o)
    return -ENOMEM;
  o->fn = fn;
  o->arg = arg;
  cloop_future_init(&o->done, t->loop);
  r = cloop_queue_work(t->loop, &o->work, offload_run, offload_done, o);
  if (r < 0) {
    free(o);
    return r;
  }
  r = cloop_await(&o->done, NULL);
  if (r < 0) {
    cloop_work_abandon(&o->work, offload_drop); /* it frees o */
    return r;
  }
  intptr_t result = o->result;
  free(o);
  return result;
}
