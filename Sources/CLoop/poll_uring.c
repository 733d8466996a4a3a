/* poll_uring.c -- the io_uring backend (liburing): fd watchers as multishot
 * polls, an eventfd read on the ring for wake-ups from other threads (the
 * read completing resets the counter: no read(2) per wake-up as on epoll;
 * the next poll() queues it again).
 *
 * Registrations. Each watched fd has one multishot IORING_OP_POLL_ADD for
 * the union of its directions. Its user_data is the fd (low 32 bits) and
 * the slot's generation (high 32 bits), bumped on every change: a mask
 * change is cancel + add under the next generation, an unwatch is a cancel
 * and a bump. A completion whose generation is not the slot's current one
 * -- an old registration's last event, its -ECANCELED, or one for an fd
 * that was closed and whose number now names another file -- is dropped
 * (Go's fdseq). Cancels are IORING_OP_ASYNC_CANCEL, not POLL_REMOVE: a
 * POLL_REMOVE fails with -EALREADY while a wake-up of the poll is in
 * flight and leaves it armed; a cancel always takes.
 *
 * Level-triggered, like epoll. A multishot poll posts on each wake-up of
 * the file, not while it stays ready: a socket that stays writable posts
 * once. So every fd that was reported is "hot", and the next poll() re-arms
 * its poll in place (IORING_OP_POLL_REMOVE with IORING_POLL_UPDATE_EVENTS,
 * same mask), which makes the kernel check the file again and post at once
 * if it is still ready. Cost: one SQE per reported fd per iteration, the
 * same as re-arming a one-shot poll; an fd that is not ready costs nothing.
 * The re-arm is dearer than epoll's own re-check (it leaves and re-joins
 * the file's wait queue): a token passed round 64 pipes took 1.6x epoll's
 * time per watcher callback in one run here, and 1.0x without the
 * re-check. The I/O operations below do not pay it.
 * An update that meets a wake-up in flight fails with -EALREADY, and that
 * wake-up posts only the directions it was for (a POLLIN wake-up of a
 * writable socket posts POLLIN): such an fd is checked again in a second
 * round (one more io_uring_enter, without waiting) within the same poll().
 *
 * Batching. SQEs are queued as watch() is called and sent with the wait in
 * one io_uring_enter per poll() (io_uring_submit_and_wait_timeout, which
 * passes the timeout in nanoseconds through IORING_ENTER_EXT_ARG, or
 * io_uring_submit_and_get_events for a zero timeout). A full SQ is flushed
 * early. loop->poll_pending tells the loop not to skip the poll while SQEs
 * wait. The acknowledgements of cancels and updates are skipped on success
 * (IOSQE_CQE_SKIP_SUCCESS) and carry a tag otherwise. A wait that reaps
 * only those, or stale completions, goes on waiting for the time left, as
 * epoll_wait would.
 *
 * Differences from epoll, inherent in io_uring: a poll holds a reference to
 * the file, so an fd closed while watched keeps its file (a pipe's other
 * end sees no EPIPE) until the watcher stops and the next poll() sends the
 * cancel; and io_uring polls any file,
 * so watch() refuses regular files, directories and block devices itself
 * with -EPERM, as epoll_ctl does (one fstat per new fd, where epoll pays
 * one epoll_ctl). A registration that fails in the kernel (the fd was
 * closed before the batch went out) reports its fd ready in both
 * directions once, so the watcher's own call meets the error.
 *
 * I/O operations (io.c's accept, connect, recv, send) are io_uring's own
 * requests: op_start queues the SQE (recv; send with MSG_NOSIGNAL; accept
 * with SOCK_NONBLOCK|SOCK_CLOEXEC into op->addr/addrlen; connect), sent
 * with the next poll's batch, and the request's CQE completes the op
 * (cloop__op_complete: the callback is queued). A socket that is not ready
 * is polled by the kernel itself (FAST_POLL) and the syscall done there:
 * no readiness event, no re-check, no second syscall from us. A send may
 * move fewer bytes than asked, as send(2) does (net.c's sendall loops).
 *
 * Slots. Each op in flight has a slot in a table of the ring's (index,
 * generation; a LIFO free list; doubled when full, never shrunk, so steady
 * state allocates nothing). Its user_data, kept in op->tag, is OP_BIT
 * (bit 63, which no watcher key has: their generations are 31 bits) |
 * generation << 32 | slot index. Releasing a slot -- on its completion, or
 * on a cancel -- bumps the generation, so a CQE that comes later (the
 * -ECANCELED of a cancelled op, anything for an fd that was closed and
 * whose number now names another socket) names a generation that is gone,
 * and is dropped: the slot's next op never hears of it. While ops are in
 * flight the op keeps the loop alive (loop->alive, as the readiness
 * path's watcher does) and poll_pending stays set after each poll, since
 * their completions arrive only through a poll.
 *
 * Cancel (cloop_op_cancel, and cloop_close_fd with an op in flight). io.c
 * reports the op complete (-ECANCELED / -EBADF) as soon as op_cancel
 * returns, and its caller may then free or reuse the buffer, the op and
 * the fd number. An IORING_OP_ASYNC_CANCEL queued for the next batch is not
 * enough for that: until it is processed the kernel may still run the
 * recv into the buffer (the copy happens in task work on this thread at
 * any return to user mode, or on an io-wq worker), and a recv or accept
 * that had already finished -- its CQE in the CQ, unreaped -- would have
 * its bytes or its new fd silently lost. So op_cancel is synchronous:
 *   - an op whose SQE still waits in our SQ (its position, counted in 64
 *     bits, is at or past the kernel's head) never reached the kernel: the
 *     SQE is rewritten in place into a NOP with IOSQE_CQE_SKIP_SUCCESS;
 *   - otherwise IORING_REGISTER_SYNC_CANCEL (Linux 6.0) returns only once
 *     the request is no longer in the kernel: cancelled before it moved any
 *     data (a polled request marked cancelled is never issued again), or
 *     finished. Its CQE is then in the CQ (its task work ran on this
 *     thread before the syscall returned; we do not use DEFER_TASKRUN), or,
 *     if the CQ was full, in the overflow list, which op_cancel drains
 *     through the usual path. If the CQE carries a result of its own (bytes
 *     read or sent, a new fd, an error), op_cancel completes the op with it
 *     -- the cancel came too late and cloop_op_cancel returns 0, as on
 *     epoll when the callback is already queued -- so nothing is lost; if
 *     it is -ECANCELED, io.c completes the op with its own -ECANCELED or
 *     -EBADF. The CQE itself is left in the CQ and dropped there as stale.
 * After op_cancel the kernel holds no pointer into the op or its buffer,
 * and a cancel costs one syscall. Without SYNC_CANCEL (5.19) the backend
 * runs without operations of its own (uring_watch_only_ops: io.c's
 * readiness path on the watchers). When the ring closes with ops still in
 * flight (a loop discarded), they are cancelled the same way first.
 *
 * Needs Linux 5.19 (IORING_SETUP_SUBMIT_ALL | COOP_TASKRUN: completions
 * arriving while the loop runs callbacks wait for its next system call
 * instead of interrupting it) and takes
 * SINGLE_ISSUER (6.0) when there. DEFER_TASKRUN (6.1) is not used: recent
 * kernels run at most 20 deferred completions per io_uring_enter
 * (IO_LOCAL_TW_DEFAULT_MAX), so with more ready fds than that a poll would
 * report only some of them and level-triggered re-checks would lag an
 * iteration behind epoll. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include "internal.h"

#define SQ_ENTRIES 256
#define CQ_ENTRIES 4096

/* user_data of a watcher's requests = generation << 32 | fd. An fd is
   below 2^31, so bit 31 of the low word marks a re-check's
   acknowledgement, and an fd field of TAG_FD our other requests.
   Generations are 31 bits: bit 63 set marks an I/O operation instead,
   OP_BIT | generation << 32 | operation slot (see "I/O operations"). */
