/* test_switch.c -- what a context switch must keep: the callee-saved
 * registers, values a task holds across awaits (integers and doubles), the
 * stack alignment calls expect, and the FP control state (rounding mode)
 * for the switches that promise it. */
#include "test.h"

#include <fenv.h>

#define MS 1000000LL

/* ---- callee-saved registers, exactly (x86-64) ------------------------------ */

#if defined(__x86_64__)
/* regs_across(in, out, fn): loads rbx, rbp, r12..r15 from in[0..5], calls
   fn() -- which switches away and back -- and stores those registers into
   out[0..5]. Restores the caller's. Seven pushes leave the stack 16-byte
   aligned for the call. */
void regs_across(const uint64_t *in, uint64_t *out, void (*fn)(void));
__asm__(".text\n"
        ".globl regs_across\n"
        ".type regs_across, @function\n"
        ".p2align 4\n"
        "regs_across:\n"
        "  pushq %rbp\n"
        "  pushq %rbx\n"
        "  pushq %r12\n"
        "  pushq %r13\n"
        "  pushq %r14\n"
        "  pushq %r15\n"
        "  pushq %rsi\n"
        "  movq 0(%rdi), %rbx\n"
        "  movq 8(%rdi), %rbp\n"
        "  movq 16(%rdi), %r12\n"
        "  movq 24(%rdi), %r13\n"
        "  movq 32(%rdi), %r14\n"
        "  movq 40(%rdi), %r15\n"
        "  callq *%rdx\n"
        "  movq (%rsp), %rsi\n"
        "  movq %rbx, 0(%rsi)\n"
        "  movq %rbp, 8(%rsi)\n"
        "  movq %r12, 16(%rsi)\n"
        "  movq %r13, 24(%rsi)\n"
        "  movq %r14, 32(%rsi)\n"
        "  movq %r15, 40(%rsi)\n"
        "  popq %rsi\n"
        "  popq %r15\n"
        "  popq %r14\n"
        "  popq %r13\n"
        "  popq %r12\n"
        "  popq %rbx\n"
        "  popq %rbp\n"
        "  ret\n"
        ".size regs_across, .-regs_across\n");

static int regs_yields;

static void yield_once(void) {
  ASSERT_EQ(cloop_sleep(0), 0);
  regs_yields++;
}

enum { REG_TASKS = 4, REG_ROUNDS = 50 };

static intptr_t regs_task(void *arg) {
  uint64_t seed = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ULL + 1;
  for (int round = 0; round < REG_ROUNDS; round++) {
    uint64_t in[6], out[6];
    for (int i = 0; i < 6; i++)
      in[i] = test_rand(&seed);
    memset(out, 0, sizeof out);
    regs_across(in, out, yield_once);
    for (int i = 0; i < 6; i++)
      ASSERT_EQ(out[i], in[i]);
  }
  return 0;
}
#endif

