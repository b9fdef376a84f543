//! EL2 exception vectors and the guest entry/exit trampolines.
//!
//! The model is a run loop (KVM's `__guest_enter`/`__guest_exit`): Rust calls [`enter_guest`] with a
//! vCPU's register file; the assembly saves the hypervisor's callee-saved registers on the EL2
//! stack, loads the guest's general and FP/SIMD registers, and ERETs. The next exception from the
//! guest lands in the lower-EL vectors, which store every guest register back into the same
//! register file (whose address was left at the top of the EL2 stack), restore the hypervisor's
//! registers and return from `enter_guest` with the kind of exit. All trap *logic* is then safe Rust
//! in `virt::trap`.
//!
//! FP/SIMD registers are saved eagerly on every exit because the hypervisor's own Rust code uses
//! NEON registers (aarch64-unknown-none enables them): the engine's fault path itself zeroes
//! stack structures with `movi`/`stp q`, so a lazy switch (CPTR_EL2.TFP, which traps EL2's own
//! FP/SIMD use too) would take that trap on every fault and cost more than it saves (measured:
//! +32 instructions per zero-fill fault). Lazy switching needs a hypervisor built without FP
//! (the `aarch64-unknown-none-softfloat` target; `-C target-feature=-neon` on
//! aarch64-unknown-none is being phased out by rustc, rust-lang/rust#116344). The eager cost is
//! about 50 instructions per exit.
//!
//! Exceptions taken from EL2 itself are hypervisor bugs: they print ESR/ELR/FAR and panic, on a
//! per-CPU emergency stack (the EL2 stack may be the problem: a stack overflow hits the unmapped
//! guard page under it, `mmu.rs`). A fault taken while already on the emergency stack exits QEMU
//! with the panic status directly (semihosting SYS_EXIT), so nothing recurses or hangs.
//!
//! SErrors are collected at two points so that each has one possible author (`hyp::serror`
//! says why, after KVM's `__guest_enter`/`__guest_exit`): every lower-EL vector starts with `ESB`
//! and the exit path reads DISR_EL1 (FEAT_RAS), or without FEAT_RAS opens PSTATE.A for one
//! instruction if ISR_EL1.A says one is pending — what it finds was pending when the guest left;
//! and the entry path does the same check after `DSB SY` before it enters the guest — what it
//! finds came from the hypervisor's work, and the guest is not entered. The EL2 SError vector
//! accepts an SError only inside those two windows (by ELR_EL2); anywhere else is a bug.
//!
//! Stack frame of `enter_guest` while the guest runs (EL2 runs on SP_EL2, EL2h):
//! ```text
//!   sp+0    *mut GuestRegs
//!   sp+16   x19..x30  (96 bytes)
//!   sp+112  d8..d15   (64 bytes)
//! ```

use core::arch::global_asm;
use core::mem::offset_of;
use core::sync::atomic::{AtomicU64, Ordering};

use hyp::serror::Seen;

use super::cpu::{PerCpu, EMERGENCY_STACK_SIZE, STACK_GUARD_MASK};

/// The guest's state that the trampolines move; everything else lives in `vcpu::El1Sysregs`.
#[repr(C, align(16))]
#[derive(Clone)]
pub struct GuestRegs {
    /// x0..x30.
    pub x: [u64; 31],
    /// Where the guest resumes (ELR_EL2).
    pub elr_el2: u64,
    /// The guest's PSTATE (SPSR_EL2).
    pub spsr_el2: u64,
    /// Syndrome of the last exit (ESR_EL2), captured by the exit trampoline.
    pub esr_el2: u64,
    /// FAR_EL2 of the last exit.
    pub far_el2: u64,
    /// HPFAR_EL2 of the last exit.
    pub hpfar_el2: u64,
    pub fpcr: u64,
    pub fpsr: u64,
    /// q0..q31.
    pub q: [u128; 32],
    /// The syndrome of an SError found on the way out or in (DISR_EL1, or ESR_EL2 when it was
    /// taken at EL2); meaningful with an [`ExitKind::SError`] exit of [`Seen::AtExit`] or
    /// [`Seen::BeforeEntry`].
    pub serror: u64,
}

