/* file.c -- files on the coroutine level: a task's open, pread, pwrite,
 * fsync, stat, close, read to end, write all, and a file streamed into a
 * socket, on the file operations of loop/file.c (io_uring's requests, or
 * the work pool).
 *
 * Each call takes one heap object (the op, its future, a copy of the path)
 * and parks its task on the future, as net.c does with its slab objects
 * (a file op is ~400 B with its statx room, too big for net_ops' slots; a
 * malloc is small beside a file syscall). An interrupted wait cancels the
 * op -- synchronous on both paths -- and, if the op had finished first
 * with a result (bytes, an fd), returns that and leaves the interruption
 * for the next await.
 *
 * A buffer on the shared stack is never handed to an op: io_uring writes
 * it while the task is parked and another task's frames are there. Such a
 * read or write goes through a heap copy of at most BOUNCE bytes per op. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "coro/task.h"

#define BOUNCE ((size_t)256 << 10) /* bytes per op from a shared stack */
#define SEND_CHUNK ((size_t)64 << 10) /* cloop_file_send's read size */
/* cloop_file_read_all's read size. A page-cache hit is copied inline, on
   the loop's thread (io_uring at submission; the pool's copy-out): 1 MiB
   keeps each such stall near 0.1 ms, and costs a request per MiB. */
#define READ_CHUNK ((size_t)1 << 20)

typedef struct file_wait {
  cloop_file_op op;
  cloop_future done; /* completed with op.result */
  char path[];       /* open, stat by path: a copy */
} file_wait;

static void wait_done(cloop_file_op *op) {
  file_wait *w = op->data;
  cloop_future_set_result(&w->done, op->result);
}

static file_wait *wait_new(cloop_task *t, const char *path) {
  size_t plen = path ? strlen(path) + 1 : 0;
  file_wait *w = calloc(1, sizeof *w + plen);
  if (!w)
    return NULL;
  if (plen)
    memcpy(w->path, path, plen);
  cloop_future_init(&w->done, t->loop);
  return w;
}

/* Waits for w's op, which `started` (the start call's return) began, and
   frees w. Returns the op's result or the task's interruption; *info
   (may be NULL) gets a stat's answer. */
static ssize_t wait_op(cloop_task *t, file_wait *w, int started,
                       cloop_file_info *info) {
  if (started < 0) {
    free(w);
    return started;
  }
  int r = cloop_await(&w->done, NULL);
  if (r < 0 && !cloop_future_done(&w->done)) {
    cloop_file_op_cancel(t->loop, &w->op); /* the loop is done with it then */
    cloop__await_quiet(&w->done);          /* its callback, from the ring */
  }
  ssize_t result = (int)w->done.value;
  if (r < 0) {
    if (result >= 0 && w->op.kind != CLOOP_FILE_STAT) {
      /* It finished first: keep what it got (bytes, an fd). */
      if (r == -ECANCELED)
        cloop__keep_cancel(t);
    } else {
      result = r;
    }
  }
  if (result == 0 && info)
    *info = w->op.info;
  free(w);
  return result;
}

static int check(cloop_task *t) {
  return cloop__interruption(t);
}

int cloop_file_open(const char *path, int flags, unsigned mode) {
  cloop_task *t = cloop__task_or_abort("cloop_file_open");
  int r = check(t);
  if (r)
    return r;
  if (!path)
    return -EINVAL;
  file_wait *w = wait_new(t, path);
  if (!w)
    return -ENOMEM;
  return (int)wait_op(t, w,
                      cloop_file_op_open(t->loop, &w->op, w->path, flags, mode,
                                         wait_done, w),
                      NULL);
}

int cloop_file_close(int fd) {
  cloop_task *t = cloop__task_or_abort("cloop_file_close");
  int r = check(t);
  if (r)
    return r;
  file_wait *w = wait_new(t, NULL);
  if (!w)
    return -ENOMEM;
  return (int)wait_op(t, w, cloop_file_op_close(t->loop, &w->op, fd, wait_done, w),
                      NULL);
}

ssize_t cloop_file_pread(int fd, void *buf, size_t len, uint64_t offset) {
  cloop_task *t = cloop__task_or_abort("cloop_file_pread");
  int r = check(t);
  if (r)
    return r;
  file_wait *w = wait_new(t, NULL);
  if (!w)
    return -ENOMEM;
  void *target = buf, *bounce = NULL;
  if (len && cloop__on_shared_stack(t, buf)) {
    if (len > BOUNCE)
      len = BOUNCE; /* a short read, like any pread may be */
    if (!(bounce = malloc(len))) {
      free(w);
      return -ENOMEM;
    }
    target = bounce;
  }
  ssize_t n = wait_op(t, w,
                      cloop_file_op_read(t->loop, &w->op, fd, target, len,
                                         offset, wait_done, w),
                      NULL);
  if (bounce) {
    if (n > 0)
      memcpy(buf, bounce, (size_t)n);
    free(bounce);
  }
  return n;
}

