/* file.c -- file operations on the callback level: open, close, read and
 * write at an offset, fsync, stat, as objects in the caller's memory that
 * complete with a callback (the cloop_op model, for files).
 *
 * Readiness is no answer for a regular file (epoll says it is always
 * ready; the read then blocks the loop on a cold page), so there are two
 * real paths:
 *
 * - io_uring (loop->io->file_start, uring_file.c): each operation is the
 *   kernel's own request, asynchronous in the kernel, cancelled
 *   synchronously.
 * - the work pool (pool.c) otherwise: the blocking syscall runs on a pool
 *   thread. Its request is a heap object (a job) that owns everything the
 *   thread touches -- a copy of the path, its own buffer for the bytes, the
 *   statx answer -- so a cancel can forget it at once (cloop_work_abandon):
 *   the caller's buffer is written only on the loop's thread, by done, and
 *   a job finishing after a cancel writes into its own memory and frees
 *   it. The price is one copy of the bytes per operation and a malloc per
 *   operation (the bytes' buffer and the job: ~400 B + len).
 *
 *   Before a read goes there it is tried once on the loop's thread with
 *   preadv2(RWF_NOWAIT), which copies what the page cache holds and never
 *   waits for the disk (nor a lock): a hit costs one syscall, what a
 *   synchronous pread costs, where the hand-off costs two thread wake-ups
 *   (~15 us: bench/file_bench.c's offload, against ~6 us for the 64 KiB
 *   copy itself). A miss (EAGAIN), a file system without it (EOPNOTSUPP)
 *   or any error sends the whole read to the pool, which gives the real
 *   answer; a partial hit sends the rest. The loop's thread pays the copy
 *   of a hit, as it pays the copy-out of a pool read: at most INLINE_MAX
 *   bytes a request. $CLOOP_FILE_NOWAIT=0 turns it off (every read on the
 *   pool: the benchmarks' cloop-pool).
 *
 * Unlike socket operations an fd may have any number in flight: reads at
 * different offsets of one file are what file-rand does. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "loop/loop.h"

enum { FOP_IDLE = 0, FOP_IN_FLIGHT, FOP_COMPLETE };

/* A result is an int: one request moves at most this much (Linux's own
   cap for one read(2) is 0x7ffff000). */
#define MAX_IO ((size_t)0x7ffff000)

/* The largest read tried on the loop's thread: 1 MiB is ~0.1 ms of copying
   from the page cache, coro/file.c's READ_CHUNK. Longer ones go to the
   pool whole, their copy-out as long as before. */
#define INLINE_MAX ((size_t)1 << 20)

_Static_assert(sizeof(struct statx) <= sizeof(((cloop_file_op *)0)->kbuf),
               "cloop_file_op.kbuf holds a struct statx");

void cloop__file_info_from_statx(cloop_file_info *info, const void *p) {
  const struct statx *sx = p;
  info->size = sx->stx_size;
  info->blocks = sx->stx_blocks;
  info->mode = sx->stx_mode;
  info->nlink = sx->stx_nlink;
  info->mtime_ns = (int64_t)sx->stx_mtime.tv_sec * 1000000000 +
                   sx->stx_mtime.tv_nsec;
}

static void run_callback(void *arg) {
  cloop_file_op *op = arg;
  op->state = FOP_IDLE;
  op->fn(op);
}

void cloop__file_complete(cloop_file_op *op, int result) {
  if (op->kind == CLOOP_FILE_OPEN && result >= 0)
    cloop__fd_fresh(op->loop, result); /* a number a socket may have had */
  op->result = result;
  op->job = NULL;
  op->state = FOP_COMPLETE;
  cloop_handle_init(&op->handle, run_callback, op);
  cloop_call_soon(op->loop, &op->handle);
}

/* ---- the pool path ---------------------------------------------------- */

typedef struct file_job {
  cloop_work work;
  cloop_file_op *op; /* the caller's; never touched off the loop's thread */
  int kind, fd, flags;
  int owns_fd;       /* fd is the job's own dup of the caller's */
  unsigned mode;
  uint64_t offset;   /* the caller's offset + skip */
  size_t len;        /* the caller's len - skip */
  size_t skip;       /* read: bytes the loop's thread read already (a
                        partial page-cache hit), at the front of op->buf */
  int result;        /* the syscall's: >= 0 or -errno */
  void *buf;         /* read into, or written from (a copy of the caller's) */
  struct statx sx;
  char path[];       /* a copy */
} file_job;

