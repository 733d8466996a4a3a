/* uring_file.c -- file.c's operations as io_uring's own requests: IORING_OP_OPENAT,
 * READ, WRITE, FSYNC, STATX, CLOSE.
 *
 * The machinery is uring_ops.c's (docs/io_uring.md, "I/O operations"):
 * a slot (index, generation) per request in flight in a table that never
 * shrinks, user_data = OP_BIT | generation << 32 | FILE_BIT | index, a
 * late completion for a released generation dropped as stale; a cancel
 * turns an SQE not yet sent into a NOP, else waits for the kernel with
 * IORING_REGISTER_SYNC_CANCEL (cloop__uring_sync_cancel) and keeps the
 * result of a request that had finished first. The table is this file's
 * own because its entries are cloop_file_ops, not cloop_ops; FILE_BIT in
 * the key sends their completions here (poll_uring.c).
 *
 * A buffered read of a page-cache hit completes inline at submission; a
 * miss goes to the kernel's async worker (or its async buffered read),
 * never blocking the loop's thread. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "loop/uring.h"

typedef struct fileslot {
  cloop_file_op *op;  /* NULL: free */
  uint64_t sq_pos;    /* its SQE's place in the SQ, counted since set-up */
  uint32_t gen;       /* bumped on release */
  uint32_t next;      /* free: the next free slot, or NO_SLOT */
  uint8_t cancelling; /* file_cancel is collecting its completion */
} fileslot;

struct cloop__uring_files {
  fileslot *slots;
  uint32_t n;      /* allocated */
  uint32_t free;   /* the free list's head, or NO_SLOT */
  uint32_t nlive;  /* in flight */
};

#define F (U->files)

static cloop_file_op *slot_release(cloop_loop *loop, uint32_t i) {
  struct cloop__uring_files *f = F;
  fileslot *s = &f->slots[i];
  cloop_file_op *op = s->op;
  s->op = NULL;
  s->cancelling = 0;
  s->gen = NEXT_GEN(s->gen);
  s->next = f->free;
  f->free = i;
  f->nlive--;
  loop->alive--;
  return op;
}

static int grow(cloop_loop *loop) {
  struct cloop__uring_files *f = F;
  if (!f) {
    if (!(f = calloc(1, sizeof *f)))
      return -ENOMEM;
    f->free = NO_SLOT;
    F = f;
  }
  uint32_t n = f->n ? f->n * 2 : 64;
  if (n <= f->n || n > FILE_BIT) /* slot numbers stay below FILE_BIT */
    return -ENOMEM;
  fileslot *s = realloc(f->slots, (size_t)n * sizeof *s);
  if (!s)
    return -ENOMEM;
  memset(s + f->n, 0, (size_t)(n - f->n) * sizeof *s);
  for (uint32_t i = n; i-- > f->n;) {
    s[i].next = f->free;
    f->free = i;
  }
  f->slots = s;
  f->n = n;
  return 0;
}

int cloop__uring_file_start(cloop_loop *loop, cloop_file_op *op) {
  struct cloop__uring *u = U;
  int r;
  if ((!F || F->free == NO_SLOT) && (r = grow(loop)) < 0)
    return r;
  if ((r = cloop__uring_reserve(u, 1)) < 0)
    return r;
  struct cloop__uring_files *f = F;
  uint32_t i = f->free;
  fileslot *s = &f->slots[i];
  f->free = s->next;
  s->op = op;
  s->cancelling = 0;
  uint64_t taken = cloop__uring_sq_taken(u);
  uint32_t tail = u->ring.sq.sqe_tail;
  s->sq_pos = taken + (uint32_t)(tail - (uint32_t)taken);
  struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
  switch (op->kind) {
  case CLOOP_FILE_OPEN:
    io_uring_prep_openat(sqe, AT_FDCWD, op->path, op->flags | O_CLOEXEC,
                         op->mode);
    break;
  case CLOOP_FILE_CLOSE:
    io_uring_prep_close(sqe, op->fd);
    break;
  case CLOOP_FILE_READ:
    io_uring_prep_read(sqe, op->fd, op->buf, (unsigned)op->len, op->offset);
    break;
  case CLOOP_FILE_WRITE:
    io_uring_prep_write(sqe, op->fd, op->buf, (unsigned)op->len, op->offset);
    break;
  case CLOOP_FILE_FSYNC:
    io_uring_prep_fsync(sqe, op->fd, op->flags ? IORING_FSYNC_DATASYNC : 0);
    break;
  default: /* CLOOP_FILE_STAT: the answer lands in the op's kbuf */
    if (op->fd >= 0)
      io_uring_prep_statx(sqe, op->fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS,
                          (struct statx *)op->kbuf);
    else
      io_uring_prep_statx(sqe, AT_FDCWD, op->path, 0, STATX_BASIC_STATS,
                          (struct statx *)op->kbuf);
    break;
  }
  op->tag = FILE_KEY(i, s->gen);
  io_uring_sqe_set_data64(sqe, op->tag);
  f->nlive++;
  loop->alive++;
  loop->poll_pending = 1;
  return 0;
}

