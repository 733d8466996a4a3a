/* threadsafe.c -- asyncio's call_soon_threadsafe: the one entry from other
 * threads.
 *
 * Other threads append to a mutex-protected ring; the loop moves it onto
 * the ready ring once per iteration. Only the call that finds the ring
 * empty wakes the poller, so a burst of calls costs one wake-up (one
 * eventfd write) rather than one each. */
#include "loop/loop.h"
#include "loop/list.h"

void cloop_call_threadsafe(cloop_loop *loop, cloop_handle *h) {
  pthread_mutex_lock(&loop->ts_lock);
  if (h->link.next) {
    pthread_mutex_unlock(&loop->ts_lock);
    cloop__misuse("cloop_call_threadsafe: handle %p is already queued",
                  (void *)h);
  }
  int first = list_empty(&loop->ts_ring);
  list_push(&loop->ts_ring, &h->link);
  if (first) {
    atomic_store_explicit(&loop->ts_pending, 1, memory_order_release);
    /* Woken under the lock, so that once the loop has run this handle
       (and its owner may free the loop) this thread no longer touches it. */
    loop->ops->wake(loop);
  }
  pthread_mutex_unlock(&loop->ts_lock);
}

/* Loop thread: moves the calls that arrived onto the ready ring. */
void cloop__drain_threadsafe(cloop_loop *loop) {
  pthread_mutex_lock(&loop->ts_lock);
  list_splice(&loop->ready, &loop->ts_ring);
  atomic_store_explicit(&loop->ts_pending, 0, memory_order_relaxed);
  pthread_mutex_unlock(&loop->ts_lock);
}
