//! The EL2 controls that run a vCPU: HCR_EL2 (the trap policy), stage 2 (VTTBR_EL2/VTCR_EL2),
//! VMPIDR/VPIDR, the virtual counter offset and timer access, MDCR_EL2.
//!
//! Stage 2 is never left pointing at garbage while HCR_EL2.VM = 1: a CPU's EL1&0 regime may walk
//! tables speculatively at any time (the reason for KVM's speculative-AT errata work), so VTTBR_EL2
//! always holds either the loaded VM's root or [`EMPTY_ROOT`] with the hypervisor's reserved
//! VMID 0 — set by [`init_cpu`] before the first vCPU and by [`unload`] after each one. The TLB
//! maintenance of `tlb.rs` uses [`EMPTY_ROOT`] too, tagged with the target VMID.
//!
//! HCR_EL2 for every guest ([`HCR_GUEST`]):
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
//! - PTW is not set: a guest whose page tables sit in device memory gets what it asked for.
//!
//! MDCR_EL2 ([`init_cpu`]): TPM, TPMCR, TDA, TDOSA, TDRA — the physical PMU and the debug
//! registers are not context-switched, so guests must not reach them (a guest could read or reset
//! counters other VMs use, or count EL2 cycles). Their accesses trap as EC 0x18 and read as zero /
//! ignore writes (`virt::sysreg`). HPMN = PMCR_EL0.N: no counter is reserved for EL2.

use core::arch::asm;

use vm::pmap::Stage2;

/// Named HCR_EL2 bits (Arm ARM D19.2.48).
pub mod bits {
    pub const VM: u64 = 1 << 0;
    pub const SWIO: u64 = 1 << 1;
    pub const FMO: u64 = 1 << 3;
    pub const IMO: u64 = 1 << 4;
    pub const AMO: u64 = 1 << 5;
    pub const FB: u64 = 1 << 9;
    pub const BSU_INNER: u64 = 0b01 << 10;
    pub const TWI: u64 = 1 << 13;
    pub const TWE: u64 = 1 << 14;
    pub const TID3: u64 = 1 << 18;
    pub const TSC: u64 = 1 << 19;
    pub const TACR: u64 = 1 << 21;
    pub const TSW: u64 = 1 << 22;
    pub const TIDCP: u64 = 1 << 20;
    pub const RW: u64 = 1 << 31;
    pub const TLOR: u64 = 1 << 35;
}

/// HCR_EL2 while a guest runs (see the module comment for each bit).
pub const HCR_GUEST: u64 = bits::VM
    | bits::SWIO
    | bits::FMO
    | bits::IMO
    | bits::AMO
    | bits::FB
    | bits::BSU_INNER
    | bits::TWI
    | bits::TWE
    | bits::TID3
    | bits::TSC
    | bits::TACR
    | bits::TSW
    | bits::TIDCP
    | bits::RW
    | bits::TLOR;

/// CNTHCTL_EL2: EL1PCTEN (EL1/EL0 may read the physical counter); EL1PCEN clear (the physical timer
/// traps: guests use the virtual timer).
pub const CNTHCTL_EL2_GUEST: u64 = 1 << 0;

/// MDCR_EL2 fields (Arm ARM D19.2.75, E2H = 0).
mod mdcr {
    use hyp::esr::Field;
    /// HPMN [4:0]: event counters accessible from EL1/EL0 (the rest reserved for EL2).
    pub const HPMN: Field = Field::new(4, 0);
    /// TPMCR [5]: trap PMCR_EL0.
    pub const TPMCR: u64 = 1 << 5;
    /// TPM [6]: trap every PMU register.
    pub const TPM: u64 = 1 << 6;
    /// TDA [9]: trap debug registers (MDSCR_EL1, DBGB*, DBGW*, …).
    pub const TDA: u64 = 1 << 9;
    /// TDOSA [10]: trap the OS lock/double-lock and power-down registers.
    pub const TDOSA: u64 = 1 << 10;
    /// TDRA [11]: trap the debug ROM address registers.
    pub const TDRA: u64 = 1 << 11;
}

/// PMCR_EL0.N [15:11]: number of event counters implemented.
const PMCR_EL0_N: hyp::esr::Field = hyp::esr::Field::new(15, 11);

/// An all-invalid stage-2 root (the concatenated level-1 pair of a 40-bit IPA space, 8 KiB
/// aligned): what VTTBR_EL2 points at, with VMID 0, whenever no vCPU is loaded. Never written.
#[repr(C, align(8192))]
struct EmptyRoot([u64; 2 * 512]);
static EMPTY_ROOT: EmptyRoot = EmptyRoot([0; 2 * 512]);
const _: () = assert!(Stage2::ROOT_FRAMES == 2);

