/* uring_recv.c -- receives on io_uring the way its authors use it for
 * networking: one multishot receive armed per connection, into buffers the
 * kernel picks from a ring the loop provides (docs/io_uring.md, "Stream
 * receives"). The contract in short:
 *
 * - A recv operation (io.c's, no flags but MSG_PEEK) on a stream socket
 *   (SOCK_STREAM: TCP, Unix; a datagram must not be split) gets the bytes that
 *   already came, copied from the loop's buffers (the one copy), or waits
 *   until some come. The multishot stays armed between operations: no SQE
 *   and no poll re-arm per message.
 * - Bytes that come while nobody reads wait in the stream's queue of
 *   buffers, in order. Past HIGH_CHUNKS of them the multishot is cancelled
 *   (one slow reader must not drain the ring every connection shares); the
 *   next recv arms it again.
 * - When the ring is empty (-ENOBUFS), or the kernel lacks multishot
 *   receives, a waiting recv falls back to a single-shot receive into its
 *   own buffer (uring_ops.c): slower, never stuck, nothing reordered (the
 *   queue is empty and the multishot ended when an operation waits).
 * - Cancelling a waiting recv only detaches it: the kernel never writes
 *   into the operation's buffer, so no synchronous cancel is needed.
 * - An accept operation on a listener is served the same way: connections
 *   queue (up to HIGH_ACCEPTS) with their peers' addresses read by
 *   getpeername when an accept takes them. They come from accept4 calls
 *   when a multishot poll reports the listener readable -- a poll of an
 *   epoll set holding the listener, not of the listener itself: every
 *   request in the ring holds its file, and a killed process's ring is
 *   torn down by a kernel worker a jiffy or two later (5-16 ms measured
 *   here), so a multishot accept, or a poll of the listener, kept its port
 *   in LISTEN after a SIGKILL and a supervisor's restart failed with
 *   EADDRINUSE (issue 19). Epoll holds no reference: the port is free as
 *   the process ends. Cost: an accept4 per connection (and one EAGAIN per
 *   batch) where the kernel's multishot accept needed none, about 1 % of
 *   the churn workload's CPU; CLOOP_URING_ACCEPT=multishot gives the
 *   kernel's accept back.
 * - cloop_close_fd (and an fd number handed out again) forgets the stream:
 *   its multishot is cancelled, its buffers given back, and completions of
 *   the old generation return their buffers and are dropped.
 *
 * Sizes: NBUF buffers of BUF_SIZE bytes per loop, 8 MiB, allocated with the
 * first stream receive: enough for 512 connections with a message each in
 * the queue, or for the stream workload's 8 x 256 KiB in flight. An idle
 * connection holds no buffer; its stream record is 40 bytes. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop/uring.h"

#define NBUF 512              /* provided buffers per loop (a power of two) */
#define BUF_SIZE (16 * 1024)  /* bytes each */
#define BGID 0                /* the loop's one buffer group */
#define HIGH_CHUNKS 8         /* unread buffers before the multishot pauses */
#define LOW_BUFS 16           /* fewer free than this: receive single-shot */

#define HIGH_ACCEPTS 64       /* unaccepted connections before it pauses */

/* ur_stream.kind: what the fd is, asked once. A listener's record keeps
   accepted connections in `accepted` instead of buffers in `q`. */
enum { KIND_UNKNOWN, KIND_STREAM, KIND_LISTENER, KIND_OTHER };

/* ---- the buffer ring --------------------------------------------------- */

/* Sets up the loop's buffer ring once; 0 when it can be used. liburing 2.3
   has no io_uring_setup_buf_ring: the ring's entries are page-aligned
   memory of ours, registered. */
