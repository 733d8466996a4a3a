/* heap.c -- the timer heap: a 4-ary min-heap of {deadline, seq, timer*}.
 *
 * Four children per node (as Go's runtime/time.go) halve the depth of a
 * binary heap, and the four siblings sit side by side in memory. Keys live
 * in the entries, so a sift reads no timer; it writes each moved timer's
 * index, which is what makes cancel O(log n) with no search. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "loop/loop.h"

/* Earlier deadline first; equal deadlines in scheduling order. */
static inline int before(const cloop__heap_entry *a, const cloop__heap_entry *b) {
  return a->deadline < b->deadline ||
         (a->deadline == b->deadline && a->seq < b->seq);
}

/* Puts x at or above slot i. */
static void sift_up(cloop__heap *h, uint32_t i, cloop__heap_entry x) {
  cloop__heap_entry *e = h->e;
  while (i > 0) {
    uint32_t parent = (i - 1) / 4;
    if (!before(&x, &e[parent]))
      break;
    e[i] = e[parent];
    e[i].timer->index = i;
    i = parent;
  }
  e[i] = x;
  x.timer->index = i;
}

/* Puts x at or below slot i. */
static void sift_down(cloop__heap *h, uint32_t i, cloop__heap_entry x) {
  cloop__heap_entry *e = h->e;
  uint32_t n = h->len;
  for (;;) {
    uint32_t c = 4 * i + 1;
    if (c >= n)
      break;
    /* The 16 grandchildren are contiguous: fetch them while comparing
       the children, so a big heap's levels overlap their cache misses. */
    uint32_t g = 4 * c + 1;
    if (g < n)
      for (int k = 0; k < 16 * (int)sizeof *e; k += 64)
        __builtin_prefetch((const char *)&e[g] + k);
    uint32_t end = n - c < 4 ? n : c + 4, min = c;
    for (uint32_t j = c + 1; j < end; j++)
      if (before(&e[j], &e[min]))
        min = j;
    if (!before(&e[min], &x))
      break;
    e[i] = e[min];
    e[i].timer->index = i;
    i = min;
  }
  e[i] = x;
  x.timer->index = i;
}

/* Makes room for one more entry. The heap is one array, not slab objects:
   the index arithmetic of a 4-ary heap needs it contiguous. Big heaps ask
   for transparent huge pages (a million timers fill 24 MiB). Returns 0 or
   -ENOMEM. */
static int grow(cloop__heap *h) {
  uint32_t cap = h->cap ? h->cap * 2 : 64;
  if (cap <= h->cap || cap >= CLOOP_TIMER_IDLE)
    return -ENOMEM;
  size_t bytes = (size_t)cap * sizeof(cloop__heap_entry);
  cloop__heap_entry *e = realloc(h->e, bytes);
  if (!e)
    return -ENOMEM;
  if (bytes >= CLOOP__HUGE_PAGE * 2)
    cloop__advise_huge(e, bytes);
  h->e = e;
  h->cap = cap;
  return 0;
}

/* Adds t with key (t->deadline, next seq). O(log n); amortised O(1)
   growth. Returns 0 or -ENOMEM. */
int cloop__heap_push(cloop__heap *h, cloop_timer *t) {
  if (h->len == h->cap) {
    int r = grow(h);
    if (r < 0)
      return r;
  }
  cloop__heap_entry x = {t->deadline, h->next_seq++, t};
  sift_up(h, h->len++, x);
  return 0;
}

/* Removes the entry at slot i and marks its timer idle. O(log n). */
void cloop__heap_remove(cloop__heap *h, uint32_t i) {
  h->e[i].timer->index = CLOOP_TIMER_IDLE;
  cloop__heap_entry last = h->e[--h->len];
  if (i == h->len)
    return;
  if (i > 0 && before(&last, &h->e[(i - 1) / 4]))
    sift_up(h, i, last);
  else
    sift_down(h, i, last);
}

void cloop__heap_free(cloop__heap *h) {
  free(h->e);
  h->e = NULL;
  h->len = h->cap = 0;
}

int cloop_debug_verify_heap(const cloop_loop *loop) {
  const cloop__heap *h = &loop->timers;
  for (uint32_t i = 0; i < h->len; i++) {
    if (h->e[i].timer->index != i) {
      fprintf(stderr, "heap: slot %u holds a timer whose index is %u\n", i,
              h->e[i].timer->index);
      return -1;
    }
    if (h->e[i].deadline != h->e[i].timer->deadline) {
      fprintf(stderr, "heap: slot %u key differs from its timer's deadline\n", i);
      return -1;
    }
    if (i > 0 && before(&h->e[i], &h->e[(i - 1) / 4])) {
      fprintf(stderr, "heap: slot %u sorts before its parent %u\n", i, (i - 1) / 4);
      return -1;
    }
  }
  return 0;
}

size_t cloop_timer_count(const cloop_loop *loop) { return loop->timers.len; }
