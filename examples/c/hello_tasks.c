/* hello_tasks.c -- CLoop's coroutine level in one page: tasks that sleep,
 * gather in argument order, a deadline scope and a cancellation.
 *
 *   cmake -S . -B build && cmake --build build && build/examples/hello-tasks
 */
#include <cloop.h>
#include <errno.h>
#include <stdio.h>

#define MS 1000000LL /* nanoseconds */

static intptr_t worker(void *arg) {
  intptr_t ms = (intptr_t)arg;
  int r = cloop_sleep(ms * MS); /* parks this task; the loop runs others */
  if (r < 0)
    return r; /* -ECANCELED or -ETIMEDOUT: unwind */
  printf("  worker slept %3ld ms\n", (long)ms);
  return ms * 10;
}

static intptr_t main_task(void *unused) {
  (void)unused;
  cloop_loop *loop = cloop_task_loop(cloop_current_task());

  puts("gather: three workers, results in argument order");
  cloop_task *t[3];
  intptr_t delays[3] = {30, 10, 20}, results[3];
  cloop_future *futures[3];
  for (int i = 0; i < 3; i++) {
    cloop_spawn(loop, &t[i], worker, (void *)delays[i], NULL);
    futures[i] = cloop_task_future(t[i]);
  }
  int r = cloop_gather(futures, 3, results);
  printf("  gather -> %d: %ld %ld %ld\n", r, (long)results[0],
         (long)results[1], (long)results[2]);
  for (int i = 0; i < 3; i++)
    cloop_task_release(t[i]);

  puts("a deadline scope of 15 ms around a 100 ms sleep");
  cloop_deadline d;
  cloop_deadline_enter(&d, 15 * MS);
  r = cloop_sleep(100 * MS);
  printf("  sleep -> %s, scope -> %s\n", cloop_strerror(r),
         cloop_strerror(cloop_deadline_exit(&d)));

  puts("cancelling a worker parked in a 1 s sleep");
  cloop_task *slow;
  cloop_spawn(loop, &slow, worker, (void *)1000, "slow");
  cloop_sleep(0); /* let it start and park */
  cloop_task_cancel(slow);
  printf("  join -> %s\n", cloop_strerror((int)cloop_task_join(slow)));
  cloop_task_release(slow);
  return 0;
}

int main(void) {
  intptr_t r = cloop_main(main_task, NULL, NULL);
  return r == 0 ? 0 : 1;
}