static void finish(cloop_file_op *op, int res) {
  if (op->kind == CLOOP_FILE_STAT && res == 0)
    cloop__file_info_from_statx(&op->info, op->kbuf);
  cloop__file_complete(op, res);
}

int cloop__uring_file_completed(cloop_loop *loop, uint64_t data, int res) {
  struct cloop__uring_files *f = F;
  uint32_t i = (uint32_t)data & ~FILE_BIT;
  uint32_t gen = (uint32_t)(data >> 32) & GEN_MASK;
  if (!f || i >= f->n || !f->slots[i].op || f->slots[i].gen != gen)
    return 0; /* stale: cancelled */
  if (f->slots[i].cancelling && (res == -ECANCELED || res == -EINTR)) {
    slot_release(loop, i); /* the cancel took: file.c completes it */
    return 0;
  }
  finish(slot_release(loop, i), res);
  return 1;
}

/* The result of the completion with user_data key, if it is in the CQ
   (uring_ops.c has the same for its operations). */
static int find_cqe(struct cloop__uring *u, uint64_t key, int *res) {
  unsigned head;
  struct io_uring_cqe *cqe;
  io_uring_for_each_cqe(&u->ring, head, cqe) {
    if (cqe->user_data == key) {
      *res = cqe->res;
      return 1;
    }
  }
  return 0;
}

void cloop__uring_file_cancel(cloop_loop *loop, cloop_file_op *op) {
  struct cloop__uring *u = U;
  struct cloop__uring_files *f = F;
  uint32_t i = (uint32_t)op->tag & ~FILE_BIT;
  if (!f || i >= f->n || f->slots[i].op != op ||
      op->tag != FILE_KEY(i, f->slots[i].gen))
    cloop__misuse("io_uring: cancelling file operation %p, which is not in "
                  "flight", (void *)op);
  fileslot *s = &f->slots[i];
  if (s->sq_pos >= cloop__uring_sq_taken(u)) {
    /* Still in our SQ: it becomes a no-op the kernel never answers. */
    struct io_uring_sqe *sqe =
        &u->ring.sq.sqes[(uint32_t)s->sq_pos & u->ring.sq.ring_mask];
    memset(sqe, 0, sizeof *sqe);
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, IGNORE_TAG);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    slot_release(loop, i);
    return;
  }
  s->cancelling = 1;
  cloop__uring_sync_cancel(u, op->tag);
  int res;
  if (find_cqe(u, op->tag, &res)) {
    slot_release(loop, i); /* its CQE is then dropped as stale */
    if (res != -ECANCELED && res != -EINTR)
      finish(op, res); /* it finished first: keep its result */
    return;
  }
  /* It overflowed: bring the overflow in through the usual path. */
  cloop__uring_reap(loop);
  io_uring_get_events(&u->ring);
  cloop__uring_reap(loop);
  if (f->slots[i].op == op)
    slot_release(loop, i);
}

void cloop__uring_files_close(cloop_loop *loop) {
  struct cloop__uring *u = U;
  struct cloop__uring_files *f = F;
  if (!f)
    return;
  /* Requests still in flight (the loop was discarded): the kernel lets go
     of their buffers before the ring goes. */
  for (uint32_t i = 0; f->nlive && i < f->n; i++)
    if (f->slots[i].op && f->slots[i].sq_pos < cloop__uring_sq_taken(u))
      cloop__uring_sync_cancel(u, FILE_KEY(i, f->slots[i].gen));
  free(f->slots);
  free(f);
  F = NULL;
}
