/* group.c -- N loops on N threads (cloop_group): start, round-robin, and
 * the graceful stop.
 *
 * Each thread creates its loop (a loop belongs to the thread that created
 * it), holds a reference on it so cloop_run does not return for lack of
 * work, and runs it. Nothing is shared between the loops but what crosses
 * their thread-safe calls; the group's own state is touched at start and
 * stop only (and by cloop_group_next's one atomic counter).
 *
 * Stop, per loop, on its own thread (asyncio.run's ending, stretched over
 * a drain deadline):
 *   1. the stop handle (through the thread-safe call) closes the group's
 *      listeners of this loop, runs on_stop, drops the group's reference
 *      and stops cloop_run;
 *   2. drain: run until nothing is left or the deadline passes;
 *   3. close: cancel what is alive and run until it has unwound, report
 *      unretrieved failures, free the tasks (cloop__coro_close), then let
 *      the replies still owed to this loop land (each holds a reference);
 *   4. barrier: wait until every loop has closed, still running this one
 *      (1 ms polls), since another loop's late message may need it -- a
 *      remote spawn answered -ECANCELED, a connection handed over;
 *   5. free the loop.
 * No message can be in flight when all have passed 3: each one is owed to
 * a loop that holds a reference for it, and that loop would not have
 * passed 3. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loop/group.h"

#define MAX_LOOPS 1024
#define MS 1000000ull
/* Step 3's bound on waiting for replies owed to a loop: past it the loop
   is freed anyway (and cloop_loop_free says -EBUSY if they still hold it). */
#define CLOSE_GRACE_NS (2000 * MS)

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void cloop_group_options_init(cloop_group_options *opts) {
  memset(opts, 0, sizeof *opts);
  cloop_options_init(&opts->loop);
}

/* The CPUs of the affinity mask, in order, into cpus (up to max). */
static int affinity_cpus(int *cpus, int max) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) < 0)
    return 0;
  int n = 0;
  for (int c = 0; c < CPU_SETSIZE && n < max; c++)
    if (CPU_ISSET(c, &set))
      cpus[n++] = c;
  return n;
}

int cloop_group_default_size(void) {
  int cpus[MAX_LOOPS];
  int n = affinity_cpus(cpus, MAX_LOOPS);
  return n > 0 ? n : 1;
}

/* 1: the stop handle: runs on the loop, first in its batch. */
static void on_stop_handle(void *arg) {
  cloop__group_slot *s = arg;
  cloop_group *g = s->g;
  s->phase = PHASE_DRAINING;
  cloop__group_listeners_close(s);
  if (g->opts.on_stop)
    g->opts.on_stop(s->loop, s->index, g->opts.arg);
  cloop_unref(s->loop);
  cloop_stop(s->loop);
}

static void *loop_thread(void *arg) {
  cloop__group_slot *s = arg;
  cloop_group *g = s->g;
  if (s->cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(s->cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set); /* best effort */
  }
  cloop_loop *loop = NULL;
  int r = cloop_loop_new(&loop, &g->opts.loop);
  pthread_mutex_lock(&g->lock);
  s->loop = r < 0 ? NULL : loop;
  if (r < 0 && g->start_error == 0)
    g->start_error = r;
  g->started++;
  pthread_cond_broadcast(&g->cond);
  while (g->go == 0) /* until every loop exists, or one failed */
    pthread_cond_wait(&g->cond, &g->lock);
  int go = g->go;
  pthread_mutex_unlock(&g->lock);
  if (!loop)
    return NULL;
  if (go < 0) { /* another loop failed to start */
    cloop_loop_free(loop);
    return NULL;
  }
  cloop_ref(loop); /* the group's: dropped by the stop handle */
  if (g->opts.on_start)
    g->opts.on_start(loop, s->index, g->opts.arg);
  while (s->phase == PHASE_RUNNING && cloop_run(loop) > 0) {
    /* cloop_run returned for a cloop_stop of the user's: go on */
  }
  /* 2. drain */
  for (uint64_t now; (now = mono_ns()) < g->drain_until;)
    if (cloop_run_once(loop, (int64_t)(g->drain_until - now)) <= 0)
      break;
  /* 3. close */
  s->phase = PHASE_CLOSING;
  cloop__coro_close(loop, 0);
  for (uint64_t until = mono_ns() + CLOSE_GRACE_NS; mono_ns() < until;)
    if (cloop_run_once(loop, (int64_t)(10 * MS)) <= 0)
      break;
  /* 4. barrier */
  atomic_fetch_add(&g->arrived, 1);
  cloop_ref(loop); /* so that run_once polls (and blocks) instead of returning */
  while (atomic_load(&g->arrived) < g->n)
    cloop_run_once(loop, (int64_t)MS);
  cloop_unref(loop);
  /* 5. free: a message sent just before its sender arrived may still be
     queued; run it first. */
  int tries = 0;
  while ((r = cloop_loop_free(loop)) == -EBUSY && tries++ < 100)
    cloop_run_once(loop, (int64_t)MS);
  s->free_result = r;
  return NULL;
}

