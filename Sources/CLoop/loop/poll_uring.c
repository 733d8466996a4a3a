/* poll_uring.c -- the io_uring backend (liburing): ring set-up, fd watchers
 * as multishot polls, and the poll itself; the I/O operations are
 * uring_ops.c's. docs/io_uring.md explains the design; the contract in
 * short:
 *
 * - A watched fd has one multishot IORING_OP_POLL_ADD for the union of its
 *   directions, under a generation (in user_data) bumped on every change;
 *   a completion of an old generation is dropped (Go's fdseq).
 * - Level-triggered like epoll: every fd reported is re-checked at the next
 *   poll (its poll updated in place, which posts again if still ready).
 * - SQEs are queued as calls come and sent with the wait in one
 *   io_uring_enter per poll(); loop->poll_pending keeps the loop from
 *   skipping the poll while any wait.
 * - watch() refuses regular files, directories and block devices (-EPERM,
 *   as epoll_ctl does); an fd closed while watched keeps its file until the
 *   watcher stops.
 * - Needs Linux 5.19 (SUBMIT_ALL | COOP_TASKRUN), takes SINGLE_ISSUER and
 *   DEFER_TASKRUN when there, and registers the ring fd; the I/O operations need a synchronous cancel (6.0) and are left
 *   to io.c's readiness path without one. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loop/uring.h"

#define RECHECK_ROUNDS 3          /* extra rounds per poll, at most */
#define DEFER_BATCH 16            /* this many completions in a round: the
                                     kernel may have held some back */

static unsigned poll_events(int mask) {
  return (mask & CLOOP_READABLE ? POLLIN : 0u) |
         (mask & CLOOP_WRITABLE ? POLLOUT : 0u);
}


/* ---- set-up ------------------------------------------------------------ */

/* The opcodes this backend uses, its I/O operations included. */
static const int needed_ops[] = {
    IORING_OP_POLL_ADD, IORING_OP_POLL_REMOVE, IORING_OP_ASYNC_CANCEL,
    IORING_OP_READ,     IORING_OP_ACCEPT,      IORING_OP_CONNECT,
    IORING_OP_RECV,     IORING_OP_SEND,        IORING_OP_RECVMSG,
    IORING_OP_SENDMSG,
};

static int check_ops(struct io_uring *ring) {
  struct io_uring_probe *probe = io_uring_get_probe_ring(ring);
  if (!probe)
    return -ENOSYS;
  int r = 0;
  for (size_t i = 0; i < sizeof needed_ops / sizeof needed_ops[0]; i++)
    if (!io_uring_opcode_supported(probe, needed_ops[i]))
      r = -ENOSYS;
  io_uring_free_probe(probe);
  return r;
}

/* The ring's set-up tiers, best first; each is refused with EINVAL by
   kernels older than it. Tier 1, DEFER_TASKRUN (6.1): the kernel runs
   completions' task work only when the loop asks (IORING_ENTER_GETEVENTS,
   which every poll does), never by interrupting it. Tiers 2 and 3,
   COOP_TASKRUN (5.19): completions arriving while the loop runs callbacks
   wait for its next system call. CLOOP_URING_TIER=2 or 3 starts lower
   (the tests' lower tiers). */
static const struct {
  unsigned flags;
  const char *name;
} tiers[] = {
    {IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER |
         IORING_SETUP_DEFER_TASKRUN,
     "SINGLE_ISSUER|DEFER_TASKRUN"},
    {IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
         IORING_SETUP_SINGLE_ISSUER,
     "SINGLE_ISSUER|COOP_TASKRUN"},
    {IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN"},
};
#define NTIERS (int)(sizeof tiers / sizeof tiers[0])

/* Sets up the ring with the best tier the kernel takes; *tier is its index. */
static int setup_ring(struct io_uring *ring, int *tier) {
  int first = 0;
  const char *env = getenv("CLOOP_URING_TIER");
  if (env && env[0] >= '1' && env[0] <= '0' + NTIERS && !env[1])
    first = env[0] - '1';
  int r = -EINVAL;
  for (int i = first; i < NTIERS && r == -EINVAL; i++) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = tiers[i].flags | IORING_SETUP_CQSIZE;
    p.cq_entries = CQ_ENTRIES;
    r = io_uring_queue_init_params(SQ_ENTRIES, ring, &p);
    *tier = i;
  }
  if (r < 0)
    return r == -EINVAL ? -ENOSYS : r;
  const unsigned need = IORING_FEAT_NODROP | IORING_FEAT_EXT_ARG |
                        IORING_FEAT_FAST_POLL | IORING_FEAT_CQE_SKIP;
  r = (ring->features & need) == need ? check_ops(ring) : -ENOSYS;
  if (r < 0)
    io_uring_queue_exit(ring);
  return r;
}

