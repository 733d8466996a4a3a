/* slab.c -- fixed-size objects (tasks) carved from slabs, with a free list.
 *
 * A million tasks are a million allocations of the same size. From slabs
 * they cost a pop from a free list, and big slabs ask for transparent huge
 * pages: on this kind of virtual machine each 4 KiB page fault costs about
 * 2 us, and 500 MiB of tasks would take 128,000 of them. Slabs start small
 * (a loop with ten tasks should not hold 2 MiB) and double up to 32 MiB.
 * Objects go back to the free list, never to the system, until the loop
 * closes. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

#define HUGE ((size_t)2 << 20)
#define FIRST_SLAB ((size_t)16 << 10)
#define MAX_SLAB ((size_t)32 << 20)

void cloop__slab_init(cloop__slab_pool *p, size_t size) {
  memset(p, 0, sizeof *p);
  p->size = (size + 15) & ~(size_t)15;
  p->next_bytes = FIRST_SLAB;
}

/* Maps a slab; from 4 MiB on, 2 MiB-aligned and advised huge. */
static void *map_slab(size_t bytes) {
  if (bytes < 2 * HUGE) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
  }
  char *raw = mmap(NULL, bytes + HUGE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED)
    return NULL;
  char *p = (char *)(((uintptr_t)raw + HUGE - 1) & ~(uintptr_t)(HUGE - 1));
  if (p > raw)
    munmap(raw, (size_t)(p - raw));
  munmap(p + bytes, (size_t)(raw + HUGE - p));
  madvise(p, bytes, MADV_HUGEPAGE); /* advice only: errors ignored */
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
  size_t bytes = p->next_bytes;
  char *base = map_slab(bytes);
  if (!base)
    return -ENOMEM;
  p->slabs[p->nslabs].base = base;
  p->slabs[p->nslabs++].bytes = bytes;
  if (p->next_bytes < MAX_SLAB)
    p->next_bytes *= 2;
  /* Thread the new objects onto the free list, lowest address first. */
  size_t n = bytes / p->size;
  for (size_t i = n; i-- > 0;) {
    void **obj = (void **)(base + i * p->size);
    *obj = p->free;
    p->free = obj;
  }
  return 0;
}

/* A zeroed object, or NULL. */
void *cloop__slab_alloc(cloop__slab_pool *p) {
  if (!p->free && grow(p) < 0)
    return NULL;
  void **obj = p->free;
  p->free = *obj;
  memset(obj, 0, p->size);
  return obj;
}

void cloop__slab_give(cloop__slab_pool *p, void *obj) {
  *(void **)obj = p->free;
  p->free = obj;
}

void cloop__slab_free(cloop__slab_pool *p) {
  for (size_t i = 0; i < p->nslabs; i++)
    munmap(p->slabs[i].base, p->slabs[i].bytes);
  free(p->slabs);
  memset(p, 0, sizeof *p);
}
