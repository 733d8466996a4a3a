/* zc_bench.c -- what IORING_OP_SEND_ZC costs or saves against a plain send
 * on this machine, through the loop's own cloop_op_send (uring_ops.c).
 *
 * One io_uring loop sends TOTAL bytes over a loopback TCP connection in
 * sends of SIZE bytes, one in flight at a time (the next starts in the
 * callback of the last, as a server's write path does); a second thread
 * reads and discards them with blocking recv(2). Reported: the loop
 * thread's CPU time per KB sent (CLOCK_THREAD_CPUTIME_ID: the kernel's
 * send work is charged to it, the reader's copy is not) and MB/s.
 * $CLOOP_URING_SEND_ZC chooses the path, as in any program:
 *
 *   CLOOP_URING_SEND_ZC=0 zc-bench SIZE [MiB]   plain sends
 *   CLOOP_URING_SEND_ZC=1 zc-bench SIZE [MiB]   every send zero-copy
 *
 * Prints one line: "SIZE cpu-ns/KB MB/s". Run the two interleaved and
 * compare medians; docs/io_uring.md has the figures. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <cloop.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static size_t size, left;
static char *buf;
static int sfd;
static cloop_op op;

static void on_sent(cloop_op *o) {
  if (o->result <= 0) {
    fprintf(stderr, "send: %d\n", o->result);
    exit(1);
  }
  left -= (size_t)o->result < left ? (size_t)o->result : left;
  if (left)
    cloop_op_send(o->loop, o, sfd, buf, left < size ? left : size, 0, on_sent, NULL);
}

static void *reader(void *arg) {
  int fd = *(int *)arg;
  char *b = malloc(1 << 20);
  while (recv(fd, b, 1 << 20, 0) > 0)
    ;
  free(b);
  return NULL;
}

static double now(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: zc-bench SIZE [MiB]\n");
    return 2;
  }
  size = strtoull(argv[1], NULL, 10);
  size_t total = (argc > 2 ? strtoull(argv[2], NULL, 10) : 512) << 20;
  buf = malloc(size);
  memset(buf, 'x', size);
  int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(lfd, (void *)&a, sizeof a) || listen(lfd, 1) ||
      getsockname(lfd, (void *)&a, &al))
    return perror("listen"), 1;
  sfd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(sfd, (void *)&a, sizeof a))
    return perror("connect"), 1;
  int rfd = accept(lfd, NULL, NULL);
  pthread_t th;
  pthread_create(&th, NULL, reader, &rfd);
  cloop_options opts;
  cloop_options_init(&opts);
  opts.backend = CLOOP_BACKEND_URING;
  cloop_loop *loop;
  if (cloop_loop_new(&loop, &opts))
    return fprintf(stderr, "no io_uring loop\n"), 1;
  left = total;
  double c0 = now(CLOCK_THREAD_CPUTIME_ID), w0 = now(CLOCK_MONOTONIC);
  cloop_op_send(loop, &op, sfd, buf, size, 0, on_sent, NULL);
  while (left)
    cloop_run_once(loop, -1);
  double c1 = now(CLOCK_THREAD_CPUTIME_ID), w1 = now(CLOCK_MONOTONIC);
  cloop_close_fd(loop, sfd);
  pthread_join(th, NULL);
  printf("%zu %.1f %.0f\n", size, (c1 - c0) * 1e9 / (total / 1000.0),
         total / 1e6 / (w1 - w0));
  cloop_loop_free(loop);
  return 0;
}