static int ur_init(cloop_loop *loop) {
  struct cloop__uring *u = calloc(1, sizeof *u);
  if (!u)
    return -ENOMEM;
  int r = setup_ring(&u->ring, &u->tier);
  if (r < 0) {
    free(u);
    return r;
  }
  /* The ring fd registered: io_uring_enter then skips the fd lookup (and
     its reference count) on every call. A failure only costs that. */
  u->ring_fd_registered = io_uring_register_ring_fd(&u->ring) == 1;
  /* Blocking: the read on the ring waits in the kernel, not in a retry. */
  u->wakefd = eventfd(0, EFD_CLOEXEC);
  if (u->wakefd < 0) {
    r = -errno;
    io_uring_queue_exit(&u->ring);
    free(u);
    return r;
  }
  u->op_free = NO_SLOT;
  /* Without a synchronous cancel the operations cannot keep their promise
     (uring_ops.c): io.c then runs them on the readiness path. */
  loop->io = cloop__uring_has_sync_cancel(&u->ring) ? &cloop__uring_io_ops : NULL;
  cloop__uring_send_zc_init(u);
  U = u;
  return 0;
}

static void ur_close(cloop_loop *loop) {
  struct cloop__uring *u = U;
  cloop__uring_ops_close(loop);
  cloop__uring_files_close(loop);
  cloop__uring_streams_close(loop);
  io_uring_queue_exit(&u->ring); /* cancels every request still in it */
  cloop__uring_bufs_free(u);
  free(u->ops);
  close(u->wakefd);
  free(u->slots);
  free(u->hot);
  free(u->again);
  free(u);
  U = NULL;
  loop->io = NULL;
}

/* ---- submissions ------------------------------------------------------- */

int cloop__uring_reserve(struct cloop__uring *u, unsigned n) {
  if (io_uring_sq_space_left(&u->ring) >= n)
    return 0;
  u->epoch++;
  int r = io_uring_submit(&u->ring);
  if (r < 0)
    return r;
  return io_uring_sq_space_left(&u->ring) >= n ? 0 : -EBUSY;
}

/* Queues a multishot poll for fd under a new generation (room reserved). */
static void queue_arm(cloop_loop *loop, int fd, int mask) {
  struct cloop__uring *u = U;
  slot *s = &u->slots[fd];
  struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
  s->gen = NEXT_GEN(s->gen);
  s->state = ARMED;
  s->arm_epoch = u->epoch;
  io_uring_prep_poll_multishot(sqe, fd, poll_events(mask));
  io_uring_sqe_set_data64(sqe, KEY(fd, s->gen));
  loop->poll_pending = 1;
}

/* Queues the cancel of fd's registration and retires its generation. */
static void queue_cancel(cloop_loop *loop, int fd) {
  struct cloop__uring *u = U;
  slot *s = &u->slots[fd];
  struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
  io_uring_prep_cancel64(sqe, KEY(fd, s->gen), 0);
  io_uring_sqe_set_data64(sqe, IGNORE_TAG);
  sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
  s->gen = NEXT_GEN(s->gen);
  s->state = IDLE;
  loop->poll_pending = 1;
}

