/* test_uring.c -- the io_uring backend: how it is chosen (auto, by name,
 * through $CLOOP_BACKEND, and the fall-back to epoll when a seccomp filter
 * refuses io_uring_setup), and watcher cases that stress what io_uring does
 * differently (once per backend): completions for an fd that was closed and
 * reused, a thousand watchers, an unwatch that must reach the kernel
 * while the loop is busy, and level-triggered firing with zero timeouts. */
#include "test.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define MS 1000000LL

/* 1 if a loop can be made on io_uring here, else 0 (the test then skips). */
static int uring_available(void) {
  cloop_loop *loop;
  cloop_options o;
  cloop_options_init(&o);
  o.backend = CLOOP_BACKEND_URING;
  int r = cloop_loop_new(&loop, &o);
  if (r == CLOOP_ENOBACKEND)
    return 0;
  ASSERT_EQ(r, 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 1;
}

TEST_IMPL(uring_auto_picks_uring) {
  cloop_loop *loop;
  ASSERT_EQ(unsetenv("CLOOP_BACKEND"), 0);
  if (!uring_available())
    SKIP("io_uring is not available here");
  ASSERT_EQ(cloop_loop_new(&loop, NULL), 0);
  ASSERT_EQ(cloop_loop_backend(loop), CLOOP_BACKEND_URING);
  ASSERT(strcmp(cloop_backend_name(cloop_loop_backend(loop)), "io_uring") == 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

TEST_IMPL(uring_env_selects_uring) {
  cloop_loop *loop;
  cloop_options opts;
  cloop_options_init(&opts);
  ASSERT_EQ(unsetenv("CLOOP_BACKEND"), 0);
  if (!uring_available())
    SKIP("io_uring is not available here");
  static const char *const names[] = {"uring", "io_uring"};
  for (int i = 0; i < 2; i++) {
    ASSERT_EQ(setenv("CLOOP_BACKEND", names[i], 1), 0);
    ASSERT_EQ(cloop_loop_new(&loop, NULL), 0);
    ASSERT_EQ(cloop_loop_backend(loop), CLOOP_BACKEND_URING);
    ASSERT_EQ(cloop_loop_free(loop), 0);
    ASSERT_EQ(cloop_loop_new(&loop, &opts), 0); /* auto option: env decides */
    ASSERT_EQ(cloop_loop_backend(loop), CLOOP_BACKEND_URING);
    ASSERT_EQ(cloop_loop_free(loop), 0);
  }
  /* An explicit option still wins over the environment. */
  opts.backend = CLOOP_BACKEND_EPOLL;
  ASSERT_EQ(cloop_loop_new(&loop, &opts), 0);
  ASSERT_EQ(cloop_loop_backend(loop), CLOOP_BACKEND_EPOLL);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* ---- io_uring refused by seccomp --------------------------------------- */

#define CHILD_SKIP 77

static void quiet_run(void *arg) { (*(int *)arg)++; }

/* In the child: io_uring blocked, auto runs epoll and watches a pipe; by
   name (option or environment) io_uring is CLOOP_ENOBACKEND. */
static void seccomp_child(void *arg) {
  (void)arg;
  int r = test_block_io_uring();
  if (r < 0) {
    fprintf(stderr, "cannot install a seccomp filter: %s", strerror(-r));
    _exit(CHILD_SKIP);
  }
  cloop_loop *loop = NULL;
  cloop_options opts;
  cloop_options_init(&opts);
  ASSERT_EQ(unsetenv("CLOOP_BACKEND"), 0);

  opts.backend = CLOOP_BACKEND_URING;
  ASSERT_EQ(cloop_loop_new(&loop, &opts), CLOOP_ENOBACKEND);
  ASSERT_EQ(setenv("CLOOP_BACKEND", "uring", 1), 0);
  ASSERT_EQ(cloop_loop_new(&loop, NULL), CLOOP_ENOBACKEND);
  ASSERT_EQ(unsetenv("CLOOP_BACKEND"), 0);

  ASSERT_EQ(cloop_loop_new(&loop, NULL), 0); /* auto: silently epoll */
  ASSERT_EQ(cloop_loop_backend(loop), CLOOP_BACKEND_EPOLL);

  int p[2], runs = 0;
  cloop_watcher w;
  cloop_watcher_init(&w);
  ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  ASSERT_EQ(cloop_watch(loop, &w, p[0], CLOOP_READABLE, quiet_run, &runs), 0);
  ASSERT_EQ(cloop_run_once(loop, 0), 1);
  ASSERT_EQ(runs, 0);
  ASSERT_EQ(write(p[1], "x", 1), 1);
  ASSERT_EQ(cloop_run_once(loop, 1000 * MS), 1);
  ASSERT_EQ(runs, 1);
  ASSERT_EQ(cloop_unwatch(loop, &w), 1);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  close(p[0]);
  close(p[1]);
}

TEST_IMPL(uring_seccomp_falls_back_to_epoll) {
  char err[1024];
  int status = test_child_stderr(seccomp_child, NULL, err, sizeof err);
  if (WIFEXITED(status) && WEXITSTATUS(status) == CHILD_SKIP)
    SKIP("%s", err);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fprintf(stderr, "child (io_uring_setup blocked) failed:\n%s\n", err);
  ASSERT(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  return 0;
}

/* ---- watchers, once per backend ---------------------------------------- */

typedef struct reuse_ctx {
  cloop_watcher w;
  int runs;
  char got;
} reuse_ctx;

static void reuse_read(void *arg) {
  reuse_ctx *c = arg;
  c->runs++;
  ASSERT_EQ(read(c->w.fd, &c->got, 1), 1);
}

/* A watcher on fd N, whose pipe becomes readable while the loop is not
   polling; then the watcher stops, N is closed and reused by a new, empty
   pipe, and watched again. Whatever the old registration posted (on
   io_uring its poll holds the old pipe until the cancel goes out, and the
   readiness is already in the CQ) must not fire the new watcher. */
TEST_IMPL_POLL(watchers_fd_reuse_no_stale) {
  cloop_loop *loop;
  int a[2], b[2];
  reuse_ctx c;
  memset(&c, 0, sizeof c);
  cloop_watcher_init(&c.w);
  LOOP_NEW(loop, backend);

  ASSERT_EQ(pipe2(a, O_NONBLOCK | O_CLOEXEC), 0);
  int n = a[0];
  ASSERT_EQ(cloop_watch(loop, &c.w, n, CLOOP_READABLE, reuse_read, &c), 0);
  ASSERT_EQ(cloop_run_once(loop, 0), 1); /* the registration is in place */
  ASSERT_EQ(c.runs, 0);

  ASSERT_EQ(write(a[1], "a", 1), 1); /* ready, not yet reaped */
  ASSERT_EQ(cloop_unwatch(loop, &c.w), 1);
  ASSERT_EQ(write(a[1], "a", 1), 1); /* the old poll is still armed */
  close(a[0]);
  ASSERT_EQ(pipe2(b, O_NONBLOCK | O_CLOEXEC), 0);
  ASSERT_EQ(b[0], n); /* the number was reused */
  ASSERT_EQ(cloop_watch(loop, &c.w, n, CLOOP_READABLE, reuse_read, &c), 0);

  uint64_t before = cloop_now(loop);
  ASSERT_EQ(cloop_run_once(loop, 20 * MS), 1);
  ASSERT_EQ(c.runs, 0); /* nothing stale fired it */
  ASSERT_GE(cloop_now(loop), before + 20 * MS);

  ASSERT_EQ(write(b[1], "b", 1), 1);
  ASSERT_EQ(cloop_run_once(loop, 1000 * MS), 1);
  ASSERT_EQ(c.runs, 1);
  ASSERT_EQ(c.got, 'b');
  ASSERT_EQ(cloop_run_once(loop, 10 * MS), 1); /* drained: quiet again */
  ASSERT_EQ(c.runs, 1);

  ASSERT_EQ(cloop_unwatch(loop, &c.w), 1);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  close(a[1]);
  close(b[0]);
  close(b[1]);
  return 0;
}

enum { PIPES = 1000 };

typedef struct many_ctx {
  cloop_watcher w;
  int rfd, wfd;
  int runs;
  int drain; /* read what is there when run */
} many_ctx;

static void many_run(void *arg) {
  many_ctx *m = arg;
  m->runs++;
  if (m->drain) {
    char buf[16];
    ASSERT_GE(read(m->rfd, buf, sizeof buf), 1);
  }
}

/* 1,000 pipes watched at once: exactly the written ones fire, once per
   iteration while they stay readable (level-triggered), none once drained. */
TEST_IMPL_POLL(watchers_1000_pipes) {
  struct rlimit rl;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  if (rl.rlim_cur < 2 * PIPES + 64) {
    if (rl.rlim_max < 2 * PIPES + 64)
      SKIP("RLIMIT_NOFILE hard limit %llu is below %d",
           (unsigned long long)rl.rlim_max, 2 * PIPES + 64);
    rl.rlim_cur = 2 * PIPES + 64;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
  }
  cloop_loop *loop;
  many_ctx *m = calloc(PIPES, sizeof *m);
  ASSERT(m != NULL);
  LOOP_NEW(loop, backend);
  for (int i = 0; i < PIPES; i++) {
    int p[2];
    ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    m[i].rfd = p[0];
    m[i].wfd = p[1];
    cloop_watcher_init(&m[i].w);
    ASSERT_EQ(cloop_watch(loop, &m[i].w, p[0], CLOOP_READABLE, many_run, &m[i]), 0);
  }
  ASSERT_EQ(cloop_run_once(loop, 0), 1);
  for (int i = 0; i < PIPES; i++)
    ASSERT_EQ(m[i].runs, 0);

  /* Every third pipe gets a byte and its watcher drains it. */
  for (int i = 0; i < PIPES; i += 3) {
    m[i].drain = 1;
    ASSERT_EQ(write(m[i].wfd, "x", 1), 1);
  }
  ASSERT_EQ(cloop_run_once(loop, 1000 * MS), 1);
  for (int i = 0; i < PIPES; i++)
    ASSERT_EQ(m[i].runs, i % 3 == 0 ? 1 : 0);
  ASSERT_EQ(cloop_run_once(loop, 10 * MS), 1);
  for (int i = 0; i < PIPES; i++)
    ASSERT_EQ(m[i].runs, i % 3 == 0 ? 1 : 0);

  /* All of them readable and left so: all fire in each of two iterations. */
  for (int i = 0; i < PIPES; i++) {
    m[i].runs = 0;
    m[i].drain = 0;
    ASSERT_EQ(write(m[i].wfd, "y", 1), 1);
  }
  ASSERT_EQ(cloop_run_once(loop, 1000 * MS), 1);
  ASSERT_EQ(cloop_run_once(loop, 1000 * MS), 1);
  for (int i = 0; i < PIPES; i++) {
    if (m[i].runs != 2)
      fprintf(stderr, "pipe %d ran %d times\n", i, m[i].runs);
    ASSERT_EQ(m[i].runs, 2);
  }

  /* Drained by hand: quiet. */
  for (int i = 0; i < PIPES; i++) {
    char c;
    ASSERT_EQ(read(m[i].rfd, &c, 1), 1);
    m[i].runs = 0;
  }
  ASSERT_EQ(cloop_run_once(loop, 10 * MS), 1);
  for (int i = 0; i < PIPES; i++)
    ASSERT_EQ(m[i].runs, 0);

  for (int i = 0; i < PIPES; i++) {
    ASSERT_EQ(cloop_unwatch(loop, &m[i].w), 1);
    close(m[i].rfd);
    close(m[i].wfd);
  }
  ASSERT_EQ(cloop_loop_free(loop), 0);
  free(m);
  return 0;
}

/* While handles keep the loop busy and no fd is watched, the loop skips
   the poll -- but not the submissions an unwatch left queued: on io_uring
   the poll holds the pipe's read end until its cancel goes out, so the
   writer would not see EPIPE. */
typedef struct busy_ctx {
  cloop_loop *loop;
  cloop_handle h;
  int wfd, runs;
  ssize_t wrote;
  int write_errno;
} busy_ctx;

static void busy_run(void *arg) {
  busy_ctx *b = arg;
  if (++b->runs < 3) {
    cloop_call_soon(b->loop, &b->h);
    return;
  }
  b->wrote = write(b->wfd, "z", 1);
  b->write_errno = errno;
}

TEST_IMPL_POLL(watchers_unwatch_not_starved) {
  int p[2], runs = 0;
  cloop_watcher w;
  busy_ctx b;
  memset(&b, 0, sizeof b);
  cloop_watcher_init(&w);
  signal(SIGPIPE, SIG_IGN);
  LOOP_NEW(b.loop, backend);
  ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  b.wfd = p[1];
  cloop_handle_init(&b.h, busy_run, &b);

  ASSERT_EQ(cloop_watch(b.loop, &w, p[0], CLOOP_READABLE, quiet_run, &runs), 0);
  ASSERT_EQ(cloop_run_once(b.loop, 0), 1);
  ASSERT_EQ(cloop_unwatch(b.loop, &w), 1);
  close(p[0]);
  cloop_call_soon(b.loop, &b.h);
  ASSERT_EQ(cloop_run(b.loop), 0);
  ASSERT_EQ(b.runs, 3);
  ASSERT_EQ(b.wrote, -1);
  ASSERT_EQ(b.write_errno, EPIPE);
  ASSERT_EQ(runs, 0);

  ASSERT_EQ(cloop_loop_free(b.loop), 0);
  close(p[1]);
  return 0;
}

/* Level-triggered with zero timeouts too: an always-writable socket fires
   its watcher in every iteration, however short the poll. */
TEST_IMPL_POLL(watchers_level_zero_timeout) {
  cloop_loop *loop;
  int s[2], runs = 0;
  cloop_watcher w;
  cloop_watcher_init(&w);
  LOOP_NEW(loop, backend);
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, s), 0);

  ASSERT_EQ(cloop_watch(loop, &w, s[0], CLOOP_WRITABLE, quiet_run, &runs), 0);
  for (int i = 0; i < 100; i++)
    ASSERT_EQ(cloop_run_once(loop, 0), 1);
  ASSERT_EQ(runs, 100);

  ASSERT_EQ(cloop_unwatch(loop, &w), 1);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  close(s[0]);
  close(s[1]);
  return 0;
}
