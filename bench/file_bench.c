/* file_bench.c -- the file workloads of issue 17 (bench/WORKLOADS.md):
 *
 *   file-seq   a 256 MiB file in the page cache read front to back in
 *              64 KiB chunks: MB/s for cloop-uring (io_uring's READ),
 *              cloop-epoll (an epoll loop's file path: a page-cache hit
 *              read on the loop's thread with RWF_NOWAIT, a miss on the
 *              work pool) and cloop-pool (an epoll loop with
 *              CLOOP_FILE_NOWAIT=0: every read on the work pool) one read
 *              at a time, as the floor, floor-pread (a plain synchronous
 *              pread loop), does; then cloop-uring-D and cloop-pool-D with
 *              --depth D reads in flight (default 16), as a reader with
 *              read-ahead would.
 *   file-rand  100,000 reads of 4 KiB at random 4 KiB-aligned offsets of
 *              the same file, --depth in flight (default 64): ops/s for
 *              cloop-uring, cloop-epoll, cloop-pool, and floor-pread (one
 *              at a time).
 *   offload    N zero-work jobs through the work pool and back: ns a job,
 *              cloop-pool one at a time from a task (cloop_to_thread: a
 *              round trip), cloop-pool-64 with 64 in flight (callback
 *              level: throughput).
 *
 * usage: cloop-file-bench file-seq|file-rand|offload [--n N] [--depth D]
 *        [--file PATH]
 *
 * The file is made at $TMPDIR/cloop-file-bench-<pid> (or --file; then kept)
 * and read once before anything is timed, so every figure is of the page
 * cache, not the disk. Every read's count is checked. RESULT lines as in
 * ../shared/peers/WORKLOADS.md. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cloop.h"

#define FILE_SIZE ((uint64_t)256 << 20)
#define SEQ_CHUNK ((size_t)64 << 10)
#define RAND_CHUNK ((size_t)4 << 10)
#define MAX_DEPTH 256

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int err) {
  fprintf(stderr, "cloop-file-bench: %s: %s\n", what, strerror(err < 0 ? -err : err));
  exit(1);
}

/* The same 64-bit LCG as the other workloads (WORKLOADS.md). */
static uint64_t lcg = 0x2545F4914F6CDD1DULL;
static uint64_t next_rand(void) {
  lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
  return lcg >> 16;
}

/* ---- the file ---------------------------------------------------------- */

static char path[512];
static int made_here;

static void make_file(const char *given) {
  if (given) {
    snprintf(path, sizeof path, "%s", given);
  } else {
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/cloop-file-bench-%d", dir && *dir ? dir : "/tmp",
             (int)getpid());
    made_here = 1;
  }
  int fd = open(path, O_RDWR | O_CREAT, 0600);
  if (fd < 0)
    die(path, errno);
  struct stat st;
  fstat(fd, &st);
  if ((uint64_t)st.st_size != FILE_SIZE) {
    char *block = malloc(1 << 20);
    for (size_t i = 0; i < (1 << 20); i++)
      block[i] = (char)next_rand();
    for (uint64_t off = 0; off < FILE_SIZE; off += 1 << 20)
      if (pwrite(fd, block, 1 << 20, (off_t)off) != 1 << 20)
        die("writing the file", errno);
    free(block);
  }
  /* Into the page cache: read it all once. */
  char *buf = malloc(SEQ_CHUNK);
  for (uint64_t off = 0; off < FILE_SIZE; off += SEQ_CHUNK)
    if (pread(fd, buf, SEQ_CHUNK, (off_t)off) != (ssize_t)SEQ_CHUNK)
      die("warming the file", errno);
  free(buf);
  close(fd);
}

static void drop_file(void) {
  if (made_here)
    unlink(path);
}

/* ---- the loop side: depth reads in flight ------------------------------ */

typedef struct reader {
  cloop_file_op op;
  char *buf;
} reader;

static struct {
  cloop_loop *loop;
  int fd;
  int seq;            /* file-seq: offsets in order; else random */
  size_t chunk;
  uint64_t next_off;  /* file-seq: the next offset to ask for */
  long issued, done, total;
  int failed;
} R;

static void on_read(cloop_file_op *op);

static void issue(reader *r) {
  uint64_t off;
  if (R.seq) {
    if (R.next_off >= FILE_SIZE)
      return;
    off = R.next_off;
    R.next_off += R.chunk;
  } else {
    if (R.issued >= R.total)
      return;
    off = (next_rand() % (FILE_SIZE / R.chunk)) * R.chunk;
  }
  R.issued++;
  int rc = cloop_file_op_read(R.loop, &r->op, R.fd, r->buf, R.chunk, off, on_read, r);
  if (rc < 0)
    die("cloop_file_op_read", rc);
}

