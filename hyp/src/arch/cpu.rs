//! Physical CPUs: per-CPU state reached through `TPIDR_EL2`, CPU numbering, barriers.
//!
//! Every physical CPU owns one [`PerCpu`] in the static [`PERCPU`] array; `entry.rs` points
//! `TPIDR_EL2` at it before the first Rust instruction runs on that CPU, and nothing ever changes
//! it afterwards. CPU *indices* are dense (0 = the boot CPU, 1.. = secondaries in DTB order) and are
//! what the rest of the hypervisor uses; MPIDRs are only needed to start a CPU with PSCI.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{CurrentEL, Readable, Writeable, DAIF, ID_AA64PFR0_EL1, MPIDR_EL1, TPIDR_EL2};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Largest number of physical CPUs the hypervisor drives (stacks are sized for this many).
pub const MAX_CPUS: usize = hyp::platform::MAX_CPUS;
/// Size of each CPU's EL2 stack slot (must match `.stacks` in `hyp.ld`, which aligns the slots to
/// it). Its lowest 4 KiB page is an unmapped guard (`mmu.rs`): 60 KiB of stack.
pub const STACK_SIZE: usize = 64 * 1024;
/// Size of the guard page at the bottom of each stack slot.
pub const STACK_GUARD_SIZE: usize = 4096;
/// The SP bits that are all zero inside a slot's guard page (slots are `STACK_SIZE` aligned).
pub const STACK_GUARD_MASK: usize = (STACK_SIZE - 1) & !(STACK_GUARD_SIZE - 1);
/// Size of each CPU's emergency stack (`.emergency_stacks` in `hyp.ld`): the bug vectors switch
/// to it to report an exception at EL2, whatever state the EL2 stack is in.
pub const EMERGENCY_STACK_SIZE: usize = 16 * 1024;

/// Per-CPU state. `#[repr(C)]` so `entry.rs` may rely on field offsets (`stack_top` at 8).
/// Each one fills whole 64-byte cache lines: a secondary CPU writes its own `stack_top` with its
/// MMU (and so its cache) off while CPU 0 uses its `PerCpu` cacheably, and one line must never be
/// accessed with both attributes (Arm ARM B2.8, mismatched memory attributes).
#[repr(C, align(64))]
pub struct PerCpu {
    /// Dense CPU index (0 = boot CPU).
    pub index: usize,
    /// Initial stack pointer of this CPU (top of its 64 KiB stack), written by `entry.rs`.
    pub stack_top: AtomicUsize,
}

impl PerCpu {
    const fn new(index: usize) -> Self {
        PerCpu {
            index,
            stack_top: AtomicUsize::new(0),
        }
    }
}

/// One [`PerCpu`] per possible CPU; entry code indexes it by CPU index.
#[unsafe(no_mangle)]
pub static PERCPU: [PerCpu; MAX_CPUS] = [PerCpu::new(0), PerCpu::new(1), PerCpu::new(2), PerCpu::new(3)];

/// Byte size of one [`PerCpu`] (used by the entry assembly to index [`PERCPU`]).
pub const PERCPU_SIZE: usize = core::mem::size_of::<PerCpu>();

/// Number of CPUs that are online (set by the boot CPU as secondaries come up).
static ONLINE: AtomicUsize = AtomicUsize::new(1);

/// The calling CPU's [`PerCpu`].
pub fn current() -> &'static PerCpu {
    let p = TPIDR_EL2.get() as usize;
    debug_assert!(p != 0, "TPIDR_EL2 not set up");
    // SAFETY: entry.rs sets TPIDR_EL2 to `&PERCPU[i]` before any Rust code runs on this CPU and
    // never changes it; PERCPU is a `static`, so the reference is valid for 'static.
    unsafe { &*(p as *const PerCpu) }
}

/// Dense index of the calling CPU (0 = boot CPU).
pub fn index() -> usize {
    current().index
}

/// Number of physical CPUs online (1 until secondaries have been started).
pub fn online() -> usize {
    ONLINE.load(Ordering::Acquire)
}

/// Records that one more secondary CPU finished its bring-up.
pub(crate) fn mark_online() {
    ONLINE.fetch_add(1, Ordering::AcqRel);
}

/// The affinity fields (Aff3..Aff0) of an MPIDR value, as PSCI CPU_ON expects them.
pub fn mpidr_affinity(mpidr: u64) -> u64 {
    use MPIDR_EL1::{Aff0, Aff1, Aff2, Aff3};
    mpidr & (Aff3::SET + Aff2::SET + Aff1::SET + Aff0::SET).value
}

/// Waits for an interrupt (or any event that wakes the core).
pub fn wfi() {
    aarch64_cpu::asm::wfi();
}

/// Waits for an event (SEV from another CPU, or an interrupt).
pub fn wfe() {
    aarch64_cpu::asm::wfe();
}

/// Signals an event to every CPU (wakes CPUs in `wfe`).
pub fn sev() {
    barrier::dsb(barrier::ISH);
    aarch64_cpu::asm::sev();
}

/// Masks IRQ, FIQ, SError and debug exceptions at EL2 (PSTATE.DAIF = 0b1111).
pub fn mask_interrupts() {
    DAIF.write(DAIF::D::Masked + DAIF::A::Masked + DAIF::I::Masked + DAIF::F::Masked);
}

// entry.rs stores the initial SP at offset 8.
const _: () = assert!(core::mem::offset_of!(PerCpu, stack_top) == 8);

/// MPIDR of each CPU index (from the device tree), set once by the boot CPU.
static MPIDRS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Number of CPUs the platform has (≤ MAX_CPUS), set once by the boot CPU.
static PRESENT: AtomicUsize = AtomicUsize::new(1);

/// Records the platform's CPUs (boot CPU, before starting secondaries). Extra CPUs beyond
/// [`MAX_CPUS`] are ignored.
pub(crate) fn set_present(mpidrs: &[u64]) {
    let n = mpidrs.len().clamp(1, MAX_CPUS);
    for (slot, &m) in MPIDRS.iter().zip(mpidrs.iter().take(n)) {
        slot.store(m, Ordering::Relaxed);
    }
    PRESENT.store(n, Ordering::Release);
}

/// Number of physical CPUs the hypervisor uses (all of them are online once `virt::cpu_main`
/// runs anywhere).
pub fn count() -> usize {
    PRESENT.load(Ordering::Acquire)
}

/// MPIDR_EL1 of CPU `index` (as the device tree lists it).
pub fn mpidr_of(index: usize) -> u64 {
    MPIDRS[index].load(Ordering::Relaxed)
}

/// This CPU implements FEAT_RAS (ID_AA64PFR0_EL1.RAS, the real value): ESB, DISR_EL1,
/// VDISR_EL2, VSESR_EL2, HCR_EL2.TERR exist.
pub fn has_ras() -> bool {
    hyp::idregs::has_ras(ID_AA64PFR0_EL1.get())
}

/// The current exception level (CurrentEL.EL, bits [3:2]).
pub fn current_el() -> u8 {
    CurrentEL.read(CurrentEL::EL) as u8
}
