/* process_wait.c -- a task waits for a child to exit (loop/process.c): it
 * watches the process with a callback that completes a future the task
 * awaits. The future lives in the task (its waiter record), not on its
 * stack. */
#include <errno.h>

#include "coro/task.h"

static void exit_seen(cloop_process *p) {
  cloop_task *t = p->data;
  cloop_future_set_result(&t->waiter.done, 0);
}

int cloop_process_wait(cloop_process *p) {
  cloop_task *t = cloop__task_or_abort("cloop_process_wait");
  int r = cloop__interruption(t);
  if (r)
    return r;
  if (p->exited)
    return 0;
  if (!p->loop)
    return -EINVAL;
  if (p->loop != t->loop)
    cloop__misuse("task '%s' waits for a process of another loop",
                  cloop_task_name(t));
  cloop_future_init(&t->waiter.done, t->loop);
  r = cloop_process_watch(p, exit_seen, t);
  if (r == -ECHILD)
    return 0;
  if (r < 0)
    return r;
  r = cloop_await(&t->waiter.done, NULL);
  if (r < 0)
    cloop_process_unwatch(p); /* interrupted: it runs on, unwatched */
  return r;
}
