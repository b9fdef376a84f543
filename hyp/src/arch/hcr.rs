//! The EL2 controls that run a vCPU: HCR_EL2 (the trap policy), stage 2 (VTTBR_EL2/VTCR_EL2),
//! VMPIDR/VPIDR, the virtual counter offset and timer access, MDCR_EL2.
//!
//! Stage 2 is never left pointing at garbage while HCR_EL2.VM = 1: a CPU's EL1&0 regime may walk
//! tables speculatively at any time (the reason for KVM's speculative-AT errata work), so VTTBR_EL2
//! always holds either the loaded VM's root or [`EMPTY_ROOT`]: with the hypervisor's reserved
//! VMID 0 from [`init_cpu`] to the first vCPU, then tagged with the VMID of the last VM the CPU
//! ran ([`unload`]) or invalidated for (the TLB maintenance of `tlb.rs`, which runs on
//! [`EMPTY_ROOT`] tagged with its target VMID and leaves it there on a CPU with no vCPU loaded).
//!
//! HCR_EL2 for every guest ([`hcr_guest`]):
//! - VM: stage-2 translation on; RW: EL1 is AArch64.
//! - SWIO: set/way invalidation by EL1 is upgraded to clean+invalidate (guest RAM frames are
//!   shared with the hypervisor, which must never lose a dirty line).
//! - FMO/IMO/AMO: physical FIQ/IRQ/SError go to EL2 (the hypervisor timer preempts the guest);
//!   the guest's virtual interrupts are masked by its own PSTATE.
//! - FB: TLB and I-cache maintenance from EL1 is broadcast inner-shareable, because a vCPU migrates
//!   between physical CPUs and its stale entries on a CPU it left must die too.
//! - BSU = inner shareable: barriers of the guest are upgraded to cover the other CPUs.
//! - TWI/TWE: WFI and WFE trap, so a waiting vCPU yields its physical CPU.
//! - TSC: SMC traps to EL2 (otherwise a guest would reach the real firmware's PSCI and could power
//!   off the machine); it is handled like HVC.
//! - TIDCP: implementation-defined system registers trap (and get an undefined instruction).
//! - TID3: the ID registers trap, so guests see them without the features the vCPU model does
//!   not switch (SVE, SME, PAuth, MTE, PMU: `idregs.rs`). Needed for `-cpu max`.
//! - TACR: ACTLR_EL1 (implementation defined, affects the physical core) traps; RAZ/WI.
//! - TSW: data-cache set/way operations trap; they act on one physical CPU's caches only, which
//!   means nothing to a vCPU that migrates, so they are executed as clean+invalidate on the CPU
//!   the vCPU happens to run on (what they would have done untrapped with SWIO), never as a bare
//!   invalidate that would lose other VMs' and the hypervisor's dirty lines.
//! - TLOR: the LORegion registers (FEAT_LOR, hidden from the ID registers) trap: they are not
//!   switched (an undefined instruction; RES0 on a CPU without LOR).
//! - TERR (with FEAT_RAS only; RES0 without): the error record registers (ERRSELR_EL1, ERX*_EL1;
//!   RAS is hidden from the ID registers) trap: they are not switched (an undefined instruction).
//! - PTW is not set: a guest whose page tables sit in device memory gets what it asked for.
//!
//! MDCR_EL2 ([`init_cpu`]): TPM, TPMCR, TDA, TDOSA, TDRA — the physical PMU and the debug
//! registers are not context-switched, so guests must not reach them (a guest could read or reset
//! counters other VMs use, or count EL2 cycles). Their accesses trap as EC 0x18 and read as zero /
//! ignore writes (`virt::sysreg`). HPMN = PMCR_EL0.N: no counter is reserved for EL2.

use core::arch::asm;

