/* test_uring_recv.c -- io_uring's stream receives (uring_recv.c): a recv
 * operation served from the socket's multishot receive and the loop's
 * provided-buffer ring. More sockets sending at once than the ring has
 * buffers (it runs dry: the waiting receives fall back, and no byte is lost
 * or reordered); bytes that come while nobody reads (the multishot pauses,
 * then resumes); a peek then a read of the same bytes; end of stream
 * reported again and again; and each of those on the lower tier too, with
 * multishot receives turned off (CLOOP_URING_MULTISHOT=0), where every recv
 * is a request of its own; and a listener's multishot accept (connections
 * queued with their peers' addresses, a cancelled accept losing none, the
 * listener's close ending the ones nobody took). io_uring only: each test skips where it is
 * missing. (Cancel, close and fd reuse under a waiting receive are in
 * test_uring_ops.c, which runs on whichever tier the kernel gives.) */
#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>

#define MS 1000000LL
#define STREAM_BIT 0x80000000u /* uring.h's mark of a stream waiter's tag */

static const cloop_backend backend = CLOOP_BACKEND_URING;

static void pair(int sv[2]) {
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                       sv), 0);
}

/* The byte at offset i of socket k's stream. */
static unsigned char pattern(int k, size_t i) {
  return (unsigned char)(k * 31 + i * 7 + (i >> 9));
}

/* A reader: recv operations one after another until `want` bytes came. */
typedef struct reader {
  cloop_op op;
  int fd, k;
  unsigned char *got;
  size_t have, want;
  int done, error, saw_stream;
  size_t chunk; /* bytes asked for per recv */
} reader;

static void on_recv(cloop_op *op);

static void next(cloop_loop *loop, reader *r) {
  size_t ask = r->want - r->have < r->chunk ? r->want - r->have : r->chunk;
  ASSERT_EQ(cloop_op_recv(loop, &r->op, r->fd, r->got + r->have, ask, 0, on_recv, r), 0);
  /* A stream waiter carries the stream mark (a receive request does not). */
  if ((uint32_t)r->op.tag & STREAM_BIT)
    r->saw_stream = 1;
}

static void on_recv(cloop_op *op) {
  reader *r = op->data;
  if (op->result <= 0) {
    r->error = op->result == 0 ? -EPIPE : op->result;
    r->done = 1;
    return;
  }
  r->have += (size_t)op->result;
  if (r->have == r->want)
    r->done = 1;
  else
    next(op->loop, r);
}

/* Runs the loop until every reader is done, at most 10 s. */
static void run_readers(cloop_loop *loop, reader *rs, int n) {
  uint64_t end = test_clock_ns() + 10000 * MS;
  for (;;) {
    int left = 0;
    for (int i = 0; i < n; i++)
      left += !rs[i].done;
    if (!left)
      return;
    ASSERT_LT(test_clock_ns(), end);
    ASSERT_GE(cloop_run_once(loop, 10 * MS), 0);
  }
}

enum { SOCKS = 600, EACH = 20000 }; /* 600 x 2 buffers > the ring's 512 */

/* Every socket has 20,000 bytes waiting (two 16 KiB buffers' worth) when
   600 receives start at once: the ring runs dry, and still every byte
   arrives, in order. Returns whether any receive went through a stream. */
static int many_at_once(void) {
  cloop_loop *loop;
  LOOP_NEW(loop, backend);
  int (*sv)[2] = calloc(SOCKS, sizeof *sv);
  reader *rs = calloc(SOCKS, sizeof *rs);
  ASSERT(sv && rs);
  unsigned char out[EACH];
  for (int k = 0; k < SOCKS; k++) {
    pair(sv[k]);
    for (size_t i = 0; i < EACH; i++)
      out[i] = pattern(k, i);
    ASSERT_EQ(write(sv[k][1], out, EACH), EACH);
    rs[k].fd = sv[k][0];
    rs[k].k = k;
    rs[k].want = EACH;
    rs[k].chunk = 4096 + (size_t)k % 7 * 1000; /* odd sizes: partial buffers */
    rs[k].got = malloc(EACH);
    ASSERT(rs[k].got);
  }
  for (int k = 0; k < SOCKS; k++)
    next(loop, &rs[k]);
  run_readers(loop, rs, SOCKS);
  int streamed = 0;
  for (int k = 0; k < SOCKS; k++) {
    ASSERT_EQ(rs[k].error, 0);
    ASSERT_EQ(rs[k].have, (size_t)EACH);
    for (size_t i = 0; i < EACH; i++)
      if (rs[k].got[i] != pattern(k, i)) {
        fprintf(stderr, "socket %d: byte %zu is %u, not %u\n", k, i, rs[k].got[i],
                pattern(k, i));
        ASSERT(0);
      }
    streamed |= rs[k].saw_stream;
    free(rs[k].got);
    ASSERT_EQ(cloop_close_fd(loop, sv[k][0]), 0);
    ASSERT_EQ(close(sv[k][1]), 0);
  }
  free(rs);
  free(sv);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return streamed;
}