impl GuestRegs {
    /// All zero: the state of a vCPU that has never run.
    pub const fn zeroed() -> Self {
        GuestRegs {
            x: [0; 31],
            elr_el2: 0,
            spsr_el2: 0,
            esr_el2: 0,
            far_el2: 0,
            hpfar_el2: 0,
            fpcr: 0,
            fpsr: 0,
            q: [0; 32],
            serror: 0,
        }
    }

    /// General register `n` as an instruction operand reads it (31 = XZR).
    pub fn reg(&self, n: u8) -> u64 {
        self.x.get(usize::from(n)).copied().unwrap_or(0)
    }

    /// Write general register `n` (31 = XZR: ignored).
    pub fn set_reg(&mut self, n: u8, value: u64) {
        if let Some(r) = self.x.get_mut(usize::from(n)) {
            *r = value;
        }
    }
}

/// Which lower-EL vector the guest's exception used.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ExitKind {
    /// Synchronous exception (ESR_EL2 says which).
    Sync,
    /// Physical IRQ (routed to EL2 by HCR_EL2.IMO).
    Irq,
    /// Physical FIQ (HCR_EL2.FMO).
    Fiq,
    /// An SError (HCR_EL2.AMO routes physical ones to EL2), and where it was found: through the
    /// guest's SError vector, pending at its exit (whatever the exit was otherwise), or pending
    /// before entry (the guest did not run).
    SError(Seen),
}

/// Why `enter_guest` returned.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Exit {
    pub kind: ExitKind,
    /// The guest was in AArch32 state (EL0 only: HCR_EL2.RW makes EL1 AArch64).
    pub from_aarch32: bool,
}

impl Exit {
    fn from_code(code: u64) -> Exit {
        let kind = if code & EXIT_HYP_SERROR != 0 {
            ExitKind::SError(Seen::BeforeEntry)
        } else if code & EXIT_SERROR_AT_EXIT != 0 {
            // It stops the VM: the exit it came with needs no handling.
            ExitKind::SError(Seen::AtExit)
        } else {
            match code & EXIT_KIND_MASK {
                EXIT_SYNC => ExitKind::Sync,
                EXIT_IRQ => ExitKind::Irq,
                EXIT_FIQ => ExitKind::Fiq,
                _ => ExitKind::SError(Seen::GuestVector),
            }
        };
        Exit { kind, from_aarch32: code & EXIT_AARCH32 != 0 }
    }
}

/// Exit codes: the lower-EL vectors pass them to `__uvmhyp_guest_exit` in x1, and `enter_guest`
/// returns them: the kind, plus [`EXIT_AARCH32`] from the AArch32 half.
const EXIT_SYNC: u64 = 0;
const EXIT_IRQ: u64 = 1;
const EXIT_FIQ: u64 = 2;
const EXIT_SERROR: u64 = 3;
const EXIT_KIND_MASK: u64 = 3;
const EXIT_AARCH32: u64 = 4;
/// Or-ed in by the exit path: an SError was pending when the guest exited.
const EXIT_SERROR_AT_EXIT: u64 = 8;
/// Returned by the entry path instead of entering: an SError from the hypervisor's work.
const EXIT_HYP_SERROR: u64 = 16;

/// FEAT_RAS is implemented (ID_AA64PFR0_EL1.RAS): the entry and exit paths use ESB and
/// DISR_EL1. Set by [`install`], read by the trampolines.
static HAS_RAS: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" {
    fn __uvmhyp_guest_enter(regs: *mut GuestRegs) -> u64;
    static __uvmhyp_vectors: u8;
}

