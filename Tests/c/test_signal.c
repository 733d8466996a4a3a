/* test_signal.c -- signal watchers (loop/signal.c, coro/signal_wait.c) on
 * both backends: a signal to the process reaches every watcher of it; one
 * that arrives before anyone looks is counted, not lost; a task waits for
 * one, and is cancelled while it waits; a signal that reaches a thread
 * not blocking it is moved to the loop; two loops on two threads both see
 * one signal; the thread's mask and the process's action come back when
 * the watchers go; what cannot be watched. (Each test runs in a process of
 * its own, so its signals stay there.) */
#include "test.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#define MS 1000000LL

typedef struct seen {
  cloop_signal s;
  int calls;
  unsigned arrivals;
} seen;

static void on_signal(void *arg) {
  seen *x = arg;
  x->calls++;
  x->arrivals += cloop_signal_take(&x->s);
}

static int blocked_here(int signo) {
  sigset_t now;
  pthread_sigmask(SIG_BLOCK, NULL, &now);
  return sigismember(&now, signo);
}

static void *action_of(int signo) {
  struct sigaction sa;
  sigaction(signo, NULL, &sa);
  return (void *)sa.sa_handler;
}

/* Runs iterations until *calls is non-zero, at most 2 s. */
static void run_until(cloop_loop *loop, const int *calls) {
  uint64_t end = test_clock_ns() + 2000 * MS;
  while (!*calls) {
    ASSERT_LT(test_clock_ns(), end);
    ASSERT_GE(cloop_run_once(loop, 10 * MS), 0);
  }
}