#define TAG_FD UINT32_MAX
#define RECHECK_BIT 0x80000000u
#define GEN_MASK 0x7fffffffu
#define OP_BIT (1ull << 63)
#define KEY(fd, gen) ((uint64_t)(gen) << 32 | (uint32_t)(fd))
#define OP_KEY(i, gen) (OP_BIT | (uint64_t)(gen) << 32 | (uint32_t)(i))
#define NEXT_GEN(g) (((g) + 1) & GEN_MASK)
#define WAKE_TAG KEY(TAG_FD, 0)   /* the eventfd read */
#define IGNORE_TAG KEY(TAG_FD, 1) /* a failed cancel: nothing to do */
#define RECHECK_ROUNDS 3          /* extra rounds per poll, at most */

enum { IDLE, ARMED, DEAD };

typedef struct slot {
  uint32_t gen;  /* the live registration's generation */
  uint8_t mask;  /* CLOOP_READABLE|WRITABLE watched; 0: none */
  uint8_t state; /* IDLE, ARMED, or DEAD (the kernel refused it) */
  uint8_t hot;   /* in the hot list: re-check at the next poll */
  uint8_t again; /* in the again list: re-check within this poll */
  uint32_t arm_epoch; /* u->epoch when the latest add was queued */
} slot;

/* An I/O operation in flight, or a free slot (see "I/O operations"). */
typedef struct opslot {
  cloop_op *op;        /* the operation; NULL: free */
  uint64_t sq_pos;     /* its SQE's place in the SQ, counted since set-up */
  uint32_t gen;        /* the submission's generation, bumped on release */
  uint32_t next;       /* free: the next free slot, or NO_SLOT */
  uint8_t cancelling;  /* op_cancel is collecting its completion */
} opslot;

