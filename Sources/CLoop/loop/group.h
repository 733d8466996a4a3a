/* group.h -- a group of loops (group.c) and its listeners (group_listen.c):
 * what the two files share. Internal. */
#ifndef CLOOP_GROUP_H
#define CLOOP_GROUP_H

#include <pthread.h>
#include <stdatomic.h>

#include "cloop.h"
#include "loop/loop.h"

struct cloop__group_part;

/* Where loop i's thread is in its life; read and written by that thread
   only, but for `phase >= PHASE_CLOSING`, which group_listen.c's hand-off
   reads there too. */
enum { PHASE_RUNNING = 0, PHASE_DRAINING, PHASE_CLOSING };

/* One loop and its thread. A cache line of its own (and more): the loops
   share nothing on their hot paths, not even a line. */
typedef struct cloop__group_slot {
  struct cloop_group *g;
  int index;
  int cpu;                  /* -1: not pinned */
  pthread_t thread;
  cloop_loop *loop;
  cloop_handle stop;        /* queued by cloop_group_stop */
  int phase;
  int free_result;          /* what cloop_loop_free returned */
  struct cloop__group_part *parts; /* its share of the group's listeners */
  _Atomic uint64_t accepted;       /* cloop_group_accepted */
  unsigned handoff_next;    /* the acceptor's round-robin, loop thread only */
} __attribute__((aligned(128))) cloop__group_slot;

struct cloop_group {
  int n;
  cloop_group_options opts;
  cloop__group_slot *slots; /* n of them */
  _Atomic unsigned next;    /* cloop_group_next */
  pthread_mutex_t lock;     /* the start and stop hand-shakes below */
  pthread_cond_t cond;
  int started;              /* threads past cloop_loop_new */
  int start_error;          /* the first loop's failure */
  int go;                   /* 1: run, -1: give up (start failed) */
  _Atomic int arrived;      /* threads done closing (stop's barrier) */
  uint64_t drain_until;     /* CLOCK_MONOTONIC ns */
  pthread_mutex_t listen_lock; /* cloop_group_listen callers */
  struct cloop__group_part *all_parts; /* every listener part, for freeing */
};

/* On slot's thread, at stop: closes its share of the listeners. */
void cloop__group_listeners_close(cloop__group_slot *s);
/* After the threads are joined: frees what the listeners allocated. */
void cloop__group_listeners_free(struct cloop_group *g);

#endif
