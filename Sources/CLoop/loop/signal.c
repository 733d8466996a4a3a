/* signal.c -- signal watchers (asyncio's add_signal_handler, libuv's
 * uv_signal_t) through signalfd.
 *
 * A loop with signal watchers holds one signalfd for the signals they
 * watch, and an fd watcher on it: a signal becomes a readable fd, so it is
 * handled in a batch like any other event, never inside a handler. For the
 * signalfd to see a signal, the signal must be blocked: starting the first
 * watcher of a signal on a loop blocks it in the loop's thread, and
 * stopping the last one restores that thread's mask as it was.
 *
 * Other threads of the process (a thread pool, Swift's Dispatch threads)
 * may not block it, and the kernel delivers a process-wide signal to any
 * thread that does not. So while a signal is watched anywhere, a
 * process-wide handler is installed for it (the previous action comes back
 * with the last watcher) that redirects the signal to a thread of a loop
 * watching it (pthread_kill: async-signal-safe), where it waits blocked
 * for that loop's signalfd. A signal read by one loop is passed on to every
 * other loop watching it (pthread_sigqueue, marked so that it is not passed
 * on again): every watcher in the process sees every arrival. Standard
 * signals coalesce while pending, as everywhere: a watcher sees "at least
 * once since you last looked", and its count says how many reads there
 * were. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "loop/list.h"
#include "loop/loop.h"

#define MAX_WATCHING 64 /* loop threads watching one signal at once */
#define PASSED_ON 0x636c6f6f /* sigqueue value of a signal passed on: "cloo" */

/* ---- the process-wide registry ------------------------------------------

   Per signal, the threads of the loops that watch it. The handler reads
   the thread slots lock-free (it may run at any time, on any thread);
   everything else changes under the lock. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
  int loops;                       /* loops watching it */
  struct sigaction previous;       /* the action before ours */
  _Atomic unsigned long threads[MAX_WATCHING]; /* pthread_t, 0: free */
} registry[_NSIG];

/* Moves a signal that reached a thread not blocking it to a loop's. */
static void redirect(int signo) {
  int saved = errno;
  for (int i = 0; i < MAX_WATCHING; i++) {
    unsigned long t = atomic_load_explicit(&registry[signo].threads[i],
                                           memory_order_acquire);
    if (t) {
      pthread_kill((pthread_t)t, signo);
      break;
    }
  }
  errno = saved;
}

/* Adds this thread for signo; the first loop installs the handler. */
static int register_thread(int signo) {
  pthread_mutex_lock(&registry_lock);
  int slot = -1;
  for (int i = 0; i < MAX_WATCHING && slot < 0; i++)
    if (!atomic_load(&registry[signo].threads[i]))
      slot = i;
  if (slot < 0) {
    pthread_mutex_unlock(&registry_lock);
    return -EMFILE; /* more loops on one signal than this table holds */
  }
  if (registry[signo].loops == 0) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = redirect;
    sa.sa_flags = SA_RESTART;
    sigfillset(&sa.sa_mask);
    if (sigaction(signo, &sa, &registry[signo].previous) < 0) {
      int err = -errno;
      pthread_mutex_unlock(&registry_lock);
      return err;
    }
  }
  registry[signo].loops++;
  atomic_store_explicit(&registry[signo].threads[slot],
                        (unsigned long)pthread_self(), memory_order_release);
  pthread_mutex_unlock(&registry_lock);
  return 0;
}

static void unregister_thread(int signo) {
  pthread_mutex_lock(&registry_lock);
  unsigned long me = (unsigned long)pthread_self();
  for (int i = 0; i < MAX_WATCHING; i++)
    if (atomic_load(&registry[signo].threads[i]) == me) {
      atomic_store(&registry[signo].threads[i], 0);
      break;
    }
  if (--registry[signo].loops == 0)
    sigaction(signo, &registry[signo].previous, NULL);
  pthread_mutex_unlock(&registry_lock);
}

/* Passes a signal this loop read on to the other loops watching it. */
static void pass_on(int signo) {
  pthread_mutex_lock(&registry_lock);
  unsigned long me = (unsigned long)pthread_self();
  for (int i = 0; i < MAX_WATCHING; i++) {
    unsigned long t = atomic_load(&registry[signo].threads[i]);
    if (t && t != me)
      pthread_sigqueue((pthread_t)t, signo, (union sigval){.sival_int = PASSED_ON});
  }
  pthread_mutex_unlock(&registry_lock);
}

/* ---- a loop's signals ----------------------------------------------------- */

struct cloop__signals {
  int fd;                 /* the signalfd */
  cloop_watcher watcher;  /* on fd */
  sigset_t set;           /* the signals it reads */
  sigset_t blocked_by_us; /* those this thread did not block before */
  cloop_link watchers;    /* cloop_signal.node */
  int count[_NSIG];       /* watchers per signal */
};

static cloop_signal *signal_of(cloop_link *l) {
  return CLOOP__CONTAINER(l, cloop_signal, node);
}