static int bufs_ready(struct cloop__uring *u) {
  if (u->br_state)
    return u->br_state > 0 ? 0 : -ENOSYS;
  u->br_state = -1;
  const char *env = getenv("CLOOP_URING_MULTISHOT");
  if (env && strcmp(env, "0") == 0)
    return -ENOSYS; /* forced off: the tests' lower tier */
  size_t ring_bytes = NBUF * sizeof(struct io_uring_buf);
  void *br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (br == MAP_FAILED)
    return -ENOMEM;
  char *bufs = malloc((size_t)NBUF * BUF_SIZE);
  if (!bufs) {
    munmap(br, ring_bytes);
    return -ENOMEM;
  }
  struct io_uring_buf_reg reg;
  memset(&reg, 0, sizeof reg);
  reg.ring_addr = (uint64_t)(uintptr_t)br;
  reg.ring_entries = NBUF;
  reg.bgid = BGID;
  if (io_uring_register_buf_ring(&u->ring, &reg, 0) < 0) { /* before 5.19 */
    free(bufs);
    munmap(br, ring_bytes);
    return -ENOSYS;
  }
  u->br = br;
  u->bufs = bufs;
  io_uring_buf_ring_init(u->br);
  for (unsigned i = 0; i < NBUF; i++)
    io_uring_buf_ring_add(u->br, bufs + (size_t)i * BUF_SIZE, BUF_SIZE,
                          (unsigned short)i, io_uring_buf_ring_mask(NBUF), (int)i);
  io_uring_buf_ring_advance(u->br, NBUF);
  u->br_state = 1;
  return 0;
}

/* Gives buffer bid back to the kernel. */
static void give_back(struct cloop__uring *u, unsigned bid) {
  io_uring_buf_ring_add(u->br, u->bufs + (size_t)bid * BUF_SIZE, BUF_SIZE,
                        (unsigned short)bid, io_uring_buf_ring_mask(NBUF), 0);
  io_uring_buf_ring_advance(u->br, 1);
  u->bufs_out--;
}

/* ---- a stream's queue --------------------------------------------------- */

static ur_stream *stream_of(struct cloop__uring *u, int fd) {
  if (fd >= u->nstreams) {
    int n = u->nstreams ? u->nstreams : 64;
    while (n <= fd)
      n *= 2;
    ur_stream *s = realloc(u->streams, (size_t)n * sizeof *s);
    if (!s)
      return NULL;
    memset(s + u->nstreams, 0, (size_t)(n - u->nstreams) * sizeof *s);
    u->streams = s;
    u->nstreams = n;
  }
  return &u->streams[fd];
}

static uint32_t queued(const ur_stream *st) { return st->qtail - st->qhead; }

/* Appends a buffer of received bytes. Returns 0 or -ENOMEM (the queue
   doubles: no allocation per message once it has grown). */
static int push(ur_stream *st, unsigned bid, uint32_t len) {
  if (queued(st) == st->qcap) {
    uint32_t cap = st->qcap ? st->qcap * 2 : 4;
    ur_chunk *q = malloc(cap * sizeof *q);
    if (!q)
      return -ENOMEM;
    for (uint32_t i = 0; i < queued(st); i++)
      q[i] = st->q[(st->qhead + i) & (st->qcap - 1)];
    free(st->q);
    st->qtail = queued(st);
    st->qhead = 0;
    st->q = q;
    st->qcap = cap;
  }
  ur_chunk *c = &st->q[st->qtail++ & (st->qcap - 1)];
  c->bid = (uint16_t)bid;
  c->off = 0;
  c->len = len;
  return 0;
}

/* Copies up to len queued bytes into buf, giving emptied buffers back;
   with MSG_PEEK in flags, leaves them queued. */
static size_t copy_out(struct cloop__uring *u, ur_stream *st, char *buf, size_t len,
                       int flags) {
  size_t n = 0;
  int peek = (flags & MSG_PEEK) != 0;
  for (uint32_t i = st->qhead; n < len && i != st->qtail; i++) {
    ur_chunk *c = &st->q[i & (st->qcap - 1)];
    size_t take = c->len - c->off;
    if (take > len - n)
      take = len - n;
    memcpy(buf + n, u->bufs + (size_t)c->bid * BUF_SIZE + c->off, take);
    n += take;
    if (peek)
      continue;
    c->off += (uint32_t)take;
    if (c->off == c->len) {
      give_back(u, c->bid);
      st->qhead++;
    }
  }
  return n;
}

/* What a receive of op's gets from a stream that has bytes or has ended. */
static int take(struct cloop__uring *u, ur_stream *st, cloop_op *op) {
  if (queued(st)) {
    size_t n = copy_out(u, st, op->buf, op->len, op->flags);
    return n > INT32_MAX ? INT32_MAX : (int)n;
  }
  int r = st->end;
  if (!(op->flags & MSG_PEEK))
    st->end = 0; /* an error is reported once; then end of stream */
  return r;
}

/* Gives every queued buffer back (the stream is forgotten). */
static void drop_queue(struct cloop__uring *u, ur_stream *st) {
  for (; queued(st); st->qhead++)
    give_back(u, st->q[st->qhead & (st->qcap - 1)].bid);
}

