/* process.c -- child processes (asyncio's create_subprocess_exec, libuv's
 * uv_spawn) once started (process_spawn.c): learning of the exit through a
 * pidfd, signals, and reaping, always.
 *
 * Exit. A pidfd (pidfd_open, Linux 5.3) becomes readable when the child
 * exits, on both backends, through an ordinary fd watcher; then waitid on
 * it reaps the child and records how it ended. A process whose owner lets
 * go before it exits (cloop_process_release) is still reaped: its watcher
 * stays, without keeping the loop alive, and if the loop closes first the
 * process passes to a reaper thread that waits for it. No zombie is left. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "loop/list.h"
#include "loop/loop.h"

#ifndef P_PIDFD
#define P_PIDFD 3 /* waitid on a pidfd, Linux 5.4 */
#endif

static void close_all(int *fds, int n) {
  for (int i = 0; i < n; i++)
    if (fds[i] >= 0) {
      close(fds[i]);
      fds[i] = -1;
    }
}

/* ---- exit --------------------------------------------------------------- */

static void exited(void *arg);

/* The exit watcher of every live child, which does not by itself keep the
   loop alive (a child nobody waits for is reaped when it exits, but the
   loop need not wait for that); cloop_process_watch counts. */
int cloop__process_watch_exit(cloop_loop *loop, cloop_process *p) {
  cloop_watcher_init(&p->watcher);
  int r = cloop_watch(loop, &p->watcher, p->pidfd, CLOOP_READABLE, exited, p);
  if (r == 0)
    cloop_unref(loop);
  return r;
}

static void unwatch_exit(cloop_loop *loop, cloop_process *p) {
  if (!p->watcher.loop)
    return;
  cloop_ref(loop); /* what cloop_unwatch takes back was never counted */
  cloop_unwatch(loop, &p->watcher);
  if (p->watching) {
    p->watching = 0;
    cloop_unref(loop);
  }
}

/* Reaps the child (it has exited: its pidfd is readable) and records how
   it ended. */
static void reap(cloop_process *p) {
  siginfo_t info;
  memset(&info, 0, sizeof info);
  while (waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &info, WEXITED) < 0 &&
         errno == EINTR)
    ;
  if (info.si_code == CLD_EXITED) {
    p->exit_code = info.si_status;
    p->term_signal = 0;
  } else {
    p->exit_code = -1;
    p->term_signal = info.si_status;
  }
  p->exited = 1;
}

static void exited(void *arg) {
  cloop_process *p = arg;
  cloop_loop *loop = p->loop;
  int watching = p->watching;
  unwatch_exit(loop, p);
  reap(p);
  close(p->pidfd);
  p->pidfd = -1;
  list_remove(&p->node);
  if (p->released) {
    free(p); /* the library's copy, see cloop_process_release */
    return;
  }
  if (watching && p->on_exit)
    p->on_exit(p);
}

int cloop_process_watch(cloop_process *p, cloop_process_fn on_exit, void *data) {
  cloop_loop *loop = p->loop;
  if (!loop || p->released)
    return -EINVAL;
  CLOOP__CHECK(loop, "cloop_process_watch");
  if (p->exited)
    return -ECHILD; /* reaped already: read exit_code / term_signal */
  if (p->watching)
    cloop__misuse("cloop_process_watch: process %d is watched already", p->pid);
  p->on_exit = on_exit;
  p->data = data;
  p->watching = 1;
  cloop_ref(loop); /* someone waits: the loop must not end before the exit */
  return 0;
}

int cloop_process_unwatch(cloop_process *p) {
  if (!p->loop || !p->watching)
    return 0;
  CLOOP__CHECK(p->loop, "cloop_process_unwatch");
  p->watching = 0;
  cloop_unref(p->loop);
  return 1;
}

int cloop_process_kill(cloop_process *p, int signo) {
  if (!p->loop || p->exited)
    return -ESRCH; /* reaped: its pid may be another's now */
  return pidfd_send_signal(p->pidfd, signo, NULL, 0) == 0 ? 0 : -errno;
}

