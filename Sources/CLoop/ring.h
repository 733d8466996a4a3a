/* ring.h -- the intrusive ready ring: a circular doubly-linked list of
 * handles with a sentinel, in the manner of libuv's queue.h.
 *
 * Handles carry their own links, so queueing allocates nothing, and a
 * queued handle can be taken out in O(1) wherever it sits (the loop's ring
 * or the batch being run). An idle handle has next == prev == NULL. */
#ifndef CLOOP_RING_H
#define CLOOP_RING_H

#include "cloop.h"

static inline void ring_init(cloop_handle *head) {
  head->next = head->prev = head;
}

static inline int ring_empty(const cloop_handle *head) {
  return head->next == head;
}

/* Appends h at the tail. */
static inline void ring_push(cloop_handle *head, cloop_handle *h) {
  cloop_handle *tail = head->prev;
  h->next = head;
  h->prev = tail;
  tail->next = h;
  head->prev = h;
}

/* Unlinks h from whatever ring holds it and marks it idle. */
static inline void ring_remove(cloop_handle *h) {
  h->prev->next = h->next;
  h->next->prev = h->prev;
  h->next = h->prev = NULL;
}

/* Removes and returns the first handle; the ring must not be empty. */
static inline cloop_handle *ring_pop(cloop_handle *head) {
  cloop_handle *h = head->next;
  ring_remove(h);
  return h;
}

/* Moves every handle of `from` to the tail of `to`; `from` ends empty. */
static inline void ring_splice(cloop_handle *to, cloop_handle *from) {
  if (ring_empty(from))
    return;
  cloop_handle *first = from->next, *last = from->prev;
  first->prev = to->prev;
  to->prev->next = first;
  last->next = to;
  to->prev = last;
  ring_init(from);
}

#endif
