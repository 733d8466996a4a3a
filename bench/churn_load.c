/* churn_load.c -- the load of the churn workload: connections that open,
 * send one request, read its echo and close, as fast as the server takes
 * them, PARALLEL at a time, for a warm-up and then a counted period; every
 * echoed byte checked.
 *
 *   churn-load --port P --pid SERVER_PID --impl NAME [--seconds S]
 *              [--parallel N] [--size B]
 *
 * Prints three RESULT lines (WORKLOADS.md): connections per second
 * counted, the server's peak RSS (VmHWM from /proc/PID/status) in MiB, and
 * that peak less its RSS before the load (MiB-over-idle: what the load
 * cost, without the runtime's resident libraries). A
 * mismatch, a refused or reset connection is a failed run: exit 1. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct conn {
  int fd;
  size_t sent, got;
  int connected;
} conn;

static int port, parallel = 64, size = 64;
static unsigned char msg[4096];

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "churn-load: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void open_one(int ep, conn *c) {
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0)
    die("socket");
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(c->fd, (struct sockaddr *)&to, sizeof to) < 0 && errno != EINPROGRESS)
    die("connect");
  c->sent = c->got = 0;
  c->connected = 0;
  struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
    die("epoll_ctl");
}

/* Progress on c; returns 1 when its round trip is done (then it is closed). */
static int step(conn *c) {
  if (c->sent < (size_t)size) {
    ssize_t n = send(c->fd, msg + c->sent, (size_t)size - c->sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != ENOTCONN)
      die("send");
    if (n > 0)
      c->sent += (size_t)n;
  }
  unsigned char buf[4096];
  for (;;) {
    ssize_t n = recv(c->fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == ENOTCONN))
      return 0;
    if (n < 0)
      die("recv");
    if (n == 0) {
      fprintf(stderr, "churn-load: the server closed a connection after %zu of %d bytes\n",
              c->got, size);
      exit(1);
    }
    if (c->got + (size_t)n > (size_t)size || memcmp(buf, msg + c->got, (size_t)n) != 0) {
      fprintf(stderr, "churn-load: echo mismatch\n");
      exit(1);
    }
    c->got += (size_t)n;
    if (c->got == (size_t)size) {
      close(c->fd);
      return 1;
    }
  }
}

/* A figure of /proc/PID/status in MiB: "VmHWM:" (the peak RSS) or
   "VmRSS:" (the RSS now). */
static double status_mib(int pid, const char *field) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE *f = fopen(path, "r");
  double kib = 0;
  if (f) {
    while (fgets(line, sizeof line, f))
      if (strncmp(line, field, strlen(field)) == 0)
        kib = atof(line + strlen(field));
    fclose(f);
  }
  return kib / 1024;
}

int main(int argc, char **argv) {
  int pid = 0;
  double seconds = 5, warmup = 1;
  const char *impl = "project";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--pid")) pid = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--impl")) impl = argv[i + 1];
    else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
    else if (!strcmp(argv[i], "--parallel")) parallel = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--size")) size = atoi(argv[i + 1]);
  }
  if (!port || parallel <= 0 || size <= 0 || size > (int)sizeof msg) {
    fprintf(stderr, "usage: churn-load --port P --pid PID --impl NAME "
                    "[--seconds S] [--parallel N] [--size B <= 4096]\n");
    return 2;
  }
  for (int i = 0; i < size; i++)
    msg[i] = (unsigned char)(i * 7 + 3);
  /* The server's RSS before any load: what its runtime costs (the Swift
     runtime's libraries are resident before the first connection). */
  double idle_mib = pid ? status_mib(pid, "VmRSS:") : 0;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  conn *conns = calloc((size_t)parallel, sizeof *conns);
  for (int i = 0; i < parallel; i++)
    open_one(ep, &conns[i]);
  struct epoll_event evs[256];
  double start = now_s(), count_from = start + warmup, end = count_from + seconds;
  long counted = 0;
  for (;;) {
    double t = now_s();
    if (t >= end)
      break;
    int n = epoll_wait(ep, evs, 256, 100);
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      if (step(c)) {
        if (now_s() >= count_from)
          counted++;
        open_one(ep, c); /* the next connection in its place */
      }
    }
  }
  printf("RESULT workload=churn impl=%s n=%d value=%.2f unit=conn/s\n", impl,
         parallel, counted / seconds);
  if (pid) {
    double peak = status_mib(pid, "VmHWM:");
    printf("RESULT workload=churn impl=%s n=%d value=%.2f unit=MiB\n", impl,
           parallel, peak);
    /* What the load added: the peak over the idle RSS. */
    printf("RESULT workload=churn impl=%s n=%d value=%.2f unit=MiB-over-idle\n",
           impl, parallel, peak - idle_mib);
  }
  return 0;
}
