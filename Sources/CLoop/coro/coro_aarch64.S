/* coro_aarch64.S -- the context switch for AArch64, AAPCS64 (Linux).
 *
 *   void cloop__switch_asm(void **save_sp, void *load_sp);
 *   void cloop__switch_asm_fast(void **save_sp, void *load_sp);
 *
 * Saves the callee-saved state on the current stack, stores the stack
 * pointer in *save_sp, loads load_sp and restores the state saved there. The
 * caller-saved registers (x0-x18, v0-v7, v16-v31, the upper halves of
 * v8-v15) need no saving: the C caller assumes the call clobbers them. x18
 * is the platform register; Linux leaves it to the caller too. The fast
 * variant leaves out the FP control state (see CLOOP_SWITCH_FAST in
 * cloop.h) but keeps the same frame, so a stack is always laid out alike.
 *
 * The saved frame, from the saved stack pointer up (176 bytes, a multiple
 * of 16 as sp must always be):
 *
 *   +0    FPCR (8 bytes)         rounding mode, flush-to-zero, trap enables
 *   +8    unused (alignment)
 *   +16   d8     +24   d9        low 64 bits of v8-v15 (AAPCS64 keeps
 *   +32   d10    +40   d11         only those)
 *   +48   d12    +56   d13
 *   +64   d14    +72   d15
 *   +80   x19    +88   x20
 *   +96   x21    +104  x22
 *   +112  x23    +120  x24
 *   +128  x25    +136  x26
 *   +144  x27    +152  x28
 *   +160  x29 (fp)
 *   +168  x30 (lr): where the switch "returns" to
 *
 * x29/x30 sit at the top like an ordinary frame record, so the CFI below
 * (CFA = sp + 176, x29 and x30 just under it) is true on either stack.
 *
 * Return: `br x30`, not `ret`. As on x86-64 (pop + jmp, not ret), `ret` is
 * predicted from the return-address stack, whose top is the bl made on
 * *this* stack, so a ret onto another stack mispredicts on every switch.
 * `br` leaves the return stack alone and goes through the indirect
 * predictor, which learns the ping-pong between stacks. (The return stack
 * is out of step either way after a switch; br at least does not add a
 * miss of its own.)
 * Exception: with BTI on (-mbranch-protection=bti|standard, the default on
 * some distributions), `br` may only land on a BTI landing pad, and a return
 * site after a bl is not one: br x30 would trap with SIGILL once the
 * program's pages are guarded. Then we return with `ret x30` (no landing
 * pad needed) and pay the mispredict. In that case the object is marked
 * BTI-compatible (GNU property note at the end), so linking it does not
 * silently switch BTI off for the whole program.
 *
 * FPCR is restored only when it differs from the current value: an msr to
 * FPCR serialises on many cores, and coroutines nearly always share one
 * mode (glibc's fesetenv/fesetround skip equal writes for the same reason).
 *
 * A new coroutine's first frame (built by coro.c) holds x19 = entry
 * function, x20 = its argument, x29 = 0, FPCR = the creating thread's,
 * and "returns" into cloop__coro_start.
 */
#if defined(__aarch64__)

#if defined(__ARM_FEATURE_BTI_DEFAULT) && __ARM_FEATURE_BTI_DEFAULT
#define CLOOP_BTI 1
#define BTI_C   hint #34                /* bti c: an indirect call may land */
#define BTI_J   hint #36                /* bti j: an indirect jump may land */
#define RETURN  ret     x30             /* see "Exception" above        */
#else
#define BTI_C
#define BTI_J
#define RETURN  br      x30             /* "return" on the other stack  */
#endif

        .text

        .globl  cloop__switch_asm
        .type   cloop__switch_asm, %function
        .p2align 4