TEST_IMPL_POLL(signal_reaches_every_watcher) {
  cloop_loop *loop;
  LOOP_NEW(loop, backend);
  ASSERT(!blocked_here(SIGUSR1));
  void *before = action_of(SIGUSR1);
  seen a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  ASSERT_EQ(cloop_signal_start(loop, &a.s, SIGUSR1, on_signal, &a), 0);
  ASSERT_EQ(cloop_signal_start(loop, &b.s, SIGUSR1, on_signal, &b), 0);
  ASSERT(blocked_here(SIGUSR1)); /* for the signalfd */
  ASSERT_EQ(kill(getpid(), SIGUSR1), 0);
  run_until(loop, &b.calls);
  ASSERT_EQ(a.calls, 1);
  ASSERT_EQ(a.arrivals, 1);
  ASSERT_EQ(b.arrivals, 1);
  /* Again: each watcher sees each arrival. */
  ASSERT_EQ(kill(getpid(), SIGUSR1), 0);
  while (a.calls < 2 || b.calls < 2)
    ASSERT_GE(cloop_run_once(loop, 10 * MS), 0);
  ASSERT_EQ(a.arrivals, 2);
  ASSERT_EQ(b.arrivals, 2);
  /* An active watcher keeps the loop alive; stopping both ends it, and
     gives the thread its mask and the process its action back. */
  ASSERT_EQ(cloop_run_once(loop, 0), 1);
  ASSERT_EQ(cloop_signal_stop(&a.s), 1);
  ASSERT_EQ(cloop_signal_stop(&a.s), 0);
  ASSERT(blocked_here(SIGUSR1)); /* b still watches */
  ASSERT_EQ(cloop_signal_stop(&b.s), 1);
  ASSERT(!blocked_here(SIGUSR1));
  ASSERT(action_of(SIGUSR1) == before);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* A signal blocked before the watcher stays blocked after it. */
TEST_IMPL_POLL(signal_keeps_a_mask_it_found) {
  cloop_loop *loop;
  LOOP_NEW(loop, backend);
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &one, NULL);
  seen a;
  memset(&a, 0, sizeof a);
  ASSERT_EQ(cloop_signal_start(loop, &a.s, SIGHUP, on_signal, &a), 0);
  ASSERT_EQ(cloop_signal_stop(&a.s), 1);
  ASSERT(blocked_here(SIGHUP));
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

TEST_IMPL_POLL(signal_before_anyone_looks_is_counted) {
  cloop_loop *loop;
  LOOP_NEW(loop, backend);
  seen a;
  memset(&a, 0, sizeof a);
  ASSERT_EQ(cloop_signal_start(loop, &a.s, SIGUSR2, NULL, NULL), 0); /* counts only */
  ASSERT_EQ(kill(getpid(), SIGUSR2), 0); /* before the loop ran at all */
  uint64_t end = test_clock_ns() + 2000 * MS;
  while (a.s.count == 0) {
    ASSERT_LT(test_clock_ns(), end);
    ASSERT_GE(cloop_run_once(loop, 10 * MS), 0);
  }
  ASSERT_EQ(cloop_signal_take(&a.s), 1);
  ASSERT_EQ(cloop_signal_take(&a.s), 0);
  ASSERT_EQ(cloop_signal_stop(&a.s), 1);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* ---- tasks ------------------------------------------------------------------ */

static cloop_signal task_sig;

static intptr_t sig_waiter(void *arg) {
  (void)arg;
  return cloop_signal_wait(&task_sig);
}

static intptr_t wait_main(void *arg) {
  (void)arg;
  cloop_loop *loop = cloop_task_loop(cloop_current_task());
  cloop_signal_init(&task_sig);
  ASSERT_EQ(cloop_signal_wait(&task_sig), -EINVAL); /* not started */
  ASSERT_EQ(cloop_signal_start(loop, &task_sig, SIGUSR1, NULL, NULL), 0);

  /* A task parked in the wait wakes with the arrival. */
  cloop_task *t;
  ASSERT_EQ(cloop_spawn(loop, &t, sig_waiter, NULL, "waiter"), 0);
  ASSERT_EQ(cloop_sleep(0), 0);
  ASSERT_EQ(cloop_sleep(0), 0); /* it is parked now */
  ASSERT_EQ(kill(getpid(), SIGUSR1), 0);
  ASSERT_EQ(cloop_task_join(t), 1);
  cloop_task_release(t);

  /* One that came while nobody waited: the next wait returns at once. */
  ASSERT_EQ(kill(getpid(), SIGUSR1), 0);
  while (task_sig.count == 0)
    ASSERT_EQ(cloop_sleep(1 * MS), 0);
  ASSERT_EQ(cloop_signal_wait(&task_sig), 1);

  /* Cancelled while it waits: -ECANCELED, and a later arrival is kept. */
  ASSERT_EQ(cloop_spawn(loop, &t, sig_waiter, NULL, "waiter"), 0);
  ASSERT_EQ(cloop_sleep(0), 0);
  ASSERT_EQ(cloop_task_cancel(t), 1);
  ASSERT_EQ(cloop_task_join(t), -ECANCELED);
  cloop_task_release(t);
  ASSERT_EQ(kill(getpid(), SIGUSR1), 0);
  ASSERT_EQ(cloop_signal_wait(&task_sig), 1);
  ASSERT_EQ(cloop_signal_stop(&task_sig), 1);
  return 0;
}

TEST_IMPL_POLL(signal_wait_in_a_task) {
  cloop_options o;
  cloop_options_init(&o);
  o.backend = backend;
  cloop_loop *loop;
  int r = cloop_loop_new(&loop, &o);
  if (r == CLOOP_ENOBACKEND)
    SKIP("backend %s not available", cloop_backend_name(backend));
  ASSERT_EQ(r, 0);
  ASSERT_EQ(test_run_loop(loop, wait_main, NULL), 0);
  return 0;
}

/* ---- threads ---------------------------------------------------------------- */

/* A plain thread that blocks nothing: a signal sent to it is moved to the
   loop by the process-wide handler. */
static pthread_mutex_t park_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t park_cond = PTHREAD_COND_INITIALIZER;
static int park_done;

static void *parked(void *arg) {
  (void)arg;
  pthread_mutex_lock(&park_lock);
  while (!park_done)
    pthread_cond_wait(&park_cond, &park_lock);
  pthread_mutex_unlock(&park_lock);
  return NULL;
}

TEST_IMPL_POLL(signal_to_another_thread_is_moved_to_the_loop) {
  pthread_t other;
  ASSERT_EQ(pthread_create(&other, NULL, parked, NULL), 0); /* unblocked mask */
  cloop_loop *loop;
  LOOP_NEW(loop, backend);
  seen a;
  memset(&a, 0, sizeof a);
  ASSERT_EQ(cloop_signal_start(loop, &a.s, SIGUSR1, on_signal, &a), 0);
  ASSERT_EQ(pthread_kill(other, SIGUSR1), 0); /* to the thread that does not block it */
  run_until(loop, &a.calls);
  ASSERT_EQ(a.arrivals, 1);
  ASSERT_EQ(cloop_signal_stop(&a.s), 1);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  pthread_mutex_lock(&park_lock);
  park_done = 1;
  pthread_cond_broadcast(&park_cond);
  pthread_mutex_unlock(&park_lock);
  ASSERT_EQ(pthread_join(other, NULL), 0);
  return 0;
}

/* Two loops on two threads watch SIGUSR2: one kill reaches both. */
typedef struct side {
  cloop_backend backend;
  _Atomic int ready, saw, skip;
} side;

static void *second_loop(void *arg) {
  side *sd = arg;
  cloop_options o;
  cloop_options_init(&o);
  o.backend = sd->backend;
  cloop_loop *loop;
  if (cloop_loop_new(&loop, &o) < 0) {
    sd->skip = 1;
    return NULL;
  }
  seen a;
  memset(&a, 0, sizeof a);
  if (cloop_signal_start(loop, &a.s, SIGUSR2, on_signal, &a) < 0)
    return NULL;
  atomic_store(&sd->ready, 1);
  uint64_t end = test_clock_ns() + 3000 * MS;
  while (!a.calls && test_clock_ns() < end)
    cloop_run_once(loop, 10 * MS);
  atomic_store(&sd->saw, (int)a.arrivals);
  cloop_signal_stop(&a.s);
  cloop_loop_free(loop);
  return NULL;
}

TEST_IMPL_POLL(signal_reaches_two_loops_on_two_threads) {
  side sd = {.backend = backend};
  pthread_t t;
  cloop_loop *loop;
  LOOP_NEW(loop, backend);
  ASSERT_EQ(pthread_create(&t, NULL, second_loop, &sd), 0);
  while (!atomic_load(&sd.ready) && !atomic_load(&sd.skip))
    usleep(100);
  seen a;
  memset(&a, 0, sizeof a);
  ASSERT_EQ(cloop_signal_start(loop, &a.s, SIGUSR2, on_signal, &a), 0);
  ASSERT_EQ(kill(getpid(), SIGUSR2), 0);
  run_until(loop, &a.calls);
  ASSERT_EQ(pthread_join(t, NULL), 0);
  ASSERT_EQ(a.arrivals, 1);
  ASSERT_EQ(atomic_load(&sd.saw), 1);
  ASSERT_EQ(cloop_signal_stop(&a.s), 1);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

TEST_IMPL(signal_refuses_what_cannot_be_watched) {
  cloop_loop *loop;
  ASSERT_EQ(cloop_loop_new(&loop, NULL), 0);
  cloop_signal s;
  cloop_signal_init(&s);
  int bad[] = {0, -1, SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGILL, SIGFPE, 1000};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    ASSERT_EQ(cloop_signal_start(loop, &s, bad[i], NULL, NULL), -EINVAL);
  ASSERT_EQ(cloop_signal_stop(&s), 0);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}
