/* test_group.c -- a group of loops (cloop_group): connections spread over
 * the loops, work spawned on another loop and awaited, promises completed
 * from other threads and loops, a thousand connections leaving nothing
 * behind, the graceful stop, and misuse from the wrong thread. Each runs
 * with two loops (also on a one-CPU machine) on both backends, and under
 * TSan. The clients are plain blocking sockets on the test's own thread. */
#include "test.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <malloc.h>
#include <sched.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>

#define MS 1000000LL

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif

/* ---- helpers ------------------------------------------------------------ */

/* Starts a group of `loops` loops on backend, or skips when the backend is
   missing here. */
#define GROUP_START(g, loops_, backend_, on_start_, on_stop_, arg_)          \
  do {                                                                       \
    cloop_group_options go__;                                                \
    cloop_group_options_init(&go__);                                         \
    go__.loops = (loops_);                                                   \
    go__.loop.backend = (backend_);                                          \
    go__.on_start = (on_start_);                                             \
    go__.on_stop = (on_stop_);                                               \
    go__.arg = (arg_);                                                       \
    int r__ = cloop_group_start(&(g), &go__);                                \
    if (r__ == CLOOP_ENOBACKEND)                                             \
      SKIP("backend %s not available", cloop_backend_name(backend_));        \
    ASSERT_EQ(r__, 0);                                                       \
  } while (0)

static int count_dir(const char *path) {
  DIR *d = opendir(path);
  ASSERT(d != NULL);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n;
}
static int count_fds(void) { return count_dir("/proc/self/fd") - 1; }
static int count_threads(void) { return count_dir("/proc/self/task"); }

/* The thread count once it is down to at most n, or after 2 s. A joined
   thread can linger in /proc/self/task a moment (seen under qemu-user). */
static int threads_down_to(int n) {
  for (int i = 0; i < 200 && count_threads() > n; i++)
    usleep(10000);
  return count_threads();
}

/* Every arena's bytes in use (mallinfo2 sums them all); 0 under the
   sanitizers, whose allocators are their own (LSan checks leaks there). */
static size_t heap_in_use(void) {
#ifdef SANITIZED
  return 0;
#else
  return mallinfo2().uordblks;
#endif
}

static int dial(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  return fd;
}

/* One byte there and back on a blocking client socket. */
static void ping(int fd) {
  char c = 'x';
  ASSERT_EQ(send(fd, &c, 1, MSG_NOSIGNAL), 1);
  ASSERT_EQ(recv(fd, &c, 1, MSG_WAITALL), 1);
  ASSERT_EQ(c, 'x');
}

/* The server side: a task per connection echoing until EOF. Counts what
   ended, and on which thread each ran. */
static _Atomic int conns_served, conns_ended;

static intptr_t echo_task(void *arg) {
  int fd = (int)(intptr_t)arg;
  char buf[256];
  ssize_t n;
  atomic_fetch_add(&conns_served, 1);
  while ((n = cloop_sock_recv(fd, buf, sizeof buf)) > 0)
    if (cloop_sock_sendall(fd, buf, (size_t)n) < 0)
      break;
  cloop_sock_close(fd);
  atomic_fetch_add(&conns_ended, 1);
  return 0;
}

static void on_conn(cloop_loop *loop, int fd, void *arg) {
  (void)arg;
  if (cloop_spawn_ex(loop, NULL, echo_task, (void *)(intptr_t)fd,
                     &(cloop_spawn_options){"echo", CLOOP_STACK_SHARED}) < 0)
    close(fd);
}

/* ---- connections spread over the loops ---------------------------------- */

#define SPREAD_CONNS 200

