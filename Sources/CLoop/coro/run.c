/* run.c -- asyncio.run (cloop_main) and periodic tasks, on top of tasks.
 * (Not main.c: SwiftPM would take a target holding one for a program.) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "coro/task.h"

typedef struct periodic {
  cloop_task_fn fn;
  void *arg;
  int64_t interval;
} periodic;

static intptr_t periodic_body(void *arg) {
  periodic p = *(periodic *)arg;
  free(arg);
  cloop_loop *loop = cloop__running_task()->loop;
  uint64_t next = cloop_now(loop) + (uint64_t)p.interval;
  for (;;) {
    int r = cloop_sleep_until(next);
    if (r < 0)
      return r;
    intptr_t v = p.fn(p.arg);
    if (v < 0)
      return v;
    /* Fixed rate: the next tick counts from this one's due time; ticks
       missed while a call overran are skipped, not bunched. The clock is
       read afresh: the cached time is from before the call. */
    cloop_update_time(loop);
    uint64_t now = cloop_now(loop);
    next += (uint64_t)p.interval;
    if (next <= now)
      next += ((now - next) / (uint64_t)p.interval + 1) * (uint64_t)p.interval;
  }
}

int cloop_spawn_periodic(cloop_loop *loop, cloop_task **out, cloop_task_fn fn,
                         void *arg, int64_t interval_ns, const char *name) {
  if (interval_ns <= 0)
    return -EINVAL;
  periodic *p = malloc(sizeof *p);
  if (!p)
    return -ENOMEM;
  *p = (periodic){fn, arg, interval_ns};
  cloop_task *t;
  int r = cloop_spawn(loop, &t, periodic_body, p, name);
  if (r < 0) {
    free(p);
    return r;
  }
  /* Its body frees p, so it must run even if cancelled before starting:
     then its first sleep returns -ECANCELED. */
  t->always_run = 1;
  if (out)
    *out = t;
  else
    cloop_task_release(t);
  return 0;
}

intptr_t cloop_main(cloop_task_fn fn, void *arg, const cloop_options *opts) {
  cloop_loop *loop;
  int r = cloop_loop_new(&loop, opts);
  if (r < 0)
    return r;
  cloop_task *main_task;
  r = cloop_spawn(loop, &main_task, fn, arg, "main");
  if (r < 0) {
    cloop_loop_free(loop);
    return r;
  }
  while (!main_task->finished) {
    r = cloop_run_once(loop, -1);
    if (r <= 0 && !main_task->finished) {
      /* Nothing can wake main: report it rather than hang. */
      fprintf(stderr, "cloop: main task is parked with nothing left that "
                      "could wake it\n");
      r = r < 0 ? r : -EDEADLK;
      break;
    }
  }
  intptr_t value = 0;
  if (r >= 0) {
    int err = cloop__outcome(&main_task->future, &value);
    value = err ? err : value;
  } else {
    value = r;
  }
  cloop_task_release(main_task);
  /* asyncio.run's ending: cancel the other tasks and let them unwind,
     then drop whatever callbacks are left. */
  cloop__coro_close(loop, 0);
  cloop__loop_discard(loop);
  cloop_loop_free(loop);
  return value;
}
