/* test_net.c -- the coroutine-level sockets (net.c), each test once per
 * backend, on loopback only: echo round trips from 1 byte to 4 MiB,
 * recv_until's delimiter cases, many and very many connections, the faults
 * (reset, refused, EOF, closing under a parked task, cancellation,
 * deadlines, EMFILE on accept), no allocation per round trip, and a host
 * name resolved off the loop's thread; and all of it once more on auto
 * with io_uring blocked by seccomp, where it must fall back to epoll. */
#include "test.h"

#include <dirent.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define MS 1000000LL

/* ---- counting allocations ---------------------------------------------
   The test binary's malloc, calloc and realloc forward to glibc's and
   count while `counting` is set. ASan and TSan bring their own allocators,
   which these must not replace: there the zero-allocation test skips. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define NO_MALLOC_COUNT 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define NO_MALLOC_COUNT 1
#endif
#endif

static volatile int counting;
static volatile long counted;

#ifndef NO_MALLOC_COUNT
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);

void *malloc(size_t n) {
  if (counting)
    counted++;
  return __libc_malloc(n);
}

void *calloc(size_t n, size_t size) {
  if (counting)
    counted++;
  return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n) {
  if (counting)
    counted++;
  return __libc_realloc(p, n);
}
#endif

/* ---- helpers ---------------------------------------------------------- */

/* What CLOOP_BACKEND_AUTO must give: only the fall-back test sets it
   (to epoll, io_uring being blocked there). */
static cloop_backend auto_expect = CLOOP_BACKEND_AUTO;

/* LOOP_NEW, and for CLOOP_BACKEND_AUTO (the fall-back test runs the bodies
   so) a loop from the auto option, checked to run auto_expect. */
#define NET_LOOP_NEW(loop, backend)                                          \
  do {                                                                       \
    if ((backend) == CLOOP_BACKEND_AUTO) {                                   \
      ASSERT_NE(auto_expect, CLOOP_BACKEND_AUTO);                            \
      cloop_options ao__;                                                    \
      cloop_options_init(&ao__);                                             \
      ao__.backend = CLOOP_BACKEND_AUTO;                                     \
      ASSERT_EQ(cloop_loop_new(&(loop), &ao__), 0);                          \
      ASSERT_EQ(cloop_loop_backend(loop), auto_expect);                      \
    } else {                                                                 \
      LOOP_NEW(loop, backend);                                               \
    }                                                                        \
  } while (0)

/* Runs fn(arg) as the main task on a new loop of `backend` (skipping where
   that backend is missing) and checks that it returned 0. */
#define RUN(backend, fn, arg)                                                \
  do {                                                                       \
    cloop_loop *l__;                                                         \
    NET_LOOP_NEW(l__, backend);                                              \
    ASSERT_EQ(test_run_loop(l__, (fn), (arg)), 0);                           \
  } while (0)

static cloop_loop *my_loop(void) { return cloop_task_loop(cloop_current_task()); }

static cloop_task *spawn_mode(cloop_task_fn fn, void *arg, cloop_stack_mode mode) {
  cloop_task *t;
  cloop_spawn_options o = {NULL, mode};
  ASSERT_EQ(cloop_spawn_ex(my_loop(), &t, fn, arg, &o), 0);
  return t;
}

static cloop_task *spawn(cloop_task_fn fn, void *arg) {
  return spawn_mode(fn, arg, CLOOP_STACK_DEFAULT_MODE);
}

static intptr_t join(cloop_task *t) {
  intptr_t r = cloop_task_join(t);
  cloop_task_release(t);
  return r;
}

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  ASSERT(d != NULL);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n - 1; /* the directory's own fd */
}

static void fill_pattern(char *p, size_t len, uint64_t seed) {
  uint64_t s = seed | 1;
  for (size_t i = 0; i < len; i++)
    p[i] = (char)(test_rand(&s) >> 56);
}

/* Reads exactly len bytes (asserting no EOF or error). */
static void recv_exact(int fd, char *buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t k = cloop_sock_recv(fd, buf + got, len - got);
    if (k <= 0)
      fprintf(stderr, "recv_exact: %zd (%s) after %zu of %zu bytes\n", k,
              cloop_strerror((int)k), got, len);
    ASSERT_GT(k, 0);
    got += (size_t)k;
  }
}

/* A connected pair on loopback: *client from cloop_tcp_connect, *server
   from cloop_sock_accept. */
static void tcp_pair(const char *host, int *client, int *server) {
  int lfd = cloop_tcp_listen(host, 0, 16, 0);
  ASSERT_GE(lfd, 0);
  int port = cloop_sock_port(lfd);
  ASSERT_GT(port, 0);
  *client = cloop_tcp_connect(host, port);
  ASSERT_GE(*client, 0);
  *server = cloop_sock_accept(lfd);
  ASSERT_GE(*server, 0);
  ASSERT_EQ(cloop_sock_close(lfd), 0);
}

/* 1 if ::1 can be bound here. */
static int have_ipv6(void) {
  int fd = cloop_tcp_listen("::1", 0, 1, 0);
  if (fd < 0)
    return 0;
  cloop_sock_close(fd);
  return 1;
}

/* ---- an echo server ---------------------------------------------------- */

typedef struct server {
  int lfd, port;
  cloop_stack_mode conn_stack; /* SHARED: buffers on the shared stack */
  size_t bufsize;              /* PRIVATE: heap buffer of this size */
  int accepted, open, max_open;
  cloop_event all_closed;      /* set when open drops to 0 */
  cloop_task *acceptor;
} server;

typedef struct conn {
  server *s;
  int fd;
} conn;

static void conn_end(server *s, int fd) {
  ASSERT_EQ(cloop_sock_close(fd), 0);
  if (--s->open == 0)
    cloop_event_set(&s->all_closed);
}

static intptr_t echo_heap(void *arg) {
  conn c = *(conn *)arg;
  free(arg);
  char *buf = malloc(c.s->bufsize);
  ASSERT(buf != NULL);
  for (;;) {
    ssize_t n = cloop_sock_recv(c.fd, buf, c.s->bufsize);
    if (n <= 0)
      break;
    if (cloop_sock_sendall(c.fd, buf, (size_t)n) < 0)
      break;
  }
  free(buf);
  conn_end(c.s, c.fd);
  return 0;
}

/* For shared-stack tasks: the buffer is on the (moving) stack. */
static intptr_t echo_stack(void *arg) {
  conn c = *(conn *)arg;
  free(arg);
  char buf[2048];
  for (;;) {
    ssize_t n = cloop_sock_recv(c.fd, buf, sizeof buf);
    if (n <= 0)
      break;
    if (cloop_sock_sendall(c.fd, buf, (size_t)n) < 0)
      break;
  }
  conn_end(c.s, c.fd);
  return 0;
}