static void group_free(cloop_group *g) {
  cloop__group_listeners_free(g);
  pthread_mutex_destroy(&g->lock);
  pthread_mutex_destroy(&g->listen_lock);
  pthread_cond_destroy(&g->cond);
  free(g->slots);
  free(g);
}

int cloop_group_start(cloop_group **out, const cloop_group_options *opts) {
  cloop_group_options o;
  if (opts)
    o = *opts;
  else
    cloop_group_options_init(&o);
  if (o.loops < 0 || o.loops > MAX_LOOPS)
    return -EINVAL;
  int cpus[MAX_LOOPS];
  int ncpu = affinity_cpus(cpus, MAX_LOOPS);
  int n = o.loops ? o.loops : (ncpu > 0 ? ncpu : 1);
  cloop_group *g = calloc(1, sizeof *g);
  if (!g)
    return -ENOMEM;
  g->slots = aligned_alloc(128, sizeof(cloop__group_slot) * (size_t)n);
  if (!g->slots) {
    free(g);
    return -ENOMEM;
  }
  memset(g->slots, 0, sizeof(cloop__group_slot) * (size_t)n);
  g->n = n;
  g->opts = o;
  pthread_mutex_init(&g->lock, NULL);
  pthread_mutex_init(&g->listen_lock, NULL);
  pthread_cond_init(&g->cond, NULL);
  int made = 0, err = 0;
  for (; made < n; made++) {
    cloop__group_slot *s = &g->slots[made];
    s->g = g;
    s->index = made;
    s->cpu = o.pin && ncpu > 0 ? cpus[made % ncpu] : -1;
    cloop_handle_init(&s->stop, on_stop_handle, s); /* before any thread sees it */
    err = -pthread_create(&s->thread, NULL, loop_thread, s);
    if (err < 0)
      break;
  }
  pthread_mutex_lock(&g->lock);
  while (g->started < made)
    pthread_cond_wait(&g->cond, &g->lock);
  if (err == 0)
    err = g->start_error;
  g->go = err < 0 ? -1 : 1;
  pthread_cond_broadcast(&g->cond);
  pthread_mutex_unlock(&g->lock);
  if (err < 0) {
    for (int i = 0; i < made; i++)
      pthread_join(g->slots[i].thread, NULL);
    group_free(g);
    return err;
  }
  *out = g;
  return 0;
}

int cloop_group_size(const cloop_group *g) { return g->n; }

cloop_loop *cloop_group_loop(const cloop_group *g, int i) {
  if (i < 0 || i >= g->n)
    cloop__misuse("cloop_group_loop: index %d of a group of %d loops", i, g->n);
  return g->slots[i].loop;
}

cloop_loop *cloop_group_next(cloop_group *g) {
  unsigned i = atomic_fetch_add_explicit(&g->next, 1, memory_order_relaxed);
  return g->slots[i % (unsigned)g->n].loop;
}

int cloop_group_index(const cloop_group *g, const cloop_loop *loop) {
  for (int i = 0; i < g->n; i++)
    if (g->slots[i].loop == loop)
      return i;
  return -1;
}

int cloop_group_stop(cloop_group *g, int64_t drain_ns) {
  for (int i = 0; i < g->n; i++)
    if (cloop_loop_is_owner(g->slots[i].loop))
      cloop__misuse("cloop_group_stop called from the thread of the group's "
                    "loop %d (it would wait for itself)", i);
  g->drain_until = mono_ns() + (uint64_t)(drain_ns > 0 ? drain_ns : 0);
  for (int i = 0; i < g->n; i++)
    cloop_call_threadsafe(g->slots[i].loop, &g->slots[i].stop);
  int r = 0;
  for (int i = 0; i < g->n; i++) {
    pthread_join(g->slots[i].thread, NULL);
    if (g->slots[i].free_result < 0 && r == 0)
      r = g->slots[i].free_result;
  }
  group_free(g);
  return r;
}

uint64_t cloop_group_accepted(const cloop_group *g, int i) {
  if (i < 0 || i >= g->n)
    cloop__misuse("cloop_group_accepted: index %d of a group of %d loops", i, g->n);
  return atomic_load_explicit(&g->slots[i].accepted, memory_order_relaxed);
}
