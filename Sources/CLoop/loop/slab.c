/* slab.c -- fixed-size objects carved from slabs, with a free list (see
 * slab.h).
 *
 * A million tasks are a million allocations of the same size. From slabs
 * they cost a pop from a free list, and big slabs ask for transparent huge
 * pages. Slabs start small (a loop with ten tasks should not hold 2 MiB)
 * and double. Coroutine stacks are objects too, each a guard region and a
 * stack (coro/stack.c): their slabs are mapped MAP_NORESERVE, so a stack
 * costs memory only for the pages it touches, and their free-list link is
 * the stack's highest word, which every run of a task has touched. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "loop/slab.h"

void cloop__slab_init_ex(cloop__slab_pool *p, size_t size, size_t link_offset,
                         size_t first_bytes, size_t max_bytes, int flags,
                         int (*prepare)(char *obj, size_t size)) {
  memset(p, 0, sizeof *p);
  p->size = size;
  p->link_offset = link_offset;
  p->next_bytes = first_bytes < size ? size : first_bytes;
  p->max_bytes = max_bytes;
  p->flags = flags;
  p->prepare = prepare;
}

void cloop__slab_init(cloop__slab_pool *p, size_t size) {
  size = (size + 15) & ~(size_t)15;
  cloop__slab_init_ex(p, size, 0, (size_t)16 << 10, (size_t)32 << 20,
                      CLOOP__SLAB_HUGE, NULL);
}

void cloop__advise_huge(void *p, size_t bytes) {
  uintptr_t lo = ((uintptr_t)p + CLOOP__HUGE_PAGE - 1) & ~(uintptr_t)(CLOOP__HUGE_PAGE - 1);
  uintptr_t hi = ((uintptr_t)p + bytes) & ~(uintptr_t)(CLOOP__HUGE_PAGE - 1);
  if (hi > lo)
    madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
}

/* Maps a slab; a huge one 2 MiB-aligned, so that all of it can be huge. */
static char *map_slab(size_t bytes, int flags) {
  int mflags = MAP_PRIVATE | MAP_ANONYMOUS;
  if (flags & CLOOP__SLAB_STACKS)
    mflags |= MAP_NORESERVE | MAP_STACK;
  int huge = (flags & CLOOP__SLAB_HUGE) && bytes >= 2 * CLOOP__HUGE_PAGE;
  size_t extra = huge ? CLOOP__HUGE_PAGE : 0;
  char *raw = mmap(NULL, bytes + extra, PROT_READ | PROT_WRITE, mflags, -1, 0);
  if (raw == MAP_FAILED)
    return NULL;
  if (!huge)
    return raw;
  char *p = (char *)(((uintptr_t)raw + CLOOP__HUGE_PAGE - 1) &
                     ~(uintptr_t)(CLOOP__HUGE_PAGE - 1));
  if (p > raw)
    munmap(raw, (size_t)(p - raw));
  munmap(p + bytes, (size_t)(raw + extra - p));
  cloop__advise_huge(p, bytes);
  return p;
}

static int grow(cloop__slab_pool *p) {
  if (p->nslabs == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 16;
    cloop__slab *slabs = realloc(p->slabs, cap * sizeof *slabs);
    if (!slabs)
      return -ENOMEM;
    p->slabs = slabs;
    p->cap = cap;
  }
  size_t bytes = p->next_bytes - p->next_bytes % p->size;
  char *base = map_slab(bytes, p->flags);
  if (!base)
    return -ENOMEM;
  p->slabs[p->nslabs].base = base;
  p->slabs[p->nslabs++].bytes = bytes;
  if (p->next_bytes < p->max_bytes)
    p->next_bytes *= 2;
  p->bump = base;
  p->bump_end = base + bytes;
  return 0;
}

void *cloop__slab_take(cloop__slab_pool *p) {
  if (p->free) {
    char *obj = p->free;
    p->free = *(void **)(obj + p->link_offset);
    return obj;
  }
  if (p->bump == p->bump_end && grow(p) < 0)
    return NULL;
  char *obj = p->bump;
  if (p->prepare && p->prepare(obj, p->size) < 0)
    return NULL; /* the object stays first in line for the next try */
  p->bump += p->size;
  return obj;
}

void *cloop__slab_alloc(cloop__slab_pool *p) {
  void *obj = cloop__slab_take(p);
  if (obj)
    memset(obj, 0, p->size);
  return obj;
}

void cloop__slab_give(cloop__slab_pool *p, void *obj) {
  *(void **)((char *)obj + p->link_offset) = p->free;
  p->free = obj;
}

void cloop__slab_free(cloop__slab_pool *p) {
  for (size_t i = 0; i < p->nslabs; i++)
    munmap(p->slabs[i].base, p->slabs[i].bytes);
  free(p->slabs);
  memset(p, 0, sizeof *p);
}