static intptr_t acceptor(void *arg) {
  server *s = arg;
  for (;;) {
    int fd = cloop_sock_accept(s->lfd);
    if (fd == -ECANCELED)
      return 0;
    ASSERT_GE(fd, 0);
    s->accepted++;
    if (++s->open > s->max_open)
      s->max_open = s->open;
    cloop_event_clear(&s->all_closed);
    conn *c = malloc(sizeof *c);
    ASSERT(c != NULL);
    *c = (conn){s, fd};
    cloop_task *t = spawn_mode(s->conn_stack == CLOOP_STACK_SHARED ? echo_stack
                                                                  : echo_heap,
                               c, s->conn_stack);
    cloop_task_release(t);
  }
}

static void server_start(server *s, const char *host, int backlog) {
  if (!s->bufsize)
    s->bufsize = 256 << 10;
  s->lfd = cloop_tcp_listen(host, 0, backlog, 0);
  ASSERT_GE(s->lfd, 0);
  s->port = cloop_sock_port(s->lfd);
  ASSERT_GT(s->port, 0);
  cloop_event_init(&s->all_closed);
  cloop_event_set(&s->all_closed);
  s->acceptor = spawn(acceptor, s);
}

/* Stops accepting, waits until every connection has ended. */
static void server_stop(server *s) {
  cloop_task_cancel(s->acceptor);
  ASSERT_EQ(join(s->acceptor), 0);
  ASSERT_EQ(cloop_sock_close(s->lfd), 0);
  ASSERT_EQ(cloop_event_wait(&s->all_closed), 0);
}

typedef struct sender {
  int fd;
  const char *buf;
  size_t len;
} sender;

static intptr_t send_task(void *arg) {
  sender *sd = arg;
  ssize_t r = cloop_sock_sendall(sd->fd, sd->buf, sd->len);
  return r < 0 ? r : 0;
}

/* One echo of len bytes over fd, written by a second task while this one
   reads, so that megabytes cannot deadlock on full buffers. */
static void echo_check(int fd, size_t len, uint64_t seed) {
  char *out = malloc(len), *in = malloc(len);
  ASSERT(out && in);
  fill_pattern(out, len, seed);
  sender sd = {fd, out, len};
  cloop_task *t = spawn(send_task, &sd);
  recv_exact(fd, in, len);
  ASSERT_EQ(join(t), 0);
  for (size_t i = 0; i < len; i++)
    if (in[i] != out[i]) {
      fprintf(stderr, "byte %zu of %zu differs\n", i, len);
      ASSERT(0);
    }
  free(out);
  free(in);
}

/* ---- echo round trips, 1 byte to 4 MiB --------------------------------- */

static const size_t echo_sizes[] = {1, 2, 63, 64, 1000, 4096, 65535, 65536,
                                    65537, 300000, 1 << 20, 4 << 20};
#define NSIZES (sizeof echo_sizes / sizeof echo_sizes[0])

typedef struct echo_args {
  const char *host;
  cloop_stack_mode conn_stack;
} echo_args;

typedef struct sizes_run {
  const char *host;
  int port;
  uint64_t seed;
} sizes_run;

static intptr_t echo_sizes_client(void *arg) {
  sizes_run *sr = arg;
  for (size_t i = 0; i < NSIZES; i++) {
    int fd = cloop_tcp_connect(sr->host, sr->port);
    ASSERT_GE(fd, 0);
    echo_check(fd, echo_sizes[i], sr->seed + i);
    echo_check(fd, echo_sizes[i], sr->seed + i + 100); /* the same connection again */
    ASSERT_EQ(cloop_sock_close(fd), 0);
  }
  return 0;
}

/* Two clients at a time, so that two server tasks interleave (on the
   shared stack: each one's frames are swapped out while the other runs). */
static intptr_t echo_sizes_main(void *arg) {
  echo_args *a = arg;
  server s = {.conn_stack = a->conn_stack};
  server_start(&s, a->host, 16);
  sizes_run r1 = {a->host, s.port, 1}, r2 = {a->host, s.port, 1000};
  cloop_task *other = spawn(echo_sizes_client, &r2);
  ASSERT_EQ(echo_sizes_client(&r1), 0);
  ASSERT_EQ(join(other), 0);
  server_stop(&s);
  ASSERT_EQ(s.accepted, 2 * (int)NSIZES);
  return 0;
}

TEST_IMPL_POLL(net_echo_1b_to_4mib) {
  signal(SIGPIPE, SIG_DFL);
  echo_args a = {"127.0.0.1", CLOOP_STACK_PRIVATE};
  RUN(backend, echo_sizes_main, &a);
  return 0;
}

