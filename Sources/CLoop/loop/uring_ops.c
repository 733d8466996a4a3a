/* uring_ops.c -- io.c's I/O operations (accept, connect, recv, send,
 * recvmsg, sendmsg) as
 * io_uring's own requests (docs/io_uring.md, "I/O operations"). The
 * contract in short:
 *
 * - start queues the SQE, sent with the next poll's batch; its CQE
 *   completes the op (cloop__op_complete). A socket that is not ready is
 *   polled by the kernel itself (FAST_POLL): no readiness event, no second
 *   syscall from us.
 * - Each op in flight has a slot (index, generation) in a table that never
 *   shrinks; user_data = OP_BIT | generation << 32 | index. Releasing a slot
 *   bumps its generation, so a late CQE (a cancelled op's, one for a closed
 *   and reused fd) names a generation that is gone and is dropped.
 * - cancel is synchronous: an SQE not yet sent becomes a NOP in place;
 *   otherwise IORING_REGISTER_SYNC_CANCEL returns once the kernel is done
 *   with the op and its buffer. An op that had finished keeps its result
 *   (bytes read, a new fd), so nothing is lost to a cancel.
 * - While ops are in flight they keep the loop alive and poll_pending set:
 *   their completions arrive only through a poll.
 * - Zero-copy sends (IORING_OP_SEND_ZC, Linux 6.0; a send of at least
 *   u->zc_min bytes, $CLOOP_URING_SEND_ZC): the kernel pins the caller's
 *   pages instead of copying them, and answers twice, first with the
 *   result and IORING_CQE_F_MORE, then, once no skb points at the pages
 *   any more, with the notification (IORING_CQE_F_NOTIF, same user_data).
 *   The rule: the op completes only at the notification, so the caller's
 *   buffer is the kernel's until the callback, as for every other op. The
 *   price is latency: the callback waits for the last skb to be freed (on
 *   a NIC, its transmission; on loopback, the copy into the receiver). A
 *   cancel (or cloop_close_fd) after the first CQE cannot take the buffer
 *   back: the op is kept and completes with its result at the
 *   notification (cancel returns 1; io.c frees the fd's side meanwhile).
 *   A socket that cannot do zero-copy (AF_UNIX: -EOPNOTSUPP) gets the
 *   send again as a plain one, a round trip lost per such send. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "loop/uring.h"

/* ---- I/O operations: slots -------------------------------------------- */

/* Read at least once per poll, so the head never moves 2^32 between
   reads. */
uint64_t cloop__uring_sq_taken(struct cloop__uring *u) {
  uint32_t head = io_uring_smp_load_acquire(u->ring.sq.khead);
  u->sq_done += (uint32_t)(head - (uint32_t)u->sq_done);
  return u->sq_done;
}

