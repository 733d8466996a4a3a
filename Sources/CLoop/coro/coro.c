/* coro.c -- coroutine contexts: making one, and switching with the assembly
 * switch (coro_*.S) or ucontext, with ASan's and TSan's fiber annotations. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coro/coro.h"
#include "loop/loop.h"

#ifdef CLOOP__ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef CLOOP__TSAN
#include <sanitizer/tsan_interface.h>
#endif

#ifdef CLOOP__HAVE_ASM
#define HAVE_ASM 1
void cloop__coro_start(void);
#endif

/* ---- switch selection ---------------------------------------------------- */

int cloop__switch_resolve(cloop_switch mode, cloop_switch *out) {
  if (mode != CLOOP_SWITCH_AUTO && mode != CLOOP_SWITCH_ASM &&
      mode != CLOOP_SWITCH_FAST && mode != CLOOP_SWITCH_UCONTEXT)
    return cloop__bad_setting(CLOOP_EBADOPTION, "cloop_options.switch_mode is "
                              "%d: expected CLOOP_SWITCH_AUTO, _ASM, _FAST or "
                              "_UCONTEXT", (int)mode);
  const char *env = getenv("CLOOP_SWITCH");
  if (mode == CLOOP_SWITCH_AUTO && env && *env) {
    if (strcmp(env, "asm") == 0)
      mode = CLOOP_SWITCH_ASM;
    else if (strcmp(env, "fast") == 0)
      mode = CLOOP_SWITCH_FAST;
    else if (strcmp(env, "ucontext") == 0)
      mode = CLOOP_SWITCH_UCONTEXT;
    else if (strcmp(env, "auto") != 0)
      return cloop__bad_setting(CLOOP_EBADENV, "CLOOP_SWITCH=\"%.40s\": "
                                "expected asm, fast, ucontext or auto", env);
  }
  if (mode == CLOOP_SWITCH_AUTO)
    mode = CLOOP_SWITCH_ASM;
#ifndef HAVE_ASM
  mode = CLOOP_SWITCH_UCONTEXT; /* no assembly switch for this machine */
#endif
  *out = mode;
  return 0;
}

const char *cloop_switch_name(cloop_switch mode) {
  switch (mode) {
  case CLOOP_SWITCH_ASM: return "asm";
  case CLOOP_SWITCH_FAST: return "fast";
  case CLOOP_SWITCH_UCONTEXT: return "ucontext";
  default: return "auto";
  }
}

/* ---- contexts -------------------------------------------------------------- */

/* makecontext passes int arguments: a pointer travels as two halves. */
static void uc_start(unsigned fn_hi, unsigned fn_lo, unsigned arg_hi,
                     unsigned arg_lo) {
  void (*entry)(void *) =
      (void (*)(void *))(((uintptr_t)fn_hi << 32) | (uintptr_t)fn_lo);
  entry((void *)(((uintptr_t)arg_hi << 32) | (uintptr_t)arg_lo));
}

#ifdef CLOOP__ASAN
/* A new coroutine's first code: ASan must hear that the switch into it
   has ended before the coroutine switches anywhere itself. */
static void asan_begin(void *ctx) {
  cloop__ctx *c = ctx;
  __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
  c->entry(c->entry_arg);
}
#endif

int cloop__ctx_make(cloop__ctx *c, cloop_switch mode, char *stack_lo,
                    size_t size, void (*entry)(void *), void *arg) {
  memset(c, 0, sizeof *c);
  c->stack_lo = stack_lo;
  c->stack_size = size;
#ifdef CLOOP__ASAN
  c->entry = entry;
  c->entry_arg = arg;
  entry = asan_begin;
  arg = c;
  /* A pooled stack still carries the poisoned redzones of frames that
     never returned (the previous coroutine ended by switching away). */
  __asan_unpoison_memory_region(stack_lo, size);
#endif
#ifdef CLOOP__TSAN
  /* Flags 0: each switch to it synchronizes, as a cooperative switch on
     one thread does. A shared stack's tasks each get their own fiber, so
     the copy-stack mode needs nothing more. Cost: a TSan thread state
     (a few KiB) per live context, under TSan only. */
  c->tsan_fiber = __tsan_create_fiber(0);
#endif
  if (mode == CLOOP_SWITCH_UCONTEXT) {
    c->uc = malloc(sizeof *c->uc);
    if (!c->uc)
      return -ENOMEM;
    getcontext(c->uc);
    c->uc->uc_stack.ss_sp = stack_lo;
    c->uc->uc_stack.ss_size = size;
    c->uc->uc_link = NULL;
    uintptr_t f = (uintptr_t)entry, a = (uintptr_t)arg;
    makecontext(c->uc, (void (*)(void))uc_start, 4, (unsigned)(f >> 32),
                (unsigned)f, (unsigned)(a >> 32), (unsigned)a);
    return 0;
  }
#ifdef HAVE_ASM
#if defined(__aarch64__)
  /* The frame cloop__switch_asm pops (see the table in coro_aarch64.S):
     22 slots, 176 bytes, at the 16-byte-aligned top of the stack. */
  uintptr_t top = ((uintptr_t)stack_lo + size) & ~(uintptr_t)15;
  void **sp = (void **)(top - 176);
  uint64_t fpcr;
  __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
  memset(sp, 0, 176);              /* d8-d15, x21-x28; x29 = 0 ends
                                      frame-pointer walks */
  memcpy(&sp[0], &fpcr, 8);        /* this thread's FP control */
  sp[10] = (void *)entry;          /* x19: the entry */
  sp[11] = arg;                    /* x20: the argument */
  sp[21] = (void *)cloop__coro_start; /* x30 */
  c->sp = sp;
#else
  /* The frame cloop__switch_asm pops (see the table in the .S file), at
     the 16-byte-aligned top of the stack. */
  uintptr_t top = ((uintptr_t)stack_lo + size) & ~(uintptr_t)15;
  void **sp = (void **)(top - 64);
  uint32_t fp[2] = {0, 0};
  __asm__ volatile("stmxcsr %0" : "=m"(fp[0]));
  __asm__ volatile("fnstcw %0" : "=m"(*(uint16_t *)((char *)fp + 4)));
  memcpy(&sp[0], fp, 8);           /* this thread's FP control */
  sp[1] = sp[2] = sp[3] = NULL;    /* r15 r14 r13 */
  sp[4] = arg;                     /* r12: the argument */
  sp[5] = (void *)entry;           /* rbx: the entry */
  sp[6] = NULL;                    /* rbp: ends frame-pointer walks */
  sp[7] = (void *)cloop__coro_start;
  c->sp = sp;
#endif
#else
  (void)entry, (void)arg;
#endif
  return 0;
}

