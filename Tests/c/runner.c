/* runner.c -- cloop-tests: runs the tests of test_list.h, each in a forked
 * child with a timeout, so a hang or a crash fails that test alone.
 *
 *   cloop-tests           run every test, one line each, then a summary
 *   cloop-tests NAME      run one test (CTest does this); exit 0, 1 or 77
 *   cloop-tests --list    print the names
 *
 * $CLOOP_TEST_TIMEOUT sets the timeout in seconds (default 30). */
#include "test.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

#define TEST(name) int test_##name(void);
#define TEST_POLL(name) TEST(name##_epoll) TEST(name##_uring)
#include "test_list.h"
#undef TEST
#undef TEST_POLL

static const struct test {
  const char *name;
  int (*fn)(void);
} tests[] = {
#define TEST(name) {#name, test_##name},
#define TEST_POLL(name) TEST(name##_epoll) TEST(name##_uring)
#include "test_list.h"
#undef TEST
#undef TEST_POLL
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

void test_expect_abort(const char *what, void (*fn)(void *), void *arg,
                       const char *word) {
  int fds[2];
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
    _exit(0); /* fn returned: it did not abort */
  }
  close(fds[1]);

  char buf[4096], scratch[512]; /* keep the start of stderr, drain the rest */
  size_t len = 0;
  for (;;) {
    int full = len == sizeof buf - 1;
    ssize_t n = read(fds[0], full ? scratch : buf + len,
                     full ? sizeof scratch : sizeof buf - 1 - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    if (!full)
      len += (size_t)n;
  }
  buf[len] = '\0';
  close(fds[0]);

  int status;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
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
