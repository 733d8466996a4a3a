/* list.h -- the library's one intrusive list: circular and doubly linked,
 * with a sentinel, in the manner of libuv's queue.h. The ready ring, a
 * future's waiters, a primitive's waiting list and a loop's tasks are all
 * lists of cloop_link (cloop.h) embedded in their nodes.
 *
 * Nodes carry their own links, so linking allocates nothing, and a node can
 * be unlinked in O(1) wherever it sits, without its list's head. An
 * unlinked node has next == prev == NULL. A head must not move once
 * initialised: its empty state points to itself. */
#ifndef CLOOP_LIST_H
#define CLOOP_LIST_H

#include <stddef.h>

#include "cloop.h"

/* The struct of `type` whose `member` is at ptr. */
#define CLOOP__CONTAINER(ptr, type, member) \
  ((type *)((char *)(ptr) - offsetof(type, member)))

static inline void list_init(cloop_link *head) {
  head->next = head->prev = head;
}

static inline int list_empty(const cloop_link *head) {
  return head->next == head;
}

/* Appends n at the tail. */
static inline void list_push(cloop_link *head, cloop_link *n) {
  cloop_link *tail = head->prev;
  n->next = head;
  n->prev = tail;
  tail->next = n;
  head->prev = n;
}

/* Unlinks n from whatever list holds it and marks it unlinked. */
static inline void list_remove(cloop_link *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->next = n->prev = NULL;
}

/* Removes and returns the first node; the list must not be empty. */
static inline cloop_link *list_pop(cloop_link *head) {
  cloop_link *n = head->next;
  list_remove(n);
  return n;
}

/* Moves every node of `from` to the tail of `to`; `from` ends empty. */
static inline void list_splice(cloop_link *to, cloop_link *from) {
  if (list_empty(from))
    return;
  cloop_link *first = from->next, *last = from->prev;
  first->prev = to->prev;
  to->prev->next = first;
  last->next = to;
  to->prev = last;
  list_init(from);
}

/* The handle whose link is l (a handle's link is its first member). */
static inline cloop_handle *list_handle(cloop_link *l) {
  return (cloop_handle *)l;
}

#endif
