//! Stage-2 TLB maintenance: the hypervisor's `vm::pmap::Tlb`.
//!
//! `TLBI IPAS2E1IS` and `TLBI VMALLS12E1IS` act on the VMID *currently in VTTBR_EL2*, but the
//! engine may change the stage-2 table of any VM from any CPU (a COW on one VM, `page_protect`
//! over every VM that maps a frame). So each operation:
//! 1. `DSB ISH` (the descriptor write is complete before the mask of `hyp::tlb_scope` is read
//!    and before any invalidation),
//! 2. masks interrupts (EL2 already runs with DAIF masked; the guard makes it a local fact),
//! 3. writes VTTBR_EL2 = the all-invalid root tagged with the target VMID
//!    ([`maintenance_vttbr`], which says why never the VM's real root) and ISB,
//! 4. the TLBI(s), `DSB ISH` (complete on every CPU of the inner-shareable domain; `DSB NSH`
//!    for a local one), `ISB`,
//! 5. restores the previous VTTBR_EL2 — unless that was the empty root too (no vCPU loaded:
//!    the new VMID may stay, see `hcr::unload`) — and DAIF.
//!
//! By IPA (Arm ARM D8.13 "TLB maintenance requirements for stage 2"): `TLBI IPAS2E1IS` removes
//! the stage-2-only entries; combined stage-1+2 entries derived from it may remain, hence the
//! following `DSB ISH; TLBI VMALLE1IS` for that VMID. `TLBI VMALLS12E1IS` drops both kinds at once.
//!
//! How far each invalidation reaches is `hyp::tlb_scope`'s rule: a CPU is in a VMID's mask from
//! [`entering`] (before it loads a vCPU of the VM) to [`left`] (after it unloaded it and dropped
//! its own entries of the VMID); an invalidation broadcasts only when another CPU is in the
//! mask, is local (`TLBI IPAS2E1`, `VMALLE1`, `ALLE1`; `DSB NSH`) when only this one is, and
//! is skipped when none is. The `DSB ISH` before the mask is read (after the descriptor write)
//! and the one after an entering CPU sets its bit make the two sides see each other
//! (`tlb_scope.rs`).
//!
//! # One VMID per CPU
//! A CPU holds EL1&0 entries of one VMID at most: the VM whose vCPU it has loaded. Only EL1&0
//! execution and walks (the guest's, `at.rs`'s) on a real root make entries (maintenance runs on
//! the empty root), and [`left`] drops them all when the vCPU is unloaded (boot dropped whatever
//! reset left, `mmu.rs`). So a local "all of this VMID" is a local `TLBI ALLE1` (no VMID needed:
//! steps 3 and 5 above do not apply), which drops the same entries as `VMALLS12E1` here — and which
//! QEMU 7.2 does on the one CPU, where it runs `VMALLS12E1` as a flush of every CPU's EL1&0 TLB
//! with all vCPUs stopped until it is done (counted with uprobes on QEMU's flush functions: one per
//! park and resume, 16,007 in `swapbench`'s strided pass; a few dozen are left, the pagedaemon's
//! broadcasts).
//!
//! Nothing else on this CPU can observe the temporary VTTBR: EL2 never takes an interrupt and no
//! EL1&0 code runs until the next ERET, before which `El2Controls::load` or the restore puts the
//! right value back. Steps 3 and 5 are skipped when VTTBR_EL2 holds the value already.

use core::arch::asm;

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{Readable, Writeable, DAIF, VTTBR_EL2};
use hyp::tlb_scope::{Scope, VcpuTlbs};
use hyp::vttbr::{is_empty_root, maintenance_vttbr};
use vm::pmap::{Tlb, Vmid};
use vm::Ipa;

/// Which CPUs may hold each VMID's entries (one set for the machine, like the TLBs).
static HOLDERS: VcpuTlbs = VcpuTlbs::new();

/// The real TLB of this machine (one instance serves every VM).
pub struct HwTlb;

impl HwTlb {
    pub const fn new() -> HwTlb {
        HwTlb
    }

