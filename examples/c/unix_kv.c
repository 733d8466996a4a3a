/* unix_kv.c -- a key-value server on a Unix domain socket, the way a local
 * service talks to its clients: one task per connection, a line protocol,
 * and a graceful stop on SIGTERM or SIGINT.
 *
 *   unix-kv --path /tmp/kv.sock [--backend epoll|uring|auto] [--drain-seconds S]
 *
 *   SET key value     ->  OK
 *   GET key           ->  VALUE value  |  NOT_FOUND
 *   DEL key           ->  OK  |  NOT_FOUND
 *   QUIT              ->  BYE, then the server closes the connection
 *
 * Keys and values are words (no spaces in a key; a value is the rest of
 * the line). A line over 1 KiB gets "ERR line too long" and the connection
 * is closed; an unknown command gets "ERR unknown command" and the
 * connection goes on. A stale socket file left by a dead server is
 * replaced (CLOOP_UNLINK_STALE); a live server's is not.
 *
 * Prints READY once listening. On SIGTERM or SIGINT it stops accepting,
 * gives the connections in flight --drain-seconds (default 5) to finish,
 * cancels what is left, removes its socket file and exits 0. */
#include <cloop.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_LINE 1024
#define MS 1000000LL

/* ---- the store: a small chained hash table ------------------------------ */

typedef struct entry {
  struct entry *next;
  char *key, *value;
} entry;

static entry *table[1024];

static unsigned hash(const char *s) {
  unsigned h = 2166136261u; /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 16777619u;
  return h % (sizeof table / sizeof table[0]);
}

static entry **find(const char *key) {
  entry **e = &table[hash(key)];
  while (*e && strcmp((*e)->key, key) != 0)
    e = &(*e)->next;
  return e;
}

static int set(const char *key, const char *value) {
  entry **e = find(key);
  char *v = strdup(value);
  if (!v)
    return -ENOMEM;
  if (*e) {
    free((*e)->value);
    (*e)->value = v;
    return 0;
  }
  entry *n = malloc(sizeof *n);
  if (!n || !(n->key = strdup(key))) {
    free(n);
    free(v);
    return -ENOMEM;
  }
  n->value = v;
  n->next = NULL;
  *e = n;
  return 0;
}

static int del(const char *key) {
  entry **e = find(key);
  if (!*e)
    return 0;
  entry *gone = *e;
  *e = gone->next;
  free(gone->key);
  free(gone->value);
  free(gone);
  return 1;
}

/* ---- a connection ---------------------------------------------------------- */

static int live_connections;

static int reply(int fd, const char *a, const char *b) {
  char out[MAX_LINE + 16];
  int n = snprintf(out, sizeof out, "%s%s\n", a, b ? b : "");
  return cloop_sock_sendall(fd, out, (size_t)n) < 0 ? -1 : 0;
}

/* One request; returns 0 to go on, 1 to close. */
static int handle(int fd, char *line) {
  char *cmd = strtok(line, " "), *key = strtok(NULL, " ");
  char *value = key ? strtok(NULL, "") : NULL;
  if (!cmd)
    return reply(fd, "ERR empty line", NULL);
  if (strcmp(cmd, "QUIT") == 0) {
    reply(fd, "BYE", NULL);
    return 1;
  }
  if (strcmp(cmd, "SET") == 0 && key && value)
    return set(key, value) == 0 ? reply(fd, "OK", NULL) : reply(fd, "ERR out of memory", NULL);
  if (strcmp(cmd, "GET") == 0 && key) {
    entry *e = *find(key);
    return e ? reply(fd, "VALUE ", e->value) : reply(fd, "NOT_FOUND", NULL);
  }
  if (strcmp(cmd, "DEL") == 0 && key)
    return reply(fd, del(key) ? "OK" : "NOT_FOUND", NULL);
  return reply(fd, "ERR unknown command", NULL);
}

static intptr_t serve_connection(void *arg) {
  int fd = (int)(intptr_t)arg;
  char line[MAX_LINE + 1];
  live_connections++;
  for (;;) {
    ssize_t n = cloop_sock_recv_until(fd, line, MAX_LINE, "\n", 1);
    if (n == CLOOP_ENODELIM) {
      reply(fd, "ERR line too long", NULL);
      break;
    }
    if (n <= 0) /* EOF, a reset, or cancelled while draining */
      break;
    if (line[n - 1] != '\n')
      break; /* EOF in the middle of a line: the client is gone */
    line[n - 1] = 0;
    if (n >= 2 && line[n - 2] == '\r')
      line[n - 2] = 0;
    if (handle(fd, line) != 0)
      break;
  }
  cloop_sock_close(fd);
  live_connections--;
  return 0;
}

