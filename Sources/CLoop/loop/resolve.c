/* resolve.c -- name resolution on the callback level, in libuv's
 * uv_getaddrinfo shape: a request in the caller's memory that completes
 * with a callback.
 *
 * A numeric host ("127.0.0.1", "::1") is parsed on the loop's thread with
 * AI_NUMERICHOST, which does no I/O. Anything else may read /etc/hosts or
 * ask a DNS server, so getaddrinfo runs on the loop's work pool (pool.c)
 * and its answer comes back through cloop_call_threadsafe -- unless the
 * request was cancelled first: then the lookup is abandoned, and the pool
 * thread frees its answer without touching the loop, which may be gone by
 * then. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loop/loop.h"

/* What the pool thread works on: the request may be cancelled and its
   memory reused meanwhile, so the lookup keeps its own copy of the name. */
struct cloop__lookup {
  cloop_work work;
  cloop_resolve *req;
  struct addrinfo hints;
  int gai, sys_errno;
  struct addrinfo *res;
  char port[8];
  char host[];
};

/* getaddrinfo's error as ours. */
static int lookup_error(int gai, int sys_errno) {
  switch (gai) {
  case 0: return 0;
  case EAI_AGAIN: return -EAGAIN;
  case EAI_MEMORY: return -ENOMEM;
  case EAI_SYSTEM: return sys_errno ? -sys_errno : -EIO;
  case EAI_FAMILY:
  case EAI_SOCKTYPE:
  case EAI_SERVICE:
  case EAI_BADFLAGS: return -EINVAL;
  default: return CLOOP_ENOHOST; /* EAI_NONAME, EAI_NODATA, EAI_FAIL */
  }
}

/* Runs the request's callback, once, from the ready ring. */
static void run_callback(void *arg) {
  cloop_resolve *req = arg;
  req->fn(req);
}

static void complete(cloop_resolve *req, int result, struct addrinfo *addrs) {
  req->lookup = NULL;
  req->result = result;
  req->addrs = addrs;
  cloop_handle_init(&req->handle, run_callback, req);
  cloop_call_soon(req->loop, &req->handle);
}

/* On a pool thread. */
static void lookup_run(cloop_work *w) {
  struct cloop__lookup *l = w->data;
  l->gai = getaddrinfo(l->host, l->port, &l->hints, &l->res);
  l->sys_errno = errno;
}

/* Back on the loop. */
static void lookup_done(cloop_work *w) {
  struct cloop__lookup *l = w->data;
  int r = lookup_error(l->gai, l->sys_errno);
  if (r < 0 && l->res) {
    freeaddrinfo(l->res);
    l->res = NULL;
  }
  cloop_resolve *req = l->req;
  struct addrinfo *res = l->res;
  free(l);
  /* Already in a batch: the callback runs now. */
  req->lookup = NULL;
  req->result = r;
  req->addrs = res;
  req->fn(req);
}

/* An abandoned lookup's end, on the pool thread (or the loop's): it owns
   its answer. */
static void lookup_drop(cloop_work *w) {
  struct cloop__lookup *l = w->data;
  if (l->res)
    freeaddrinfo(l->res);
  free(l);
}

int cloop_resolve_start(cloop_loop *loop, cloop_resolve *req, const char *host,
                        int port, int socktype, int flags, cloop_resolve_fn fn,
                        void *data) {
  CLOOP__CHECK(loop, "cloop_resolve_start");
  if (req->lookup || req->handle.link.next)
    cloop__misuse("cloop_resolve %p started again while in flight", (void *)req);
  if (!host || !fn || port < 0 || port > 65535)
    return -EINVAL;
  req->loop = loop;
  req->fn = fn;
  req->data = data;
  req->result = 0;
  req->addrs = NULL;
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = socktype;
  hints.ai_flags = AI_NUMERICSERV | (flags & AI_PASSIVE);
  char port_text[8];
  snprintf(port_text, sizeof port_text, "%d", port);

  /* A numeric host: no I/O, answered here (the callback still comes from
     the ready ring). */
  struct addrinfo numeric = hints, *res = NULL;
  numeric.ai_flags |= AI_NUMERICHOST;
  int gai = getaddrinfo(host, port_text, &numeric, &res);
  if (gai != EAI_NONAME) {
    int r = lookup_error(gai, errno);
    if (r < 0 && res) {
      freeaddrinfo(res);
      res = NULL;
    }
    complete(req, r, res);
    return 0;
  }

  size_t hlen = strlen(host);
  struct cloop__lookup *l = malloc(sizeof *l + hlen + 1);
  if (!l)
    return -ENOMEM;
  memset(l, 0, sizeof *l);
  memcpy(l->host, host, hlen + 1);
  memcpy(l->port, port_text, sizeof l->port);
  l->hints = hints;
  l->req = req;
  int r = cloop_queue_work(loop, &l->work, lookup_run, lookup_done, l);
  if (r < 0) {
    free(l);
    return r; /* -EAGAIN: no thread now */
  }
  req->lookup = l;
  return 0;
}

int cloop_resolve_cancel(cloop_resolve *req) {
  struct cloop__lookup *l = req->lookup;
  if (!l)
    return 0; /* answered (maybe queued: then its callback still runs) */
  CLOOP__CHECK(req->loop, "cloop_resolve_cancel");
  /* Not started: it never runs. Running: the pool thread frees its answer
     when getaddrinfo returns; the loop does not wait for it. */
  cloop_work_abandon(&l->work, lookup_drop);
  complete(req, -ECANCELED, NULL);
  return 1;
}

void cloop_resolve_free(cloop_resolve *req) {
  if (req->addrs)
    freeaddrinfo(req->addrs);
  req->addrs = NULL;
}
