/* net.c -- sockets on the coroutine level: asyncio's sock_recv, sock_sendall,
 * sock_accept, create_connection (the seeds'), on the I/O operations of io.c.
 *
 * A waiting call starts one callback-level operation -- a cloop_op, or the
 * accept and connect helpers that carry the socket policy (loop/tcp.c) --
 * and parks its task on a future that the operation's callback completes. The op and the future live in an object from
 * the loop's net_ops slab, never on the task's stack: a shared-stack task's
 * stack holds other frames while it is parked. Steady-state socket I/O
 * therefore allocates nothing (a slab pop and push per call).
 *
 * An interrupted wait (cancellation, deadline) cancels the op and waits,
 * quietly, for its callback before the object goes back: the loop must be
 * done with it. If the op had finished first with a result (bytes read, a
 * new fd), the result is returned and the interruption stays pending for
 * the task's next await, so that no data or fd is lost to it.
 *
 * Datagrams (cloop_udp_recvfrom, cloop_udp_sendto) take the same path on
 * the recvmsg/sendmsg operations; the sender's address comes back through
 * the op object, never through a pointer the loop writes while the task
 * is parked.
 *
 * The user's buffer is a hazard of the same kind: the epoll path reads into
 * it from a callback while the task is parked. A buffer on the shared stack
 * is therefore never handed to an op; the task waits with a one-byte peek
 * into the op object (recv) or sends from a copy in it (send), and moves the
 * data itself while it runs. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "coro/task.h"

#define SCRATCH 256 /* bytes of a shared-stack send moved per wait */

typedef struct net_op {
  union {
    cloop_op op;
    cloop_acceptor acc;
    cloop_connector conn;
  } u;
  cloop_future done;  /* completed with the operation's result */
  int interrupted;    /* the last wait was cut short (-ECANCELED/-ETIMEDOUT) */
  char scratch[SCRATCH];
} net_op;

const size_t cloop__net_op_size = sizeof(net_op);
/* fd_wait.c takes its objects (a watcher and a task pointer) from the same
   slab. */
_Static_assert(sizeof(net_op) >= sizeof(cloop_watcher) + sizeof(void *),
               "a net_ops slot holds fd_wait.c's object");

static net_op *op_new(cloop_task *t) {
  return cloop__slab_alloc(&t->loop->coro->net_ops); /* zeroed */
}

static void op_free(cloop_task *t, net_op *n) {
  cloop__slab_give(&t->loop->coro->net_ops, n);
}

static void op_done(cloop_op *op) {
  net_op *n = op->data;
  cloop_future_set_result(&n->done, op->result);
}

static void accept_done(cloop_acceptor *a) {
  net_op *n = a->data;
  cloop_future_set_result(&n->done, a->result);
}

static void connect_done(cloop_connector *c) {
  net_op *n = c->data;
  cloop_future_set_result(&n->done, c->result);
}

enum { KIND_OP, KIND_ACCEPT, KIND_CONNECT };

/* Waits for n's operation of `kind`, which `started` (the start call's
   return) began. Returns its result (>= 0 or -errno) or the task's
   interruption. */
static int op_wait(cloop_task *t, net_op *n, int kind, int started) {
  n->interrupted = 0;
  if (started < 0)
    return started;
  cloop_handle *h = kind == KIND_OP ? &n->u.op.handle
                  : kind == KIND_ACCEPT ? &n->u.acc.op.handle : NULL;
  if (h && h->link.next) {
    /* It finished at once (epoll: the first try worked) and its callback is
       queued for the next batch: run it now instead, which saves the task
       two trips through the ready ring. */
    cloop_handle_cancel(t->loop, h);
    h->fn(h->arg);
  }
  int r = cloop_await(&n->done, NULL);
  if (r == 0)
    return (int)n->done.value;
  if (!cloop_future_done(&n->done)) {
    if (kind == KIND_OP)
      cloop_op_cancel(t->loop, &n->u.op);
    else if (kind == KIND_ACCEPT)
      cloop_accept_cancel(&n->u.acc);
    else
      cloop_connect_cancel(&n->u.conn);
    cloop__await_quiet(&n->done); /* until the loop is done with it */
  }
  int result = (int)n->done.value;
  if (result >= 0) { /* it finished first: keep what it got */
    if (r == -ECANCELED)
      cloop__keep_cancel(t); /* deadlines stay expired by themselves */
    return result;
  }
  n->interrupted = r;
  return r;
}