static int spread_body(cloop_backend backend, int flags) {
  atomic_store(&conns_served, 0);
  atomic_store(&conns_ended, 0);
  cloop_group *g;
  GROUP_START(g, 2, backend, NULL, NULL, NULL);
  int port = cloop_group_listen(g, "127.0.0.1", 0, 256, flags, on_conn, NULL);
  ASSERT_GT(port, 0);
  for (int i = 0; i < SPREAD_CONNS; i++) {
    int fd = dial(port);
    ping(fd);
    close(fd);
  }
  uint64_t a = cloop_group_accepted(g, 0), b = cloop_group_accepted(g, 1);
  printf("connections per loop: %llu %llu\n", (unsigned long long)a,
         (unsigned long long)b);
  ASSERT_EQ(a + b, SPREAD_CONNS);
  if (flags & CLOOP_GROUP_ACCEPTOR) { /* round-robin, exactly */
    ASSERT_EQ(a, SPREAD_CONNS / 2);
    ASSERT_EQ(b, SPREAD_CONNS / 2);
  } else { /* the kernel's hash of each 4-tuple: all on one is 2^-199 */
    ASSERT_GT(a, 0);
    ASSERT_GT(b, 0);
  }
  ASSERT_EQ(cloop_group_stop(g, 1000 * MS), 0);
  ASSERT_EQ(atomic_load(&conns_ended), SPREAD_CONNS);
  return 0;
}

TEST_IMPL_POLL(group_connections_spread_reuseport) { return spread_body(backend, 0); }
TEST_IMPL_POLL(group_connections_spread_acceptor) {
  return spread_body(backend, CLOOP_GROUP_ACCEPTOR);
}

/* ---- a task on loop A awaiting work spawned on loop B ------------------- */

typedef struct {
  cloop_group *g;
  pthread_t thread_b;
  _Atomic int ran_on_b;
  _Atomic int done;
  intptr_t result;
} cross;

static intptr_t work_on_b(void *arg) {
  cross *c = arg;
  /* it runs on B's thread, as a task of B */
  if (cloop_running_loop() == cloop_group_loop(c->g, 1) &&
      cloop_task_loop(cloop_current_task()) == cloop_group_loop(c->g, 1))
    atomic_store(&c->ran_on_b, 1);
  c->thread_b = pthread_self();
  int r = cloop_sleep(2 * MS); /* a real wait on B */
  return r < 0 ? r : 42;
}

static intptr_t fail_on_b(void *arg) {
  (void)arg;
  return -EIO;
}

static intptr_t task_on_a(void *arg) {
  cross *c = arg;
  cloop_loop *a = cloop_group_loop(c->g, 0), *b = cloop_group_loop(c->g, 1);
  pthread_t me = pthread_self();
  intptr_t total = 0;
  for (int i = 0; i < 100; i++) {
    cloop_promise *p;
    ASSERT_EQ(cloop_spawn_remote(a, b, &p, work_on_b, c, "on-b"), 0);
    intptr_t v = -1;
    ASSERT_EQ(cloop_await(cloop_promise_future(p), &v), 0);
    cloop_promise_release(p);
    ASSERT_EQ(v, 42);
    total += v;
    /* back on A's thread: a task never changes thread */
    ASSERT(pthread_equal(pthread_self(), me));
    ASSERT(cloop_running_loop() == a);
  }
  ASSERT(!pthread_equal(c->thread_b, me));
  /* a failure travels back as the future's error */
  cloop_promise *p;
  ASSERT_EQ(cloop_spawn_remote(a, b, &p, fail_on_b, NULL, "fails"), 0);
  ASSERT_EQ(cloop_await(cloop_promise_future(p), NULL), -EIO);
  cloop_promise_release(p);
  c->result = total;
  atomic_store(&c->done, 1);
  return 0;
}

static void start_on_a(void *arg) {
  cross *c = arg;
  ASSERT_EQ(cloop_spawn(cloop_group_loop(c->g, 0), NULL, task_on_a, c, "a"), 0);
}

static void wait_flag(_Atomic int *flag, int64_t timeout_ns) {
  uint64_t until = test_clock_ns() + (uint64_t)timeout_ns;
  while (!atomic_load(flag)) {
    ASSERT_LT(test_clock_ns(), until);
    usleep(1000);
  }
}

