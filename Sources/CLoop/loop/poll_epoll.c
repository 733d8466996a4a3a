/* poll_epoll.c -- the epoll backend: level-triggered readiness, and an
 * eventfd in the same epoll set for wake-ups from other threads. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "loop/loop.h"

#define WAKE_TAG UINT64_MAX /* epoll data of the eventfd; fds use data.u64 = fd */
#define MAX_EVENTS 1024     /* per poll; the rest come in the next one */

#define EP (loop->poller.epoll)

static int ep_init(cloop_loop *loop) {
  EP.epfd = epoll_create1(EPOLL_CLOEXEC);
  if (EP.epfd < 0)
    return -errno;
  EP.wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  EP.events = malloc(MAX_EVENTS * sizeof(struct epoll_event));
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_TAG};
  int r = EP.wakefd < 0 ? -errno : !EP.events ? -ENOMEM : 0;
  if (r == 0 && epoll_ctl(EP.epfd, EPOLL_CTL_ADD, EP.wakefd, &ev) < 0)
    r = -errno;
  if (r < 0) {
    if (EP.wakefd >= 0)
      close(EP.wakefd);
    close(EP.epfd);
    free(EP.events);
    return r;
  }
  EP.nevents = MAX_EVENTS;
  return 0;
}

static void ep_close(cloop_loop *loop) {
  close(EP.wakefd);
  close(EP.epfd);
  free(EP.events);
}

static int ep_watch(cloop_loop *loop, int fd, int old_mask, int new_mask) {
  struct epoll_event ev = {
      .events = (new_mask & CLOOP_READABLE ? EPOLLIN : 0) |
                (new_mask & CLOOP_WRITABLE ? EPOLLOUT : 0),
      .data.u64 = (uint64_t)fd,
  };
  if (new_mask == 0) {
    epoll_ctl(EP.epfd, EPOLL_CTL_DEL, fd, &ev); /* the fd may be closed already */
    return 0;
  }
  int op = old_mask ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  if (epoll_ctl(EP.epfd, op, fd, &ev) == 0)
    return 0;
  /* The kernel dropped the fd when it was closed (ENOENT on MOD), or still
     holds a registration we had removed through a dup (EEXIST on ADD). */
  if (errno == ENOENT && op == EPOLL_CTL_MOD)
    op = EPOLL_CTL_ADD;
  else if (errno == EEXIST && op == EPOLL_CTL_ADD)
    op = EPOLL_CTL_MOD;
  else
    return -errno;
  return epoll_ctl(EP.epfd, op, fd, &ev) == 0 ? 0 : -errno;
}

/* epoll_pwait2 (Linux 5.11) takes nanoseconds; older kernels get
   epoll_wait with the timeout rounded up to whole milliseconds, so a timer
   is never polled past early. */
static int wait_events(cloop_loop *loop, int64_t timeout_ns) {
  static atomic_int no_pwait2; /* shared by the loops of all threads */
  struct epoll_event *events = EP.events;
  if (!atomic_load_explicit(&no_pwait2, memory_order_relaxed)) {
    struct timespec ts = {timeout_ns / 1000000000, timeout_ns % 1000000000};
    int n = epoll_pwait2(EP.epfd, events, EP.nevents, timeout_ns < 0 ? NULL : &ts, NULL);
    if (n >= 0 || errno != ENOSYS)
      return n;
    atomic_store_explicit(&no_pwait2, 1, memory_order_relaxed);
  }
  int ms = timeout_ns < 0 ? -1
         : timeout_ns >= (int64_t)INT_MAX * 1000000 ? INT_MAX
         : (int)((timeout_ns + 999999) / 1000000);
  return epoll_wait(EP.epfd, events, EP.nevents, ms);
}

static int ep_poll(cloop_loop *loop, int64_t timeout_ns) {
  int n = wait_events(loop, timeout_ns);
  if (n < 0)
    return errno == EINTR ? 0 : -errno;
  struct epoll_event *events = EP.events;
  for (int i = 0; i < n; i++) {
    if (events[i].data.u64 == WAKE_TAG) {
      uint64_t count;
      while (read(EP.wakefd, &count, sizeof count) < 0 && errno == EINTR)
        ;
      continue;
    }
    uint32_t ev = events[i].events;
    int mask = 0;
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
      mask |= CLOOP_READABLE;
    if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))
      mask |= CLOOP_WRITABLE;
    cloop__fd_ready(loop, (int)events[i].data.u64, mask);
  }
  return n;
}

static void ep_wake(cloop_loop *loop) {
  uint64_t one = 1;
  /* EAGAIN means the counter is already non-zero: the loop will wake. */
  while (write(EP.wakefd, &one, sizeof one) < 0 && errno == EINTR)
    ;
}

const cloop__poller_ops cloop__epoll_ops = {
    .backend = CLOOP_BACKEND_EPOLL,
    .init = ep_init,
    .close = ep_close,
    .watch = ep_watch,
    .poll = ep_poll,
    .wake = ep_wake,
};
