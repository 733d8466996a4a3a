/* test_file.c -- files (loop/file.c, uring_file.c, coro/file.c) on both
 * backends (io_uring's requests; the work pool on epoll): 0 B, 1 B and
 * 1 MiB at random offsets and a 256 MiB file with every byte checked; a
 * file with holes; ENOENT, EISDIR, EACCES (skipped as root); a timer that
 * keeps its deadlines while a cold 64 MiB file, and a 256 MiB one in the
 * page cache, are read; a read the page cache holds in part; cancel before
 * a request starts (it never runs) and in the middle of a large read (the
 * buffer is not written after the cancel returns); a file streamed into a
 * socket. */
#include "test.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define MS 1000000LL
#define MIB ((size_t)1 << 20)
#define LARGE (64 * MIB) /* the cold reads: fsynced, then read from disk */
/* The 256 MiB, for the test that writes a file and reads it back
   whole and at random offsets (in the page cache). The cold-read tests
   stay at 64 MiB: at 256 MiB each read takes seconds here, and under a
   loaded CI their in-flight and ticking checks lose to the machine, not
   to the code (seen: a ticker 10 % short of its count). */
#define FULL (256 * MIB)

static cloop_loop *my_loop(void) { return cloop_task_loop(cloop_current_task()); }

static int run_on(cloop_backend backend, cloop_stack_mode stack,
                  cloop_task_fn fn, void *arg) {
  cloop_options o;
  cloop_options_init(&o);
  o.backend = backend;
  o.task_stack = stack;
  cloop_loop *loop;
  int r = cloop_loop_new(&loop, &o);
  if (r == CLOOP_ENOBACKEND && backend == CLOOP_BACKEND_URING)
    SKIP("backend %s not available: %s", cloop_backend_name(backend),
         cloop_strerror(r));
  ASSERT_EQ(r, 0);
  ASSERT_EQ(test_run_loop(loop, fn, arg), 0);
  return 0;
}

/* A fresh path in the build's temporary folder (removed by the test). */
static void temp_path(char *out, size_t cap, const char *what) {
  const char *dir = getenv("TMPDIR");
  snprintf(out, cap, "%s/cloop-test-%s-%d", dir && *dir ? dir : "/tmp", what,
           (int)getpid());
  unlink(out);
}

static void fill(unsigned char *p, size_t n, uint64_t seed) {
  uint64_t s = seed | 1;
  for (size_t i = 0; i < n; i++)
    p[i] = (unsigned char)(test_rand(&s) >> 56);
}

/* ---- sizes at random offsets, every byte checked ---------------------- */

static intptr_t sizes_main(void *arg) {
  (void)arg;
  char path[256];
  temp_path(path, sizeof path, "sizes");
  int fd = cloop_file_open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(fd, 0);
  /* The model: what the file must hold. */
  size_t cap = 3 * MIB;
  unsigned char *model = calloc(1, cap), *data = malloc(MIB), *back = malloc(MIB + 1);
  size_t size = 0;
  static const size_t sizes[] = {0, 1, MIB, 1, 0, MIB};
  uint64_t seed = 17;
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    size_t n = sizes[k];
    uint64_t off = test_rand(&seed) % (2 * MIB);
    fill(data, n, seed + k);
    ASSERT_EQ(cloop_file_write_all(fd, data, n, off), (ssize_t)n);
    memcpy(model + off, data, n);
    if (n && off + n > size)
      size = off + n;
    memset(back, 0xEE, n + 1);
    ASSERT_EQ(cloop_file_pread(fd, back, n, off), (ssize_t)n);
    ASSERT_EQ(memcmp(back, data, n), 0);
    ASSERT_EQ(back[n], 0xEE); /* nothing past what was asked */
    cloop_file_info info;
    ASSERT_EQ(cloop_file_stat(fd, NULL, &info), 0);
    ASSERT_EQ(info.size, size);
    ASSERT(S_ISREG(info.mode));
  }
  ASSERT_EQ(cloop_file_fsync(fd, 0), 0);
  ASSERT_EQ(cloop_file_fsync(fd, 1), 0);
  /* The whole file against the model, and past its end. */
  void *all;
  size_t len;
  ASSERT_EQ(cloop_file_read_all(fd, &all, &len), 0);
  ASSERT_EQ(len, size);
  ASSERT_EQ(memcmp(all, model, size), 0);
  free(all);
  ASSERT_EQ(cloop_file_pread(fd, back, 10, size), 0);
  ASSERT_EQ(cloop_file_pread(fd, back, 10, size - 3), 3);
  /* By path: the same answer. */
  cloop_file_info byname;
  ASSERT_EQ(cloop_file_stat(-1, path, &byname), 0);
  ASSERT_EQ(byname.size, size);
  ASSERT_GT(byname.mtime_ns, 1600000000LL * 1000000000LL);
  ASSERT_EQ(cloop_file_close(fd), 0);
  ASSERT_EQ(cloop_file_close(fd), -EBADF);
  unlink(path);
  free(model);
  free(data);
  free(back);
  return 0;
}

