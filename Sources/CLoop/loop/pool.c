/* pool.c -- work off the loop: a bounded pool of threads that run blocking
 * functions and hand each result back to the loop that asked (asyncio's
 * run_in_executor, libuv's uv_queue_work).
 *
 * A request is a cloop_work in the caller's memory. cloop_queue_work puts it
 * on the pool's FIFO list and wakes one idle thread; the thread runs
 * work(w) without any loop lock held, then queues w's completion on the
 * loop with cloop_call_threadsafe, the one way in from another thread: the
 * loop runs done(w), on its own thread, in its next iteration. While a
 * request is outstanding the loop holds a reference (cloop_ref), so
 * cloop_run waits for it.
 *
 * Cancelling a request that no thread has taken takes it off the list
 * under the pool's lock: work never runs, and done runs with -ECANCELED
 * from the ready ring. A request that is running cannot be stopped (a
 * blocking call has no safe way out); its done still comes, with 0 -- unless
 * it is abandoned (cloop_work_abandon): then the loop forgets it at once,
 * done never runs, and the pool thread hands the request to a drop
 * function when the work returns. The coroutine level's offload, the name
 * resolver and the Swift layer give up waiting that way, so a blocking call
 * that hangs keeps neither a task nor the loop waiting.
 *
 * One process-wide pool serves every loop unless a loop is given its own
 * (cloop_loop_set_pool): threads are started lazily, up to its size, as
 * requests arrive, and stay for the process. Its size is
 * $CLOOP_POOL_THREADS, else 4 (libuv's default): enough for a few blocking
 * calls at once, few enough that a burst of slow ones queues instead of
 * spawning threads without bound. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "loop/list.h"
#include "loop/loop.h"

#define DEFAULT_THREADS 4
#define MAX_THREADS 1024

enum { WORK_IDLE = 0, WORK_QUEUED, WORK_RUNNING, WORK_DONE, WORK_ABANDONED };

struct cloop_pool {
  pthread_mutex_t lock;
  pthread_cond_t wake;    /* signalled when work is queued or the pool stops */
  pthread_cond_t drained; /* signalled when a thread exits (cloop_pool_free) */
  cloop_link queue;       /* cloop_work.node, oldest first */
  int size;               /* the most threads it may start */
  int threads;            /* started and not yet exited */
  int idle;               /* waiting for work */
  int stopping;
};

/* A pool thread moves a request QUEUED -> RUNNING -> DONE under the lock;
   the loop looks at the state once without it, to return early for IDLE
   or ABANDONED, which only the loop itself sets. Those stores and that
   load are relaxed atomics so the look is no data race (one plain mov on
   x86-64 and AArch64). */
#define STATE_SET(w, v) __atomic_store_n(&(w)->state, (v), __ATOMIC_RELAXED)
#define STATE_PEEK(w) __atomic_load_n(&(w)->state, __ATOMIC_RELAXED)

static cloop_work *work_of(cloop_link *l) {
  return CLOOP__CONTAINER(l, cloop_work, node);
}

/* The loop's completion of a request: done, once, on the loop's thread. */
static void work_complete(void *arg) {
  cloop_work *w = arg;
  cloop_loop *loop = w->loop;
  w->state = WORK_IDLE;
  cloop_unref(loop);
  w->done(w); /* done, or the drop function of an abandon that came late */
}

static void *worker(void *arg) {
  cloop_pool *p = arg;
  pthread_mutex_lock(&p->lock);
  for (;;) {
    while (list_empty(&p->queue) && !p->stopping) {
      p->idle++;
      pthread_cond_wait(&p->wake, &p->lock);
      p->idle--;
    }
    if (list_empty(&p->queue))
      break; /* stopping, and nothing left */
    cloop_work *w = work_of(list_pop(&p->queue));
    STATE_SET(w, WORK_RUNNING);
    pthread_mutex_unlock(&p->lock);
    w->work(w);
    pthread_mutex_lock(&p->lock);
    if (w->state == WORK_ABANDONED) {
      /* The loop has forgotten it (and may be gone): the request's memory
         is given back here, and the loop is never touched. */
      pthread_mutex_unlock(&p->lock);
      w->drop(w);
      pthread_mutex_lock(&p->lock);
      continue;
    }
    STATE_SET(w, WORK_DONE);
    w->result = 0;
    /* Last touch of w on this thread: from here it is the loop's. */
    cloop_call_threadsafe(w->loop, &w->handle);
  }
  p->threads--;
  pthread_cond_broadcast(&p->drained);
  pthread_mutex_unlock(&p->lock);
  return NULL;
}

int cloop_pool_new(cloop_pool **out, int threads) {
  if (threads < 0 || threads > MAX_THREADS)
    return -EINVAL;
  cloop_pool *p = calloc(1, sizeof *p);
  if (!p)
    return -ENOMEM;
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->wake, NULL);
  pthread_cond_init(&p->drained, NULL);
  list_init(&p->queue);
  p->size = threads ? threads : DEFAULT_THREADS;
  *out = p;
  return 0;
}

