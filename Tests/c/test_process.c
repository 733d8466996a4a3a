/* test_process.c -- child processes (loop/process.c, coro/process_wait.c)
 * on both backends: true and false; a program that does not exist, or is
 * not executable (the exec's errno, not an exit of 127); 8 MiB through cat
 * in both directions at once; environment, folder and /dev/null; a kill;
 * a child that outlives its handle, and one that outlives its loop, both
 * reaped. */
#include "test.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define MS 1000000LL

/* Whether pid is still ours to reap (running, or a zombie). */
static int not_reaped(int pid) {
  siginfo_t info;
  memset(&info, 0, sizeof info);
  return waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0;
}

static int spawn(cloop_loop *loop, cloop_process *p, const char *file,
                 char *const *argv, int in, int out) {
  cloop_process_options o;
  memset(&o, 0, sizeof o);
  o.file = file;
  o.argv = argv;
  o.stdio[0] = in;
  o.stdio[1] = out;
  o.stdio[2] = CLOOP_STDIO_INHERIT;
  return cloop_process_spawn(loop, p, &o);
}

static cloop_loop *task_loop(void) {
  return cloop_task_loop(cloop_current_task());
}

static intptr_t exits_main(void *arg) {
  (void)arg;
  cloop_process p;
  memset(&p, 0, sizeof p);
  char *t[] = {"true", NULL}, *f[] = {"false", NULL};
  ASSERT_EQ(spawn(task_loop(), &p, "true", t, CLOOP_STDIO_NULL, CLOOP_STDIO_NULL), 0);
  ASSERT_GT(p.pid, 0);
  ASSERT_EQ(cloop_process_wait(&p), 0);
  ASSERT_EQ(p.exited, 1);
  ASSERT_EQ(p.exit_code, 0);
  ASSERT_EQ(p.term_signal, 0);
  ASSERT(!not_reaped(p.pid));
  ASSERT_EQ(cloop_process_wait(&p), 0); /* again: at once */
  ASSERT_EQ(cloop_process_kill(&p, SIGTERM), -ESRCH); /* its pid is not ours */
  ASSERT_EQ(cloop_process_release(&p), 0);

  memset(&p, 0, sizeof p);
  ASSERT_EQ(spawn(task_loop(), &p, "/bin/false", f, CLOOP_STDIO_NULL, CLOOP_STDIO_NULL), 0);
  ASSERT_EQ(cloop_process_wait(&p), 0);
  ASSERT_EQ(p.exit_code, 1);
  ASSERT_EQ(cloop_process_release(&p), 0);

  /* The exec's own error, never a child that exits 127. */
  char *m[] = {"no-such-program-cloop", NULL};
  memset(&p, 0, sizeof p);
  ASSERT_EQ(spawn(task_loop(), &p, "no-such-program-cloop", m, CLOOP_STDIO_NULL,
                  CLOOP_STDIO_NULL), -ENOENT);
  ASSERT_EQ(spawn(task_loop(), &p, "/no/such/path", m, CLOOP_STDIO_NULL,
                  CLOOP_STDIO_NULL), -ENOENT);
  char path[64];
  snprintf(path, sizeof path, "/tmp/cloop-noexec-%d", (int)getpid());
  int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644); /* not executable */
  ASSERT_GE(fd, 0);
  close(fd);
  ASSERT_EQ(spawn(task_loop(), &p, path, m, CLOOP_STDIO_NULL, CLOOP_STDIO_NULL), -EACCES);
  unlink(path);
  return 0;
}

TEST_IMPL_POLL(process_exit_codes_and_exec_errors) {
  cloop_options o;
  cloop_options_init(&o);
  o.backend = backend;
  cloop_loop *loop;
  int r = cloop_loop_new(&loop, &o);
  if (r == CLOOP_ENOBACKEND)
    SKIP("backend %s not available", cloop_backend_name(backend));
  ASSERT_EQ(r, 0);
  ASSERT_EQ(test_run_loop(loop, exits_main, NULL), 0);
  return 0;
}

