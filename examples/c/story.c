/* story.c -- the seeds' story ("asyncio from scratch") end to end, on
 * CLoop's coroutine level:
 *
 *   1. 1,000 tasks each sleep a random time under a second; together they
 *      sleep about 500 s, and finish in about one second of wall time;
 *   2. gather returns results in argument order, not completion order;
 *   3. plain threads finish "I/O" by completing futures through
 *      cloop_call_threadsafe (the seed's fake_io);
 *   4. an echo server and three clients over 127.0.0.1, all in tasks;
 *   5. a periodic background task ticks all along.
 *
 *   story [--backend epoll|uring|auto]
 *
 * Exits 0 when every part did what it says; the smoke test
 * (examples/c/test_story.py) checks the lines it prints. */
#include <cloop.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MS 1000000LL /* nanoseconds */
#define NSLEEPERS 1000
#define NFAKE_IO 8
#define NCLIENTS 3

/* WORKLOADS.md's generator: the same delays on every run. */
static uint64_t rng_state = 42;
static uint64_t next_random(void) {
  rng_state = rng_state * 6364136223846793005u + 1442695040888963407u;
  return rng_state >> 33;
}

static double seconds_since(uint64_t start_ns, cloop_loop *loop) {
  cloop_update_time(loop); /* cloop_now is cached per iteration */
  return (double)(cloop_now(loop) - start_ns) / 1e9;
}

static int failures;

static void check(int ok, const char *what) {
  if (!ok) {
    printf("  FAILED: %s\n", what);
    failures++;
  }
}

/* ---- 1. a thousand sleepers ------------------------------------------- */

/* asyncio.sleep: the task parks on its timer; the loop runs the others. */
static intptr_t sleeper(void *arg) {
  intptr_t ms = (intptr_t)arg;
  int r = cloop_sleep(ms * MS);
  return r < 0 ? r : ms;
}

static void thousand_sleepers(cloop_loop *loop) {
  cloop_task **tasks = malloc(NSLEEPERS * sizeof *tasks);
  cloop_future **futures = malloc(NSLEEPERS * sizeof *futures);
  intptr_t *slept = malloc(NSLEEPERS * sizeof *slept);
  if (!tasks || !futures || !slept) {
    check(0, "memory for the sleepers");
    goto out;
  }
  cloop_update_time(loop);
  uint64_t start = cloop_now(loop);
  int spawned = 0;
  for (; spawned < NSLEEPERS; spawned++) {
    intptr_t ms = (intptr_t)(next_random() % 1000);
    if (cloop_spawn(loop, &tasks[spawned], sleeper, (void *)ms, NULL) < 0)
      break;
    futures[spawned] = cloop_task_future(tasks[spawned]);
  }
  check(spawned == NSLEEPERS, "spawning the sleepers");
  int r = cloop_gather(futures, (size_t)spawned, slept);
  double wall = seconds_since(start, loop);
  double total = 0;
  for (int i = 0; i < spawned; i++) {
    total += (double)slept[i] / 1000;
    cloop_task_release(tasks[i]);
  }
  printf("1. %d tasks slept %.1f s in total in %.2f s of wall time\n",
         spawned, total, wall);
  check(r == 0, "gathering the sleepers");
out:
  free(tasks);
  free(futures);
  free(slept);
}

/* ---- 2. gather keeps argument order ----------------------------------- */

static char finish_order[6] = "     "; /* "b c a": letters, spaces */
static int nfinished;

static intptr_t named_worker(void *arg) {
  const char *name = arg;
  int r = cloop_sleep((name[0] == 'a' ? 30 : name[0] == 'b' ? 10 : 20) * MS);
  if (r < 0)
    return r;
  finish_order[2 * nfinished++] = name[0];
  return name[0]; /* the result: its letter */
}

static void gather_in_order(cloop_loop *loop) {
  static const char *names[3] = {"a", "b", "c"};
  cloop_task *t[3];
  cloop_future *f[3];
  for (int i = 0; i < 3; i++) {
    cloop_spawn(loop, &t[i], named_worker, (void *)names[i], names[i]);
    f[i] = cloop_task_future(t[i]);
  }
  intptr_t results[3];
  int r = cloop_gather(f, 3, results);
  for (int i = 0; i < 3; i++)
    cloop_task_release(t[i]);
  printf("2. gather: finished in order %.5s, results in argument order "
         "%c %c %c\n", finish_order, (char)results[0], (char)results[1],
         (char)results[2]);
  check(r == 0 && results[0] == 'a' && results[1] == 'b' && results[2] == 'c',
        "gather's order");
}

