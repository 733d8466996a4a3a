/* udp_echo.c -- a UDP echo server on CLoop's coroutine level: one task
 * receives a datagram and sends it back to its sender, in blocking style.
 * The cloop-epoll / cloop-uring server of the udp-echo benchmark
 * (bench/WORKLOADS.md).
 *
 *   udp-echo [--port P] [--host H] [--max N] [--backend epoll|uring|auto]
 *   udp-echo --probe-uring      exit 0 if an io_uring loop works here
 *
 * Prints "READY <port>" on stdout once bound, then serves until killed.
 * Bad input ends nothing: a datagram longer than --max (default 2048)
 * bytes is not echoed cut short -- its sender gets "ERR too long" -- and a
 * sender whose port is gone (an ICMP error on the next call) is skipped. */
#include <cloop.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct config {
  const char *host;
  int port;
  size_t max;
} config;

static intptr_t serve(void *arg) {
  const config *cfg = arg;
  int fd = cloop_udp_bind(cfg->host, cfg->port, 0);
  if (fd < 0) {
    fprintf(stderr, "udp-echo: bind %s:%d: %s\n", cfg->host, cfg->port,
            cloop_strerror(fd));
    return fd;
  }
  cloop_loop *loop = cloop_task_loop(cloop_current_task());
  fprintf(stderr, "udp-echo: on %s:%d (%s)\n", cfg->host, cloop_sock_port(fd),
          cloop_backend_name(cloop_loop_backend(loop)));
  printf("READY %d\n", cloop_sock_port(fd));
  fflush(stdout);
  char *buf = malloc(cfg->max);
  if (!buf)
    return -ENOMEM;
  static const char too_long[] = "ERR too long\n";
  for (;;) {
    struct sockaddr_storage from;
    socklen_t fromlen = sizeof from;
    int flags = 0;
    ssize_t n = cloop_udp_recvfrom(fd, buf, cfg->max, (struct sockaddr *)&from,
                                   &fromlen, &flags);
    if (n == -ECANCELED)
      break;
    if (n < 0) { /* e.g. -ECONNREFUSED for an earlier reply: go on */
      fprintf(stderr, "udp-echo: receive: %s\n", cloop_strerror((int)n));
      continue;
    }
    const void *reply = buf;
    size_t len = (size_t)n;
    if (flags & CLOOP_UDP_TRUNCATED) {
      reply = too_long;
      len = sizeof too_long - 1;
    }
    ssize_t w = cloop_udp_sendto(fd, reply, len, (struct sockaddr *)&from, fromlen);
    if (w < 0)
      fprintf(stderr, "udp-echo: send: %s\n", cloop_strerror((int)w));
  }
  free(buf);
  cloop_sock_close(fd);
  return 0;
}

static int usage(void) {
  fprintf(stderr, "usage: udp-echo [--port P] [--host H] [--max N] "
                  "[--backend epoll|uring|auto] | --probe-uring\n");
  return 2;
}

int main(int argc, char **argv) {
  config cfg = {"127.0.0.1", 0, 2048};
  cloop_options opts;
  cloop_options_init(&opts);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    char *end;
    if (strcmp(a, "--probe-uring") == 0) {
      cloop_loop *loop;
      opts.backend = CLOOP_BACKEND_URING;
      if (cloop_loop_new(&loop, &opts) < 0)
        return 1;
      cloop_loop_free(loop);
      return 0;
    } else if (strcmp(a, "--port") == 0 && v) {
      long p = strtol(v, &end, 10);
      if (*end || p < 0 || p > 65535)
        return usage();
      cfg.port = (int)p;
      i++;
    } else if (strcmp(a, "--max") == 0 && v) {
      long m = strtol(v, &end, 10);
      if (*end || m < 1 || m > 65536)
        return usage();
      cfg.max = (size_t)m;
      i++;
    } else if (strcmp(a, "--host") == 0 && v) {
      cfg.host = v;
      i++;
    } else if (strcmp(a, "--backend") == 0 && v) {
      if (strcmp(v, "epoll") == 0)
        opts.backend = CLOOP_BACKEND_EPOLL;
      else if (strcmp(v, "uring") == 0 || strcmp(v, "io_uring") == 0)
        opts.backend = CLOOP_BACKEND_URING;
      else if (strcmp(v, "auto") == 0)
        opts.backend = CLOOP_BACKEND_AUTO;
      else
        return usage();
      i++;
    } else {
      return usage();
    }
  }
  intptr_t r = cloop_main(serve, &cfg, &opts);
  if (r < 0) {
    fprintf(stderr, "udp-echo: %s\n", cloop_strerror((int)r));
    return 1;
  }
  return 0;
}
