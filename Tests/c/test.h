/* test.h -- what every C test includes: the test macros and a few helpers.
 *
 * A test is `TEST_IMPL(name) { ... return 0; }`, listed once in
 * test_list.h. It returns 0 to pass or calls SKIP(); a failed ASSERT prints
 * both values and ends the test (the runner forks each test, so ending the
 * process ends only that test). */
#ifndef CLOOP_TEST_H
#define CLOOP_TEST_H

#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cloop.h"

#define TEST_SKIP 77

/* Under ThreadSanitizer each live task is a TSan fiber (coro.c): TSan holds
   at most 8,128 threads and fibers at once, each ~0.85 MiB of its own state
   (measured: 6.8 GB at that limit). A test that keeps more than
   TEST_TSAN_MAX_TASKS tasks alive skips there with SKIP_IF_TSAN_TASKS(n). */
#if defined(__SANITIZE_THREAD__)
#define TEST_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TEST_UNDER_TSAN 1
#endif
#endif
#ifndef TEST_UNDER_TSAN
#define TEST_UNDER_TSAN 0
#endif
#define TEST_TSAN_MAX_TASKS 2500
#define SKIP_IF_TSAN_TASKS(n)                                                \
  do {                                                                       \
    if (TEST_UNDER_TSAN && (long)(n) > TEST_TSAN_MAX_TASKS)                  \
      SKIP("%ld live tasks: under TSan each is a fiber, and TSan holds "     \
           "8,128 at most (~0.85 MiB each)\n", (long)(n));                  \
  } while (0)

#define TEST_IMPL(name) int test_##name(void)

/* A poller test runs once per backend: TEST_IMPL_POLL(x) defines x_epoll
   and x_uring (list both with TEST_POLL(x)), whose shared body sees the
   backend as `backend`. */
