/* stack.h -- coroutine stacks: a loop's pool of guarded stacks, and the
 * SIGSEGV handler that names the coroutine whose stack overflowed (stack.c).
 * Internal. */
#ifndef CLOOP_STACK_H
#define CLOOP_STACK_H

#include <stddef.h>

#include "coro/coro.h"
#include "loop/slab.h"

/* A loop's stacks, each a CLOOP_STACK_GUARD region and `size` usable
   bytes, as objects of a slab pool (loop/slab.h): mapped in slabs of 8
   stacks doubling to 256, reused most recent first. */
typedef struct cloop__stack_pool {
  size_t size; /* usable bytes per stack */
  cloop__slab_pool slab;
} cloop__stack_pool;

void cloop__stack_pool_init(cloop__stack_pool *p, size_t size);
void cloop__stack_pool_free(cloop__stack_pool *p);
/* Returns a stack's lowest usable byte, or NULL (ENOMEM). */
char *cloop__stack_take(cloop__stack_pool *p);
void cloop__stack_give(cloop__stack_pool *p, char *lo);

/* Installs the process's SIGSEGV handler, which names the coroutine whose
   stack overflowed, and this thread's alternate signal stack. Idempotent;
   cheap after the first call on a thread. */
void cloop__overflow_guard_init(void);

/* The context running on this thread (set by whoever switches into a
   coroutine), for the SIGSEGV handler; NULL on a thread's own stack. */
extern __thread cloop__ctx *cloop__running_ctx
    __attribute__((tls_model("initial-exec")));

#endif