/* Skips the test (from its own frame) where io_uring cannot run here. */
#define URING_OR_SKIP()                                                      \
  do {                                                                       \
    cloop_loop *probe__;                                                     \
    LOOP_NEW(probe__, backend);                                              \
    ASSERT_EQ(cloop_loop_free(probe__), 0);                                  \
  } while (0)

TEST_IMPL(uring_recv_ring_runs_dry_nothing_lost) {
  URING_OR_SKIP();
  ASSERT(many_at_once()); /* the default tier receives through streams */
  return 0;
}

TEST_IMPL(uring_recv_lower_tier_without_multishot) {
  URING_OR_SKIP();
  ASSERT_EQ(setenv("CLOOP_URING_MULTISHOT", "0", 1), 0); /* this child only */
  ASSERT(!many_at_once()); /* every receive a request of its own */
  return 0;
}

/* 1 MiB written while nobody reads but one byte at first: the multishot
   pauses after a few buffers (the socket keeps the rest), then the reads
   get every byte in order. */
static int recv_once(cloop_loop *loop, int fd, char *buf, size_t len, int flags);

TEST_IMPL(uring_recv_unread_bytes_pause_then_flow) {
  cloop_loop *loop;
  LOOP_NEW(loop, backend);
  int sv[2];
  pair(sv);
  int big = 4 << 20;
  setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  enum { TOTAL = 1 << 20 };
  unsigned char *out = malloc(TOTAL), *got = malloc(TOTAL);
  ASSERT(out && got);
  for (size_t i = 0; i < TOTAL; i++)
    out[i] = pattern(1, i);
  size_t sent = 0;
  ssize_t k = write(sv[1], out, 100);
  ASSERT_EQ(k, 100);
  sent = 100;
  /* One byte read: the stream is armed now, and stays so. */
  ASSERT_EQ(recv_once(loop, sv[0], (char *)got, 1, 0), 1);
  /* Nobody reads for 50 iterations while the writer writes what the socket
     takes: the stream queues some buffers, then pauses. */
  for (int i = 0; i < 50; i++) {
    k = sent < TOTAL ? write(sv[1], out + sent, TOTAL - sent) : 0;
    if (k > 0)
      sent += (size_t)k;
    ASSERT_GE(cloop_run_once(loop, 1 * MS), 0);
  }
  /* Now the rest, in 64 KiB receives, while writing what is left. */
  reader r = {0};
  r.fd = sv[0];
  r.k = 1;
  r.have = 1;
  r.want = TOTAL;
  r.chunk = 65536;
  r.got = got;
  next(loop, &r);
  uint64_t end = test_clock_ns() + 10000 * MS;
  while (!r.done) {
    ASSERT_LT(test_clock_ns(), end);
    k = sent < TOTAL ? write(sv[1], out + sent, TOTAL - sent) : 0;
    if (k > 0)
      sent += (size_t)k;
    ASSERT_GE(cloop_run_once(loop, 1 * MS), 0);
  }
  ASSERT_EQ(r.error, 0);
  ASSERT_EQ(r.have, (size_t)TOTAL);
  ASSERT(memcmp(got, out, TOTAL) == 0);
  free(out);
  free(got);
  ASSERT_EQ(cloop_close_fd(loop, sv[0]), 0);
  ASSERT_EQ(close(sv[1]), 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

typedef struct seen {
  cloop_op op;
  int calls, result;
} seen;

static void on_done(cloop_op *op) {
  seen *s = op->data;
  s->calls++;
  s->result = op->result;
}

static int recv_once(cloop_loop *loop, int fd, char *buf, size_t len, int flags) {
  seen s = {0};
  ASSERT_EQ(cloop_op_recv(loop, &s.op, fd, buf, len, flags, on_done, &s), 0);
  uint64_t end = test_clock_ns() + 2000 * MS;
  while (!s.calls) {
    ASSERT_LT(test_clock_ns(), end);
    ASSERT_GE(cloop_run_once(loop, 10 * MS), 0);
  }
  return s.result;
}

/* A peek shows the bytes and leaves them; the read then takes them; at end
   of stream every receive says 0. */
TEST_IMPL(uring_recv_peek_read_and_eof) {
  cloop_loop *loop;
  LOOP_NEW(loop, backend);
  int sv[2];
  pair(sv);
  char buf[16];
  memset(buf, 0, sizeof buf);
  /* First a read that waits, so the stream is armed; then the bytes. */
  seen s = {0};
  ASSERT_EQ(cloop_op_recv(loop, &s.op, sv[0], buf, 1, 0, on_done, &s), 0);
  ASSERT_GE(cloop_run_once(loop, 0), 0);
  ASSERT_EQ(write(sv[1], "hello world", 11), 11);
  while (!s.calls)
    ASSERT_GE(cloop_run_once(loop, 10 * MS), 0);
  ASSERT_EQ(s.result, 1);
  ASSERT_EQ(buf[0], 'h');
  ASSERT_EQ(recv_once(loop, sv[0], buf, 4, MSG_PEEK), 4);
  ASSERT(memcmp(buf, "ello", 4) == 0);
  ASSERT_EQ(recv_once(loop, sv[0], buf, sizeof buf, 0), 10);
  ASSERT(memcmp(buf, "ello world", 10) == 0);
  ASSERT_EQ(close(sv[1]), 0);
  ASSERT_EQ(recv_once(loop, sv[0], buf, sizeof buf, 0), 0);
  ASSERT_EQ(recv_once(loop, sv[0], buf, sizeof buf, 0), 0);
  ASSERT_EQ(recv_once(loop, sv[0], buf, sizeof buf, MSG_PEEK), 0);
  ASSERT_EQ(cloop_close_fd(loop, sv[0]), 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* cloop_loop_backend_info names the tier the ring runs, and the lower
   tiers the environment asks for. */
TEST_IMPL(uring_backend_info_names_the_tier) {
  cloop_loop *loop;
  cloop_options o;
  cloop_options_init(&o);
  o.backend = CLOOP_BACKEND_EPOLL;
  ASSERT_EQ(cloop_loop_new(&loop, &o), 0);
  ASSERT(strcmp(cloop_loop_backend_info(loop), "epoll") == 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);

  LOOP_NEW(loop, backend);
  const char *info = cloop_loop_backend_info(loop);
  ASSERT(strncmp(info, "io_uring (", 10) == 0);
  ASSERT(strstr(info, "COOP_TASKRUN") || strstr(info, "DEFER_TASKRUN"));
  ASSERT_EQ(cloop_loop_free(loop), 0);

  ASSERT_EQ(setenv("CLOOP_URING_TIER", "3", 1), 0); /* this child only */
  ASSERT_EQ(setenv("CLOOP_URING_MULTISHOT", "0", 1), 0);
  LOOP_NEW(loop, backend);
  int sv[2];
  pair(sv);
  char buf[4];
  ASSERT_EQ(write(sv[1], "x", 1), 1);
  ASSERT_EQ(recv_once(loop, sv[0], buf, sizeof buf, 0), 1);
  info = cloop_loop_backend_info(loop);
  ASSERT(strncmp(info, "io_uring (COOP_TASKRUN;", 23) == 0);
  ASSERT(strstr(info, "no stream receives") || strstr(info, "on readiness"));
  ASSERT_EQ(cloop_close_fd(loop, sv[0]), 0);
  ASSERT_EQ(close(sv[1]), 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* A listener served by the stream path: connections taken as they come
   are queued for the accepts, each with its peer's address; a cancelled
   accept loses no connection; closing the listener closes the ones nobody
   took. Both ways the stream path takes them (accept4 when the listener's
   epoll set is ready, the default; the kernel's multishot accept with
   CLOOP_URING_ACCEPT=multishot), and on the lower tier the same through
   single-shot accepts. */
static int accept_round(void) {
  cloop_loop *loop;
  LOOP_NEW(loop, backend);
  int lfd = cloop_tcp_listen("127.0.0.1", 0, 64, 0);
  ASSERT_GE(lfd, 0);
  struct sockaddr_in to;
  memset(&to, 0, sizeof to);
  to.sin_family = AF_INET;
  to.sin_port = htons((uint16_t)cloop_sock_port(lfd));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  enum { N = 20 };
  int clients[N + 4];
  int multishot = 0;
  for (int i = 0; i < N; i++) {
    clients[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_EQ(connect(clients[i], (struct sockaddr *)&to, sizeof to), 0);
    seen a = {0};
    ASSERT_EQ(cloop_op_accept(loop, &a.op, lfd, on_done, &a), 0);
    if ((uint32_t)a.op.tag & STREAM_BIT)
      multishot = 1;
    while (!a.calls)
      ASSERT_GE(cloop_run_once(loop, 10 * MS), 0);
    ASSERT_GE(a.result, 0);
    /* its peer is the client: the ports match */
    struct sockaddr_in mine;
    socklen_t len = sizeof mine;
    ASSERT_EQ(getsockname(clients[i], (struct sockaddr *)&mine, &len), 0);
    ASSERT_EQ(a.op.addrlen, (socklen_t)sizeof(struct sockaddr_in));
    ASSERT_EQ(((struct sockaddr_in *)&a.op.addr)->sin_port, mine.sin_port);
    ASSERT_EQ(cloop_close_fd(loop, a.result), 0);
  }
  /* A waiting accept cancelled; the connection that comes next is not lost. */
  seen a = {0};
  ASSERT_EQ(cloop_op_accept(loop, &a.op, lfd, on_done, &a), 0);
  ASSERT_GE(cloop_run_once(loop, 0), 0);
  ASSERT_EQ(cloop_op_cancel(loop, &a.op), 1);
  ASSERT_GE(cloop_run_once(loop, 0), 0);
  ASSERT_EQ(a.result, -ECANCELED);
  clients[N] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(connect(clients[N], (struct sockaddr *)&to, sizeof to), 0);
  for (int i = 0; i < 5; i++)
    ASSERT_GE(cloop_run_once(loop, 1 * MS), 0);
  a.calls = 0;
  ASSERT_EQ(cloop_op_accept(loop, &a.op, lfd, on_done, &a), 0);
  while (!a.calls)
    ASSERT_GE(cloop_run_once(loop, 10 * MS), 0);
  ASSERT_GE(a.result, 0);
  ASSERT_EQ(cloop_close_fd(loop, a.result), 0);
  /* Three more come while nobody accepts; closing the listener ends them. */
  for (int i = N + 1; i < N + 4; i++) {
    clients[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_EQ(connect(clients[i], (struct sockaddr *)&to, sizeof to), 0);
  }
  for (int i = 0; i < 5; i++)
    ASSERT_GE(cloop_run_once(loop, 1 * MS), 0);
  ASSERT_EQ(cloop_close_fd(loop, lfd), 0);
  for (int i = N + 1; i < N + 4; i++) {
    char b;
    struct timeval tv = {2, 0};
    setsockopt(clients[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssize_t r = recv(clients[i], &b, 1, 0);
    ASSERT(r == 0 || (r < 0 && errno == ECONNRESET)); /* closed, not left hanging */
  }
  for (int i = 0; i < N + 4; i++)
    close(clients[i]);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return multishot;
}

TEST_IMPL(uring_accept_multishot_queues_and_delivers) {
  URING_OR_SKIP();
  ASSERT(accept_round()); /* accept4 when the listener's epoll set is ready */
  ASSERT_EQ(setenv("CLOOP_URING_ACCEPT", "multishot", 1), 0); /* this child only */
  ASSERT(accept_round()); /* the kernel's multishot accept */
  ASSERT_EQ(unsetenv("CLOOP_URING_ACCEPT"), 0);
  ASSERT_EQ(setenv("CLOOP_URING_MULTISHOT", "0", 1), 0);
  ASSERT(!accept_round());
  return 0;
}
