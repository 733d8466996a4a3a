/* test_uring_zc.c -- zero-copy sends (IORING_OP_SEND_ZC, uring_ops.c),
 * forced on with $CLOOP_URING_SEND_ZC whatever the default: sizes around
 * the threshold and partial sends deliver every byte in order (both
 * backends; epoll ignores the variable), an AF_UNIX socket (no zero-copy
 * there) falls back to plain sends; a cancel while the kernel still holds
 * the buffer keeps the op until the notification (the bytes sent after the
 * cancel are still the buffer's, not what the caller writes there after
 * the callback); closing the fd then is clean. Each skips where the kernel
 * has no SEND_ZC. */
#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#define MS 1000000LL
#define THRESHOLD 4096

static unsigned char pat(size_t i) { return (unsigned char)(i * 7 + (i >> 11)); }

/* A loopback TCP connection, both ends non-blocking; the receiving end's
   buffer is rcvbuf bytes if not 0 (set on the listener, inherited). */
static void tcp_pair(int *snd, int *rcv, int rcvbuf) {
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT(l >= 0);
  if (rcvbuf)
    ASSERT_EQ(setsockopt(l, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf), 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  ASSERT_EQ(bind(l, (struct sockaddr *)&a, sizeof a), 0);
  ASSERT_EQ(listen(l, 1), 0);
  ASSERT_EQ(getsockname(l, (struct sockaddr *)&a, &al), 0);
  *snd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(connect(*snd, (struct sockaddr *)&a, sizeof a), 0);
  *rcv = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  ASSERT(*rcv >= 0);
  close(l);
  int fl = 1;
  ASSERT_EQ(ioctl(*snd, FIONBIO, &fl), 0);
}

/* A loop with zero-copy sends forced from THRESHOLD bytes; on io_uring,
   skips where the kernel has none. (A macro: ASSERT and SKIP return from
   the test.) */
#define ZC_LOOP(loop, be_)                                                   \
  do {                                                                       \
    ASSERT_EQ(setenv("CLOOP_URING_SEND_ZC", "4096", 1), 0); /* the child */  \
    LOOP_NEW(loop, be_);                                                     \
    if ((be_) == CLOOP_BACKEND_URING &&                                      \
        !strstr(cloop_loop_backend_info(loop), "SEND_ZC"))                   \
      SKIP("no IORING_OP_SEND_ZC (or no io_uring operations) here: %s",      \
           cloop_loop_backend_info(loop));                                   \
  } while (0)

/* A sender and a receiver of one buffer, in operations. */
typedef struct xfer {
  cloop_op sop, rop;
  int sfd, rfd;
  unsigned char *out, *in;
  size_t len, sent, got, chunk;
  int partial, sends, error, send_done;
} xfer;

static void on_sent(cloop_op *op) {
  xfer *x = op->data;
  if (op->result <= 0) {
    x->error = op->result ? op->result : -EIO;
    return;
  }
  size_t asked = x->len - x->sent;
  x->partial += (size_t)op->result < asked;
  x->sent += (size_t)op->result;
  x->sends++;
  if (x->sent < x->len)
    ASSERT_EQ(cloop_op_send(op->loop, op, x->sfd, x->out + x->sent,
                            x->len - x->sent, 0, on_sent, x), 0);
  else
    x->send_done = 1;
}

static void on_recv(cloop_op *op) {
  xfer *x = op->data;
  if (op->result <= 0) {
    x->error = op->result ? op->result : -EPIPE;
    return;
  }
  x->got += (size_t)op->result;
  if (x->got < x->len)
    ASSERT_EQ(cloop_op_recv(op->loop, op, x->rfd, x->in + x->got,
                            x->len - x->got < x->chunk ? x->len - x->got : x->chunk,
                            0, on_recv, x), 0);
}

/* Sends len bytes from snd to rcv through the loop; every byte in order. */
static int transfer(cloop_loop *loop, int snd, int rcv, size_t len) {
  xfer x = {.sfd = snd, .rfd = rcv, .len = len, .chunk = 64 << 10};
  x.out = malloc(len);
  x.in = malloc(len);
  for (size_t i = 0; i < len; i++)
    x.out[i] = pat(i);
  ASSERT_EQ(cloop_op_send(loop, &x.sop, snd, x.out, len, 0, on_sent, &x), 0);
  ASSERT_EQ(cloop_op_recv(loop, &x.rop, rcv, x.in, len < x.chunk ? len : x.chunk,
                          0, on_recv, &x), 0);
  uint64_t end = test_clock_ns() + 10000 * MS;
  while ((x.got < len || !x.send_done) && !x.error) {
    ASSERT_LT(test_clock_ns(), end);
    ASSERT(cloop_run_once(loop, 100 * MS) >= 0);
  }
  ASSERT_EQ(x.error, 0);
  ASSERT_EQ(x.sent, len);
  ASSERT_EQ(x.got, len);
  ASSERT_EQ(memcmp(x.in, x.out, len), 0);
  free(x.out);
  free(x.in);
  return x.partial;
}

TEST_IMPL_POLL(uring_zc_sizes_in_order) {
  cloop_loop *loop;
  ZC_LOOP(loop, backend);
  int s, r;
  tcp_pair(&s, &r, 0);
  static const size_t sizes[] = {1, THRESHOLD - 1, THRESHOLD, THRESHOLD + 1,
                                 16 << 10, 64 << 10, 256 << 10};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    transfer(loop, s, r, sizes[i]);
  ASSERT_EQ(cloop_close_fd(loop, s), 0);
  ASSERT_EQ(cloop_close_fd(loop, r), 0);
  /* Partial sends: 4 MiB into a small receive buffer. */
  tcp_pair(&s, &r, 16 << 10);
  int partial = transfer(loop, s, r, 4 << 20);
  ASSERT(partial > 0);
  ASSERT_EQ(cloop_close_fd(loop, s), 0);
  ASSERT_EQ(cloop_close_fd(loop, r), 0);
  /* AF_UNIX: no zero-copy (-EOPNOTSUPP), sent again as plain sends. */
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  transfer(loop, sv[0], sv[1], 256 << 10);
  ASSERT_EQ(cloop_close_fd(loop, sv[0]), 0);
  ASSERT_EQ(cloop_close_fd(loop, sv[1]), 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* One send of 1 MiB into a peer that does not read: some of it is sent,
   and the kernel holds the rest of the skbs (and the pages) in the
   sender's queue. */
typedef struct held {
  cloop_op op;
  int done, result;
} held;

static void on_held(cloop_op *op) {
  held *h = op->data;
  h->done = 1;
  h->result = op->result;
}

static unsigned char *start_held(cloop_loop *loop, held *h, int s, int r,
                                 size_t len) {
  int sndbuf = 64 << 10; /* small: the send stays in the kernel's hands */
  ASSERT_EQ(setsockopt(s, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf), 0);
  unsigned char *buf = malloc(len);
  for (size_t i = 0; i < len; i++)
    buf[i] = pat(i);
  ASSERT_EQ(cloop_op_send(loop, &h->op, s, buf, len, 0, on_held, h), 0);
  /* Until bytes reach the peer and the first CQE has surely been reaped. */
  uint64_t end = test_clock_ns() + 5000 * MS;
  int queued = 0;
  for (int rounds = 0; rounds < 5;) {
    ASSERT_LT(test_clock_ns(), end);
    ASSERT(cloop_run_once(loop, 10 * MS) >= 0);
    ASSERT_EQ(ioctl(r, FIONREAD, &queued), 0);
    rounds += queued > 0;
  }
  return buf;
}

/* Reads what the peer has; returns the count so far. */
static size_t drain(int r, unsigned char *in, size_t have, size_t cap) {
  for (;;) {
    ssize_t k = recv(r, in + have, cap - have, MSG_DONTWAIT);
    if (k <= 0)
      return have;
    have += (size_t)k;
  }
}

TEST_IMPL(uring_zc_cancel_keeps_buffer_until_notification) {
  cloop_loop *loop;
  const cloop_backend backend = CLOOP_BACKEND_URING;
  ZC_LOOP(loop, backend);
  int s, r;
  tcp_pair(&s, &r, 4096);
  size_t len = 1 << 20;
  held h = {0};
  unsigned char *buf = start_held(loop, &h, s, r, len);
  ASSERT_EQ(h.done, 0);
  ASSERT_EQ(cloop_op_cancel(loop, &h.op), 1);
  /* The kernel still reads the buffer: the callback waits for it. */
  for (int i = 0; i < 5; i++)
    ASSERT(cloop_run_once(loop, 10 * MS) >= 0);
  ASSERT_EQ(h.done, 0);
  unsigned char *in = malloc(len);
  size_t have = 0;
  uint64_t end = test_clock_ns() + 5000 * MS;
  while (!h.done) {
    ASSERT_LT(test_clock_ns(), end);
    have = drain(r, in, have, len);
    ASSERT(cloop_run_once(loop, 1 * MS) >= 0);
  }
  ASSERT(h.result > 0); /* it had sent: the count stands */
  /* The buffer is the caller's again: what it writes now must not reach
     the peer (it would, had the callback come before the kernel let go). */
  memset(buf, 0xee, len);
  free(buf);
  end = test_clock_ns() + 2000 * MS;
  while (have < (size_t)h.result) {
    ASSERT_LT(test_clock_ns(), end);
    have = drain(r, in, have, len);
  }
  ASSERT_EQ(have, (size_t)h.result);
  for (size_t i = 0; i < have; i++)
    if (in[i] != pat(i)) {
      fprintf(stderr, "byte %zu: %#x, not %#x\n", i, in[i], pat(i));
      ASSERT(0);
    }
  free(in);
  ASSERT_EQ(cloop_close_fd(loop, s), 0);
  ASSERT_EQ(cloop_close_fd(loop, r), 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

TEST_IMPL(uring_zc_close_while_held) {
  cloop_loop *loop;
  const cloop_backend backend = CLOOP_BACKEND_URING;
  ZC_LOOP(loop, backend);
  int s, r;
  tcp_pair(&s, &r, 4096);
  held h = {0};
  unsigned char *buf = start_held(loop, &h, s, r, 1 << 20);
  ASSERT_EQ(cloop_close_fd(loop, s), 0);
  ASSERT_EQ(h.done, 0); /* kept: the kernel holds the pages */
  /* The fd number comes back at once: its sending side is free. */
  int s2, r2;
  tcp_pair(&s2, &r2, 0);
  transfer(loop, s2, r2, 64 << 10);
  /* The peer goes with unread bytes: a reset frees the skbs, then the
     notification ends the op. */
  ASSERT_EQ(close(r), 0);
  uint64_t end = test_clock_ns() + 5000 * MS;
  while (!h.done) {
    ASSERT_LT(test_clock_ns(), end);
    ASSERT(cloop_run_once(loop, 10 * MS) >= 0);
  }
  ASSERT(h.result > 0 || h.result == -ECONNRESET || h.result == -EPIPE);
  free(buf);
  ASSERT_EQ(cloop_close_fd(loop, s2), 0);
  ASSERT_EQ(cloop_close_fd(loop, r2), 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}
