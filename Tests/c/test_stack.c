/* test_stack.c -- task stacks: the size asked for is usable, and an
 * overflow -- by deep recursion or by one frame larger than what is left
 * -- hits the guard region and dies by SIGABRT with a message naming the
 * task and its stack size. */
#include "test.h"

#include <signal.h>
#include <sys/wait.h>

#define KIB ((size_t)1 << 10)
#define MS 1000000LL

/* These run under ASan too: there, as here, cloop's guard handler is the
   one that reports (ASan leaves a program's own SIGSEGV handler in place). */

/* ---- the stack asked for is there -------------------------------------- */

/* Touches `bytes` of stack below its own frame, one byte per page, in a
   frame the compiler cannot drop; returns a sum so the writes count. */
static __attribute__((noinline)) intptr_t use_stack(size_t bytes) {
  volatile char *buf = __builtin_alloca(bytes);
  for (size_t i = 0; i < bytes; i += 4096)
    buf[i] = (char)i;
  buf[0] = 1;
  intptr_t sum = 0;
  for (size_t i = 0; i < bytes; i += 4096)
    sum += buf[i];
  return sum;
}

static intptr_t stack_user(void *arg) {
  size_t bytes = (size_t)(uintptr_t)arg;
  ASSERT_EQ(cloop_sleep(0), 0); /* and survives a switch */
  use_stack(bytes);
  ASSERT_EQ(cloop_sleep(0), 0);
  use_stack(bytes);
  return (intptr_t)(bytes / KIB);
}

TEST_IMPL_SWITCH(stack_size_usable) {
  cloop_options o = *opts;
  /* 64 KiB stacks: 40 KiB of it in one go leaves room for the rest. */
  o.stack_size = 64 * KIB;
  ASSERT_EQ(test_run_task(&o, stack_user, (void *)(uintptr_t)(40 * KIB)), 40);
  /* The default (256 KiB): 200 KiB. */
  o.stack_size = 0;
  ASSERT_EQ(test_run_task(&o, stack_user, (void *)(uintptr_t)(200 * KIB)), 200);
  /* Too small a stack is refused. */
  cloop_loop *loop;
  o.stack_size = 1024;
  ASSERT_EQ(cloop_loop_new(&loop, &o), CLOOP_EBADOPTION);
  ASSERT(strstr(cloop_error_detail(), "stack_size is 1024 bytes") != NULL);
  return 0;
}

/* A finished task's stack goes back to the pool and the next task gets it
   (last in, first out): one after another, tasks of different depths --
   some cancelled before their first step, so they end at once -- run on
   reused stacks. (Under ASan this catches shadow memory left poisoned by a
   finished task's last frames.) */
static int reuse_ran;

static intptr_t reuse_body(void *arg) {
  intptr_t i = (intptr_t)arg;
  reuse_ran++;
  ASSERT_EQ(cloop_sleep(0), 0);
  return use_stack((size_t)(i % 4) * 8 * KIB + KIB) >= 0 ? i : -EINVAL;
}