TEST_IMPL_SWITCH(switch_callee_saved_registers) {
#if defined(__x86_64__)
  cloop_loop *loop;
  cloop_task *t[REG_TASKS];
  regs_yields = 0;
  LOOP_NEW_OPTS(loop, opts);
  for (int i = 0; i < REG_TASKS; i++)
    ASSERT_EQ(cloop_spawn(loop, &t[i], regs_task, (void *)(intptr_t)(i + 1), NULL), 0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(regs_yields, REG_TASKS * REG_ROUNDS);
  for (int i = 0; i < REG_TASKS; i++) {
    ASSERT_EQ(cloop_task_future(t[i])->state, CLOOP_DONE);
    cloop_task_release(t[i]);
  }
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
#else
  (void)opts;
  SKIP("the register check is written for x86-64");
#endif
}

/* ---- values held across awaits, as the compiler keeps them ------------- */

enum { HOLDERS = 4, HOLD_ROUNDS = 30 };

static struct {
  cloop_future fut[HOLDERS][HOLD_ROUNDS];
  int waiting[HOLDERS]; /* the round a holder awaits its future in, or -1 */
  int finished;
} hd;

/* Completes the futures the holders park on, and between its awaits fills
   the callee-saved registers with garbage: whatever runs next must get
   its own back from the switch, not these. */
static intptr_t clobberer(void *arg) {
  (void)arg;
  while (hd.finished < HOLDERS) {
    for (int i = 0; i < HOLDERS; i++)
      if (hd.waiting[i] >= 0) {
        ASSERT_EQ(cloop_future_set_result(&hd.fut[i][hd.waiting[i]], 1234), 0);
        hd.waiting[i] = -1;
      }
#if defined(__x86_64__)
    __asm__ volatile("movq $0x5a5a5a5a5a5a5a5a, %%rbx\n\t"
                     "movq %%rbx, %%r12\n\t"
                     "movq %%rbx, %%r13\n\t"
                     "movq %%rbx, %%r14\n\t"
                     "movq %%rbx, %%r15\n\t"
                     "pxor %%xmm0, %%xmm0\n\t"
                     "pcmpeqd %%xmm1, %%xmm1\n\t"
                     :
                     :
                     : "rbx", "r12", "r13", "r14", "r15", "xmm0", "xmm1");
#endif
    ASSERT_EQ(cloop_sleep(0), 0);
  }
  return 0;
}

/* Twelve integers and eight doubles live across each await. The empty
   asm statements make the compiler hold the integers in registers there
   and keep it from folding them into constants; each double has a
   volatile twin in memory, updated alike, to compare with. */
static intptr_t holder(void *arg) {
  int who = (int)(intptr_t)arg;
  uint64_t k = (uint64_t)who * 1000 + 7;
  uint64_t a = k + 1, b = k * 3, c = k ^ 0xff, d = k << 7, e = ~k, f = k * k;
  uint64_t g = k + 11, h = k * 13, i = k ^ 0xabcdef, j = k << 3, l = k + 99,
           m = k * 1000003;
  double x = (double)k * 0.5, y = (double)k / 3.0, z = 1.0 / ((double)k + 1),
         w = (double)k * 1e10, u = -(double)k, v = (double)k + 0.25,
         p = (double)k * 3.14159, q = 1e-300 * (double)(k + 1);
  volatile double sx = x, sy = y, sz = z, sw = w, su = u, sv = v, sp = p,
                  sq = q;
  for (int round = 0; round < HOLD_ROUNDS; round++) {
    __asm__ volatile("" : "+r"(a), "+r"(b), "+r"(c), "+r"(d), "+r"(e), "+r"(f));
    __asm__ volatile("" : "+r"(g), "+r"(h), "+r"(i), "+r"(j), "+r"(l), "+r"(m));
    if (round % 3 == 2) {
      intptr_t val = 0;
      hd.waiting[who] = round;
      ASSERT_EQ(cloop_await(&hd.fut[who][round], &val), 0);
      ASSERT_EQ(val, 1234);
    } else {
      ASSERT_EQ(cloop_sleep(round % 3 == 0 ? 0 : 1 * MS / 4), 0);
    }
    __asm__ volatile("" : "+r"(a), "+r"(b), "+r"(c), "+r"(d), "+r"(e), "+r"(f));
    __asm__ volatile("" : "+r"(g), "+r"(h), "+r"(i), "+r"(j), "+r"(l), "+r"(m));
    uint64_t r = (uint64_t)round;
    ASSERT_EQ(a, k + 1 + r);
    ASSERT_EQ(b, k * 3 + r);
    ASSERT_EQ(c, (k ^ 0xff) + r);
    ASSERT_EQ(d, (k << 7) + r);
    ASSERT_EQ(e, ~k + r);
    ASSERT_EQ(f, k * k + r);
    ASSERT_EQ(g, k + 11 + r);
    ASSERT_EQ(h, k * 13 + r);
    ASSERT_EQ(i, (k ^ 0xabcdef) + r);
    ASSERT_EQ(j, (k << 3) + r);
    ASSERT_EQ(l, k + 99 + r);
    ASSERT_EQ(m, k * 1000003 + r);
    ASSERT(x == sx);
    ASSERT(y == sy);
    ASSERT(z == sz);
    ASSERT(w == sw);
    ASSERT(u == su);
    ASSERT(v == sv);
    ASSERT(p == sp);
    ASSERT(q == sq);
    ASSERT(v == (double)k + 0.25 + round); /* exact: small values */
    /* A double formatted on the task's stack: printf's SSE code faults
       if the stack is misaligned. */
    char buf[64], want[64];
    snprintf(buf, sizeof buf, "%.2f|%Lf", v, (long double)k);
    snprintf(want, sizeof want, "%llu.25|%llu.000000",
             (unsigned long long)(k + r), (unsigned long long)k);
    ASSERT_EQ(strcmp(buf, want), 0);
    a++, b++, c++, d++, e++, f++, g++, h++, i++, j++, l++, m++;
    x += 1.0, sx += 1.0;
    y *= 1.5, sy *= 1.5;
    z -= 1.0, sz -= 1.0;
    w += 0.5, sw += 0.5;
    u = u * u - 1.0, su = su * su - 1.0;
    v += 1.0, sv += 1.0;
    p = p / 7.0, sp = sp / 7.0;
    q = q * 1e10, sq = sq * 1e10;
  }
  hd.finished++;
  return 0;
}

TEST_IMPL_SWITCH(switch_values_across_awaits) {
  cloop_loop *loop;
  cloop_task *t[HOLDERS];
  memset(&hd, 0, sizeof hd);
  LOOP_NEW_OPTS(loop, opts);
  for (int i = 0; i < HOLDERS; i++) {
    hd.waiting[i] = -1;
    for (int r = 0; r < HOLD_ROUNDS; r++)
      cloop_future_init(&hd.fut[i][r], loop);
  }
  for (int i = 0; i < HOLDERS; i++)
    ASSERT_EQ(cloop_spawn(loop, &t[i], holder, (void *)(intptr_t)i, NULL), 0);
  ASSERT_EQ(cloop_spawn(loop, NULL, clobberer, NULL, "clobberer"), 0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(hd.finished, HOLDERS);
  for (int i = 0; i < HOLDERS; i++) {
    ASSERT_EQ(cloop_task_future(t[i])->state, CLOOP_DONE);
    cloop_task_release(t[i]);
  }
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* ---- the FP control state (rounding mode) ------------------------------- */

static struct {
  int task_mode_after;    /* fegetround() in the task after its await */
  int loop_mode_parked;   /* fegetround() on the loop's stack meanwhile */
  double task_third;      /* 1/3 computed in the task after the await */
  double loop_third;      /* 1/3 computed on the loop's stack meanwhile */
  int other_task_mode;    /* fegetround() in another task meanwhile */
  int checked;
} rm;

static volatile double one = 1.0, three = 3.0;

static intptr_t rounding_task(void *arg) {
  cloop_future *f = arg;
  ASSERT_EQ(fegetround(), FE_TONEAREST);
  ASSERT_EQ(fesetround(FE_UPWARD), 0);
  ASSERT_EQ(cloop_await(f, NULL), 0);
  rm.task_mode_after = fegetround();
  rm.task_third = one / three;
  ASSERT_EQ(fesetround(FE_TONEAREST), 0); /* restored before it ends */
  return 0;
}

static intptr_t other_task(void *arg) {
  (void)arg;
  rm.other_task_mode = fegetround();
  return 0;
}

static void check_on_loop_stack(void *arg) {
  cloop_future *f = arg;
  ASSERT(cloop_current_task() == NULL);
  rm.loop_mode_parked = fegetround();
  rm.loop_third = one / three;
  rm.checked = 1;
  /* Whatever leaked, put it back before the task resumes, so the FAST
     case checks only what it documents. */
  fesetround(FE_TONEAREST);
  ASSERT_EQ(cloop_future_set_result(f, 0), 0);
}

TEST_IMPL_SWITCH(switch_rounding_mode) {
  volatile double nearest = one / three;
  ASSERT_EQ(fegetround(), FE_TONEAREST);
  ASSERT_EQ(fesetround(FE_UPWARD), 0);
  volatile double upward = one / three;
  ASSERT_EQ(fesetround(FE_TONEAREST), 0);
  ASSERT(nearest != upward); /* 1/3 rounds differently: a usable probe */

  cloop_loop *loop;
  cloop_future f;
  cloop_task *t;
  memset(&rm, 0, sizeof rm);
  LOOP_NEW_OPTS(loop, opts);
  cloop_future_init(&f, loop);
  ASSERT_EQ(cloop_spawn(loop, &t, rounding_task, &f, "rounding"), 0);
  ASSERT_EQ(cloop_run_once(loop, 0), 0); /* it set FE_UPWARD and parked */
  ASSERT_EQ(cloop_future_done(&f), 0);

  cloop_handle h = CLOOP_HANDLE_INIT(check_on_loop_stack, &f);
  cloop_call_soon(loop, &h);
  ASSERT_EQ(cloop_spawn(loop, NULL, other_task, NULL, "other"), 0);
  ASSERT_EQ(cloop_run(loop), 0);
  ASSERT_EQ(rm.checked, 1);
  ASSERT_EQ(cloop_task_future(t)->state, CLOOP_DONE);

  if (opts->switch_mode == CLOOP_SWITCH_FAST) {
    /* Documented: the fast switch shares one FP environment, so the
       task's mode leaks to whatever runs next on the thread. */
    ASSERT_EQ(rm.loop_mode_parked, FE_UPWARD);
    ASSERT(rm.loop_third == upward);
  } else {
    /* asm and ucontext keep the task's mode to the task. */
    ASSERT_EQ(rm.loop_mode_parked, FE_TONEAREST);
    ASSERT(rm.loop_third == nearest);
    ASSERT_EQ(rm.other_task_mode, FE_TONEAREST);
    /* and give it back to the task when it resumes */
    ASSERT_EQ(rm.task_mode_after, FE_UPWARD);
    ASSERT(rm.task_third == upward);
  }
  ASSERT_EQ(fegetround(), FE_TONEAREST);
  cloop_task_release(t);
  ASSERT_EQ(cloop_loop_free(loop), 0);
  return 0;
}

/* ---- the same on the shared stack (CLOOP_STACK_SHARED) ------------------ */

TEST_SHARED_STACK(switch_callee_saved_registers)
TEST_SHARED_STACK(switch_values_across_awaits)
TEST_SHARED_STACK(switch_rounding_mode)