/// VTTBR_EL2 value of "no VM": [`EMPTY_ROOT`], VMID 0 (no VM uses it: VM ids start at 1).
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
    /// Load them, with HCR_EL2 = [`HCR_GUEST`], and drop this CPU's EL1&0 TLB entries of the VM
    /// (a different vCPU of the same VM may have run here with other stage-1 tables; the guest's
    /// own TLBIs are broadcast by HCR_EL2.FB but entries left from an earlier vCPU are not covered).
    ///
    /// Call *before* restoring the vCPU's EL1 registers, so that the new SCTLR/TTBR/TCR_EL1 are
    /// never combined with the previous VM's stage 2 (KVM's `__load_stage2` comes first too).
    pub fn load(&self) {
        // SAFETY: these registers configure EL1&0 translation and identification only; no EL1&0
        // code runs on this CPU until the next ERET, and EL2's own regime does not use them.
        // VTTBR_EL2 holds a valid root of the VM (its stage 2 outlives every loaded vCPU).
        unsafe {
            asm!(
                "msr vtcr_el2, {vtcr}",
                "msr vttbr_el2, {vttbr}",
                "msr vmpidr_el2, {vmpidr}",
                "msr cntvoff_el2, {cntvoff}",
                "msr hcr_el2, {hcr}",
                "msr cnthctl_el2, {cnthctl}",
                "isb",
                "tlbi vmalle1",
                "dsb nsh",
                "isb",
                vtcr = in(reg) self.vtcr_el2,
                vttbr = in(reg) self.vttbr_el2,
                vmpidr = in(reg) self.vmpidr_el2,
                cntvoff = in(reg) self.cntvoff_el2,
                hcr = in(reg) HCR_GUEST,
                cnthctl = in(reg) CNTHCTL_EL2_GUEST,
                options(nostack, preserves_flags),
            )
        };
    }
}

/// After a vCPU's EL1 context was saved: stage 2 back to the empty root (VMID 0), so nothing the
/// CPU does until the next [`El2Controls::load`] can walk a VM's tables — which may be freed.
pub fn unload() {
    // SAFETY: the empty root is a valid, all-invalid table; no EL1&0 code runs on this CPU.
    unsafe { asm!("msr vttbr_el2, {}", "isb", in(reg) idle_vttbr(), options(nostack, preserves_flags)) };
}

/// Per-CPU setup before the first guest:
/// - VPIDR_EL2 = MIDR_EL1 (its reset value is UNKNOWN; guests read MIDR_EL1 from it);
/// - MDCR_EL2 as in the module comment, MDSCR_EL1 = 0 (guests cannot change it: TDA);
/// - VTCR_EL2 and VTTBR_EL2 = the empty root, *then* HCR_EL2 = [`HCR_GUEST`] (so that physical
///   IRQs are routed to EL2 and wake an idle `WFI` before any vCPU was loaded on this CPU).
pub fn init_cpu() {
    let (midr, pmcr): (u64, u64);
    // SAFETY: reading identification and PMU configuration registers has no side effect.
    unsafe {
        asm!("mrs {}, midr_el1", "mrs {}, pmcr_el0", out(reg) midr, out(reg) pmcr,
             options(nomem, nostack, preserves_flags))
    };
    let mdcr = mdcr::HPMN.place(PMCR_EL0_N.get(pmcr))
        | mdcr::TPMCR
        | mdcr::TPM
        | mdcr::TDA
        | mdcr::TDOSA
        | mdcr::TDRA;
    // SAFETY: these registers configure EL1&0 only (no E2H/TGE); no EL1&0 code runs on this CPU
    // until a vCPU is loaded with `El2Controls::load`; the empty root is valid.
    unsafe {
        asm!(
            "msr vpidr_el2, {midr}",
            "msr mdcr_el2, {mdcr}",
            "msr mdscr_el1, xzr",
            "msr vtcr_el2, {vtcr}",
            "msr vttbr_el2, {vttbr}",
            "isb",
            "msr hcr_el2, {hcr}",
            "isb",
            midr = in(reg) midr,
            mdcr = in(reg) mdcr,
            vtcr = in(reg) Stage2::VTCR_EL2,
            vttbr = in(reg) idle_vttbr(),
            hcr = in(reg) HCR_GUEST,
            options(nostack, preserves_flags),
        )
    };
}
