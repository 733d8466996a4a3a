/* tcp.c -- the socket policy of both Swift fronts and of the coroutine
 * level, on the callback level: listening, accepting (what to do when an
 * accept fails) and connecting (resolve, then try each address in turn;
 * unix.c connects to one address through the same connector).
 * net.c's cloop_sock_accept and cloop_tcp_connect are these helpers and a
 * wait; the Swift async front uses them directly. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop/loop.h"

#define MS 1000000LL
#define ACCEPT_PAUSE (10 * MS) /* after EMFILE and its kin, see below */

static void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* not TCP: ignored */
}

/* ---- listening ---------------------------------------------------------- */

/* Binds and listens on one address: the fd, or -errno. */
static int listen_on(const struct sockaddr *sa, socklen_t len, int backlog,
                     int flags) {
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  IPPROTO_TCP);
  if (fd < 0)
    return -errno;
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      ((flags & CLOOP_REUSEPORT) &&
       setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
      bind(fd, sa, len) < 0 ||
      listen(fd, backlog > 0 ? backlog : SOMAXCONN) < 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  return fd;
}

int cloop_tcp_listen(const char *host, int port, int backlog, int flags) {
  if (port < 0 || port > 65535 || (flags & ~CLOOP_REUSEPORT))
    return -EINVAL;
  /* NULL: every IPv4 interface. "localhost" is the IPv4 loopback, so a
     client dialling 127.0.0.1 finds it whatever the resolver prefers. */
  if (!host)
    host = "0.0.0.0";
  else if (strcmp(host, "localhost") == 0)
    host = "127.0.0.1";
  char port_text[8];
  snprintf(port_text, sizeof port_text, "%d", port);
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  /* A name is looked up here, blocking: a server starts listening once. */
  int gai = getaddrinfo(host, port_text, &hints, &res);
  if (gai != 0)
    return gai == EAI_AGAIN ? -EAGAIN : gai == EAI_MEMORY ? -ENOMEM
         : gai == EAI_SYSTEM ? -errno : CLOOP_ENOHOST;
  int r = CLOOP_ENOHOST;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
    if ((r = listen_on(ai->ai_addr, ai->ai_addrlen, backlog, flags)) >= 0)
      break;
  freeaddrinfo(res);
  return r;
}

int cloop_sock_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
    return -errno;
  if (ss.ss_family == AF_INET)
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  if (ss.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return -EAFNOSUPPORT;
}

/* ---- accepting ---------------------------------------------------------- */

enum { ACC_IDLE = 0, ACC_ACCEPTING, ACC_PAUSED };

static void accept_done(cloop_op *op);

static void accept_finish(cloop_acceptor *a, int result) {
  a->state = ACC_IDLE;
  a->result = result;
  a->fn(a);
}

/* After the pause that follows EMFILE, or a cancel during it. */
static void accept_pause_over(void *arg) {
  cloop_acceptor *a = arg;
  accept_finish(a, a->result);
}

/* What an accept's failure means:
   - ECONNABORTED: that connection left before we took it: accept again.
   - EMFILE, ENFILE, ENOBUFS, ENOMEM: out of descriptors or memory. The
     connection stays queued and the listener readable, so a caller that
     retried at once would spin: the error is reported after a pause.
   - anything else (EBADF, EINVAL: not listening; ECANCELED): reported. */
static void accept_done(cloop_op *op) {
  cloop_acceptor *a = op->data;
  int r = op->result;
  if (r >= 0) {
    set_nodelay(r);
    accept_finish(a, r);
  } else if (r == -ECONNABORTED && !a->cancelled) {
    int s = cloop_op_accept(op->loop, &a->op, op->fd, accept_done, a);
    if (s < 0)
      accept_finish(a, s);
  } else if ((r == -EMFILE || r == -ENFILE || r == -ENOBUFS || r == -ENOMEM) &&
             !a->cancelled) {
    a->state = ACC_PAUSED;
    a->result = r;
    cloop_timer_init(&a->pause, accept_pause_over, a);
    if (cloop_call_later(op->loop, &a->pause, ACCEPT_PAUSE) < 0)
      accept_finish(a, r);
  } else {
    accept_finish(a, r);
  }
}

int cloop_accept_start(cloop_loop *loop, cloop_acceptor *a, int fd,
                       cloop_acceptor_fn fn, void *data) {
  if (a->state != ACC_IDLE)
    cloop__misuse("cloop_acceptor %p started again while accepting", (void *)a);
  a->fn = fn;
  a->data = data;
  a->cancelled = 0;
  a->result = 0;
  int r = cloop_op_accept(loop, &a->op, fd, accept_done, a);
  if (r == 0)
    a->state = ACC_ACCEPTING;
  return r;
}