TEST_IMPL_POLL(net_echo_ipv6) {
  cloop_loop *loop;
  NET_LOOP_NEW(loop, backend);
  int v6 = cloop_tcp_listen("::1", 0, 1, 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  if (v6 < 0)
    SKIP("::1 cannot be bound here: %s", cloop_strerror(v6));
  close(v6);
  echo_args a = {"::1", CLOOP_STACK_PRIVATE};
  RUN(backend, echo_sizes_main, &a);
  return 0;
}

/* Server connections on the shared stack with their buffer on it: the
   sockets must never write into (or send from) a parked task's stack. */
TEST_IMPL_POLL(net_echo_shared_stack_buffers) {
  echo_args a = {"127.0.0.1", CLOOP_STACK_SHARED};
  RUN(backend, echo_sizes_main, &a);
  return 0;
}

/* ---- recv_until ------------------------------------------------------ */

static intptr_t write_later(void *arg) {
  /* Writes the pieces of a NULL-terminated list 5 ms apart, then EOF. */
  void **a = arg;
  int fd = (int)(intptr_t)a[0];
  for (int i = 1; a[i]; i++) {
    ASSERT_EQ(cloop_sleep(5 * MS), 0);
    const char *p = a[i];
    ASSERT_EQ(cloop_sock_sendall(fd, p, strlen(p)), (ssize_t)strlen(p));
  }
  ASSERT_EQ(cloop_sock_shutdown(fd, SHUT_WR), 0);
  return 0;
}

static void expect_line(int fd, size_t max, const char *delim, const char *want) {
  char buf[256];
  ASSERT(max <= sizeof buf);
  ssize_t n = cloop_sock_recv_until(fd, buf, max, delim, strlen(delim));
  if (n < 0 || (size_t)n != strlen(want) || memcmp(buf, want, (size_t)n)) {
    fprintf(stderr, "recv_until: got %zd \"%.*s\", want \"%s\"\n", n,
            n > 0 ? (int)n : 0, buf, want);
    ASSERT(0);
  }
}

static intptr_t until_split_main(void *arg) {
  (void)arg;
  int c, s;
  tcp_pair("127.0.0.1", &c, &s);
  /* The delimiter "\r\n" split across writes, one "\r" that is not part
     of it, a line split in three, then a tail without delimiter and EOF. */
  void *pieces[] = {(void *)(intptr_t)c, "hel", "lo\r", "\nwor\rld", "\r",
                    "\n", "ab", "c\r\nde", "f\r\ntail", NULL};
  cloop_task *w = spawn(write_later, pieces);
  expect_line(s, 200, "\r\n", "hello\r\n");
  expect_line(s, 200, "\r\n", "wor\rld\r\n");
  expect_line(s, 200, "\r\n", "abc\r\n");
  expect_line(s, 200, "\r\n", "def\r\n");
  expect_line(s, 200, "\r\n", "tail"); /* EOF: what came before it */
  expect_line(s, 200, "\r\n", "");     /* and then nothing */
  ASSERT_EQ(join(w), 0);
  ASSERT_EQ(cloop_sock_close(c), 0);
  ASSERT_EQ(cloop_sock_close(s), 0);
  return 0;
}

TEST_IMPL_POLL(net_recv_until_split_delimiter) {
  RUN(backend, until_split_main, NULL);
  return 0;
}

typedef struct lines_args {
  int fd;
  char *text;
  size_t len;
} lines_args;

static intptr_t lines_reader(void *arg) {
  lines_args *a = arg;
  char buf[64];
  size_t pos = 0;
  int lines = 0;
  for (;;) {
    ssize_t n = cloop_sock_recv_until(a->fd, buf, sizeof buf, "\n", 1);
    ASSERT_GE(n, 0);
    if (n == 0)
      break;
    ASSERT(pos + (size_t)n <= a->len);
    ASSERT(memcmp(buf, a->text + pos, (size_t)n) == 0);
    ASSERT_EQ(buf[n - 1], '\n');
    pos += (size_t)n;
    lines++;
  }
  ASSERT_EQ(pos, a->len);
  return lines;
}

/* Several lines per write (here thousands in one sendall): none is lost,
   none is split or merged. Lines run from 1 to 60 bytes. */
static intptr_t until_lines_main(void *arg) {
  (void)arg;
  int c, s;
  tcp_pair("127.0.0.1", &c, &s);
  ASSERT_EQ(cloop_sock_sendall(c, "a\nbb\nccc\n", 9), 9); /* three in one */
  expect_line(s, 64, "\n", "a\n");
  expect_line(s, 64, "\n", "bb\n");
  expect_line(s, 64, "\n", "ccc\n");

  size_t cap = 400000, len = 0;
  char *text = malloc(cap);
  uint64_t seed = 7;
  int nlines = 0;
  while (len + 64 < cap) {
    size_t l = 1 + test_rand(&seed) % 60;
    for (size_t i = 0; i + 1 < l; i++)
      text[len + i] = (char)('a' + test_rand(&seed) % 26);
    text[len + l - 1] = '\n';
    len += l;
    nlines++;
  }
  lines_args a = {s, text, len};
  cloop_task *r = spawn(lines_reader, &a);
  ASSERT_EQ(cloop_sock_sendall(c, text, len), (ssize_t)len);
  ASSERT_EQ(cloop_sock_shutdown(c, SHUT_WR), 0);
  ASSERT_EQ(join(r), nlines);
  free(text);
  ASSERT_EQ(cloop_sock_close(c), 0);
  ASSERT_EQ(cloop_sock_close(s), 0);
  return 0;
}

TEST_IMPL_POLL(net_recv_until_many_lines) {
  RUN(backend, until_lines_main, NULL);
  return 0;
}

static intptr_t until_msgsize_main(void *arg) {
  (void)arg;
  int c, s;
  tcp_pair("127.0.0.1", &c, &s);
  char buf[16];
  ASSERT_EQ(cloop_sock_sendall(c, "abcdefgh", 8), 8);
  /* max bytes hold no delimiter: CLOOP_ENODELIM, and those bytes are gone. */
  ASSERT_EQ(cloop_sock_recv_until(s, buf, 5, "\n", 1), CLOOP_ENODELIM);
  ASSERT(memcmp(buf, "abcde", 5) == 0);
  ASSERT_EQ(cloop_sock_sendall(c, "\nxy", 3), 3);
  expect_line(s, 16, "\n", "fgh\n");
  /* A delimiter that would end just past max is not seen. */
  ASSERT_EQ(cloop_sock_sendall(c, "1234\n", 5), 5);
  ASSERT_EQ(cloop_sock_recv_until(s, buf, 6, "4\n", 2), CLOOP_ENODELIM);
  ASSERT(memcmp(buf, "xy1234", 6) == 0);
  expect_line(s, 16, "\n", "\n");
  ASSERT_EQ(cloop_sock_recv_until(s, buf, 4, "", 0), -EINVAL);
  ASSERT_EQ(cloop_sock_close(c), 0);
  expect_line(s, 16, "\n", ""); /* EOF with nothing before it */
  ASSERT_EQ(cloop_sock_close(s), 0);
  return 0;
}

TEST_IMPL_POLL(net_recv_until_emsgsize_and_eof) {
  RUN(backend, until_msgsize_main, NULL);
  return 0;
}

/* ---- many connections --------------------------------------------------- */

#define CLIENTS 200
#define ROUNDS 100

typedef struct many {
  server s;
  int port, done;
} many;

static many *many_ctx;

static intptr_t many_client(void *arg) {
  intptr_t id = (intptr_t)arg;
  int fd = cloop_tcp_connect("127.0.0.1", many_ctx->port);
  ASSERT_GE(fd, 0);
  char out[64], in[64];
  for (int i = 0; i < ROUNDS; i++) {
    fill_pattern(out, sizeof out, (uint64_t)id * 1000 + (uint64_t)i);
    ASSERT_EQ(cloop_sock_sendall(fd, out, sizeof out), (ssize_t)sizeof out);
    recv_exact(fd, in, sizeof in);
    ASSERT(memcmp(in, out, sizeof in) == 0);
  }
  ASSERT_EQ(cloop_sock_close(fd), 0);
  many_ctx->done++;
  return 0;
}

static intptr_t many_main(void *arg) {
  cloop_stack_mode mode = (cloop_stack_mode)(intptr_t)arg;
  many m = {.s = {.conn_stack = mode, .bufsize = 4096}};
  many_ctx = &m;
  server_start(&m.s, "127.0.0.1", 1024);
  m.port = m.s.port;
  cloop_task *t[CLIENTS];
  for (intptr_t i = 0; i < CLIENTS; i++)
    t[i] = spawn_mode(many_client, (void *)i, mode);
  for (int i = 0; i < CLIENTS; i++)
    ASSERT_EQ(join(t[i]), 0);
  server_stop(&m.s);
  ASSERT_EQ(m.done, CLIENTS);
  ASSERT_EQ(m.s.accepted, CLIENTS);
  return 0;
}

TEST_IMPL_POLL(net_200_clients_100_round_trips) {
  RUN(backend, many_main, (void *)(intptr_t)CLOOP_STACK_PRIVATE);
  return 0;
}

TEST_IMPL_POLL(net_200_clients_shared_stack) {
  RUN(backend, many_main, (void *)(intptr_t)CLOOP_STACK_SHARED);
  return 0;
}

/* ---- 10,000 connections at once ---------------------------------------- */

#define TENK 10000

static struct {
  int port, connected, echoed;
  cloop_event all_echoed;
} tk;

/* A client: connects, echoes 8 bytes, holds the connection until all
   10,000 have done so, then closes. Runs on the shared stack. */
static intptr_t tk_client(void *arg) {
  intptr_t id = (intptr_t)arg;
  int fd;
  fd = cloop_tcp_connect("127.0.0.1", tk.port);
  if (fd < 0)
    fprintf(stderr, "client %ld: connect: %s\n", (long)id, cloop_strerror(fd));
  ASSERT_GE(fd, 0);
  tk.connected++;
  char out[8], in[8];
  memcpy(out, &id, sizeof out);
  ASSERT_EQ(cloop_sock_sendall(fd, out, 8), 8);
  recv_exact(fd, in, 8);
  ASSERT(memcmp(in, out, 8) == 0);
  if (++tk.echoed == TENK)
    cloop_event_set(&tk.all_echoed);
  ASSERT_EQ(cloop_event_wait(&tk.all_echoed), 0);
  ASSERT_EQ(cloop_sock_close(fd), 0);
  return 0;
}

static intptr_t tk_clients_main(void *arg) {
  (void)arg;
  cloop_event_init(&tk.all_echoed);
  for (intptr_t i = 0; i < TENK; i++)
    cloop_task_release(spawn_mode(tk_client, (void *)i, CLOOP_STACK_SHARED));
  ASSERT_EQ(cloop_event_wait(&tk.all_echoed), 0);
  return 0;
}

static intptr_t tk_server_main(void *arg) {
  server *s = arg;
  s->acceptor = spawn(acceptor, s);
  cloop_event_init(&s->all_closed);
  while (s->accepted < TENK || s->open > 0) {
    ASSERT_EQ(cloop_sleep(5 * MS), 0);
  }
  cloop_task_cancel(s->acceptor);
  ASSERT_EQ(join(s->acceptor), 0);
  ASSERT_EQ(cloop_sock_close(s->lfd), 0);
  return 0;
}

static intptr_t tk_warm_up(void *arg) {
  (void)arg;
  int c, s;
  char buf[8];
  tcp_pair("127.0.0.1", &c, &s);
  ASSERT_EQ(cloop_sock_sendall(c, "warm-up", 8), 8);
  recv_exact(s, buf, 8);
  ASSERT_EQ(cloop_sock_close(c), 0);
  ASSERT_EQ(cloop_sock_close(s), 0);
  return 0;
}

/* Bytes of heap in use (glibc's count; 0 under ASan, whose allocator this
   does not see), and how much more than before a run may be left after it:
   glibc's own lazily made buffers, not 10,000 connections' worth. */
static size_t heap_in_use(void) {
#ifdef NO_MALLOC_COUNT
  return 0;
#else
  return mallinfo2().uordblks;
#endif
}

#define HEAP_SLACK (16 << 10) /* 10,000 connections leaking 2 bytes each exceed it */

static void check_heap_back(const char *who, size_t before) {
  size_t after = heap_in_use();
  if (after > before + HEAP_SLACK)
    fprintf(stderr, "%s: %zu bytes of heap in use before, %zu after\n", who,
            before, after);
  ASSERT_LE(after, before + HEAP_SLACK);
}

TEST_IMPL_POLL(net_10k_connections_no_fd_left) {
  SKIP_IF_TSAN_TASKS(TENK);
  struct rlimit rl;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  rlim_t need = TENK + 200; /* per process: one side of each connection */
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
    SKIP("RLIMIT_NOFILE hard limit %llu is below the %llu needed",
         (unsigned long long)rl.rlim_max, (unsigned long long)need);
  if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur < need) {
    rl.rlim_cur = need;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
  }
  { /* skip early, before forking, if the backend is missing */
    cloop_loop *probe;
    NET_LOOP_NEW(probe, backend);
    ASSERT_EQ(cloop_loop_free(probe), 0);
  }
  { /* a warm-up round, for what is made once per process or thread (such
       as the alternate signal stack of the first task): one connection */
    cloop_loop *warm;
    NET_LOOP_NEW(warm, backend);
    ASSERT_EQ(test_run_loop(warm, tk_warm_up, NULL), 0);
  }
  int fds_before = count_fds();
  size_t heap_before = heap_in_use();
  server s = {.conn_stack = CLOOP_STACK_SHARED};
  s.lfd = cloop_tcp_listen("127.0.0.1", 0, 65535, 0);
  ASSERT_GE(s.lfd, 0);
  tk.port = cloop_sock_port(s.lfd);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) { /* the clients, in a process (and fd table) of their own */
    close(s.lfd);
    int child_before = count_fds();
    cloop_loop *loop;
    NET_LOOP_NEW(loop, backend);
    ASSERT_EQ(test_run_loop(loop, tk_clients_main, NULL), 0);
    ASSERT_EQ(tk.connected, TENK);
    ASSERT_EQ(count_fds(), child_before);
    check_heap_back("clients", heap_before);
    _exit(0);
  }
  cloop_loop *loop;
  NET_LOOP_NEW(loop, backend);
  ASSERT_EQ(test_run_loop(loop, tk_server_main, &s), 0);
  int status;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_EQ(s.accepted, TENK);
  ASSERT_EQ(s.max_open, TENK); /* all of them open at once */
  ASSERT_EQ(count_fds(), fds_before);
  check_heap_back("server", heap_before);
  return 0;
}