static void on_read(cloop_file_op *op) {
  if (op->result != (int)R.chunk) {
    fprintf(stderr, "cloop-file-bench: a read gave %d, not %zu\n", op->result, R.chunk);
    R.failed = 1;
  }
  R.done++;
  issue(op->data);
}

/* Runs the reads on a new loop of backend; returns the seconds taken.
   POOL_ONLY: an epoll loop with every read on the work pool. */
#define POOL_ONLY ((cloop_backend)-1)
static double run_loop(cloop_backend backend, int seq, size_t chunk, long total,
                       int depth) {
  /* Read by the loop at its first file operation. */
  setenv("CLOOP_FILE_NOWAIT", backend == POOL_ONLY ? "0" : "1", 1);
  if (backend == POOL_ONLY)
    backend = CLOOP_BACKEND_EPOLL;
  cloop_options o;
  cloop_options_init(&o);
  o.backend = backend;
  int rc = cloop_loop_new(&R.loop, &o);
  if (rc < 0)
    die(cloop_backend_name(backend), rc);
  R.fd = open(path, O_RDONLY | O_CLOEXEC);
  R.seq = seq;
  R.chunk = chunk;
  R.next_off = 0;
  R.issued = R.done = 0;
  R.total = seq ? (long)(FILE_SIZE / chunk) : total;
  R.failed = 0;
  reader *rs = calloc((size_t)depth, sizeof *rs);
  for (int i = 0; i < depth; i++)
    rs[i].buf = aligned_alloc(4096, chunk);
  uint64_t start = now_ns();
  for (int i = 0; i < depth; i++)
    issue(&rs[i]);
  cloop_run(R.loop);
  double secs = (now_ns() - start) / 1e9;
  if (R.failed || R.done != R.total) {
    fprintf(stderr, "cloop-file-bench: %ld of %ld reads done\n", R.done, R.total);
    exit(1);
  }
  for (int i = 0; i < depth; i++)
    free(rs[i].buf);
  free(rs);
  close(R.fd);
  cloop_loop_free(R.loop);
  return secs;
}

/* The floor: one synchronous pread after another. */
static double run_floor(int seq, size_t chunk, long total) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  char *buf = aligned_alloc(4096, chunk);
  long n = seq ? (long)(FILE_SIZE / chunk) : total;
  uint64_t start = now_ns();
  for (long i = 0; i < n; i++) {
    uint64_t off = seq ? (uint64_t)i * chunk : (next_rand() % (FILE_SIZE / chunk)) * chunk;
    if (pread(fd, buf, chunk, (off_t)off) != (ssize_t)chunk)
      die("pread", errno);
  }
  double secs = (now_ns() - start) / 1e9;
  free(buf);
  close(fd);
  return secs;
}

/* ---- offload ----------------------------------------------------------- */

static intptr_t nothing(void *arg) {
  (void)arg;
  return 0;
}

typedef struct offload_args {
  long n;
} offload_args;

static intptr_t offload_main(void *arg) {
  offload_args *a = arg;
  for (long i = 0; i < a->n; i++)
    if (cloop_to_thread(nothing, NULL) != 0)
      die("cloop_to_thread", EIO);
  return 0;
}

static struct {
  cloop_loop *loop;
  long issued, done, total;
} W;

static void job_none(cloop_work *w) { (void)w; }