/* Grows the slot table (and the lists with it) to hold fd. */
static int reserve_slot(struct cloop__uring *u, int fd) {
  if (fd < u->nslots)
    return 0;
  int n = u->nslots ? u->nslots : 64;
  while (n <= fd)
    n *= 2;
  slot *slots = realloc(u->slots, (size_t)n * sizeof *slots);
  if (!slots)
    return -ENOMEM;
  u->slots = slots;
  /* On failure the larger arrays are kept; nslots is not bumped. */
  int *hot = realloc(u->hot, (size_t)n * sizeof *hot);
  if (!hot)
    return -ENOMEM;
  u->hot = hot;
  int *again = realloc(u->again, (size_t)n * sizeof *again);
  if (!again)
    return -ENOMEM;
  u->again = again;
  memset(slots + u->nslots, 0, (size_t)(n - u->nslots) * sizeof *slots);
  u->nslots = n;
  return 0;
}

/* epoll_ctl refuses files that cannot be polled with EPERM; io_uring would
   report them ready forever. */
static int check_pollable(int fd) {
  struct stat st;
  if (fstat(fd, &st) < 0)
    return -errno;
  if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode))
    return -EPERM;
  return 0;
}

static int ur_watch(cloop_loop *loop, int fd, int old_mask, int new_mask) {
  struct cloop__uring *u = U;
  if (new_mask == 0) {
    if (fd < u->nslots && u->slots[fd].state != IDLE) {
      /* With no room even after a flush, the poll stays armed until the
         ring closes; the new generation still drops its completions. */
      if (cloop__uring_reserve(u, 1) == 0) {
        queue_cancel(loop, fd);
      } else {
        u->slots[fd].gen = NEXT_GEN(u->slots[fd].gen);
        u->slots[fd].state = IDLE;
      }
    }
    if (fd < u->nslots)
      u->slots[fd].mask = 0;
    return 0;
  }
  int r;
  if (old_mask == 0 && ((r = check_pollable(fd)) < 0 ||
                        (r = reserve_slot(u, fd)) < 0))
    return r;
  slot *s = &u->slots[fd];
  int cancel = s->state != IDLE;
  if ((r = cloop__uring_reserve(u, cancel ? 2 : 1)) < 0)
    return r;
  if (cancel)
    queue_cancel(loop, fd);
  queue_arm(loop, fd, new_mask);
  s->mask = (uint8_t)new_mask;
  return 0;
}

/* Queues a re-check of fd: its poll re-armed in place with the same mask,
   which posts at once if the file is ready. Only a failure is acknowledged,
   tagged with the fd and generation. */
static void queue_recheck(struct cloop__uring *u, int fd) {
  slot *s = &u->slots[fd];
  if (s->state != ARMED || s->arm_epoch == u->epoch || cloop__uring_reserve(u, 1) < 0)
    return; /* an add still unsent will check the file itself */
  struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
  uint64_t key = KEY(fd, s->gen);
  /* new_user_data must be 0 without IORING_POLL_UPDATE_USER_DATA */
  io_uring_prep_poll_update(sqe, key, 0, poll_events(s->mask),
                            IORING_POLL_UPDATE_EVENTS | IORING_POLL_ADD_MULTI);
  io_uring_sqe_set_data64(sqe, KEY((uint32_t)fd | RECHECK_BIT, s->gen));
  sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

/* Queues the level-triggered re-checks of the fds the last poll reported,
   and the eventfd read if the last wake-up consumed it. */
static void queue_rechecks(cloop_loop *loop) {
  struct cloop__uring *u = U;
  for (int i = 0; i < u->nhot; i++) {
    u->slots[u->hot[i]].hot = 0;
    queue_recheck(u, u->hot[i]);
  }
  u->nhot = 0;
  if (!u->wake_armed && cloop__uring_reserve(u, 1) == 0) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    io_uring_prep_read(sqe, u->wakefd, &u->wake_buf, sizeof u->wake_buf, 0);
    io_uring_sqe_set_data64(sqe, WAKE_TAG);
    u->wake_armed = 1;
  }
}


/* ---- completions ------------------------------------------------------- */