    /// Runs `f` with VTTBR_EL2 holding the empty root tagged with `vmid` and interrupts masked;
    /// restores both afterwards.
    fn with_vmid(&self, vmid: Vmid, f: impl FnOnce()) {
        with_vttbr(maintenance_vttbr(super::hcr::idle_vttbr(), vmid), f)
    }
}

/// This CPU is about to load a vCPU of `vmid`: into its mask, and (`DSB ISH`) the bit visible
/// before this CPU's first walk of the VM's tables.
pub fn entering(vmid: Vmid) {
    HOLDERS.entering(vmid, super::cpu::index());
    barrier::dsb(barrier::ISH);
}

/// This CPU unloaded its vCPU of `vmid` (`hcr::unload`): drop its own entries of the VMID,
/// stage 1+2 and stage 2 alike (all it holds: see the module documentation), and only then
/// leave the mask.
pub fn left(vmid: Vmid) {
    drop_own_entries();
    HOLDERS.left(vmid, super::cpu::index());
}

/// Drop every EL1&0 entry of this CPU, stage 1+2 and stage 2: those of the one VMID it holds.
fn drop_own_entries() {
    // SAFETY: a local invalidation never makes memory unsafe; the DSB completes it.
    unsafe { asm!("tlbi alle1", "dsb nsh", "isb", options(nostack, preserves_flags)) };
}

/// The completed descriptor write (`DSB ISH`) orders this CPU's read of the mask after it.
fn scope(vmid: Vmid) -> Scope {
    barrier::dsb(barrier::ISH);
    HOLDERS.scope(vmid, super::cpu::index())
}

/// Masking interrupts and switching stage 2 (to a valid root) only affects EL1&0 translation,
/// which does not run on this CPU inside this function; both are restored after `f`.
fn with_vttbr(vttbr: u64, f: impl FnOnce()) {
    let daif = DAIF.get();
    DAIF.write(DAIF::D::Masked + DAIF::A::Masked + DAIF::I::Masked + DAIF::F::Masked);
    let saved = VTTBR_EL2.get();
    let switch = saved != vttbr;
    if switch {
        VTTBR_EL2.set(vttbr);
        barrier::isb(barrier::SY);
    }
    f();
    // With no vCPU loaded (the empty root, any VMID) the maintenance value is as good an idle
    // one: it stays, and the next maintenance of the same VM finds its VMID loaded already
    // (`hcr::unload`, which says what that saves under QEMU).
    if switch && !is_empty_root(saved, super::hcr::idle_vttbr()) {
        VTTBR_EL2.set(saved);
        barrier::isb(barrier::SY);
    }
    DAIF.set(daif);
}

impl Tlb for HwTlb {
    fn invalidate_ipa(&self, vmid: Vmid, ipa: Ipa) {
        let operand = ipa.0 >> 12; // TLBI IPAS2E1{IS} Xt: IPA[51:12] in bits [39:0]
        match scope(vmid) {
            Scope::Nowhere => {}
            Scope::Local => self.with_vmid(vmid, || {
                // SAFETY: TLB invalidation never makes memory unsafe; barriers per the module
                // comment.
                unsafe {
                    asm!(
                        "tlbi ipas2e1, {x}",
                        "dsb nsh",
                        "tlbi vmalle1",
                        "dsb nsh",
                        "isb",
                        x = in(reg) operand,
                        options(nostack, preserves_flags),
                    )
                }
            }),
            Scope::Broadcast => self.with_vmid(vmid, || {
                // SAFETY: as above.
                unsafe {
                    asm!(
                        "tlbi ipas2e1is, {x}",
                        "dsb ish",
                        "tlbi vmalle1is",
                        "dsb ish",
                        "isb",
                        x = in(reg) operand,
                        options(nostack, preserves_flags),
                    )
                }
            }),
        }
    }

    fn invalidate_vm(&self, vmid: Vmid) {
        match scope(vmid) {
            Scope::Nowhere => {}
            // This CPU alone holds the VMID, so it holds no other (module documentation).
            Scope::Local => drop_own_entries(),
            Scope::Broadcast => self.with_vmid(vmid, || {
                // SAFETY: as above.
                unsafe { asm!("tlbi vmalls12e1is", "dsb ish", "isb", options(nostack, preserves_flags)) }
            }),
        }
    }
}