/* ---- 5. the periodic background task ------------------------------------ */

static int ticks;

/* Called by the periodic task every 250 ms; >= 0 keeps it going. */
static intptr_t tick(void *unused) {
  (void)unused;
  ticks++;
  return 0;
}

/* ---- 3. fake_io: threads completing futures ----------------------------- */

/* Only cloop_call_threadsafe may be called from another thread. So the
   thread queues a handle, and the handle's callback, on the loop's thread,
   completes the future that the task awaits. */
typedef struct fake_io {
  cloop_handle done;   /* queued by the thread */
  cloop_future result; /* awaited by the task */
  cloop_loop *loop;
  intptr_t ms;
} fake_io;

static void fake_io_done(void *arg) { /* on the loop's thread */
  fake_io *io = arg;
  cloop_unref(io->loop); /* taken in io_task: nothing more will come */
  cloop_future_set_result(&io->result, io->ms);
}

static void *fake_io_thread(void *arg) { /* a plain thread: blocking calls */
  fake_io *io = arg;
  struct timespec ts = {0, (long)(io->ms * MS)};
  nanosleep(&ts, NULL);
  cloop_call_threadsafe(io->loop, &io->done); /* its last touch of io */
  return NULL;
}

/* A task doing blocking "I/O" on a thread of its own. This one is never
   cancelled; one that can be must not free io while the thread may still
   queue its handle (net.c's name lookup shows how). */
static intptr_t io_task(void *unused) {
  (void)unused;
  cloop_loop *loop = cloop_task_loop(cloop_current_task());
  fake_io *io = malloc(sizeof *io);
  if (!io)
    return -ENOMEM;
  cloop_handle_init(&io->done, fake_io_done, io);
  cloop_future_init(&io->result, loop);
  io->loop = loop;
  io->ms = 10 + (intptr_t)(next_random() % 190);
  /* While only the thread can wake this task, the loop has nothing of its
     own to wait for: a reference keeps it running (cloop_main would
     otherwise report the task as stuck). */
  cloop_ref(loop);
  pthread_t thread;
  int err = pthread_create(&thread, NULL, fake_io_thread, io);
  if (err) {
    cloop_unref(loop);
    free(io);
    return -err;
  }
  pthread_detach(thread);
  intptr_t value;
  int r = cloop_await(&io->result, &value);
  free(io);
  return r < 0 ? r : value;
}

static void threads_complete_futures(cloop_loop *loop) {
  cloop_task *t[NFAKE_IO];
  cloop_future *f[NFAKE_IO];
  intptr_t results[NFAKE_IO];
  for (int i = 0; i < NFAKE_IO; i++) {
    cloop_spawn(loop, &t[i], io_task, NULL, "fake_io");
    f[i] = cloop_task_future(t[i]);
  }
  int r = cloop_gather(f, NFAKE_IO, results);
  intptr_t total = 0;
  for (int i = 0; i < NFAKE_IO; i++) {
    total += results[i];
    cloop_task_release(t[i]);
  }
  printf("3. fake_io: %d threads completed futures through "
         "cloop_call_threadsafe (%ld ms of blocking I/O in all)\n",
         NFAKE_IO, (long)total);
  check(r == 0, "fake_io");
}

/* ---- 4. an echo server and its clients ---------------------------------- */

/* One connection: echo each line back (the seeds' sock_recv with a
   delimiter, then sock_sendall). */
static intptr_t echo_connection(void *arg) {
  int fd = (int)(intptr_t)arg;
  char line[256];
  for (;;) {
    ssize_t n = cloop_sock_recv_until(fd, line, sizeof line, "\n", 1);
    if (n <= 0 || cloop_sock_sendall(fd, line, (size_t)n) < 0)
      break; /* EOF, an error, a line too long, or cancelled */
  }
  cloop_sock_close(fd);
  return 0;
}

static intptr_t echo_server(void *arg) {
  int lfd = (int)(intptr_t)arg;
  cloop_loop *loop = cloop_task_loop(cloop_current_task());
  for (;;) {
    int fd = cloop_sock_accept(lfd);
    if (fd == -EMFILE || fd == -ENFILE)
      continue; /* accept has paused 10 ms already */
    if (fd < 0)
      break; /* -ECANCELED: the story is over */
    if (cloop_spawn(loop, NULL, echo_connection, (void *)(intptr_t)fd,
                    "echo") < 0)
      cloop_sock_close(fd);
  }
  cloop_sock_close(lfd);
  return -ECANCELED; /* it ends cancelled, as it was */
}

