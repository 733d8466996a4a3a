/* test_watchers.c -- fd watchers (add_reader / add_writer), each test once
 * per backend: readiness, unwatch (in its own callback, while queued,
 * after close), and the error codes of cloop_watch. */
#include "test.h"

#include <fcntl.h>
#include <sys/socket.h>

#define MS 1000000LL

typedef struct counted {
  cloop_watcher w;
  cloop_loop *loop;
  int runs;
} counted;

static void count_run(void *arg) { ((counted *)arg)->runs++; }

static void counted_init(counted *c) {
  memset(c, 0, sizeof *c);
  cloop_watcher_init(&c->w);
}

static int watch(cloop_loop *loop, counted *c, int fd, int dir) {
  c->loop = loop;
  return cloop_watch(loop, &c->w, fd, dir, count_run, c);
}

/* Reads one byte, then stops its own watcher. */
typedef struct reader {
  cloop_watcher w;
  cloop_loop *loop;
  int runs;
  char got;
  int unwatch_result;
} reader;

static void read_and_unwatch(void *arg) {
  reader *r = arg;
  r->runs++;
  ASSERT_EQ(read(r->w.fd, &r->got, 1), 1);
  r->unwatch_result = cloop_unwatch(r->loop, &r->w);
}

TEST_IMPL_POLL(watchers_pipe_read) {
  cloop_loop *loop;
  int p[2];
  reader r = {.runs = 0, .unwatch_result = -1};
  LOOP_NEW(loop, backend);
  ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);

  r.loop = loop;
  cloop_watcher_init(&r.w);
  ASSERT_EQ(cloop_watch(loop, &r.w, p[0], CLOOP_READABLE, read_and_unwatch, &r), 0);
  ASSERT_EQ(r.w.fd, p[0]);
  ASSERT_EQ(r.w.dir, CLOOP_READABLE);

  /* Nothing written yet: the watcher keeps the loop alive but stays quiet. */
  ASSERT_EQ(cloop_run_once(loop, 0), 1);
  uint64_t before = cloop_now(loop);
  ASSERT_EQ(cloop_run_once(loop, 5 * MS), 1);
  ASSERT_GE(cloop_now(loop), before + 5 * MS); /* it waited in the poll */
  ASSERT_EQ(r.runs, 0);

  ASSERT_EQ(write(p[1], "x", 1), 1);
  ASSERT_EQ(cloop_run_once(loop, 1000 * MS), 0); /* ran, unwatched, done */
  ASSERT_EQ(r.runs, 1);
  ASSERT_EQ(r.got, 'x');
  ASSERT_EQ(r.unwatch_result, 1);
  ASSERT_EQ(r.w.fd, -1);

  /* Unwatched: more data wakes nothing, and the loop has nothing left. */
  ASSERT_EQ(write(p[1], "y", 1), 1);
  ASSERT_EQ(cloop_run_once(loop, 0), 0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(r.runs, 1);
  ASSERT_EQ(cloop_unwatch(loop, &r.w), 0);

  ASSERT_EQ(cloop_loop_free(loop), 0);
  close(p[0]);
  close(p[1]);
  return 0;
}

TEST_IMPL_POLL(watchers_eexist) {
  cloop_loop *loop;
  int s[2];
  counted a, b, c;
  counted_init(&a);
  counted_init(&b);
  counted_init(&c);
  LOOP_NEW(loop, backend);
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, s), 0);

  ASSERT_EQ(watch(loop, &a, s[0], CLOOP_READABLE), 0);
  ASSERT_EQ(watch(loop, &b, s[0], CLOOP_READABLE), -EEXIST);
  ASSERT_EQ(b.w.fd, -1); /* the refused watcher stays idle */
  ASSERT_EQ(watch(loop, &b, s[0], CLOOP_WRITABLE), 0); /* other direction */
  ASSERT_EQ(watch(loop, &c, s[0], CLOOP_WRITABLE), -EEXIST);
  ASSERT_EQ(watch(loop, &c, s[1], CLOOP_READABLE), 0); /* other fd */

  /* Once a direction is free again it can be taken. */
  ASSERT_EQ(cloop_unwatch(loop, &a.w), 1);
  ASSERT_EQ(watch(loop, &a, s[0], CLOOP_READABLE), 0);

  ASSERT_EQ(cloop_unwatch(loop, &a.w), 1);
  ASSERT_EQ(cloop_unwatch(loop, &b.w), 1);
  ASSERT_EQ(cloop_unwatch(loop, &c.w), 1);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  close(s[0]);
  close(s[1]);
  return 0;
}