/* A listener's queue of accepted connections (the same ring indexes). */
static int push_fd(ur_stream *st, int fd) {
  if (queued(st) == st->qcap) {
    uint32_t cap = st->qcap ? st->qcap * 2 : 8;
    int *a = malloc(cap * sizeof *a);
    if (!a)
      return -ENOMEM;
    for (uint32_t i = 0; i < queued(st); i++)
      a[i] = st->accepted[(st->qhead + i) & (st->qcap - 1)];
    free(st->accepted);
    st->qtail = queued(st);
    st->qhead = 0;
    st->accepted = a;
    st->qcap = cap;
  }
  st->accepted[st->qtail++ & (st->qcap - 1)] = fd;
  return 0;
}

/* What an accept of op's gets: the next connection, its peer in op->addr
   (as a single-shot accept fills it), or the error that came. */
static int take_fd(ur_stream *st, cloop_op *op) {
  if (!queued(st)) {
    int r = st->end;
    st->end = 0;
    st->ended = 0; /* an accept's error is reported once */
    return r;
  }
  int fd = st->accepted[st->qhead++ & (st->qcap - 1)];
  op->addrlen = sizeof op->addr;
  if (getpeername(fd, (struct sockaddr *)&op->addr, &op->addrlen) < 0)
    op->addrlen = 0; /* it left already: its first read will say so */
  return fd;
}

/* Closes the connections nobody accepted (the listener is forgotten). */
static void drop_accepted(ur_stream *st) {
  for (; queued(st); st->qhead++)
    close(st->accepted[st->qhead & (st->qcap - 1)]);
}

/* ---- arming, the waiter ----------------------------------------------- */

/* The user_data of fd's multishot. */
static uint64_t key_of(int fd, const ur_stream *st) {
  return STREAM_KEY((uint32_t)fd | (st->kind == KIND_LISTENER ? LISTENER_BIT : 0), st->gen);
}

static int arm(cloop_loop *loop, int fd, ur_stream *st) {
  struct cloop__uring *u = U;
  int r = cloop__uring_reserve(u, 1);
  if (r < 0)
    return r;
  uint64_t taken = cloop__uring_sq_taken(u);
  st->arm_pos = taken + (uint32_t)(u->ring.sq.sqe_tail - (uint32_t)taken);
  struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
  if (st->kind == KIND_LISTENER && st->lep) {
    /* A multishot poll of the listener's epoll set (see the top). */
    io_uring_prep_poll_multishot(sqe, st->lep - 1, POLLIN);
  } else if (st->kind == KIND_LISTENER) {
    /* No address: one buffer for every connection would be overwritten
       before its completion is read; delivery asks getpeername. */
    io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  } else {
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
  }
  io_uring_sqe_set_data64(sqe, key_of(fd, st));
  st->armed = 1;
  loop->poll_pending = 1;
  return 0;
}

/* Queues the cancel of fd's multishot (it ends with a CQE of its own). */
static void queue_cancel(cloop_loop *loop, int fd, ur_stream *st) {
  struct cloop__uring *u = U;
  if (cloop__uring_reserve(u, 1) < 0)
    return; /* no room: the next generation still drops what it posts */
  struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
  io_uring_prep_cancel64(sqe, key_of(fd, st), 0);
  io_uring_sqe_set_data64(sqe, IGNORE_TAG);
  sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
  loop->poll_pending = 1;
}

/* The waiter's wait: it keeps the loop alive and the poll coming. */
static void wait_on(cloop_loop *loop, ur_stream *st, cloop_op *op) {
  struct cloop__uring *u = U;
  st->waiter = op;
  op->tag = STREAM_KEY(op->fd, st->gen); /* never submitted: marks a waiter */
  u->nlive++;
  loop->alive++;
  loop->poll_pending = 1;
}

static cloop_op *unwait(cloop_loop *loop, ur_stream *st) {
  struct cloop__uring *u = U;
  cloop_op *op = st->waiter;
  st->waiter = NULL;
  u->nlive--;
  loop->alive--;
  return op;
}

/* The waiter cannot be served by the multishot (no buffers, no multishot
   in this kernel): a single-shot receive into its own buffer instead. */
static void fall_back(cloop_loop *loop, ur_stream *st) {
  cloop_op *op = unwait(loop, st);
  int r = cloop__uring_op_start_single(loop, op);
  if (r < 0)
    cloop__op_complete(op, r);
}

