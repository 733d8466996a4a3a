/* coro.c -- coroutine contexts (the asm switch or ucontext), their guarded
 * stacks, and the SIGSEGV handler that names a task whose stack overflowed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "coro.h"
#include "internal.h"
#include "task.h"

#ifdef CLOOP__ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef CLOOP_VALGRIND
#include <valgrind/valgrind.h>
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* Linux 6.13: guard pages without a VMA split */
#endif

#ifdef CLOOP__HAVE_ASM
#define HAVE_ASM 1
void cloop__coro_start(void);
#endif

__thread struct cloop_task *cloop__running __attribute__((tls_model("initial-exec")));

/* ---- switch selection ---------------------------------------------------- */

int cloop__switch_resolve(cloop_switch mode, cloop_switch *out) {
  const char *env = getenv("CLOOP_SWITCH");
  if (mode == CLOOP_SWITCH_AUTO && env && *env) {
    if (strcmp(env, "asm") == 0)
      mode = CLOOP_SWITCH_ASM;
    else if (strcmp(env, "fast") == 0)
      mode = CLOOP_SWITCH_FAST;
    else if (strcmp(env, "ucontext") == 0)
      mode = CLOOP_SWITCH_UCONTEXT;
    else if (strcmp(env, "auto") != 0)
      return -1;
  }
  if (mode == CLOOP_SWITCH_AUTO)
    mode = CLOOP_SWITCH_ASM;
  if (mode != CLOOP_SWITCH_ASM && mode != CLOOP_SWITCH_FAST &&
      mode != CLOOP_SWITCH_UCONTEXT)
    return -1;
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

static inline void raw_switch(cloop__ctx *from, cloop__ctx *to,
                              cloop_switch mode) {
  if (cloop__switch_regs(from, to, mode))
    return;
  if (!from->uc && !(from->uc = malloc(sizeof *from->uc)))
    cloop__misuse("out of memory for a ucontext while switching");
  swapcontext(from->uc, to->uc);
}

void cloop__ctx_switch_slow(cloop__ctx *from, cloop__ctx *to, cloop_switch mode) {
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

/* ---- stacks ------------------------------------------------------------------ */

#define PAGE ((size_t)4096)
#define SLAB_FIRST 8   /* stacks in the first slab; each next one doubles */
#define SLAB_MAX 256   /* up to this many (80 MiB of address space at 256 KiB) */

void cloop__stack_pool_init(cloop__stack_pool *p, size_t size) {
  memset(p, 0, sizeof *p);
  p->size = (size + PAGE - 1) & ~(PAGE - 1);
  p->next_slab = SLAB_FIRST;
}

/* Marks [lo, lo + len) as a guard. MADV_GUARD_INSTALL (Linux 6.13) puts
   the markers in the page tables; mprotect instead splits the mapping, and
   vm.max_map_count (65530 by default) then caps a process near 32,000
   stacks. */
static int guard_madvise_works(void);

static int install_guard(char *lo, size_t len) {
  if (guard_madvise_works() && madvise(lo, len, MADV_GUARD_INSTALL) == 0)
    return 0;
  return mprotect(lo, len, PROT_NONE);
}

/* Whether MADV_GUARD_INSTALL really guards, probed once: the kernel must
   refuse to read a guarded page (EFAULT from write(2)). Emulators such as
   qemu-user accept the advice and do nothing, and older kernels reject it;
   both get mprotect. */
static int guard_madvise_works(void) {
  static _Atomic int works = -1; /* -1: not probed; threads may race to probe, with one answer */
  if (works >= 0)
    return works;
  works = 0;
  char *page = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  int fds[2];
  if (page != MAP_FAILED && pipe(fds) == 0) {
    if (madvise(page, PAGE, MADV_GUARD_INSTALL) == 0)
      works = write(fds[1], page, 1) < 0 && errno == EFAULT;
    close(fds[0]);
    close(fds[1]);
  }
  if (page != MAP_FAILED)
    munmap(page, PAGE);
  return works;
}

int cloop_debug_guard_markers(void) { return guard_madvise_works(); }

/* Maps a slab of stacks, each [guard | stack], and puts them in the pool.
   MAP_NORESERVE: only touched pages cost memory. */
static int add_slab(cloop__stack_pool *p) {
  size_t stride = CLOOP_STACK_GUARD + p->size, n = p->next_slab;
  size_t bytes = n * stride;
  if (p->nslabs == p->slab_cap) {
    size_t cap = p->slab_cap ? p->slab_cap * 2 : 8;
    void **slabs = realloc(p->slabs, cap * sizeof *slabs);
    if (!slabs)
      return -ENOMEM;
    p->slabs = slabs;
    size_t *sizes = realloc(p->slab_bytes, cap * sizeof *sizes);
    if (!sizes)
      return -ENOMEM;
    p->slab_bytes = sizes;
    p->slab_cap = cap;
  }
  if (p->total + n > p->cap) { /* room for every stack, all given back */
    size_t cap = p->cap ? p->cap * 2 : 64;
    while (cap < p->total + n)
      cap *= 2;
    char **list = realloc(p->free, cap * sizeof *list);
    if (!list)
      return -ENOMEM;
    p->free = list;
    p->cap = cap;
  }
  char *base = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (base == MAP_FAILED)
    return -ENOMEM;
  for (size_t i = 0; i < n; i++) {
    char *guard = base + i * stride;
    if (install_guard(guard, CLOOP_STACK_GUARD) < 0) {
      munmap(base, bytes);
      return -ENOMEM;
    }
#ifdef CLOOP_VALGRIND
    VALGRIND_STACK_REGISTER(guard + CLOOP_STACK_GUARD, guard + stride);
#endif
  }
  /* Lowest address last, so it is handed out first. */
  for (size_t i = n; i-- > 0;)
    p->free[p->nfree++] = base + i * stride + CLOOP_STACK_GUARD;
  p->total += n;
  p->slabs[p->nslabs] = base;
  p->slab_bytes[p->nslabs++] = bytes;
  if (p->next_slab < SLAB_MAX)
    p->next_slab *= 2;
  return 0;
}

char *cloop__stack_take(cloop__stack_pool *p) {
  if (p->nfree == 0 && add_slab(p) < 0)
    return NULL;
  return p->free[--p->nfree];
}

/* Back on top of the pool: the next task reuses its pages already faulted
   in. cap >= total, the number of stacks mapped, so this never grows. */
void cloop__stack_give(cloop__stack_pool *p, char *lo) {
  p->free[p->nfree++] = lo;
}

void cloop__stack_pool_free(cloop__stack_pool *p) {
  for (size_t i = 0; i < p->nslabs; i++)
    munmap(p->slabs[i], p->slab_bytes[i]);
  free(p->slabs);
  free(p->slab_bytes);
  free(p->free);
  memset(p, 0, sizeof *p);
}

/* ---- stack overflow ------------------------------------------------------------ */

#define ALT_STACK_SIZE ((size_t)64 << 10)

static struct sigaction previous_segv;
static pthread_once_t handler_once = PTHREAD_ONCE_INIT;
static __thread char *alt_stack; /* kept reachable for leak checkers */

static void say(const char *s) {
  ssize_t r = write(STDERR_FILENO, s, strlen(s));
  (void)r;
}

static void say_number(size_t n) {
  char buf[24], *p = buf + sizeof buf;
  *--p = 0;
  do
    *--p = (char)('0' + n % 10);
  while ((n /= 10) && p > buf);
  say(p);
}

/* On the alternate stack. A fault in the running task's guard region, or
   with its stack pointer there, is an overflow: say which task, restore
   the default actions and abort. Anything else goes back to the previous
   handler: it is reinstalled and the faulting instruction runs again. */
static void on_segv(int sig, siginfo_t *si, void *context) {
  (void)sig;
  struct cloop_task *t = cloop__running;
  if (t) {
    uintptr_t lo = (uintptr_t)t->ctx.stack_lo, addr = (uintptr_t)si->si_addr;
    ucontext_t *uc = context;
#if defined(__x86_64__)
    uintptr_t sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
    uintptr_t sp = (uintptr_t)uc->uc_mcontext.sp;
#else
    uintptr_t sp = addr;
#endif
    int in_guard = (addr < lo && addr >= lo - CLOOP_STACK_GUARD) ||
                   (sp < lo && sp >= lo - CLOOP_STACK_GUARD);
    if (in_guard) {
      say("cloop: stack overflow in task '");
      if (t->name[0]) {
        say(t->name);
      } else { /* a default name not made yet: make it here, signal-safely */
        say("task-");
        say_number(t->id);
      }
      say("' (its stack is ");
      say_number(t->ctx.stack_size >> 10);
      say(" KiB; raise cloop_options.stack_size, or keep large values off "
          "the stack)\n");
      struct sigaction dfl;
      memset(&dfl, 0, sizeof dfl);
      dfl.sa_handler = SIG_DFL;
      sigaction(SIGSEGV, &dfl, NULL);
      sigaction(SIGABRT, &dfl, NULL);
      abort();
    }
  }
  sigaction(SIGSEGV, &previous_segv, NULL);
}

static void install_handler(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &previous_segv);
}

void cloop__overflow_guard_init(void) {
  pthread_once(&handler_once, install_handler);
  if (alt_stack)
    return;
  stack_t old;
  if (sigaltstack(NULL, &old) == 0 && !(old.ss_flags & SS_DISABLE) &&
      old.ss_size >= 16384) {
    alt_stack = old.ss_sp; /* the thread has one already (Swift's, say) */
    return;
  }
  stack_t ss = {.ss_sp = malloc(ALT_STACK_SIZE), .ss_size = ALT_STACK_SIZE};
  if (ss.ss_sp && sigaltstack(&ss, NULL) == 0)
    alt_stack = ss.ss_sp;
  else
    free(ss.ss_sp);
}
