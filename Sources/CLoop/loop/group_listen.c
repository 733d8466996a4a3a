/* group_listen.c -- listening across a group (cloop_group_listen): a
 * socket per loop with SO_REUSEPORT, or one acceptor handing fds out.
 *
 * A listener is a part per loop: its acceptor (cloop_acceptor, the
 * callback level's accept policy), started and closed on that loop's
 * thread. With SO_REUSEPORT every part has its own socket and the kernel
 * spreads connections; a connection is served where it was accepted, so
 * nothing crosses threads. With CLOOP_GROUP_ACCEPTOR only loop 0's part
 * accepts, and each fd goes round-robin to a loop through its thread-safe
 * call: one malloc and one cross-thread hand-off per connection, the price
 * of one socket. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "loop/group.h"

typedef struct cloop__group_part {
  struct cloop__group_part *next; /* the slot's list */
  struct cloop__group_part *all;  /* the group's list, for freeing */
  cloop__group_slot *slot;
  cloop_acceptor acc;
  cloop_handle start;             /* queued to the loop by cloop_group_listen */
  int fd;                         /* -1 once closed */
  int acceptor_mode;
  int closing;
  cloop_group_conn_fn fn;
  void *arg;
} part;

/* A connection on its way from the acceptor to the loop that serves it. */
typedef struct handoff {
  cloop_handle h;
  cloop__group_slot *slot;        /* the receiving loop's */
  int fd;
  cloop_group_conn_fn fn;
  void *arg;
} handoff;

static void deliver(cloop__group_slot *s, int fd, cloop_group_conn_fn fn, void *arg) {
  atomic_fetch_add_explicit(&s->accepted, 1, memory_order_relaxed);
  fn(s->loop, fd, arg);
}

static void on_handoff(void *arg) {
  handoff *h = arg;
  if (h->slot->phase >= PHASE_CLOSING)
    close(h->fd); /* its tasks are being cancelled: nobody would serve it */
  else
    deliver(h->slot, h->fd, h->fn, h->arg);
  free(h);
}

static void on_accept(cloop_acceptor *a) {
  part *p = a->data;
  cloop__group_slot *s = p->slot;
  int fd = a->result;
  if (fd >= 0 && !p->acceptor_mode) {
    deliver(s, fd, p->fn, p->arg);
  } else if (fd >= 0) {
    cloop_group *g = s->g;
    cloop__group_slot *to = &g->slots[s->handoff_next++ % (unsigned)g->n];
    handoff *h = to == s ? NULL : malloc(sizeof *h);
    if (to == s) {
      deliver(s, fd, p->fn, p->arg);
    } else if (!h) {
      close(fd); /* out of memory: the client sees a reset */
    } else {
      h->slot = to;
      h->fd = fd;
      h->fn = p->fn;
      h->arg = p->arg;
      cloop_handle_init(&h->h, on_handoff, h);
      cloop_call_threadsafe(to->loop, &h->h);
    }
  }
  if (p->closing || fd == -ECANCELED) {
    close(p->fd);
    p->fd = -1;
    return;
  }
  /* Other errors (EMFILE and the like) were paused on by the acceptor. */
  if (cloop_accept_start(s->loop, &p->acc, p->fd, on_accept, p) < 0) {
    close(p->fd);
    p->fd = -1;
  }
}

/* On the part's loop: links it into the slot's list (only this thread
   walks that list) and starts accepting -- unless the loop is stopping. */
static void on_start(void *arg) {
  part *p = arg;
  cloop__group_slot *s = p->slot;
  p->next = s->parts;
  s->parts = p;
  if (s->phase != PHASE_RUNNING ||
      cloop_accept_start(s->loop, &p->acc, p->fd, on_accept, p) < 0) {
    close(p->fd);
    p->fd = -1;
  }
}

/* Stop accepting: each accepting part is cancelled, and its callback
   (-ECANCELED, or a connection that was accepted already, which is still
   served) closes the socket. */
void cloop__group_listeners_close(cloop__group_slot *s) {
  for (part *p = s->parts; p; p = p->next) {
    p->closing = 1;
    if (p->fd >= 0)
      cloop_accept_cancel(&p->acc);
  }
}

void cloop__group_listeners_free(cloop_group *g) {
  while (g->all_parts) {
    part *p = g->all_parts;
    g->all_parts = p->all;
    if (p->fd >= 0) /* its start never ran */
      close(p->fd);
    free(p);
  }
}

static part *part_new(cloop_group *g, int i, int fd, int acceptor_mode,
                      cloop_group_conn_fn fn, void *arg) {
  part *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->slot = &g->slots[i];
  p->fd = fd;
  p->acceptor_mode = acceptor_mode;
  p->fn = fn;
  p->arg = arg;
  cloop_handle_init(&p->start, on_start, p);
  return p;
}

int cloop_group_listen(cloop_group *g, const char *host, int port, int backlog,
                       int flags, cloop_group_conn_fn fn, void *arg) {
  int acceptor_mode = (flags & CLOOP_GROUP_ACCEPTOR) != 0;
  int nparts = acceptor_mode ? 1 : g->n;
  part **ps = calloc((size_t)nparts, sizeof *ps);
  if (!ps)
    return -ENOMEM;
  int r = 0, made = 0;
  for (; made < nparts; made++) {
    /* The first socket picks the port when port is 0; the rest share it. */
    int fd = cloop_tcp_listen(host, port, backlog,
                              acceptor_mode ? 0 : CLOOP_REUSEPORT);
    if (fd < 0) {
      r = fd;
      break;
    }
    if (port == 0)
      port = cloop_sock_port(fd);
    if (!(ps[made] = part_new(g, made, fd, acceptor_mode, fn, arg))) {
      close(fd);
      r = -ENOMEM;
      break;
    }
  }
  if (r < 0) {
    for (int i = 0; i < made; i++) {
      close(ps[i]->fd);
      free(ps[i]);
    }
    free(ps);
    return r;
  }
  pthread_mutex_lock(&g->listen_lock);
  for (int i = 0; i < nparts; i++) {
    ps[i]->all = g->all_parts;
    g->all_parts = ps[i];
  }
  pthread_mutex_unlock(&g->listen_lock);
  for (int i = 0; i < nparts; i++)
    cloop_call_threadsafe(ps[i]->slot->loop, &ps[i]->start);
  free(ps);
  return port;
}