/* Handles one completion; returns 1 if it reported an fd. */
static int complete(cloop_loop *loop, uint64_t data, int res, unsigned flags) {
  struct cloop__uring *u = U;
  if (data & OP_BIT)
    return (uint32_t)data & STREAM_BIT
               ? cloop__uring_stream_completed(loop, data, res, flags)
           : (uint32_t)data & FILE_BIT
               ? cloop__uring_file_completed(loop, data, res)
               : cloop__uring_op_completed(loop, data, res, flags);
  uint32_t fd = (uint32_t)data, gen = (uint32_t)(data >> 32);
  if (fd == TAG_FD) {
    if (data == WAKE_TAG) {
      u->wake_armed = 0; /* re-queued by the next poll */
      u->woke = 1;
    }
    return 0;
  }
  uint32_t recheck = fd & RECHECK_BIT;
  fd &= ~RECHECK_BIT;
  if (fd >= (uint32_t)u->nslots)
    return 0;
  slot *s = &u->slots[fd];
  if (s->gen != gen || s->state != ARMED)
    return 0; /* stale: an old registration, or an fd closed and reused */
  if (recheck) {
    /* A wake-up was in flight; ENOENT: the poll ended, its CQE re-arms. */
    if (res == -EALREADY && !s->again) {
      s->again = 1;
      u->again[u->nagain++] = (int)fd;
    }
    return 0;
  }
  int mask;
  if (res >= 0) {
    mask = (res & (POLLIN | POLLERR | POLLHUP) ? CLOOP_READABLE : 0) |
           (res & (POLLOUT | POLLERR | POLLHUP) ? CLOOP_WRITABLE : 0);
    if (!s->hot) {
      s->hot = 1;
      u->hot[u->nhot++] = (int)fd;
    }
    /* The multishot ended (e.g. the CQ was full): arm it again. */
    if (!(flags & IORING_CQE_F_MORE) && cloop__uring_reserve(u, 1) == 0)
      queue_arm(loop, (int)fd, s->mask);
  } else if (res == -ECANCELED) {
    /* Cancelled by the kernel, not by us (ours retire the generation). */
    if (cloop__uring_reserve(u, 1) == 0)
      queue_arm(loop, (int)fd, s->mask);
    return 0;
  } else {
    /* Refused (the fd was closed before the batch went out): report it
       once, like EPOLLERR, and let the watcher's own call meet the error. */
    s->state = DEAD;
    mask = CLOOP_READABLE | CLOOP_WRITABLE;
  }
  if (mask)
    cloop__fd_ready(loop, (int)fd, mask);
  return mask != 0;
}

/* Drains the CQ. Entries are copied out and the CQ advanced before they
   are handled, so a flush from a handler may post more safely. */
int cloop__uring_reap(cloop_loop *loop) {
  struct cloop__uring *u = U;
  struct io_uring_cqe *cqes[64];
  int n = 0;
  for (int rounds = 0; rounds < 64; rounds++) {
    unsigned got = io_uring_peek_batch_cqe(&u->ring, cqes, 64);
    if (got == 0)
      break;
    struct { uint64_t data; int res; unsigned flags; } c[64];
    for (unsigned i = 0; i < got; i++) {
      c[i].data = cqes[i]->user_data;
      c[i].res = cqes[i]->res;
      c[i].flags = cqes[i]->flags;
    }
    io_uring_cq_advance(&u->ring, got);
    for (unsigned i = 0; i < got; i++)
      n += complete(loop, c[i].data, c[i].res, c[i].flags);
  }
  return n;
}

/* Sends the queued SQEs and waits up to timeout_ns for one CQE. Returns 0,
   or 1 if the wait ended without an event (timeout, signal), or -errno. */
static int submit_and_wait(struct cloop__uring *u, int64_t timeout_ns) {
  int r;
  u->epoch++;
  if (timeout_ns == 0) {
    r = io_uring_submit_and_get_events(&u->ring);
  } else {
    struct __kernel_timespec ts = {timeout_ns / 1000000000,
                                   timeout_ns % 1000000000};
    struct io_uring_cqe *cqe;
    r = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1,
                                         timeout_ns < 0 ? NULL : &ts, NULL);
  }
  /* ETIME: the timeout passed; EINTR: a signal; EBUSY/EAGAIN: the CQ is
     backed up, which reaping fixes. */
  if (r == -ETIME || r == -EINTR)
    return 1;
  return r < 0 && r != -EBUSY && r != -EAGAIN ? r : 0;
}