/* ---- streams ---------------------------------------------------------------- */

enum { BIG = 8 << 20 };
static char *big_out, *big_in;

static intptr_t feeder(void *arg) {
  cloop_process *p = arg;
  ssize_t r = cloop_sock_sendall(p->stdio[0], big_out, BIG);
  cloop_sock_close(p->stdio[0]); /* EOF for cat */
  p->stdio[0] = -1;
  return r == BIG ? 0 : r;
}

static intptr_t cat_main(void *arg) {
  (void)arg;
  cloop_process p;
  memset(&p, 0, sizeof p);
  char *argv[] = {"cat", NULL};
  ASSERT_EQ(spawn(task_loop(), &p, "cat", argv, CLOOP_STDIO_PIPE, CLOOP_STDIO_PIPE), 0);
  ASSERT_GE(p.stdio[0], 0);
  ASSERT_GE(p.stdio[1], 0);
  ASSERT_EQ(p.stdio[2], -1);
  ASSERT_EQ(fcntl(p.stdio[1], F_GETFL) & O_NONBLOCK, O_NONBLOCK);
  for (size_t i = 0; i < BIG; i++)
    big_out[i] = (char)(i * 7 + (i >> 13));
  /* Writing 8 MiB while reading 8 MiB: neither side may wait for the
     other to finish, or both stop with full buffers. */
  cloop_task *t;
  ASSERT_EQ(cloop_spawn(task_loop(), &t, feeder, &p, "feeder"), 0);
  size_t got = 0;
  for (;;) {
    ssize_t n = cloop_sock_recv(p.stdio[1], big_in + got, BIG - got);
    ASSERT_GE(n, 0);
    if (n == 0)
      break;
    got += (size_t)n;
  }
  ASSERT_EQ(got, BIG);
  ASSERT(memcmp(big_in, big_out, BIG) == 0);
  ASSERT_EQ(cloop_task_join(t), 0);
  cloop_task_release(t);
  ASSERT_EQ(cloop_process_wait(&p), 0);
  ASSERT_EQ(p.exit_code, 0);
  ASSERT_EQ(cloop_process_release(&p), 0);

  /* Environment and folder, and stdin from /dev/null. */
  char *env[] = {"CLOOP_TEST_WORD=bird", NULL};
  char *sh[] = {"sh", "-c", "printf '%s %s' \"$CLOOP_TEST_WORD\" \"$(pwd)\"; cat", NULL};
  cloop_process_options o;
  memset(&o, 0, sizeof o);
  o.file = "/bin/sh";
  o.argv = sh;
  o.envp = env;
  o.cwd = "/";
  o.stdio[0] = CLOOP_STDIO_NULL;
  o.stdio[1] = CLOOP_STDIO_PIPE;
  o.stdio[2] = CLOOP_STDIO_INHERIT;
  memset(&p, 0, sizeof p);
  ASSERT_EQ(cloop_process_spawn(task_loop(), &p, &o), 0);
  char text[64];
  size_t len = 0;
  for (;;) {
    ssize_t n = cloop_sock_recv(p.stdio[1], text + len, sizeof text - 1 - len);
    ASSERT_GE(n, 0);
    if (n == 0)
      break;
    len += (size_t)n;
  }
  text[len] = 0;
  ASSERT_EQ(strcmp(text, "bird /"), 0); /* and cat read EOF from /dev/null */
  ASSERT_EQ(cloop_process_wait(&p), 0);
  ASSERT_EQ(p.exit_code, 0);
  ASSERT_EQ(cloop_process_release(&p), 0);
  return 0;
}

TEST_IMPL_POLL(process_streams_env_and_folder) {
  cloop_options o;
  cloop_options_init(&o);
  o.backend = backend;
  cloop_loop *loop;
  int r = cloop_loop_new(&loop, &o);
  if (r == CLOOP_ENOBACKEND)
    SKIP("backend %s not available", cloop_backend_name(backend));
  ASSERT_EQ(r, 0);
  big_out = malloc(BIG);
  big_in = malloc(BIG);
  ASSERT_EQ(test_run_loop(loop, cat_main, NULL), 0);
  free(big_out);
  free(big_in);
  return 0;
}

