//! Stage-2 TLB maintenance: the hypervisor's `vm::pmap::Tlb`.
//!
//! `TLBI IPAS2E1IS` and `TLBI VMALLS12E1IS` act on the VMID *currently in VTTBR_EL2*, but the
//! engine may change the stage-2 table of any VM from any CPU (a COW on one VM, `page_protect`
//! over every VM that maps a frame). So each operation:
//! 1. masks interrupts (EL2 already runs with DAIF masked; the guard makes it a local fact),
//! 2. writes VTTBR_EL2 = the all-invalid root tagged with the target VMID
//!    ([`maintenance_vttbr`], which says why never the VM's real root) and ISB,
//! 3. `DSB ISHST` (the descriptor write is visible before the invalidation), the TLBI(s),
//!    `DSB ISH` (complete on every CPU of the inner-shareable domain), `ISB`,
//! 4. restores the previous VTTBR_EL2 and DAIF.
//!
//! By IPA (Arm ARM D8.13 "TLB maintenance requirements for stage 2"): `TLBI IPAS2E1IS` removes
//! the stage-2-only entries; combined stage-1+2 entries derived from it may remain, hence the
//! following `DSB ISH; TLBI VMALLE1IS` for that VMID. `TLBI VMALLS12E1IS` drops both kinds at once.
//!
//! Nothing else on this CPU can observe the temporary VTTBR: EL2 never takes an interrupt and no
//! EL1&0 code runs until the next ERET, before which `El2Controls::load` or the restore puts the
//! right value back.

use core::arch::asm;

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{Readable, Writeable, DAIF, VTTBR_EL2};
use hyp::vttbr::maintenance_vttbr;
use vm::pmap::{Tlb, Vmid};
use vm::Ipa;

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

/// Masking interrupts and switching stage 2 (to a valid root) only affects EL1&0 translation,
/// which does not run on this CPU inside this function; both are restored after `f`.
fn with_vttbr(vttbr: u64, f: impl FnOnce()) {
    let daif = DAIF.get();
    DAIF.write(DAIF::D::Masked + DAIF::A::Masked + DAIF::I::Masked + DAIF::F::Masked);
    let saved = VTTBR_EL2.get();
    VTTBR_EL2.set(vttbr);
    barrier::isb(barrier::SY);
    f();
    VTTBR_EL2.set(saved);
    barrier::isb(barrier::SY);
    DAIF.set(daif);
}

impl Tlb for HwTlb {
    fn invalidate_ipa(&self, vmid: Vmid, ipa: Ipa) {
        let operand = ipa.0 >> 12; // TLBI IPAS2E1IS Xt: IPA[51:12] in bits [39:0]
        self.with_vmid(vmid, || {
            // SAFETY: TLB invalidation never makes memory unsafe; barriers per the module comment.
            unsafe {
                asm!(
                    "dsb ishst",
                    "tlbi ipas2e1is, {x}",
                    "dsb ish",
                    "tlbi vmalle1is",
                    "dsb ish",
                    "isb",
                    x = in(reg) operand,
                    options(nostack, preserves_flags),
                )
            };
        });
    }

    fn invalidate_vm(&self, vmid: Vmid) {
        self.with_vmid(vmid, || {
            // SAFETY: as above.
            unsafe {
                asm!(
                    "dsb ishst",
                    "tlbi vmalls12e1is",
                    "dsb ish",
                    "isb",
                    options(nostack, preserves_flags),
                )
            };
        });
    }
}