TEST_IMPL_POLL(watchers_einval) {
  cloop_loop *loop;
  int s[2];
  counted a;
  counted_init(&a);
  LOOP_NEW(loop, backend);
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, s), 0);

  ASSERT_EQ(watch(loop, &a, s[0], 0), -EINVAL);
  ASSERT_EQ(watch(loop, &a, s[0], CLOOP_READABLE | CLOOP_WRITABLE), -EINVAL);
  ASSERT_EQ(a.w.fd, -1);
  ASSERT_EQ(cloop_run(loop), 0); /* nothing was left active */

  ASSERT_EQ(cloop_loop_free(loop), 0);
  close(s[0]);
  close(s[1]);
  return 0;
}

TEST_IMPL_POLL(watchers_ebadf) {
  cloop_loop *loop;
  int p[2];
  counted a;
  counted_init(&a);
  LOOP_NEW(loop, backend);

  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  close(p[0]);
  ASSERT_EQ(watch(loop, &a, p[0], CLOOP_READABLE), -EBADF);
  ASSERT_EQ(a.w.fd, -1);
  ASSERT_EQ(fcntl(4000, F_GETFD), -1); /* far beyond any fd in use */
  ASSERT_EQ(watch(loop, &a, 4000, CLOOP_WRITABLE), -EBADF);
  ASSERT_EQ(cloop_run(loop), 0);

  /* Unwatching after the fd was closed still stops the watcher. */
  ASSERT_EQ(watch(loop, &a, p[1], CLOOP_WRITABLE), 0);
  close(p[1]);
  ASSERT_EQ(cloop_unwatch(loop, &a.w), 1);
  ASSERT_EQ(a.w.fd, -1);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

TEST_IMPL_POLL(watchers_eperm) {
  cloop_loop *loop;
  counted a;
  char path[] = "/tmp/cloop-test-XXXXXX";
  counted_init(&a);
  LOOP_NEW(loop, backend);

  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  unlink(path);
  ASSERT_EQ(write(fd, "data", 4), 4);
  ASSERT_EQ(watch(loop, &a, fd, CLOOP_READABLE), -EPERM);
  ASSERT_EQ(watch(loop, &a, fd, CLOOP_WRITABLE), -EPERM);
  ASSERT_EQ(a.w.fd, -1);
  ASSERT_EQ(cloop_run(loop), 0);

  ASSERT_EQ(cloop_loop_free(loop), 0);
  close(fd);
  return 0;
}

TEST_IMPL_POLL(watchers_both_directions) {
  cloop_loop *loop;
  int s[2];
  counted rd, wr;
  char c;
  counted_init(&rd);
  counted_init(&wr);
  LOOP_NEW(loop, backend);
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, s), 0);

  ASSERT_EQ(watch(loop, &rd, s[0], CLOOP_READABLE), 0);
  ASSERT_EQ(watch(loop, &wr, s[0], CLOOP_WRITABLE), 0);

  /* An empty socket is writable, not readable. */
  ASSERT_EQ(cloop_run_once(loop, 1000 * MS), 1);
  ASSERT_EQ(wr.runs, 1);
  ASSERT_EQ(rd.runs, 0);

  /* Level-triggered: unread data makes it readable every iteration. */
  ASSERT_EQ(write(s[1], "a", 1), 1);
  ASSERT_EQ(cloop_run_once(loop, 1000 * MS), 1);
  ASSERT_EQ(rd.runs, 1);
  ASSERT_EQ(wr.runs, 2);

  /* Stop the writer: the reader goes on. */
  ASSERT_EQ(cloop_unwatch(loop, &wr.w), 1);
  ASSERT_EQ(cloop_run_once(loop, 1000 * MS), 1);
  ASSERT_EQ(rd.runs, 2);
  ASSERT_EQ(wr.runs, 2);

  /* Writer back, then stop the reader: the writer goes on. */
  ASSERT_EQ(watch(loop, &wr, s[0], CLOOP_WRITABLE), 0);
  ASSERT_EQ(cloop_run_once(loop, 1000 * MS), 1);
  ASSERT_EQ(rd.runs, 3);
  ASSERT_EQ(wr.runs, 3);
  ASSERT_EQ(cloop_unwatch(loop, &rd.w), 1);
  ASSERT_EQ(cloop_run_once(loop, 1000 * MS), 1);
  ASSERT_EQ(rd.runs, 3);
  ASSERT_EQ(wr.runs, 4);

  ASSERT_EQ(cloop_unwatch(loop, &wr.w), 1);
  ASSERT_EQ(cloop_run_once(loop, 0), 0);
  ASSERT_EQ(rd.runs, 3);
  ASSERT_EQ(wr.runs, 4);
  ASSERT_EQ(read(s[0], &c, 1), 1); /* the data was left alone */
  ASSERT_EQ(c, 'a');

  /* A stopped direction is gone from the poller too: with only an idle
     reader left, the always-writable socket must not end the wait. */
  ASSERT_EQ(watch(loop, &rd, s[0], CLOOP_READABLE), 0);
  ASSERT_EQ(watch(loop, &wr, s[0], CLOOP_WRITABLE), 0);
  ASSERT_EQ(cloop_unwatch(loop, &wr.w), 1);
  uint64_t before = cloop_now(loop);
  ASSERT_EQ(cloop_run_once(loop, 20 * MS), 1);
  ASSERT_GE(cloop_now(loop), before + 20 * MS);
  ASSERT_EQ(rd.runs, 3);
  ASSERT_EQ(wr.runs, 4);
  ASSERT_EQ(cloop_unwatch(loop, &rd.w), 1);

  ASSERT_EQ(cloop_loop_free(loop), 0);
  close(s[0]);
  close(s[1]);
  return 0;
}

