/* io.c -- I/O operations on the callback level: accept, connect, recv and
 * send (and a datagram's recvmsg and sendmsg) as objects in the caller's memory that complete with a callback.
 *
 * This is the io_uring model ("start it; hear when it is done") offered on
 * both backends. A backend with operations of its own (io_uring) gives
 * them in a second table (loop->io, see the poller contract). Otherwise, as on epoll, the
 * operation tries its syscall at once and, on EAGAIN, waits for readiness
 * with an fd watcher and tries again -- what asyncio's sock_recv does with
 * add_reader.
 *
 * Each fd has at most one operation in flight per side (the fd table's
 * op_in for accept/recv, op_out for connect/send), so that closing the fd
 * can complete them.
 *
 * The readiness path keeps an fd side's epoll registration (an "interest")
 * from one operation to the next, as libuv keeps a stream's: a loop that
 * receives, echoes and receives again pays no epoll_ctl per message, and
 * once an operation has waited on an fd side the next one waits at once
 * instead of trying a syscall that would say EAGAIN. An interest that
 * becomes ready while no operation waits is dropped then (level-triggered,
 * it would report every iteration). The price is a rule: close an fd that
 * had operations with cloop_close_fd (or cloop_sock_close), since the
 * kernel forgets a closed fd's registration without telling the loop; an
 * fd number the loop sees come back from accept is cleaned up anyway. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop/loop.h"
#include "loop/list.h"

enum { OP_IDLE = 0, OP_IN_FLIGHT, OP_COMPLETE };

static int is_receiving(int kind) {
  return kind == CLOOP_OP_ACCEPT || kind == CLOOP_OP_RECV ||
         kind == CLOOP_OP_RECVMSG;
}

static cloop_op **side_slot(cloop_loop *loop, cloop_op *op) {
  cloop__fd_slot *s = &loop->fds[op->fd];
  return is_receiving(op->kind) ? &s->op_in : &s->op_out;
}

/* An fd side's standing registration (readiness path). */
typedef struct cloop__interest {
  cloop_watcher watcher;
  cloop_op *op; /* the operation waiting, or NULL while idle */
} cloop__interest;

const size_t cloop__interest_size = sizeof(cloop__interest);

static cloop__interest **interest_slot(cloop_loop *loop, int fd, int receiving) {
  return &loop->fds[fd].interest[receiving ? 0 : 1];
}

/* Ends an interest: unregisters it and gives its memory back. An idle one
   does not count in loop->alive (see park/unpark); cloop_unwatch takes one
   off, so it is counted back first. */
static void drop_interest(cloop_loop *loop, cloop__interest *in) {
  int fd = in->watcher.fd, receiving = in->watcher.dir == CLOOP_READABLE;
  if (!in->op)
    loop->alive++;
  cloop_unwatch(loop, &in->watcher);
  *interest_slot(loop, fd, receiving) = NULL;
  cloop__slab_give(&loop->interests, in);
}

/* An operation waits on the interest: it keeps the loop alive. */
static void park(cloop_loop *loop, cloop__interest *in, cloop_op *op) {
  if (!in->op)
    loop->alive++;
  in->op = op;
}

/* The interest goes idle: it no longer keeps the loop alive. */
static void unpark(cloop_loop *loop, cloop__interest *in) {
  if (in->op)
    loop->alive--;
  in->op = NULL;
}

/* Runs the caller's callback: the op's handle on the ready ring. */
static void run_callback(void *arg) {
  cloop_op *op = arg;
  op->state = OP_IDLE;
  op->fn(op);
}

/* Points a datagram op's msghdr at its buffer and address; a recvmsg's
   name length is reset for each try, since the kernel writes it. */
void cloop__op_msg_prepare(cloop_op *op) {
  op->iov.iov_base = op->buf;
  op->iov.iov_len = op->len;
  memset(&op->msg, 0, sizeof op->msg);
  op->msg.msg_iov = &op->iov;
  op->msg.msg_iovlen = 1;
  if (op->kind == CLOOP_OP_RECVMSG) {
    op->msg.msg_name = &op->addr;
    op->msg.msg_namelen = sizeof op->addr;
  } else if (op->addrlen) {
    op->msg.msg_name = &op->addr;
    op->msg.msg_namelen = op->addrlen;
  }
}

