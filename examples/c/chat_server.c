/* chat_server.c -- a line-based chat server on CLoop's coroutine level:
 * each line a client sends goes to every other client, prefixed with the
 * sender's name.
 *
 *   chat-server [--port P] [--host H] [--backend epoll|uring|auto]
 *
 * Prints "READY <port>" on stdout once listening (port 0, the default,
 * takes a free one), then serves until killed. Try it with a few
 * `nc 127.0.0.1 PORT`.
 *
 * Each client has two tasks: a reader (cloop_sock_recv_until up to a
 * newline) that broadcasts, and a writer that sends what is queued for the
 * client. The queue is what keeps a slow client from stalling everyone: a
 * broadcast only puts a copy of the line in each queue (cloop_queue_try_put)
 * and never waits; a client whose queue is full is too slow and is
 * disconnected. Bad input touches one client only: a line longer than
 * MAX_LINE is dropped with an error message to its sender, and a reset or
 * vanished peer just ends its own tasks (sends never raise SIGPIPE). */
#include <cloop.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MS 1000000LL
#define MAX_LINE 1024  /* bytes per line, the newline included */
#define QUEUE_LEN 64   /* lines waiting for one client before it is cut */

typedef struct client {
  struct client *prev, *next; /* the room */
  int fd;
  int leaving;          /* off the room: no more lines for it */
  cloop_task *reader;   /* its reader task (the client's owner) */
  cloop_queue out;      /* malloc'd lines for the writer; 0 ends it */
  intptr_t out_buf[QUEUE_LEN];
  char name[16];
} client;

static client *room; /* everyone connected; one loop thread, no lock */
static unsigned guests;

typedef struct config {
  const char *host;
  int port;
} config;

/* Queues a copy of text for c; a full queue disconnects c. */
static void send_to(client *c, const char *text) {
  if (c->leaving)
    return;
  char *copy = strdup(text);
  if (copy && cloop_queue_try_put(&c->out, (intptr_t)copy) == 0)
    return;
  free(copy);
  c->leaving = 1;               /* too slow (or out of memory): cut it */
  cloop_task_cancel(c->reader); /* its recv returns -ECANCELED */
}

static void broadcast(client *from, const char *text) {
  for (client *c = room; c; c = c->next)
    if (c != from)
      send_to(c, text);
}

/* The writer: sends the queued lines in order until it dequeues 0, is
   cancelled, or the peer is gone. */
static intptr_t writer(void *arg) {
  client *c = arg;
  for (;;) {
    intptr_t item;
    if (cloop_queue_get(&c->out, &item) < 0 || item == 0)
      break;
    char *line = (char *)item;
    ssize_t r = cloop_sock_sendall(c->fd, line, strlen(line));
    free(line);
    if (r < 0) {
      cloop_task_cancel(c->reader); /* the connection is broken */
      break;
    }
  }
  return 0;
}

static void join_room(client *c) {
  c->next = room;
  if (room)
    room->prev = c;
  room = c;
}

static void leave_room(client *c) {
  if (c->prev)
    c->prev->next = c->next;
  else
    room = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->leaving = 1;
}

/* Lets the writer send what is queued (a goodbye, say), for at most a
   second, then stops it. */
static void stop_writer(client *c, cloop_task *w) {
  if (cloop_queue_try_put(&c->out, 0) == 0) {
    cloop_deadline d;
    cloop_deadline_enter(&d, 1000 * MS);
    cloop_task_join(w);
    cloop_deadline_exit(&d);
  }
  if (!cloop_future_done(cloop_task_future(w))) {
    cloop_task_cancel(w);
    cloop_task_join(w);
  }
  cloop_task_release(w);
  intptr_t item;
  while (cloop_queue_try_get(&c->out, &item) == 0)
    free((char *)item);
}