/* On a pool thread: the blocking call, into the job's own memory only. */
static void job_run(cloop_work *w) {
  file_job *j = w->data;
  ssize_t r;
  switch (j->kind) {
  case CLOOP_FILE_OPEN:
    r = open(j->path, j->flags | O_CLOEXEC, j->mode);
    break;
  case CLOOP_FILE_CLOSE:
    r = close(j->fd); /* EINTR: the fd is gone anyway on Linux */
    if (r < 0 && errno == EINTR)
      r = 0;
    break;
  case CLOOP_FILE_READ:
    do
      r = pread(j->fd, j->buf, j->len, (off_t)j->offset);
    while (r < 0 && errno == EINTR);
    break;
  case CLOOP_FILE_WRITE:
    do
      r = pwrite(j->fd, j->buf, j->len, (off_t)j->offset);
    while (r < 0 && errno == EINTR);
    break;
  case CLOOP_FILE_FSYNC:
    r = j->flags ? fdatasync(j->fd) : fsync(j->fd);
    break;
  default: /* CLOOP_FILE_STAT */
    r = j->fd >= 0 ? statx(j->fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &j->sx)
                   : statx(AT_FDCWD, j->path, 0, STATX_BASIC_STATS, &j->sx);
    break;
  }
  j->result = r < 0 ? -errno : (int)r;
}

static void job_free(file_job *j) {
  if (j->owns_fd)
    close(j->fd);
  free(j->buf);
  free(j);
}

/* Wherever an abandoned job ends (pool thread or loop): what it opened is
   closed, so a cancelled open leaks no fd. Touches no loop. */
static void job_drop(cloop_work *w) {
  file_job *j = w->data;
  if (j->kind == CLOOP_FILE_OPEN && j->result >= 0)
    close(j->result);
  job_free(j);
}

/* On the loop's thread: the answer moves into the caller's op. */
static void job_done(cloop_work *w) {
  file_job *j = w->data;
  cloop_file_op *op = j->op;
  int r = w->result < 0 ? w->result : j->result;
  if (r > 0 && j->kind == CLOOP_FILE_READ)
    memcpy((char *)op->buf + j->skip, j->buf, (size_t)r);
  if (j->skip) /* pread's answer: the bytes read, an error only if none */
    r = r < 0 ? (int)j->skip : (int)j->skip + r;
  if (r == 0 && j->kind == CLOOP_FILE_STAT)
    cloop__file_info_from_statx(&op->info, &j->sx);
  job_free(j);
  cloop__file_complete(op, r);
}

/* skip: a read's first bytes, already in op->buf (read_cached). */
static int pool_start(cloop_loop *loop, cloop_file_op *op, size_t skip) {
  size_t plen = op->path ? strlen(op->path) + 1 : 0;
  file_job *j = malloc(sizeof *j + plen);
  if (!j)
    return -ENOMEM;
  memset(j, 0, sizeof *j);
  j->op = op;
  j->kind = op->kind;
  j->fd = op->fd;
  /* The job works on a dup of its own: a cancel returns at once while the
     pool thread may still be in pread, and the caller may then close the
     fd -- whose number could name another file by the time the call
     runs. (A close is the caller's fd itself.) One dup and one close more
     per operation, on the path that already pays a thread hand-off. */
  if (op->fd >= 0 && op->kind != CLOOP_FILE_CLOSE) {
    j->fd = fcntl(op->fd, F_DUPFD_CLOEXEC, 0);
    if (j->fd < 0) {
      int e = -errno;
      free(j);
      return e;
    }
    j->owns_fd = 1;
  }
  j->flags = op->flags;
  j->mode = op->mode;
  j->offset = op->offset + skip;
  j->len = op->len - skip;
  j->skip = skip;
  j->result = -ECANCELED; /* what a job that never ran has to drop */
  if (plen)
    memcpy(j->path, op->path, plen);
  if ((op->kind == CLOOP_FILE_READ || op->kind == CLOOP_FILE_WRITE) && j->len) {
    j->buf = malloc(j->len);
    if (!j->buf) {
      job_free(j);
      return -ENOMEM;
    }
    if (op->kind == CLOOP_FILE_WRITE)
      memcpy(j->buf, op->buf, j->len);
  }
  int r = cloop_queue_work(loop, &j->work, job_run, job_done, j);
  if (r < 0) {
    job_free(j);
    return r;
  }
  op->job = j;
  return 0;
}

/* ---- page-cache hits on the loop's thread ------------------------------ */

/* A read of op's, tried without waiting (see the top of the file). Returns
   the bytes read into op->buf (0 at end of file), or -1: nothing read,
   the pool is to do it all. */
static ssize_t read_cached(cloop_loop *loop, cloop_file_op *op) {
  if (__builtin_expect(!loop->file_nowait, 0)) {
    const char *env = getenv("CLOOP_FILE_NOWAIT"); /* once a loop */
    loop->file_nowait = env && strcmp(env, "0") == 0 ? 2 : 1;
  }
  if (loop->file_nowait != 1 || op->len == 0 || op->len > INLINE_MAX)
    return -1;
  struct iovec iov = {op->buf, op->len};
  ssize_t r = preadv2(op->fd, &iov, 1, (off_t)op->offset, RWF_NOWAIT);
  return r < 0 ? -1 : r;
}

