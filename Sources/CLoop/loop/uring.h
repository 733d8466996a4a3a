/* uring.h -- what the two halves of the io_uring backend share: the ring and
 * its state (poll_uring.c: set-up, fd watchers, polling; uring_ops.c: I/O
 * operations). docs/io_uring.md explains the design. Internal; the only
 * place besides them that sees liburing.h. */
#ifndef CLOOP_URING_H
#define CLOOP_URING_H

#include <liburing.h>
#include <stdint.h>

#include "loop/loop.h"

#define SQ_ENTRIES 256
#define CQ_ENTRIES 4096

/* user_data of a watcher's requests = generation << 32 | fd. An fd is
   below 2^31, so bit 31 of the low word marks a re-check's
   acknowledgement, and an fd field of TAG_FD our other requests.
   Generations are 31 bits: bit 63 set marks an I/O operation instead,
   OP_BIT | generation << 32 | operation slot (uring_ops.c). */
#define TAG_FD UINT32_MAX
#define RECHECK_BIT 0x80000000u
#define GEN_MASK 0x7fffffffu
#define OP_BIT (1ull << 63)
#define KEY(fd, gen) ((uint64_t)(gen) << 32 | (uint32_t)(fd))
#define OP_KEY(i, gen) (OP_BIT | (uint64_t)(gen) << 32 | (uint32_t)(i))
#define NEXT_GEN(g) (((g) + 1) & GEN_MASK)
#define WAKE_TAG KEY(TAG_FD, 0)   /* the eventfd read */
#define IGNORE_TAG KEY(TAG_FD, 1) /* a failed cancel: nothing to do */

/* A watched fd's registration (poll_uring.c). */
enum { IDLE, ARMED, DEAD };

typedef struct slot {
  uint32_t gen;  /* the live registration's generation */
  uint8_t mask;  /* CLOOP_READABLE|WRITABLE watched; 0: none */
  uint8_t state; /* IDLE, ARMED, or DEAD (the kernel refused it) */
  uint8_t hot;   /* in the hot list: re-check at the next poll */
  uint8_t again; /* in the again list: re-check within this poll */
  uint32_t arm_epoch; /* u->epoch when the latest add was queued */
} slot;

/* An I/O operation in flight, or a free slot (uring_ops.c). */
typedef struct opslot {
  cloop_op *op;        /* the operation; NULL: free */
  uint64_t sq_pos;     /* its SQE's place in the SQ, counted since set-up */
  uint32_t gen;        /* the submission's generation, bumped on release */
  uint32_t next;       /* free: the next free slot, or NO_SLOT */
  uint8_t cancelling;  /* op_cancel is collecting its completion */
} opslot;

#define NO_SLOT UINT32_MAX

struct cloop__uring {
  struct io_uring ring;
  slot *slots; /* indexed by fd */
  int *hot;    /* fds reported by the last poll; capacity nslots */
  int *again;  /* fds whose re-check met a wake-up in flight; the same */
  int nslots, nhot, nagain;
  int wakefd;
  int wake_armed;      /* the eventfd read is queued or in the kernel */
  int woke;            /* this poll reaped the eventfd read */
  uint32_t epoch;      /* bumped per submission: arm_epoch == epoch means
                          the add is still in the SQ, unsent */
  uint64_t wake_buf;   /* the eventfd read's target */
  opslot *ops;         /* I/O operations, indexed by slot */
  uint32_t nops;       /* slots allocated */
  uint32_t op_free;    /* the free list's head, or NO_SLOT */
  uint32_t nlive;      /* operations in flight */
  uint64_t sq_done;    /* SQEs the kernel has taken, counted since set-up;
                          its low 32 bits are the SQ's head when last read */
};

#define U (loop->poller.uring)

/* Makes room for n SQEs, flushing the queue early if it is full. Returns 0
   or -errno from the flush (poll_uring.c). */
int cloop__uring_reserve(struct cloop__uring *u, unsigned n);

/* Drains the CQ, handling each completion; returns how many reported an
   fd or ended an operation (poll_uring.c). */
int cloop__uring_reap(cloop_loop *loop);

/* The SQEs the kernel has taken so far, extended to 64 bits; read at least
   once per poll (uring_ops.c). */
uint64_t cloop__uring_sq_taken(struct cloop__uring *u);

/* An operation's completion (user_data has OP_BIT). Returns 1 if it ended
   a live operation (uring_ops.c). */
int cloop__uring_op_completed(cloop_loop *loop, uint64_t data, int res);

/* Whether this kernel can cancel an operation synchronously
   (IORING_REGISTER_SYNC_CANCEL, Linux 6.0), which the operations need
   (uring_ops.c). */
int cloop__uring_has_sync_cancel(struct io_uring *ring);

/* Before the ring closes: makes the kernel let go of the buffers of the
   operations still in flight (uring_ops.c). */
void cloop__uring_ops_close(cloop_loop *loop);

#endif
