/* floor_echo.c -- the floor for the echo workloads: a minimal hand-written
 * epoll echo server with no event loop library, so that the benchmark
 * table shows what an echo costs on this machine before any loop adds its
 * own work. One thread, level-triggered epoll, non-blocking sockets,
 * TCP_NODELAY, 256 KiB reads (as the peers), and a write of what was read
 * before the next read; a short write parks the rest and waits for EPOLLOUT.
 *
 *   floor-echo --port P     prints READY once listening; serves until killed
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF (256 * 1024)

typedef struct conn {
  int fd;
  char *pending; /* bytes read but not yet written back */
  size_t len, off;
} conn;

static void drop(int ep, conn *c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  free(c->pending);
  free(c);
}

/* Writes what is pending; 1 when all went out, 0 to wait, -1 on error. */
static int flush(conn *c) {
  while (c->off < c->len) {
    ssize_t n = send(c->fd, c->pending + c->off, c->len - c->off, MSG_NOSIGNAL);
    if (n < 0)
      return errno == EAGAIN ? 0 : -1;
    c->off += (size_t)n;
  }
  c->len = c->off = 0;
  return 1;
}

int main(int argc, char **argv) {
  int port = 0;
  for (int i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], "--port") == 0)
      port = atoi(argv[i + 1]);
  signal(SIGPIPE, SIG_IGN);
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, SOMAXCONN) < 0) {
    perror("floor-echo: bind/listen");
    return 1;
  }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  static char buf[BUF];
  printf("READY\n");
  fflush(stdout);
  struct epoll_event events[256];
  for (;;) {
    int n = epoll_wait(ep, events, 256, -1);
    for (int i = 0; i < n; i++) {
      conn *c = events[i].data.ptr;
      if (!c) { /* the listener */
        int fd;
        while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          conn *nc = calloc(1, sizeof *nc);
          nc->fd = fd;
          struct epoll_event cev = {.events = EPOLLIN, .data.ptr = nc};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
        }
        continue;
      }
      if (c->len) { /* writable again: finish the parked write */
        int r = flush(c);
        if (r < 0) {
          drop(ep, c);
        } else if (r > 0) {
          struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
          epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
        }
        continue;
      }
      ssize_t got = recv(c->fd, buf, BUF, 0);
      if (got <= 0) {
        if (got < 0 && errno == EAGAIN)
          continue;
        drop(ep, c);
        continue;
      }
      ssize_t sent = send(c->fd, buf, (size_t)got, MSG_NOSIGNAL);
      if (sent < 0 && errno != EAGAIN) {
        drop(ep, c);
        continue;
      }
      if (sent < 0)
        sent = 0;
      if (sent < got) { /* park the rest; wait until writable */
        c->pending = realloc(c->pending, (size_t)(got - sent));
        memcpy(c->pending, buf + sent, (size_t)(got - sent));
        c->len = (size_t)(got - sent);
        c->off = 0;
        struct epoll_event cev = {.events = EPOLLOUT, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
      }
    }
  }
}