/* ---- starting and cancelling ------------------------------------------ */

static int start(cloop_loop *loop, cloop_file_op *op, int kind,
                 cloop_file_fn fn, void *data) {
  CLOOP__CHECK(loop, "cloop_file_op_*");
  if (op->state == FOP_IN_FLIGHT || op->handle.link.next)
    cloop__misuse("cloop_file_op %p started again while in flight (wait for "
                  "its callback, or cancel it)", (void *)op);
  if (!fn)
    return -EINVAL;
  op->loop = loop;
  op->kind = kind;
  op->fn = fn;
  op->data = data;
  op->result = 0;
  op->job = NULL;
  if (op->len > MAX_IO)
    op->len = MAX_IO;
  int r, hit = 0;
  if (loop->io && loop->io->file_start) {
    r = loop->io->file_start(loop, op);
  } else {
    ssize_t got = kind == CLOOP_FILE_READ ? read_cached(loop, op) : -1;
    /* All of it, or end of file; a short count may be either, so the pool
       reads on from there and says. */
    hit = got == 0 || got == (ssize_t)op->len;
    r = hit ? (int)got : pool_start(loop, op, got > 0 ? (size_t)got : 0);
  }
  if (r < 0)
    return r;
  op->state = FOP_IN_FLIGHT;
  if (hit)
    cloop__file_complete(op, r); /* fn from the ready ring, as ever */
  return 0;
}

int cloop_file_op_open(cloop_loop *loop, cloop_file_op *op, const char *path,
                       int flags, unsigned mode, cloop_file_fn fn, void *data) {
  if (!path)
    return -EINVAL;
  op->path = path;
  op->flags = flags;
  op->mode = mode;
  op->fd = -1;
  op->buf = NULL;
  op->len = 0;
  return start(loop, op, CLOOP_FILE_OPEN, fn, data);
}

int cloop_file_op_close(cloop_loop *loop, cloop_file_op *op, int fd,
                        cloop_file_fn fn, void *data) {
  op->path = NULL;
  op->fd = fd;
  op->buf = NULL;
  op->len = 0;
  return start(loop, op, CLOOP_FILE_CLOSE, fn, data);
}

int cloop_file_op_read(cloop_loop *loop, cloop_file_op *op, int fd, void *buf,
                       size_t len, uint64_t offset, cloop_file_fn fn,
                       void *data) {
  if (offset > INT64_MAX || (!buf && len))
    return -EINVAL;
  op->path = NULL;
  op->fd = fd;
  op->buf = buf;
  op->len = len;
  op->offset = offset;
  return start(loop, op, CLOOP_FILE_READ, fn, data);
}

int cloop_file_op_write(cloop_loop *loop, cloop_file_op *op, int fd,
                        const void *buf, size_t len, uint64_t offset,
                        cloop_file_fn fn, void *data) {
  if (offset > INT64_MAX || (!buf && len))
    return -EINVAL;
  op->path = NULL;
  op->fd = fd;
  op->buf = (void *)buf; /* only read */
  op->len = len;
  op->offset = offset;
  return start(loop, op, CLOOP_FILE_WRITE, fn, data);
}

int cloop_file_op_fsync(cloop_loop *loop, cloop_file_op *op, int fd,
                        int datasync, cloop_file_fn fn, void *data) {
  op->path = NULL;
  op->fd = fd;
  op->flags = datasync ? 1 : 0;
  op->buf = NULL;
  op->len = 0;
  return start(loop, op, CLOOP_FILE_FSYNC, fn, data);
}

int cloop_file_op_stat(cloop_loop *loop, cloop_file_op *op, int fd,
                       const char *path, cloop_file_fn fn, void *data) {
  if (fd < 0 && !path)
    return -EINVAL;
  op->path = fd < 0 ? path : NULL;
  op->fd = fd < 0 ? -1 : fd;
  op->buf = NULL;
  op->len = 0;
  return start(loop, op, CLOOP_FILE_STAT, fn, data);
}

int cloop_file_op_cancel(cloop_loop *loop, cloop_file_op *op) {
  CLOOP__CHECK(loop, "cloop_file_op_cancel");
  if (op->state != FOP_IN_FLIGHT)
    return 0;
  if (loop->io && loop->io->file_start) {
    loop->io->file_cancel(loop, op);
    if (op->state != FOP_IN_FLIGHT)
      return 0; /* the kernel had finished it: its result stands */
  } else {
    file_job *j = op->job;
    cloop_work_abandon(&j->work, job_drop); /* j is no longer ours */
  }
  cloop__file_complete(op, -ECANCELED);
  return 1;
}
