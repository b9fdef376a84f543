//! EL1 exception vectors: record ESR_EL1/FAR_EL1/ELR_EL1 and resume after an expected abort.
//!
//! All sixteen entries save the caller-saved state (x0..x18, x29, x30, q0..q31) and call
//! [`guest_exception`] with the entry's index. If the program armed [`probe_read`] or
//! [`probe_exec`] and the exception is a synchronous one from the current EL, the syndrome is
//! recorded and ELR_EL1 is moved past the faulting load (one 4-byte instruction) or back to the
//! branch's return address; otherwise the exception is reported and the VM exits
//! with [`crate::EXIT_UNEXPECTED_EXCEPTION`].

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

global_asm!(
    r#"
    .macro GUEST_VECTOR index
    .balign 0x80
    sub     sp, sp, #(22 * 8 + 32 * 16)
    stp     x0, x1, [sp, #0]
    mov     x0, #\index
    b       guest_vector_common
    .endm

    .section .text.vectors, "ax"
    .balign 2048
    .global guest_vectors
guest_vectors:
    GUEST_VECTOR 0
    GUEST_VECTOR 1
    GUEST_VECTOR 2
    GUEST_VECTOR 3
    GUEST_VECTOR 4
    GUEST_VECTOR 5
    GUEST_VECTOR 6
    GUEST_VECTOR 7
    GUEST_VECTOR 8
    GUEST_VECTOR 9
    GUEST_VECTOR 10
    GUEST_VECTOR 11
    GUEST_VECTOR 12
    GUEST_VECTOR 13
    GUEST_VECTOR 14
    GUEST_VECTOR 15

guest_vector_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x29, [sp, #144]
    str     x30, [sp, #160]
    add     x1, sp, #176
    stp     q0, q1, [x1], #32
    stp     q2, q3, [x1], #32
    stp     q4, q5, [x1], #32
    stp     q6, q7, [x1], #32
    stp     q8, q9, [x1], #32
    stp     q10, q11, [x1], #32
    stp     q12, q13, [x1], #32
    stp     q14, q15, [x1], #32
    stp     q16, q17, [x1], #32
    stp     q18, q19, [x1], #32
    stp     q20, q21, [x1], #32
    stp     q22, q23, [x1], #32
    stp     q24, q25, [x1], #32
    stp     q26, q27, [x1], #32
    stp     q28, q29, [x1], #32
    stp     q30, q31, [x1], #32
    bl      guest_exception
    add     x1, sp, #176
    ldp     q0, q1, [x1], #32
    ldp     q2, q3, [x1], #32
    ldp     q4, q5, [x1], #32
    ldp     q6, q7, [x1], #32
    ldp     q8, q9, [x1], #32
    ldp     q10, q11, [x1], #32
    ldp     q12, q13, [x1], #32
    ldp     q14, q15, [x1], #32
    ldp     q16, q17, [x1], #32
    ldp     q18, q19, [x1], #32
    ldp     q20, q21, [x1], #32
    ldp     q22, q23, [x1], #32
    ldp     q24, q25, [x1], #32
    ldp     q26, q27, [x1], #32
    ldp     q28, q29, [x1], #32
    ldp     q30, q31, [x1], #32
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x29, [sp, #144]
    ldr     x30, [sp, #160]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #(22 * 8 + 32 * 16)
    eret
    "#
);

/// ESR_EL1.EC of a data abort taken without a change in exception level.
pub const EC_DATA_ABORT_SAME_EL: u64 = 0x25;
/// ESR_EL1.EC of an instruction abort taken without a change in exception level.
pub const EC_INSTR_ABORT_SAME_EL: u64 = 0x21;
/// DFSC (and IFSC) of a synchronous external abort, not on a translation table walk.
pub const DFSC_SEA: u64 = 0b01_0000;

/// ESR_EL1.EC of an SVC from AArch64.
pub const EC_SVC64: u64 = 0x15;

/// Vector index of "current EL with SP_ELx, synchronous".
const VECTOR_CURRENT_SPX_SYNC: u64 = 4;
/// Vector index of "lower EL using AArch64, synchronous".
const VECTOR_LOWER_A64_SYNC: u64 = 8;
/// SPSR_EL1 of code [`run_el0`] runs: EL0t, D/A/I/F masked.
const SPSR_EL0T_MASKED: u64 = 0b11_1100_0000;
/// SPSR_EL1 of [`run_el0`]'s return: EL1h, D/A/I/F masked.
const SPSR_EL1H_MASKED: u64 = 0b11_1100_0101;

/// A recorded exception.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Abort {
    pub esr: u64,
    pub far: u64,
    pub elr: u64,
}

impl Abort {
    /// ESR_EL1.EC.
    pub fn ec(&self) -> u64 {
        (self.esr >> 26) & 0x3f
    }
    /// ESR_EL1.ISS.DFSC / IFSC.
    pub fn fsc(&self) -> u64 {
        self.esr & 0x3f
    }
}

// One armed probe at a time, on vCPU 0 only (the probing programs are single-vCPU).
/// Held by the CPU whose probe owns ARMED, TAKEN, RESUME and the recorded ESR/FAR/ELR: they are
/// one set for the program, and vCPUs probing at once (each `smp` vCPU probes DISR_EL1 as it
/// starts) would otherwise take each other's exception for their own.
static PROBING: AtomicBool = AtomicBool::new(false);
static ARMED: AtomicBool = AtomicBool::new(false);
static TAKEN: AtomicBool = AtomicBool::new(false);
static ESR: AtomicU64 = AtomicU64::new(0);
static FAR: AtomicU64 = AtomicU64::new(0);
static ELR: AtomicU64 = AtomicU64::new(0);
/// Where an armed probe resumes (0: after the faulting instruction). Written by [`probe_exec`].
static RESUME: AtomicU64 = AtomicU64::new(0);

/// [`run_el0`] is running EL0 code: its first synchronous exception returns to EL1.
static EL0_ARMED: AtomicBool = AtomicBool::new(false);

/// vCPUs (bit per MPIDR_EL1.Aff0) currently reporting an unexpected exception.
static REPORTING: AtomicU64 = AtomicU64::new(0);

fn mpidr_aff0() -> u64 {
    let mpidr: u64;
    // SAFETY: reading MPIDR_EL1 has no side effects.
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) mpidr, options(nomem, nostack)) };
    mpidr & 0xff
}

fn read_syndrome() -> Abort {
    let (esr, far, elr): (u64, u64, u64);
    // SAFETY: reading EL1 system registers at EL1 has no side effects.
    unsafe {
        asm!("mrs {}, esr_el1", out(reg) esr, options(nomem, nostack));
        asm!("mrs {}, far_el1", out(reg) far, options(nomem, nostack));
        asm!("mrs {}, elr_el1", out(reg) elr, options(nomem, nostack));
    }
    Abort { esr, far, elr }
}

/// Called by the vectors with the entry index (0..16).
#[no_mangle]
extern "C" fn guest_exception(index: u64) {
    let a = read_syndrome();
    if index == VECTOR_CURRENT_SPX_SYNC && ARMED.swap(false, Ordering::SeqCst) {
        ESR.store(a.esr, Ordering::SeqCst);
        FAR.store(a.far, Ordering::SeqCst);
        ELR.store(a.elr, Ordering::SeqCst);
        TAKEN.store(true, Ordering::SeqCst);
        let next = match RESUME.swap(0, Ordering::SeqCst) {
            0 => a.elr + 4,
            resume => resume,
        };
        // SAFETY: ELR_EL1 points at the probe's single load instruction, and resuming 4 bytes
        // later continues the probe's asm block, which declares its output as clobbered; or the
        // probe was a branch and `next` is the label after it in `probe_exec`'s asm block.
        unsafe { asm!("msr elr_el1, {}", in(reg) next, options(nomem, nostack)) };
        return;
    }
    if index == VECTOR_LOWER_A64_SYNC && EL0_ARMED.swap(false, Ordering::SeqCst) {
        ESR.store(a.esr, Ordering::SeqCst);
        FAR.store(a.far, Ordering::SeqCst);
        ELR.store(a.elr, Ordering::SeqCst);
        TAKEN.store(true, Ordering::SeqCst);
        let resume = RESUME.swap(0, Ordering::SeqCst);
        // SAFETY: back to EL1 at `run_el0`'s label after its ERET, which declares every register
        // the EL0 code may have changed as clobbered; SP_EL1 is the one it ran with.
        unsafe {
            asm!("msr elr_el1, {}", "msr spsr_el1, {}", in(reg) resume, in(reg) SPSR_EL1H_MASKED, options(nomem, nostack))
        };
        return;
    }
    // An exception while reporting one (e.g. PRINT itself faults): do not recurse, just exit.
    let cpu_bit = 1u64 << (mpidr_aff0() & 63);
    if REPORTING.fetch_or(cpu_bit, Ordering::SeqCst) & cpu_bit != 0 {
        crate::hvc::exit(crate::EXIT_UNEXPECTED_EXCEPTION)
    }
    crate::println!(
        "FAIL: unexpected exception: vector {} ESR_EL1 {:#010x} (EC {:#04x}) FAR_EL1 {:#x} ELR_EL1 {:#x}",
        index,
        a.esr,
        a.ec(),
        a.far,
        a.elr
    );
    crate::hvc::exit(crate::EXIT_UNEXPECTED_EXCEPTION)
}

/// The probe state for this CPU until dropped ([`PROBING`]).
struct ProbeGuard;

impl ProbeGuard {
    fn take() -> ProbeGuard {
        while PROBING.swap(true, Ordering::Acquire) {
            core::hint::spin_loop();
        }
        ProbeGuard
    }
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        PROBING.store(false, Ordering::Release);
    }
}