TEST_IMPL_POLL(group_await_work_on_another_loop) {
  static cross c;
  memset(&c, 0, sizeof c);
  GROUP_START(c.g, 2, backend, NULL, NULL, NULL);
  cloop_handle h = CLOOP_HANDLE_INIT(start_on_a, &c);
  cloop_call_threadsafe(cloop_group_loop(c.g, 0), &h);
  wait_flag(&c.done, 10000 * MS);
  ASSERT_EQ(atomic_load(&c.ran_on_b), 1);
  ASSERT_EQ(c.result, 4200);
  ASSERT_EQ(cloop_group_stop(c.g, 1000 * MS), 0);
  return 0;
}

/* ---- a future completed from another thread and from another loop ----- */

typedef struct {
  cloop_group *g;
  cloop_promise *from_thread, *from_loop;
  _Atomic int ready, done;
  intptr_t got_thread, got_loop;
  int second_set;
} prom;

static void *completer_thread(void *arg) {
  prom *p = arg;
  wait_flag(&p->ready, 10000 * MS);
  usleep(5000); /* let the waiter park first */
  ASSERT_EQ(cloop_promise_set_result(p->from_thread, 7), 0);
  return NULL;
}

/* On loop B, as a task: completes A's promise. */
static intptr_t complete_from_b(void *arg) {
  prom *p = arg;
  ASSERT_EQ(cloop_sleep(3 * MS), 0);
  ASSERT_EQ(cloop_promise_set_error(p->from_loop, -ENOSPC), 0);
  return 0;
}

static intptr_t waiter_on_a(void *arg) {
  prom *p = arg;
  cloop_loop *a = cloop_group_loop(p->g, 0), *b = cloop_group_loop(p->g, 1);
  ASSERT_EQ(cloop_promise_new(a, &p->from_thread), 0);
  ASSERT_EQ(cloop_promise_new(a, &p->from_loop), 0);
  cloop_promise *spawn;
  ASSERT_EQ(cloop_spawn_remote(a, b, &spawn, complete_from_b, p, "completer"), 0);
  atomic_store(&p->ready, 1);
  ASSERT_EQ(cloop_await(cloop_promise_future(p->from_thread), &p->got_thread), 0);
  ASSERT_EQ(cloop_await(cloop_promise_future(p->from_loop), &p->got_loop), -ENOSPC);
  ASSERT_EQ(cloop_await(cloop_promise_future(spawn), NULL), 0);
  /* once only */
  p->second_set = cloop_promise_set_result(p->from_thread, 8);
  cloop_promise_release(p->from_thread);
  cloop_promise_release(p->from_loop);
  cloop_promise_release(spawn);
  atomic_store(&p->done, 1);
  return 0;
}

static void start_waiter(void *arg) {
  prom *p = arg;
  ASSERT_EQ(cloop_spawn(cloop_group_loop(p->g, 0), NULL, waiter_on_a, p, "w"), 0);
}

TEST_IMPL_POLL(group_promise_from_thread_and_loop) {
  static prom p;
  memset(&p, 0, sizeof p);
  GROUP_START(p.g, 2, backend, NULL, NULL, NULL);
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, completer_thread, &p), 0);
  cloop_handle h = CLOOP_HANDLE_INIT(start_waiter, &p);
  cloop_call_threadsafe(cloop_group_loop(p.g, 0), &h);
  wait_flag(&p.done, 10000 * MS);
  ASSERT_EQ(pthread_join(t, NULL), 0);
  ASSERT_EQ(p.got_thread, 7);
  ASSERT_EQ(p.second_set, -EALREADY);
  ASSERT_EQ(cloop_group_stop(p.g, 1000 * MS), 0);
  return 0;
}

/* A promise released before its completion: the completion is dropped and
   nothing is left (LSan and TSan watch this one). */
static intptr_t release_early(void *arg) {
  prom *p = arg;
  ASSERT_EQ(cloop_promise_new(cloop_group_loop(p->g, 0), &p->from_thread), 0);
  cloop_promise_release(p->from_thread);
  atomic_store(&p->ready, 1);
  return 0;
}

static void start_release_early(void *arg) {
  prom *p = arg;
  ASSERT_EQ(cloop_spawn(cloop_group_loop(p->g, 0), NULL, release_early, p, "r"), 0);
}