/* ---- letting go ----------------------------------------------------------- */

int cloop_process_release(cloop_process *p) {
  cloop_loop *loop = p->loop;
  if (!loop)
    return 0;
  CLOOP__CHECK(loop, "cloop_process_release");
  close_all(p->stdio, 3);
  p->loop = NULL;
  if (p->exited)
    return 0;
  /* Still running: a copy in the library's memory goes on watching it, so
     that it is reaped when it exits. */
  unwatch_exit(loop, p);
  list_remove(&p->node);
  cloop_process *copy = malloc(sizeof *copy);
  if (copy) {
    *copy = *p;
    copy->released = 1;
    copy->on_exit = NULL;
    copy->loop = loop;
    list_push(&loop->processes, &copy->node);
    if (cloop__process_watch_exit(loop, copy) == 0) {
      p->pidfd = -1;
      return 1;
    }
    list_remove(&copy->node);
    free(copy);
  }
  /* No memory to wait politely: end it now, so no zombie stays. */
  pidfd_send_signal(p->pidfd, SIGKILL, NULL, 0);
  waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &(siginfo_t){0}, WEXITED);
  close(p->pidfd);
  p->pidfd = -1;
  return -ENOMEM;
}

/* The reaper thread: waits for the children a closing loop left behind;
   one process-wide thread at most, started when first needed, gone when
   it has none. */
#define MAX_ORPHANS 1024
static pthread_mutex_t reaper_lock = PTHREAD_MUTEX_INITIALIZER;
static int reaper_running;
static int orphan_fds[MAX_ORPHANS];
static int norphans;

static void *reaper(void *arg) {
  (void)arg;
  static struct pollfd fds[MAX_ORPHANS]; /* only this thread uses it */
  pthread_mutex_lock(&reaper_lock);
  while (norphans > 0) {
    int n = norphans;
    for (int i = 0; i < n; i++)
      fds[i] = (struct pollfd){.fd = orphan_fds[i], .events = POLLIN};
    pthread_mutex_unlock(&reaper_lock);
    poll(fds, (nfds_t)n, 1000); /* and a look for new orphans each second */
    pthread_mutex_lock(&reaper_lock);
    for (int i = 0; i < n; i++) {
      if (!(fds[i].revents & POLLIN))
        continue;
      waitid((idtype_t)P_PIDFD, (id_t)fds[i].fd, &(siginfo_t){0}, WEXITED);
      close(fds[i].fd);
      for (int k = 0; k < norphans; k++)
        if (orphan_fds[k] == fds[i].fd) {
          orphan_fds[k] = orphan_fds[--norphans];
          break;
        }
    }
  }
  reaper_running = 0;
  pthread_mutex_unlock(&reaper_lock);
  return NULL;
}

/* Gives a child's pidfd to the reaper thread. */
static void to_reaper(int pidfd) {
  pthread_mutex_lock(&reaper_lock);
  if (norphans == MAX_ORPHANS) {
    pthread_mutex_unlock(&reaper_lock);
    waitid((idtype_t)P_PIDFD, (id_t)pidfd, &(siginfo_t){0}, WEXITED); /* block */
    close(pidfd);
    return;
  }
  orphan_fds[norphans++] = pidfd;
  if (!reaper_running) {
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, reaper, NULL) == 0)
      reaper_running = 1;
    pthread_attr_destroy(&attr);
  }
  pthread_mutex_unlock(&reaper_lock);
}

void cloop__processes_discard(cloop_loop *loop) {
  while (!list_empty(&loop->processes)) {
    cloop_process *p = CLOOP__CONTAINER(loop->processes.next, cloop_process, node);
    unwatch_exit(loop, p);
    list_remove(&p->node);
    to_reaper(p->pidfd);
    p->pidfd = -1;
    if (p->released) {
      free(p);
    } else {
      close_all(p->stdio, 3); /* the owner's handle: its loop is gone */
      p->loop = NULL;
    }
  }
}