use aarch64_cpu::registers::{
    Readable, Writeable, CNTHCTL_EL2, CNTVOFF_EL2, HCR_EL2, MDCR_EL2, MDSCR_EL1, MIDR_EL1, VMPIDR_EL2, VTCR_EL2,
    VTTBR_EL2,
};
use tock_registers::fields::FieldValue;
use tock_registers::register_bitfields;
use vm::pmap::{Stage2, Vmid};

/// HCR_EL2 while a guest runs (see the module comment for each bit).
pub fn hcr_guest() -> FieldValue<u64, HCR_EL2::Register> {
    HCR_EL2::VM::SET
        + HCR_EL2::SWIO::SET
        + HCR_EL2::FMO::SET
        + HCR_EL2::IMO::SET
        + HCR_EL2::AMO::SET
        + HCR_EL2::FB::SET
        + HCR_EL2::BSU::InnerShareable
        + HCR_EL2::TWI::SET
        + HCR_EL2::TWE::SET
        + HCR_EL2::TID3::SET
        + HCR_EL2::TSC::SET
        + HCR_EL2::TACR::SET
        + HCR_EL2::TSW::SET
        + HCR_EL2::TIDCP::SET
        + HCR_EL2::RW::EL1IsAarch64
        + HCR_EL2::TLOR::SET
        + if super::cpu::has_ras() { HCR_EL2::TERR::SET } else { HCR_EL2::TERR::CLEAR }
}

/// CNTHCTL_EL2: EL1PCTEN (EL1/EL0 may read the physical counter); EL1PCEN clear (the physical timer
/// traps: guests use the virtual timer).
fn cnthctl_guest() -> FieldValue<u64, CNTHCTL_EL2::Register> {
    CNTHCTL_EL2::EL1PCTEN::SET + CNTHCTL_EL2::EL1PCEN::CLEAR
}

register_bitfields! {u64,
    /// PMCR_EL0 (not in `aarch64-cpu` 11).
    PMCR_EL0 [
        /// N: number of event counters implemented.
        N OFFSET(11) NUMBITS(5) []
    ]
}