static void *late_completer(void *arg) {
  prom *p = arg;
  wait_flag(&p->ready, 10000 * MS);
  p->second_set = cloop_promise_set_result(p->from_thread, 1);
  atomic_store(&p->done, 1);
  return NULL;
}

TEST_IMPL_POLL(group_promise_released_before_completion) {
  static prom p;
  memset(&p, 0, sizeof p);
  GROUP_START(p.g, 2, backend, NULL, NULL, NULL);
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, NULL, late_completer, &p), 0);
  cloop_handle h = CLOOP_HANDLE_INIT(start_release_early, &p);
  cloop_call_threadsafe(cloop_group_loop(p.g, 0), &h);
  wait_flag(&p.done, 10000 * MS);
  ASSERT_EQ(pthread_join(t, NULL), 0);
  ASSERT_EQ(p.second_set, 0); /* taken, and dropped */
  ASSERT_EQ(cloop_group_stop(p.g, 1000 * MS), 0);
  return 0;
}

/* ---- a thousand connections, nothing left behind ------------------------ */

#define KCONNS 1000

static void thousand_round(cloop_backend backend, int flags) {
  atomic_store(&conns_ended, 0);
  cloop_group *g;
  cloop_group_options go;
  cloop_group_options_init(&go);
  go.loops = 2;
  go.loop.backend = backend;
  ASSERT_EQ(cloop_group_start(&g, &go), 0);
  int port = cloop_group_listen(g, "127.0.0.1", 0, 4096, flags, on_conn, NULL);
  ASSERT_GT(port, 0);
  static int fds[KCONNS];
  for (int i = 0; i < KCONNS; i++) /* all open at once */
    fds[i] = dial(port);
  for (int i = 0; i < KCONNS; i++)
    ping(fds[i]);
  ASSERT_EQ(cloop_group_accepted(g, 0) + cloop_group_accepted(g, 1), KCONNS);
  ASSERT_GT(cloop_group_accepted(g, 0), 0);
  ASSERT_GT(cloop_group_accepted(g, 1), 0);
  for (int i = 0; i < KCONNS; i++)
    close(fds[i]);
  ASSERT_EQ(cloop_group_stop(g, 5000 * MS), 0);
  ASSERT_EQ(atomic_load(&conns_ended), KCONNS);
}

TEST_IMPL_POLL(group_1000_connections_nothing_left) {
  { /* skip early if the backend is missing */
    cloop_group *g;
    GROUP_START(g, 1, backend, NULL, NULL, NULL);
    ASSERT_EQ(cloop_group_stop(g, 0), 0);
  }
  struct rlimit rl;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  rlim_t need = 2 * KCONNS + 200; /* both sides are in this process */
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
    SKIP("RLIMIT_NOFILE hard limit %llu is below the %llu needed",
         (unsigned long long)rl.rlim_max, (unsigned long long)need);
  if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur < need) {
    rl.rlim_cur = need;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
  }
  int before = count_threads(); /* no group thread yet */
  /* A warm-up round: malloc arenas of the loop threads, the alternate
     signal stacks, what is made once per process. */
  thousand_round(backend, 0);
  thousand_round(backend, CLOOP_GROUP_ACCEPTOR);
  /* The warm-up's joined threads may linger (the baseline once counted
     one of them under qemu-user): up to 2 s for them to go. */
  int threads = threads_down_to(before);
  int fds = count_fds();
  size_t heap = heap_in_use();
  thousand_round(backend, 0);
  thousand_round(backend, CLOOP_GROUP_ACCEPTOR);
  ASSERT_EQ(count_fds(), fds);
  ASSERT_EQ(threads_down_to(threads), threads);
  if (heap_in_use() > heap + (64 << 10))
    fprintf(stderr, "heap in use: %zu before, %zu after\n", heap, heap_in_use());
  ASSERT_LE(heap_in_use(), heap + (64 << 10));
  return 0;
}

/* ---- the graceful stop -------------------------------------------------- */