TEST_IMPL_POLL(file_sizes) {
  return run_on(backend, CLOOP_STACK_PRIVATE, sizes_main, NULL);
}

/* The same calls with every buffer and path on the shared stack. */
static intptr_t shared_main(void *arg) {
  (void)arg;
  char path[256];
  temp_path(path, sizeof path, "shared");
  int fd = cloop_file_open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(fd, 0);
  unsigned char out[4096], in[4096];
  fill(out, sizeof out, 5);
  ASSERT_EQ(cloop_file_write_all(fd, out, sizeof out, 100), (ssize_t)sizeof out);
  memset(in, 0, sizeof in);
  ASSERT_EQ(cloop_file_pread(fd, in, sizeof in, 100), (ssize_t)sizeof in);
  ASSERT_EQ(memcmp(in, out, sizeof in), 0);
  cloop_file_info info;
  ASSERT_EQ(cloop_file_stat(-1, path, &info), 0);
  ASSERT_EQ(info.size, 100 + sizeof out);
  ASSERT_EQ(cloop_file_close(fd), 0);
  unlink(path);
  return 0;
}

TEST_IMPL_POLL(file_shared_stack) {
  return run_on(backend, CLOOP_STACK_SHARED, shared_main, NULL);
}

/* ---- a large file ----------------------------------------------------- */

/* Writes size bytes of fill(seed) to a new file at path; cold: flushed to
   disk and dropped from the page cache (ext4 and most disks: the reads
   after it go to the device). Returns the bytes (the caller frees them). */
static unsigned char *make_sized(const char *path, size_t size, uint64_t seed, int cold) {
  unsigned char *data = malloc(size);
  ASSERT(data);
  fill(data, size, seed);
  int fd = cloop_file_open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(cloop_file_write_all(fd, data, size, 0), (ssize_t)size);
  if (cold) {
    ASSERT_EQ(cloop_file_fsync(fd, 0), 0);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  }
  ASSERT_EQ(cloop_file_close(fd), 0);
  return data;
}

/* A FULL-size file written, read whole and at 200 random offsets (up to
   1 MiB each), every byte checked. */
static intptr_t large_main(void *arg) {
  (void)arg;
  char path[256];
  temp_path(path, sizeof path, "large");
  unsigned char *data = make_sized(path, FULL, 99, 0);
  int fd = cloop_file_open(path, O_RDONLY, 0);
  ASSERT_GE(fd, 0);
  void *all;
  size_t len;
  ASSERT_EQ(cloop_file_read_all(fd, &all, &len), 0);
  ASSERT_EQ(len, FULL);
  ASSERT_EQ(memcmp(all, data, FULL), 0);
  free(all);
  /* 200 random reads of up to 1 MiB, every byte checked. */
  unsigned char *back = malloc(MIB);
  uint64_t seed = 3;
  for (int i = 0; i < 200; i++) {
    uint64_t off = test_rand(&seed) % FULL;
    size_t n = 1 + test_rand(&seed) % MIB;
    size_t expect = off + n > FULL ? FULL - off : n;
    ASSERT_EQ(cloop_file_pread(fd, back, n, off), (ssize_t)expect);
    ASSERT_EQ(memcmp(back, data + off, expect), 0);
  }
  ASSERT_EQ(cloop_file_close(fd), 0);
  unlink(path);
  free(back);
  free(data);
  return 0;
}