/* Arms the multishot for a waiter, or falls back. */
static void serve_waiter(cloop_loop *loop, int fd, ur_stream *st) {
  struct cloop__uring *u = U;
  if (st->armed)
    return; /* it will post (or end, and come back here) */
  int can = st->kind == KIND_LISTENER ? !u->accept_broken
                                      : !u->multishot_broken && NBUF - u->bufs_out >= LOW_BUFS;
  if (!can || arm(loop, fd, st) < 0)
    fall_back(loop, st);
}

/* ---- the backend's entries ---------------------------------------------- */

int cloop__uring_stream_recv(cloop_loop *loop, cloop_op *op) {
  struct cloop__uring *u = U;
  if (u->multishot_broken || bufs_ready(u) < 0)
    return cloop__uring_op_start_single(loop, op);
  ur_stream *st = stream_of(u, op->fd);
  if (!st)
    return -ENOMEM;
  if (!st->kind) { /* once per socket: a datagram must not be split up */
    int type = 0;
    socklen_t len = sizeof type;
    int r = getsockopt(op->fd, SOL_SOCKET, SO_TYPE, &type, &len);
    st->kind = r == 0 && type == SOCK_STREAM ? KIND_STREAM : KIND_OTHER;
  }
  if (st->kind != KIND_STREAM)
    return cloop__uring_op_start_single(loop, op);
  if (queued(st) || st->ended) {
    cloop__op_complete(op, take(u, st, op));
    return 0;
  }
  wait_on(loop, st, op);
  serve_waiter(loop, op->fd, st);
  return 0;
}

int cloop__uring_stream_accept(cloop_loop *loop, cloop_op *op) {
  struct cloop__uring *u = U;
  if (!u->accept_env_read) { /* once per loop, not once per accept */
    u->accept_env_read = 1;
    const char *env = getenv("CLOOP_URING_MULTISHOT");
    if (env && strcmp(env, "0") == 0)
      u->accept_broken = 1; /* forced off: the tests' lower tier */
    env = getenv("CLOOP_URING_ACCEPT");
    u->accept_direct = env && strcmp(env, "multishot") == 0;
  }
  if (u->accept_broken)
    return cloop__uring_op_start_single(loop, op);
  ur_stream *st = stream_of(u, op->fd);
  if (!st)
    return -ENOMEM;
  if (!st->kind) { /* once: a socket that is not listening gets its error */
    int on = 0;
    socklen_t len = sizeof on;
    int r = getsockopt(op->fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len);
    st->kind = r == 0 && on ? KIND_LISTENER : KIND_OTHER;
    if (st->kind == KIND_LISTENER && st->q) {
      /* The fd number's last socket was a stream whose grown queue was
         kept (forget): a listener's queue is `accepted`, on the same
         indexes, so that capacity must not carry over to it. */
      free(st->q);
      st->q = NULL;
      st->qcap = 0;
    }
    if (st->kind == KIND_LISTENER && !u->accept_direct) {
      /* The listener's own epoll set, which the ring polls (see the top).
         Without one (no descriptor left: EMFILE), the kernel's multishot
         accept serves this listener instead. */
      int ep = epoll_create1(EPOLL_CLOEXEC);
      struct epoll_event ev = {.events = EPOLLIN, .data.fd = op->fd};
      if (ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, op->fd, &ev) == 0)
        st->lep = ep + 1;
      else if (ep >= 0)
        close(ep);
    }
  }
  if (st->kind != KIND_LISTENER)
    return cloop__uring_op_start_single(loop, op);
  if (queued(st) || st->ended) {
    cloop__op_complete(op, take_fd(st, op));
    return 0;
  }
  wait_on(loop, st, op);
  serve_waiter(loop, op->fd, st);
  return 0;
}

/* One accept's result for listener fd (st is its, of this generation): a
   connection, or an error. Returns 1 if an accept operation got it. */