typedef struct {
  _Atomic int sleepers_cancelled, quick_done, unretrieved, stops;
} stopping;

static intptr_t long_sleeper(void *arg) {
  stopping *s = arg;
  int r = cloop_sleep(60000 * MS);
  if (r == -ECANCELED)
    atomic_fetch_add(&s->sleepers_cancelled, 1);
  return r;
}

static intptr_t quick(void *arg) {
  stopping *s = arg;
  ASSERT_EQ(cloop_sleep(20 * MS), 0); /* ends while the group drains */
  atomic_fetch_add(&s->quick_done, 1);
  return 0;
}

static intptr_t careless(void *arg) {
  (void)arg;
  cloop_sleep(1 * MS);
  return -EPIPE; /* nobody awaits it: reported at close */
}

static void count_unretrieved(cloop_task *t, int err, void *arg) {
  stopping *s = arg;
  if (err == -EPIPE && strcmp(cloop_task_name(t), "careless") == 0)
    atomic_fetch_add(&s->unretrieved, 1);
}

static void stop_on_start(cloop_loop *loop, int index, void *arg) {
  (void)index;
  cloop_set_unretrieved_hook(loop, count_unretrieved, arg);
  ASSERT_EQ(cloop_spawn(loop, NULL, long_sleeper, arg, "sleeper"), 0);
  ASSERT_EQ(cloop_spawn(loop, NULL, careless, arg, "careless"), 0);
}

static void stop_on_stop(cloop_loop *loop, int index, void *arg) {
  (void)index;
  stopping *s = arg;
  atomic_fetch_add(&s->stops, 1);
  /* work that starts as the stop begins still gets the drain time */
  ASSERT_EQ(cloop_spawn(loop, NULL, quick, arg, "quick"), 0);
}

TEST_IMPL_POLL(group_graceful_stop) {
  static stopping s;
  memset(&s, 0, sizeof s);
  atomic_store(&conns_ended, 0);
  atomic_store(&conns_served, 0);
  cloop_group *g;
  GROUP_START(g, 2, backend, stop_on_start, stop_on_stop, &s);
  int port = cloop_group_listen(g, "127.0.0.1", 0, 64, CLOOP_GROUP_ACCEPTOR,
                                on_conn, NULL);
  ASSERT_GT(port, 0);
  int fds[10];
  for (int i = 0; i < 10; i++) { /* open, and left open: parked in recv */
    fds[i] = dial(port);
    ping(fds[i]);
  }
  ASSERT_EQ(atomic_load(&conns_served), 10);
  uint64_t t0 = test_clock_ns();
  ASSERT_EQ(cloop_group_stop(g, 200 * MS), 0);
  uint64_t took = test_clock_ns() - t0;
  printf("stop took %.1f ms\n", (double)took / 1e6);
  ASSERT_GE(took, 190 * MS);   /* the drain deadline was given */
  ASSERT_LT(took, 5000 * MS);
  ASSERT_EQ(atomic_load(&s.stops), 2);
  ASSERT_EQ(atomic_load(&s.quick_done), 2);        /* finished in the drain */
  ASSERT_EQ(atomic_load(&s.sleepers_cancelled), 2); /* cancelled after it */
  ASSERT_EQ(atomic_load(&s.unretrieved), 2);        /* reported */
  ASSERT_EQ(atomic_load(&conns_ended), 10);         /* every connection task ended */
  for (int i = 0; i < 10; i++) { /* and closed its side */
    char c;
    ASSERT_EQ(recv(fds[i], &c, 1, 0), 0);
    close(fds[i]);
  }
  /* the listener closed: new clients are refused */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, (struct sockaddr *)&a, sizeof a), -1);
  ASSERT_EQ(errno, ECONNREFUSED);
  close(fd);
  return 0;
}

/* A group with nothing to drain stops at once, not at its deadline. */
TEST_IMPL_POLL(group_stop_idle_is_quick) {
  cloop_group *g;
  GROUP_START(g, 2, backend, NULL, NULL, NULL);
  uint64_t t0 = test_clock_ns();
  ASSERT_EQ(cloop_group_stop(g, 10000 * MS), 0);
  ASSERT_LT(test_clock_ns() - t0, 2000 * MS);
  return 0;
}