/* ---- faults ----------------------------------------------------------- */

static void reset_close(int fd) {
  struct linger lg = {1, 0};
  ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
  ASSERT_EQ(cloop_sock_close(fd), 0); /* sends RST */
}

static intptr_t recv_task(void *arg) {
  char buf[64];
  return cloop_sock_recv((int)(intptr_t)arg, buf, sizeof buf);
}

static intptr_t big_send_task(void *arg) {
  size_t len = 8 << 20;
  char *p = calloc(1, len);
  ssize_t r = cloop_sock_sendall((int)(intptr_t)arg, p, len);
  free(p);
  return r;
}

static int is_reset(intptr_t r) { return r == -ECONNRESET || r == -EPIPE; }

static intptr_t reset_main(void *arg) {
  (void)arg;
  /* 1. The peer resets while we are parked in recv. */
  int c, s;
  tcp_pair("127.0.0.1", &c, &s);
  cloop_task *t = spawn(recv_task, (void *)(intptr_t)s);
  ASSERT_EQ(cloop_sleep(5 * MS), 0);
  reset_close(c);
  intptr_t r = join(t);
  if (!is_reset(r))
    fprintf(stderr, "parked recv after reset: %ld\n", (long)r);
  ASSERT(is_reset(r));
  /* Sending to it afterwards fails too, without SIGPIPE. */
  char buf[64] = {0};
  ssize_t k = 0;
  for (int i = 0; i < 3 && k >= 0; i++)
    k = cloop_sock_send(s, buf, sizeof buf);
  ASSERT(is_reset(k));
  ASSERT_EQ(cloop_sock_close(s), 0);

  /* 2. The peer resets while we are parked in a big sendall. */
  tcp_pair("127.0.0.1", &c, &s);
  t = spawn(big_send_task, (void *)(intptr_t)s);
  ASSERT_EQ(cloop_sleep(20 * MS), 0);
  ASSERT(!cloop_future_done(cloop_task_future(t))); /* parked: buffers full */
  reset_close(c);
  r = join(t);
  if (!is_reset(r))
    fprintf(stderr, "parked sendall after reset: %ld\n", (long)r);
  ASSERT(is_reset(r));
  ASSERT_EQ(cloop_sock_close(s), 0);

  /* 3. Reset before we look: recv, then send. */
  tcp_pair("127.0.0.1", &c, &s);
  reset_close(c);
  ASSERT_EQ(cloop_sleep(5 * MS), 0);
  r = cloop_sock_recv(s, buf, sizeof buf);
  ASSERT(is_reset(r));
  k = cloop_sock_sendall(s, buf, sizeof buf);
  ASSERT(is_reset(k));
  ASSERT_EQ(cloop_sock_close(s), 0);
  return 0;
}

