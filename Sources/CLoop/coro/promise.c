/* promise.c -- a future any thread may complete (cloop_promise), and a
 * task spawned on another loop whose result comes back as one
 * (cloop_spawn_remote).
 *
 * The completion is a handle of the promise, queued on its loop with
 * cloop_call_threadsafe; the loop completes the future, so whatever awaits
 * it resumes on its own thread. Two references (owner, completer) and
 * three bits decide who frees it and who drops the reference it holds on
 * its loop, with no lock:
 *   OWNER   the owner has not released it;
 *   CLAIMED a completer has taken it (the once of set_result/set_error);
 *   POSTED  the completer went on to post, or found the owner gone.
 * The completer sets POSTED and posts only if OWNER was still set; the
 * owner clears OWNER and drops the loop reference only if POSTED was not
 * yet set -- otherwise the posted handle drops it when it lands. So the
 * handle is posted only to a loop kept alive for it. */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "coro/task.h"

enum { OWNER = 1, CLAIMED = 2, POSTED = 4 };

struct cloop_promise {
  cloop_future future;   /* of `loop`; on the heap, so it never moves */
  cloop_loop *loop;
  cloop_handle land;     /* the completion, posted to loop */
  intptr_t value;
  int error;             /* < 0: complete with it */
  _Atomic int state;
  _Atomic int refs;
  /* cloop_spawn_remote's part, used on the target loop only: */
  cloop_loop *target;
  cloop_handle start;    /* posted to target: spawns the task */
  cloop_task_fn fn;
  void *arg;
  char name[32];
};

static void unref_promise(cloop_promise *p) {
  if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
    free(p);
}

/* On the promise's loop: the completion lands. */
static void on_land(void *arg) {
  cloop_promise *p = arg;
  if (atomic_load_explicit(&p->state, memory_order_acquire) & OWNER) {
    if (p->error == 0)
      cloop__future_complete(&p->future, CLOOP_DONE, p->value, 0);
    else if (p->error == -ECANCELED)
      cloop__future_complete(&p->future, CLOOP_CANCELLED, 0, -ECANCELED);
    else
      cloop__future_complete(&p->future, CLOOP_FAILED, 0, p->error);
  }
  cloop_unref(p->loop);
  unref_promise(p);
}

int cloop_promise_new(cloop_loop *loop, cloop_promise **out) {
  CLOOP__CHECK(loop, "cloop_promise_new");
  cloop_promise *p = calloc(1, sizeof *p);
  if (!p)
    return -ENOMEM;
  cloop_future_init(&p->future, loop);
  p->loop = loop;
  cloop_handle_init(&p->land, on_land, p);
  atomic_init(&p->state, OWNER);
  atomic_init(&p->refs, 2);
  cloop_ref(loop); /* until it lands, or the owner releases it unposted */
  *out = p;
  return 0;
}

cloop_future *cloop_promise_future(cloop_promise *p) { return &p->future; }

static int complete(cloop_promise *p, intptr_t value, int err) {
  int old = atomic_fetch_or_explicit(&p->state, CLAIMED, memory_order_acq_rel);
  if (old & CLAIMED)
    return -EALREADY;
  p->value = value;
  p->error = err;
  /* Release: the value and error are written before the loop reads them
     (the thread-safe queue's lock orders them too). */
  old = atomic_fetch_or_explicit(&p->state, POSTED, memory_order_acq_rel);
  if (old & OWNER)
    cloop_call_threadsafe(p->loop, &p->land); /* the completer's ref goes with it */
  else
    unref_promise(p); /* released already: nobody waits, the loop is let go */
  return 0;
}

int cloop_promise_set_result(cloop_promise *p, intptr_t value) {
  return complete(p, value, 0);
}

int cloop_promise_set_error(cloop_promise *p, int err) {
  if (err >= 0)
    cloop__misuse("cloop_promise_set_error with %d: an error is < 0", err);
  return complete(p, 0, err);
}

void cloop_promise_release(cloop_promise *p) {
  CLOOP__CHECK(p->loop, "cloop_promise_release");
  if (!list_empty(&p->future.waiters))
    cloop__misuse("cloop_promise_release while something awaits its future");
  int old = atomic_fetch_and_explicit(&p->state, ~OWNER, memory_order_acq_rel);
  if (!(old & OWNER))
    cloop__misuse("cloop_promise_release called twice on promise %p", (void *)p);
  if (!(old & POSTED))
    cloop_unref(p->loop); /* no completion will come to this loop */
  unref_promise(p);
}

/* ---- cloop_spawn_remote ------------------------------------------------ */

/* The remote task's body, on target: fn, then its result goes home from
   inside the task (a done callback could run after cloop_loop_free's
   closing has freed the task). It runs even if cancelled before its first
   step (always_run), so the promise is always completed; fn then meets the
   cancellation at its first await. */
static intptr_t remote_entry(void *arg) {
  cloop_promise *p = arg;
  intptr_t r = p->fn(p->arg);
  /* Whether the owner will read it: if not, a failure stays the task's, and
     target reports it as unretrieved at its close. */
  int owned = atomic_load_explicit(&p->state, memory_order_acquire) & OWNER;
  complete(p, r >= 0 ? r : 0, r >= 0 ? 0 : (r >= INT32_MIN ? (int)r : -EINVAL));
  return owned && r < 0 && r != -ECANCELED ? 0 : r;
}

/* On target: spawns the task, unless target is closing. */
static void on_start(void *arg) {
  cloop_promise *p = arg;
  cloop_loop *target = p->target;
  cloop_task *t;
  int r = target->coro->closing
              ? -ECANCELED
              : cloop_spawn(target, &t, remote_entry, p, p->name[0] ? p->name : NULL);
  if (r < 0) {
    complete(p, 0, r);
    return;
  }
  t->always_run = 1;
  cloop_task_release(t); /* detached: it ends on its own */
}

int cloop_spawn_remote(cloop_loop *home, cloop_loop *target, cloop_promise **out,
                       cloop_task_fn fn, void *arg, const char *name) {
  cloop_promise *p;
  int r = cloop_promise_new(home, &p); /* checks the thread */
  if (r < 0)
    return r;
  p->target = target;
  p->fn = fn;
  p->arg = arg;
  if (name) {
    size_t len = strnlen(name, sizeof p->name - 1);
    memcpy(p->name, name, len);
    p->name[len] = 0;
  }
  cloop_handle_init(&p->start, on_start, p);
  *out = p;
  cloop_call_threadsafe(target, &p->start);
  return 0;
}