static int ur_poll(cloop_loop *loop, int64_t timeout_ns) {
  struct cloop__uring *u = U;
  queue_rechecks(loop);
  loop->poll_pending = 0;
  u->woke = 0;
  uint64_t deadline = timeout_ns > 0 ? cloop__clock_ns() + (uint64_t)timeout_ns : 0;
  int n = 0, r;
  for (;;) {
    if ((r = submit_and_wait(u, timeout_ns)) < 0)
      return r;
    n += cloop__uring_reap(loop);
    if (n || u->woke || r == 1 || timeout_ns == 0)
      break;
    /* Only acknowledgements and stale completions came: like epoll_wait,
       go on waiting for the time left. */
    if (timeout_ns > 0) {
      uint64_t now = cloop__clock_ns();
      if (now >= deadline)
        break;
      timeout_ns = (int64_t)(deadline - now);
    }
  }
  /* DEFER_TASKRUN: one io_uring_enter runs at most a batch of completions'
     task work (IO_LOCAL_TW_DEFAULT_MAX, 20 in recent kernels) and leaves
     the rest for the next. While a round brings that many, ask again at
     once, so that a poll reports what is ready, as epoll_wait would. */
  if (u->tier == 0) {
    int got = n;
    for (int round = 0; got >= DEFER_BATCH && round < 64; round++) {
      if ((r = submit_and_wait(u, 0)) < 0)
        return r;
      got = cloop__uring_reap(loop);
      n += got;
    }
  }
  /* Re-checks that met a wake-up in flight: that wake-up has posted by now,
     so the retry gets the poll and sees every direction. */
  for (int round = 0; u->nagain && round < RECHECK_ROUNDS; round++) {
    int nagain = u->nagain;
    u->nagain = 0;
    for (int i = 0; i < nagain; i++) {
      u->slots[u->again[i]].again = 0;
      queue_recheck(u, u->again[i]);
    }
    if ((r = submit_and_wait(u, 0)) < 0)
      return r;
    n += cloop__uring_reap(loop);
  }
  for (int i = 0; i < u->nagain; i++) { /* still racing: the next poll */
    slot *s = &u->slots[u->again[i]];
    s->again = 0;
    if (!s->hot) {
      s->hot = 1;
      u->hot[u->nhot++] = u->again[i];
    }
  }
  u->nagain = 0;
  cloop__uring_sq_taken(u);
  /* Operations in flight complete only through a poll: while there are
     any, the loop must not skip it (as with watchers, ready work must not
     starve I/O). */
  if (u->nlive)
    loop->poll_pending = 1;
  return n;
}


static void ur_wake(cloop_loop *loop) {
  uint64_t one = 1;
  while (write(U->wakefd, &one, sizeof one) < 0 && errno == EINTR)
    ;
}


/* "io_uring (TIER; registered ring fd; operations; stream receives)". */
static const char *ur_info(cloop_loop *loop) {
  struct cloop__uring *u = U;
  char zc[48] = "";
  if (loop->io && u->zc_min)
    snprintf(zc, sizeof zc, "; SEND_ZC from %zu bytes", u->zc_min);
  snprintf(u->info, sizeof u->info, "io_uring (%s%s%s%s%s)", tiers[u->tier].name,
           u->ring_fd_registered ? "; registered ring fd" : "",
           loop->io ? "; io_uring operations" : "; operations on readiness",
           !loop->io ? ""
           : u->br_state < 0 || u->multishot_broken ? "; no stream receives"
           : u->br_state > 0 ? "; stream receives (512 x 16 KiB buffers)"
                             : "; stream receives (buffers at the first receive)",
           zc);
  return u->info;
}

const cloop__poller_ops cloop__uring_ops = {
    .info = ur_info,
    .backend = CLOOP_BACKEND_URING,
    .init = ur_init,
    .close = ur_close,
    .watch = ur_watch,
    .poll = ur_poll,
    .wake = ur_wake,
};