#define NO_SLOT UINT32_MAX

struct cloop__uring {
  struct io_uring ring;
  slot *slots; /* indexed by fd */
  int *hot;    /* fds reported by the last poll; capacity nslots */
  int *again;  /* fds whose re-check met a wake-up in flight; the same */
  int nslots, nhot, nagain;
  int wakefd;
  int wake_armed;      /* the eventfd read is queued or in the kernel */
  int woke;            /* this poll reaped the eventfd read */
  uint32_t epoch;      /* bumped per submission: arm_epoch == epoch means
                          the add is still in the SQ, unsent */
  uint64_t wake_buf;   /* the eventfd read's target */
  opslot *ops;         /* I/O operations, indexed by slot */
  uint32_t nops;       /* slots allocated */
  uint32_t op_free;    /* the free list's head, or NO_SLOT */
  uint32_t nlive;      /* operations in flight */
  uint64_t sq_done;    /* SQEs the kernel has taken, counted since set-up;
                          its low 32 bits are the SQ's head when last read */
};

#define U (loop->poller.uring)

static unsigned poll_events(int mask) {
  return (mask & CLOOP_READABLE ? POLLIN : 0u) |
         (mask & CLOOP_WRITABLE ? POLLOUT : 0u);
}

/* ---- set-up ------------------------------------------------------------ */