static void op_prepare(cloop_task *t, net_op *n) {
  cloop_future_init(&n->done, t->loop);
}

/* One recv into buf (flags: 0 or MSG_PEEK). */
static ssize_t net_recv(cloop_task *t, net_op *n, int fd, void *buf,
                        size_t len, int flags) {
  int r = cloop__interruption(t);
  if (r)
    return r;
  if (len > INT_MAX)
    len = INT_MAX; /* results are ints */
  if (!cloop__on_shared_stack(t, buf)) {
    op_prepare(t, n);
    return op_wait(t, n, KIND_OP, cloop_op_recv(t->loop, &n->u.op, fd, buf, len, flags,
                                       op_done, n));
  }
  for (;;) {
    /* Through the loop: on io_uring the bytes may wait in its queue. */
    ssize_t k = cloop__recv_now(t->loop, fd, buf, len, flags);
    if (k != -EAGAIN)
      return k;
    /* Wait for data without handing the moving buffer to the loop. */
    op_prepare(t, n);
    r = op_wait(t, n, KIND_OP, cloop_op_recv(t->loop, &n->u.op, fd, n->scratch, 1,
                                    MSG_PEEK, op_done, n));
    if (r <= 0)
      return r; /* error, interruption or EOF */
  }
}

/* One send of some of buf. */
static ssize_t net_send(cloop_task *t, net_op *n, int fd, const void *buf,
                        size_t len) {
  int r = cloop__interruption(t);
  if (r)
    return r;
  if (len > INT_MAX)
    len = INT_MAX;
  if (!cloop__on_shared_stack(t, buf)) {
    op_prepare(t, n);
    return op_wait(t, n, KIND_OP, cloop_op_send(t->loop, &n->u.op, fd, buf, len,
                                       MSG_NOSIGNAL, op_done, n));
  }
  for (;;) {
    ssize_t k = send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (k >= 0)
      return k;
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return -errno;
    /* Full: wait by sending a copy of the first bytes from the op. */
    size_t chunk = len < SCRATCH ? len : SCRATCH;
    memcpy(n->scratch, buf, chunk);
    op_prepare(t, n);
    return op_wait(t, n, KIND_OP, cloop_op_send(t->loop, &n->u.op, fd, n->scratch,
                                       chunk, MSG_NOSIGNAL, op_done, n));
  }
}

/* Reads exactly len bytes that a peek has shown are in the socket. */
static ssize_t consume(cloop_task *t, net_op *n, int fd, char *buf,
                       size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t k = cloop__recv_now(t->loop, fd, buf + got, len - got, 0);
    if (k == -EAGAIN)
      k = net_recv(t, n, fd, buf + got, len - got, 0);
    if (k < 0)
      return k;
    if (k == 0)
      return -EIO; /* peeked bytes vanished: another reader took them */
    got += (size_t)k;
  }
  return (ssize_t)got;
}

/* ---- the calls ------------------------------------------------------- */

ssize_t cloop_sock_recv(int fd, void *buf, size_t len) {
  cloop_task *t = cloop__task_or_abort("cloop_sock_recv");
  net_op *n = op_new(t);
  if (!n)
    return -ENOMEM;
  ssize_t r = net_recv(t, n, fd, buf, len, 0);
  op_free(t, n);
  return r;
}

ssize_t cloop_sock_send(int fd, const void *buf, size_t len) {
  cloop_task *t = cloop__task_or_abort("cloop_sock_send");
  net_op *n = op_new(t);
  if (!n)
    return -ENOMEM;
  ssize_t r = net_send(t, n, fd, buf, len);
  op_free(t, n);
  return r;
}