/* Two watchers ready in the same iteration; whichever runs first stops the
   other, whose handle is then queued in the same batch. */
typedef struct rivals {
  cloop_loop *loop;
  cloop_watcher w[2];
  int runs[2];
} rivals;

static void rival_run(rivals *r, int self) {
  r->runs[self]++;
  if (r->w[!self].fd != -1)
    ASSERT_EQ(cloop_unwatch(r->loop, &r->w[!self]), 1);
}

static void rival0(void *arg) { rival_run(arg, 0); }
static void rival1(void *arg) { rival_run(arg, 1); }

TEST_IMPL_POLL(watchers_unwatch_queued) {
  int s[2];
  rivals r;
  memset(&r, 0, sizeof r);
  cloop_watcher_init(&r.w[0]);
  cloop_watcher_init(&r.w[1]);
  LOOP_NEW(r.loop, backend);
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, s), 0);
  ASSERT_EQ(write(s[1], "a", 1), 1);

  ASSERT_EQ(cloop_watch(r.loop, &r.w[0], s[0], CLOOP_READABLE, rival0, &r), 0);
  ASSERT_EQ(cloop_watch(r.loop, &r.w[1], s[0], CLOOP_WRITABLE, rival1, &r), 0);
  ASSERT_EQ(cloop_run_once(r.loop, 1000 * MS), 1);
  ASSERT_EQ(r.runs[0] + r.runs[1], 1);

  int survivor = r.runs[0] ? 0 : 1;
  ASSERT_EQ(r.w[!survivor].fd, -1);
  ASSERT_EQ(cloop_handle_queued(&r.w[!survivor].handle), 0);
  ASSERT_EQ(cloop_run_once(r.loop, 1000 * MS), 1);
  ASSERT_EQ(r.runs[survivor], 2);
  ASSERT_EQ(r.runs[!survivor], 0);

  ASSERT_EQ(cloop_unwatch(r.loop, &r.w[survivor]), 1);
  ASSERT_EQ(cloop_loop_free(r.loop), 0);
  close(s[0]);
  close(s[1]);
  return 0;
}