/// Run the guest whose general/FP registers are `regs` (its EL1 system registers, VTTBR_EL2 and
/// HCR_EL2 must already be loaded on this CPU) until its next exception to EL2.
///
/// # Locks
/// Must be called with no spin lock held: the guest may run for a whole time slice.
pub fn enter_guest(regs: &mut GuestRegs) -> Exit {
    // SAFETY: `regs` is a valid, exclusively borrowed GuestRegs for the whole call; the trampoline
    // only reads/writes inside it and the EL2 stack frame it pushes, restores every callee-saved
    // register (x19-x30, d8-d15) before returning, and VBAR_EL2 points at `__uvmhyp_vectors`
    // (installed by `install` on this CPU before any guest runs).
    let code = unsafe { __uvmhyp_guest_enter(regs) };
    Exit::from_code(code)
}

/// Point VBAR_EL2 at the vector table. Call once per CPU before entering any guest (cpu_main does).
pub fn install() {
    HAS_RAS.store(u64::from(super::cpu::has_ras()), Ordering::Relaxed);
    let base = core::ptr::addr_of!(__uvmhyp_vectors) as u64;
    // SAFETY: the table is 2 KiB aligned and every entry is valid code; ISB makes it effective.
    unsafe { core::arch::asm!("msr vbar_el2, {0}", "isb", in(reg) base, options(nostack)) };
}

/// An address the EL2 identity map cannot cover: the end of its VA range (`mmu.rs`).
const UNMAPPED_VA: u64 = super::mmu::VA_LIMIT;

/// The `selftest=panic-fault` hook (`hyp::selftest`): fault at EL2 from the panic path. The
/// address is in x0, pointer-sized, as the guard's old bug needed to show (it left SP + x0).
pub fn fault_for_selftest() -> ! {
    // SAFETY: the load faults (nothing is mapped at UNMAPPED_VA, and it reads no Rust object);
    // the EL2 vectors take it as a hypervisor bug and never return here.
    unsafe { core::arch::asm!("ldr x1, [x0]", "b .", in("x0") UNMAPPED_VA, options(noreturn, nostack)) }
}

/// Called by the current-EL vectors: an exception taken from EL2 itself is a hypervisor bug.
#[unsafe(no_mangle)]
extern "C" fn uvmhyp_el2_exception(kind: u64, esr: u64, elr: u64, far: u64) -> ! {
    if kind == KIND_STACK_OVERFLOW {
        panic!("EL2 stack overflow (guard page hit) ESR_EL2={esr:#x} ELR_EL2={elr:#x} FAR_EL2={far:#x}");
    }
    panic!("EL2 exception (vector {kind}) ESR_EL2={esr:#x} ELR_EL2={elr:#x} FAR_EL2={far:#x}");
}

