/* test_uring_ops.c -- io_uring's own I/O operations (poll_uring.c's
 * op_start/op_cancel) on the callback level (cloop_op_*): they are
 * submitted and complete with their CQE, not through readiness; a round
 * trip of accept, connect, send and recv; cancelling a recv that waits (and
 * one whose SQE was never sent, and one the kernel finished first: its
 * bytes are kept); cloop_close_fd under a recv; an fd number closed and
 * reused while the old recv's completion is still to come; a thousand
 * pairs of operations at once with every other recv cancelled; partial
 * sends; ready work that must not starve completions; and, on a kernel
 * without IORING_REGISTER_SYNC_CANCEL (faked with seccomp), the readiness
 * path instead. io_uring only: each test skips where it is missing. */
#include "test.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define MS 1000000LL
#define OP_BIT (1ull << 63) /* poll_uring.c's mark of an operation's tag */

/* A loop on io_uring, or skip. */
static const cloop_backend backend = CLOOP_BACKEND_URING;
#define URING_LOOP(loop) LOOP_NEW(loop, backend)

/* What an operation's callback saw. */
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

/* Runs iterations (without waiting longer than 10 ms each) until *calls is
   non-zero, at most 2 s. */
static void run_until(cloop_loop *loop, const int *calls) {
  uint64_t end = test_clock_ns() + 2000 * MS;
  while (!*calls) {
    ASSERT_LT(test_clock_ns(), end);
    ASSERT_GE(cloop_run_once(loop, 10 * MS), 0);
  }
}

/* A few iterations that do not wait: SQEs go out, quick completions come. */
static void spin(cloop_loop *loop, int n) {
  for (int i = 0; i < n; i++)
    ASSERT_GE(cloop_run_once(loop, 0), 0);
}

/* ---- submitted, not tried ------------------------------------------------ */

