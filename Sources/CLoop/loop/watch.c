/* watch.c -- fd watchers, asyncio's add_reader / add_writer.
 *
 * The loop keeps a table indexed by fd with at most one reader and one
 * writer each; the poller is told the union of the two directions. A ready
 * fd queues its watchers' handles, which then run like any other. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "loop/loop.h"
#include "loop/list.h"

void cloop_watcher_init(cloop_watcher *w) {
  memset(w, 0, sizeof *w);
  w->fd = -1;
}

static int slot_mask(const cloop__fd_slot *s) {
  return (s->reader ? CLOOP_READABLE : 0) | (s->writer ? CLOOP_WRITABLE : 0);
}

/* Grows the table to hold fd; doubling keeps this amortised O(1). */
int cloop__fd_reserve(cloop_loop *loop, int fd) {
  if (fd < loop->nfds)
    return 0;
  int n = loop->nfds ? loop->nfds : 64;
  while (n <= fd)
    n *= 2;
  cloop__fd_slot *fds = realloc(loop->fds, (size_t)n * sizeof *fds);
  if (!fds)
    return -ENOMEM;
  memset(fds + loop->nfds, 0, (size_t)(n - loop->nfds) * sizeof *fds);
  loop->fds = fds;
  loop->nfds = n;
  return 0;
}

int cloop_watch(cloop_loop *loop, cloop_watcher *w, int fd, int dir,
                cloop_fn fn, void *arg) {
  CLOOP__CHECK(loop, "cloop_watch");
  if (w->loop)
    cloop__misuse("cloop_watch: watcher %p is already active", (void *)w);
  if (dir != CLOOP_READABLE && dir != CLOOP_WRITABLE)
    return -EINVAL;
  if (fd < 0)
    return -EBADF;
  int r = cloop__fd_reserve(loop, fd);
  if (r < 0)
    return r;
  cloop__fd_slot *s = &loop->fds[fd];
  cloop_watcher **place = dir == CLOOP_READABLE ? &s->reader : &s->writer;
  if (*place)
    return -EEXIST;
  int old = slot_mask(s);
  r = loop->ops->watch(loop, fd, old, old | dir);
  if (r < 0)
    return r;
  *place = w;
  cloop_handle_init(&w->handle, fn, arg);
  w->loop = loop;
  w->fd = fd;
  w->dir = dir;
  loop->alive++;
  loop->nwatchers++;
  return 0;
}

int cloop_unwatch(cloop_loop *loop, cloop_watcher *w) {
  CLOOP__CHECK(loop, "cloop_unwatch");
  if (!w->loop)
    return 0;
  if (w->loop != loop)
    cloop__misuse("cloop_unwatch: watcher %p belongs to another loop", (void *)w);
  cloop__fd_slot *s = &loop->fds[w->fd];
  int old = slot_mask(s);
  if (w->dir == CLOOP_READABLE)
    s->reader = NULL;
  else
    s->writer = NULL;
  loop->ops->watch(loop, w->fd, old, slot_mask(s));
  if (w->handle.link.next)
    list_remove(&w->handle.link);
  w->loop = NULL;
  w->fd = -1;
  loop->alive--;
  loop->nwatchers--;
  return 1;
}

void cloop__fd_ready(cloop_loop *loop, int fd, int mask) {
  if (fd < 0 || fd >= loop->nfds)
    return;
  cloop__fd_slot *s = &loop->fds[fd];
  if ((mask & CLOOP_READABLE) && s->reader && !s->reader->handle.link.next)
    list_push(&loop->ready, &s->reader->handle.link);
  if ((mask & CLOOP_WRITABLE) && s->writer && !s->writer->handle.link.next)
    list_push(&loop->ready, &s->writer->handle.link);
}