/* ---- misuse from the wrong thread ---------------------------------------- */

static intptr_t nothing(void *arg) {
  (void)arg;
  return 0;
}

static void spawn_from_test_thread(void *arg) {
  (void)arg;
  cloop_group *g;
  cloop_group_options go;
  cloop_group_options_init(&go);
  go.loops = 2;
  go.loop.backend = CLOOP_BACKEND_EPOLL;
  if (cloop_group_start(&g, &go) < 0)
    exit(3);
  cloop_spawn(cloop_group_loop(g, 1), NULL, nothing, NULL, "misplaced");
}

static void stop_from_loop_cb(void *arg) {
  cloop_group_stop(arg, 0);
}

static void stop_from_its_loop(void *arg) {
  (void)arg;
  cloop_group *g;
  cloop_group_options go;
  cloop_group_options_init(&go);
  go.loops = 1;
  go.loop.backend = CLOOP_BACKEND_EPOLL;
  if (cloop_group_start(&g, &go) < 0)
    exit(3);
  static cloop_handle h;
  cloop_handle_init(&h, stop_from_loop_cb, g);
  cloop_call_threadsafe(cloop_group_loop(g, 0), &h);
  sleep(10);
}

static void bad_index(void *arg) {
  (void)arg;
  cloop_group *g;
  cloop_group_options go;
  cloop_group_options_init(&go);
  go.loops = 2;
  go.loop.backend = CLOOP_BACKEND_EPOLL;
  if (cloop_group_start(&g, &go) < 0)
    exit(3);
  cloop_group_loop(g, 2);
}

TEST_IMPL(group_misuse_names_itself) {
  test_expect_abort("cloop_spawn on a group's loop from the test thread",
                    spawn_from_test_thread, NULL, "cloop_spawn called on a loop from a thread");
  test_expect_abort("cloop_group_stop from the group's own loop",
                    stop_from_its_loop, NULL, "cloop_group_stop called from the thread");
  test_expect_abort("cloop_group_loop with an index past the end", bad_index,
                    NULL, "index 2 of a group of 2 loops");
  return 0;
}

/* ---- options ------------------------------------------------------------- */

TEST_IMPL(group_default_size_and_pinning) {
  int before = count_threads(); /* no group thread yet */
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  int cpus = CPU_COUNT(&set);
  cloop_group *g;
  cloop_group_options go;
  cloop_group_options_init(&go);
  go.pin = 1;
  go.loop.backend = CLOOP_BACKEND_EPOLL;
  ASSERT_EQ(cloop_group_start(&g, &go), 0);
  ASSERT_EQ(cloop_group_size(g), cpus); /* one loop per CPU of the mask */
  ASSERT_EQ(cloop_group_default_size(), cpus);
  for (int i = 0; i < cpus; i++) {
    ASSERT_EQ(cloop_group_index(g, cloop_group_loop(g, i)), i);
    ASSERT_EQ(cloop_loop_is_owner(cloop_group_loop(g, i)), 0);
  }
  /* round-robin */
  cloop_loop *first = cloop_group_next(g);
  for (int i = 1; i < cpus; i++)
    ASSERT(cloop_group_next(g) != first);
  ASSERT(cloop_group_next(g) == first);
  ASSERT_EQ(cloop_group_stop(g, 0), 0);
  cloop_group_options_init(&go);
  go.loops = -1;
  ASSERT_EQ(cloop_group_start(&g, &go), -EINVAL);
  go.loops = 2;
  go.loop.stack_size = 100; /* each loop's cloop_loop_new fails: no loop is left */
  /* The first group's joined threads, and those of the start that fails,
     may linger a moment (seen under qemu-user): counted once gone. */
  int threads = threads_down_to(before);
  ASSERT_EQ(cloop_group_start(&g, &go), CLOOP_EBADOPTION);
  ASSERT_EQ(threads_down_to(threads), threads);
  return 0;
}
