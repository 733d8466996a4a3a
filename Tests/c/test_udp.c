/* test_udp.c -- UDP (loop/udp.c, io.c's recvmsg/sendmsg, net.c's task
 * calls) on both backends: datagrams of 0 B, 1 B, 1472 B and 65507 B with
 * the sender's address, in tasks on private and shared stacks and as
 * callback-level operations; truncation reported on both levels; 10,000
 * datagrams in order with every loss counted; a connected socket's
 * refused port; IPv6 on ::1; a parked receive cancelled and timed out
 * with nothing lost; broadcast and multicast options; address parsing. */
#include "test.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>

#define MS 1000000LL

static cloop_loop *my_loop(void) { return cloop_task_loop(cloop_current_task()); }

/* Runs fn(arg) as the main task on a new loop of backend, its tasks on
   `stack`. */
static int run_on(cloop_backend backend, cloop_stack_mode stack,
                  cloop_task_fn fn, void *arg) {
  cloop_options o;
  cloop_options_init(&o);
  o.backend = backend;
  o.task_stack = stack;
  cloop_loop *loop;
  int r = cloop_loop_new(&loop, &o);
  if (r == CLOOP_ENOBACKEND && backend == CLOOP_BACKEND_URING)
    SKIP("backend %s not available: %s", cloop_backend_name(backend),
         cloop_strerror(r));
  ASSERT_EQ(r, 0);
  ASSERT_EQ(test_run_loop(loop, fn, arg), 0);
  return 0;
}

/* A bound socket on host, port 0, and its address. */
static int bound(const char *host, struct sockaddr_storage *addr,
                 socklen_t *len) {
  int fd = cloop_udp_bind(host, 0, 0);
  ASSERT_GE(fd, 0);
  *len = sizeof *addr;
  ASSERT_EQ(getsockname(fd, (struct sockaddr *)addr, len), 0);
  return fd;
}

static int same_addr(const struct sockaddr_storage *a, socklen_t alen,
                     const struct sockaddr_storage *b, socklen_t blen) {
  return alen == blen && memcmp(a, b, alen) == 0;
}

/* ---- sizes ---------------------------------------------------------------- */

static const size_t sizes[] = {0, 1, 1472, 65507};

/* Each size both ways between two sockets on host, every byte and the
   sender's address checked. The buffers are the task's own (on its stack
   for the shared-stack run: 64 KiB fits the 256 KiB shared stack). */
static intptr_t sizes_main(void *arg) {
  const char *host = arg;
  struct sockaddr_storage aa, ba;
  socklen_t al, bl;
  int a = bound(host, &aa, &al), b = bound(host, &ba, &bl);
  static char out[65507];
  char in[65507 + 1];
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t n = sizes[k];
    for (size_t i = 0; i < n; i++)
      out[i] = (char)(i * 7 + k);
    ASSERT_EQ(cloop_udp_sendto(a, out, n, (struct sockaddr *)&ba, bl), (ssize_t)n);
    struct sockaddr_storage from;
    socklen_t fl = sizeof from;
    int flags = -1;
    memset(in, 0x55, sizeof in);
    ssize_t r = cloop_udp_recvfrom(b, in, sizeof in, (struct sockaddr *)&from,
                                   &fl, &flags);
    ASSERT_EQ(r, (ssize_t)n);
    ASSERT_EQ(flags, 0);
    ASSERT(same_addr(&from, fl, &aa, al));
    ASSERT(memcmp(in, out, n) == 0);
    ASSERT_EQ((unsigned char)in[n], 0x55); /* nothing past it written */
    /* and back, without asking for the address */
    ASSERT_EQ(cloop_udp_sendto(b, in, n, (struct sockaddr *)&from, fl), (ssize_t)n);
    ASSERT_EQ(cloop_udp_recvfrom(a, in, sizeof in, NULL, NULL, NULL), (ssize_t)n);
    ASSERT(memcmp(in, out, n) == 0);
  }
  /* One byte over the IPv4 limit is refused, not cut. */
  if (((struct sockaddr *)&aa)->sa_family == AF_INET) {
    static char big[65508];
    ASSERT_EQ(cloop_udp_sendto(a, big, sizeof big, (struct sockaddr *)&ba, bl),
              -EMSGSIZE);
  }
  ASSERT_EQ(cloop_sock_close(a), 0);
  ASSERT_EQ(cloop_sock_close(b), 0);
  return 0;
}