static int accepted_one(cloop_loop *loop, int fd, ur_stream *st, int res) {
  struct cloop__uring *u = U;
  int reported = 0;
  if (res >= 0) {
    cloop__uring_stream_forget(loop, res); /* a number seen again */
    if (push_fd(st, res) < 0) {
      close(res); /* the peer sees the reset: nothing is silently kept */
      res = -ENOMEM;
    } else {
      u->accept_worked = 1;
    }
  }
  if (res >= 0) {
    if (st->waiter) {
      cloop_op *op = unwait(loop, st);
      cloop__op_complete(op, take_fd(st, op));
      reported = 1;
    } else if (queued(st) >= HIGH_ACCEPTS && st->armed && !st->paused) {
      queue_cancel(loop, fd, st); /* nobody accepts: leave them in the backlog */
      st->paused = 1;
    }
  } else if (res == -ECANCELED) {
    /* our pause took; armed again by the next accept */
  } else if (res == -EINVAL && !u->accept_worked) {
    u->accept_broken = 1; /* no multishot accept in this kernel */
  } else if (st->waiter) {
    cloop__op_complete(unwait(loop, st), res);
    reported = 1;
  } else {
    st->ended = 1; /* for the next accept, once */
    st->end = res;
  }
  return reported;
}

/* The listener's epoll set reported it readable: accept4 until it has no
   more (EAGAIN), the queue is full, or an error comes (reported as a
   multishot accept's would be). The poll posts again only when another
   connection comes, so stopping with connections left in the backlog (a
   full queue, EMFILE) cancels it: the next accept arms a fresh poll,
   which posts at once if the listener is still readable. */
static int accept_ready(cloop_loop *loop, int fd, ur_stream *st) {
  int reported = 0, drained = 0;
  while (!st->ended && (st->waiter || queued(st) < HIGH_ACCEPTS)) {
    int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      drained = 1;
      break;
    }
    if (c < 0 && (errno == EINTR || errno == ECONNABORTED))
      continue; /* that one left before it was taken: the next */
    reported |= accepted_one(loop, fd, st, c < 0 ? -errno : c);
    if (c < 0)
      break;
  }
  if (!drained && st->armed && !st->paused) {
    queue_cancel(loop, fd, st);
    st->paused = 1;
  }
  return reported;
}

/* A listener's multishot (accept, or poll of its epoll set) posted. */
static int accepted(cloop_loop *loop, int fd, ur_stream *st, int res, unsigned flags) {
  if (!(flags & IORING_CQE_F_MORE)) {
    st->armed = 0;
    st->paused = 0;
  }
  /* A direct accept's connection or error; a poll's error (-ECANCELED: our
     pause took; -EINVAL: no multishot poll here, the lower tier); or a
     poll's readiness. */
  int reported = !st->lep || res < 0 ? accepted_one(loop, fd, st, res)
                                     : accept_ready(loop, fd, st);
  if (st->waiter && !st->armed)
    serve_waiter(loop, fd, st);
  return reported;
}

ssize_t cloop__uring_stream_recv_now(cloop_loop *loop, int fd, void *buf,
                                     size_t len, int flags) {
  struct cloop__uring *u = U;
  if (fd < 0 || fd >= u->nstreams)
    return CLOOP__NOT_HELD;
  ur_stream *st = &u->streams[fd];
  if (st->kind != KIND_STREAM)
    return CLOOP__NOT_HELD;
  if (queued(st) || st->ended) {
    cloop_op op; /* take() reads only these */
    op.buf = buf;
    op.len = len;
    op.flags = flags;
    return take(u, st, &op);
  }
  /* Armed: bytes in the socket may already sit, unreaped, in a completion;
     a recv(2) now could read past them. */
  return st->armed ? -EAGAIN : CLOOP__NOT_HELD;
}

int cloop__uring_stream_is_waiter(const cloop_op *op) {
  return (op->tag & OP_BIT) && ((uint32_t)op->tag & STREAM_BIT);
}

void cloop__uring_stream_cancel(cloop_loop *loop, cloop_op *op) {
  struct cloop__uring *u = U;
  ur_stream *st = op->fd < u->nstreams ? &u->streams[op->fd] : NULL;
  if (!st || st->waiter != op)
    cloop__misuse("io_uring: cancelling receive %p, which is not waiting",
                  (void *)op);
  unwait(loop, st); /* bytes that come stay queued for the next receive */
}