TEST_IMPL_POLL(net_peer_reset_no_sigpipe) {
  signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would kill the test */
  RUN(backend, reset_main, NULL);
  return 0;
}

static intptr_t refused_main(void *arg) {
  (void)arg;
  /* A port that was just free: bound, not listening, closed. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sin = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  ASSERT_EQ(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
  int port = cloop_sock_port(fd);
  ASSERT_GT(port, 0);
  close(fd);
  int fds = count_fds();
  ASSERT_EQ(cloop_tcp_connect("127.0.0.1", port), -ECONNREFUSED);
  if (have_ipv6())
    ASSERT_EQ(cloop_tcp_connect("::1", port), -ECONNREFUSED);
  ASSERT_EQ(count_fds(), fds); /* the failed sockets are closed */
  ASSERT_EQ(cloop_tcp_connect("127.0.0.1", 70000), -EINVAL);
  ASSERT_EQ(cloop_tcp_listen("127.0.0.1", 70000, 1, 0), -EINVAL);
  /* Names are looked up (blocking: a listen happens once); one that does
     not exist is CLOOP_ENOHOST, or -EAGAIN where no resolver answers. */
  int r = cloop_tcp_listen("no-such-host.invalid", 0, 1, 0);
  ASSERT(r == CLOOP_ENOHOST || r == -EAGAIN);
  /* "localhost" is the IPv4 loopback, as in the Swift layer. */
  int lfd = cloop_tcp_listen("localhost", 0, 1, 0);
  ASSERT_GE(lfd, 0);
  struct sockaddr_in bound;
  socklen_t blen = sizeof bound;
  ASSERT_EQ(getsockname(lfd, (struct sockaddr *)&bound, &blen), 0);
  ASSERT_EQ(bound.sin_family, AF_INET);
  ASSERT_EQ(ntohl(bound.sin_addr.s_addr), INADDR_LOOPBACK);
  close(lfd);
  return 0;
}

TEST_IMPL_POLL(net_connect_refused) {
  RUN(backend, refused_main, NULL);
  return 0;
}

static intptr_t eof_main(void *arg) {
  (void)arg;
  int c, s;
  char buf[16];
  tcp_pair("127.0.0.1", &c, &s);
  ASSERT_EQ(cloop_sock_sendall(c, "bye", 3), 3);
  ASSERT_EQ(cloop_sock_shutdown(c, SHUT_WR), 0);
  ASSERT_EQ(cloop_sock_recv(s, buf, sizeof buf), 3);
  ASSERT_EQ(cloop_sock_recv(s, buf, sizeof buf), 0);
  ASSERT_EQ(cloop_sock_recv(s, buf, sizeof buf), 0); /* and stays so */
  /* The other direction still works. */
  ASSERT_EQ(cloop_sock_sendall(s, "ok", 2), 2);
  ASSERT_EQ(cloop_sock_recv(c, buf, sizeof buf), 2);
  /* A parked recv wakes with 0 when the peer closes. */
  cloop_task *t = spawn(recv_task, (void *)(intptr_t)c);
  ASSERT_EQ(cloop_sleep(5 * MS), 0);
  ASSERT_EQ(cloop_sock_close(s), 0);
  ASSERT_EQ(join(t), 0);
  ASSERT_EQ(cloop_sock_close(c), 0);
  return 0;
}

TEST_IMPL_POLL(net_eof_is_zero) {
  RUN(backend, eof_main, NULL);
  return 0;
}

static intptr_t accept_task(void *arg) {
  return cloop_sock_accept((int)(intptr_t)arg);
}

static intptr_t close_wakes_main(void *arg) {
  cloop_stack_mode mode = (cloop_stack_mode)(intptr_t)arg;
  int c, s;
  tcp_pair("127.0.0.1", &c, &s);
  cloop_task *t = spawn_mode(recv_task, (void *)(intptr_t)s, mode);
  ASSERT_EQ(cloop_sleep(5 * MS), 0);
  ASSERT(!cloop_future_done(cloop_task_future(t)));
  ASSERT_EQ(cloop_sock_close(s), 0);
  ASSERT_EQ(join(t), -EBADF);
  /* The same for a parked accept. */
  int lfd = cloop_tcp_listen("127.0.0.1", 0, 4, 0);
  ASSERT_GE(lfd, 0);
  cloop_task *a = spawn_mode(accept_task, (void *)(intptr_t)lfd, mode);
  ASSERT_EQ(cloop_sleep(5 * MS), 0);
  ASSERT_EQ(cloop_sock_close(lfd), 0);
  ASSERT_EQ(join(a), -EBADF);
  ASSERT_EQ(cloop_sock_close(c), 0);
  return 0;
}

