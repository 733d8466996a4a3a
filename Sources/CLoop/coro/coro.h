/* coro.h -- coroutine contexts and the switch between them (coro.c and the
 * assembly): the machinery under tasks. Internal; the benchmarks use it for
 * the raw switch. Stacks are stack.h's. */
#ifndef CLOOP_CORO_H
#define CLOOP_CORO_H

#include <stddef.h>
#include <stdint.h>
#include <ucontext.h>

#include "cloop.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CLOOP__ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define CLOOP__ASAN 1
#endif
/* ThreadSanitizer keeps a shadow call stack and a clock per thread; a
   switch it is not told about leaves one task's frames on another's shadow
   stack until it overflows. Each context is then a TSan fiber (coro.c). */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CLOOP__TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define CLOOP__TSAN 1
#endif
/* A sanitizer must hear of every switch: the inline register switch is
   then bypassed for cloop__ctx_switch_slow, which tells it. */
#if defined(CLOOP__ASAN) || defined(CLOOP__TSAN)
#define CLOOP__ANNOTATE_SWITCH 1
#endif

/* A place execution can be suspended and resumed: a coroutine's, or the
   thread's own stack (stack_lo == NULL until ASan tells us its bounds). */
typedef struct cloop__ctx {
  void *sp;          /* asm switch: the saved stack pointer */
  ucontext_t *uc;    /* ucontext switch */
  char *stack_lo;    /* lowest usable byte of the stack */
  size_t stack_size;
  /* Who runs here, for the stack overflow report (stack.c): a name, or
     NULL and a number that makes "task-<id>". */
  const char *name;
  uint64_t id;
#ifdef CLOOP__ASAN
  void *fake_stack;
  void (*entry)(void *); /* what asan_begin calls (coro.c) */
  void *entry_arg;
#endif
#ifdef CLOOP__TSAN
  /* Its TSan fiber: made with the context, or, for a thread's own stack,
     the thread's fiber, looked up at its first switch away. */
  void *tsan_fiber;
#endif
} cloop__ctx;

/* The switch to use on this machine for `mode` (AUTO resolved from
   $CLOOP_SWITCH; asm modes fall back to ucontext off x86-64/AArch64).
   Returns 0, CLOOP_EBADENV for a bad $CLOOP_SWITCH or CLOOP_EBADOPTION for
   a bad mode (cloop_error_detail says which). */
int cloop__switch_resolve(cloop_switch mode, cloop_switch *out);

/* Prepares c to run entry(arg) on [stack_lo, stack_lo + size) when first
   switched to. entry must never return: it ends with cloop__ctx_exit.
   Returns 0 or -ENOMEM (ucontext's context). */
int cloop__ctx_make(cloop__ctx *c, cloop_switch mode, char *stack_lo,
                    size_t size, void (*entry)(void *), void *arg);
/* The stack pointer a suspended context will resume with. */
char *cloop__ctx_sp(const cloop__ctx *c, cloop_switch mode);

/* Releases what cloop__ctx_make allocated. */
void cloop__ctx_free(cloop__ctx *c);

#if defined(__x86_64__) || defined(__aarch64__)
#define CLOOP__HAVE_ASM 1
void cloop__switch_asm(void **save_sp, void *load_sp);      /* coro_*.S */
void cloop__switch_asm_fast(void **save_sp, void *load_sp);
#endif

/* The switch with ucontext, or with ASan's or TSan's fiber annotations. */
void cloop__ctx_switch_slow(cloop__ctx *from, cloop__ctx *to, cloop_switch mode);

/* The assembly switch, for the asm modes. Returns 0 (and switches
   nothing) for ucontext, or where there is no assembly switch. */
static inline __attribute__((always_inline)) int
cloop__switch_regs(cloop__ctx *from, cloop__ctx *to, cloop_switch mode) {
#if defined(CLOOP__HAVE_ASM)
  if (mode == CLOOP_SWITCH_ASM) {
    cloop__switch_asm(&from->sp, to->sp);
    return 1;
  }
  if (mode == CLOOP_SWITCH_FAST) {
    cloop__switch_asm_fast(&from->sp, to->sp);
    return 1;
  }
#endif
  (void)from, (void)to, (void)mode;
  return 0;
}

/* Suspends the caller into `from` and resumes `to`; returns when something
   switches back to `from`. Inline: an await's cost is mostly two of these,
   and a call through a wrapper is a tenth of each. */
static inline void cloop__ctx_switch(cloop__ctx *from, cloop__ctx *to,
                                     cloop_switch mode) {
#ifndef CLOOP__ANNOTATE_SWITCH
  if (cloop__switch_regs(from, to, mode))
    return;
#endif
  cloop__ctx_switch_slow(from, to, mode);
}

/* The last switch of a finishing coroutine: `from` is never resumed. */
_Noreturn void cloop__ctx_exit(cloop__ctx *from, cloop__ctx *to,
                               cloop_switch mode);

#endif