int cloop_accept_cancel(cloop_acceptor *a) {
  if (a->state == ACC_ACCEPTING && !a->cancelled) {
    a->cancelled = 1;
    return cloop_op_cancel(a->op.loop, &a->op);
  }
  if (a->state == ACC_PAUSED && !a->cancelled) {
    a->cancelled = 1;
    cloop_loop *loop = a->op.loop;
    cloop_timer_cancel(loop, &a->pause);
    a->result = -ECANCELED;
    cloop_call_later(loop, &a->pause, 0); /* the callback still comes later */
    return 1;
  }
  return 0;
}

/* ---- connecting --------------------------------------------------------- */

enum { CONN_IDLE = 0, CONN_RESOLVING, CONN_CONNECTING };

static void connect_next(cloop_connector *c);

static void connect_finish(cloop_connector *c, int result) {
  cloop_resolve_free(&c->resolve);
  c->next = NULL;
  c->state = CONN_IDLE;
  c->result = result;
  c->fn(c);
}

static void connected(cloop_op *op) {
  cloop_connector *c = op->data;
  if (op->result == 0) {
    set_nodelay(c->fd);
    connect_finish(c, c->fd); /* also if a cancel came too late */
    return;
  }
  cloop_close_fd(op->loop, c->fd);
  c->fd = -1;
  c->last_error = op->result;
  if (c->cancelled)
    connect_finish(c, -ECANCELED);
  else
    connect_next(c);
}

/* Starts a connect to the next address; when none is left, finishes with
   the last attempt's error. */
static void connect_next(cloop_connector *c) {
  cloop_loop *loop = c->resolve.loop;
  while (c->next) {
    struct addrinfo *ai = c->next;
    c->next = ai->ai_next;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    IPPROTO_TCP);
    if (fd < 0) {
      c->last_error = -errno;
      continue;
    }
    cloop__fd_fresh(loop, fd);
    int r = cloop_op_connect(loop, &c->op, fd, ai->ai_addr, ai->ai_addrlen,
                             connected, c);
    if (r < 0) {
      close(fd);
      c->last_error = r;
      continue;
    }
    c->fd = fd;
    c->state = CONN_CONNECTING;
    return;
  }
  connect_finish(c, c->last_error);
}

static void resolved(cloop_resolve *req) {
  cloop_connector *c = req->data;
  if (c->cancelled || req->result < 0) {
    connect_finish(c, c->cancelled ? -ECANCELED : req->result);
    return;
  }
  c->next = req->addrs;
  connect_next(c);
}

int cloop_connect_start(cloop_loop *loop, cloop_connector *c, const char *host,
                        int port, cloop_connector_fn fn, void *data) {
  if (c->state != CONN_IDLE)
    cloop__misuse("cloop_connector %p started again while connecting", (void *)c);
  c->fn = fn;
  c->data = data;
  c->cancelled = 0;
  c->result = 0;
  c->fd = -1;
  c->next = NULL;
  c->last_error = CLOOP_ENOHOST; /* if the name has no address */
  int r = cloop_resolve_start(loop, &c->resolve, host, port, SOCK_STREAM, 0,
                              resolved, c);
  if (r == 0)
    c->state = CONN_RESOLVING;
  return r;
}

int cloop__connect_addr(cloop_loop *loop, cloop_connector *c,
                        const struct sockaddr *sa, socklen_t len,
                        cloop_connector_fn fn, void *data) {
  if (c->state != CONN_IDLE)
    cloop__misuse("cloop_connector %p started again while connecting", (void *)c);
  c->fn = fn;
  c->data = data;
  c->cancelled = 0;
  c->result = 0;
  c->next = NULL;
  c->resolve.loop = loop; /* connect_next's loop; no lookup runs */
  c->resolve.addrs = NULL;
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  cloop__fd_fresh(loop, fd);
  int r = cloop_op_connect(loop, &c->op, fd, sa, len, connected, c);
  if (r < 0) {
    close(fd);
    return r;
  }
  c->fd = fd;
  c->last_error = 0;
  c->state = CONN_CONNECTING;
  return 0;
}

int cloop_connect_cancel(cloop_connector *c) {
  if (c->cancelled || c->state == CONN_IDLE)
    return 0;
  c->cancelled = 1;
  if (c->state == CONN_RESOLVING)
    cloop_resolve_cancel(&c->resolve);
  else
    cloop_op_cancel(c->op.loop, &c->op);
  return 1;
}