/* ---- the server -------------------------------------------------------------- */

typedef struct config {
  const char *path;
  int64_t drain_ns;
  int lfd;
  cloop_task *acceptor;
} config;

static intptr_t accept_loop(void *arg) {
  config *cfg = arg;
  cloop_loop *loop = cloop_task_loop(cloop_current_task());
  for (;;) {
    int fd = cloop_sock_accept(cfg->lfd);
    if (fd == -ECANCELED || fd == -EBADF)
      return 0; /* stopping */
    if (fd < 0)
      continue; /* out of fds: the accept paused already */
    if (cloop_spawn(loop, NULL, serve_connection, (void *)(intptr_t)fd, "conn") < 0)
      cloop_sock_close(fd);
  }
}

/* Either signal sets the stop event: a callback, run from the ready ring
   like any other, never inside a signal handler. */
static cloop_event stop;

static void on_stop_signal(void *arg) {
  (void)arg;
  cloop_event_set(&stop);
}

static intptr_t serve(void *arg) {
  config *cfg = arg;
  cloop_loop *loop = cloop_task_loop(cloop_current_task());
  cloop_signal term, intr;
  cloop_signal_init(&term);
  cloop_signal_init(&intr);
  cloop_event_init(&stop);
  int r = cloop_signal_start(loop, &term, SIGTERM, on_stop_signal, NULL);
  if (r == 0)
    r = cloop_signal_start(loop, &intr, SIGINT, on_stop_signal, NULL);
  if (r < 0) {
    fprintf(stderr, "unix-kv: watching signals: %s\n", cloop_strerror(r));
    return r;
  }
  cfg->lfd = cloop_unix_listen(cfg->path, 512, CLOOP_UNLINK_STALE);
  if (cfg->lfd < 0) {
    fprintf(stderr, "unix-kv: listen on %s: %s\n", cfg->path, cloop_strerror(cfg->lfd));
    cloop_signal_stop(&term);
    cloop_signal_stop(&intr);
    return cfg->lfd;
  }
  fprintf(stderr, "unix-kv: listening on %s (%s)\n", cfg->path,
          cloop_backend_name(cloop_loop_backend(loop)));
  printf("READY\n");
  fflush(stdout);
  if ((r = cloop_spawn(loop, &cfg->acceptor, accept_loop, cfg, "acceptor")) < 0)
    return r;

  cloop_event_wait(&stop);
  fprintf(stderr, "unix-kv: stopping: %d connection(s) in flight\n", live_connections);
  /* 1. Stop accepting: the socket file goes, new clients are refused. */
  cloop_task_cancel(cfg->acceptor);
  cloop_task_join(cfg->acceptor);
  cloop_task_release(cfg->acceptor);
  cloop_sock_close(cfg->lfd);
  unlink(cfg->path);
  /* 2. Let what is in flight finish, within the deadline. */
  uint64_t until = cloop_now(loop) + (uint64_t)cfg->drain_ns;
  while (live_connections > 0 && cloop_now(loop) < until)
    cloop_sleep(10 * MS);
  if (live_connections > 0)
    fprintf(stderr, "unix-kv: %d connection(s) still open after the drain; "
                    "closing them\n", live_connections);
  cloop_signal_stop(&term);
  cloop_signal_stop(&intr);
  /* 3. Returning ends cloop_main, which cancels what is left. */
  return 0;
}

int main(int argc, char **argv) {
  config cfg = {NULL, 5000 * MS, -1, NULL};
  cloop_options opts;
  cloop_options_init(&opts);
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--path") == 0 && i + 1 < argc) {
      cfg.path = argv[++i];
    } else if (strcmp(argv[i], "--drain-seconds") == 0 && i + 1 < argc) {
      cfg.drain_ns = (int64_t)(atof(argv[++i]) * 1e9);
    } else if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) {
      const char *b = argv[++i];
      opts.backend = strcmp(b, "epoll") == 0   ? CLOOP_BACKEND_EPOLL
                     : strcmp(b, "uring") == 0 ? CLOOP_BACKEND_URING
                                               : CLOOP_BACKEND_AUTO;
    } else {
      fprintf(stderr, "usage: unix-kv --path P [--backend epoll|uring|auto] "
                      "[--drain-seconds S]\n");
      return 2;
    }
  }
  if (!cfg.path) {
    fprintf(stderr, "unix-kv: --path is required\n");
    return 2;
  }
  intptr_t r = cloop_main(serve, &cfg, &opts);
  if (r == CLOOP_ENOBACKEND) {
    fprintf(stderr, "unix-kv: %s\n", cloop_strerror((int)r));
    return 77;
  }
  return r == 0 ? 0 : 1;
}