ssize_t cloop_sock_sendall(int fd, const void *buf, size_t len) {
  cloop_task *t = cloop__task_or_abort("cloop_sock_sendall");
  net_op *n = op_new(t);
  if (!n)
    return -ENOMEM;
  size_t sent = 0;
  ssize_t r = 0;
  while (sent < len) {
    r = net_send(t, n, fd, (const char *)buf + sent, len - sent);
    if (r < 0)
      break;
    sent += (size_t)r;
  }
  op_free(t, n);
  return r < 0 ? r : (ssize_t)len;
}

/* Peeks at what has arrived, looks for the delimiter there (also one that
   began in bytes already taken), and consumes either everything peeked
   (no delimiter yet: those bytes are part of the answer anyway) or exactly
   up to and including the delimiter. Consuming what holds no delimiter is
   what lets the next peek wait for new bytes instead of seeing the same
   ones again. Cost: two syscalls per arrival. */
ssize_t cloop_sock_recv_until(int fd, void *buf, size_t max,
                              const void *delim, size_t delim_len) {
  cloop_task *t = cloop__task_or_abort("cloop_sock_recv_until");
  if (!delim || delim_len == 0)
    return -EINVAL;
  net_op *n = op_new(t);
  if (!n)
    return -ENOMEM;
  char *b = buf;
  size_t len = 0;
  ssize_t r;
  for (;;) {
    if (len == max) {
      r = CLOOP_ENODELIM;
      break;
    }
    r = net_recv(t, n, fd, b + len, max - len, MSG_PEEK);
    if (r <= 0) {
      if (r == 0)
        r = (ssize_t)len; /* EOF: what came before it */
      break;
    }
    size_t have = len + (size_t)r;
    size_t from = len >= delim_len - 1 ? len - (delim_len - 1) : 0;
    char *hit = memmem(b + from, have - from, delim, delim_len);
    size_t take = hit ? (size_t)(hit - b) + delim_len - len : (size_t)r;
    r = consume(t, n, fd, b + len, take);
    if (r < 0)
      break;
    len += take;
    if (hit) {
      r = (ssize_t)len;
      break;
    }
  }
  op_free(t, n);
  return r;
}

int cloop_sock_accept(int fd) {
  cloop_task *t = cloop__task_or_abort("cloop_sock_accept");
  int r = cloop__interruption(t);
  if (r)
    return r;
  net_op *n = op_new(t);
  if (!n)
    return -ENOMEM;
  op_prepare(t, n);
  r = op_wait(t, n, KIND_ACCEPT,
              cloop_accept_start(t->loop, &n->u.acc, fd, accept_done, n));
  op_free(t, n);
  return r;
}

int cloop_tcp_connect(const char *host, int port) {
  cloop_task *t = cloop__task_or_abort("cloop_tcp_connect");
  int r = cloop__interruption(t);
  if (r)
    return r;
  net_op *n = op_new(t);
  if (!n)
    return -ENOMEM;
  op_prepare(t, n);
  r = op_wait(t, n, KIND_CONNECT,
              cloop_connect_start(t->loop, &n->u.conn, host, port,
                                  connect_done, n));
  op_free(t, n);
  return r;
}

int cloop_unix_connect(const char *path) {
  cloop_task *t = cloop__task_or_abort("cloop_unix_connect");
  int r = cloop__interruption(t);
  if (r)
    return r;
  net_op *n = op_new(t);
  if (!n)
    return -ENOMEM;
  op_prepare(t, n);
  r = op_wait(t, n, KIND_CONNECT,
              cloop_connect_unix_start(t->loop, &n->u.conn, path, connect_done, n));
  op_free(t, n);
  return r;
}

/* ---- datagrams -------------------------------------------------------- */

/* Gives a received datagram's sender and flags to the caller. */
static void dgram_out(const cloop_op *op, struct sockaddr *addr,
                      socklen_t *addrlen, int *flags_out) {
  if (addr && addrlen) {
    socklen_t n = op->addrlen < *addrlen ? op->addrlen : *addrlen;
    memcpy(addr, &op->addr, n);
  }
  if (addrlen)
    *addrlen = op->addrlen;
  if (flags_out)
    *flags_out = (op->msg_flags & MSG_TRUNC) ? CLOOP_UDP_TRUNCATED : 0;
}

