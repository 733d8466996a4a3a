/* floor_uring.c -- the io_uring floor for the echo workloads: a minimal
 * hand-written liburing echo server with no event loop library, using the
 * techniques io_uring's authors recommend for networking and nothing else:
 *
 *   - one ring, IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN (completions run
 *     only when we ask, in io_uring_enter), the ring fd registered;
 *   - a multishot accept on the listener;
 *   - a multishot receive per connection into a provided-buffer ring (the
 *     kernel picks the buffer: no buffer is tied up by an idle connection);
 *   - the echo sent from the very buffer the bytes arrived in (no copy),
 *     one send in flight per connection (a second could overtake the first
 *     when the socket is full), the buffer returned to the ring once sent;
 *   - every SQE of an iteration in one io_uring_enter, which also waits.
 *
 * It is what an echo costs through io_uring on this machine before any loop
 * adds its own work: the floor `cloop-uring` is measured against, as
 * floor_echo.c is for epoll. Buffers: NBUF of BUFSZ bytes (16 MiB in all),
 * enough for the stream workload's 8 x 256 KiB in flight; a receive that
 * finds the ring empty ends with -ENOBUFS and is armed again once a send
 * has given a buffer back.
 *
 *   floor-uring --port P     prints READY once listening; serves until killed
 */
#define _GNU_SOURCE
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define NBUF 1024          /* provided buffers (a power of two) */
#define BUFSZ (16 * 1024)  /* bytes each */
#define BGID 0             /* the buffer group */
#define QCAP NBUF          /* a connection's queue of buffers to send: it
                              may hold every buffer, so it never fills */

enum { ACCEPT = 1, RECV = 2, SEND = 3, IGNORE = 4 }; /* user_data's low bits */

typedef struct conn {
  int fd;
  int recv_armed;  /* a multishot receive is in the kernel */
  int sending;     /* a send is in the kernel */
  int closing;     /* freed once nothing is in the kernel */
  int starved;     /* its receive ended with -ENOBUFS: re-arm later */
  struct conn *next_starved;
  /* Buffers received and not yet (fully) sent, FIFO. */
  unsigned head, tail;
  struct { unsigned short bid; unsigned len, off; } q[QCAP];
} conn;

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static char *bufs;
static conn *starved; /* connections waiting for a buffer */
/* FLOOR_URING_FIXED=1: each connection's fd is also registered in the
   ring's file table (slot = the fd number) and its receives and sends name
   it by IOSQE_FIXED_FILE: the kernel skips the fd-table lookup and its
   reference count per request. Only to measure whether that pays (see
   "Fixed files" in docs/io_uring.md); off by default. */
static int fixed;
#define FIXED_SLOTS 65536

/* The fd the SQE names: the registered slot, or the fd itself. */
static void use_fd(struct io_uring_sqe *sqe) {
  if (fixed)
    sqe->flags |= IOSQE_FIXED_FILE; /* sqe->fd is the slot, equal to the fd */
}

static struct io_uring_sqe *sqe_get(void) {
  struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
  if (!sqe) { /* the SQ is full: send what is there, then take one */
    io_uring_submit(&ring);
    sqe = io_uring_get_sqe(&ring);
  }
  return sqe;
}

static void give_back(unsigned bid) {
  io_uring_buf_ring_add(br, bufs + (size_t)bid * BUFSZ, BUFSZ, (unsigned short)bid,
                        io_uring_buf_ring_mask(NBUF), 0);
  io_uring_buf_ring_advance(br, 1);
}

static void arm_recv(conn *c) {
  struct io_uring_sqe *sqe = sqe_get();
  io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = BGID;
  use_fd(sqe);
  io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | RECV);
  c->recv_armed = 1;
}

static void arm_accept(int lfd) {
  struct io_uring_sqe *sqe = sqe_get();
  io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, ACCEPT);
}

/* Sends the head of the connection's queue, if nothing is in flight. */
static void send_next(conn *c) {
  if (c->sending || c->head == c->tail)
    return;
  unsigned i = c->head % QCAP;
  struct io_uring_sqe *sqe = sqe_get();
  io_uring_prep_send(sqe, c->fd, bufs + (size_t)c->q[i].bid * BUFSZ + c->q[i].off,
                     c->q[i].len - c->q[i].off, MSG_NOSIGNAL);
  use_fd(sqe);
  io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | SEND);
  c->sending = 1;
}

/* Stops serving c: its receive is cancelled, its buffers given back; the
   memory goes once the kernel holds nothing of it. */
static void drop(conn *c) {
  if (!c->closing) {
    c->closing = 1;
    if (c->recv_armed) {
      struct io_uring_sqe *sqe = sqe_get();
      io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)c | RECV, 0);
      io_uring_sqe_set_data64(sqe, IGNORE);
    }
  }
  if (c->recv_armed || c->sending)
    return;
  for (; c->head != c->tail; c->head++)
    give_back(c->q[c->head % QCAP].bid);
  if (c->starved) { /* unlink it */
    for (conn **p = &starved; *p; p = &(*p)->next_starved)
      if (*p == c) {
        *p = c->next_starved;
        break;
      }
  }
  if (fixed) {
    int none = -1;
    io_uring_register_files_update(&ring, (unsigned)c->fd, &none, 1);
  }
  close(c->fd);
  free(c);
}