/// Load 8 bytes from `addr` with an abort expected or allowed: `Ok(value)` if the load completed,
/// `Err(abort)` with the recorded ESR/FAR/ELR if it took a synchronous exception.
pub fn probe_read(addr: u64) -> Result<u64, Abort> {
    let _probe = ProbeGuard::take();
    RESUME.store(0, Ordering::SeqCst);
    TAKEN.store(false, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    let value: u64;
    // SAFETY: the load may touch any address: an abort is caught by our vector, which skips the
    // instruction. No Rust object is aliased (the address is not one the program owns).
    unsafe {
        asm!("ldr {v}, [{a}]", a = in(reg) addr, v = out(reg) value, options(nostack));
    }
    ARMED.store(false, Ordering::SeqCst);
    if TAKEN.swap(false, Ordering::SeqCst) {
        Err(Abort {
            esr: ESR.load(Ordering::SeqCst),
            far: FAR.load(Ordering::SeqCst),
            elr: ELR.load(Ordering::SeqCst),
        })
    } else {
        Ok(value)
    }
}

/// Branch to `addr`, which must hold no code, with an instruction abort expected: `Err(abort)`
/// with the recorded ESR/FAR/ELR when the fetch aborted, `Ok(())` if the branch came back.
pub fn probe_exec(addr: u64) -> Result<(), Abort> {
    let _probe = ProbeGuard::take();
    TAKEN.store(false, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    // SAFETY: the fetch from `addr` aborts (the caller's contract) and our vector resumes at
    // label 2 through RESUME, written just before the branch; every caller-saved register (x9,
    // the scratch, among them) is declared clobbered, as for a call.
    unsafe {
        asm!(
            "adr x9, 2f",
            "str x9, [{resume}]",
            "blr {a}",
            "2:",
            a = in(reg) addr,
            resume = in(reg) RESUME.as_ptr(),
            clobber_abi("C"),
            options(nostack),
        );
    }
    ARMED.store(false, Ordering::SeqCst);
    RESUME.store(0, Ordering::SeqCst);
    if TAKEN.swap(false, Ordering::SeqCst) {
        Err(Abort { esr: ESR.load(Ordering::SeqCst), far: FAR.load(Ordering::SeqCst), elr: ELR.load(Ordering::SeqCst) })
    } else {
        Ok(())
    }
}

/// How EL0 code run by [`run_el0`] ended: its first synchronous exception (an `SVC`, or an
/// abort), and its x0 at that point.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct El0Exit {
    pub exception: Abort,
    pub x0: u64,
}

/// Run the code at `pc` at EL0 (interrupts masked, the current stage-1 tables) until its first
/// synchronous exception, which comes back here instead of to a handler.
///
/// # Safety
/// `pc` is EL0 code that touches no register but x0 before it traps (`SVC`, or a fault), and
/// uses no stack.
pub unsafe fn run_el0(pc: u64) -> El0Exit {
    let _probe = ProbeGuard::take();
    TAKEN.store(false, Ordering::SeqCst);
    EL0_ARMED.store(true, Ordering::SeqCst);
    let x0: u64;
    // SAFETY: our lower-EL vector returns to label 2 at EL1 through RESUME, written just before
    // the ERET, with SP_EL1 as it was here; the registers the EL0 code or the vector change are
    // declared clobbered (the vector restores the rest from its frame).
    unsafe {
        asm!(
            "adr x9, 2f",
            "str x9, [x12]",
            "msr elr_el1, x10",
            "msr spsr_el1, x11",
            "eret",
            "2:",
            in("x10") pc,
            in("x11") SPSR_EL0T_MASKED,
            in("x12") RESUME.as_ptr(),
            lateout("x0") x0,
            clobber_abi("C"),
            options(nostack),
        );
    }
    EL0_ARMED.store(false, Ordering::SeqCst);
    if !TAKEN.swap(false, Ordering::SeqCst) {
        crate::fail!(crate::EXIT_UNEXPECTED_EXCEPTION, "run_el0: back at EL1 without an exception");
    }
    let exception = Abort { esr: ESR.load(Ordering::SeqCst), far: FAR.load(Ordering::SeqCst), elr: ELR.load(Ordering::SeqCst) };
    El0Exit { exception, x0 }
}

/// DISR_EL1 (`S3_0_C12_C1_1`), or `None` when reading it is an undefined instruction (a CPU
/// without FEAT_RAS). Under the hypervisor's HCR_EL2.AMO the guest's DISR_EL1 is VDISR_EL2.
pub fn probe_disr_el1() -> Option<u64> {
    let _probe = ProbeGuard::take();
    RESUME.store(0, Ordering::SeqCst);
    TAKEN.store(false, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    let value: u64;
    // SAFETY: reading DISR_EL1 has no side effect; an undefined-instruction exception is caught
    // by our vector, which skips the instruction.
    unsafe { asm!("mrs {v}, s3_0_c12_c1_1", v = out(reg) value, options(nostack)) };
    ARMED.store(false, Ordering::SeqCst);
    (!TAKEN.swap(false, Ordering::SeqCst)).then_some(value)
}

/// Write DISR_EL1; only where [`probe_disr_el1`] found it.
pub fn write_disr_el1(v: u64) {
    // SAFETY: DISR_EL1 only records deferred SErrors (nothing reads it but software).
    unsafe { asm!("msr s3_0_c12_c1_1, {}", "isb", in(reg) v, options(nomem, nostack)) };
}