ssize_t cloop_udp_recvfrom(int fd, void *buf, size_t len,
                           struct sockaddr *addr, socklen_t *addrlen,
                           int *flags_out) {
  cloop_task *t = cloop__task_or_abort("cloop_udp_recvfrom");
  int r = cloop__interruption(t);
  if (r)
    return r;
  if (len > INT_MAX)
    len = INT_MAX;
  net_op *n = op_new(t);
  if (!n)
    return -ENOMEM;
  ssize_t k;
  if (!cloop__on_shared_stack(t, buf)) {
    op_prepare(t, n);
    k = op_wait(t, n, KIND_OP, cloop_op_recvmsg(t->loop, &n->u.op, fd, buf,
                                                len, 0, op_done, n));
    if (k >= 0)
      dgram_out(&n->u.op, addr, addrlen, flags_out);
    op_free(t, n);
    return k;
  }
  /* A shared-stack buffer moves while the task is parked: wait with a
     peek into the op object, then take the datagram while running. */
  for (;;) {
    struct sockaddr_storage from;
    struct iovec iov = {buf, len};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    k = recvmsg(fd, &msg, MSG_DONTWAIT);
    if (k >= 0) {
      n->u.op.addrlen = msg.msg_namelen;
      n->u.op.msg_flags = msg.msg_flags;
      memcpy(&n->u.op.addr, &from, msg.msg_namelen);
      dgram_out(&n->u.op, addr, addrlen, flags_out);
      break;
    }
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      k = -errno;
      break;
    }
    op_prepare(t, n);
    k = op_wait(t, n, KIND_OP, cloop_op_recvmsg(t->loop, &n->u.op, fd,
                                                n->scratch, 1, MSG_PEEK,
                                                op_done, n));
    if (k < 0)
      break;
  }
  op_free(t, n);
  return k;
}

ssize_t cloop_udp_sendto(int fd, const void *buf, size_t len,
                         const struct sockaddr *addr, socklen_t addrlen) {
  cloop_task *t = cloop__task_or_abort("cloop_udp_sendto");
  int r = cloop__interruption(t);
  if (r)
    return r;
  if (len > INT_MAX)
    return -EMSGSIZE;
  net_op *n = op_new(t);
  if (!n)
    return -ENOMEM;
  ssize_t k;
  if (!cloop__on_shared_stack(t, buf)) {
    op_prepare(t, n);
    k = op_wait(t, n, KIND_OP, cloop_op_sendmsg(t->loop, &n->u.op, fd, buf,
                                                len, addr, addrlen, 0,
                                                op_done, n));
    op_free(t, n);
    return k;
  }
  /* A shared-stack buffer: try at once; a full send buffer (rare) waits
     with a heap copy, since a datagram cannot go out in pieces. */
  for (;;) {
    k = sendto(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL, addr, addrlen);
    if (k >= 0 || errno != EINTR)
      break;
  }
  if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    void *copy = malloc(len ? len : 1);
    if (!copy) {
      k = -ENOMEM;
    } else {
      memcpy(copy, buf, len);
      op_prepare(t, n);
      k = op_wait(t, n, KIND_OP, cloop_op_sendmsg(t->loop, &n->u.op, fd, copy,
                                                  len, addr, addrlen, 0,
                                                  op_done, n));
      free(copy);
    }
  } else if (k < 0) {
    k = -errno;
  }
  op_free(t, n);
  return k;
}

int cloop_sock_close(int fd) {
  cloop_task *t = cloop__running_task();
  if (t)
    return cloop_close_fd(t->loop, fd);
  return close(fd) == 0 ? 0 : -errno; /* no loop to tell */
}

int cloop_sock_shutdown(int fd, int how) {
  return shutdown(fd, how) == 0 ? 0 : -errno;
}
