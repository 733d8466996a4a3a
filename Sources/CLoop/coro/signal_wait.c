/* signal_wait.c -- a task waits for a signal on a watcher of the callback
 * level (loop/signal.c). The watcher counts arrivals whether or not a task
 * waits, so a signal that comes between two waits is not lost: the next
 * wait returns at once with it. While a task waits, the watcher's handle
 * wakes the task instead of running its callback. */
#include <errno.h>

#include "coro/task.h"

static void woke(void *arg) {
  cloop_task *t = arg;
  cloop_future_set_result(&t->waiter.done, 0);
}

int cloop_signal_wait(cloop_signal *s) {
  cloop_task *t = cloop__task_or_abort("cloop_signal_wait");
  int r = cloop__interruption(t);
  if (r)
    return r;
  if (!s->loop)
    return -EINVAL; /* not started */
  if (s->loop != t->loop)
    cloop__misuse("task '%s' waits on a signal watcher of another loop",
                  cloop_task_name(t));
  if (cloop__on_shared_stack(t, s))
    cloop__misuse("task '%s' runs on the shared stack and waits on a signal "
                  "watcher on it (see CLOOP_STACK_SHARED)", cloop_task_name(t));
  if (s->count)
    return (int)cloop_signal_take(s);
  cloop_fn fn = s->handle.fn;
  void *arg = s->handle.arg;
  cloop_future_init(&t->waiter.done, t->loop);
  s->handle.fn = woke;
  s->handle.arg = t;
  r = cloop_await(&t->waiter.done, NULL);
  s->handle.fn = fn; /* an arrival queued meanwhile runs the callback */
  s->handle.arg = arg;
  if (r < 0)
    return r; /* what arrived stays counted for the next wait */
  return (int)cloop_signal_take(s);
}