/* Whether the slot's SQE still waits in the SQ, unseen by the kernel. */
static int sqe_unsent(struct cloop__uring *u, const opslot *s) {
  return s->sq_pos >= cloop__uring_sq_taken(u);
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
  if (n <= u->nops || n > FILE_BIT) /* slot numbers stay below FILE_BIT */
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

static int start_request(cloop_loop *loop, cloop_op *op, int plain);

int cloop__uring_op_completed(cloop_loop *loop, uint64_t data, int res,
                              unsigned flags) {
  struct cloop__uring *u = U;
  uint32_t i = (uint32_t)data, gen = (uint32_t)(data >> 32) & GEN_MASK;
  if (i >= u->nops || !u->ops[i].op || u->ops[i].gen != gen)
    return 0; /* stale: cancelled, or its fd closed (and maybe reused) */
  opslot *s = &u->ops[i];
  if (s->zc) {
    if (!(flags & IORING_CQE_F_NOTIF) && (flags & IORING_CQE_F_MORE)) {
      /* The send's result; the kernel holds the buffer until the
         notification, and the op stays in flight until then. A cancel
         that met it is over: the result (-ECANCELED too) stands. */
      s->zc_wait = 1;
      s->zc_res = res;
      s->cancelling = 0;
      return 0;
    }
    if (flags & IORING_CQE_F_NOTIF)
      res = s->zc_res; /* the buffer is free: now the op ends */
    /* else no F_MORE: no notification follows, the op ends now */
    if (res == -EOPNOTSUPP && s->zc_kept)
      res = -ECANCELED; /* cancelled meanwhile: not sent again */
    if (res == -EOPNOTSUPP) {
      /* Not a socket that does zero-copy: send it again, plainly. */
      cloop_op *op = op_release(loop, i);
      int r = start_request(loop, op, 1);
      if (r == 0)
        return 0;
      cloop__op_complete(op, r);
      return 1;
    }
  }
  if (s->cancelling && (res == -ECANCELED || res == -EINTR)) {
    op_release(loop, i); /* the cancel took: io.c completes it */
    return 0;
  }
  cloop_op *op = op_release(loop, i);
  if (op->kind == CLOOP_OP_ACCEPT && res >= 0)
    cloop__uring_stream_forget(loop, res); /* a number reused behind our back */
  cloop__op_complete(op, res);
  return 1;
}


/* ---- I/O operations: start and cancel ---------------------------------- */

/* Starts op as one request; plain: never as a SEND_ZC. */
static int start_request(cloop_loop *loop, cloop_op *op, int plain) {
  struct cloop__uring *u = U;
  int r;
  if (u->op_free == NO_SLOT && (r = grow_ops(u)) < 0)
    return r;
  if ((r = cloop__uring_reserve(u, 1)) < 0)
    return r;
  uint32_t i = u->op_free;
  opslot *s = &u->ops[i];
  u->op_free = s->next;
  s->op = op;
  s->cancelling = 0;
  s->zc = s->zc_wait = s->zc_kept = 0;
  uint64_t taken = cloop__uring_sq_taken(u);
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
    if (u->zc_min && len >= u->zc_min && !plain) {
      io_uring_prep_send_zc(sqe, op->fd, op->buf, len, flags | MSG_NOSIGNAL, 0);
      s->zc = 1;
    } else {
      io_uring_prep_send(sqe, op->fd, op->buf, len, flags | MSG_NOSIGNAL);
    }
    break;
  case CLOOP_OP_RECVMSG: /* the msghdr is the op's: it outlives the SQE */
    io_uring_prep_recvmsg(sqe, op->fd, &op->msg, (unsigned)flags);
    break;
  case CLOOP_OP_SENDMSG:
    io_uring_prep_sendmsg(sqe, op->fd, &op->msg, (unsigned)flags | MSG_NOSIGNAL);
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

int cloop__uring_op_start_single(cloop_loop *loop, cloop_op *op) {
  return start_request(loop, op, 0);
}

/* SEND_ZC's default threshold: 0, off. Measured (bench/zc_bench.c, see
   docs/io_uring.md "Zero-copy sends"): on loopback the kernel copies a
   zero-copy skb into the receiver anyway, so the pinning and the second
   completion are pure cost at every size tried. */
#define SEND_ZC_DEFAULT 0

void cloop__uring_send_zc_init(struct cloop__uring *u) {
  u->zc_min = SEND_ZC_DEFAULT;
  const char *env = getenv("CLOOP_URING_SEND_ZC"); /* bytes; 0: off */
  if (env && *env) {
    char *end;
    unsigned long long v = strtoull(env, &end, 10);
    if (*end == 0)
      u->zc_min = v > INT32_MAX ? INT32_MAX : (size_t)v;
  }
  if (!u->zc_min)
    return;
  struct io_uring_probe *probe = io_uring_get_probe_ring(&u->ring);
  if (!probe || !io_uring_opcode_supported(probe, IORING_OP_SEND_ZC))
    u->zc_min = 0; /* before 6.0: plain sends */
  if (probe)
    io_uring_free_probe(probe);
}

/* A receive on a socket is a stream receive (uring_recv.c), peeks too; the
   rest, and receives with other flags or of no bytes, a request each. */
static int ur_op_start(cloop_loop *loop, cloop_op *op) {
  if (op->kind == CLOOP_OP_ACCEPT)
    return cloop__uring_stream_accept(loop, op);
  if (op->kind == CLOOP_OP_RECV && op->len > 0 &&
      (op->flags & ~(MSG_DONTWAIT | MSG_PEEK)) == 0)
    return cloop__uring_stream_recv(loop, op);
  return cloop__uring_op_start_single(loop, op);
}

/* Waits until the kernel is done with the request of user_data key: after
   this, it is cancelled, or it had completed; either way its completion is
   in the CQ (or the CQ's overflow list). */
void cloop__uring_sync_cancel(struct cloop__uring *u, uint64_t key) {
  struct io_uring_sync_cancel_reg reg;
  memset(&reg, 0, sizeof reg);
  reg.addr = key;
  reg.timeout.tv_sec = reg.timeout.tv_nsec = -1;
  int r;
  do
    r = io_uring_register_sync_cancel(&u->ring, &reg);
  while (r == -EINTR);
  /* DEFER_TASKRUN: the cancelled request's end (its CQE, and letting go of
     its file) is task work that runs only when we ask; ask now, so that
     after this the kernel holds nothing of it. */
  if (u->tier == 0)
    io_uring_get_events(&u->ring);
}

/* The result (and flags) of the first completion with user_data key, if it
   is in the CQ. */
static int find_cqe(struct cloop__uring *u, uint64_t key, int *res,
                    unsigned *flags) {
  unsigned head;
  struct io_uring_cqe *cqe;
  io_uring_for_each_cqe(&u->ring, head, cqe) {
    if (cqe->user_data == key) {
      *res = cqe->res;
      *flags = cqe->flags;
      return 1;
    }
  }
  return 0;
}

static int ur_op_cancel(cloop_loop *loop, cloop_op *op) {
  struct cloop__uring *u = U;
  if (cloop__uring_stream_is_waiter(op)) {
    cloop__uring_stream_cancel(loop, op); /* nothing of it is in the kernel */
    return 0;
  }
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
    return 0;
  }
  if (s->zc_wait) {
    s->zc_kept = 1;
    return 1; /* sent; the kernel holds the buffer until its notification */
  }
  s->cancelling = 1;
  cloop__uring_sync_cancel(u, op->tag);
  int res;
  unsigned flags;
  if (find_cqe(u, op->tag, &res, &flags)) {
    if (s->zc && (flags & IORING_CQE_F_MORE)) {
      /* A notification follows: the reap takes both CQEs, and the op
         ends at the second with this result. */
      s->cancelling = 0;
      s->zc_kept = 1;
      return 1;
    }
    /* Left in the CQ, and dropped there as stale once released. */
    op_release(loop, i);
    if (res != -ECANCELED && res != -EINTR)
      cloop__op_complete(op, res); /* it finished first: keep its result */
    return 0;
  }
  /* Not in the CQ: it overflowed. Make room, bring the overflow in and
     take it through the usual path, which honours `cancelling`. */
  cloop__uring_reap(loop);
  io_uring_get_events(&u->ring);
  cloop__uring_reap(loop);
  s = &u->ops[i];
  if (s->op == op && s->zc_wait) {
    s->zc_kept = 1;
    return 1; /* its first CQE came: the notification ends it */
  }
  if (s->op == op)
    op_release(loop, i); /* nothing came: whatever comes is dropped */
  return 0;
}



/* Cancelling an operation needs IORING_REGISTER_SYNC_CANCEL (Linux 6.0);
   a key that matches nothing gets -ENOENT where it exists. */
int cloop__uring_has_sync_cancel(struct io_uring *ring) {
  struct io_uring_sync_cancel_reg reg;
  memset(&reg, 0, sizeof reg);
  reg.addr = OP_KEY(NO_SLOT, 0);
  reg.timeout.tv_sec = reg.timeout.tv_nsec = -1;
  return io_uring_register_sync_cancel(ring, &reg) == -ENOENT;
}

void cloop__uring_ops_close(cloop_loop *loop) {
  struct cloop__uring *u = U;
  /* Operations still in flight (the loop was discarded): the kernel lets
     go of their buffers before the ring goes, as cancel ensures. */
  /* A zero-copy send waiting for its notification has nothing to cancel:
     the kernel keeps its pages pinned (a reference of its own) until the
     skbs go, ring or no ring. */
  for (uint32_t i = 0; u->nlive && i < u->nops; i++)
    if (u->ops[i].op && !u->ops[i].zc_wait && !sqe_unsent(u, &u->ops[i]))
      cloop__uring_sync_cancel(u, OP_KEY(i, u->ops[i].gen));
}

const cloop__io_ops cloop__uring_io_ops = {
    .start = ur_op_start,
    .cancel = ur_op_cancel,
    .forget_fd = cloop__uring_stream_forget,
    .recv_now = cloop__uring_stream_recv_now,
    .file_start = cloop__uring_file_start, /* uring_file.c */
    .file_cancel = cloop__uring_file_cancel,
};
