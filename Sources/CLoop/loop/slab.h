/* slab.h -- the library's one allocator of fixed-size objects (slab.c):
 * tasks, the readiness path's registrations, the sockets' operation
 * objects, and coroutine stacks with their guard regions. */
#ifndef CLOOP_SLAB_H
#define CLOOP_SLAB_H

#include <stddef.h>

typedef struct cloop__slab {
  char *base;
  size_t bytes;
} cloop__slab;

/* Objects of one size carved from ever larger mappings ("slabs"). A new
   slab's objects are handed out by a bump pointer, lowest address first,
   so an object is touched only when first taken; an object given back
   joins a LIFO free list linked through one word of it (at link_offset),
   so the most recently used -- warm in cache, its pages faulted in -- is
   the next one taken. Objects go back to the system only with the pool. */
typedef struct cloop__slab_pool {
  size_t size;        /* bytes per object */
  size_t link_offset; /* where a free object keeps its free-list link */
  size_t next_bytes;  /* the next slab's size: doubles up to max_bytes */
  size_t max_bytes;
  int flags;          /* CLOOP__SLAB_* */
  /* Called once per object when it is first taken (a stack's guard), or
     NULL. Returns 0 or -errno; on failure the object is not handed out. */
  int (*prepare)(char *obj, size_t size);
  void *free;         /* the free list's first object */
  char *bump, *bump_end; /* the newest slab's objects not yet taken */
  cloop__slab *slabs;
  size_t nslabs, cap;
} cloop__slab_pool;

enum {
  CLOOP__SLAB_HUGE = 1,  /* ask for transparent huge pages from 4 MiB slabs */
  CLOOP__SLAB_STACKS = 2 /* MAP_NORESERVE | MAP_STACK: only touched pages count */
};

/* Small objects (size rounded up to 16 bytes): slabs from 16 KiB doubling
   to 32 MiB, huge pages asked for from 4 MiB. */
void cloop__slab_init(cloop__slab_pool *p, size_t size);
/* Any other shape: first and largest slab sizes in bytes. */
void cloop__slab_init_ex(cloop__slab_pool *p, size_t size, size_t link_offset,
                         size_t first_bytes, size_t max_bytes, int flags,
                         int (*prepare)(char *obj, size_t size));

/* An object, not zeroed; NULL when out of memory (or prepare failed). */
void *cloop__slab_take(cloop__slab_pool *p);
/* A zeroed object, or NULL. */
void *cloop__slab_alloc(cloop__slab_pool *p);
/* Gives obj back for reuse. */
void cloop__slab_give(cloop__slab_pool *p, void *obj);
/* Unmaps every slab. */
void cloop__slab_free(cloop__slab_pool *p);

/* Asks for transparent huge pages on the 2 MiB-aligned part of
   [p, p + bytes): on this kind of virtual machine a 4 KiB page fault costs
   about 2 us, and a million tasks or timers fill hundreds of MiB. Advice
   only: errors are ignored. */
void cloop__advise_huge(void *p, size_t bytes);

#define CLOOP__HUGE_PAGE ((size_t)2 << 20)

#endif