TEST_IMPL(uring_ops_native_path) {
  cloop_loop *loop;
  URING_LOOP(loop);
  int sv[2];
  pair(sv);
  ASSERT_EQ(write(sv[1], "abc", 3), 3);
  seen r = {0};
  char buf[8];
  ASSERT_EQ(cloop_op_recv(loop, &r.op, sv[0], buf, sizeof buf, 0, on_done, &r),
            0);
  /* The readiness path would have read already and queued the callback;
     here the recv waits in the SQ for the next poll. */
  ASSERT(r.op.handle.link.next == NULL);
  ASSERT(r.op.tag & OP_BIT);
  char peek;
  ASSERT_EQ(recv(sv[0], &peek, 1, MSG_PEEK | MSG_DONTWAIT), 1);
  /* The second recv of the same side is refused while this one flies. */
  seen r2 = {0};
  ASSERT_EQ(cloop_op_recv(loop, &r2.op, sv[0], buf, 1, 0, on_done, &r2),
            -EBUSY);
  /* An operation in flight keeps the loop alive and busy. */
  ASSERT_EQ(cloop_loop_free(loop), -EBUSY);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(r.calls, 1);
  ASSERT_EQ(r.result, 3);
  ASSERT(memcmp(buf, "abc", 3) == 0);
  ASSERT_EQ(r2.calls, 0);

  /* An error is a completion too: a closed fd number, a non-socket. */
  int dead = dup(sv[0]);
  ASSERT_GE(dead, 0);
  ASSERT_EQ(close(dead), 0);
  seen e = {0};
  ASSERT_EQ(cloop_op_recv(loop, &e.op, dead, buf, 1, 0, on_done, &e), 0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(e.calls, 1);
  ASSERT_EQ(e.result, -EBADF);
  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  e.calls = 0;
  ASSERT_EQ(cloop_op_send(loop, &e.op, p[1], "x", 1, 0, on_done, &e), 0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(e.calls, 1);
  ASSERT_EQ(e.result, -ENOTSOCK);
  close(p[0]);
  close(p[1]);

  ASSERT_EQ(cloop_close_fd(loop, sv[0]), 0);
  ASSERT_EQ(cloop_close_fd(loop, sv[1]), 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* ---- a round trip ---------------------------------------------------------- */

TEST_IMPL(uring_ops_round_trip) {
  cloop_loop *loop;
  URING_LOOP(loop);
  int lfd = cloop_tcp_listen("127.0.0.1", 0, 16, 0);
  ASSERT_GE(lfd, 0);
  int port = cloop_sock_port(lfd);
  ASSERT_GT(port, 0);
  struct sockaddr_in to;
  memset(&to, 0, sizeof to);
  to.sin_family = AF_INET;
  to.sin_port = htons((uint16_t)port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  for (int round = 0; round < 3; round++) {
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ASSERT_GE(c, 0);
    seen a = {0}, k = {0};
    ASSERT_EQ(cloop_op_accept(loop, &a.op, lfd, on_done, &a), 0);
    ASSERT_EQ(cloop_op_connect(loop, &k.op, c, (struct sockaddr *)&to,
                               sizeof to, on_done, &k),
              0);
    ASSERT_EQ(cloop_run(loop), 0);
    ASSERT_EQ(a.calls, 1);
    ASSERT_EQ(k.calls, 1);
    ASSERT_EQ(k.result, 0);
    int s = a.result;
    ASSERT_GE(s, 0);
    ASSERT_EQ(a.op.addr.ss_family, AF_INET);
    ASSERT_EQ(a.op.addrlen, sizeof(struct sockaddr_in));
    ASSERT_EQ(fcntl(s, F_GETFL) & O_NONBLOCK, O_NONBLOCK);
    ASSERT_EQ(fcntl(s, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);

    /* Both directions at once: 64 KiB each way, in as many pieces as the
       sends and recvs make. */
    enum { N = 65536 };
    static char out[2][N], in[2][N];
    for (int i = 0; i < N; i++) {
      out[0][i] = (char)(i * 7 + round);
      out[1][i] = (char)(i * 13 + round);
    }
    int fds[2] = {c, s};
    size_t sent[2] = {0, 0}, got[2] = {0, 0};
    seen snd[2], rcv[2];
    memset(snd, 0, sizeof snd);
    memset(rcv, 0, sizeof rcv);
    int rounds = 0;
    while (got[0] < N || got[1] < N) {
      ASSERT_LT(++rounds, 100000);
      for (int d = 0; d < 2; d++) { /* d: from fds[d] to fds[1 - d] */
        if (sent[d] < N && snd[d].op.state == 0 && !snd[d].calls)
          ASSERT_EQ(cloop_op_send(loop, &snd[d].op, fds[d], out[d] + sent[d],
                                  N - sent[d], 0, on_done, &snd[d]),
                    0);
        if (got[d] < N && rcv[d].op.state == 0 && !rcv[d].calls)
          ASSERT_EQ(cloop_op_recv(loop, &rcv[d].op, fds[1 - d],
                                  in[d] + got[d], N - got[d], 0, on_done,
                                  &rcv[d]),
                    0);
      }
      ASSERT_GE(cloop_run_once(loop, 100 * MS), 0);
      for (int d = 0; d < 2; d++) {
        if (snd[d].calls) {
          ASSERT_GT(snd[d].result, 0);
          sent[d] += (size_t)snd[d].result;
          snd[d].calls = 0;
        }
        if (rcv[d].calls) {
          ASSERT_GT(rcv[d].result, 0);
          got[d] += (size_t)rcv[d].result;
          rcv[d].calls = 0;
        }
      }
    }
    ASSERT(memcmp(in[0], out[0], N) == 0);
    ASSERT(memcmp(in[1], out[1], N) == 0);

    /* EOF: a recv completes with 0 once the peer is gone. */
    seen eof = {0};
    char b;
    ASSERT_EQ(cloop_op_recv(loop, &eof.op, s, &b, 1, 0, on_done, &eof), 0);
    ASSERT_EQ(cloop_close_fd(loop, c), 0);
    ASSERT_EQ(cloop_run(loop), 0);
    ASSERT_EQ(eof.calls, 1);
    ASSERT_EQ(eof.result, 0);
    ASSERT_EQ(cloop_close_fd(loop, s), 0);
  }

  /* connect to a port nobody listens on */
  int spare = cloop_tcp_listen("127.0.0.1", 0, 1, 0);
  ASSERT_GE(spare, 0);
  to.sin_port = htons((uint16_t)cloop_sock_port(spare));
  ASSERT_EQ(close(spare), 0);
  int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  seen k = {0};
  ASSERT_EQ(cloop_op_connect(loop, &k.op, c, (struct sockaddr *)&to, sizeof to,
                             on_done, &k),
            0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(k.calls, 1);
  ASSERT_EQ(k.result, -ECONNREFUSED);
  ASSERT_EQ(cloop_close_fd(loop, c), 0);
  ASSERT_EQ(cloop_close_fd(loop, lfd), 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* ---- partial sends ----------------------------------------------------------- */

TEST_IMPL(uring_ops_partial_send) {
  cloop_loop *loop;
  URING_LOOP(loop);
  int sv[2];
  pair(sv);
  enum { BIG = 8 << 20 };
  char *big = calloc(1, BIG);
  ASSERT(big);
  seen s = {0};
  ASSERT_EQ(cloop_op_send(loop, &s.op, sv[0], big, BIG, 0, on_done, &s), 0);
  run_until(loop, &s.calls);
  /* Like send(2) on a non-blocking socket: what fitted, not everything. */
  ASSERT_GT(s.result, 0);
  ASSERT_LT(s.result, BIG);
  /* With the buffer full, the next send waits; reading makes room. */
  seen s2 = {0};
  ASSERT_EQ(cloop_op_send(loop, &s2.op, sv[0], big, BIG, 0, on_done, &s2), 0);
  spin(loop, 3);
  ASSERT_EQ(s2.calls, 0);
  char *sink = malloc(BIG);
  ASSERT(sink);
  ssize_t n;
  size_t drained = 0;
  while ((n = read(sv[1], sink, BIG)) > 0)
    drained += (size_t)n;
  /* (the waiting send may have added to it as room came) */
  ASSERT_GE(drained, (size_t)s.result);
  run_until(loop, &s2.calls);
  ASSERT_GT(s2.result, 0);
  ASSERT_EQ(cloop_close_fd(loop, sv[0]), 0);
  ASSERT_EQ(cloop_close_fd(loop, sv[1]), 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  free(sink);
  free(big);
  return 0;
}

/* ---- cancellation ------------------------------------------------------------ */

TEST_IMPL(uring_ops_cancel_parked_recv) {
  cloop_loop *loop;
  URING_LOOP(loop);
  int sv[2];
  pair(sv);
  char buf[16];

  for (int sent_first = 0; sent_first < 2; sent_first++) {
    /* sent_first 1: the recv is in the kernel, parked on the socket;
       0: it is still in the SQ, never sent. */
    seen r = {0};
    memset(buf, 0, sizeof buf);
    ASSERT_EQ(cloop_op_recv(loop, &r.op, sv[0], buf, sizeof buf, 0, on_done,
                            &r),
              0);
    if (sent_first)
      spin(loop, 3);
    ASSERT_EQ(r.calls, 0);
    ASSERT_EQ(cloop_op_cancel(loop, &r.op), 1);
    ASSERT_EQ(cloop_op_cancel(loop, &r.op), 0); /* once */
    ASSERT_EQ(cloop_run(loop), 0);
    ASSERT_EQ(r.calls, 1);
    ASSERT_EQ(r.result, -ECANCELED);
    /* Data sent now is not lost to the cancelled recv... */
    ASSERT_EQ(write(sv[1], "later", 5), 5);
    spin(loop, 3);
    ASSERT_EQ(r.calls, 1);
    ASSERT(buf[0] == 0); /* ...which never wrote its buffer */
    /* ...but read by a new one (the same op object, reused). */
    ASSERT_EQ(cloop_op_recv(loop, &r.op, sv[0], buf, sizeof buf, 0, on_done,
                            &r),
              0);
    ASSERT_EQ(cloop_run(loop), 0);
    ASSERT_EQ(r.calls, 2);
    ASSERT_EQ(r.result, 5);
    ASSERT(memcmp(buf, "later", 5) == 0);
  }

  /* An accept and a send cancelled while they wait. */
  int lfd = cloop_tcp_listen("127.0.0.1", 0, 4, 0);
  ASSERT_GE(lfd, 0);
  seen a = {0};
  ASSERT_EQ(cloop_op_accept(loop, &a.op, lfd, on_done, &a), 0);
  spin(loop, 2);
  ASSERT_EQ(cloop_op_cancel(loop, &a.op), 1);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(a.calls, 1);
  ASSERT_EQ(a.result, -ECANCELED);
  ASSERT_EQ(cloop_close_fd(loop, lfd), 0);

  enum { BIG = 8 << 20 };
  char *big = calloc(1, BIG);
  seen s = {0};
  ASSERT_EQ(cloop_op_send(loop, &s.op, sv[0], big, BIG, 0, on_done, &s), 0);
  run_until(loop, &s.calls); /* fills the socket */
  s.calls = 0;
  ASSERT_EQ(cloop_op_send(loop, &s.op, sv[0], big, BIG, 0, on_done, &s), 0);
  spin(loop, 2);
  ASSERT_EQ(cloop_op_cancel(loop, &s.op), 1);
  free(big); /* the kernel is done with it once the cancel returns */
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(s.calls, 1);
  ASSERT_EQ(s.result, -ECANCELED);

  ASSERT_EQ(cloop_close_fd(loop, sv[0]), 0);
  ASSERT_EQ(cloop_close_fd(loop, sv[1]), 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* The recv finished in the kernel (its CQE waits in the CQ, not yet
   reaped) when the cancel comes: the bytes it took are not lost. The cancel
   is too late (returns 0) and the callback gets the count. */
TEST_IMPL(uring_ops_cancel_after_kernel_finished_keeps_data) {
  cloop_loop *loop;
  URING_LOOP(loop);
  int sv[2];
  pair(sv);
  char buf[16];
  seen r = {0};
  ASSERT_EQ(cloop_op_recv(loop, &r.op, sv[0], buf, sizeof buf, 0, on_done, &r),
            0);
  spin(loop, 3); /* parked in the kernel */
  ASSERT_EQ(write(sv[1], "taken", 5), 5); /* completes it in the kernel */
  if (cloop_op_cancel(loop, &r.op) == 1) {
    /* A stream receive (multishot into the loop's buffers): the cancel
       only detached it, and the bytes wait in the stream for the next. */
    ASSERT_EQ(cloop_run(loop), 0);
    ASSERT_EQ(r.calls, 1);
    ASSERT_EQ(r.result, -ECANCELED);
    r.calls = 0;
    ASSERT_EQ(cloop_op_recv(loop, &r.op, sv[0], buf, sizeof buf, 0, on_done, &r), 0);
  }
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(r.calls, 1);
  ASSERT_EQ(r.result, 5);
  ASSERT(memcmp(buf, "taken", 5) == 0);
  spin(loop, 3); /* its CQE, still in the CQ, is dropped */
  ASSERT_EQ(r.calls, 1);

  /* The same for an accept: the new connection's fd is not leaked. */
  int lfd = cloop_tcp_listen("127.0.0.1", 0, 4, 0);
  ASSERT_GE(lfd, 0);
  seen a = {0};
  ASSERT_EQ(cloop_op_accept(loop, &a.op, lfd, on_done, &a), 0);
  spin(loop, 3);
  int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in to;
  memset(&to, 0, sizeof to);
  to.sin_family = AF_INET;
  to.sin_port = htons((uint16_t)cloop_sock_port(lfd));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(c, (struct sockaddr *)&to, sizeof to), 0); /* blocking */
  cloop_op_cancel(loop, &a.op); /* 0 if the accept won, 1 if the cancel */
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(a.calls, 1);
  if (a.result < 0) { /* the cancel won: the connection waits in the queue */
    ASSERT_EQ(a.result, -ECANCELED);
    a.calls = 0;
    ASSERT_EQ(cloop_op_accept(loop, &a.op, lfd, on_done, &a), 0);
    ASSERT_EQ(cloop_run(loop), 0);
    ASSERT_EQ(a.calls, 1);
  }
  ASSERT_GE(a.result, 0);
  ASSERT_EQ(cloop_close_fd(loop, a.result), 0);
  ASSERT_EQ(close(c), 0);
  ASSERT_EQ(cloop_close_fd(loop, lfd), 0);

  ASSERT_EQ(cloop_close_fd(loop, sv[0]), 0);
  ASSERT_EQ(cloop_close_fd(loop, sv[1]), 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* ---- closing the fd ------------------------------------------------------------ */

TEST_IMPL(uring_ops_close_fd_recv_in_flight) {
  cloop_loop *loop;
  URING_LOOP(loop);
  for (int sent_first = 0; sent_first < 2; sent_first++) {
    int sv[2];
    pair(sv);
    char buf[8];
    seen r = {0}, w = {0};
    ASSERT_EQ(cloop_op_recv(loop, &r.op, sv[0], buf, sizeof buf, 0, on_done,
                            &r),
              0);
    /* and a send on the same fd that waits for room */
    enum { BIG = 8 << 20 };
    char *big = calloc(1, BIG);
    ASSERT_EQ(cloop_op_send(loop, &w.op, sv[0], big, BIG, 0, on_done, &w), 0);
    run_until(loop, &w.calls); /* fills the socket */
    w.calls = 0;
    ASSERT_EQ(cloop_op_send(loop, &w.op, sv[0], big, BIG, 0, on_done, &w), 0);
    if (sent_first)
      spin(loop, 3);
    ASSERT_EQ(cloop_close_fd(loop, sv[0]), 0);
    free(big);
    ASSERT_EQ(cloop_run(loop), 0);
    ASSERT_EQ(r.calls, 1);
    ASSERT_EQ(r.result, -EBADF);
    ASSERT_EQ(w.calls, 1);
    ASSERT_EQ(w.result, -EBADF);
    /* The socket is really gone: the peer sees EOF. */
    char b;
    ssize_t n;
    while ((n = read(sv[1], &b, 1)) > 0)
      ;
    ASSERT_EQ(n, 0);
    spin(loop, 3);
    ASSERT_EQ(r.calls, 1);
    ASSERT_EQ(w.calls, 1);
    ASSERT_EQ(close(sv[1]), 0);
  }
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* fd A's recv is in the kernel; A is closed and its number reused by a new
   socket at once, and a recv there takes the old one's slot in the table
   under the next generation. The old recv's completion (its -ECANCELED,
   still in the CQ) must reach nobody. */
TEST_IMPL(uring_ops_fd_reuse_no_stale) {
  cloop_loop *loop;
  URING_LOOP(loop);
  for (int sent_first = 0; sent_first < 2; sent_first++) {
    int ab[2], cd[2];
    pair(ab);
    char old_buf[8], new_buf[8];
    memset(old_buf, 0, sizeof old_buf);
    seen old = {0}, nw = {0};
    ASSERT_EQ(cloop_op_recv(loop, &old.op, ab[0], old_buf, sizeof old_buf, 0,
                            on_done, &old),
              0);
    if (sent_first)
      spin(loop, 3);
    int a = ab[0];
    ASSERT_EQ(cloop_close_fd(loop, a), 0);
    pair(cd);
    ASSERT_EQ(cd[0], a); /* the lowest free number: A's */
    ASSERT_EQ(cloop_op_recv(loop, &nw.op, cd[0], new_buf, sizeof new_buf, 0,
                            on_done, &nw),
              0);
    /* the same slot, the next generation */
    ASSERT_EQ((uint32_t)nw.op.tag, (uint32_t)old.op.tag);
    ASSERT(nw.op.tag != old.op.tag);
    ASSERT_EQ(write(cd[1], "new", 3), 3);
    /* A is really closed: its peer has nobody to write to. */
    ASSERT_EQ(send(ab[1], "old", 3, MSG_NOSIGNAL), -1);
    ASSERT_EQ(errno, EPIPE);
    ASSERT_EQ(cloop_run(loop), 0);
    ASSERT_EQ(old.calls, 1);
    ASSERT_EQ(old.result, -EBADF);
    ASSERT(old_buf[0] == 0);
    ASSERT_EQ(nw.calls, 1);
    ASSERT_EQ(nw.result, 3);
    ASSERT(memcmp(new_buf, "new", 3) == 0);
    spin(loop, 3);
    ASSERT_EQ(old.calls, 1);
    ASSERT_EQ(nw.calls, 1);
    ASSERT_EQ(cloop_close_fd(loop, cd[0]), 0);
    ASSERT_EQ(close(cd[1]), 0);
    ASSERT_EQ(close(ab[1]), 0);
  }
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* ---- many at once ----------------------------------------------------------- */

enum { PAIRS = 1000 };

typedef struct many {
  int sv[PAIRS][2];
  seen rcv[PAIRS], snd[PAIRS];
  char in[PAIRS][16], out[PAIRS][16];
} many;

TEST_IMPL(uring_ops_1000_concurrent) {
  struct rlimit rl;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  if (rl.rlim_cur < 2 * PAIRS + 64) {
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < 2 * PAIRS + 64)
      SKIP("RLIMIT_NOFILE hard limit %llu is below %d",
           (unsigned long long)rl.rlim_max, 2 * PAIRS + 64);
    rl.rlim_cur = 2 * PAIRS + 64;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
  }
  cloop_loop *loop;
  URING_LOOP(loop);
  many *m = calloc(1, sizeof *m);
  ASSERT(m);
  /* A thousand recvs wait in the kernel at once (more than the SQ holds:
     it is flushed early). */
  for (int i = 0; i < PAIRS; i++) {
    pair(m->sv[i]);
    snprintf(m->out[i], sizeof m->out[i], "msg %d", i);
    ASSERT_EQ(cloop_op_recv(loop, &m->rcv[i].op, m->sv[i][0], m->in[i],
                            sizeof m->in[i], 0, on_done, &m->rcv[i]),
              0);
  }
  spin(loop, 2);
  /* Every other one is cancelled; then a thousand sends, one per pair. */
  for (int i = 0; i < PAIRS; i += 2)
    ASSERT_EQ(cloop_op_cancel(loop, &m->rcv[i].op), 1);
  for (int i = 0; i < PAIRS; i++)
    ASSERT_EQ(cloop_op_send(loop, &m->snd[i].op, m->sv[i][1], m->out[i],
                            strlen(m->out[i]) + 1, 0, on_done, &m->snd[i]),
              0);
  ASSERT_EQ(cloop_run(loop), 0);
  for (int i = 0; i < PAIRS; i++) {
    ASSERT_EQ(m->snd[i].calls, 1);
    ASSERT_EQ(m->snd[i].result, (int)strlen(m->out[i]) + 1);
    ASSERT_EQ(m->rcv[i].calls, 1);
    if (i % 2 == 0) {
      ASSERT_EQ(m->rcv[i].result, -ECANCELED);
      ASSERT(m->in[i][0] == 0);
    } else {
      ASSERT_EQ(m->rcv[i].result, (int)strlen(m->out[i]) + 1);
      ASSERT(strcmp(m->in[i], m->out[i]) == 0);
    }
  }
  /* The cancelled ones' messages wait in their sockets: new recvs, on
     slots the cancelled ones left, get them. */
  for (int i = 0; i < PAIRS; i += 2) {
    m->rcv[i].calls = 0;
    ASSERT_EQ(cloop_op_recv(loop, &m->rcv[i].op, m->sv[i][0], m->in[i],
                            sizeof m->in[i], 0, on_done, &m->rcv[i]),
              0);
  }
  ASSERT_EQ(cloop_run(loop), 0);
  for (int i = 0; i < PAIRS; i += 2) {
    ASSERT_EQ(m->rcv[i].calls, 1);
    ASSERT_EQ(m->rcv[i].result, (int)strlen(m->out[i]) + 1);
    ASSERT(strcmp(m->in[i], m->out[i]) == 0);
  }
  for (int i = 0; i < PAIRS; i++) {
    ASSERT_EQ(cloop_close_fd(loop, m->sv[i][0]), 0);
    ASSERT_EQ(cloop_close_fd(loop, m->sv[i][1]), 0);
  }
  ASSERT_EQ(cloop_loop_free(loop), 0);
  free(m);
  return 0;
}

/* ---- ready work does not starve completions ------------------------------------ */

typedef struct storm {
  cloop_handle h;
  cloop_loop *loop;
  int *stop;
  long iterations;
} storm;

static void storm_step(void *arg) {
  storm *s = arg;
  s->iterations++;
  if (!*s->stop && s->iterations < 1000000) {
    cloop_handle_init(&s->h, storm_step, s);
    cloop_call_soon(s->loop, &s->h);
  }
}

static void stop_storm(cloop_op *op) {
  seen *r = op->data;
  r->calls++;
  r->result = op->result;
}

TEST_IMPL(uring_ops_not_starved_by_ready_work) {
  cloop_loop *loop;
  URING_LOOP(loop);
  int sv[2];
  pair(sv);
  char buf[4];
  seen r = {0};
  storm s = {.loop = loop, .stop = &r.calls};
  cloop_handle_init(&s.h, storm_step, &s);
  cloop_call_soon(loop, &s.h);
  ASSERT_EQ(cloop_op_recv(loop, &r.op, sv[0], buf, sizeof buf, 0, stop_storm,
                          &r),
            0);
  spin(loop, 3);
  ASSERT_EQ(r.calls, 0);
  ASSERT_EQ(write(sv[1], "go", 2), 2);
  long before = s.iterations;
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(r.calls, 1);
  ASSERT_EQ(r.result, 2);
  /* The completion came within a few iterations of the busy loop. */
  ASSERT_LE(s.iterations - before, 4);
  ASSERT_EQ(cloop_close_fd(loop, sv[0]), 0);
  ASSERT_EQ(cloop_close_fd(loop, sv[1]), 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* ---- without a synchronous cancel ---------------------------------------------- */

#if defined(__x86_64__)
#define THIS_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define THIS_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

/* Makes io_uring_register(IORING_REGISTER_SYNC_CANCEL) fail with EINVAL
   in this process, as on Linux 5.19. Returns 0 or -errno. */
static int block_sync_cancel(void) {
#if defined(THIS_AUDIT_ARCH) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  struct sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, THIS_AUDIT_ARCH, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_register, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
               offsetof(struct seccomp_data, args[1])), /* low word */
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IORING_REGISTER_SYNC_CANCEL, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EINVAL & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  return test_install_seccomp(code, sizeof code / sizeof code[0]);
#else
  return -ENOSYS;
#endif
}

/* In the child: the loop still runs io_uring (watchers), and the
   operations take io.c's readiness path: a recv with data waiting is done
   at once, before any poll; a parked one is cancelled cleanly. */
static void no_sync_cancel_child(void *arg) {
  (void)arg;
  int r = block_sync_cancel();
  if (r < 0) {
    fprintf(stderr, "cannot install a seccomp filter: %s", strerror(-r));
    _exit(TEST_SKIP);
  }
  cloop_loop *loop;
  cloop_options o;
  cloop_options_init(&o);
  o.backend = CLOOP_BACKEND_URING;
  ASSERT_EQ(cloop_loop_new(&loop, &o), 0);
  ASSERT_EQ(cloop_loop_backend(loop), CLOOP_BACKEND_URING);
  int sv[2];
  pair(sv);
  ASSERT_EQ(write(sv[1], "abc", 3), 3);
  char buf[8];
  seen rd = {0};
  ASSERT_EQ(cloop_op_recv(loop, &rd.op, sv[0], buf, sizeof buf, 0, on_done,
                          &rd),
            0);
  ASSERT(rd.op.handle.link.next != NULL); /* tried at once: readiness path */
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(rd.calls, 1);
  ASSERT_EQ(rd.result, 3);
  /* parked on a watcher, then cancelled */
  ASSERT_EQ(cloop_op_recv(loop, &rd.op, sv[0], buf, sizeof buf, 0, on_done,
                          &rd),
            0);
  spin(loop, 2);
  ASSERT_EQ(cloop_op_cancel(loop, &rd.op), 1);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(rd.calls, 2);
  ASSERT_EQ(rd.result, -ECANCELED);
  /* and a parked one woken by data */
  ASSERT_EQ(cloop_op_recv(loop, &rd.op, sv[0], buf, sizeof buf, 0, on_done,
                          &rd),
            0);
  spin(loop, 2);
  ASSERT_EQ(write(sv[1], "de", 2), 2);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(rd.calls, 3);
  ASSERT_EQ(rd.result, 2);
  ASSERT_EQ(cloop_close_fd(loop, sv[0]), 0);
  ASSERT_EQ(cloop_close_fd(loop, sv[1]), 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
}

TEST_IMPL(uring_ops_without_sync_cancel_use_readiness) {
  { /* skip early if io_uring is missing */
    cloop_loop *probe;
    URING_LOOP(probe);
    ASSERT_EQ(cloop_loop_free(probe), 0);
  }
  char err[1024];
  int status = test_child_stderr(no_sync_cancel_child, NULL, err, sizeof err);
  if (WIFEXITED(status) && WEXITSTATUS(status) == TEST_SKIP)
    SKIP("%s", err);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "child failed (status %#x):\n%s\n", status, err);
    ASSERT(0);
  }
  return 0;
}
