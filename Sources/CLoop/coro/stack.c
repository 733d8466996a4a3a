/* stack.c -- coroutine stacks: guarded, pooled per loop, and the SIGSEGV
 * handler that names the coroutine whose stack overflowed.
 *
 * Each stack sits above a CLOOP_STACK_GUARD region that faults on any
 * access. The guard must be large: compilers put a big local on the stack
 * with one `sub rsp` and no probes, and a 4 KiB guard is jumped over. The
 * stacks are objects of a slab pool (loop/slab.h) mapped with
 * MAP_NORESERVE: only the pages a task touches cost memory, and a stack
 * given back is the next one taken, its pages already faulted in. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdatomic.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "coro/stack.h"
#include "loop/loop.h"

#ifdef CLOOP__ASAN
#include <sanitizer/asan_interface.h>
#endif
#ifdef CLOOP_VALGRIND
#include <valgrind/valgrind.h>
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* Linux 6.13: guard pages without a VMA split */
#endif

#define PAGE ((size_t)4096)
#define SLAB_FIRST 8   /* stacks in the first slab; each next one doubles */
#define SLAB_MAX 256   /* up to this many (80 MiB of address space at 256 KiB) */

__thread cloop__ctx *cloop__running_ctx __attribute__((tls_model("initial-exec")));

/* ---- the pool ---------------------------------------------------------- */

/* Whether MADV_GUARD_INSTALL really guards, probed once: the kernel must
   refuse to read a guarded page (EFAULT from write(2)). Emulators such as
   qemu-user accept the advice and do nothing, and older kernels reject it;
   both get mprotect. */
static int guard_madvise_works(void) {
  static _Atomic int works = -1; /* -1: not probed; threads may race to probe, with one answer */
  if (works >= 0)
    return works;
  int ok = 0;
  char *page = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  int fds[2];
  if (page != MAP_FAILED && pipe(fds) == 0) {
    if (madvise(page, PAGE, MADV_GUARD_INSTALL) == 0)
      ok = write(fds[1], page, 1) < 0 && errno == EFAULT;
    close(fds[0]);
    close(fds[1]);
  }
  if (page != MAP_FAILED)
    munmap(page, PAGE);
  works = ok;
  return ok;
}

int cloop_debug_guard_markers(void) { return guard_madvise_works(); }

/* A new object of the pool, [guard | stack]: makes its guard. With
   MADV_GUARD_INSTALL (Linux 6.13) the markers live in the page tables;
   mprotect instead splits the mapping, and vm.max_map_count (65530 by
   default) then caps a process near 32,000 stacks. */
static int prepare_stack(char *obj, size_t size) {
  if (!(guard_madvise_works() &&
        madvise(obj, CLOOP_STACK_GUARD, MADV_GUARD_INSTALL) == 0) &&
      mprotect(obj, CLOOP_STACK_GUARD, PROT_NONE) < 0)
    return -ENOMEM;
#ifdef CLOOP_VALGRIND
  VALGRIND_STACK_REGISTER(obj + CLOOP_STACK_GUARD, obj + size);
#else
  (void)size;
#endif
  return 0;
}

void cloop__stack_pool_init(cloop__stack_pool *p, size_t size) {
  p->size = (size + PAGE - 1) & ~(PAGE - 1);
  size_t stride = CLOOP_STACK_GUARD + p->size;
  /* A free stack's link is its highest word: every task that ran on it
     touched that page, and a stack never taken is never written. */
  cloop__slab_init_ex(&p->slab, stride, stride - sizeof(void *),
                      SLAB_FIRST * stride, SLAB_MAX * stride,
                      CLOOP__SLAB_STACKS, prepare_stack);
}

char *cloop__stack_take(cloop__stack_pool *p) {
  char *obj = cloop__slab_take(&p->slab);
  return obj ? obj + CLOOP_STACK_GUARD : NULL;
}

void cloop__stack_give(cloop__stack_pool *p, char *lo) {
#ifdef CLOOP__ASAN
  /* The frames of a coroutine that ended by switching away leave their
     redzones poisoned; the pool's link is written into the stack. */
  __asan_unpoison_memory_region(lo, p->size);
#endif
  cloop__slab_give(&p->slab, lo - CLOOP_STACK_GUARD);
}

void cloop__stack_pool_free(cloop__stack_pool *p) {
  cloop__slab_free(&p->slab);
}

/* ---- stack overflow ---------------------------------------------------- */

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

/* The advice printed with an overflow: the C option, unless the embedder
   (the Swift layer) set words of its own. Process-wide and atomic: it may
   be set while other loops' threads run, and the handler reads it on any
   of them (a relaxed load: a plain mov). */
static const char *_Atomic overflow_advice =
    "raise cloop_options.stack_size, or keep large values off the stack";

void cloop_set_overflow_advice(const char *advice) {
  atomic_store_explicit(&overflow_advice, advice, memory_order_relaxed);
}

/* On the alternate stack. A fault in the running coroutine's guard
   region, or with its stack pointer there, is an overflow: say which, how
   big its stack is, restore the default actions and abort. Anything else
   goes back to the previous handler: it is reinstalled and the faulting
   instruction runs again. */
static void on_segv(int sig, siginfo_t *si, void *context) {
  (void)sig;
  cloop__ctx *c = cloop__running_ctx;
  if (c && c->stack_lo) {
    uintptr_t lo = (uintptr_t)c->stack_lo, addr = (uintptr_t)si->si_addr;
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
      if (c->name && c->name[0]) {
        say(c->name);
      } else { /* a default name not made yet: make it here, signal-safely */
        say("task-");
        say_number(c->id);
      }
      say("' (its stack is ");
      say_number(c->stack_size >> 10);
      say(" KiB; ");
      say(atomic_load_explicit(&overflow_advice, memory_order_relaxed));
      say(")\n");
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

/* A thread that made its alternate stack here gives it back when it exits
   (a group's loop threads come and go: 64 KiB each otherwise). The key's
   value is the stack; its destructor runs at the thread's exit. */
static pthread_key_t alt_stack_key;

static void alt_stack_free(void *stack) {
  stack_t ss = {.ss_flags = SS_DISABLE};
  sigaltstack(&ss, NULL);
  free(stack);
}

static void install_handler(void) {
  pthread_key_create(&alt_stack_key, alt_stack_free);
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
  if (ss.ss_sp && sigaltstack(&ss, NULL) == 0) {
    alt_stack = ss.ss_sp;
    pthread_setspecific(alt_stack_key, ss.ss_sp);
  } else
    free(ss.ss_sp);
}