ssize_t cloop_file_pwrite(int fd, const void *buf, size_t len,
                          uint64_t offset) {
  cloop_task *t = cloop__task_or_abort("cloop_file_pwrite");
  int r = check(t);
  if (r)
    return r;
  file_wait *w = wait_new(t, NULL);
  if (!w)
    return -ENOMEM;
  const void *source = buf;
  void *bounce = NULL;
  if (len && cloop__on_shared_stack(t, buf)) {
    if (len > BOUNCE)
      len = BOUNCE;
    if (!(bounce = malloc(len))) {
      free(w);
      return -ENOMEM;
    }
    memcpy(bounce, buf, len);
    source = bounce;
  }
  ssize_t n = wait_op(t, w,
                      cloop_file_op_write(t->loop, &w->op, fd, source, len,
                                          offset, wait_done, w),
                      NULL);
  free(bounce);
  return n;
}

int cloop_file_fsync(int fd, int datasync) {
  cloop_task *t = cloop__task_or_abort("cloop_file_fsync");
  int r = check(t);
  if (r)
    return r;
  file_wait *w = wait_new(t, NULL);
  if (!w)
    return -ENOMEM;
  return (int)wait_op(t, w,
                      cloop_file_op_fsync(t->loop, &w->op, fd, datasync,
                                          wait_done, w),
                      NULL);
}

int cloop_file_stat(int fd, const char *path, cloop_file_info *out) {
  cloop_task *t = cloop__task_or_abort("cloop_file_stat");
  int r = check(t);
  if (r)
    return r;
  if ((fd < 0 && !path) || !out)
    return -EINVAL;
  file_wait *w = wait_new(t, fd < 0 ? path : NULL);
  if (!w)
    return -ENOMEM;
  return (int)wait_op(t, w,
                      cloop_file_op_stat(t->loop, &w->op, fd,
                                         fd < 0 ? w->path : NULL, wait_done, w),
                      out);
}

int cloop_file_read_all(int fd, void **out, size_t *len) {
  cloop_task *t = cloop__task_or_abort("cloop_file_read_all");
  *out = NULL;
  *len = 0;
  cloop_file_info info;
  int r = cloop_file_stat(fd, NULL, &info);
  if (r < 0)
    return r;
  /* The size is a hint: the file may grow or shrink while it is read.
     One byte more than it says, so that reaching the end costs one read. */
  size_t cap = info.size + 1 < 4096 ? 4096 : (size_t)info.size + 1;
  size_t have = 0;
  char *buf = malloc(cap + 1);
  if (!buf)
    return -ENOMEM;
  for (;;) {
    if (have == cap) {
      size_t ncap = cap * 2;
      char *nb = realloc(buf, ncap + 1);
      if (!nb) {
        free(buf);
        return -ENOMEM;
      }
      buf = nb;
      cap = ncap;
    }
    size_t want = cap - have < READ_CHUNK ? cap - have : READ_CHUNK;
    ssize_t n = cloop_file_pread(fd, buf + have, want, have);
    if (n < 0) {
      free(buf);
      return (int)n;
    }
    if (n == 0)
      break;
    have += (size_t)n;
  }
  (void)t;
  buf[have] = 0;
  *out = buf;
  *len = have;
  return 0;
}

ssize_t cloop_file_write_all(int fd, const void *buf, size_t len,
                             uint64_t offset) {
  cloop__task_or_abort("cloop_file_write_all");
  size_t done = 0;
  while (done < len) {
    ssize_t n = cloop_file_pwrite(fd, (const char *)buf + done, len - done,
                                  offset + done);
    if (n < 0)
      return n;
    if (n == 0)
      return -EIO; /* a regular file does not take 0 bytes of a write */
    done += (size_t)n;
  }
  if (!len) { /* still a wait, so that a cancel is seen */
    int r = cloop__interruption(cloop__running_task());
    if (r)
      return r;
  }
  return (ssize_t)len;
}

ssize_t cloop_file_send(int sockfd, int filefd, uint64_t offset, size_t len) {
  cloop_task *t = cloop__task_or_abort("cloop_file_send");
  int r = check(t);
  if (r)
    return r;
  size_t chunk = len < SEND_CHUNK ? (len ? len : 1) : SEND_CHUNK;
  char *buf = malloc(chunk); /* the heap: never on a shared stack */
  if (!buf)
    return -ENOMEM;
  size_t sent = 0;
  ssize_t result = 0;
  while (sent < len) {
    size_t want = len - sent < chunk ? len - sent : chunk;
    ssize_t n = cloop_file_pread(filefd, buf, want, offset + sent);
    if (n <= 0) {
      result = n; /* 0: the file ended first */
      break;
    }
    ssize_t s = cloop_sock_sendall(sockfd, buf, (size_t)n);
    if (s < 0) {
      result = s;
      break;
    }
    sent += (size_t)n;
  }
  free(buf);
  return result < 0 ? result : (ssize_t)sent;
}