void cloop_pool_free(cloop_pool *p) {
  pthread_mutex_lock(&p->lock);
  if (!list_empty(&p->queue))
    cloop__misuse("cloop_pool_free with work still queued (cancel it first)");
  p->stopping = 1;
  pthread_cond_broadcast(&p->wake);
  while (p->threads > 0)
    pthread_cond_wait(&p->drained, &p->lock);
  pthread_mutex_unlock(&p->lock);
  pthread_mutex_destroy(&p->lock);
  pthread_cond_destroy(&p->wake);
  pthread_cond_destroy(&p->drained);
  free(p);
}

/* The process-wide pool, made on first use; never freed (its threads are
   idle in a condition wait when there is nothing to do). */
static cloop_pool *shared_pool;
static pthread_once_t shared_once = PTHREAD_ONCE_INIT;

static void make_shared(void) {
  int n = 0;
  const char *env = getenv("CLOOP_POOL_THREADS");
  if (env && *env) {
    char *end;
    long v = strtol(env, &end, 10);
    if (*end == 0 && v > 0 && v <= MAX_THREADS)
      n = (int)v;
  }
  if (cloop_pool_new(&shared_pool, n) < 0)
    shared_pool = NULL;
}

cloop_pool *cloop_pool_default(void) {
  pthread_once(&shared_once, make_shared);
  return shared_pool;
}

int cloop_pool_size(const cloop_pool *p) { return p->size; }

void cloop_loop_set_pool(cloop_loop *loop, cloop_pool *p) {
  CLOOP__CHECK(loop, "cloop_loop_set_pool");
  loop->pool = p;
}

int cloop_queue_work(cloop_loop *loop, cloop_work *w, cloop_work_fn work,
                     cloop_work_fn done, void *data) {
  CLOOP__CHECK(loop, "cloop_queue_work");
  if (!work || !done)
    return -EINVAL;
  if (w->state != WORK_IDLE || w->handle.link.next)
    cloop__misuse("cloop_work %p queued again before its done ran", (void *)w);
  cloop_pool *p = loop->pool ? loop->pool : cloop_pool_default();
  if (!p)
    return -ENOMEM;
  w->loop = loop;
  w->pool = p;
  w->work = work;
  w->done = done;
  w->data = data;
  w->result = 0;
  cloop_handle_init(&w->handle, work_complete, w);
  pthread_mutex_lock(&p->lock);
  if (p->idle == 0 && p->threads < p->size) {
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int err = pthread_create(&t, &attr, worker, p);
    pthread_attr_destroy(&attr);
    if (err == 0)
      p->threads++;
    else if (p->threads == 0) { /* nobody would ever run it */
      pthread_mutex_unlock(&p->lock);
      return -err;
    }
  }
  w->state = WORK_QUEUED;
  list_push(&p->queue, &w->node);
  pthread_cond_signal(&p->wake);
  pthread_mutex_unlock(&p->lock);
  cloop_ref(loop); /* its done is still to come */
  return 0;
}

int cloop_work_abandon(cloop_work *w, cloop_work_fn drop) {
  cloop_pool *p = w->pool;
  int peek = p ? STATE_PEEK(w) : WORK_IDLE;
  if (peek == WORK_IDLE || peek == WORK_ABANDONED)
    return 0;
  CLOOP__CHECK(w->loop, "cloop_work_abandon");
  if (!drop)
    cloop__misuse("cloop_work_abandon without a drop function");
  /* Read before the lock: once it is ABANDONED the pool thread may drop
     (free) w as soon as the lock is released. */
  cloop_loop *loop = w->loop;
  pthread_mutex_lock(&p->lock);
  int state = w->state;
  if (state == WORK_QUEUED)
    list_remove(&w->node);
  if (state == WORK_RUNNING) {
    w->drop = drop;
    w->state = WORK_ABANDONED;
  }
  pthread_mutex_unlock(&p->lock);
  if (state == WORK_DONE) {
    /* Finished: its completion is on the thread-safe ring or the ready
       ring, and must land, but for nobody. */
    w->done = drop;
    return 1;
  }
  cloop_unref(loop);
  if (state == WORK_QUEUED) {
    w->state = WORK_IDLE;
    drop(w); /* never ran: nothing else holds it */
  }
  return 1;
}

int cloop_work_cancel(cloop_work *w) {
  cloop_pool *p = w->pool;
  if (!p || STATE_PEEK(w) == WORK_IDLE)
    return 0;
  CLOOP__CHECK(w->loop, "cloop_work_cancel");
  pthread_mutex_lock(&p->lock);
  int queued = w->state == WORK_QUEUED;
  if (queued) {
    list_remove(&w->node);
    STATE_SET(w, WORK_DONE);
  }
  pthread_mutex_unlock(&p->lock);
  if (!queued)
    return 0; /* running, or done and on its way: done comes with 0 */
  w->result = -ECANCELED;
  cloop_call_soon(w->loop, &w->handle); /* done, from the ready ring */
  return 1;
}