/* Records op's result and frees its side of the fd; a datagram received
   brings its sender and flags out of the msghdr (both backends). */
static void settle(cloop_op *op, int result) {
  cloop_op **slot = side_slot(op->loop, op);
  if (*slot == op)
    *slot = NULL;
  op->result = result;
  if (op->kind == CLOOP_OP_RECVMSG && result >= 0) {
    op->addrlen = op->msg.msg_namelen;
    op->msg_flags = op->msg.msg_flags;
  }
}

/* Ends op with result and queues its callback. Called where running the
   callback at once could surprise its caller (inside cloop_op_*), and by
   a backend's completions. */
void cloop__op_complete(cloop_op *op, int result) {
  settle(op, result);
  op->state = OP_COMPLETE;
  cloop_handle_init(&op->handle, run_callback, op);
  cloop_call_soon(op->loop, &op->handle);
}

/* The syscall itself, once: >= 0, or -errno (-EAGAIN: not ready). */
static int attempt(cloop_op *op) {
  for (;;) {
    ssize_t n;
    switch (op->kind) {
    case CLOOP_OP_RECV:
      n = recv(op->fd, op->buf, op->len, op->flags);
      break;
    case CLOOP_OP_SEND:
      n = send(op->fd, op->buf, op->len, op->flags | MSG_NOSIGNAL);
      break;
    case CLOOP_OP_RECVMSG:
      cloop__op_msg_prepare(op);
      n = recvmsg(op->fd, &op->msg, op->flags);
      break;
    case CLOOP_OP_SENDMSG:
      n = sendmsg(op->fd, &op->msg, op->flags | MSG_NOSIGNAL);
      break;
    case CLOOP_OP_ACCEPT:
      op->addrlen = sizeof op->addr;
      n = accept4(op->fd, (struct sockaddr *)&op->addr, &op->addrlen,
                  SOCK_NONBLOCK | SOCK_CLOEXEC);
      break;
    default: { /* connect: start it, then read its outcome when writable */
      if (op->connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(op->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
          return -errno;
        return err == EINPROGRESS ? -EAGAIN : -err;
      }
      n = connect(op->fd, (struct sockaddr *)&op->addr, op->addrlen);
      if (n < 0 && errno == EINPROGRESS) {
        op->connecting = 1;
        return -EAGAIN;
      }
      break;
    }
    }
    if (n >= 0)
      return (int)(n > INT32_MAX ? INT32_MAX : n);
    if (errno == EINTR)
      continue;
    return errno == EWOULDBLOCK ? -EAGAIN : -errno;
  }
}

/* Forgets what the table holds for an fd number that the kernel has just
   handed out again (accept here, socket(2) in tcp.c): the fd it named was
   closed without cloop_close_fd, and its registration went with it. */
void cloop__fd_fresh(cloop_loop *loop, int fd) {
  if (fd < 0 || fd >= loop->nfds)
    return;
  if (loop->io && loop->io->forget_fd)
    loop->io->forget_fd(loop, fd);
  for (int side = 0; side < 2; side++) {
    cloop__interest *in = loop->fds[fd].interest[side];
    if (in && !in->op)
      drop_interest(loop, in); /* its DEL fails quietly: nothing is there */
  }
}

/* The fd is ready for an interest's side: try its operation again, or
   keep waiting; with none waiting, drop the interest. */
static void on_ready(void *arg) {
  cloop__interest *in = arg;
  cloop_op *op = in->op;
  if (!op) {
    drop_interest(in->watcher.loop, in);
    return;
  }
  int r = attempt(op);
  if (r == -EAGAIN)
    return; /* level-triggered: the watcher calls again when ready */
  unpark(op->loop, in);
  if (op->kind == CLOOP_OP_ACCEPT && r >= 0)
    cloop__fd_fresh(op->loop, r);
  /* Already in a batch: the callback runs now, not an iteration later. */
  settle(op, r);
  op->state = OP_IDLE;
  op->fn(op);
}

/* Misuse checks first, before any field of op changes: an op in flight,
   or one whose callback is queued, is the loop's until that callback. */
static void check_idle(cloop_loop *loop, cloop_op *op) {
  CLOOP__CHECK(loop, "starting an I/O operation");
  if (op->state == OP_IN_FLIGHT)
    cloop__misuse("I/O operation %p started again while in flight", (void *)op);
  if (op->handle.link.next)
    cloop__misuse("I/O operation %p started again while its callback is "
                  "queued", (void *)op);
}

static int start(cloop_loop *loop, cloop_op *op, int kind, int fd,
                 cloop_op_fn fn, void *data) {
  if (fd < 0)
    return -EBADF;
  if (!fn)
    return -EINVAL;
  int r = cloop__fd_reserve(loop, fd);
  if (r < 0)
    return r;
  op->loop = loop;
  op->kind = kind;
  op->fd = fd;
  op->fn = fn;
  op->data = data;
  op->result = 0;
  op->connecting = 0;
  cloop_op **slot = side_slot(loop, op);
  if (*slot)
    return -EBUSY;

  if (loop->io) { /* the backend's own operations */
    *slot = op; /* first: the backend may complete it at once */
    op->state = OP_IN_FLIGHT;
    r = loop->io->start(loop, op);
    if (r < 0) {
      *slot = NULL;
      op->state = OP_IDLE;
    }
    return r;
  }

  *slot = op;
  op->state = OP_IN_FLIGHT;
  cloop__interest **islot = interest_slot(loop, fd, is_receiving(kind));
  if (*islot) { /* it waited here last time: wait again, no syscall */
    park(loop, *islot, op);
    return 0;
  }
  r = attempt(op);
  if (r != -EAGAIN) { /* done at once: the callback still comes later */
    if (kind == CLOOP_OP_ACCEPT && r >= 0)
      cloop__fd_fresh(loop, r);
    cloop__op_complete(op, r);
    return 0;
  }
  cloop__interest *in = cloop__slab_alloc(&loop->interests);
  if (!in) {
    *slot = NULL;
    op->state = OP_IDLE;
    return -ENOMEM;
  }
  r = cloop_watch(loop, &in->watcher, fd,
                  is_receiving(kind) ? CLOOP_READABLE : CLOOP_WRITABLE,
                  on_ready, in); /* counts in loop->alive: op waits */
  if (r < 0) {
    cloop__slab_give(&loop->interests, in);
    *slot = NULL;
    op->state = OP_IDLE;
    return r;
  }
  in->op = op;
  *islot = in;
  return 0;
}

int cloop_op_recv(cloop_loop *loop, cloop_op *op, int fd, void *buf,
                  size_t len, int flags, cloop_op_fn fn, void *data) {
  check_idle(loop, op);
  op->buf = buf;
  op->len = len;
  op->flags = flags;
  return start(loop, op, CLOOP_OP_RECV, fd, fn, data);
}

int cloop_op_send(cloop_loop *loop, cloop_op *op, int fd, const void *buf,
                  size_t len, int flags, cloop_op_fn fn, void *data) {
  check_idle(loop, op);
  op->buf = (void *)buf;
  op->len = len;
  op->flags = flags;
  return start(loop, op, CLOOP_OP_SEND, fd, fn, data);
}

int cloop_op_recvmsg(cloop_loop *loop, cloop_op *op, int fd, void *buf,
                     size_t len, int flags, cloop_op_fn fn, void *data) {
  check_idle(loop, op);
  op->buf = buf;
  op->len = len;
  op->flags = flags;
  op->msg_flags = 0;
  op->kind = CLOOP_OP_RECVMSG; /* before prepare, which reads it */
  cloop__op_msg_prepare(op);
  return start(loop, op, CLOOP_OP_RECVMSG, fd, fn, data);
}

int cloop_op_sendmsg(cloop_loop *loop, cloop_op *op, int fd, const void *buf,
                     size_t len, const struct sockaddr *addr,
                     socklen_t addrlen, int flags, cloop_op_fn fn,
                     void *data) {
  check_idle(loop, op);
  if (addr && (addrlen == 0 || addrlen > sizeof op->addr))
    return -EINVAL;
  op->addrlen = addr ? addrlen : 0;
  if (addr)
    memcpy(&op->addr, addr, addrlen);
  op->buf = (void *)buf;
  op->len = len;
  op->flags = flags;
  op->kind = CLOOP_OP_SENDMSG;
  cloop__op_msg_prepare(op);
  return start(loop, op, CLOOP_OP_SENDMSG, fd, fn, data);
}

int cloop_op_accept(cloop_loop *loop, cloop_op *op, int fd, cloop_op_fn fn,
                    void *data) {
  check_idle(loop, op);
  op->buf = NULL;
  op->len = 0;
  op->flags = 0;
  return start(loop, op, CLOOP_OP_ACCEPT, fd, fn, data);
}

int cloop_op_connect(cloop_loop *loop, cloop_op *op, int fd,
                     const struct sockaddr *addr, socklen_t addrlen,
                     cloop_op_fn fn, void *data) {
  check_idle(loop, op);
  if (addrlen > sizeof op->addr)
    return -EINVAL;
  memcpy(&op->addr, addr, addrlen);
  op->addrlen = addrlen;
  op->buf = NULL;
  op->len = 0;
  op->flags = 0;
  return start(loop, op, CLOOP_OP_CONNECT, fd, fn, data);
}

ssize_t cloop__recv_now(cloop_loop *loop, int fd, void *buf, size_t len, int flags) {
  if (loop->io && loop->io->recv_now) {
    ssize_t r = loop->io->recv_now(loop, fd, buf, len, flags);
    if (r != CLOOP__NOT_HELD)
      return r;
  }
  for (;;) {
    ssize_t k = recv(fd, buf, len, flags | MSG_DONTWAIT);
    if (k >= 0)
      return k;
    if (errno != EINTR)
      return errno == EWOULDBLOCK ? -EAGAIN : -errno;
  }
}

/* Ends op now with result; its callback follows on the ready ring. */
static int finish_early(cloop_loop *loop, cloop_op *op, int result) {
  if (op->state != OP_IN_FLIGHT)
    return 0;
  if (loop->io) {
    if (loop->io->cancel(loop, op)) {
      /* Kept: it has finished but the kernel still reads its buffer (a
         zero-copy send); its callback comes when the kernel lets go, with
         its result. The fd's side is free meanwhile. */
      cloop_op **slot = side_slot(loop, op);
      if (*slot == op)
        *slot = NULL;
      return 1;
    }
    /* The backend forgot the submission. */
    if (op->state != OP_IN_FLIGHT)
      return 0; /* the kernel had finished it: its result stands */
  } else {
    cloop__interest *in = *interest_slot(loop, op->fd, is_receiving(op->kind));
    if (in && in->op == op)
      unpark(loop, in); /* the registration stays for the next operation */
  }
  cloop__op_complete(op, result);
  return 1;
}

int cloop_op_cancel(cloop_loop *loop, cloop_op *op) {
  CLOOP__CHECK(loop, "cloop_op_cancel");
  return finish_early(loop, op, -ECANCELED);
}

int cloop_close_fd(cloop_loop *loop, int fd) {
  CLOOP__CHECK(loop, "cloop_close_fd");
  if (fd >= 0 && fd < loop->nfds) {
    cloop__fd_slot *s = &loop->fds[fd];
    if (s->op_in)
      finish_early(loop, s->op_in, -EBADF);
    if (s->op_out)
      finish_early(loop, s->op_out, -EBADF);
    if (loop->io && loop->io->forget_fd)
      loop->io->forget_fd(loop, fd);
    for (int side = 0; side < 2; side++)
      if (s->interest[side])
        drop_interest(loop, s->interest[side]);
    if (s->reader)
      cloop_unwatch(loop, s->reader);
    if (s->writer)
      cloop_unwatch(loop, s->writer);
  }
  return close(fd) == 0 ? 0 : -errno;
}