int cloop__uring_stream_completed(cloop_loop *loop, uint64_t data, int res,
                                  unsigned flags) {
  struct cloop__uring *u = U;
  int fd = (int)((uint32_t)data & STREAM_FD_MASK);
  int listener = ((uint32_t)data & LISTENER_BIT) != 0;
  uint32_t gen = (uint32_t)(data >> 32) & GEN_MASK;
  int has_buf = (flags & IORING_CQE_F_BUFFER) != 0;
  unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
  if (has_buf)
    u->bufs_out++; /* the kernel took it from the ring; it is ours now */
  ur_stream *st = fd < u->nstreams ? &u->streams[fd] : NULL;
  if (!st || st->gen != gen) {
    if (has_buf) /* a forgotten stream's: the bytes go with it */
      give_back(u, bid);
    else if (listener && res >= 0)
      close(res); /* a forgotten listener's connection: nobody takes it */
    return 0;
  }
  if (listener)
    return accepted(loop, fd, st, res, flags);
  if (!(flags & IORING_CQE_F_MORE)) {
    st->armed = 0;
    st->paused = 0;
  }
  int reported = 0;
  if (res > 0 && has_buf) {
    if (push(st, bid, (uint32_t)res) < 0) {
      give_back(u, bid); /* cannot keep them: report it, lose nothing silently */
      res = -ENOMEM;
    }
  }
  if (res > 0) {
    if (st->waiter) {
      cloop_op *op = unwait(loop, st);
      cloop__op_complete(op, take(u, st, op));
      reported = 1;
    } else if (queued(st) >= HIGH_CHUNKS && st->armed && !st->paused) {
      queue_cancel(loop, fd, st); /* nobody reads: stop taking buffers */
      st->paused = 1;
    }
  } else if (res == -ENOBUFS || (res == -ECANCELED && !st->ended)) {
    /* The ring ran dry, or our pause took: armed again by a waiter. */
  } else if (res == -EINVAL && !st->ended && !queued(st)) {
    u->multishot_broken = 1; /* no IORING_RECV_MULTISHOT in this kernel */
  } else {
    st->ended = 1; /* 0: end of stream; else an error, reported once */
    st->end = res;
    if (st->waiter) {
      cloop_op *op = unwait(loop, st);
      cloop__op_complete(op, take(u, st, op));
      reported = 1;
    }
  }
  if (st->waiter && !st->armed)
    serve_waiter(loop, fd, st);
  return reported;
}

void cloop__uring_stream_forget(cloop_loop *loop, int fd) {
  struct cloop__uring *u = U;
  if (fd < 0 || fd >= u->nstreams)
    return;
  ur_stream *st = &u->streams[fd];
  if (st->waiter) /* cloop_close_fd has ended it; defensive for fd reuse */
    cloop__op_complete(unwait(loop, st), -EBADF);
  if (st->armed) {
    /* Synchronously, as an operation's cancel: after this the kernel holds
       neither the file (a closed socket is closed now) nor a buffer for it,
       and an arm still in our SQ cannot land on the fd's next socket. */
    if (st->arm_pos >= cloop__uring_sq_taken(u)) {
      struct io_uring_sqe *sqe = &u->ring.sq.sqes[(uint32_t)st->arm_pos & u->ring.sq.ring_mask];
      memset(sqe, 0, sizeof *sqe);
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data64(sqe, IGNORE_TAG);
      sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    } else {
      cloop__uring_sync_cancel(u, key_of(fd, st));
    }
  }
  uint32_t cap = st->qcap;
  if (st->kind == KIND_LISTENER) {
    drop_accepted(st);
    free(st->accepted);
    if (st->lep)
      close(st->lep - 1);
    cap = 0;
  } else {
    drop_queue(u, st);
  }
  uint32_t gen = NEXT_GEN(st->gen);
  ur_chunk *q = st->q;
  memset(st, 0, sizeof *st);
  st->gen = gen;
  st->q = cap ? q : NULL; /* keep a grown queue for the fd's next socket */
  st->qcap = cap;
  if (!cap)
    free(q);
}

void cloop__uring_streams_close(cloop_loop *loop) {
  struct cloop__uring *u = U;
  /* The kernel must be done with every multishot before the buffers go:
     cancel each synchronously, as uring_ops.c does for operations. */
  for (int fd = 0; fd < u->nstreams; fd++) {
    ur_stream *st = &u->streams[fd];
    if (st->armed)
      cloop__uring_sync_cancel(u, key_of(fd, st));
    if (st->kind == KIND_LISTENER) {
      drop_accepted(st);
      free(st->accepted);
      if (st->lep)
        close(st->lep - 1);
    }
    free(st->q);
  }
  free(u->streams);
  u->streams = NULL;
  u->nstreams = 0;
  (void)loop;
}

void cloop__uring_bufs_free(struct cloop__uring *u) {
  if (u->br_state <= 0)
    return;
  munmap(u->br, NBUF * sizeof(struct io_uring_buf));
  free(u->bufs);
  u->br_state = 0;
}