cloop__switch_asm:
        .cfi_startproc
        BTI_C
        /* The frame: the callee-saved registers and FPCR. */
        sub     sp, sp, #176
        .cfi_def_cfa_offset 176
        stp     x29, x30, [sp, #160]
        .cfi_offset x29, -16
        .cfi_offset x30, -8
        stp     x19, x20, [sp, #80]
        stp     x21, x22, [sp, #96]
        stp     x23, x24, [sp, #112]
        stp     x25, x26, [sp, #128]
        stp     x27, x28, [sp, #144]
        stp     d8,  d9,  [sp, #16]
        stp     d10, d11, [sp, #32]
        stp     d12, d13, [sp, #48]
        stp     d14, d15, [sp, #64]
        mrs     x9, fpcr
        str     x9, [sp]
        /* *save_sp = sp; then onto the other stack. */
        mov     x10, sp
        str     x10, [x0]
        mov     sp, x1
        /* Its return address first, so the jump target is known early. */
        ldp     x29, x30, [sp, #160]
        /* Its FP control, written only when it differs from ours. */
        ldr     x10, [sp]
        cmp     x9, x10
        b.eq    1f
        msr     fpcr, x10
1:
        /* Its callee-saved registers. */
        ldp     x19, x20, [sp, #80]
        ldp     x21, x22, [sp, #96]
        ldp     x23, x24, [sp, #112]
        ldp     x25, x26, [sp, #128]
        ldp     x27, x28, [sp, #144]
        ldp     d8,  d9,  [sp, #16]
        ldp     d10, d11, [sp, #32]
        ldp     d12, d13, [sp, #48]
        ldp     d14, d15, [sp, #64]
        /* Pop the frame and "return" on the other stack. */
        add     sp, sp, #176
        .cfi_def_cfa_offset 0
        .cfi_restore x29
        .cfi_restore x30
        RETURN
        .cfi_endproc
        .size   cloop__switch_asm, .-cloop__switch_asm

        .globl  cloop__switch_asm_fast
        .type   cloop__switch_asm_fast, %function
        .p2align 4
cloop__switch_asm_fast:
        .cfi_startproc
        BTI_C
        /* Same frame; the FPCR slot is left as it is. */
        sub     sp, sp, #176
        .cfi_def_cfa_offset 176
        stp     x29, x30, [sp, #160]
        .cfi_offset x29, -16
        .cfi_offset x30, -8
        stp     x19, x20, [sp, #80]
        stp     x21, x22, [sp, #96]
        stp     x23, x24, [sp, #112]
        stp     x25, x26, [sp, #128]
        stp     x27, x28, [sp, #144]
        stp     d8,  d9,  [sp, #16]
        stp     d10, d11, [sp, #32]
        stp     d12, d13, [sp, #48]
        stp     d14, d15, [sp, #64]
        /* *save_sp = sp; then onto the other stack. */
        mov     x10, sp
        str     x10, [x0]
        mov     sp, x1
        /* Its return address first, then its registers. */
        ldp     x29, x30, [sp, #160]
        ldp     x19, x20, [sp, #80]
        ldp     x21, x22, [sp, #96]
        ldp     x23, x24, [sp, #112]
        ldp     x25, x26, [sp, #128]
        ldp     x27, x28, [sp, #144]
        ldp     d8,  d9,  [sp, #16]
        ldp     d10, d11, [sp, #32]
        ldp     d12, d13, [sp, #48]
        ldp     d14, d15, [sp, #64]
        /* Pop the frame and "return" on the other stack. */
        add     sp, sp, #176
        .cfi_def_cfa_offset 0
        .cfi_restore x29
        .cfi_restore x30
        RETURN
        .cfi_endproc
        .size   cloop__switch_asm_fast, .-cloop__switch_asm_fast

/* Where a new coroutine starts: the first switch to it pops the frame made
   by coro.c, leaving sp at the 16-byte-aligned top of its stack, and
   "returns" here. Its return address (x30) is undefined in the unwind
   table, so debuggers and unwinders stop their backtrace here; x29 = 0
   (from the frame) ends frame-pointer walks. */
        .globl  cloop__coro_start
        .type   cloop__coro_start, %function
        .p2align 4
cloop__coro_start:
        .cfi_startproc
        .cfi_undefined x30
        BTI_J                           /* reached by a branch, not a call */
        mov     x0, x20                 /* the argument                 */
        blr     x19                     /* entry(arg); must not return  */
        brk     #0x3c                   /* trap if it does              */
        .cfi_endproc
        .size   cloop__coro_start, .-cloop__coro_start

#if defined(CLOOP_BTI)
/* GNU property note: this object is BTI-compatible (every indirect-branch
   target above has its landing pad). */
        .pushsection .note.gnu.property, "a"
        .p2align 3
        .word   4                       /* name size: "GNU\0"           */
        .word   16                      /* descriptor size              */
        .word   5                       /* NT_GNU_PROPERTY_TYPE_0       */
        .asciz  "GNU"
        .word   0xc0000000              /* GNU_PROPERTY_AARCH64_FEATURE_1_AND */
        .word   4
        .word   1                       /* GNU_PROPERTY_AARCH64_FEATURE_1_BTI */
        .word   0                       /* padding to 8 bytes           */
        .popsection
#endif

#endif
        .section .note.GNU-stack,"",%progbits
