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
/* A stream's multishot receive (uring_recv.c): OP_BIT, and STREAM_BIT in
   the low word, which no operation slot reaches, then the fd. */
#define STREAM_BIT 0x80000000u
#define STREAM_KEY(fd, gen) (OP_BIT | (uint64_t)(gen) << 32 | STREAM_BIT | (uint32_t)(fd))
/* A file operation (uring_file.c): OP_BIT, and FILE_BIT in the low word,
   which operation slots stay below, then its slot in the file table. */
#define FILE_BIT 0x40000000u
#define FILE_KEY(i, gen) (OP_BIT | (uint64_t)(gen) << 32 | FILE_BIT | (uint32_t)(i))
/* A listener's multishot accept: STREAM_BIT and LISTENER_BIT (the same
   bit as FILE_BIT, which completions see only without STREAM_BIT), so
   that a late connection of a forgotten listener is known as an fd to
   close. */
#define LISTENER_BIT 0x40000000u
#define STREAM_FD_MASK 0x3fffffffu
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
  uint8_t zc;          /* the request is an IORING_OP_SEND_ZC */
  uint8_t zc_wait;     /* ... whose first CQE came: zc_res is its result,
                          and the kernel holds the buffer until the
                          notification CQE (IORING_CQE_F_NOTIF) */
  uint8_t zc_kept;     /* ... cancelled after that: it ends at the
                          notification all the same, never sent again */
  int zc_res;
} opslot;

#define NO_SLOT UINT32_MAX

/* Received bytes waiting for a reader: a provided buffer, partly read. */
typedef struct ur_chunk {
  uint16_t bid;   /* the buffer's id in the ring */
  uint32_t off;   /* bytes already read from it */
  uint32_t len;   /* bytes the kernel put in it */
} ur_chunk;

/* One socket's receiving side (uring_recv.c), indexed by fd. */
typedef struct ur_stream {
  uint32_t gen;      /* its multishot's generation, bumped when forgotten */
  uint8_t armed;     /* a multishot receive is in the kernel */
  uint8_t paused;    /* its cancel is queued: too many unread buffers */
  uint8_t ended;     /* end of stream or an error came: see end */
  uint8_t kind;      /* SOCK_STREAM or not, asked once (uring_recv.c) */
  uint64_t arm_pos;  /* the latest arm's SQE, counted as opslot.sq_pos */
  int end;           /* what a receive returns once the queue is empty */
  cloop_op *waiter;  /* the recv operation waiting for bytes, or NULL */
  ur_chunk *q;       /* the queue, a ring of qcap (a power of two) */
  int *accepted;     /* a listener's: connections not yet taken, same ring */
  int lep;           /* a listener's epoll fd + 1 (0: none; uring_recv.c) */
  uint32_t qhead, qtail, qcap;
} ur_stream;

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
  int tier;            /* the set-up tier (poll_uring.c): 0 is the best */
  size_t zc_min;       /* sends of this many bytes or more go as SEND_ZC;
                          0: never (uring_ops.c, $CLOOP_URING_SEND_ZC) */
  int ring_fd_registered;
  char info[208];      /* cloop_loop_backend_info's text */
  /* Stream receives (uring_recv.c). */
  ur_stream *streams;  /* indexed by fd */
  int nstreams;
  int br_state;        /* the buffer ring: 0 not tried, 1 set up, -1 none */
  int multishot_broken; /* the kernel refused a multishot receive */
  int accept_broken;   /* ... or a multishot accept */
  int accept_worked;   /* a multishot accept has given a connection */
  int accept_env_read; /* CLOOP_URING_MULTISHOT looked at for accepts */
  int accept_direct;   /* CLOOP_URING_ACCEPT=multishot: the kernel accepts */
  struct io_uring_buf_ring *br;
  char *bufs;          /* the ring's buffers, one block */
  uint32_t bufs_out;   /* buffers taken by the kernel, not yet given back */
  struct cloop__uring_files *files; /* uring_file.c's, from the first one */
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

/* An operation's completion (user_data has OP_BIT), with the CQE's flags.
   Returns 1 if it ended a live operation (uring_ops.c). */
int cloop__uring_op_completed(cloop_loop *loop, uint64_t data, int res,
                              unsigned flags);

/* Probes IORING_OP_SEND_ZC and reads $CLOOP_URING_SEND_ZC into u->zc_min
   (uring_ops.c). */
void cloop__uring_send_zc_init(struct cloop__uring *u);

/* Whether this kernel can cancel an operation synchronously
   (IORING_REGISTER_SYNC_CANCEL, Linux 6.0), which the operations need
   (uring_ops.c). */
int cloop__uring_has_sync_cancel(struct io_uring *ring);

/* Before the ring closes: makes the kernel let go of the buffers of the
   operations still in flight (uring_ops.c). */
void cloop__uring_ops_close(cloop_loop *loop);

/* Starts op as one request of its own (uring_ops.c): the path of every
   operation but a stream receive, and that one's fallback. */
int cloop__uring_op_start_single(cloop_loop *loop, cloop_op *op);

/* Returns once the kernel is done with the request of user_data key
   (IORING_REGISTER_SYNC_CANCEL; uring_ops.c). */
void cloop__uring_sync_cancel(struct cloop__uring *u, uint64_t key);

/* Stream receives (uring_recv.c): a recv operation served from the
   stream's multishot; whether op waits there, and its cancel; a stream
   completion (user_data has STREAM_BIT); forgetting fd's stream (closed,
   or its number handed out again); at close, the streams, then the
   buffers once the ring is gone. */
int cloop__uring_stream_recv(cloop_loop *loop, cloop_op *op);
int cloop__uring_stream_accept(cloop_loop *loop, cloop_op *op);
ssize_t cloop__uring_stream_recv_now(cloop_loop *loop, int fd, void *buf,
                                     size_t len, int flags);
int cloop__uring_stream_is_waiter(const cloop_op *op);
void cloop__uring_stream_cancel(cloop_loop *loop, cloop_op *op);
int cloop__uring_stream_completed(cloop_loop *loop, uint64_t data, int res,
                                  unsigned flags);
void cloop__uring_stream_forget(cloop_loop *loop, int fd);
void cloop__uring_streams_close(cloop_loop *loop);
void cloop__uring_bufs_free(struct cloop__uring *u);

/* File operations (uring_file.c): file.c's start and cancel, a file
   completion (user_data has FILE_BIT), and before the ring closes. */
int cloop__uring_file_start(cloop_loop *loop, cloop_file_op *op);
void cloop__uring_file_cancel(cloop_loop *loop, cloop_file_op *op);
int cloop__uring_file_completed(cloop_loop *loop, uint64_t data, int res);
void cloop__uring_files_close(cloop_loop *loop);

#endif