TEST_IMPL_POLL(net_close_wakes_parked_recv) {
  RUN(backend, close_wakes_main, (void *)(intptr_t)CLOOP_STACK_PRIVATE);
  RUN(backend, close_wakes_main, (void *)(intptr_t)CLOOP_STACK_SHARED);
  return 0;
}

typedef struct conn_args {
  int port;
  int64_t timeout;
} conn_args;

static intptr_t connect_task(void *arg) {
  conn_args *a = arg;
  return cloop_tcp_connect("127.0.0.1", a->port);
}

static intptr_t cancel_main(void *arg) {
  cloop_stack_mode mode = (cloop_stack_mode)(intptr_t)arg;
  int c, s;
  char buf[16];
  tcp_pair("127.0.0.1", &c, &s);

  /* recv: cancelled while parked, then the socket still works. */
  cloop_task *t = spawn_mode(recv_task, (void *)(intptr_t)s, mode);
  ASSERT_EQ(cloop_sleep(5 * MS), 0);
  ASSERT_EQ(cloop_task_cancel(t), 1);
  ASSERT_EQ(join(t), -ECANCELED);
  ASSERT_EQ(cloop_sock_sendall(c, "still", 5), 5);
  ASSERT_EQ(cloop_sock_recv(s, buf, sizeof buf), 5);
  ASSERT(memcmp(buf, "still", 5) == 0);
  /* Cancelled before it ever parks: nothing is read. */
  t = spawn_mode(recv_task, (void *)(intptr_t)s, mode);
  cloop_task_cancel(t);
  ASSERT_EQ(cloop_sock_sendall(c, "x", 1), 1);
  ASSERT_EQ(join(t), -ECANCELED);
  ASSERT_EQ(cloop_sock_recv(s, buf, sizeof buf), 1);

  /* accept: cancelled, then the listener still accepts. */
  int lfd = cloop_tcp_listen("127.0.0.1", 0, 4, 0);
  ASSERT_GE(lfd, 0);
  t = spawn_mode(accept_task, (void *)(intptr_t)lfd, mode);
  ASSERT_EQ(cloop_sleep(5 * MS), 0);
  cloop_task_cancel(t);
  ASSERT_EQ(join(t), -ECANCELED);
  int c2 = cloop_tcp_connect("127.0.0.1", cloop_sock_port(lfd));
  ASSERT_GE(c2, 0);
  int s2 = cloop_sock_accept(lfd);
  ASSERT_GE(s2, 0);
  ASSERT_EQ(cloop_sock_sendall(c2, "hi", 2), 2);
  ASSERT_EQ(cloop_sock_recv(s2, buf, sizeof buf), 2);
  ASSERT_EQ(cloop_sock_close(c2), 0);
  ASSERT_EQ(cloop_sock_close(s2), 0);
  ASSERT_EQ(cloop_sock_close(lfd), 0);

  /* connect: a listener whose accept queue is full drops SYNs, so a
     connect to it stays in progress; cancel that one. */
  int full = cloop_tcp_listen("127.0.0.1", 0, 1, 0);
  ASSERT_GE(full, 0);
  conn_args ca = {cloop_sock_port(full), 0};
  int held[16], nheld = 0, cancelled = 0;
  int fds = count_fds();
  while (nheld < 16) {
    t = spawn_mode(connect_task, &ca, mode);
    ASSERT_EQ(cloop_sleep(30 * MS), 0);
    if (cloop_future_done(cloop_task_future(t))) {
      intptr_t fd = join(t);
      ASSERT_GE(fd, 0);
      held[nheld++] = (int)fd; /* it got into the queue */
      fds++;
      continue;
    }
    cloop_task_cancel(t);
    ASSERT_EQ(join(t), -ECANCELED);
    cancelled = 1;
    break;
  }
  ASSERT(cancelled);
  ASSERT_EQ(count_fds(), fds); /* the cancelled attempt's socket is closed */
  for (int i = 0; i < nheld; i++)
    ASSERT_EQ(cloop_sock_close(held[i]), 0);
  ASSERT_EQ(cloop_sock_close(full), 0);

  ASSERT_EQ(cloop_sock_close(c), 0);
  ASSERT_EQ(cloop_sock_close(s), 0);
  return 0;
}

TEST_IMPL_POLL(net_cancel_parked_recv_accept_connect) {
  RUN(backend, cancel_main, (void *)(intptr_t)CLOOP_STACK_PRIVATE);
  RUN(backend, cancel_main, (void *)(intptr_t)CLOOP_STACK_SHARED);
  return 0;
}

/* The recv completes, and in the same iteration, before the task runs
   again, the task is cancelled: the bytes are not lost -- the recv returns
   them and the cancellation waits for the task's next await. (A timer due
   in the iteration whose poll completes the recv runs after the recv's
   callback and before the task's step.) */
static intptr_t recv_then_sleep_task(void *arg) {
  char buf[16];
  intptr_t n = cloop_sock_recv((int)(intptr_t)arg, buf, sizeof buf);
  if (n != 5 || memcmp(buf, "hello", 5) != 0)
    return n < 0 ? n : -EIO;
  int r = cloop_sleep(0);
  return r == -ECANCELED ? 0 : -EPROTO;
}

static void cancel_cb(void *arg) { cloop_task_cancel(arg); }

static intptr_t cancel_late_main(void *arg) {
  (void)arg;
  int c, s;
  tcp_pair("127.0.0.1", &c, &s);
  cloop_task *t = spawn(recv_then_sleep_task, (void *)(intptr_t)s);
  ASSERT_EQ(cloop_sleep(5 * MS), 0); /* it parks in recv */
  ASSERT_EQ(send(c, "hello", 5, 0), 5); /* readable at once on loopback */
  cloop_timer timer;
  cloop_timer_init(&timer, cancel_cb, t);
  ASSERT_EQ(cloop_call_later(my_loop(), &timer, 0), 0);
  ASSERT_EQ(join(t), 0);
  ASSERT_EQ(cloop_sock_close(c), 0);
  ASSERT_EQ(cloop_sock_close(s), 0);
  return 0;
}

TEST_IMPL_POLL(net_cancel_after_recv_completed_keeps_data) {
  RUN(backend, cancel_late_main, NULL);
  return 0;
}