static int server_port;

static intptr_t echo_client(void *arg) {
  int id = (int)(intptr_t)arg;
  int fd = cloop_tcp_connect("127.0.0.1", server_port);
  if (fd < 0)
    return fd;
  char msg[64], reply[64];
  int len = snprintf(msg, sizeof msg, "hello from client %d\n", id);
  ssize_t r = cloop_sock_sendall(fd, msg, (size_t)len);
  if (r >= 0)
    r = cloop_sock_recv_until(fd, reply, sizeof reply, "\n", 1);
  cloop_sock_close(fd);
  if (r < 0)
    return r;
  return r == len && memcmp(msg, reply, (size_t)len) == 0 ? len : -EPROTO;
}

static void echo_over_loopback(cloop_loop *loop) {
  int lfd = cloop_tcp_listen("127.0.0.1", 0, 16, 0); /* port 0: any free */
  if (lfd < 0) {
    check(0, "listening on 127.0.0.1");
    return;
  }
  server_port = cloop_sock_port(lfd);
  cloop_task *server, *clients[NCLIENTS];
  cloop_future *f[NCLIENTS];
  intptr_t results[NCLIENTS];
  cloop_spawn(loop, &server, echo_server, (void *)(intptr_t)lfd, "server");
  for (int i = 0; i < NCLIENTS; i++) {
    cloop_spawn(loop, &clients[i], echo_client, (void *)(intptr_t)(i + 1),
                "client");
    f[i] = cloop_task_future(clients[i]);
  }
  int r = cloop_gather(f, NCLIENTS, results);
  for (int i = 0; i < NCLIENTS; i++)
    cloop_task_release(clients[i]);
  cloop_task_cancel(server); /* its accept returns -ECANCELED */
  cloop_task_join(server);
  cloop_task_release(server);
  printf("4. echo: %d clients got their lines back from the server on "
         "127.0.0.1:%d%s%s\n", NCLIENTS, server_port, r ? ": " : "",
         r ? cloop_strerror(r) : "");
  check(r == 0, "echo over loopback");
}

/* ---- the main task: asyncio.run(main()) ----------------------------- */

static intptr_t main_task(void *unused) {
  (void)unused;
  cloop_loop *loop = cloop_task_loop(cloop_current_task());
  printf("story: a loop on %s, switching with %s\n",
         cloop_backend_name(cloop_loop_backend(loop)),
         cloop_switch_name(cloop_loop_switch(loop)));

  cloop_task *ticker;
  cloop_spawn_periodic(loop, &ticker, tick, NULL, 250 * MS, "ticker");

  thousand_sleepers(loop);
  gather_in_order(loop);
  threads_complete_futures(loop);
  echo_over_loopback(loop);

  cloop_task_cancel(ticker);
  cloop_task_join(ticker);
  cloop_task_release(ticker);
  printf("5. periodic: the background task ticked %d times meanwhile "
         "(every 250 ms)\n", ticks);
  check(ticks >= 3, "the periodic task ticking");

  if (failures)
    printf("story: %d part(s) FAILED\n", failures);
  else
    printf("story: done\n");
  return failures ? -EPROTO : 0;
}

int main(int argc, char **argv) {
  cloop_options opts;
  cloop_options_init(&opts);
  if (argc == 3 && strcmp(argv[1], "--backend") == 0) {
    if (strcmp(argv[2], "epoll") == 0)
      opts.backend = CLOOP_BACKEND_EPOLL;
    else if (strcmp(argv[2], "uring") == 0)
      opts.backend = CLOOP_BACKEND_URING;
    else if (strcmp(argv[2], "auto") != 0)
      argc = 0;
  }
  if (argc != 1 && argc != 3) {
    fprintf(stderr, "usage: story [--backend epoll|uring|auto]\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0); /* lines appear as they happen */
  intptr_t r = cloop_main(main_task, NULL, &opts);
  if (r < 0 && r != -EPROTO)
    fprintf(stderr, "story: %s\n", cloop_strerror((int)r));
  return r == 0 ? 0 : 1;
}