/* The reader: the client's own task, spawned per connection. */
static intptr_t serve_client(void *arg) {
  cloop_loop *loop = cloop_task_loop(cloop_current_task());
  client *c = calloc(1, sizeof *c);
  char *line = malloc(MAX_LINE + 2), *msg = malloc(MAX_LINE + 64);
  cloop_task *w = NULL;
  if (!c || !line || !msg) {
    cloop_sock_close((int)(intptr_t)arg);
    goto out;
  }
  c->fd = (int)(intptr_t)arg;
  c->reader = cloop_current_task();
  cloop_queue_init(&c->out, c->out_buf, QUEUE_LEN);
  snprintf(c->name, sizeof c->name, "guest%u", ++guests);
  if (cloop_spawn(loop, &w, writer, c, "writer") < 0) {
    cloop_sock_close(c->fd);
    goto out;
  }
  snprintf(msg, MAX_LINE + 64, "* welcome, %s\n", c->name);
  send_to(c, msg);
  snprintf(msg, MAX_LINE + 64, "* %s joined\n", c->name);
  broadcast(c, msg);
  join_room(c);

  int skipping = 0; /* inside a line too long: dropping it up to its end */
  for (;;) {
    ssize_t n = cloop_sock_recv_until(c->fd, line, MAX_LINE, "\n", 1);
    if (n == CLOOP_ENODELIM) { /* MAX_LINE bytes, no newline: they are consumed */
      if (!skipping) {
        snprintf(msg, MAX_LINE + 64, "* error: line longer than %d bytes "
                 "dropped\n", MAX_LINE - 1);
        send_to(c, msg);
      }
      skipping = 1;
      continue;
    }
    if (n <= 0)
      break; /* EOF, a reset peer, or cancelled (too slow) */
    if (skipping) { /* the tail of the long line */
      skipping = line[n - 1] != '\n';
      continue;
    }
    if (line[n - 1] != '\n')
      line[n++] = '\n'; /* the last line before EOF had none */
    line[n] = 0;
    snprintf(msg, MAX_LINE + 64, "%s: %s", c->name, line);
    broadcast(c, msg);
  }

  leave_room(c);
  snprintf(msg, MAX_LINE + 64, "* %s left\n", c->name);
  broadcast(c, msg);
  stop_writer(c, w);
  cloop_sock_close(c->fd);
out:
  free(c);
  free(line);
  free(msg);
  return 0;
}

static intptr_t serve(void *arg) {
  const config *cfg = arg;
  cloop_loop *loop = cloop_task_loop(cloop_current_task());
  int lfd = cloop_tcp_listen(cfg->host, cfg->port, 128, 0);
  if (lfd < 0) {
    fprintf(stderr, "chat-server: listen on %s:%d: %s\n", cfg->host,
            cfg->port, cloop_strerror(lfd));
    return lfd;
  }
  fprintf(stderr, "chat-server: listening on %s:%d (%s)\n", cfg->host,
          cloop_sock_port(lfd), cloop_backend_name(cloop_loop_backend(loop)));
  printf("READY %d\n", cloop_sock_port(lfd));
  fflush(stdout);
  for (;;) {
    int fd = cloop_sock_accept(lfd);
    if (fd == -ECANCELED)
      break;
    if (fd < 0) { /* -EMFILE and the like: accept has paused already */
      fprintf(stderr, "chat-server: accept: %s\n", cloop_strerror(fd));
      continue;
    }
    if (cloop_spawn(loop, NULL, serve_client, (void *)(intptr_t)fd,
                    "client") < 0)
      cloop_sock_close(fd);
  }
  cloop_sock_close(lfd);
  return 0;
}

static int usage(void) {
  fprintf(stderr, "usage: chat-server [--port P] [--host H] "
                  "[--backend epoll|uring|auto]\n");
  return 2;
}

int main(int argc, char **argv) {
  config cfg = {"127.0.0.1", 0};
  cloop_options opts;
  cloop_options_init(&opts);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v)
      return usage();
    if (strcmp(a, "--port") == 0) {
      char *end;
      long p = strtol(v, &end, 10);
      if (*end || p < 0 || p > 65535)
        return usage();
      cfg.port = (int)p;
    } else if (strcmp(a, "--host") == 0) {
      cfg.host = v;
    } else if (strcmp(a, "--backend") == 0) {
      if (strcmp(v, "epoll") == 0)
        opts.backend = CLOOP_BACKEND_EPOLL;
      else if (strcmp(v, "uring") == 0 || strcmp(v, "io_uring") == 0)
        opts.backend = CLOOP_BACKEND_URING;
      else if (strcmp(v, "auto") != 0)
        return usage();
    } else {
      return usage();
    }
    i++;
  }
  intptr_t r = cloop_main(serve, &cfg, &opts);
  if (r < 0) {
    fprintf(stderr, "chat-server: %s\n", cloop_strerror((int)r));
    return 1;
  }
  return 0;
}