static intptr_t deadline_main(void *arg) {
  (void)arg;
  int c, s;
  char buf[16];
  tcp_pair("127.0.0.1", &c, &s);
  cloop_deadline d;
  uint64_t t0 = test_clock_ns();
  ASSERT_EQ(cloop_deadline_enter(&d, 20 * MS), 0);
  ASSERT_EQ(cloop_sock_recv(s, buf, sizeof buf), -ETIMEDOUT);
  ASSERT_EQ(cloop_sock_recv_until(s, buf, sizeof buf, "\n", 1), -ETIMEDOUT);
  ASSERT_EQ(cloop_sock_accept(s), -ETIMEDOUT); /* every await, at once */
  ASSERT_EQ(cloop_deadline_exit(&d), -ETIMEDOUT);
  uint64_t el = test_clock_ns() - t0;
  ASSERT_GE(el, 20 * MS);
  ASSERT_LT(el, 2000 * MS);
  /* Afterwards the socket works. */
  ASSERT_EQ(cloop_sock_sendall(c, "late\n", 5), 5);
  expect_line(s, 16, "\n", "late\n");
  /* A scope that does not expire changes nothing. */
  ASSERT_EQ(cloop_deadline_enter(&d, 5000 * MS), 0);
  ASSERT_EQ(cloop_sock_sendall(c, "ok", 2), 2);
  ASSERT_EQ(cloop_sock_recv(s, buf, sizeof buf), 2);
  ASSERT_EQ(cloop_deadline_exit(&d), 0);
  ASSERT_EQ(cloop_sock_close(c), 0);
  ASSERT_EQ(cloop_sock_close(s), 0);
  return 0;
}

TEST_IMPL_POLL(net_deadline_around_recv) {
  RUN(backend, deadline_main, NULL);
  return 0;
}

/* ---- EMFILE on accept -------------------------------------------------- */

typedef struct emfile {
  int lfd, spare_fd;
  int emfile_returns, accepted;
  int64_t cpu_us;
} emfile;