/* The opcodes this backend uses, its I/O operations included. */
static const int needed_ops[] = {
    IORING_OP_POLL_ADD, IORING_OP_POLL_REMOVE, IORING_OP_ASYNC_CANCEL,
    IORING_OP_READ,     IORING_OP_ACCEPT,      IORING_OP_CONNECT,
    IORING_OP_RECV,     IORING_OP_SEND,
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

/* Sets up the ring with the best flags the kernel takes: each tier is
   refused with EINVAL by kernels older than it. */
static int setup_ring(struct io_uring *ring) {
  static const unsigned tiers[] = {
      IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
          IORING_SETUP_SINGLE_ISSUER,
      IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
  };
  int r = -EINVAL;
  for (size_t i = 0; i < sizeof tiers / sizeof tiers[0] && r == -EINVAL; i++) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = tiers[i] | IORING_SETUP_CQSIZE;
    p.cq_entries = CQ_ENTRIES;
    r = io_uring_queue_init_params(SQ_ENTRIES, ring, &p);
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

/* Cancelling an operation needs IORING_REGISTER_SYNC_CANCEL (Linux 6.0);
   a key that matches nothing gets -ENOENT where it exists. */
static int has_sync_cancel(struct io_uring *ring) {
  struct io_uring_sync_cancel_reg reg;
  memset(&reg, 0, sizeof reg);
  reg.addr = OP_KEY(NO_SLOT, 0);
  reg.timeout.tv_sec = reg.timeout.tv_nsec = -1;
  return io_uring_register_sync_cancel(ring, &reg) == -ENOENT;
}

/* The same backend without operations of its own, for kernels without a
   synchronous cancel: io.c's readiness path on the watchers. */
static const cloop__poller_ops uring_watch_only_ops;

static void sync_cancel(struct cloop__uring *u, uint64_t key);
static int sqe_unsent(struct cloop__uring *u, const opslot *s);

static int ur_init(cloop_loop *loop) {
  struct cloop__uring *u = calloc(1, sizeof *u);
  if (!u)
    return -ENOMEM;
  int r = setup_ring(&u->ring);
  if (r < 0) {
    free(u);
    return r;
  }
  /* Blocking: the read on the ring waits in the kernel, not in a retry. */
  u->wakefd = eventfd(0, EFD_CLOEXEC);
  if (u->wakefd < 0) {
    r = -errno;
    io_uring_queue_exit(&u->ring);
    free(u);
    return r;
  }
  u->op_free = NO_SLOT;
  if (!has_sync_cancel(&u->ring))
    loop->ops = &uring_watch_only_ops;
  U = u;
  return 0;
}

static void ur_close(cloop_loop *loop) {
  struct cloop__uring *u = U;
  /* Operations still in flight (the loop was discarded): the kernel lets
     go of their buffers before the ring goes, as op_cancel ensures. */
  for (uint32_t i = 0; u->nlive && i < u->nops; i++)
    if (u->ops[i].op && !sqe_unsent(u, &u->ops[i]))
      sync_cancel(u, OP_KEY(i, u->ops[i].gen));
  io_uring_queue_exit(&u->ring); /* cancels every request still in it */
  free(u->ops);
  close(u->wakefd);
  free(u->slots);
  free(u->hot);
  free(u->again);
  free(u);
  U = NULL;
}

/* ---- submissions ------------------------------------------------------- */

/* Makes room for n SQEs, flushing the queue early if it is full. Returns 0
   or -errno from the flush. */
static int reserve_sqes(struct cloop__uring *u, unsigned n) {
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
      if (reserve_sqes(u, 1) == 0) {
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
  if ((r = reserve_sqes(u, cancel ? 2 : 1)) < 0)
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
  if (s->state != ARMED || s->arm_epoch == u->epoch || reserve_sqes(u, 1) < 0)
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
  if (!u->wake_armed && reserve_sqes(u, 1) == 0) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    io_uring_prep_read(sqe, u->wakefd, &u->wake_buf, sizeof u->wake_buf, 0);
    io_uring_sqe_set_data64(sqe, WAKE_TAG);
    u->wake_armed = 1;
  }
}

/* ---- I/O operations: slots -------------------------------------------- */

/* The SQEs the kernel has taken so far, extended to 64 bits. Read at
   least once per poll, so the head never moves 2^32 between reads. */
static uint64_t sq_taken(struct cloop__uring *u) {
  uint32_t head = io_uring_smp_load_acquire(u->ring.sq.khead);
  u->sq_done += (uint32_t)(head - (uint32_t)u->sq_done);
  return u->sq_done;
}

/* Whether the slot's SQE still waits in the SQ, unseen by the kernel. */
static int sqe_unsent(struct cloop__uring *u, const opslot *s) {
  return s->sq_pos >= sq_taken(u);
}

/* Frees the slot of an operation that has ended (or is forgotten): a new
   generation, so its completion, if one still comes, is stale. Returns the
   operation. */
static cloop_op *op_release(cloop_loop *loop, uint32_t i) {
  struct cloop__uring *u = U;
  opslot *s = &u->ops[i];
  cloop_op *op = s->op;
  s->op = NULL;
  s->cancelling = 0;
  s->gen = NEXT_GEN(s->gen);
  s->next = u->op_free;
  u->op_free = i;
  u->nlive--;
  loop->alive--;
  return op;
}

/* Doubles the slot table; the new slots join the free list, lowest first.
   The kernel never points into it, so it may move. */
static int grow_ops(struct cloop__uring *u) {
  uint32_t n = u->nops ? u->nops * 2 : 64;
  if (n <= u->nops || n >= NO_SLOT)
    return -ENOMEM;
  opslot *ops = realloc(u->ops, (size_t)n * sizeof *ops);
  if (!ops)
    return -ENOMEM;
  memset(ops + u->nops, 0, (size_t)(n - u->nops) * sizeof *ops);
  for (uint32_t i = n; i-- > u->nops;) {
    ops[i].next = u->op_free;
    u->op_free = i;
  }
  u->ops = ops;
  u->nops = n;
  return 0;
}

/* An operation's completion. Returns 1 if it ended a live operation. */
static int op_completed(cloop_loop *loop, uint64_t data, int res) {
  struct cloop__uring *u = U;
  uint32_t i = (uint32_t)data, gen = (uint32_t)(data >> 32) & GEN_MASK;
  if (i >= u->nops || !u->ops[i].op || u->ops[i].gen != gen)
    return 0; /* stale: cancelled, or its fd closed (and maybe reused) */
  if (u->ops[i].cancelling && (res == -ECANCELED || res == -EINTR)) {
    op_release(loop, i); /* the cancel took: io.c completes it */
    return 0;
  }
  cloop__op_complete(op_release(loop, i), res);
  return 1;
}

/* ---- completions ------------------------------------------------------- */

/* Handles one completion; returns 1 if it reported an fd. */
static int complete(cloop_loop *loop, uint64_t data, int res, unsigned flags) {
  struct cloop__uring *u = U;
  if (data & OP_BIT)
    return op_completed(loop, data, res);
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
    if (!(flags & IORING_CQE_F_MORE) && reserve_sqes(u, 1) == 0)
      queue_arm(loop, (int)fd, s->mask);
  } else if (res == -ECANCELED) {
    /* Cancelled by the kernel, not by us (ours retire the generation). */
    if (reserve_sqes(u, 1) == 0)
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
static int reap(cloop_loop *loop) {
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

static uint64_t clock_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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
  uint64_t deadline = timeout_ns > 0 ? clock_ns() + (uint64_t)timeout_ns : 0;
  int n = 0, r;
  for (;;) {
    if ((r = submit_and_wait(u, timeout_ns)) < 0)
      return r;
    n += reap(loop);
    if (n || u->woke || r == 1 || timeout_ns == 0)
      break;
    /* Only acknowledgements and stale completions came: like epoll_wait,
       go on waiting for the time left. */
    if (timeout_ns > 0) {
      uint64_t now = clock_ns();
      if (now >= deadline)
        break;
      timeout_ns = (int64_t)(deadline - now);
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
    n += reap(loop);
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
  sq_taken(u);
  /* Operations in flight complete only through a poll: while there are
     any, the loop must not skip it (as with watchers, ready work must not
     starve I/O). */
  if (u->nlive)
    loop->poll_pending = 1;
  return n;
}

/* ---- I/O operations: start and cancel ---------------------------------- */

static int ur_op_start(cloop_loop *loop, cloop_op *op) {
  struct cloop__uring *u = U;
  int r;
  if (u->op_free == NO_SLOT && (r = grow_ops(u)) < 0)
    return r;
  if ((r = reserve_sqes(u, 1)) < 0)
    return r;
  uint32_t i = u->op_free;
  opslot *s = &u->ops[i];
  u->op_free = s->next;
  s->op = op;
  s->cancelling = 0;
  uint64_t taken = sq_taken(u);
  uint32_t tail = u->ring.sq.sqe_tail; /* the SQE io_uring_get_sqe gives */
  s->sq_pos = taken + (uint32_t)(tail - (uint32_t)taken);
  struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
  unsigned len = op->len > INT32_MAX ? INT32_MAX : (unsigned)op->len;
  int flags = op->flags & ~MSG_DONTWAIT; /* it would end in -EAGAIN */
  switch (op->kind) {
  case CLOOP_OP_RECV:
    io_uring_prep_recv(sqe, op->fd, op->buf, len, flags);
    break;
  case CLOOP_OP_SEND:
    io_uring_prep_send(sqe, op->fd, op->buf, len, flags | MSG_NOSIGNAL);
    break;
  case CLOOP_OP_ACCEPT:
    op->addrlen = sizeof op->addr;
    io_uring_prep_accept(sqe, op->fd, (struct sockaddr *)&op->addr,
                         &op->addrlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    break;
  default:
    io_uring_prep_connect(sqe, op->fd, (struct sockaddr *)&op->addr,
                          op->addrlen);
    break;
  }
  op->tag = OP_KEY(i, s->gen);
  io_uring_sqe_set_data64(sqe, op->tag);
  u->nlive++;
  loop->alive++; /* in flight, like the readiness path's watcher */
  loop->poll_pending = 1;
  return 0;
}

/* Waits until the kernel is done with the request of user_data key: after
   this, it is cancelled, or it had completed; either way its completion is
   in the CQ (or the CQ's overflow list). */
static void sync_cancel(struct cloop__uring *u, uint64_t key) {
  struct io_uring_sync_cancel_reg reg;
  memset(&reg, 0, sizeof reg);
  reg.addr = key;
  reg.timeout.tv_sec = reg.timeout.tv_nsec = -1;
  int r;
  do
    r = io_uring_register_sync_cancel(&u->ring, &reg);
  while (r == -EINTR);
}

/* The result of the completion with user_data key, if it is in the CQ. */
static int find_cqe(struct cloop__uring *u, uint64_t key, int *res) {
  unsigned head;
  struct io_uring_cqe *cqe;
  io_uring_for_each_cqe(&u->ring, head, cqe) {
    if (cqe->user_data == key) {
      *res = cqe->res;
      return 1;
    }
  }
  return 0;
}

static void ur_op_cancel(cloop_loop *loop, cloop_op *op) {
  struct cloop__uring *u = U;
  uint32_t i = (uint32_t)op->tag;
  if (i >= u->nops || u->ops[i].op != op ||
      op->tag != OP_KEY(i, u->ops[i].gen))
    cloop__misuse("io_uring: cancelling operation %p, which is not in flight",
                  (void *)op);
  opslot *s = &u->ops[i];
  if (sqe_unsent(u, s)) {
    /* Still in our SQ: it becomes a no-op the kernel never answers. */
    struct io_uring_sqe *sqe =
        &u->ring.sq.sqes[(uint32_t)s->sq_pos & u->ring.sq.ring_mask];
    memset(sqe, 0, sizeof *sqe);
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, IGNORE_TAG);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    op_release(loop, i);
    return;
  }
  s->cancelling = 1;
  sync_cancel(u, op->tag);
  int res;
  if (find_cqe(u, op->tag, &res)) {
    /* Left in the CQ, and dropped there as stale once released. */
    op_release(loop, i);
    if (res != -ECANCELED && res != -EINTR)
      cloop__op_complete(op, res); /* it finished first: keep its result */
    return;
  }
  /* Not in the CQ: it overflowed. Make room, bring the overflow in and
     take it through the usual path, which honours `cancelling`. */
  reap(loop);
  io_uring_get_events(&u->ring);
  reap(loop);
  s = &u->ops[i];
  if (s->op == op)
    op_release(loop, i); /* nothing came: whatever comes is dropped */
}


static void ur_wake(cloop_loop *loop) {
  uint64_t one = 1;
  while (write(U->wakefd, &one, sizeof one) < 0 && errno == EINTR)
    ;
}

const cloop__poller_ops cloop__uring_ops = {
    .backend = CLOOP_BACKEND_URING,
    .init = ur_init,
    .close = ur_close,
    .watch = ur_watch,
    .poll = ur_poll,
    .wake = ur_wake,
    .op_start = ur_op_start,
    .op_cancel = ur_op_cancel,
};

static const cloop__poller_ops uring_watch_only_ops = {
    .backend = CLOOP_BACKEND_URING,
    .init = ur_init,
    .close = ur_close,
    .watch = ur_watch,
    .poll = ur_poll,
    .wake = ur_wake,
};