TEST_IMPL_POLL(file_large) {
  return run_on(backend, CLOOP_STACK_PRIVATE, large_main, NULL);
}

/* ---- holes ------------------------------------------------------------ */

static intptr_t holes_main(void *arg) {
  (void)arg;
  char path[256];
  temp_path(path, sizeof path, "holes");
  int fd = cloop_file_open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(fd, 0);
  /* A byte at 0, 4 MiB and 16 MiB: the rest is holes, reading as zeros. */
  static const uint64_t at[] = {0, 4 * MIB, 16 * MIB};
  for (int i = 0; i < 3; i++)
    ASSERT_EQ(cloop_file_pwrite(fd, &"ABC"[i], 1, at[i]), 1);
  cloop_file_info info;
  ASSERT_EQ(cloop_file_stat(fd, NULL, &info), 0);
  ASSERT_EQ(info.size, 16 * MIB + 1);
  ASSERT_LT(info.blocks * 512, (uint64_t)MIB); /* holes take no blocks */
  void *all;
  size_t len;
  ASSERT_EQ(cloop_file_read_all(fd, &all, &len), 0);
  ASSERT_EQ(len, 16 * MIB + 1);
  const unsigned char *p = all;
  for (size_t i = 0; i < len; i++) {
    int expect = i == 0 ? 'A' : i == 4 * MIB ? 'B' : i == 16 * MIB ? 'C' : 0;
    if (p[i] != expect) {
      fprintf(stderr, "byte %zu is %d, not %d\n", i, p[i], expect);
      ASSERT(0);
    }
  }
  free(all);
  ASSERT_EQ(cloop_file_close(fd), 0);
  unlink(path);
  return 0;
}

TEST_IMPL_POLL(file_holes) {
  return run_on(backend, CLOOP_STACK_PRIVATE, holes_main, NULL);
}

/* ---- errors ----------------------------------------------------------- */