char *cloop__ctx_sp(const cloop__ctx *c, cloop_switch mode) {
  if (mode != CLOOP_SWITCH_UCONTEXT)
    return c->sp;
#if defined(__x86_64__)
  return (char *)c->uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
  return (char *)c->uc->uc_mcontext.sp;
#else
#error "cloop__ctx_sp: no ucontext stack pointer for this machine"
#endif
}

void cloop__ctx_free(cloop__ctx *c) {
  free(c->uc);
  c->uc = NULL;
#ifdef CLOOP__TSAN
  /* Never the running fiber: a finished coroutine is freed from the loop's
     stack; a thread's own fiber (a main context's) is TSan's, not ours. */
  if (c->tsan_fiber && c->stack_lo && c->tsan_fiber != __tsan_get_current_fiber())
    __tsan_destroy_fiber(c->tsan_fiber);
  c->tsan_fiber = NULL;
#endif
}

#ifdef CLOOP__ASAN
/* ASan must be told which stack it is about to run on; a thread's own
   stack has no bounds in its context until they are looked up here. */
static void asan_bounds(cloop__ctx *c) {
  if (c->stack_lo)
    return;
  pthread_attr_t attr;
  void *lo;
  size_t size;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    if (pthread_attr_getstack(&attr, &lo, &size) == 0) {
      c->stack_lo = lo;
      c->stack_size = size;
    }
    pthread_attr_destroy(&attr);
  }
}
#endif

/* Always inlined: under TSan no instrumented frame may sit between
   __tsan_switch_to_fiber and the switch (its entry would land on one
   fiber's shadow stack and its exit on another's). */
static inline __attribute__((always_inline)) void
raw_switch(cloop__ctx *from, cloop__ctx *to, cloop_switch mode) {
  if (cloop__switch_regs(from, to, mode))
    return;
  if (!from->uc && !(from->uc = malloc(sizeof *from->uc)))
    cloop__misuse("out of memory for a ucontext while switching");
  swapcontext(from->uc, to->uc);
}

void cloop__ctx_switch_slow(cloop__ctx *from, cloop__ctx *to, cloop_switch mode) {
#ifdef CLOOP__TSAN
  if (!from->tsan_fiber)
    from->tsan_fiber = __tsan_get_current_fiber();
  __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
#ifdef CLOOP__ASAN
  asan_bounds(from);
  __sanitizer_start_switch_fiber(&from->fake_stack, to->stack_lo, to->stack_size);
  raw_switch(from, to, mode);
  __sanitizer_finish_switch_fiber(from->fake_stack, NULL, NULL);
#else
  raw_switch(from, to, mode);
#endif
}

void cloop__ctx_exit(cloop__ctx *from, cloop__ctx *to, cloop_switch mode) {
#ifdef CLOOP__TSAN
  __tsan_switch_to_fiber(to->tsan_fiber, 0); /* from's fiber: ctx_free's */
#endif
#ifdef CLOOP__ASAN
  __sanitizer_start_switch_fiber(NULL, to->stack_lo, to->stack_size);
#endif
#ifdef HAVE_ASM
  /* The frame saved into from->sp is never resumed. */
  if (mode == CLOOP_SWITCH_ASM)
    cloop__switch_asm(&from->sp, to->sp);
  else if (mode == CLOOP_SWITCH_FAST)
    cloop__switch_asm_fast(&from->sp, to->sp);
  else
#endif
    setcontext(to->uc);
  abort(); /* unreachable: nothing resumes a finished coroutine */
}