global_asm!(
    r#"
.pushsection .text.uvmhyp_vectors, "ax"
.macro el2_bug kind
    .balign 0x80
    mov x0, #\kind
    b __uvmhyp_el2_bug
.endm
.macro lower code
    .balign 0x80
    hint #16                        // ESB: defer an SError pending now into DISR_EL1 (FEAT_RAS)
    stp x0, x1, [sp, #-16]!
    mov x1, #\code
    b __uvmhyp_guest_exit
.endm

    .balign 0x800
.global __uvmhyp_vectors
__uvmhyp_vectors:
    // Current EL with SP_EL0.
    el2_bug 0
    el2_bug 1
    el2_bug 2
    el2_bug 3
    // Current EL with SP_ELx, synchronous. (No test of ESR: every exception at EL2 is a bug.) If
    // the stack overflowed into its guard page, say so. Test the interrupted SP without a free
    // register (KVM's trick): the 64 KiB stack slots are 64 KiB aligned and their lowest 4 KiB
    // page is the guard, so SP[15:12] = 0 there (and at the top of an empty stack, which EL2
    // code never runs with). The flags are free: SPSR_EL2 holds the interrupted ones. SP and x0
    // are put back before branching (SUB leaves the flags alone): `__uvmhyp_el2_bug` decides
    // from SP whether it already is on the emergency stack, and SP + x0 would miss it, so a
    // fault in the panic path would re-enter it forever instead of exiting with 101.
    .balign 0x80
    add sp, sp, x0
    sub x0, sp, x0
    tst x0, #{guard_mask}
    sub x0, sp, x0
    sub sp, sp, x0
    b.eq 1f
    mov x0, #4
    b __uvmhyp_el2_bug
1:  mov x0, #{kind_overflow}
    b __uvmhyp_el2_bug
    el2_bug 5
    el2_bug 6
    .balign 0x80
    b __uvmhyp_el2_serror
    // Lower EL, AArch64.
    lower {sync}
    lower {irq}
    lower {fiq}
    lower {serror}
    // Lower EL, AArch32 (EL0 only).
    lower {sync32}
    lower {irq32}
    lower {fiq32}
    lower {serror32}

// A bug at EL2 (x0 = vector kind; x1-x3 and SP are not needed any more): report it on this
// CPU's emergency stack. If SP already is on it, reporting faulted too: end the run with the
// panic status through semihosting (SYS_EXIT, ADP_Stopped_ApplicationExit, 101).
__uvmhyp_el2_bug:
    mrs x1, tpidr_el2
    ldr x1, [x1, #{percpu_index}]
    add x1, x1, #1
    mov x2, #{emergency_size}
    adrp x3, __emergency_stacks_start
    add x3, x3, :lo12:__emergency_stacks_start
    madd x1, x1, x2, x3
    mov x2, sp
    sub x3, x1, #{emergency_size}
    cmp x2, x3
    b.lo 2f
    cmp x2, x1
    b.hi 2f
    mov x0, #0x18
    adr x1, 3f
    hlt #0xf000
    b .
2:  mov sp, x1
    mrs x1, esr_el2
    mrs x2, elr_el2
    mrs x3, far_el2
    bl uvmhyp_el2_exception
    b .
    .balign 8
3:  .quad 0x20026, 101

// An SError taken at EL2. EL2 unmasks PSTATE.A only in the one-instruction windows of the entry
// and exit paths, where x0 = the GuestRegs and x1 = the exit code (x2, x3 are free): record the
// syndrome, mark an exit-window SError as the guest's, and return into the window (an
// entry-window one already has its code, EXIT_HYP_SERROR). ELR_EL2 is the window's ISB or the
// instruction after it. Anywhere else it is a bug.
__uvmhyp_el2_serror:
    mrs x2, elr_el2
    adr x3, __uvmhyp_exit_window
    cmp x2, x3
    adr x3, __uvmhyp_exit_window_end
    ccmp x2, x3, #4, ne
    b.eq 1f
    adr x3, __uvmhyp_entry_window
    cmp x2, x3
    adr x3, __uvmhyp_entry_window_end
    ccmp x2, x3, #4, ne
    b.eq 2f
    mov x0, #7
    b __uvmhyp_el2_bug
1:  orr x1, x1, #{serror_at_exit}
2:  mrs x2, esr_el2
    str x2, [x0, #{regs_serror}]
    eret

// u64 __uvmhyp_guest_enter(GuestRegs *x0)
.global __uvmhyp_guest_enter
__uvmhyp_guest_enter:
    sub sp, sp, #176
    stp x19, x20, [sp, #16]
    stp x21, x22, [sp, #32]
    stp x23, x24, [sp, #48]
    stp x25, x26, [sp, #64]
    stp x27, x28, [sp, #80]
    stp x29, x30, [sp, #96]
    stp d8, d9, [sp, #112]
    stp d10, d11, [sp, #128]
    stp d12, d13, [sp, #144]
    stp d14, d15, [sp, #160]
    str x0, [sp]

    // An SError pending now arose from the hypervisor's work since the last exit (that exit
    // collected the guest's): collect it here and do not enter, or the guest would take it.
    dsb sy
    isb
    mov x1, #{hyp_serror}
    str xzr, [x0, #{regs_serror}]
    adrp x2, {has_ras}
    ldr x2, [x2, :lo12:{has_ras}]
    cbz x2, 4f
    hint #16                        // ESB
    mrs x2, s3_0_c12_c1_1           // DISR_EL1
    cbz x2, 5f
    msr s3_0_c12_c1_1, xzr
    str x2, [x0, #{regs_serror}]
    b __uvmhyp_return
4:  mrs x2, isr_el1
    tbz x2, #8, 5f                  // ISR_EL1.A: none pending
    msr daifclr, #4
__uvmhyp_entry_window:
    isb
__uvmhyp_entry_window_end:
    msr daifset, #4
    b __uvmhyp_return

5:  ldr x1, [x0, #{elr}]
    msr elr_el2, x1
    ldr x1, [x0, #{spsr}]
    msr spsr_el2, x1
    ldr x1, [x0, #{fpcr}]
    msr fpcr, x1
    ldr x1, [x0, #{fpsr}]
    msr fpsr, x1
    add x1, x0, #{q}
    ldp q0, q1, [x1, #0]
    ldp q2, q3, [x1, #32]
    ldp q4, q5, [x1, #64]
    ldp q6, q7, [x1, #96]
    ldp q8, q9, [x1, #128]
    ldp q10, q11, [x1, #160]
    ldp q12, q13, [x1, #192]
    ldp q14, q15, [x1, #224]
    ldp q16, q17, [x1, #256]
    ldp q18, q19, [x1, #288]
    ldp q20, q21, [x1, #320]
    ldp q22, q23, [x1, #352]
    ldp q24, q25, [x1, #384]
    ldp q26, q27, [x1, #416]
    ldp q28, q29, [x1, #448]
    ldp q30, q31, [x1, #480]
    // Stage-2 descriptors written by the fault path must be visible to the table walker.
    dsb ish
    ldp x2, x3, [x0, #16]
    ldp x4, x5, [x0, #32]
    ldp x6, x7, [x0, #48]
    ldp x8, x9, [x0, #64]
    ldp x10, x11, [x0, #80]
    ldp x12, x13, [x0, #96]
    ldp x14, x15, [x0, #112]
    ldp x16, x17, [x0, #128]
    ldp x18, x19, [x0, #144]
    ldp x20, x21, [x0, #160]
    ldp x22, x23, [x0, #176]
    ldp x24, x25, [x0, #192]
    ldp x26, x27, [x0, #208]
    ldp x28, x29, [x0, #224]
    ldr x30, [x0, #240]
    ldp x0, x1, [x0]
    eret
    dsb nsh
    isb

// Entered from a lower-EL vector: guest x0/x1 at [sp], the GuestRegs pointer at [sp + 16],
// x1 = exit code.
__uvmhyp_guest_exit:
    ldr x0, [sp, #16]
    stp x2, x3, [x0, #16]
    stp x4, x5, [x0, #32]
    stp x6, x7, [x0, #48]
    stp x8, x9, [x0, #64]
    stp x10, x11, [x0, #80]
    stp x12, x13, [x0, #96]
    stp x14, x15, [x0, #112]
    stp x16, x17, [x0, #128]
    stp x18, x19, [x0, #144]
    stp x20, x21, [x0, #160]
    stp x22, x23, [x0, #176]
    stp x24, x25, [x0, #192]
    stp x26, x27, [x0, #208]
    stp x28, x29, [x0, #224]
    str x30, [x0, #240]
    ldp x2, x3, [sp], #16
    stp x2, x3, [x0]
    mrs x2, elr_el2
    str x2, [x0, #{elr}]
    mrs x2, spsr_el2
    str x2, [x0, #{spsr}]
    mrs x2, esr_el2
    str x2, [x0, #{esr}]
    mrs x2, far_el2
    str x2, [x0, #{far}]
    mrs x2, hpfar_el2
    str x2, [x0, #{hpfar}]
    mrs x2, fpcr
    str x2, [x0, #{fpcr}]
    mrs x2, fpsr
    str x2, [x0, #{fpsr}]
    add x2, x0, #{q}
    stp q0, q1, [x2, #0]
    stp q2, q3, [x2, #32]
    stp q4, q5, [x2, #64]
    stp q6, q7, [x2, #96]
    stp q8, q9, [x2, #128]
    stp q10, q11, [x2, #160]
    stp q12, q13, [x2, #192]
    stp q14, q15, [x2, #224]
    stp q16, q17, [x2, #256]
    stp q18, q19, [x2, #288]
    stp q20, q21, [x2, #320]
    stp q22, q23, [x2, #352]
    stp q24, q25, [x2, #384]
    stp q26, q27, [x2, #416]
    stp q28, q29, [x2, #448]
    stp q30, q31, [x2, #480]
    // An SError pending now was pending when the guest left (the vector's ESB deferred it into
    // DISR_EL1; without FEAT_RAS it is still pending): the guest's. Collect it before EL2 does
    // any work of its own.
    adrp x2, {has_ras}
    ldr x2, [x2, :lo12:{has_ras}]
    cbz x2, 6f
    mrs x2, s3_0_c12_c1_1           // DISR_EL1
    cbz x2, __uvmhyp_return
    msr s3_0_c12_c1_1, xzr
    str x2, [x0, #{regs_serror}]
    orr x1, x1, #{serror_at_exit}
    b __uvmhyp_return
6:  dsb sy
    isb
    mrs x2, isr_el1
    tbz x2, #8, __uvmhyp_return     // ISR_EL1.A: none pending
    msr daifclr, #4
__uvmhyp_exit_window:
    isb
__uvmhyp_exit_window_end:
    msr daifset, #4
__uvmhyp_return:
    ldp x19, x20, [sp, #16]
    ldp x21, x22, [sp, #32]
    ldp x23, x24, [sp, #48]
    ldp x25, x26, [sp, #64]
    ldp x27, x28, [sp, #80]
    ldp x29, x30, [sp, #96]
    ldp d8, d9, [sp, #112]
    ldp d10, d11, [sp, #128]
    ldp d12, d13, [sp, #144]
    ldp d14, d15, [sp, #160]
    add sp, sp, #176
    mov x0, x1
    ret
.popsection
"#,
    sync = const EXIT_SYNC,
    irq = const EXIT_IRQ,
    fiq = const EXIT_FIQ,
    serror = const EXIT_SERROR,
    sync32 = const EXIT_SYNC | EXIT_AARCH32,
    irq32 = const EXIT_IRQ | EXIT_AARCH32,
    fiq32 = const EXIT_FIQ | EXIT_AARCH32,
    serror32 = const EXIT_SERROR | EXIT_AARCH32,
    elr = const offset_of!(GuestRegs, elr_el2),
    spsr = const offset_of!(GuestRegs, spsr_el2),
    esr = const offset_of!(GuestRegs, esr_el2),
    far = const offset_of!(GuestRegs, far_el2),
    hpfar = const offset_of!(GuestRegs, hpfar_el2),
    fpcr = const offset_of!(GuestRegs, fpcr),
    fpsr = const offset_of!(GuestRegs, fpsr),
    q = const offset_of!(GuestRegs, q),
    regs_serror = const offset_of!(GuestRegs, serror),
    serror_at_exit = const EXIT_SERROR_AT_EXIT,
    hyp_serror = const EXIT_HYP_SERROR,
    has_ras = sym HAS_RAS,
    percpu_index = const offset_of!(PerCpu, index),
    emergency_size = const EMERGENCY_STACK_SIZE,
    guard_mask = const STACK_GUARD_MASK,
    kind_overflow = const KIND_STACK_OVERFLOW,
);

/// The vector kind `__uvmhyp_el2_bug` reports for a synchronous exception at EL2 with SP inside a
/// stack's guard page (the 16 table entries are kinds 0-15).
const KIND_STACK_OVERFLOW: u64 = 16;

const _: () = assert!(offset_of!(GuestRegs, x) == 0);
const _: () = assert!(offset_of!(GuestRegs, elr_el2) == 248);
const _: () = assert!(offset_of!(GuestRegs, q) % 16 == 0);
