/* net.c -- sockets on the coroutine level: asyncio's sock_recv, sock_sendall,
 * sock_accept, create_connection (the seeds'), on the I/O operations of io.c.
 *
 * A waiting call starts one cloop_op and parks its task on a future that
 * the op's callback completes. The op and the future live in an object from
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
 * The user's buffer is a hazard of the same kind: the epoll path reads into
 * it from a callback while the task is parked. A buffer on the shared stack
 * is therefore never handed to an op; the task waits with a one-byte peek
 * into the op object (recv) or sends from a copy in it (send), and moves the
 * data itself while it runs. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "task.h"

#define MS 1000000LL
#define SCRATCH 256 /* bytes of a shared-stack send moved per wait */

typedef struct net_op {
  cloop_op op;
  cloop_future done;  /* completed by the op's callback */
  int interrupted;    /* the last wait was cut short (-ECANCELED/-ETIMEDOUT) */
  char scratch[SCRATCH];
} net_op;

const size_t cloop__net_op_size = sizeof(net_op);

/* Called by every waiting function: the task running now, or abort. */
static cloop_task *running_task(const char *fn) {
  cloop_task *t = cloop__running;
  if (!t)
    cloop__misuse("%s called outside a task (on the loop's own stack or "
                  "another thread)", fn);
  return t;
}

static net_op *op_new(cloop_loop *loop) {
  return cloop__slab_alloc(&loop->net_ops); /* zeroed */
}

static void op_free(cloop_loop *loop, net_op *n) {
  cloop__slab_give(&loop->net_ops, n);
}

static void op_done(cloop_op *op) {
  net_op *n = op->data;
  cloop_future_set_result(&n->done, op->result);
}

/* Whether p lies on the loop's shared stack while t runs there. */
static int on_shared_stack(const cloop_task *t, const void *p) {
  const cloop_loop *loop = t->loop;
  return t->shared && (const char *)p >= loop->shared_lo &&
         (const char *)p < loop->shared_lo + loop->stacks.size;
}

/* Waits for n's op, which `started` (the cloop_op_* return) began. Returns
   its result (>= 0 or -errno) or the task's interruption. */