/// PMCR_EL0: the PMU register is not in `aarch64-cpu`.
fn pmcr_el0() -> u64 {
    let v: u64;
    // SAFETY: reading PMU configuration has no side effect.
    unsafe { asm!("mrs {}, pmcr_el0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// VPIDR_EL2 = `midr` (not in `aarch64-cpu` 11).
fn write_vpidr_el2(midr: u64) {
    // SAFETY: VPIDR_EL2 is what EL1 reads as MIDR_EL1; no EL1 code runs on this CPU until the
    // next ERET.
    unsafe { asm!("msr vpidr_el2, {}", in(reg) midr, options(nomem, nostack, preserves_flags)) };
}

/// `ISB`.
fn isb() {
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// An all-invalid stage-2 root (the concatenated level-1 pair of a 40-bit IPA space, 8 KiB
/// aligned): what VTTBR_EL2 points at whenever no vCPU is loaded. Never written.
#[repr(C, align(8192))]
struct EmptyRoot([u64; 2 * 512]);
static EMPTY_ROOT: EmptyRoot = EmptyRoot([0; 2 * 512]);
const _: () = assert!(Stage2::ROOT_FRAMES == 2);

/// VTTBR_EL2 value of "no VM yet": [`EMPTY_ROOT`], VMID 0 (no VM uses it: VM ids start at 1).
pub fn idle_vttbr() -> u64 {
    core::ptr::addr_of!(EMPTY_ROOT) as u64
}

/// Per-VM and per-vCPU EL2 controls loaded with a vCPU.
#[derive(Clone, Copy, Debug)]
pub struct El2Controls {
    pub vttbr_el2: u64,
    pub vtcr_el2: u64,
    pub vmpidr_el2: u64,
    pub cntvoff_el2: u64,
}

impl El2Controls {
    /// Load them, with HCR_EL2 = [`hcr_guest`]. The CPU holds no EL1&0 TLB entries here: the
    /// last vCPU it ran (of this VM or another, with other stage-1 tables) had them dropped by
    /// `tlb::left` when it was unloaded, boot dropped what reset left (`mmu.rs`), and TLB
    /// maintenance on an idle CPU makes none (`tlb.rs`, "One VMID per CPU"). (A `TLBI VMALLE1`
    /// here was a second flush of QEMU's TLB per park and resume.)
    ///
    /// Call *before* restoring the vCPU's EL1 registers, so that the new SCTLR/TTBR/TCR_EL1 are
    /// never combined with the previous VM's stage 2 (KVM's `__load_stage2` comes first too).
    pub fn load(&self) {
        // These registers configure EL1&0 translation and identification only; no EL1&0 code
        // runs on this CPU until the next ERET, and EL2's own regime does not use them.
        // VTTBR_EL2 holds a valid root of the VM (its stage 2 outlives every loaded vCPU).
        VTCR_EL2.set(self.vtcr_el2);
        VTTBR_EL2.set(self.vttbr_el2);
        VMPIDR_EL2.set(self.vmpidr_el2);
        CNTVOFF_EL2.set(self.cntvoff_el2);
        HCR_EL2.write(hcr_guest());
        CNTHCTL_EL2.write(cnthctl_guest());
        isb();
    }
}

/// After a vCPU of `vmid` was saved: stage 2 back to the empty root, so nothing the CPU does
/// until the next [`El2Controls::load`] can walk a VM's tables — which may be freed.
///
/// Tagged with the VM's own VMID, not 0: QEMU's TLB holds no VMIDs, so a write of VTTBR_EL2 that
/// changes the VMID flushes the CPU's EL1&0 TLB and its whole jump cache (`vttbr_write`). Going
/// back to VMID 0 here and to the VM's at the next load, and switching VMIDs around each of an
/// idle CPU's invalidations (`tlb.rs`), cost 910 of the 1,982 flushes of `swapbench`'s
/// ascending pass (QEMU's counts); its strided pass, a park and a resume per swapped page, went
/// from a median of 5.00 to 4.64 s over 8 interleaved runs. Keeping the VMID changes nothing
/// the CPU holds: `tlb::left` drops its entries of the VMID next, and the empty root lets no
/// walk make new ones.
pub fn unload(vmid: Vmid) {
    // The empty root is a valid, all-invalid table; no EL1&0 code runs on this CPU.
    VTTBR_EL2.set(hyp::vttbr::maintenance_vttbr(idle_vttbr(), vmid));
    isb();
}

/// Per-CPU setup before the first guest:
/// - VPIDR_EL2 = MIDR_EL1 (its reset value is UNKNOWN; guests read MIDR_EL1 from it);
/// - MDCR_EL2 as in the module comment, MDSCR_EL1 = 0 (guests cannot change it: TDA);
/// - VTCR_EL2 and VTTBR_EL2 = the empty root, *then* HCR_EL2 = [`hcr_guest`] (so that physical
///   IRQs are routed to EL2 and wake an idle `WFI` before any vCPU was loaded on this CPU).
pub fn init_cpu() {
    let mdcr = MDCR_EL2::HPMN.val(PMCR_EL0::N.read(pmcr_el0()))
        + MDCR_EL2::TPMCR::SET
        + MDCR_EL2::TPM::SET
        + MDCR_EL2::TDA::SET
        + MDCR_EL2::TDOSA::SET
        + MDCR_EL2::TDRA::SET;
    // These registers configure EL1&0 only (no E2H/TGE); no EL1&0 code runs on this CPU until a
    // vCPU is loaded with `El2Controls::load`; the empty root is valid.
    write_vpidr_el2(MIDR_EL1.get());
    MDCR_EL2.write(mdcr);
    MDSCR_EL1.set(0);
    VTCR_EL2.set(Stage2::VTCR_EL2);
    VTTBR_EL2.set(idle_vttbr());
    isb();
    HCR_EL2.write(hcr_guest());
    isb();
}