static void job_back(cloop_work *w) {
  W.done++;
  if (W.issued < W.total) {
    W.issued++;
    memset(w, 0, sizeof *w);
    if (cloop_queue_work(W.loop, w, job_none, job_back, NULL) < 0)
      die("cloop_queue_work", EAGAIN);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: cloop-file-bench file-seq|file-rand|offload [--n N] [--depth D] [--file PATH]\n");
    return 2;
  }
  const char *workload = argv[1], *given = NULL;
  long n = 0;
  int depth = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--n"))
      n = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--depth"))
      depth = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--file"))
      given = argv[i + 1];
  }
  if (depth < 0 || depth > MAX_DEPTH) {
    fprintf(stderr, "cloop-file-bench: --depth is 1 to %d\n", MAX_DEPTH);
    return 2;
  }
  if (!strcmp(workload, "file-seq")) {
    if (!depth)
      depth = 16;
    make_file(given);
    double mb = FILE_SIZE / 1e6;
    unsigned long long reads = FILE_SIZE / SEQ_CHUNK;
    double floor = run_floor(1, SEQ_CHUNK, 0);
    printf("RESULT workload=file-seq impl=floor-pread n=%llu value=%.0f unit=MB/s\n", reads, mb / floor);
    /* One read at a time, as the floor; then depth in flight. */
    double uring = run_loop(CLOOP_BACKEND_URING, 1, SEQ_CHUNK, 0, 1);
    printf("RESULT workload=file-seq impl=cloop-uring n=%llu value=%.0f unit=MB/s\n", reads, mb / uring);
    double epoll = run_loop(CLOOP_BACKEND_EPOLL, 1, SEQ_CHUNK, 0, 1);
    printf("RESULT workload=file-seq impl=cloop-epoll n=%llu value=%.0f unit=MB/s\n", reads, mb / epoll);
    double pool = run_loop(POOL_ONLY, 1, SEQ_CHUNK, 0, 1);
    printf("RESULT workload=file-seq impl=cloop-pool n=%llu value=%.0f unit=MB/s\n", reads, mb / pool);
    double uring_d = run_loop(CLOOP_BACKEND_URING, 1, SEQ_CHUNK, 0, depth);
    printf("RESULT workload=file-seq impl=cloop-uring-%d n=%llu value=%.0f unit=MB/s\n", depth, reads,
           mb / uring_d);
    double pool_d = run_loop(POOL_ONLY, 1, SEQ_CHUNK, 0, depth);
    printf("RESULT workload=file-seq impl=cloop-pool-%d n=%llu value=%.0f unit=MB/s\n", depth, reads,
           mb / pool_d);
    fprintf(stderr,
            "file-seq: against the floor, one read at a time: io_uring %.2f x, epoll %.2f x, "
            "the pool %.2f x; %d in flight: io_uring %.2f x, the pool %.2f x\n",
            floor / uring, floor / epoll, floor / pool, depth, floor / uring_d, floor / pool_d);
    drop_file();
  } else if (!strcmp(workload, "file-rand")) {
    if (!depth)
      depth = 64;
    if (!n)
      n = 100000;
    make_file(given);
    double floor = run_floor(0, RAND_CHUNK, n);
    printf("RESULT workload=file-rand impl=floor-pread n=%ld value=%.0f unit=ops/s\n", n, n / floor);
    double uring = run_loop(CLOOP_BACKEND_URING, 0, RAND_CHUNK, n, depth);
    printf("RESULT workload=file-rand impl=cloop-uring n=%ld value=%.0f unit=ops/s\n", n, n / uring);
    double epoll = run_loop(CLOOP_BACKEND_EPOLL, 0, RAND_CHUNK, n, depth);
    printf("RESULT workload=file-rand impl=cloop-epoll n=%ld value=%.0f unit=ops/s\n", n, n / epoll);
    double pool = run_loop(POOL_ONLY, 0, RAND_CHUNK, n, depth);
    printf("RESULT workload=file-rand impl=cloop-pool n=%ld value=%.0f unit=ops/s\n", n, n / pool);
    fprintf(stderr, "file-rand: depth %d; io_uring %.2f x the pool's ops/s, epoll %.2f x; "
            "against the floor: io_uring %.2f x, epoll %.2f x, the pool %.2f x\n", depth,
            pool / uring, pool / epoll, floor / uring, floor / epoll, floor / pool);
    drop_file();
  } else if (!strcmp(workload, "offload")) {
    if (!n)
      n = 200000;
    offload_args a = {n};
    cloop_loop *loop;
    if (cloop_loop_new(&loop, NULL) < 0)
      die("cloop_loop_new", ENOMEM);
    cloop_task *t;
    cloop_spawn(loop, &t, offload_main, &a, "offload");
    uint64_t start = now_ns();
    cloop_run(loop);
    double one = (now_ns() - start) / (double)n;
    cloop_loop_free(loop);
    printf("RESULT workload=offload impl=cloop-pool n=%ld value=%.1f unit=ns/op\n", n, one);
    /* 64 in flight at the callback level. */
    if (cloop_loop_new(&W.loop, NULL) < 0)
      die("cloop_loop_new", ENOMEM);
    W.total = n;
    W.issued = W.done = 0;
    cloop_work *ws = calloc(64, sizeof *ws);
    start = now_ns();
    for (int i = 0; i < 64 && W.issued < W.total; i++) {
      W.issued++;
      if (cloop_queue_work(W.loop, &ws[i], job_none, job_back, NULL) < 0)
        die("cloop_queue_work", EAGAIN);
    }
    cloop_run(W.loop);
    double many = (now_ns() - start) / (double)n;
    if (W.done != n)
      die("offload: jobs lost", EIO);
    free(ws);
    cloop_loop_free(W.loop);
    printf("RESULT workload=offload impl=cloop-pool-64 n=%ld value=%.1f unit=ns/op\n", n, many);
  } else {
    fprintf(stderr, "cloop-file-bench: unknown workload %s\n", workload);
    return 2;
  }
  return 0;
}
