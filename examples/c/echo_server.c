/* echo_server.c -- a TCP echo server on CLoop's coroutine level: one task
 * per connection, each reading up to 256 KiB and writing it all back, in
 * blocking style. The server of the echo, echo-1 and stream benchmarks
 * (../../shared/peers/WORKLOADS.md).
 *
 *   echo-server [--port P] [--host H] [--backend epoll|uring|auto]
 *   echo-server --probe-uring      exit 0 if an io_uring loop works here
 *
 * Prints READY on stdout once listening, then serves until killed. A peer
 * that resets or vanishes ends its own task only (sends never raise
 * SIGPIPE); running out of file descriptors pauses accepting (cloop's
 * accept waits 10 ms) instead of spinning. */
#include <cloop.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What asyncio (256 KiB) and uvloop (250 KB) read at a time. */
#define READ_SIZE (256 * 1024)

typedef struct config {
  const char *host;
  int port;
} config;

static intptr_t serve_connection(void *arg) {
  int fd = (int)(intptr_t)arg;
  char *buf = malloc(READ_SIZE);
  if (buf) {
    for (;;) {
      ssize_t n = cloop_sock_recv(fd, buf, READ_SIZE);
      if (n <= 0) /* EOF, a reset peer, or cancelled */
        break;
      if (cloop_sock_sendall(fd, buf, (size_t)n) < 0)
        break;
    }
    free(buf);
  }
  cloop_sock_close(fd);
  return 0;
}

static intptr_t serve(void *arg) {
  const config *cfg = arg;
  cloop_loop *loop = cloop_task_loop(cloop_current_task());
  int lfd = cloop_tcp_listen(cfg->host, cfg->port, 4096, 0);
  if (lfd < 0) {
    fprintf(stderr, "echo-server: listen on %s:%d: %s\n", cfg->host,
            cfg->port, cloop_strerror(lfd));
    return lfd;
  }
  fprintf(stderr, "echo-server: listening on %s:%d (%s)\n", cfg->host,
          cloop_sock_port(lfd), cloop_backend_name(cloop_loop_backend(loop)));
  printf("READY\n");
  fflush(stdout);
  for (;;) {
    int fd = cloop_sock_accept(lfd);
    if (fd == -ECANCELED)
      break;
    if (fd < 0) { /* -EMFILE and the like: accept has paused already */
      fprintf(stderr, "echo-server: accept: %s\n", cloop_strerror(fd));
      continue;
    }
    if (cloop_spawn(loop, NULL, serve_connection, (void *)(intptr_t)fd,
                    "conn") < 0) {
      fprintf(stderr, "echo-server: out of memory for a connection\n");
      cloop_sock_close(fd);
    }
  }
  cloop_sock_close(lfd);
  return 0;
}

static int usage(void) {
  fprintf(stderr, "usage: echo-server [--port P] [--host H] "
                  "[--backend epoll|uring|auto] | --probe-uring\n");
  return 2;
}

int main(int argc, char **argv) {
  config cfg = {"127.0.0.1", 0};
  cloop_options opts;
  cloop_options_init(&opts);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--probe-uring") == 0) {
      cloop_loop *loop;
      opts.backend = CLOOP_BACKEND_URING;
      if (cloop_loop_new(&loop, &opts) < 0)
        return 1;
      cloop_loop_free(loop);
      return 0;
    } else if (strcmp(a, "--port") == 0 && v) {
      char *end;
      long p = strtol(v, &end, 10);
      if (*end || p < 0 || p > 65535)
        return usage();
      cfg.port = (int)p;
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
    fprintf(stderr, "echo-server: %s\n", cloop_strerror((int)r));
    return 1;
  }
  return 0;
}