/* The signalfd is readable: hand each arrival to its signal's watchers. */
static void on_signals(void *arg) {
  cloop_loop *loop = arg;
  struct cloop__signals *sg = loop->signals;
  struct signalfd_siginfo info[16];
  for (;;) {
    ssize_t n = read(sg->fd, info, sizeof info);
    if (n <= 0)
      break; /* EAGAIN: all read */
    for (size_t k = 0; k < (size_t)n / sizeof info[0]; k++) {
      int signo = (int)info[k].ssi_signo;
      int passed = info[k].ssi_code == SI_QUEUE &&
                   info[k].ssi_int == PASSED_ON &&
                   info[k].ssi_pid == (uint32_t)getpid();
      if (!passed)
        pass_on(signo);
      for (cloop_link *l = sg->watchers.next; l != &sg->watchers; l = l->next) {
        cloop_signal *s = signal_of(l);
        if (s->signo != signo)
          continue;
        s->count++;
        if (!s->handle.link.next)
          cloop_call_soon(loop, &s->handle);
      }
    }
  }
}

/* Makes the loop's signalfd read exactly sg->set. */
static int update_fd(struct cloop__signals *sg) {
  int fd = signalfd(sg->fd, &sg->set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0)
    return -errno;
  sg->fd = fd;
  return 0;
}

static int signals_open(cloop_loop *loop) {
  struct cloop__signals *sg = calloc(1, sizeof *sg);
  if (!sg)
    return -ENOMEM;
  sigemptyset(&sg->set);
  sigemptyset(&sg->blocked_by_us);
  list_init(&sg->watchers);
  sg->fd = -1;
  int r = update_fd(sg);
  if (r == 0)
    r = cloop_watch(loop, &sg->watcher, sg->fd, CLOOP_READABLE, on_signals, loop);
  if (r < 0) {
    if (sg->fd >= 0)
      close(sg->fd);
    free(sg);
    return r;
  }
  loop->signals = sg;
  return 0;
}

static void signals_close(cloop_loop *loop) {
  struct cloop__signals *sg = loop->signals;
  cloop_unwatch(loop, &sg->watcher);
  close(sg->fd);
  free(sg);
  loop->signals = NULL;
}

void cloop_signal_init(cloop_signal *s) {
  memset(s, 0, sizeof *s);
}

/* A watcher started without a callback only counts (a task waits on it,
   coro/signal_wait.c). */
static void count_only(void *arg) { (void)arg; }

unsigned cloop_signal_take(cloop_signal *s) {
  unsigned n = s->count;
  s->count = 0;
  return n;
}

void cloop__signals_discard(cloop_loop *loop) {
  while (loop->signals) {
    cloop_signal *s = signal_of(loop->signals->watchers.next);
    cloop_signal_stop(s);
  }
}

int cloop_signal_start(cloop_loop *loop, cloop_signal *s, int signo,
                       cloop_fn fn, void *arg) {
  CLOOP__CHECK(loop, "cloop_signal_start");
  if (s->loop)
    cloop__misuse("cloop_signal_start: watcher %p is already active", (void *)s);
  /* SIGKILL and SIGSTOP cannot be caught; SIGSEGV and kin are the
     program's own faults, not events (coro/stack.c owns SIGSEGV). */
  if (signo <= 0 || signo >= _NSIG || signo == SIGKILL || signo == SIGSTOP ||
      signo == SIGSEGV || signo == SIGBUS || signo == SIGILL || signo == SIGFPE)
    return -EINVAL;
  int r;
  if (!loop->signals && (r = signals_open(loop)) < 0)
    return r;
  struct cloop__signals *sg = loop->signals;
  if (sg->count[signo] == 0) {
    if ((r = register_thread(signo)) < 0)
      goto fail;
    sigset_t one, old;
    sigemptyset(&one);
    sigaddset(&one, signo);
    pthread_sigmask(SIG_BLOCK, &one, &old);
    if (!sigismember(&old, signo))
      sigaddset(&sg->blocked_by_us, signo);
    sigaddset(&sg->set, signo);
    if ((r = update_fd(sg)) < 0) {
      sigdelset(&sg->set, signo);
      if (sigismember(&sg->blocked_by_us, signo)) {
        sigdelset(&sg->blocked_by_us, signo);
        pthread_sigmask(SIG_UNBLOCK, &one, NULL);
      }
      unregister_thread(signo);
      goto fail;
    }
  }
  sg->count[signo]++;
  cloop_handle_init(&s->handle, fn ? fn : count_only, arg);
  s->loop = loop;
  s->signo = signo;
  s->count = 0;
  list_push(&sg->watchers, &s->node);
  return 0;
fail:
  if (list_empty(&sg->watchers))
    signals_close(loop);
  return r;
}

int cloop_signal_stop(cloop_signal *s) {
  cloop_loop *loop = s->loop;
  if (!loop)
    return 0;
  CLOOP__CHECK(loop, "cloop_signal_stop");
  struct cloop__signals *sg = loop->signals;
  list_remove(&s->node);
  if (s->handle.link.next)
    cloop_handle_cancel(loop, &s->handle);
  s->loop = NULL;
  int signo = s->signo;
  if (--sg->count[signo] == 0) {
    sigdelset(&sg->set, signo);
    update_fd(sg); /* shrinking a signalfd's set does not fail */
    unregister_thread(signo);
    if (sigismember(&sg->blocked_by_us, signo)) {
      /* Restore the mask; a signal still pending now meets its previous
         action, as it would have without us. */
      sigdelset(&sg->blocked_by_us, signo);
      sigset_t one;
      sigemptyset(&one);
      sigaddset(&one, signo);
      pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    }
  }
  if (list_empty(&sg->watchers))
    signals_close(loop);
  return 1;
}
