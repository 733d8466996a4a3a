/* floor_udp.c -- the udp-echo floor: a minimal hand-written UDP echo
 * server with no loop library. One blocking socket; recvmmsg with
 * MSG_WAITFORONE takes every datagram waiting (at least one), and one
 * sendmmsg sends each back to its sender: two syscalls per batch, the
 * least a server can do without io_uring. Measured the same way as the
 * loops' servers (bench/project-bench udp-echo).
 *
 *   floor-udp [--port P]      prints "READY <port>", serves until killed */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define BATCH 64
#define SIZE 2048 /* bytes kept per datagram */

int main(int argc, char **argv) {
  int port = 0;
  if (argc == 3 && strcmp(argv[1], "--port") == 0)
    port = atoi(argv[2]);
  else if (argc != 1) {
    fprintf(stderr, "usage: floor-udp [--port P]\n");
    return 2;
  }
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
    perror("floor-udp: bind");
    return 1;
  }
  socklen_t len = sizeof sin;
  getsockname(fd, (struct sockaddr *)&sin, &len);
  printf("READY %d\n", ntohs(sin.sin_port));
  fflush(stdout);
  static char bufs[BATCH][SIZE];
  static struct sockaddr_storage peers[BATCH];
  static struct iovec iov[BATCH];
  static struct mmsghdr msgs[BATCH];
  for (;;) {
    for (int i = 0; i < BATCH; i++) {
      iov[i].iov_base = bufs[i];
      iov[i].iov_len = SIZE;
      memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
      msgs[i].msg_hdr.msg_name = &peers[i];
      msgs[i].msg_hdr.msg_namelen = sizeof peers[i];
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
    if (n < 0) {
      if (errno == EINTR || errno == ECONNREFUSED)
        continue;
      perror("floor-udp: recvmmsg");
      return 1;
    }
    for (int i = 0; i < n; i++)
      iov[i].iov_len = msgs[i].msg_len; /* send back what came */
    for (int sent = 0; sent < n;) {
      int k = sendmmsg(fd, msgs + sent, (unsigned)(n - sent), 0);
      if (k < 0 && errno == EINTR)
        continue;
      if (k <= 0)
        break; /* a refused peer: drop the rest of this batch */
      sent += k;
    }
  }
}
