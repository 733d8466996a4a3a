/* test_io.c -- the callback level's I/O operations (io.c: cloop_op_*) and
 * socket policy (resolve.c, tcp.c: cloop_resolve_*, cloop_accept_*,
 * cloop_connect_*), on both backends: a round trip of accept, connect,
 * send and recv; EOF; a refused connect; cancel and close under an
 * operation in flight; one operation per side; the misuse of starting an
 * operation again while it is in flight or its callback queued (also on
 * another fd); name resolution, numeric and off the thread, and its
 * cancel; the connector trying each address; the acceptor's pause when
 * out of descriptors. */
#include "test.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define MS 1000000LL

typedef struct seen {
  cloop_op op;
  int calls;
  int result;
} seen;

static void on_done(cloop_op *op) {
  seen *s = op->data;
  s->calls++;
  s->result = op->result;
}

static void pair(int sv[2]) {
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                       sv), 0);
}

/* Runs iterations (none waiting over 10 ms) until *calls is non-zero, at
   most 2 s. */
static void run_until(cloop_loop *loop, const int *calls) {
  uint64_t end = test_clock_ns() + 2000 * MS;
  while (!*calls) {
    ASSERT_LT(test_clock_ns(), end);
    ASSERT_GE(cloop_run_once(loop, 10 * MS), 0);
  }
}

