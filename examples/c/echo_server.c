/* echo_server.c -- a TCP echo server on CLoop's coroutine level: one task
 * per connection, each reading up to 256 KiB and writing it all back, in
 * blocking style. The server of the echo, echo-1 and stream benchmarks
 * (../../shared/peers/WORKLOADS.md).
 *
 *   echo-server [--port P] [--host H] [--backend epoll|uring|auto]
 *               [--loops N [--acceptor]]
 *   echo-server --probe-uring      exit 0 if an io_uring loop works here
 *
 * Prints READY on stdout once listening, then serves until killed. A peer
 * that resets or vanishes ends its own task only (sends never raise
 * SIGPIPE); running out of file descriptors pauses accepting (cloop's
 * accept waits 10 ms) instead of spinning.
 *
 * --loops N (default 0: one per CPU of the affinity mask, as the Swift
 * examples) serves on a cloop_group of N loops, one per thread, each
 * with its own listening socket on the port (SO_REUSEPORT: the kernel
 * spreads the connections), or with --acceptor one socket on loop 0 that
 * hands each connection round-robin to a loop. A connection is served by
 * the same task as with one loop, on the loop it was given to. SIGTERM or
 * SIGINT stops the group gracefully (1 s for the connections in flight).
 * --loops 1 keeps the single-loop path of before: no group, no hand-off
 * (the benchmarks run it so). */
#include <cloop.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What asyncio (256 KiB) and uvloop (250 KB) read at a time. */
#define READ_SIZE (256 * 1024)

typedef struct config {
  const char *host;
  int port;
  int loops;    /* 1: one loop on this thread; 0: the affinity mask's CPUs */
  int acceptor; /* with a group: one acceptor instead of SO_REUSEPORT */
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

/* ---- several loops: a cloop_group ------------------------------------ */

/* On the loop that is to serve fd (cloop_group_listen's callback). */
static void on_group_conn(cloop_loop *loop, int fd, void *arg) {
  (void)arg;
  if (cloop_spawn(loop, NULL, serve_connection, (void *)(intptr_t)fd,
                  "conn") < 0) {
    fprintf(stderr, "echo-server: out of memory for a connection\n");
    cloop_sock_close(fd);
  }
}

/* Serves on a group until SIGTERM or SIGINT. The signals are blocked
   before the loops' threads start (they inherit the mask), so they reach
   the sigwait of this thread only. */
static int serve_group(const config *cfg, const cloop_options *opts) {
  sigset_t stops;
  sigemptyset(&stops);
  sigaddset(&stops, SIGTERM);
  sigaddset(&stops, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stops, NULL);
  cloop_group_options go;
  cloop_group_options_init(&go);
  go.loops = cfg->loops;
  go.loop = *opts;
  cloop_group *g;
  int r = cloop_group_start(&g, &go);
  if (r < 0) {
    fprintf(stderr, "echo-server: starting the loops: %s\n", cloop_strerror(r));
    return 1;
  }
  int port = cloop_group_listen(g, cfg->host, cfg->port, 4096,
                                cfg->acceptor ? CLOOP_GROUP_ACCEPTOR : 0,
                                on_group_conn, NULL);
  if (port < 0) {
    fprintf(stderr, "echo-server: listen on %s:%d: %s\n", cfg->host,
            cfg->port, cloop_strerror(port));
    cloop_group_stop(g, 0);
    return 1;
  }
  fprintf(stderr, "echo-server: listening on %s:%d (%s, %d loops, %s)\n",
          cfg->host, port,
          cloop_backend_name(cloop_loop_backend(cloop_group_loop(g, 0))),
          cloop_group_size(g), cfg->acceptor ? "one acceptor" : "SO_REUSEPORT");
  printf("READY\n");
  fflush(stdout);
  int sig = 0;
  sigwait(&stops, &sig);
  fprintf(stderr, "echo-server: signal %d: stopping; connections per loop:", sig);
  for (int i = 0; i < cloop_group_size(g); i++)
    fprintf(stderr, " %llu", (unsigned long long)cloop_group_accepted(g, i));
  fprintf(stderr, "\n");
  r = cloop_group_stop(g, 1000 * 1000000LL);
  return r < 0 ? 1 : 0;
}

static int usage(void) {
  fprintf(stderr, "usage: echo-server [--port P] [--host H] "
                  "[--backend epoll|uring|auto] [--loops N [--acceptor]] "
                  "| --probe-uring\n");
  return 2;
}

int main(int argc, char **argv) {
  config cfg = {"127.0.0.1", 0, 0, 0};
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
    } else if (strcmp(a, "--loops") == 0 && v) {
      char *end;
      long n = strtol(v, &end, 10);
      if (*end || n < 0 || n > 1024)
        return usage();
      cfg.loops = (int)n;
      i++;
    } else if (strcmp(a, "--acceptor") == 0) {
      cfg.acceptor = 1;
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
  if (cfg.loops != 1 || cfg.acceptor)
    return serve_group(&cfg, &opts);
  /* One loop: a task accepting on this thread, connections served in place. */
  intptr_t r = cloop_main(serve, &cfg, &opts);
  if (r < 0) {
    fprintf(stderr, "echo-server: %s\n", cloop_strerror((int)r));
    return 1;
  }
  return 0;
}