/* ---- kill, and children that outlive their handle or their loop -------- */

static intptr_t kill_main(void *arg) {
  (void)arg;
  cloop_process p;
  memset(&p, 0, sizeof p);
  char *argv[] = {"sleep", "1000", NULL};
  ASSERT_EQ(spawn(task_loop(), &p, "sleep", argv, CLOOP_STDIO_NULL, CLOOP_STDIO_NULL), 0);
  /* A deadline interrupts the wait; the child runs on. */
  cloop_deadline d;
  ASSERT_EQ(cloop_deadline_enter(&d, 1 * MS), 0);
  ASSERT_EQ(cloop_process_wait(&p), -ETIMEDOUT);
  ASSERT_EQ(cloop_deadline_exit(&d), -ETIMEDOUT);
  ASSERT_EQ(p.exited, 0);
  ASSERT_EQ(cloop_process_kill(&p, SIGTERM), 0);
  ASSERT_EQ(cloop_process_wait(&p), 0);
  ASSERT_EQ(p.exit_code, -1);
  ASSERT_EQ(p.term_signal, SIGTERM);
  ASSERT_EQ(cloop_process_release(&p), 0);
  return 0;
}

TEST_IMPL_POLL(process_kill) {
  cloop_options o;
  cloop_options_init(&o);
  o.backend = backend;
  cloop_loop *loop;
  int r = cloop_loop_new(&loop, &o);
  if (r == CLOOP_ENOBACKEND)
    SKIP("backend %s not available", cloop_backend_name(backend));
  ASSERT_EQ(r, 0);
  ASSERT_EQ(test_run_loop(loop, kill_main, NULL), 0);
  return 0;
}

/* Waits (at most 5 s) until pid has been reaped by someone else. */
static void until_reaped(cloop_loop *loop, int pid) {
  uint64_t end = test_clock_ns() + 5000 * MS;
  while (not_reaped(pid)) {
    ASSERT_LT(test_clock_ns(), end);
    if (loop)
      ASSERT_GE(cloop_run_once(loop, 10 * MS), 0);
    else
      usleep(1000);
  }
}

TEST_IMPL_POLL(process_outlives_its_handle_and_its_loop) {
  cloop_loop *loop;
  LOOP_NEW(loop, backend);
  /* Its handle goes first: the loop reaps it when it exits, and the loop
     need not wait for that (cloop_run returns at once). */
  int gate[2];
  ASSERT_EQ(pipe2(gate, O_CLOEXEC), 0);
  cloop_process p;
  memset(&p, 0, sizeof p);
  char *argv[] = {"cat", NULL};
  ASSERT_EQ(spawn(loop, &p, "cat", argv, gate[0], CLOOP_STDIO_NULL), 0);
  int pid = p.pid;
  ASSERT_EQ(cloop_process_release(&p), 1);
  memset(&p, 0xa5, sizeof p); /* the caller's memory again */
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT(not_reaped(pid)); /* still running: cat waits for its stdin */
  ASSERT_EQ(close(gate[1]), 0); /* EOF: cat exits */
  cloop_ref(loop); /* the orphan does not keep the loop running: we do */
  until_reaped(loop, pid);
  cloop_unref(loop);

  /* Its loop goes first: the reaper thread reaps it. */
  ASSERT_EQ(close(gate[0]), 0);
  ASSERT_EQ(pipe2(gate, O_CLOEXEC), 0);
  memset(&p, 0, sizeof p);
  ASSERT_EQ(spawn(loop, &p, "cat", argv, gate[0], CLOOP_STDIO_NULL), 0);
  pid = p.pid;
  ASSERT_EQ(cloop_loop_free(loop), 0); /* p is not watched: nothing waits */
  ASSERT(not_reaped(pid));
  ASSERT_EQ(close(gate[1]), 0);
  until_reaped(NULL, pid);
  ASSERT_EQ(close(gate[0]), 0);
  return 0;
}
