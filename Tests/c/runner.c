/* runner.c -- cloop-tests: runs the tests of test_list.h, each in a forked
 * child with a timeout, so a hang or a crash fails that test alone.
 *
 *   cloop-tests           run every test, one line each, then a summary
 *   cloop-tests NAME      run one test (CTest does this); exit 0, 1 or 77
 *   cloop-tests --list    print the names
 *
 * TEST_POLL(x) in test_list.h is x_epoll and x_uring; TEST_SWITCH(x) is
 * x_asm, x_fast and x_ucontext.
 *
 * $CLOOP_TEST_TIMEOUT sets the timeout in seconds (default 30). */
#include "test.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#define TEST(name) int test_##name(void);
#define TEST_POLL(name) TEST(name##_epoll) TEST(name##_uring)
#define TEST_SWITCH(name) TEST(name##_asm) TEST(name##_fast) TEST(name##_ucontext)
#include "test_list.h"
#undef TEST
#undef TEST_POLL
#undef TEST_SWITCH

static const struct test {
  const char *name;
  int (*fn)(void);
} tests[] = {
#define TEST(name) {#name, test_##name},
#define TEST_POLL(name) TEST(name##_epoll) TEST(name##_uring)
#define TEST_SWITCH(name) TEST(name##_asm) TEST(name##_fast) TEST(name##_ucontext)
#include "test_list.h"
#undef TEST
#undef TEST_POLL
#undef TEST_SWITCH
};

#define NTESTS (sizeof tests / sizeof tests[0])

enum { PASS, FAIL, SKIPPED };

_Noreturn void test__fail(void) {
  fflush(stdout);
  _exit(1);
}

static void no_core_dumps(void) {
  struct rlimit rl = {0, 0};
  setrlimit(RLIMIT_CORE, &rl);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Runs one test in a child of its own process group (so a timeout also
   kills any child the test forked) and prints one line about it. */
static int run_one(const struct test *t, double timeout_ms) {
  fflush(stdout);
  fflush(stderr);
  double start = now_ms();
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    return FAIL;
  }
  if (pid == 0) {
    setpgid(0, 0);
    no_core_dumps();
    setvbuf(stdout, NULL, _IOLBF, 0);
    exit(t->fn());
  }
  setpgid(pid, pid); /* also here, so kill(-pid) works from the start */

  int status;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid)
      break;
    if (r < 0 && errno != EINTR) {
      perror("waitpid");
      return FAIL;
    }
    if (now_ms() - start > timeout_ms) {
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      printf("FAIL %s: timed out after %g s (killed)\n", t->name,
             timeout_ms / 1e3);
      return FAIL;
    }
    nanosleep(&(struct timespec){0, 2000000}, NULL); /* 2 ms */
  }
  double ms = now_ms() - start;

  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    printf("pass %s (%.0f ms)\n", t->name, ms);
    return PASS;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == TEST_SKIP) {
    printf("skip %s\n", t->name);
    return SKIPPED;
  }
  if (WIFSIGNALED(status))
    printf("FAIL %s: killed by signal %d (%s)\n", t->name, WTERMSIG(status),
           strsignal(WTERMSIG(status)));
  else
    printf("FAIL %s: exit status %d\n", t->name, WEXITSTATUS(status));
  return FAIL;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* keep our lines in order with stderr */
  double timeout_ms = 30e3;
  const char *env = getenv("CLOOP_TEST_TIMEOUT");
  if (env && atof(env) > 0)
    timeout_ms = atof(env) * 1e3;

  if (argc > 1 && strcmp(argv[1], "--list") == 0) {
    for (size_t i = 0; i < NTESTS; i++)
      puts(tests[i].name);
    return 0;
  }
  if (argc > 1) {
    for (size_t i = 0; i < NTESTS; i++)
      if (strcmp(argv[1], tests[i].name) == 0) {
        int r = run_one(&tests[i], timeout_ms);
        return r == PASS ? 0 : r == SKIPPED ? TEST_SKIP : 1;
      }
    fprintf(stderr, "cloop-tests: no test named %s (try --list)\n", argv[1]);
    return 2;
  }

  int count[3] = {0, 0, 0};
  for (size_t i = 0; i < NTESTS; i++)
    count[run_one(&tests[i], timeout_ms)]++;
  printf("%d passed, %d failed", count[PASS], count[FAIL]);
  if (count[SKIPPED])
    printf(", %d skipped", count[SKIPPED]);
  printf("\n");
  return count[FAIL] ? 1 : 0;
}