static intptr_t errors_main(void *arg) {
  (void)arg;
  char dir[256], missing[300];
  temp_path(dir, sizeof dir, "dir");
  ASSERT_EQ(mkdir(dir, 0700), 0);
  snprintf(missing, sizeof missing, "%s/no-such-file", dir);
  ASSERT_EQ(cloop_file_open(missing, O_RDONLY, 0), -ENOENT);
  cloop_file_info info;
  ASSERT_EQ(cloop_file_stat(-1, missing, &info), -ENOENT);
  /* A folder as a file: refused for writing; read, EISDIR. */
  ASSERT_EQ(cloop_file_open(dir, O_WRONLY, 0), -EISDIR);
  int fd = cloop_file_open(dir, O_RDONLY, 0);
  ASSERT_GE(fd, 0);
  char b[16];
  ASSERT_EQ(cloop_file_pread(fd, b, sizeof b, 0), -EISDIR);
  ASSERT_EQ(cloop_file_stat(fd, NULL, &info), 0);
  ASSERT(S_ISDIR(info.mode));
  ASSERT_EQ(cloop_file_close(fd), 0);
  ASSERT_EQ(cloop_file_open(dir, O_RDWR | O_CREAT | O_EXCL, 0600), -EEXIST);
  /* A read-only fd refuses a write; a bad fd, everything. */
  char file[300];
  snprintf(file, sizeof file, "%s/f", dir);
  fd = cloop_file_open(file, O_RDONLY | O_CREAT, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(cloop_file_pwrite(fd, "x", 1, 0), -EBADF);
  ASSERT_EQ(cloop_file_close(fd), 0);
  ASSERT_EQ(cloop_file_pread(fd, b, 1, 0), -EBADF);
  ASSERT_EQ(cloop_file_fsync(fd, 0), -EBADF);
  ASSERT_EQ(cloop_file_stat(fd, NULL, &info), -EBADF);
  ASSERT_EQ(cloop_file_pread(fd, b, 1, (uint64_t)1 << 63), -EINVAL);
  unlink(file);
  rmdir(dir);
  return 0;
}

TEST_IMPL_POLL(file_errors) {
  return run_on(backend, CLOOP_STACK_PRIVATE, errors_main, NULL);
}

static intptr_t eacces_main(void *arg) {
  (void)arg;
  char path[256];
  temp_path(path, sizeof path, "eacces");
  int fd = open(path, O_WRONLY | O_CREAT, 0);
  ASSERT_GE(fd, 0);
  close(fd);
  ASSERT_EQ(cloop_file_open(path, O_RDONLY, 0), -EACCES);
  unlink(path);
  return 0;
}

TEST_IMPL_POLL(file_eacces) {
  if (geteuid() == 0)
    SKIP("running as root: permissions do not refuse root (EISDIR and "
         "ENOENT are checked by file_errors)");
  return run_on(backend, CLOOP_STACK_PRIVATE, eacces_main, NULL);
}

/* ---- the loop is never blocked ---------------------------------------- */

typedef struct ticker {
  int stop;
  int ticks;
  int64_t late_ns[4096]; /* how late each tick came after its deadline */
} ticker;

/* Sleeps 2 ms at a time, measuring each wake-up on the real clock. */
static intptr_t tick_main(void *arg) {
  ticker *tk = arg;
  while (!tk->stop) {
    uint64_t due = test_clock_ns() + 2 * MS;
    if (cloop_sleep(2 * MS) < 0)
      break;
    if (tk->ticks < 4096)
      tk->late_ns[tk->ticks++] = (int64_t)(test_clock_ns() - due);
  }
  return 0;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

/* What ticking_main reads: size bytes, cold (from the disk) or cached. */
typedef struct ticking_case {
  size_t size;
  int cold;
} ticking_case;

/* A blocked loop shows in every tick during the read (a 64 MiB read in
   one blocking call: one or two ticks, each late by the whole read), a
   busy machine in a few: the median says which. Here, with other builds
   on both cores, an idle loop's worst tick came 255 ms late once; its
   median stays below 0.2 ms, and under 20 ms ("within a few ms") is what
   is asserted, as the Swift twin does (a 3 ms bound failed there once in
   a loaded CI run). */
static intptr_t ticking_main(void *arg) {
  const ticking_case *c = arg;
  char path[256];
  temp_path(path, sizeof path, "ticking");
  unsigned char *data = make_sized(path, c->size, 7, c->cold);
  ticker *tk = calloc(1, sizeof *tk);
  cloop_task *t;
  ASSERT_EQ(cloop_spawn(my_loop(), &t, tick_main, tk, "ticker"), 0);
  ASSERT_EQ(cloop_sleep(5 * MS), 0); /* the ticker is under way */
  tk->ticks = 0;
  uint64_t start = test_clock_ns();
  int fd = cloop_file_open(path, O_RDONLY, 0);
  ASSERT_GE(fd, 0);
  void *all;
  size_t len;
  ASSERT_EQ(cloop_file_read_all(fd, &all, &len), 0);
  uint64_t took = test_clock_ns() - start;
  tk->stop = 1;
  ASSERT_EQ(cloop_task_join(t), 0);
  ASSERT_EQ(len, c->size);
  ASSERT_EQ(memcmp(all, data, c->size), 0);
  int n = tk->ticks;
  ASSERT_GE(n, 1);
  qsort(tk->late_ns, (size_t)n, sizeof *tk->late_ns, cmp_i64);
  fprintf(stderr, "read %zu MiB in %.1f ms; %d ticks late by %.2f ms (median), "
          "%.2f ms (worst)\n", len >> 20, took / 1e6, n,
          tk->late_ns[n / 2] / 1e6, tk->late_ns[n - 1] / 1e6);
  ASSERT_LT(tk->late_ns[n / 2], 20 * MS);
  ASSERT_GE(n, (int)(took / (10 * MS))); /* it kept ticking */
  free(tk);
  free(all);
  free(data);
  ASSERT_EQ(cloop_file_close(fd), 0);
  unlink(path);
  return 0;
}

/* A cold 64 MiB file, from the disk. */
TEST_IMPL_POLL(file_read_keeps_timers) {
  ticking_case c = {LARGE, 1};
  return run_on(backend, CLOOP_STACK_PRIVATE, ticking_main, &c);
}

/* The 256 MiB, from the page cache (where the copy is all the
   work: on io_uring a read the cache holds is done inside the submitting
   call, so one request for the whole file would stall the loop for the
   whole copy; read_all's chunks keep each one short). */
TEST_IMPL_POLL(file_read_keeps_timers_256_cached) {
  ticking_case c = {FULL, 0};
  return run_on(backend, CLOOP_STACK_PRIVATE, ticking_main, &c);
}

/* ---- cancel ----------------------------------------------------------- */

static void count_done(cloop_file_op *op) { (*(int *)op->data)++; }

/* On a loop whose pool has one thread, held by a job in a gate. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int gate_open;

static void gate_job(cloop_work *w) {
  (void)w;
  pthread_mutex_lock(&gate_lock);
  while (!gate_open)
    pthread_cond_wait(&gate_cond, &gate_lock);
  pthread_mutex_unlock(&gate_lock);
}

static void gate_done(cloop_work *w) { (void)w; }

/* Cancelled before it starts, a write never runs: the file stays empty. */
TEST_IMPL_POLL(file_cancel_before_start) {
  cloop_loop *loop;
  LOOP_NEW(loop, backend);
  cloop_pool *pool;
  ASSERT_EQ(cloop_pool_new(&pool, 1), 0);
  cloop_loop_set_pool(loop, pool);
  cloop_work hold = {0};
  gate_open = 0;
  ASSERT_EQ(cloop_queue_work(loop, &hold, gate_job, gate_done, NULL), 0);
  char path[256];
  temp_path(path, sizeof path, "cancel-start");
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(fd, 0);
  cloop_file_op op = {0};
  int calls = 0;
  ASSERT_EQ(cloop_file_op_write(loop, &op, fd, "hello", 5, 0, count_done, &calls), 0);
  ASSERT_EQ(cloop_file_op_cancel(loop, &op), 1);
  ASSERT_EQ(cloop_file_op_cancel(loop, &op), 0); /* once */
  pthread_mutex_lock(&gate_lock);
  gate_open = 1;
  pthread_cond_broadcast(&gate_cond);
  pthread_mutex_unlock(&gate_lock);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(calls, 1);
  ASSERT_EQ(op.result, -ECANCELED);
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  ASSERT_EQ(st.st_size, 0);
  close(fd);
  unlink(path);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  cloop_pool_free(pool);
  return 0;
}

/* A read the page cache holds in part -- on epoll its cached front is read
   on the loop's thread (preadv2 with RWF_NOWAIT) and the rest on the pool
   -- comes back whole, every byte in place. One the cache holds whole
   completes from the ready ring, never inside the start call, and a cancel
   before its callback leaves its result (as a kernel request that had
   finished does on io_uring). */
TEST_IMPL_POLL(file_partly_cached) {
  cloop_loop *loop;
  LOOP_NEW(loop, backend);
  char path[256];
  temp_path(path, sizeof path, "partly");
  unsigned char *data = malloc(MIB), *back = malloc(MIB);
  fill(data, MIB, 23);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, data, MIB, 0), (ssize_t)MIB);
  ASSERT_EQ(fsync(fd), 0); /* clean pages: DONTNEED can drop them */
  ASSERT_EQ(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
  /* The front quarter back in, and no read-ahead past it. */
  ASSERT_EQ(posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM), 0);
  ASSERT_EQ(pread(fd, back, MIB / 4, 0), (ssize_t)(MIB / 4));
  struct iovec probe = {back, 4096};
  int cold = preadv2(fd, &probe, 1, (off_t)(MIB / 2 + MIB / 4), RWF_NOWAIT) < 0;
  if (!cold)
    fprintf(stderr, "note: the file's back half stayed in the page cache "
            "(this file system keeps it): the read is all a hit\n");
  memset(back, 0xEE, MIB);
  cloop_file_op op = {0};
  int calls = 0;
  ASSERT_EQ(cloop_file_op_read(loop, &op, fd, back, MIB, 0, count_done, &calls), 0);
  ASSERT_EQ(calls, 0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(calls, 1);
  ASSERT_EQ(op.result, (int)MIB);
  ASSERT_EQ(memcmp(back, data, MIB), 0);
  /* Now all of it is cached; past the end, a short count. */
  calls = 0;
  memset(back, 0xEE, 8192);
  ASSERT_EQ(cloop_file_op_read(loop, &op, fd, back, 8192, MIB - 4096, count_done, &calls), 0);
  ASSERT_EQ(calls, 0);
  int cancelled = cloop_file_op_cancel(loop, &op);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(calls, 1);
  if (cancelled) {
    ASSERT_EQ(op.result, -ECANCELED);
  } else {
    ASSERT_EQ(op.result, 4096);
    ASSERT_EQ(memcmp(back, data + MIB - 4096, 4096), 0);
    ASSERT_EQ(back[4096], 0xEE);
  }
  close(fd);
  unlink(path);
  free(data);
  free(back);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* A cold 64 MiB read, cancelled once it is under way: the callback comes
   once, with -ECANCELED or (the kernel had finished) every byte; after
   the cancel returns the buffer is not written any more. */
TEST_IMPL_POLL(file_cancel_large_read) {
  cloop_loop *loop;
  LOOP_NEW(loop, backend);
  char path[256];
  temp_path(path, sizeof path, "cancel-read");
  unsigned char *data = malloc(LARGE);
  fill(data, LARGE, 11);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, data, LARGE), (ssize_t)LARGE);
  ASSERT_EQ(fsync(fd), 0);
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  unsigned char *buf = malloc(LARGE);
  memset(buf, 0, LARGE);
  cloop_file_op op = {0};
  int calls = 0;
  ASSERT_EQ(cloop_file_op_read(loop, &op, fd, buf, LARGE, 0, count_done, &calls), 0);
  /* Submitted (io_uring) or running (the pool); or, when the page cache
     kept some of the file after all, already done (0: nothing left; seen
     on a loaded machine): then the cancel comes after the end. */
  ASSERT_GE(cloop_run_once(loop, 0), 0);
  usleep(2000);
  int cancelled = cloop_file_op_cancel(loop, &op);
  memset(buf, 0x5A, LARGE); /* ours again: nothing may write it now */
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(calls, 1);
  if (cancelled) {
    ASSERT_EQ(op.result, -ECANCELED);
  } else {
    ASSERT_EQ(op.result, (int)LARGE); /* finished first: the result kept */
  }
  usleep(200 * 1000); /* a pool job still reading would land by now */
  for (size_t i = 0; i < LARGE; i += 4096)
    ASSERT_EQ(buf[i], 0x5A);
  fprintf(stderr, "cancel %s\n", cancelled ? "took" : "came after the end");
  close(fd);
  unlink(path);
  free(buf);
  free(data);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* The same in a task: a 64 MiB read in a 1 ms deadline scope. */
static intptr_t deadline_main(void *arg) {
  const char *path = arg;
  int fd = cloop_file_open(path, O_RDONLY, 0);
  ASSERT_GE(fd, 0);
  unsigned char *buf = malloc(LARGE);
  cloop_deadline d;
  ASSERT_EQ(cloop_deadline_enter(&d, 1 * MS), 0);
  ssize_t n = cloop_file_pread(fd, buf, LARGE, 0);
  int exit = cloop_deadline_exit(&d);
  if (n == -ETIMEDOUT)
    ASSERT_EQ(exit, -ETIMEDOUT);
  else
    ASSERT_EQ(n, (ssize_t)LARGE);
  fprintf(stderr, "read in 1 ms scope: %zd\n", n);
  /* The task goes on: the next read works. */
  ASSERT_EQ(cloop_file_pread(fd, buf, 4096, 0), 4096);
  ASSERT_EQ(cloop_file_close(fd), 0);
  free(buf);
  return 0;
}

TEST_IMPL_POLL(file_read_deadline) {
  char path[256];
  temp_path(path, sizeof path, "deadline");
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, LARGE), 0);
  unsigned char *block = malloc(MIB);
  fill(block, MIB, 1);
  for (size_t off = 0; off < LARGE; off += MIB)
    ASSERT_EQ(pwrite(fd, block, MIB, (off_t)off), (ssize_t)MIB);
  ASSERT_EQ(fsync(fd), 0);
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  close(fd);
  free(block);
  int r = run_on(backend, CLOOP_STACK_PRIVATE, deadline_main, path);
  unlink(path);
  return r;
}