TEST_IMPL_POLL(udp_sizes_0_to_65507) {
  return run_on(backend, CLOOP_STACK_PRIVATE, sizes_main, "127.0.0.1");
}

TEST_IMPL_POLL(udp_sizes_shared_stack) {
  return run_on(backend, CLOOP_STACK_SHARED, sizes_main, "127.0.0.1");
}

TEST_IMPL_POLL(udp_ipv6_loopback) {
  int v6 = cloop_udp_bind("::1", 0, 0);
  if (v6 < 0)
    SKIP("::1 cannot be bound here: %s", cloop_strerror(v6));
  close(v6);
  return run_on(backend, CLOOP_STACK_PRIVATE, sizes_main, "::1");
}

/* ---- the callback level ---------------------------------------------------- */

typedef struct {
  int done;
  cloop_op op;
} op_box;

static void op_fired(cloop_op *op) { ((op_box *)op->data)->done++; }

/* A recvmsg posted before anything was sent (it waits), a sendmsg to its
   socket, then a datagram longer than the buffer: MSG_TRUNC, the bytes
   that fit, and the next datagram whole. */
TEST_IMPL_POLL(udp_ops_recvmsg_sendmsg_truncation) {
  cloop_loop *loop;
  LOOP_NEW(loop, backend);
  struct sockaddr_storage aa, ba;
  socklen_t al, bl;
  int a = bound("127.0.0.1", &aa, &al), b = bound("127.0.0.1", &ba, &bl);
  op_box rx = {0}, tx = {0};
  char in[8];
  ASSERT_EQ(cloop_op_recvmsg(loop, &rx.op, b, in, sizeof in, 0, op_fired, &rx), 0);
  ASSERT_GE(cloop_run_once(loop, 0), 0);
  ASSERT_EQ(rx.done, 0); /* nothing yet */
  ASSERT_EQ(cloop_op_sendmsg(loop, &tx.op, a, "hello", 5, (struct sockaddr *)&ba,
                             bl, 0, op_fired, &tx), 0);
  while (!rx.done || !tx.done)
    ASSERT_GE(cloop_run_once(loop, 1000 * MS), 0);
  ASSERT_EQ(tx.op.result, 5);
  ASSERT_EQ(rx.op.result, 5);
  ASSERT_EQ(rx.op.msg_flags & MSG_TRUNC, 0);
  ASSERT(memcmp(in, "hello", 5) == 0);
  ASSERT(same_addr(&rx.op.addr, rx.op.addrlen, &aa, al));

  /* 20 bytes into 8: the 8 that fit, and MSG_TRUNC says the rest is gone. */
  rx.done = tx.done = 0;
  ASSERT_EQ(cloop_op_sendmsg(loop, &tx.op, a, "0123456789abcdefghij", 20,
                             (struct sockaddr *)&ba, bl, 0, op_fired, &tx), 0);
  while (!tx.done)
    ASSERT_GE(cloop_run_once(loop, 1000 * MS), 0);
  ASSERT_EQ(cloop_op_recvmsg(loop, &rx.op, b, in, sizeof in, 0, op_fired, &rx), 0);
  while (!rx.done)
    ASSERT_GE(cloop_run_once(loop, 1000 * MS), 0);
  ASSERT_EQ(rx.op.result, 8);
  ASSERT_NE(rx.op.msg_flags & MSG_TRUNC, 0);
  ASSERT(memcmp(in, "01234567", 8) == 0);

  /* The next one is whole: truncation took nothing from it. */
  rx.done = tx.done = 0;
  ASSERT_EQ(cloop_op_sendmsg(loop, &tx.op, a, "next", 4, (struct sockaddr *)&ba,
                             bl, 0, op_fired, &tx), 0);
  ASSERT_EQ(cloop_op_recvmsg(loop, &rx.op, b, in, sizeof in, 0, op_fired, &rx), 0);
  while (!rx.done || !tx.done)
    ASSERT_GE(cloop_run_once(loop, 1000 * MS), 0);
  ASSERT_EQ(rx.op.result, 4);
  ASSERT_EQ(rx.op.msg_flags & MSG_TRUNC, 0);
  ASSERT(memcmp(in, "next", 4) == 0);

  /* An address too long for the op is refused; fn is not called. */
  struct sockaddr_storage huge[2];
  memset(huge, 0, sizeof huge);
  ASSERT_EQ(cloop_op_sendmsg(loop, &tx.op, a, "x", 1, (struct sockaddr *)huge,
                             sizeof huge, 0, op_fired, &tx), -EINVAL);
  ASSERT_EQ(cloop_close_fd(loop, a), 0);
  ASSERT_EQ(cloop_close_fd(loop, b), 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* In a task: truncation comes as CLOOP_UDP_TRUNCATED. */
static intptr_t trunc_main(void *arg) {
  (void)arg;
  struct sockaddr_storage aa, ba;
  socklen_t al, bl;
  int a = bound("127.0.0.1", &aa, &al), b = bound("127.0.0.1", &ba, &bl);
  char big[1000], in[100];
  memset(big, 'z', sizeof big);
  ASSERT_EQ(cloop_udp_sendto(a, big, sizeof big, (struct sockaddr *)&ba, bl), 1000);
  ASSERT_EQ(cloop_udp_sendto(a, big, 100, (struct sockaddr *)&ba, bl), 100);
  int flags = 0;
  ASSERT_EQ(cloop_udp_recvfrom(b, in, sizeof in, NULL, NULL, &flags), 100);
  ASSERT_EQ(flags, CLOOP_UDP_TRUNCATED);
  ASSERT_EQ(cloop_udp_recvfrom(b, in, sizeof in, NULL, NULL, &flags), 100);
  ASSERT_EQ(flags, 0); /* exactly the buffer's size is no truncation */
  ASSERT_EQ(cloop_sock_close(a), 0);
  ASSERT_EQ(cloop_sock_close(b), 0);
  return 0;
}

TEST_IMPL_POLL(udp_truncation_in_a_task) {
  int r = run_on(backend, CLOOP_STACK_PRIVATE, trunc_main, NULL);
  if (r)
    return r;
  return run_on(backend, CLOOP_STACK_SHARED, trunc_main, NULL);
}

/* ---- 10,000 in order -------------------------------------------------------- */

#define STREAM_N 10000
#define WINDOW 64 /* datagrams in flight at most: far below a socket's buffer */

typedef struct {
  int a, b;
  struct sockaddr_storage ba;
  socklen_t bl;
  uint32_t received, lost, reordered, last;
} stream;

static intptr_t stream_sender(void *arg) {
  stream *s = arg;
  for (uint32_t i = 0; i < STREAM_N; i++) {
    while (i - s->received >= WINDOW) /* paced: loopback drops a flood */
      ASSERT_EQ(cloop_sleep(0), 0);
    char msg[32];
    memset(msg, (int)(i & 0xff), sizeof msg);
    memcpy(msg, &i, sizeof i);
    ASSERT_EQ(cloop_udp_sendto(s->a, msg, sizeof msg, (struct sockaddr *)&s->ba,
                               s->bl), (ssize_t)sizeof msg);
  }
  return 0;
}

static intptr_t stream_main(void *arg) {
  (void)arg;
  stream s;
  memset(&s, 0, sizeof s);
  struct sockaddr_storage aa;
  socklen_t al;
  s.a = bound("127.0.0.1", &aa, &al);
  s.b = bound("127.0.0.1", &s.ba, &s.bl);
  cloop_task *tx;
  ASSERT_EQ(cloop_spawn(my_loop(), &tx, stream_sender, &s, "tx"), 0);
  uint32_t expect = 0;
  cloop_deadline d;
  ASSERT_EQ(cloop_deadline_enter(&d, 10000 * MS), 0); /* a hang fails */
  while (expect < STREAM_N) {
    char msg[64];
    ssize_t n = cloop_udp_recvfrom(s.b, msg, sizeof msg, NULL, NULL, NULL);
    ASSERT_EQ(n, 32);
    uint32_t seq;
    memcpy(&seq, msg, sizeof seq);
    ASSERT_EQ((unsigned char)msg[31], seq & 0xff);
    if (seq < expect) {
      s.reordered++;
      continue;
    }
    s.lost += seq - expect; /* each gap is a loss */
    expect = seq + 1;
    s.received++;
  }
  ASSERT_EQ(cloop_deadline_exit(&d), 0);
  ASSERT_EQ(cloop_task_join(tx), 0);
  cloop_task_release(tx);
  ASSERT_EQ(s.lost, 0);
  ASSERT_EQ(s.reordered, 0);
  ASSERT_EQ(s.received, STREAM_N);
  ASSERT_EQ(cloop_sock_close(s.a), 0);
  ASSERT_EQ(cloop_sock_close(s.b), 0);
  return 0;
}

TEST_IMPL_POLL(udp_10k_in_order_none_lost) {
  return run_on(backend, CLOOP_STACK_PRIVATE, stream_main, NULL);
}

/* ---- connected ---------------------------------------------------------------- */

static intptr_t refused_main(void *arg) {
  (void)arg;
  struct sockaddr_storage ga, pa;
  socklen_t gl, pl;
  int gone = bound("127.0.0.1", &ga, &gl);
  ASSERT_EQ(cloop_sock_close(gone), 0); /* nobody at that port now */
  int peer = bound("127.0.0.1", &pa, &pl);
  int c = cloop_udp_bind("127.0.0.1", 0, 0);
  ASSERT_GE(c, 0);

  /* Connected to a live peer: plain send and recv both ways. */
  ASSERT_EQ(cloop_udp_connect(c, (struct sockaddr *)&pa, pl), 0);
  ASSERT_EQ(cloop_sock_send(c, "ping", 4), 4);
  char buf[16];
  struct sockaddr_storage from;
  socklen_t fl = sizeof from;
  ASSERT_EQ(cloop_udp_recvfrom(peer, buf, sizeof buf, (struct sockaddr *)&from,
                               &fl, NULL), 4);
  ASSERT_EQ(cloop_udp_sendto(peer, "pong", 4, (struct sockaddr *)&from, fl), 4);
  ASSERT_EQ(cloop_sock_recv(c, buf, sizeof buf), 4);
  ASSERT(memcmp(buf, "pong", 4) == 0);
  ASSERT_EQ(cloop_udp_sendto(c, "p2", 2, NULL, 0), 2); /* no address: the peer */
  ASSERT_EQ(cloop_udp_recvfrom(peer, buf, sizeof buf, NULL, NULL, NULL), 2);

  /* Connected to the closed port: the send goes out, the ICMP answer
     comes back as -ECONNREFUSED from the next call -- here a receive
     that was parked waiting for it. */
  ASSERT_EQ(cloop_udp_connect(c, (struct sockaddr *)&ga, gl), 0);
  ASSERT_EQ(cloop_sock_send(c, "anyone?", 7), 7);
  cloop_deadline d;
  ASSERT_EQ(cloop_deadline_enter(&d, 5000 * MS), 0);
  ASSERT_EQ(cloop_sock_recv(c, buf, sizeof buf), -ECONNREFUSED);
  /* The error is reported once; then the socket works again. */
  ASSERT_EQ(cloop_sock_send(c, "again", 5), 5);
  ASSERT_EQ(cloop_udp_recvfrom(c, buf, sizeof buf, NULL, NULL, NULL), -ECONNREFUSED);
  ASSERT_EQ(cloop_deadline_exit(&d), 0);
  ASSERT_EQ(cloop_sock_close(c), 0);
  ASSERT_EQ(cloop_sock_close(peer), 0);
  return 0;
}

TEST_IMPL_POLL(udp_connected_refused) {
  return run_on(backend, CLOOP_STACK_PRIVATE, refused_main, NULL);
}

/* ---- interruptions ------------------------------------------------------------ */

static intptr_t park_recv(void *arg) {
  int fd = (int)(intptr_t)arg;
  char buf[16];
  return cloop_udp_recvfrom(fd, buf, sizeof buf, NULL, NULL, NULL);
}

static intptr_t interrupt_main(void *arg) {
  (void)arg;
  struct sockaddr_storage ba, aa;
  socklen_t bl, al;
  int b = bound("127.0.0.1", &ba, &bl), a = bound("127.0.0.1", &aa, &al);
  char buf[16];

  /* A deadline passes while the receive is parked: -ETIMEDOUT, at the
     deadline. */
  cloop_deadline d;
  uint64_t t0 = cloop_now(my_loop());
  ASSERT_EQ(cloop_deadline_enter(&d, 20 * MS), 0);
  ASSERT_EQ(cloop_udp_recvfrom(b, buf, sizeof buf, NULL, NULL, NULL), -ETIMEDOUT);
  ASSERT_EQ(cloop_deadline_exit(&d), -ETIMEDOUT);
  ASSERT_GE(cloop_now(my_loop()) - t0, (uint64_t)(20 * MS));

  /* A task cancelled while parked: -ECANCELED. */
  cloop_task *t;
  ASSERT_EQ(cloop_spawn(my_loop(), &t, park_recv, (void *)(intptr_t)b, "rx"), 0);
  ASSERT_EQ(cloop_sleep(5 * MS), 0);
  ASSERT_EQ(cloop_task_cancel(t), 1);
  ASSERT_EQ(cloop_task_join(t), -ECANCELED);
  cloop_task_release(t);

  /* Nothing was taken from the socket by either: the next datagram is
     the first one received. */
  ASSERT_EQ(cloop_udp_sendto(a, "after", 5, (struct sockaddr *)&ba, bl), 5);
  ASSERT_EQ(cloop_udp_recvfrom(b, buf, sizeof buf, NULL, NULL, NULL), 5);
  ASSERT(memcmp(buf, "after", 5) == 0);

  /* Closing the fd wakes a parked receive with -EBADF. */
  ASSERT_EQ(cloop_spawn(my_loop(), &t, park_recv, (void *)(intptr_t)b, "rx"), 0);
  ASSERT_EQ(cloop_sleep(1 * MS), 0);
  ASSERT_EQ(cloop_sock_close(b), 0);
  ASSERT_EQ(cloop_task_join(t), -EBADF);
  cloop_task_release(t);
  ASSERT_EQ(cloop_sock_close(a), 0);
  return 0;
}

TEST_IMPL_POLL(udp_cancel_and_timeout_of_parked_recv) {
  return run_on(backend, CLOOP_STACK_PRIVATE, interrupt_main, NULL);
}

/* ---- options ----------------------------------------------------------------- */

TEST_IMPL(udp_broadcast_option) {
  int fd = cloop_udp_bind("0.0.0.0", 0, 0);
  ASSERT_GE(fd, 0);
  struct sockaddr_storage bc;
  int len = cloop_sockaddr_parse("255.255.255.255", 9, &bc);
  ASSERT_GT(len, 0);
  /* Without SO_BROADCAST the kernel refuses it. */
  ASSERT_EQ(sendto(fd, "x", 1, MSG_DONTWAIT, (struct sockaddr *)&bc, (socklen_t)len) < 0 ? -errno : 0,
            -EACCES);
  ASSERT_EQ(cloop_udp_set_broadcast(fd, 1), 0);
  int on = 0;
  socklen_t ol = sizeof on;
  ASSERT_EQ(getsockopt(fd, SOL_SOCKET, SO_BROADCAST, &on, &ol), 0);
  ASSERT_EQ(on, 1);
  ASSERT_EQ(cloop_udp_set_broadcast(fd, 0), 0);
  ASSERT_EQ(getsockopt(fd, SOL_SOCKET, SO_BROADCAST, &on, &ol), 0);
  ASSERT_EQ(on, 0);
  close(fd);
  return 0;
}

TEST_IMPL(udp_multicast_join_leave) {
  if (!if_nametoindex("lo"))
    SKIP("no loopback interface named lo");
  int fd = cloop_udp_bind("0.0.0.0", 0, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(cloop_udp_membership(fd, "10.0.0.1", "lo", 1), -EINVAL); /* no group */
  ASSERT_EQ(cloop_udp_membership(fd, "239.255.7.7", "no-such-if0", 1), -ENODEV);
  ASSERT_EQ(cloop_udp_membership(fd, "ff02::1", "lo", 1), -EINVAL); /* wrong family */
  int r = cloop_udp_membership(fd, "239.255.7.7", "lo", 1);
  if (r == -ENODEV || r == -ENOBUFS)
    SKIP("multicast on lo not available: %s", cloop_strerror(r));
  ASSERT_EQ(r, 0);
  ASSERT_EQ(cloop_udp_set_multicast_loop(fd, 1), 0);
  ASSERT_EQ(cloop_udp_membership(fd, "239.255.7.7", "lo", 0), 0);
  ASSERT_EQ(cloop_udp_membership(fd, "239.255.7.7", "lo", 0), -EADDRNOTAVAIL);
  close(fd);

  int v6 = cloop_udp_bind("::", 0, 0);
  if (v6 < 0)
    SKIP("IPv4 part passed; no IPv6 here: %s", cloop_strerror(v6));
  r = cloop_udp_membership(v6, "ff02::1:7", "lo", 1);
  if (r < 0) {
    close(v6);
    SKIP("IPv4 part passed; IPv6 multicast on lo: %s", cloop_strerror(r));
  }
  ASSERT_EQ(cloop_udp_membership(v6, "ff02::1:7", "lo", 0), 0);
  close(v6);
  return 0;
}

TEST_IMPL(udp_address_parsing) {
  struct sockaddr_storage ss;
  char host[INET6_ADDRSTRLEN + IF_NAMESIZE];
  int port = 0;
  ASSERT_EQ(cloop_sockaddr_parse("127.0.0.1", 53, &ss), (int)sizeof(struct sockaddr_in));
  ASSERT_EQ(cloop_sockaddr_format((struct sockaddr *)&ss, host, sizeof host, &port), 0);
  ASSERT(strcmp(host, "127.0.0.1") == 0);
  ASSERT_EQ(port, 53);
  ASSERT_EQ(cloop_sockaddr_parse("::1", 65535, &ss), (int)sizeof(struct sockaddr_in6));
  ASSERT_EQ(cloop_sockaddr_format((struct sockaddr *)&ss, host, sizeof host, &port), 0);
  ASSERT(strcmp(host, "::1") == 0);
  ASSERT_EQ(port, 65535);
  ASSERT_EQ(cloop_sockaddr_parse(NULL, 0, &ss), (int)sizeof(struct sockaddr_in));
  ASSERT_EQ(ss.ss_family, AF_INET);
  ASSERT_EQ(cloop_sockaddr_parse("fe80::1%lo", 1, &ss), (int)sizeof(struct sockaddr_in6));
  ASSERT_EQ(((struct sockaddr_in6 *)&ss)->sin6_scope_id, if_nametoindex("lo"));
  ASSERT_EQ(cloop_sockaddr_parse("localhost", 1, &ss), -EINVAL); /* names: no */
  ASSERT_EQ(cloop_sockaddr_parse("1.2.3.4", 65536, &ss), -EINVAL);
  ASSERT_EQ(cloop_sockaddr_parse("1.2.3.4", -1, &ss), -EINVAL);
  ASSERT_EQ(cloop_sockaddr_parse("fe80::1%", 1, &ss), -EINVAL);
  ASSERT_EQ(cloop_udp_bind("nonsense", 0, 0), -EINVAL);
  ASSERT_EQ(cloop_udp_bind("127.0.0.1", 0, 99), -EINVAL);
  /* A port in use is said clearly. */
  int a = cloop_udp_bind("127.0.0.1", 0, 0);
  ASSERT_GE(a, 0);
  int p = cloop_sock_port(a);
  ASSERT_GT(p, 0);
  ASSERT_EQ(cloop_udp_bind("127.0.0.1", p, 0), -EADDRINUSE);
  close(a);
  return 0;
}