/* ---- helpers declared in test.h ---------------------------------------- */

int test__run_switch(cloop_switch mode, int (*body)(const cloop_options *)) {
  cloop_options opts;
  cloop_options_init(&opts);
  opts.switch_mode = mode;
  cloop_loop *loop;
  ASSERT_EQ(cloop_loop_new(&loop, &opts), 0);
  cloop_switch got = cloop_loop_switch(loop);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  if (got != mode)
    SKIP("the %s switch is not available here (the loop runs %s)",
         cloop_switch_name(mode), cloop_switch_name(got));
  return body(&opts);
}

intptr_t test_run_task(const cloop_options *opts, cloop_task_fn fn, void *arg) {
  cloop_loop *loop;
  ASSERT_EQ(cloop_loop_new(&loop, opts), 0);
  if (opts)
    ASSERT_EQ(cloop_loop_switch(loop), opts->switch_mode);
  return test_run_loop(loop, fn, arg);
}

intptr_t test_run_task_manual(const cloop_options *opts, cloop_task_fn fn,
                              void *arg) {
  cloop_loop *loop;
  ASSERT_EQ(cloop_loop_new(&loop, opts), 0);
  if (opts)
    ASSERT_EQ(cloop_loop_switch(loop), opts->switch_mode);
  cloop_debug_manual_clock(loop, TEST_CLOCK_START);
  return test_run_loop(loop, fn, arg);
}

intptr_t test_run_loop(cloop_loop *loop, cloop_task_fn fn, void *arg) {
  cloop_task *t;
  ASSERT_EQ(cloop_spawn(loop, &t, fn, arg, "test-main"), 0);
  ASSERT_EQ(cloop_run(loop), 0);
  cloop_future *f = cloop_task_future(t);
  ASSERT(cloop_future_done(f));
  intptr_t r = f->state == CLOOP_DONE ? f->value : f->error;
  cloop_task_release(t);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return r;
}

uint64_t test_clock_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int test_child_stderr(void (*fn)(void *), void *arg, char *out, size_t cap) {
  int fds[2];
  ASSERT(cap > 0);
  ASSERT_EQ(pipe(fds), 0);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    dup2(fds[1], STDERR_FILENO);
    close(fds[1]);
    no_core_dumps();
    fn(arg);
    fflush(stdout);
    fflush(stderr);
    _exit(0); /* fn returned */
  }
  close(fds[1]);

  char scratch[512]; /* keep the start of stderr, drain the rest */
  size_t len = 0;
  for (;;) {
    int full = len == cap - 1;
    ssize_t n = read(fds[0], full ? scratch : out + len,
                     full ? sizeof scratch : cap - 1 - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    if (!full)
      len += (size_t)n;
  }
  out[len] = '\0';
  close(fds[0]);

  int status;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  return status;
}

void test_expect_abort(const char *what, void (*fn)(void *), void *arg,
                       const char *word) {
  char buf[4096];
  int status = test_child_stderr(fn, arg, buf, sizeof buf);
  size_t len = strlen(buf);
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT ||
      !strcasestr(buf, word)) {
    fprintf(stderr,
            "%s: expected the child to abort (SIGABRT) naming \"%s\"; it %s "
            "%d and wrote to stderr:\n%s\n",
            what, word, WIFSIGNALED(status) ? "died by signal" : "exited with",
            WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
            len ? buf : "(nothing)");
  }
  ASSERT(WIFSIGNALED(status));
  ASSERT_EQ(WTERMSIG(status), SIGABRT);
  ASSERT(strcasestr(buf, word) != NULL);
}

#if defined(__x86_64__)
#define THIS_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define THIS_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

int test_install_seccomp(struct sock_filter *code, unsigned short n) {
  struct sock_fprog prog = {n, code};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    return -errno;
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
    return -errno;
  return 0;
}

int test_block_io_uring(void) {
#ifdef THIS_AUDIT_ARCH
  struct sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, THIS_AUDIT_ARCH, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  return test_install_seccomp(code, sizeof code / sizeof code[0]);
#else
  return -ENOSYS;
#endif
}
