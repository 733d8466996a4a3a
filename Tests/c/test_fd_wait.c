/* test_fd_wait.c -- cloop_wait_fd (coro/fd_wait.c): a task waits on a pipe
 * it owns, each test once per backend: readable after a write, writable at
 * once, cancelled, timed out in a deadline scope, and the errors. */
#include "test.h"

#include <fcntl.h>
#include <stdio.h>

#define MS 1000000LL

static int pipe_fds[2];

/* Waits until the pipe is readable, then reads one byte: returns it. */
static intptr_t read_one(void *arg) {
  (void)arg;
  int r = cloop_wait_fd(pipe_fds[0], CLOOP_READABLE);
  if (r < 0)
    return r;
  char c;
  ASSERT_EQ(read(pipe_fds[0], &c, 1), 1);
  return c;
}

static intptr_t pipe_main(void *arg) {
  (void)arg;
  cloop_loop *loop = cloop_task_loop(cloop_current_task());
  ASSERT_EQ(pipe2(pipe_fds, O_NONBLOCK | O_CLOEXEC), 0);

  /* Writable at once: an empty pipe has room. */
  ASSERT_EQ(cloop_wait_fd(pipe_fds[1], CLOOP_WRITABLE), 0);

  /* Readable only after a write: the waiter stays parked until then. */
  cloop_task *t;
  ASSERT_EQ(cloop_spawn(loop, &t, read_one, NULL, "reader"), 0);
  for (int i = 0; i < 3; i++)
    ASSERT_EQ(cloop_sleep(0), 0);
  ASSERT(!cloop_future_done(cloop_task_future(t)));
  /* One waiter per direction and fd: a second one is refused. */
  ASSERT_EQ(cloop_wait_fd(pipe_fds[0], CLOOP_READABLE), -EEXIST);
  ASSERT_EQ(write(pipe_fds[1], "x", 1), 1);
  ASSERT_EQ(cloop_task_join(t), 'x');
  cloop_task_release(t);

  /* The watcher went with the wait: the same direction can be waited on
     again (no -EEXIST), and data already there answers at once. */
  ASSERT_EQ(write(pipe_fds[1], "y", 1), 1);
  ASSERT_EQ(read_one(NULL), 'y');

  /* Cancelled while parked: -ECANCELED, and the watcher is gone too. */
  ASSERT_EQ(cloop_spawn(loop, &t, read_one, NULL, "reader"), 0);
  ASSERT_EQ(cloop_sleep(0), 0);
  ASSERT_EQ(cloop_sleep(0), 0);
  ASSERT_EQ(cloop_task_cancel(t), 1);
  ASSERT_EQ(cloop_task_join(t), -ECANCELED);
  cloop_task_release(t);
  ASSERT_EQ(write(pipe_fds[1], "z", 1), 1);
  ASSERT_EQ(read_one(NULL), 'z');

  close(pipe_fds[0]);
  close(pipe_fds[1]);
  return 0; /* the loop ends: no watcher was left behind to keep it alive */
}

static int new_loop(cloop_loop **loop, cloop_backend backend,
                    cloop_stack_mode stack) {
  cloop_options o;
  cloop_options_init(&o);
  o.backend = backend;
  o.task_stack = stack;
  return cloop_loop_new(loop, &o);
}

#define NEW_LOOP(loop, backend, stack)                                       \
  do {                                                                       \
    int r__ = new_loop(&(loop), (backend), (stack));                         \
    if (r__ == CLOOP_ENOBACKEND)                                             \
      SKIP("backend %s not available", cloop_backend_name(backend));         \
    ASSERT_EQ(r__, 0);                                                       \
  } while (0)

TEST_IMPL_POLL(fd_wait_pipe) {
  cloop_loop *loop;
  NEW_LOOP(loop, backend, CLOOP_STACK_PRIVATE);
  ASSERT_EQ(test_run_loop(loop, pipe_main, NULL), 0);
  return 0;
}

/* The same with every task on the shared stack: the wait keeps nothing the
   loop touches on the task's stack. */
TEST_IMPL_POLL(fd_wait_pipe_shared_stack) {
  cloop_loop *loop;
  NEW_LOOP(loop, backend, CLOOP_STACK_SHARED);
  ASSERT_EQ(test_run_loop(loop, pipe_main, NULL), 0);
  return 0;
}

static intptr_t deadline_main(void *arg) {
  (void)arg;
  ASSERT_EQ(pipe2(pipe_fds, O_NONBLOCK | O_CLOEXEC), 0);
  cloop_loop *loop = cloop_task_loop(cloop_current_task());
  uint64_t start = cloop_now(loop);
  cloop_deadline d;
  ASSERT_EQ(cloop_deadline_enter(&d, 5 * MS), 0);
  ASSERT_EQ(cloop_wait_fd(pipe_fds[0], CLOOP_READABLE), -ETIMEDOUT);
  ASSERT_EQ(cloop_deadline_exit(&d), -ETIMEDOUT);
  ASSERT_EQ(cloop_now(loop) - start, 5 * MS); /* the manual clock: exact */
  /* Nothing left watching: a write makes the next wait return at once. */
  ASSERT_EQ(write(pipe_fds[1], "x", 1), 1);
  ASSERT_EQ(cloop_wait_fd(pipe_fds[0], CLOOP_READABLE), 0);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  return 0;
}

TEST_IMPL_POLL(fd_wait_deadline) {
  cloop_loop *loop;
  NEW_LOOP(loop, backend, CLOOP_STACK_PRIVATE);
  cloop_debug_manual_clock(loop, TEST_CLOCK_START);
  ASSERT_EQ(test_run_loop(loop, deadline_main, NULL), 0);
  return 0;
}

static intptr_t errors_main(void *arg) {
  (void)arg;
  ASSERT_EQ(cloop_wait_fd(-1, CLOOP_READABLE), -EBADF);
  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  close(p[0]);
  close(p[1]);
  ASSERT_EQ(cloop_wait_fd(p[0], CLOOP_READABLE), -EBADF); /* closed */
  FILE *f = tmpfile();
  ASSERT(f != NULL);
  ASSERT_EQ(cloop_wait_fd(fileno(f), CLOOP_READABLE), -EPERM);
  fclose(f);
  ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  ASSERT_EQ(cloop_wait_fd(p[1], 3), -EINVAL);
  ASSERT_EQ(cloop_wait_fd(p[1], 0), -EINVAL);
  /* A cancellation that came first wins, before any registration. */
  cloop_task_cancel(cloop_current_task());
  ASSERT_EQ(cloop_wait_fd(p[1], CLOOP_WRITABLE), -ECANCELED);
  close(p[0]);
  close(p[1]);
  return 0;
}

TEST_IMPL_POLL(fd_wait_errors) {
  cloop_loop *loop;
  NEW_LOOP(loop, backend, CLOOP_STACK_PRIVATE);
  ASSERT_EQ(test_run_loop(loop, errors_main, NULL), 0);
  return 0;
}

static void wait_outside_task(void *arg) {
  (void)arg;
  cloop_wait_fd(0, CLOOP_READABLE);
}

TEST_IMPL(fd_wait_outside_task_aborts) {
  test_expect_abort("cloop_wait_fd outside a task", wait_outside_task, NULL,
                    "outside a task");
  return 0;
}