static int op_wait(cloop_task *t, net_op *n, int started) {
  n->interrupted = 0;
  if (started < 0)
    return started;
  if (n->op.handle.next) {
    /* It finished at once (epoll: the first try worked) and its callback is
       queued for the next batch: run it now instead, which saves the task
       two trips through the ready ring. */
    cloop_handle_cancel(t->loop, &n->op.handle);
    n->op.handle.fn(n->op.handle.arg);
    return n->op.result;
  }
  int r = cloop_await(&n->done, NULL);
  if (r == 0)
    return n->op.result;
  if (!cloop_future_done(&n->done)) {
    cloop_op_cancel(t->loop, &n->op);
    cloop__await_quiet(&n->done); /* until the loop is done with the op */
  }
  if (n->op.result >= 0) { /* it finished first: keep what it got */
    if (r == -ECANCELED)
      t->cancel_pending = 1; /* deadlines stay expired by themselves */
    return n->op.result;
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
  if (!on_shared_stack(t, buf)) {
    op_prepare(t, n);
    return op_wait(t, n, cloop_op_recv(t->loop, &n->op, fd, buf, len, flags,
                                       op_done, n));
  }
  for (;;) {
    ssize_t k = recv(fd, buf, len, flags | MSG_DONTWAIT);
    if (k >= 0)
      return k;
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return -errno;
    /* Wait for data without handing the moving buffer to the loop. */
    op_prepare(t, n);
    r = op_wait(t, n, cloop_op_recv(t->loop, &n->op, fd, n->scratch, 1,
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
  if (!on_shared_stack(t, buf)) {
    op_prepare(t, n);
    return op_wait(t, n, cloop_op_send(t->loop, &n->op, fd, buf, len,
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
    return op_wait(t, n, cloop_op_send(t->loop, &n->op, fd, n->scratch,
                                       chunk, MSG_NOSIGNAL, op_done, n));
  }
}

/* Reads exactly len bytes that a peek has shown are in the socket. */
static ssize_t consume(cloop_task *t, net_op *n, int fd, char *buf,
                       size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t k = recv(fd, buf + got, len - got, MSG_DONTWAIT);
    if (k < 0 && errno == EINTR)
      continue;
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      k = net_recv(t, n, fd, buf + got, len - got, 0);
    else if (k < 0)
      k = -errno;
    if (k < 0)
      return k;
    if (k == 0)
      return -EIO; /* peeked bytes vanished: another reader took them */
    got += (size_t)k;
  }
  return (ssize_t)got;
}

static void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* not TCP: ignored */
}

/* ---- the calls ------------------------------------------------------- */

ssize_t cloop_sock_recv(int fd, void *buf, size_t len) {
  cloop_task *t = running_task("cloop_sock_recv");
  net_op *n = op_new(t->loop);
  if (!n)
    return -ENOMEM;
  ssize_t r = net_recv(t, n, fd, buf, len, 0);
  op_free(t->loop, n);
  return r;
}

ssize_t cloop_sock_send(int fd, const void *buf, size_t len) {
  cloop_task *t = running_task("cloop_sock_send");
  net_op *n = op_new(t->loop);
  if (!n)
    return -ENOMEM;
  ssize_t r = net_send(t, n, fd, buf, len);
  op_free(t->loop, n);
  return r;
}

ssize_t cloop_sock_sendall(int fd, const void *buf, size_t len) {
  cloop_task *t = running_task("cloop_sock_sendall");
  net_op *n = op_new(t->loop);
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
  op_free(t->loop, n);
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
  cloop_task *t = running_task("cloop_sock_recv_until");
  if (!delim || delim_len == 0)
    return -EINVAL;
  net_op *n = op_new(t->loop);
  if (!n)
    return -ENOMEM;
  char *b = buf;
  size_t len = 0;
  ssize_t r;
  for (;;) {
    if (len == max) {
      r = -EMSGSIZE;
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
  op_free(t->loop, n);
  return r;
}

int cloop_sock_accept(int fd) {
  cloop_task *t = running_task("cloop_sock_accept");
  int r = cloop__interruption(t);
  if (r)
    return r;
  net_op *n = op_new(t->loop);
  if (!n)
    return -ENOMEM;
  do {
    op_prepare(t, n);
    r = op_wait(t, n, cloop_op_accept(t->loop, &n->op, fd, op_done, n));
  } while (r == -ECONNABORTED); /* that one left before we took it */
  op_free(t->loop, n);
  if (r >= 0) {
    set_nodelay(r);
  } else if (r == -EMFILE || r == -ENFILE) {
    /* The connection stays queued and the listener readable: a caller
       that retries at once would spin. */
    int s = cloop_sleep(10 * MS);
    if (s < 0)
      r = s;
  }
  return r;
}

int cloop_sock_close(int fd) {
  cloop_task *t = cloop__running;
  if (t)
    return cloop_close_fd(t->loop, fd);
  return close(fd) == 0 ? 0 : -errno; /* no loop to tell */
}

int cloop_sock_shutdown(int fd, int how) {
  return shutdown(fd, how) == 0 ? 0 : -errno;
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

/* A numeric IPv4 or IPv6 address; 0 or -EINVAL. */
static int numeric_addr(const char *host, int port,
                        struct sockaddr_storage *ss, socklen_t *len) {
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *sin = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    *len = sizeof *sin;
    return 0;
  }
  if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    *len = sizeof *sin6;
    return 0;
  }
  return -EINVAL;
}

int cloop_tcp_listen(const char *host, int port, int backlog, int flags) {
  if (port < 0 || port > 65535 || (flags & ~CLOOP_REUSEPORT))
    return -EINVAL;
  struct sockaddr_storage ss;
  socklen_t len;
  if (!host) {
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    memset(&ss, 0, sizeof ss);
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_ANY);
    sin->sin_port = htons((uint16_t)port);
    len = sizeof *sin;
  } else if (numeric_addr(host, port, &ss, &len) < 0) {
    return -EINVAL;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  IPPROTO_TCP);
  if (fd < 0)
    return -errno;
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      ((flags & CLOOP_REUSEPORT) &&
       setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
      bind(fd, (struct sockaddr *)&ss, len) < 0 ||
      listen(fd, backlog > 0 ? backlog : SOMAXCONN) < 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  return fd;
}

/* ---- connecting ------------------------------------------------------ */

/* One attempt: a new socket connected to addr, or -errno (n->interrupted
   set if the task's interruption ended it). */
static int connect_one(cloop_task *t, net_op *n, const struct sockaddr *addr,
                       socklen_t len) {
  n->interrupted = 0;
  int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  IPPROTO_TCP);
  if (fd < 0)
    return -errno;
  cloop__fd_fresh(t->loop, fd);
  op_prepare(t, n);
  int r = op_wait(t, n, cloop_op_connect(t->loop, &n->op, fd, addr, len,
                                         op_done, n));
  if (r < 0) {
    cloop_close_fd(t->loop, fd);
    return r;
  }
  set_nodelay(fd);
  return fd;
}

/* A name lookup on a short-lived thread of its own. The thread answers
   through cloop_call_threadsafe -- unless the task gave up waiting first
   (state ABANDONED); then the thread frees everything and never touches
   the loop, which may be gone by then. */
enum { LOOKUP_RUNNING, LOOKUP_ABANDONED, LOOKUP_ANSWERED };

typedef struct lookup {
  cloop_handle answer; /* queued by the thread on the loop */
  cloop_future done;
  cloop_loop *loop;
  atomic_int state;
  int gai, sys_errno;
  struct addrinfo *res;
  char port[8];
  char host[];
} lookup;

static void lookup_answered(void *arg) {
  lookup *l = arg;
  cloop_unref(l->loop);
  cloop_future_set_result(&l->done, 0);
}

static void *lookup_thread(void *arg) {
  lookup *l = arg;
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  hints.ai_flags = AI_NUMERICSERV;
  l->gai = getaddrinfo(l->host, l->port, &hints, &l->res);
  l->sys_errno = errno;
  int running = LOOKUP_RUNNING;
  if (atomic_compare_exchange_strong(&l->state, &running, LOOKUP_ANSWERED)) {
    cloop_call_threadsafe(l->loop, &l->answer); /* last touch of l */
  } else {
    if (l->res)
      freeaddrinfo(l->res);
    free(l);
  }
  return NULL;
}

static int lookup_error(const lookup *l) {
  switch (l->gai) {
  case 0: return 0;
  case EAI_AGAIN: return -EAGAIN;
  case EAI_MEMORY: return -ENOMEM;
  case EAI_SYSTEM: return l->sys_errno ? -l->sys_errno : -EIO;
  default: return -ENOENT; /* EAI_NONAME, EAI_NODATA, EAI_FAIL, ... */
  }
}

/* Resolves host off the loop's thread; *out gets the list to free with
   freeaddrinfo. Returns 0 or -errno, or the task's interruption. */
static int resolve(cloop_task *t, const char *host, int port,
                   struct addrinfo **out) {
  size_t hlen = strlen(host);
  lookup *l = malloc(sizeof *l + hlen + 1);
  if (!l)
    return -ENOMEM;
  memset(l, 0, sizeof *l);
  memcpy(l->host, host, hlen + 1);
  snprintf(l->port, sizeof l->port, "%d", port);
  l->loop = t->loop;
  atomic_init(&l->state, LOOKUP_RUNNING);
  cloop_handle_init(&l->answer, lookup_answered, l);
  cloop_future_init(&l->done, t->loop);

  pthread_attr_t attr;
  pthread_t thread;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  cloop_ref(t->loop); /* the answer is still to come */
  int err = pthread_create(&thread, &attr, lookup_thread, l);
  pthread_attr_destroy(&attr);
  if (err) {
    cloop_unref(t->loop);
    free(l);
    return -err; /* EAGAIN: no thread now */
  }
  int r = cloop_await(&l->done, NULL);
  if (r < 0) {
    int running = LOOKUP_RUNNING;
    if (atomic_compare_exchange_strong(&l->state, &running, LOOKUP_ABANDONED)) {
      cloop_unref(t->loop);
      return r; /* the thread cleans up */
    }
    cloop__await_quiet(&l->done); /* the answer is on its way: let it land */
    if (l->res)
      freeaddrinfo(l->res);
    free(l);
    return r;
  }
  r = lookup_error(l);
  *out = l->res;
  free(l);
  return r;
}

int cloop_tcp_connect(const char *host, int port) {
  cloop_task *t = running_task("cloop_tcp_connect");
  int r = cloop__interruption(t);
  if (r)
    return r;
  if (!host || port < 0 || port > 65535)
    return -EINVAL;
  net_op *n = op_new(t->loop);
  if (!n)
    return -ENOMEM;
  struct sockaddr_storage ss;
  socklen_t len;
  if (numeric_addr(host, port, &ss, &len) == 0) {
    r = connect_one(t, n, (struct sockaddr *)&ss, len);
  } else {
    struct addrinfo *res = NULL;
    r = resolve(t, host, port, &res);
    if (r == 0) {
      r = -ENOENT;
      for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        r = connect_one(t, n, ai->ai_addr, ai->ai_addrlen);
        if (r >= 0 || n->interrupted)
          break;
      }
    }
    if (res)
      freeaddrinfo(res);
  }
  op_free(t->loop, n);
  return r;
}
