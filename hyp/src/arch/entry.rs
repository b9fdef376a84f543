//! EL2 entry points: `_start` (boot CPU, entered by QEMU) and `_secondary_start` (CPUs started with
//! PSCI CPU_ON, x0 = context id = CPU index), plus the boot-time exception vectors.
//!
//! Both entries run with the MMU off and do the minimum before Rust:
//! 1. mask DAIF;
//! 2. `CPTR_EL2` so FP/SIMD instructions do not trap (the Rust target uses NEON registers);
//! 3. `SCTLR_EL2` to a known state: MMU and caches off, alignment checks on (strict alignment);
//! 4. `TPIDR_EL2 = &PERCPU[index]`;
//! 5. `VBAR_EL2` to [`boot_vectors`](self) so that an exception during boot panics with its ESR
//!    (on this CPU's emergency stack) instead of looping silently (the virtualization layer
//!    installs its own vectors later); `SP` = top of this CPU's 64 KiB stack slot;
//! 6. CPU 0 only: zero `.bss`;
//! 7. call [`rust_entry`], which never returns.

use core::arch::global_asm;

use super::cpu::{EMERGENCY_STACK_SIZE, MAX_CPUS, PERCPU, PERCPU_SIZE, STACK_SIZE};
use super::sysreg::{CPTR_EL2_BOOT, SCTLR_EL2_MMU_OFF};

global_asm!(
    r#"
    .section .text.entry, "ax"
    .global _start
_start:
    mov     x19, #0
    b       1f

    .global _secondary_start
_secondary_start:
    mov     x19, x0
    cmp     x19, #{max_cpus}
    b.hs    9f

1:
    msr     daifset, #0xf
    ldr     x1, ={cptr}
    msr     cptr_el2, x1
    ldr     x1, ={sctlr}
    msr     sctlr_el2, x1
    isb
    adrp    x2, {percpu}
    add     x2, x2, :lo12:{percpu}
    ldr     x3, ={percpu_size}
    madd    x2, x19, x3, x2
    msr     tpidr_el2, x2

    adrp    x1, boot_vectors
    add     x1, x1, :lo12:boot_vectors
    msr     vbar_el2, x1

    adrp    x4, __stacks_start
    add     x4, x4, :lo12:__stacks_start
    add     x5, x19, #1
    ldr     x6, ={stack_size}
    madd    x4, x5, x6, x4
    mov     sp, x4
    str     x4, [x2, #8]
    isb

    cbnz    x19, 3f
    adrp    x7, __bss_start
    add     x7, x7, :lo12:__bss_start
    adrp    x8, __bss_end
    add     x8, x8, :lo12:__bss_end
2:
    cmp     x7, x8
    b.hs    3f
    stp     xzr, xzr, [x7], #16
    b       2b
3:
    mov     x0, x19
    bl      {rust_entry}
9:
    wfe
    b       9b
    .ltorg

    /* Boot-time vectors: 16 entries of 128 bytes, table aligned to 2 KiB. */
    .balign 2048
boot_vectors:
    .irp    kind, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    .balign 128
    mov     x3, #\kind
    b       boot_vector
    .endr

    /* Report on this CPU's emergency stack: the boot stack may be what failed (a guard page). */
boot_vector:
    mrs     x0, tpidr_el2
    ldr     x0, [x0]
    add     x0, x0, #1
    mov     x1, #{emergency_size}
    adrp    x2, __emergency_stacks_start
    add     x2, x2, :lo12:__emergency_stacks_start
    madd    x0, x0, x1, x2
    mov     sp, x0
    mrs     x0, esr_el2
    mrs     x1, elr_el2
    mrs     x2, far_el2
    b       {boot_exception}
    "#,
    max_cpus = const MAX_CPUS,
    cptr = const CPTR_EL2_BOOT,
    sctlr = const SCTLR_EL2_MMU_OFF,
    percpu = sym PERCPU,
    percpu_size = const PERCPU_SIZE,
    stack_size = const STACK_SIZE,
    emergency_size = const EMERGENCY_STACK_SIZE,
    rust_entry = sym rust_entry,
    boot_exception = sym boot_exception,
);

unsafe extern "C" {
    /// Entry of a secondary CPU started with PSCI CPU_ON (context id = CPU index).
    fn _secondary_start();
}

/// Physical (= virtual, identity-mapped) address of the secondary-CPU entry point, for CPU_ON.
pub fn secondary_entry() -> u64 {
    _secondary_start as *const () as u64
}

/// First Rust code on every CPU. Stack, `TPIDR_EL2` and (CPU 0) `.bss` are ready; MMU is off.
extern "C" fn rust_entry(cpu: usize) -> ! {
    if cpu == 0 {
        crate::boot_main()
    } else {
        crate::secondary_main(cpu)
    }
}

/// Names of the 16 vector entries, in table order.
const VECTOR_KIND: [&str; 16] = [
    "sync from EL2t", "IRQ from EL2t", "FIQ from EL2t", "SError from EL2t",
    "sync from EL2h", "IRQ from EL2h", "FIQ from EL2h", "SError from EL2h",
    "sync from lower EL (AArch64)", "IRQ from lower EL (AArch64)",
    "FIQ from lower EL (AArch64)", "SError from lower EL (AArch64)",
    "sync from lower EL (AArch32)", "IRQ from lower EL (AArch32)",
    "FIQ from lower EL (AArch32)", "SError from lower EL (AArch32)",
];

/// Any exception taken while the boot vectors are installed is a hypervisor bug: panic with the
/// syndrome (which exits QEMU with status 101).
extern "C" fn boot_exception(esr: u64, elr: u64, far: u64, kind: usize) -> ! {
    let guard = super::boot::stack_guards().iter().any(|&g| (g..g + super::cpu::STACK_GUARD_SIZE as u64).contains(&far));
    panic!(
        "unexpected exception at EL2 during boot: {} ESR_EL2={:#x} ({:?}) ELR_EL2={:#x} FAR_EL2={:#x}{}",
        VECTOR_KIND[kind & 15],
        esr,
        hyp::esr::Syndrome::decode(esr).class,
        elr,
        far,
        if guard { " (stack overflow: FAR is in a stack guard page)" } else { "" }
    )
}