#define TEST_IMPL_POLL(name)                                                 \
  static int name##_body(cloop_backend backend);                             \
  TEST_IMPL(name##_epoll) { return name##_body(CLOOP_BACKEND_EPOLL); }       \
  TEST_IMPL(name##_uring) { return name##_body(CLOOP_BACKEND_URING); }       \
  static int name##_body(cloop_backend backend)

/* A coroutine test runs once per switch: TEST_IMPL_SWITCH(x) defines x_asm,
   x_fast and x_ucontext (list them with TEST_SWITCH(x)). The shared body
   gets `opts`, ready options whose switch_mode is that switch (backend
   auto); it may copy them to change stack_size. Where the machine has no
   assembly switch (the loop would fall back to ucontext) the asm and fast
   variants skip. */
#define TEST_IMPL_SWITCH(name)                                               \
  static int name##_body(const cloop_options *opts);                         \
  TEST_IMPL(name##_asm) {                                                    \
    return test__run_switch(CLOOP_SWITCH_ASM, name##_body);                  \
  }                                                                          \
  TEST_IMPL(name##_fast) {                                                   \
    return test__run_switch(CLOOP_SWITCH_FAST, name##_body);                 \
  }                                                                          \
  TEST_IMPL(name##_ucontext) {                                               \
    return test__run_switch(CLOOP_SWITCH_UCONTEXT, name##_body);             \
  }                                                                          \
  static int name##_body(const cloop_options *opts)

int test__run_switch(cloop_switch mode, int (*body)(const cloop_options *));

/* A TEST_IMPL_SWITCH body run again with every task on the loop's shared
   stack (CLOOP_STACK_SHARED): TEST_SHARED_STACK(x) defines the switch test
   x_shared_stack (list it with TEST_SWITCH(x_shared_stack)). Only for
   bodies that keep nothing the loop or another task touches in a task's
   locals (see CLOOP_STACK_SHARED in cloop.h). */
#define TEST_SHARED_STACK(name)                                              \
  TEST_IMPL_SWITCH(name##_shared_stack) {                                    \
    cloop_options o__ = *opts;                                               \
    o__.task_stack = CLOOP_STACK_SHARED;                                     \
    return name##_body(&o__);                                                \
  }

/* Ends the test as failed. _exit, not exit: a failed test's leftovers are
   not worth a leak report on top of the assertion. */
_Noreturn void test__fail(void);

#define ASSERT(cond)                                                         \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__,  \
              #cond);                                                        \
      test__fail();                                                          \
    }                                                                        \
  } while (0)

#define ASSERT__CMP(a, op, b)                                                \
  do {                                                                       \
    long long a__ = (long long)(a), b__ = (long long)(b);                    \
    if (!(a__ op b__)) {                                                     \
      fprintf(stderr,                                                        \
              "%s:%d: assertion failed: %s %s %s\n"                          \
              "  left:  %lld\n  right: %lld\n",                              \
              __FILE__, __LINE__, #a, #op, #b, a__, b__);                    \
      test__fail();                                                          \
    }                                                                        \
  } while (0)

#define ASSERT_EQ(a, b) ASSERT__CMP(a, ==, b)
#define ASSERT_NE(a, b) ASSERT__CMP(a, !=, b)
#define ASSERT_LT(a, b) ASSERT__CMP(a, <, b)
#define ASSERT_LE(a, b) ASSERT__CMP(a, <=, b)
#define ASSERT_GE(a, b) ASSERT__CMP(a, >=, b)
#define ASSERT_GT(a, b) ASSERT__CMP(a, >, b)

#define SKIP(...)                                                            \
  do {                                                                       \
    printf("SKIP: " __VA_ARGS__);                                            \
    printf("\n");                                                            \
    return TEST_SKIP;                                                        \
  } while (0)

/* Creates a loop on `backend`, or skips when that backend is missing here. */
#define LOOP_NEW(loop, backend)                                              \
  do {                                                                       \
    cloop_options o__;                                                       \
    cloop_options_init(&o__);                                                \
    o__.backend = (backend);                                                 \
    int r__ = cloop_loop_new(&(loop), &o__);                                 \
    if (r__ == CLOOP_ENOBACKEND && (backend) == CLOOP_BACKEND_URING)         \
      SKIP("backend %s not available: %s", cloop_backend_name(backend),      \
           cloop_strerror(r__));                                             \
    ASSERT_EQ(r__, 0);                                                       \
    ASSERT_EQ(cloop_loop_backend(loop), (backend));                          \
  } while (0)

/* Creates a loop with opts and checks it runs the switch asked for. */
#define LOOP_NEW_OPTS(loop, opts)                                            \
  do {                                                                       \
    ASSERT_EQ(cloop_loop_new(&(loop), (opts)), 0);                           \
    ASSERT_EQ(cloop_loop_switch(loop), (opts)->switch_mode);                 \
  } while (0)

/* Runs fn(arg) as a task on a new loop with opts until the loop has
   nothing left, checks the loop then frees with 0, and returns the task's
   result (>= 0) or error. */
intptr_t test_run_task(const cloop_options *opts, cloop_task_fn fn, void *arg);

/* test_run_task on the manual clock (cloop_debug_manual_clock), starting
   at TEST_CLOCK_START: timers fire exactly at their deadlines, and time
   jumps instead of passing, so timing tests are exact and quick. */
#define TEST_CLOCK_START ((uint64_t)1000000000000) /* 1000 s */
intptr_t test_run_task_manual(const cloop_options *opts, cloop_task_fn fn,
                              void *arg);

/* The same on a loop the test made (test_run_task's second half). */
intptr_t test_run_loop(cloop_loop *loop, cloop_task_fn fn, void *arg);

/* Runs fn(arg) in a forked child (fn returning exits 0) with stderr going
   to `out` (NUL-terminated, the first cap - 1 bytes kept). Returns the
   wait status. */
int test_child_stderr(void (*fn)(void *), void *arg, char *out, size_t cap);

/* Runs fn(arg) in a forked child and checks that the child dies by SIGABRT
   with `word` (case-insensitive) in what it wrote to stderr. Fails the test
   otherwise, printing `what` and what the child did. */
void test_expect_abort(const char *what, void (*fn)(void *), void *arg,
                       const char *word);

/* Installs a seccomp filter (after PR_SET_NO_NEW_PRIVS) in this process:
   0 or -errno. For tests that fork a child to take a syscall away. */
struct sock_filter;
int test_install_seccomp(struct sock_filter *code, unsigned short n);

/* Makes io_uring_setup fail with EPERM in this process (and its future
   children) from now on, by a seccomp filter, as a container runtime's
   profile does; for a forked child only, it cannot be undone. Returns 0 or
   -errno (-ENOSYS where the architecture is not known here). */
int test_block_io_uring(void);

/* CLOCK_MONOTONIC in nanoseconds, read now (cloop_now is per iteration). */
uint64_t test_clock_ns(void);

/* A small deterministic PRNG (xorshift64*), so failures reproduce. */
static inline uint64_t test_rand(uint64_t *state) {
  uint64_t x = *state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 0x2545F4914F6CDD1DULL;
}

#endif
