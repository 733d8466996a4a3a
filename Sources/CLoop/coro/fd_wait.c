/* fd_wait.c -- a task waits until an fd it owns is ready (asyncio's
 * add_reader / add_writer turned into an await), on a watcher of the
 * callback level (loop/watch.c). The watcher is registered for this one
 * wait and stopped when it ends: two epoll_ctl calls, or a poll request
 * and its removal on io_uring, per wait.
 *
 * The watcher and the task pointer live in an object from the loop's
 * net_ops slab (net.c's objects are larger: it asserts so), never on the
 * task's stack: a shared-stack task's stack holds other frames while it is
 * parked. So a wait allocates nothing in the steady state. The task parks
 * on its own waiter future, as signal_wait.c and process_wait.c do. */
#include <errno.h>

#include "coro/task.h"

typedef struct fd_wait {
  cloop_watcher watcher;
  cloop_task *task;
} fd_wait;

static void fd_ready(void *arg) {
  fd_wait *w = arg;
  /* Level-triggered: stop it now, or it fires again each iteration until
     the task has run. */
  cloop_unwatch(w->task->loop, &w->watcher);
  cloop_future_set_result(&w->task->waiter.done, 0);
}

int cloop_wait_fd(int fd, int dir) {
  cloop_task *t = cloop__task_or_abort("cloop_wait_fd");
  int r = cloop__interruption(t);
  if (r)
    return r;
  if (dir != CLOOP_READABLE && dir != CLOOP_WRITABLE)
    return -EINVAL;
  fd_wait *w = cloop__slab_alloc(&t->loop->coro->net_ops); /* zeroed */
  if (!w)
    return -ENOMEM;
  cloop_watcher_init(&w->watcher);
  w->task = t;
  cloop_future_init(&t->waiter.done, t->loop);
  r = cloop_watch(t->loop, &w->watcher, fd, dir, fd_ready, w);
  if (r == 0) {
    r = cloop_await(&t->waiter.done, NULL);
    cloop_unwatch(t->loop, &w->watcher); /* interrupted: still watching */
  }
  cloop__slab_give(&t->loop->coro->net_ops, w);
  return r;
}