static void on_recv(conn *c, int res, unsigned flags) {
  if (!(flags & IORING_CQE_F_MORE))
    c->recv_armed = 0;
  if (res > 0 && !c->closing) {
    unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
    unsigned i = c->tail++ % QCAP;
    c->q[i].bid = (unsigned short)bid;
    c->q[i].len = (unsigned)res;
    c->q[i].off = 0;
    send_next(c);
  } else if (res > 0) {
    give_back(flags >> IORING_CQE_BUFFER_SHIFT);
  } else if (res == -ENOBUFS && !c->closing) {
    if (!c->starved) { /* armed again when a buffer comes back */
      c->starved = 1;
      c->next_starved = starved;
      starved = c;
    }
    return;
  } else if (res <= 0) {
    drop(c); /* end of stream, reset, or cancelled */
    return;
  }
  if (c->closing) {
    if (!c->recv_armed)
      drop(c);
  } else if (!c->recv_armed) {
    arm_recv(c); /* the kernel ended the multishot (e.g. the CQ was full) */
  }
}

static void on_send(conn *c, int res) {
  c->sending = 0;
  if (res < 0 || c->closing) {
    drop(c);
    return;
  }
  unsigned i = c->head % QCAP;
  c->q[i].off += (unsigned)res;
  if (c->q[i].off == c->q[i].len) { /* all of it went: the buffer goes back */
    give_back(c->q[i].bid);
    c->head++;
    while (starved) { /* a buffer is free again */
      conn *s = starved;
      starved = s->next_starved;
      s->starved = 0;
      if (!s->recv_armed)
        arm_recv(s);
    }
  }
  send_next(c);
}

int main(int argc, char **argv) {
  int port = 0;
  for (int i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], "--port") == 0)
      port = atoi(argv[i + 1]);
  signal(SIGPIPE, SIG_IGN);

  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
            IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE;
  p.cq_entries = 4096;
  int r = io_uring_queue_init_params(256, &ring, &p);
  if (r < 0) {
    fprintf(stderr, "floor-uring: io_uring_queue_init: %s\n", strerror(-r));
    return 77;
  }
  io_uring_register_ring_fd(&ring); /* a failure only costs an fd lookup */
  const char *fx = getenv("FLOOR_URING_FIXED");
  fixed = fx && fx[0] == '1' &&
          io_uring_register_files_sparse(&ring, FIXED_SLOTS) == 0;

  /* The provided-buffer ring, set up by hand (liburing 2.3 has no
     io_uring_setup_buf_ring): page-aligned entries, then registered. */
  size_t ring_bytes = NBUF * sizeof(struct io_uring_buf);
  br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  bufs = malloc((size_t)NBUF * BUFSZ);
  if (br == MAP_FAILED || !bufs) {
    fprintf(stderr, "floor-uring: out of memory\n");
    return 1;
  }
  struct io_uring_buf_reg reg;
  memset(&reg, 0, sizeof reg);
  reg.ring_addr = (uint64_t)(uintptr_t)br;
  reg.ring_entries = NBUF;
  reg.bgid = BGID;
  if ((r = io_uring_register_buf_ring(&ring, &reg, 0)) < 0) {
    fprintf(stderr, "floor-uring: io_uring_register_buf_ring: %s\n", strerror(-r));
    return 77;
  }
  io_uring_buf_ring_init(br);
  for (unsigned i = 0; i < NBUF; i++)
    io_uring_buf_ring_add(br, bufs + (size_t)i * BUFSZ, BUFSZ, (unsigned short)i,
                          io_uring_buf_ring_mask(NBUF), (int)i);
  io_uring_buf_ring_advance(br, NBUF);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, SOMAXCONN) < 0) {
    perror("floor-uring: bind/listen");
    return 1;
  }
  arm_accept(lfd);
  printf("READY\n");
  fflush(stdout);

  for (;;) {
    r = io_uring_submit_and_wait(&ring, 1);
    if (r < 0 && r != -EINTR && r != -EBUSY && r != -EAGAIN) {
      fprintf(stderr, "floor-uring: io_uring_submit_and_wait: %s\n", strerror(-r));
      return 1;
    }
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      seen++;
      uint64_t data = cqe->user_data;
      int res = cqe->res;
      unsigned flags = cqe->flags;
      conn *c = (conn *)(uintptr_t)(data & ~(uint64_t)7);
      switch (data & 7) {
      case ACCEPT:
        if (res >= 0) {
          setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          conn *nc = calloc(1, sizeof *nc);
          nc->fd = res;
          if (fixed && (res >= FIXED_SLOTS ||
                        io_uring_register_files_update(&ring, (unsigned)res, &res, 1) != 1)) {
            fprintf(stderr, "floor-uring: cannot register fd %d\n", res);
            return 1;
          }
          arm_recv(nc);
        }
        if (!(flags & IORING_CQE_F_MORE))
          arm_accept(lfd);
        break;
      case RECV:
        on_recv(c, res, flags);
        break;
      case SEND:
        on_send(c, res);
        break;
      default:
        break;
      }
    }
    io_uring_cq_advance(&ring, seen);
  }
}