/* ---- into a socket ---------------------------------------------------- */

typedef struct send_case {
  int sock;
  int fd;
  size_t got;
  unsigned char *in;
} send_case;

static intptr_t receiver(void *arg) {
  send_case *c = arg;
  for (;;) {
    ssize_t n = cloop_sock_recv(c->sock, c->in + c->got, 4 * MIB - c->got);
    ASSERT_GE(n, 0);
    if (n == 0)
      return 0;
    c->got += (size_t)n;
  }
}

static intptr_t send_main(void *arg) {
  (void)arg;
  char path[256];
  temp_path(path, sizeof path, "send");
  size_t size = 3 * MIB + 7;
  unsigned char *data = malloc(size);
  fill(data, size, 23);
  int fd = cloop_file_open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(cloop_file_write_all(fd, data, size, 0), (ssize_t)size);
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  send_case c = {sv[1], fd, 0, malloc(4 * MIB)};
  cloop_task *rt;
  ASSERT_EQ(cloop_spawn(my_loop(), &rt, receiver, &c, "receiver"), 0);
  /* From offset 5 to past the end: what the file has is sent. */
  ASSERT_EQ(cloop_file_send(sv[0], fd, 5, size), (ssize_t)(size - 5));
  ASSERT_EQ(cloop_file_send(sv[0], fd, 0, 0), 0);
  ASSERT_EQ(cloop_file_send(sv[0], fd, 100, 10), 10);
  ASSERT_EQ(cloop_sock_shutdown(sv[0], SHUT_WR), 0);
  ASSERT_EQ(cloop_task_join(rt), 0);
  ASSERT_EQ(c.got, size - 5 + 10);
  ASSERT_EQ(memcmp(c.in, data + 5, size - 5), 0);
  ASSERT_EQ(memcmp(c.in + size - 5, data + 100, 10), 0);
  ASSERT_EQ(cloop_sock_close(sv[0]), 0);
  ASSERT_EQ(cloop_sock_close(sv[1]), 0);
  /* A socket that is not one: the send's error. */
  ASSERT_LT(cloop_file_send(fd, fd, 0, 10), 0);
  ASSERT_EQ(cloop_file_close(fd), 0);
  unlink(path);
  free(data);
  free(c.in);
  return 0;
}

TEST_IMPL_POLL(file_send) {
  return run_on(backend, CLOOP_STACK_PRIVATE, send_main, NULL);
}

static void outside_task(void *arg) {
  (void)arg;
  cloop_file_open("/", O_RDONLY, 0);
}

TEST_IMPL(file_outside_task_aborts) {
  test_expect_abort("cloop_file_open outside a task", outside_task, NULL,
                    "cloop_file_open");
  return 0;
}