static struct sockaddr_in loopback(int port) {
  struct sockaddr_in to;
  memset(&to, 0, sizeof to);
  to.sin_family = AF_INET;
  to.sin_port = htons((uint16_t)port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return to;
}

/* A port that was free a moment ago: bound, never listened on, closed. */
static int dead_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sin = loopback(0);
  ASSERT_EQ(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
  int port = cloop_sock_port(fd);
  ASSERT_GT(port, 0);
  close(fd);
  return port;
}

/* ---- operations ---------------------------------------------------------- */

TEST_IMPL_POLL(io_round_trip) {
  cloop_loop *loop;
  LOOP_NEW(loop, backend);
  int lfd = cloop_tcp_listen("127.0.0.1", 0, 16, 0);
  ASSERT_GE(lfd, 0);
  struct sockaddr_in to = loopback(cloop_sock_port(lfd));
  int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  ASSERT_GE(c, 0);
  seen a = {0}, k = {0};
  ASSERT_EQ(cloop_op_accept(loop, &a.op, lfd, on_done, &a), 0);
  ASSERT_EQ(cloop_op_connect(loop, &k.op, c, (struct sockaddr *)&to, sizeof to,
                             on_done, &k), 0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(a.calls, 1);
  ASSERT_EQ(k.calls, 1);
  ASSERT_EQ(k.result, 0);
  int s = a.result;
  ASSERT_GE(s, 0);
  ASSERT_EQ(a.op.addr.ss_family, AF_INET);
  ASSERT_EQ(fcntl(s, F_GETFL) & O_NONBLOCK, O_NONBLOCK);
  ASSERT_EQ(fcntl(s, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);

  /* 1 MiB from c to s in as many pieces as the sends and recvs make, every
     byte checked. */
  enum { N = 1 << 20 };
  char *out = malloc(N), *in = malloc(N);
  for (int i = 0; i < N; i++)
    out[i] = (char)(i * 31 + 7);
  size_t sent = 0, got = 0;
  seen snd = {0}, rcv = {0};
  int busy_snd = 0, busy_rcv = 0;
  while (got < N) {
    if (sent < N && !busy_snd) {
      ASSERT_EQ(cloop_op_send(loop, &snd.op, c, out + sent, N - sent, 0,
                              on_done, &snd), 0);
      busy_snd = 1;
    }
    if (!busy_rcv) {
      ASSERT_EQ(cloop_op_recv(loop, &rcv.op, s, in + got, N - got, 0, on_done,
                              &rcv), 0);
      busy_rcv = 1;
    }
    ASSERT_GE(cloop_run_once(loop, 100 * MS), 0);
    if (snd.calls) {
      ASSERT_GT(snd.result, 0);
      sent += (size_t)snd.result;
      snd.calls = busy_snd = 0;
    }
    if (rcv.calls) {
      ASSERT_GT(rcv.result, 0);
      got += (size_t)rcv.result;
      rcv.calls = busy_rcv = 0;
    }
  }
  ASSERT(memcmp(in, out, N) == 0);
  free(in);
  free(out);

  /* EOF: a recv completes with 0 once the peer is gone. */
  seen eof = {0};
  char b;
  ASSERT_EQ(cloop_op_recv(loop, &eof.op, s, &b, 1, 0, on_done, &eof), 0);
  ASSERT_EQ(cloop_close_fd(loop, c), 0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(eof.calls, 1);
  ASSERT_EQ(eof.result, 0);

  /* A send to a peer that is gone: -EPIPE or -ECONNRESET, never SIGPIPE. */
  seen dead = {0};
  int e = 0;
  for (int i = 0; i < 4 && e >= 0; i++) {
    dead.calls = 0;
    ASSERT_EQ(cloop_op_send(loop, &dead.op, s, "x", 1, 0, on_done, &dead), 0);
    run_until(loop, &dead.calls);
    e = dead.result;
  }
  ASSERT(e == -EPIPE || e == -ECONNRESET);
  ASSERT_EQ(cloop_close_fd(loop, s), 0);

  /* A connect to a port nobody listens on. */
  struct sockaddr_in nobody = loopback(dead_port());
  c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  ASSERT_EQ(cloop_op_connect(loop, &k.op, c, (struct sockaddr *)&nobody,
                             sizeof nobody, on_done, &k), 0);
  k.calls = 0;
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(k.calls, 1);
  ASSERT_EQ(k.result, -ECONNREFUSED);
  ASSERT_EQ(cloop_close_fd(loop, c), 0);
  ASSERT_EQ(cloop_close_fd(loop, lfd), 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

TEST_IMPL_POLL(io_cancel_and_close) {
  cloop_loop *loop;
  LOOP_NEW(loop, backend);
  int sv[2];
  pair(sv);
  char buf[8];
  seen r = {0};
  /* Cancel: the callback runs once, with -ECANCELED; a second cancel and
     one after the callback find nothing. */
  ASSERT_EQ(cloop_op_recv(loop, &r.op, sv[0], buf, sizeof buf, 0, on_done, &r), 0);
  ASSERT_EQ(cloop_run_once(loop, 0), 1);
  ASSERT_EQ(r.calls, 0);
  ASSERT_EQ(cloop_op_cancel(loop, &r.op), 1);
  ASSERT_EQ(cloop_op_cancel(loop, &r.op), 0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(r.calls, 1);
  ASSERT_EQ(r.result, -ECANCELED);
  ASSERT_EQ(cloop_op_cancel(loop, &r.op), 0);

  /* The op may start again after its callback, and then gets the data. */
  ASSERT_EQ(write(sv[1], "hi", 2), 2);
  r.calls = 0;
  ASSERT_EQ(cloop_op_recv(loop, &r.op, sv[0], buf, sizeof buf, 0, on_done, &r), 0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(r.calls, 1);
  ASSERT_EQ(r.result, 2);

  /* One operation per side: a second recv is -EBUSY, a send is fine. */
  seen r2 = {0}, w = {0};
  r.calls = 0;
  ASSERT_EQ(cloop_op_recv(loop, &r.op, sv[0], buf, sizeof buf, 0, on_done, &r), 0);
  ASSERT_EQ(cloop_op_recv(loop, &r2.op, sv[0], buf, sizeof buf, 0, on_done, &r2),
            -EBUSY);
  ASSERT_EQ(cloop_op_send(loop, &w.op, sv[0], "ok", 2, 0, on_done, &w), 0);
  run_until(loop, &w.calls);
  ASSERT_EQ(w.result, 2);

  /* cloop_close_fd under the recv: it completes with -EBADF, once. */
  ASSERT_EQ(cloop_close_fd(loop, sv[0]), 0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(r.calls, 1);
  ASSERT_EQ(r.result, -EBADF);
  ASSERT_EQ(r2.calls, 0);
  ASSERT_EQ(close(sv[1]), 0);

  /* Bad arguments: fn is not called. */
  seen bad = {0};
  ASSERT_EQ(cloop_op_recv(loop, &bad.op, -1, buf, 1, 0, on_done, &bad), -EBADF);
  ASSERT_EQ(cloop_op_recv(loop, &bad.op, 0, buf, 1, 0, NULL, &bad), -EINVAL);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(bad.calls, 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* Starting an op again while it is in flight -- on the same fd or on
   another one -- or while its callback is queued stops the program. */
static cloop_backend misuse_backend;

static void restart_in_flight(void *other_fd) {
  cloop_loop *loop;
  cloop_options o;
  cloop_options_init(&o);
  o.backend = misuse_backend;
  if (cloop_loop_new(&loop, &o) < 0)
    exit(0); /* no such backend: no abort, and the caller skips */
  int a[2], b[2];
  pair(a);
  pair(b);
  static char buf[8];
  static seen r;
  cloop_op_recv(loop, &r.op, a[0], buf, sizeof buf, 0, on_done, &r);
  cloop_run_once(loop, 0);
  cloop_op_recv(loop, &r.op, other_fd ? b[0] : a[0], buf, sizeof buf, 0,
                on_done, &r);
}

static void restart_queued(void *unused) {
  (void)unused;
  cloop_loop *loop;
  cloop_options o;
  cloop_options_init(&o);
  o.backend = misuse_backend;
  if (cloop_loop_new(&loop, &o) < 0)
    exit(0);
  int a[2];
  pair(a);
  static char buf[8];
  static seen r;
  cloop_op_recv(loop, &r.op, a[0], buf, sizeof buf, 0, on_done, &r);
  cloop_run_once(loop, 0);
  cloop_op_cancel(loop, &r.op); /* complete, its callback queued */
  cloop_op_recv(loop, &r.op, a[0], buf, sizeof buf, 0, on_done, &r);
}

TEST_IMPL_POLL(io_restart_aborts) {
  cloop_loop *probe;
  LOOP_NEW(probe, backend); /* skips where the backend is missing */
  ASSERT_EQ(cloop_loop_free(probe), 0);
  misuse_backend = backend;
  test_expect_abort("restart in flight, same fd", restart_in_flight, NULL,
                    "started again while in flight");
  /* The check comes before the op's fields change: with the fd changed
     first, it looked at the new fd's slot and missed the misuse. */
  test_expect_abort("restart in flight, another fd", restart_in_flight,
                    (void *)1, "started again while in flight");
  test_expect_abort("restart with callback queued", restart_queued, NULL,
                    "callback is queued");
  return 0;
}

/* ---- name resolution ------------------------------------------------------ */

typedef struct looked {
  cloop_resolve req;
  int calls;
} looked;

static void on_resolved(cloop_resolve *req) {
  ((looked *)req->data)->calls++;
}

static int family_of(const cloop_resolve *req) {
  return req->addrs ? req->addrs->ai_family : -1;
}

TEST_IMPL_POLL(io_resolve) {
  cloop_loop *loop;
  LOOP_NEW(loop, backend);
  /* Numeric: no thread; still a callback from the ready ring. */
  looked n = {0};
  ASSERT_EQ(cloop_resolve_start(loop, &n.req, "127.0.0.1", 80, SOCK_STREAM, 0,
                                on_resolved, &n), 0);
  ASSERT_EQ(n.calls, 0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(n.calls, 1);
  ASSERT_EQ(n.req.result, 0);
  ASSERT_EQ(family_of(&n.req), AF_INET);
  ASSERT_EQ(ntohs(((struct sockaddr_in *)n.req.addrs->ai_addr)->sin_port), 80);
  cloop_resolve_free(&n.req);
  ASSERT(n.req.addrs == NULL);

  /* A name: looked up off the loop's thread. */
  looked l = {0};
  ASSERT_EQ(cloop_resolve_start(loop, &l.req, "localhost", 8080, SOCK_STREAM, 0,
                                on_resolved, &l), 0);
  ASSERT_EQ(cloop_run(loop), 0); /* the lookup keeps the loop alive */
  ASSERT_EQ(l.calls, 1);
  ASSERT_EQ(l.req.result, 0);
  ASSERT(family_of(&l.req) == AF_INET || family_of(&l.req) == AF_INET6);
  cloop_resolve_free(&l.req);

  /* No such host: our own code, not ENOENT. */
  looked x = {0};
  ASSERT_EQ(cloop_resolve_start(loop, &x.req, "no-such-host.invalid", 1,
                                SOCK_STREAM, 0, on_resolved, &x), 0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(x.calls, 1);
  ASSERT(x.req.result == CLOOP_ENOHOST || x.req.result == -EAGAIN);
  ASSERT(x.req.addrs == NULL);

  /* Cancelled while the thread looks: -ECANCELED at once (from the ready
     ring), and the thread's answer, when it comes, is dropped. */
  looked c = {0};
  ASSERT_EQ(cloop_resolve_start(loop, &c.req, "localhost", 1, SOCK_STREAM, 0,
                                on_resolved, &c), 0);
  ASSERT_EQ(cloop_resolve_cancel(&c.req), 1);
  ASSERT_EQ(cloop_resolve_cancel(&c.req), 0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(c.calls, 1);
  ASSERT_EQ(c.req.result, -ECANCELED);
  ASSERT(c.req.addrs == NULL);

  ASSERT_EQ(cloop_resolve_start(loop, &x.req, NULL, 1, SOCK_STREAM, 0,
                                on_resolved, &x), -EINVAL);
  ASSERT_EQ(cloop_resolve_start(loop, &x.req, "::1", 65536, SOCK_STREAM, 0,
                                on_resolved, &x), -EINVAL);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* ---- the connector and the acceptor ---------------------------------------- */

typedef struct dialled {
  cloop_connector c;
  int calls;
} dialled;

static void on_connected(cloop_connector *c) {
  ((dialled *)c->data)->calls++;
}

typedef struct taken {
  cloop_acceptor a;
  int calls;
  uint64_t at; /* when the callback ran: the loop's time, ns */
} taken;

static void on_accepted(cloop_acceptor *a) {
  taken *t = a->data;
  t->calls++;
  t->at = cloop_now(a->op.loop);
}

static int nodelay(int fd) {
  int on = 0;
  socklen_t len = sizeof on;
  ASSERT_EQ(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
  return on != 0;
}

TEST_IMPL_POLL(io_connector_and_acceptor) {
  cloop_loop *loop;
  LOOP_NEW(loop, backend);
  int lfd = cloop_tcp_listen("127.0.0.1", 0, 16, 0);
  ASSERT_GE(lfd, 0);
  int port = cloop_sock_port(lfd);

  /* A numeric host and a name ("localhost": each address is tried in turn,
     so a ::1 that refuses falls through to 127.0.0.1). */
  const char *hosts[] = {"127.0.0.1", "localhost"};
  for (int i = 0; i < 2; i++) {
    dialled d = {0};
    taken t = {0};
    ASSERT_EQ(cloop_accept_start(loop, &t.a, lfd, on_accepted, &t), 0);
    ASSERT_EQ(cloop_connect_start(loop, &d.c, hosts[i], port, on_connected, &d), 0);
    ASSERT_EQ(cloop_run(loop), 0);
    ASSERT_EQ(d.calls, 1);
    ASSERT_EQ(t.calls, 1);
    ASSERT_GE(d.c.result, 0);
    ASSERT_GE(t.a.result, 0);
    ASSERT(nodelay(d.c.result) && nodelay(t.a.result));
    ASSERT_EQ(cloop_close_fd(loop, d.c.result), 0);
    ASSERT_EQ(cloop_close_fd(loop, t.a.result), 0);
  }

  /* Refused on every address: the last attempt's error, no fd left open. */
  dialled r = {0};
  ASSERT_EQ(cloop_connect_start(loop, &r.c, "127.0.0.1", dead_port(),
                                on_connected, &r), 0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(r.calls, 1);
  ASSERT_EQ(r.c.result, -ECONNREFUSED);

  /* No such host. */
  dialled h = {0};
  ASSERT_EQ(cloop_connect_start(loop, &h.c, "no-such-host.invalid", 1,
                                on_connected, &h), 0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(h.calls, 1);
  ASSERT(h.c.result == CLOOP_ENOHOST || h.c.result == -EAGAIN);

  /* Cancelled while resolving, and an accept cancelled while it waits:
     each calls back once with -ECANCELED. */
  dialled cr = {0};
  taken ca = {0};
  ASSERT_EQ(cloop_connect_start(loop, &cr.c, "localhost", port, on_connected, &cr), 0);
  ASSERT_EQ(cloop_connect_cancel(&cr.c), 1);
  ASSERT_EQ(cloop_accept_start(loop, &ca.a, lfd, on_accepted, &ca), 0);
  ASSERT_EQ(cloop_run_once(loop, 0), 1);
  ASSERT_EQ(cloop_accept_cancel(&ca.a), 1);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(cr.calls, 1);
  ASSERT_EQ(cr.c.result, -ECANCELED);
  ASSERT_EQ(ca.calls, 1);
  ASSERT_EQ(ca.a.result, -ECANCELED);
  ASSERT_EQ(cloop_connect_cancel(&cr.c), 0);
  ASSERT_EQ(cloop_accept_cancel(&ca.a), 0);

  ASSERT_EQ(cloop_connect_start(loop, &h.c, "127.0.0.1", 70000, on_connected, &h),
            -EINVAL);
  ASSERT_EQ(cloop_close_fd(loop, lfd), 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* Out of descriptors, the connection stays queued and the listener
   readable: the acceptor reports EMFILE only after its pause, so a caller
   that retries at once does not spin; with a descriptor free again the
   same connection is accepted. On the manual clock, so the pauses are
   exact and a loaded machine cannot end one early. */
static void limit_fds_to_next(struct rlimit *old) {
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, old), 0);
  int spare = dup(0); /* the number the accepted fd would take */
  ASSERT_GE(spare, 0);
  struct rlimit low = {(rlim_t)spare, old->rlim_max};
  ASSERT_EQ(close(spare), 0);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
}

TEST_IMPL_POLL(io_acceptor_emfile_pauses) {
  cloop_loop *loop;
  LOOP_NEW(loop, backend);
  cloop_debug_manual_clock(loop, 1000 * MS);
  int lfd = cloop_tcp_listen("127.0.0.1", 0, 16, 0);
  ASSERT_GE(lfd, 0);
  struct sockaddr_in to = loopback(cloop_sock_port(lfd));
  int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(connect(c, (struct sockaddr *)&to, sizeof to), 0);

  struct rlimit old;
  limit_fds_to_next(&old);
  uint64_t start = cloop_now(loop);
  taken t = {0};
  for (int i = 1; i <= 3; i++) {
    t.calls = 0;
    ASSERT_EQ(cloop_accept_start(loop, &t.a, lfd, on_accepted, &t), 0);
    run_until(loop, &t.calls);
    ASSERT(t.a.result == -EMFILE || t.a.result == -ENFILE);
    ASSERT_EQ(t.at - start, (uint64_t)i * 10 * MS); /* each after its pause */
  }
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
  t.calls = 0;
  ASSERT_EQ(cloop_accept_start(loop, &t.a, lfd, on_accepted, &t), 0);
  run_until(loop, &t.calls);
  ASSERT_GE(t.a.result, 0);
  ASSERT_EQ(cloop_close_fd(loop, t.a.result), 0);
  ASSERT_EQ(close(c), 0);

  /* Cancelled during the pause: -ECANCELED, once. The clock stands still
     in iterations that may not wait, so the pause cannot run out. A new
     listener: io_uring's multishot accept, armed on lfd by the accepts
     above, takes the descriptor limit of when it was armed. */
  ASSERT_EQ(cloop_close_fd(loop, lfd), 0);
  lfd = cloop_tcp_listen("127.0.0.1", 0, 16, 0);
  ASSERT_GE(lfd, 0);
  to = loopback(cloop_sock_port(lfd));
  c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(connect(c, (struct sockaddr *)&to, sizeof to), 0);
  limit_fds_to_next(&old);
  t.calls = 0;
  ASSERT_EQ(cloop_accept_start(loop, &t.a, lfd, on_accepted, &t), 0);
  uint64_t end = test_clock_ns() + 2000 * MS;
  while (t.a.op.state != 0 || t.a.op.handle.link.next) { /* the accept has failed */
    ASSERT_LT(test_clock_ns(), end);
    ASSERT_GE(cloop_run_once(loop, 0), 0);
  }
  ASSERT_EQ(t.calls, 0); /* pausing */
  ASSERT_EQ(cloop_accept_cancel(&t.a), 1);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
  run_until(loop, &t.calls);
  ASSERT_EQ(t.calls, 1);
  ASSERT_EQ(t.a.result, -ECANCELED);
  ASSERT_EQ(close(c), 0);
  ASSERT_EQ(cloop_close_fd(loop, lfd), 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* A server restarted on its port at once: once the old listener is closed
   with cloop_close_fd while an accept waits on it, the port is free when
   the call returns. (The SIGKILL case is io_restart_after_sigkill.) */
static void restart_accepted(cloop_acceptor *a) { (void)a; }

TEST_IMPL_POLL(io_restart_on_the_same_port_at_once) {
  int port = 0;
  for (int round = 0; round < 2; round++) {
    cloop_loop *loop;
    LOOP_NEW(loop, backend);
    int lfd = cloop_tcp_listen("127.0.0.1", port, 16, 0);
    ASSERT_GE(lfd, 0);
    port = cloop_sock_port(lfd);
    cloop_acceptor a;
    memset(&a, 0, sizeof a);
    ASSERT_EQ(cloop_accept_start(loop, &a, lfd, restart_accepted, NULL), 0);
    for (int i = 0; i < 3; i++) /* the accept reaches the kernel */
      ASSERT_GE(cloop_run_once(loop, 0), 0);
    ASSERT_EQ(cloop_close_fd(loop, lfd), 0);
    int again = cloop_tcp_listen("127.0.0.1", port, 16, 0); /* no retry */
    ASSERT_GE(again, 0);
    ASSERT_EQ(close(again), 0);
    ASSERT_EQ(cloop_run(loop), 0); /* the acceptor's callback: -EBADF */
    ASSERT_EQ(cloop_loop_free(loop), 0);
  }
  return 0;
}

/* A server killed (SIGKILL) while an accept waits on its listener -- and a
   connection served, so a receive waits too -- leaves its port free the
   moment it is reaped: a restart binds at once, no retry. On io_uring the
   listener is polled through an epoll set (uring_recv.c): a request in the
   ring on the listener itself would hold the socket until a kernel worker
   tears the ring down, 5-16 ms after the process is gone. */
static intptr_t killed_server(void *arg) {
  int *pipefd = arg;
  int lfd = cloop_tcp_listen("127.0.0.1", 0, 16, 0);
  ASSERT_GE(lfd, 0);
  int port = cloop_sock_port(lfd);
  ASSERT_EQ(write(pipefd[1], &port, sizeof port), (ssize_t)sizeof port);
  int c = cloop_sock_accept(lfd); /* the parent's connection */
  ASSERT_GE(c, 0);
  char b;
  ASSERT_EQ(cloop_sock_recv(c, &b, 1), 1);
  ASSERT_EQ(write(pipefd[1], &port, sizeof port), (ssize_t)sizeof port);
  cloop_sock_accept(lfd); /* waits here, in the kernel, until killed */
  return 0;
}

TEST_IMPL_POLL(io_restart_after_sigkill) {
  cloop_loop *probe;
  LOOP_NEW(probe, backend); /* skips where the backend is missing */
  ASSERT_EQ(cloop_loop_free(probe), 0);
  for (int round = 0; round < 3; round++) {
    int pipefd[2];
    ASSERT_EQ(pipe(pipefd), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      cloop_options o;
      cloop_options_init(&o);
      o.backend = backend;
      cloop_main(killed_server, pipefd, &o);
      _exit(1); /* not reached: killed in its accept */
    }
    int port = 0;
    ASSERT_EQ(read(pipefd[0], &port, sizeof port), (ssize_t)sizeof port);
    struct sockaddr_in to;
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_port = htons((uint16_t)port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_EQ(connect(c, (struct sockaddr *)&to, sizeof to), 0);
    ASSERT_EQ(send(c, "x", 1, 0), 1);
    ASSERT_EQ(read(pipefd[0], &port, sizeof port), (ssize_t)sizeof port);
    usleep(2000); /* the second accept reaches the kernel */
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT(WIFSIGNALED(status));
    int again = cloop_tcp_listen("127.0.0.1", port, 16, 0); /* no retry */
    ASSERT_GE(again, 0);
    ASSERT_EQ(close(again), 0);
    close(c);
    close(pipefd[0]);
    close(pipefd[1]);
  }
  return 0;
}