static int64_t cpu_us(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
         ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

static intptr_t emfile_main(void *arg) {
  emfile *e = arg;
  /* The first accept waits for the parent's client, then fails. */
  int r = cloop_sock_accept(e->lfd);
  ASSERT_EQ(r, -EMFILE);
  /* Retrying in a tight loop for 100 ms must not spin. */
  int64_t cpu0 = cpu_us();
  uint64_t end = test_clock_ns() + 100 * MS;
  while (test_clock_ns() < end) {
    r = cloop_sock_accept(e->lfd);
    ASSERT_EQ(r, -EMFILE);
    e->emfile_returns++;
  }
  e->cpu_us = cpu_us() - cpu0;
  /* With a descriptor free again the connection comes through. */
  close(e->spare_fd);
  r = cloop_sock_accept(e->lfd);
  ASSERT_GE(r, 0);
  e->accepted = 1;
  ASSERT_EQ(cloop_sock_close(r), 0);
  return 0;
}

TEST_IMPL_POLL(net_accept_emfile_does_not_spin) {
  { /* skip early if the backend is missing */
    cloop_loop *probe;
    NET_LOOP_NEW(probe, backend);
    ASSERT_EQ(cloop_loop_free(probe), 0);
  }
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(pipefd[0]);
    struct rlimit rl = {64, 64};
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
    cloop_loop *loop;
    NET_LOOP_NEW(loop, backend);
    emfile e = {0};
    e.lfd = cloop_tcp_listen("127.0.0.1", 0, 8, 0);
    ASSERT_GE(e.lfd, 0);
    int port = cloop_sock_port(e.lfd);
    e.spare_fd = dup(0);
    ASSERT_GE(e.spare_fd, 0);
    while (dup(0) >= 0) /* fill the table */
      ;
    ASSERT_EQ(errno, EMFILE);
    ASSERT_EQ(write(pipefd[1], &port, sizeof port), (ssize_t)sizeof port);
    ASSERT_EQ(test_run_loop(loop, emfile_main, &e), 0);
    fprintf(stderr, "EMFILE: %d accept returns and %lld us of CPU in 100 ms\n",
            e.emfile_returns, (long long)e.cpu_us);
    ASSERT(e.accepted);
    ASSERT_LE(e.emfile_returns, 15); /* one per 10 ms pause */
    ASSERT_LT(e.cpu_us, 30000);
    _exit(0);
  }
  close(pipefd[1]);
  int port;
  ASSERT_EQ(read(pipefd[0], &port, sizeof port), (ssize_t)sizeof port);
  close(pipefd[0]);
  int fd = socket(AF_INET, SOCK_STREAM, 0); /* blocking: the backlog takes it */
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  ASSERT_EQ(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
  int status;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  close(fd);
  ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  return 0;
}

/* ---- no allocation per round trip ---------------------------------------- */

#ifndef NO_MALLOC_COUNT

static intptr_t noalloc_main(void *arg) {
  (void)arg;
  server s = {.conn_stack = CLOOP_STACK_PRIVATE, .bufsize = 4096};
  server_start(&s, "127.0.0.1", 16);
  int fd = cloop_tcp_connect("127.0.0.1", s.port);
  ASSERT_GE(fd, 0);
  char out[64], in[64];
  fill_pattern(out, sizeof out, 3);
  for (int i = 0; i < 1100; i++) {
    if (i == 100) { /* warmed up: slabs, tables and rings have grown */
      counted = 0;
      counting = 1;
    }
    ASSERT_EQ(cloop_sock_sendall(fd, out, sizeof out), (ssize_t)sizeof out);
    size_t got = 0;
    while (got < sizeof in) {
      ssize_t k = cloop_sock_recv(fd, in + got, sizeof in - got);
      if (k <= 0)
        break;
      got += (size_t)k;
    }
    if (got != sizeof in || memcmp(in, out, sizeof in) != 0)
      break;
  }
  counting = 0;
  long n = counted;
  /* The counter itself works. */
  void *(*volatile alloc)(size_t) = malloc;
  counted = 0;
  counting = 1;
  void *p = alloc(16);
  counting = 0;
  free(p);
  ASSERT_EQ(counted, 1);
  fprintf(stderr, "allocations in 1000 echo round trips: %ld\n", n);
  ASSERT_EQ(n, 0);
  ASSERT_EQ(cloop_sock_close(fd), 0);
  server_stop(&s);
  return 0;
}

#endif

TEST_IMPL_POLL(net_zero_allocations_per_round_trip) {
#ifdef NO_MALLOC_COUNT
  (void)backend;
  SKIP("allocations are not counted under ASan or TSan (their own allocators)");
#else
  RUN(backend, noalloc_main, NULL);
  return 0;
#endif
}

/* ---- a host name ------------------------------------------------------- */

static intptr_t localhost_task(void *arg) {
  return cloop_tcp_connect("localhost", *(int *)arg);
}

static intptr_t localhost_main(void *arg) {
  (void)arg;
  /* Listening on 127.0.0.1 only: if "localhost" resolves to ::1 first,
     that attempt is refused and the next address is tried. */
  server s = {.conn_stack = CLOOP_STACK_PRIVATE, .bufsize = 4096};
  server_start(&s, "127.0.0.1", 16);
  int fd = cloop_tcp_connect("localhost", s.port);
  if (fd < 0)
    fprintf(stderr, "connect(localhost): %s\n", cloop_strerror(fd));
  ASSERT_GE(fd, 0);
  echo_check(fd, 1000, 5);
  ASSERT_EQ(cloop_sock_close(fd), 0);

  /* A name that does not exist: CLOOP_ENOHOST, or -EAGAIN without a resolver;
     a deadline may also end the wait (the lookup thread is abandoned). */
  cloop_deadline d;
  ASSERT_EQ(cloop_deadline_enter(&d, 500 * MS), 0);
  int r = cloop_tcp_connect("no-such-host.invalid", s.port);
  cloop_deadline_exit(&d);
  fprintf(stderr, "connect(no-such-host.invalid): %s\n", cloop_strerror(r));
  ASSERT(r == CLOOP_ENOHOST || r == -EAGAIN || r == -ETIMEDOUT);

  /* Cancelled while the lookup may still run: the task ends with
     -ECANCELED (the thread is abandoned) or, if the answer was in, the
     connection and a cancellation left for its next await. */
  for (int i = 0; i < 20; i++) {
    cloop_task *t = spawn(localhost_task, &s.port);
    ASSERT_EQ(cloop_sleep(0), 0); /* it starts and parks on the lookup */
    cloop_task_cancel(t);
    intptr_t fd = join(t);
    ASSERT(fd == -ECANCELED || fd >= 0);
    if (fd >= 0)
      ASSERT_EQ(cloop_sock_close((int)fd), 0);
  }
  server_stop(&s);
  return 0;
}

TEST_IMPL_POLL(net_connect_localhost_resolved_off_thread) {
  RUN(backend, localhost_main, NULL);
  return 0;
}

/* ---- the suite again, on the fall-back ---------------------------------- */

/* Every socket test of this file, in test_list.h's order. */
#define NET_SUITE(X)                                                         \
  X(net_echo_1b_to_4mib)                                                     \
  X(net_echo_ipv6)                                                           \
  X(net_echo_shared_stack_buffers)                                           \
  X(net_recv_until_split_delimiter)                                          \
  X(net_recv_until_many_lines)                                               \
  X(net_recv_until_emsgsize_and_eof)                                         \
  X(net_200_clients_100_round_trips)                                         \
  X(net_200_clients_shared_stack)                                            \
  X(net_10k_connections_no_fd_left)                                          \
  X(net_peer_reset_no_sigpipe)                                               \
  X(net_connect_refused)                                                     \
  X(net_eof_is_zero)                                                         \
  X(net_close_wakes_parked_recv)                                             \
  X(net_cancel_parked_recv_accept_connect)                                   \
  X(net_cancel_after_recv_completed_keeps_data)                              \
  X(net_deadline_around_recv)                                                \
  X(net_accept_emfile_does_not_spin)                                         \
  X(net_zero_allocations_per_round_trip)                                     \
  X(net_connect_localhost_resolved_off_thread)

static const struct net_body {
  const char *name;
  int (*body)(cloop_backend);
} net_suite[] = {
#define X(name) {#name, name##_body},
    NET_SUITE(X)
#undef X
};

#define NET_SUITE_N (int)(sizeof net_suite / sizeof net_suite[0])
#define FALLBACK_SKIP 77

/* In the child: io_uring blocked by seccomp, auto (by the option and with
   no option) makes epoll loops, and every body above passes on them. */
static void fallback_child(void *arg) {
  (void)arg;
  int r = test_block_io_uring();
  if (r < 0) {
    fprintf(stderr, "cannot install a seccomp filter: %s", strerror(-r));
    _exit(FALLBACK_SKIP);
  }
  ASSERT_EQ(unsetenv("CLOOP_BACKEND"), 0);
  cloop_loop *loop;
  cloop_options o;
  cloop_options_init(&o);
  o.backend = CLOOP_BACKEND_URING;
  ASSERT_EQ(cloop_loop_new(&loop, &o), CLOOP_ENOBACKEND); /* it is blocked */
  o.backend = CLOOP_BACKEND_AUTO;
  ASSERT_EQ(cloop_loop_new(&loop, &o), 0);
  ASSERT_EQ(cloop_loop_backend(loop), CLOOP_BACKEND_EPOLL);
  ASSERT(strcmp(cloop_backend_name(cloop_loop_backend(loop)), "epoll") == 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  ASSERT_EQ(cloop_loop_new(&loop, NULL), 0);
  ASSERT_EQ(cloop_loop_backend(loop), CLOOP_BACKEND_EPOLL);
  ASSERT_EQ(cloop_loop_free(loop), 0);

  auto_expect = CLOOP_BACKEND_EPOLL;
  int skipped = 0;
  for (int i = 0; i < NET_SUITE_N; i++) {
    fprintf(stderr, "%s on auto (epoll): ", net_suite[i].name);
    fflush(stdout);
    fflush(stderr);
    int rc = net_suite[i].body(CLOOP_BACKEND_AUTO);
    fprintf(stderr, "%s\n", rc == 0 ? "pass" : rc == TEST_SKIP ? "skip" : "FAIL");
    ASSERT(rc == 0 || rc == TEST_SKIP);
    skipped += rc == TEST_SKIP;
  }
  fprintf(stderr, "%d of %d ran, %d skipped\n", NET_SUITE_N - skipped,
          NET_SUITE_N, skipped);
}

TEST_IMPL(net_suite_on_fallback_when_uring_blocked) {
  /* NET_SUITE must list every TEST_POLL(net_...) of test_list.h. */
  static const char *const polls[] = {
#define TEST(name)
#define TEST_SWITCH(name)
#define TEST_POLL(name) #name,
#include "test_list.h"
#undef TEST
#undef TEST_SWITCH
#undef TEST_POLL
  };
  int listed = 0;
  for (size_t i = 0; i < sizeof polls / sizeof polls[0]; i++)
    if (strncmp(polls[i], "net_", 4) == 0) {
      int found = 0;
      for (int j = 0; j < NET_SUITE_N; j++)
        found |= strcmp(polls[i], net_suite[j].name) == 0;
      if (!found)
        fprintf(stderr, "%s is not in NET_SUITE\n", polls[i]);
      ASSERT(found);
      listed++;
    }
  ASSERT_EQ(listed, NET_SUITE_N);

  static char err[65536];
  int status = test_child_stderr(fallback_child, NULL, err, sizeof err);
  if (WIFEXITED(status) && WEXITSTATUS(status) == FALLBACK_SKIP)
    SKIP("%s", err);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fprintf(stderr, "child (io_uring_setup blocked) failed:\n%s\n", err);
  else
    fprintf(stderr, "%s", err);
  ASSERT(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  return 0;
}