TEST_IMPL_SWITCH(stack_reused_by_next_task) {
  cloop_loop *loop;
  LOOP_NEW_OPTS(loop, opts);
  int want_ran = 0;
  for (intptr_t i = 0; i < 200; i++) {
    cloop_task *t;
    ASSERT_EQ(cloop_spawn(loop, &t, reuse_body, (void *)i, NULL), 0);
    if (i % 3 == 1)
      ASSERT_EQ(cloop_task_cancel(t), 1);
    else
      want_ran++;
    ASSERT_EQ(cloop_run(loop), 0);
    cloop_future *f = cloop_task_future(t);
    if (i % 3 == 1) {
      ASSERT_EQ(f->state, CLOOP_CANCELLED);
    } else {
      ASSERT_EQ(f->state, CLOOP_DONE);
      ASSERT_EQ(f->value, i);
    }
    cloop_task_release(t);
  }
  ASSERT_EQ(reuse_ran, want_ran);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* ---- overflow ----------------------------------------------------------- */

/* 1 KiB per frame and work after the call, so it is no tail call; the
   limit is out of reach but unknown to the compiler. */
static volatile int recurse_limit = 1 << 30;

static __attribute__((noinline)) int recurse(int depth) {
  volatile char pad[1024];
  pad[0] = (char)depth;
  pad[sizeof pad - 1] = (char)depth;
  if (depth >= recurse_limit)
    return 0;
  return recurse(depth + 1) + pad[0] + pad[sizeof pad - 1];
}

static intptr_t deep_body(void *arg) {
  (void)arg;
  ASSERT_EQ(cloop_sleep(0), 0);
  return recurse(0);
}

/* One frame of 100 KiB on a 64 KiB stack: the whole frame is reserved
   with one stack-pointer move, and its low end lies inside the 64 KiB
   guard region below the stack. Touch that low end first. */
static __attribute__((noinline)) int big_frame(int seed) {
  volatile char big[100 * 1024];
  big[0] = (char)seed; /* the lowest address: in the guard region */
  big[sizeof big - 1] = (char)seed;
  return big[0] + big[sizeof big - 1];
}

static intptr_t big_body(void *arg) {
  (void)arg;
  ASSERT_EQ(cloop_sleep(0), 0);
  return big_frame(3);
}

static intptr_t bystander(void *arg) {
  cloop_future *never = arg;
  return cloop_await(never, NULL);
}

typedef struct overflow_case {
  const cloop_options *opts;
  cloop_task_fn body;
  const char *name;
} overflow_case;

static void overflow_child(void *arg) {
  overflow_case *c = arg;
  cloop_options o = *c->opts;
  o.stack_size = 64 * KIB;
  cloop_loop *loop;
  cloop_future never;
  ASSERT_EQ(cloop_loop_new(&loop, &o), 0);
  cloop_future_init(&never, loop);
  /* Other tasks exist, so the message must name the right one. */
  ASSERT_EQ(cloop_spawn(loop, NULL, bystander, &never, "bystander-1"), 0);
  ASSERT_EQ(cloop_spawn(loop, NULL, c->body, NULL, c->name), 0);
  ASSERT_EQ(cloop_spawn(loop, NULL, bystander, &never, "bystander-2"), 0);
  cloop_run(loop);
  fprintf(stderr, "the loop returned: no overflow was caught\n");
}

static int expect_overflow(const cloop_options *opts, cloop_task_fn body,
                           const char *name) {
  overflow_case c = {opts, body, name};
  char buf[4096], want[128];
  int status = test_child_stderr(overflow_child, &c, buf, sizeof buf);
  snprintf(want, sizeof want, "stack overflow in task '%s'", name);
  int ok = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT &&
           strstr(buf, want) && strstr(buf, "64 KiB") &&
           !strstr(buf, "bystander");
  if (!ok)
    fprintf(stderr,
            "%s switch, task '%s': expected SIGABRT and \"%s\" with \"64 KiB\"; "
            "the child %s %d and wrote:\n%s\n",
            cloop_switch_name(opts->switch_mode), name, want,
            WIFSIGNALED(status) ? "died by signal" : "exited with",
            WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), buf);
  ASSERT(WIFSIGNALED(status));
  ASSERT_EQ(WTERMSIG(status), SIGABRT);
  ASSERT(strstr(buf, want) != NULL);
  ASSERT(strstr(buf, "64 KiB") != NULL);
  ASSERT(strstr(buf, "bystander") == NULL);
  return 0;
}

TEST_IMPL_SWITCH(stack_overflow_recursion) {
  return expect_overflow(opts, deep_body, "deep-recursion");
}

TEST_IMPL_SWITCH(stack_overflow_large_frame) {
  return expect_overflow(opts, big_body, "big-frame");
}

/* The same from a second thread: the guard handler works on whichever
   thread the task runs (each has its own alternate signal stack). */
#include <pthread.h>

static void *overflow_thread(void *arg) {
  overflow_child(arg);
  return NULL;
}

static void overflow_on_thread(void *arg) {
  pthread_t tid;
  ASSERT_EQ(pthread_create(&tid, NULL, overflow_thread, arg), 0);
  pthread_join(tid, NULL);
}

TEST_IMPL_SWITCH(stack_overflow_on_second_thread) {
  overflow_case c = {opts, deep_body, "thread-deep"};
  char buf[4096];
  int status = test_child_stderr(overflow_on_thread, &c, buf, sizeof buf);
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT ||
      !strstr(buf, "stack overflow in task 'thread-deep'"))
    fprintf(stderr, "the child (status %#x) wrote:\n%s\n", status, buf);
  ASSERT(WIFSIGNALED(status));
  ASSERT_EQ(WTERMSIG(status), SIGABRT);
  ASSERT(strstr(buf, "stack overflow in task 'thread-deep'") != NULL);
  ASSERT(strstr(buf, "64 KiB") != NULL);
  return 0;
}

/* ---- the same on the shared stack (CLOOP_STACK_SHARED) ------------------ */

TEST_SHARED_STACK(stack_size_usable)
TEST_SHARED_STACK(stack_overflow_recursion)
