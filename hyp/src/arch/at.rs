//! Address translation of guest VAs with the loaded vCPU's stage-1 tables (`AT S1E1R`),
//! for when HPFAR_EL2 does not give the IPA (stage-2 permission faults) and to check where the
//! guest's vectors are.
//!
//! Executed at EL2 with the guest's HCR_EL2/VTTBR_EL2 loaded, a stage-2 fault during the stage-1
//! walk does not trap: PAR_EL1 reports it with PAR.S = 1 ([`AtFault::Stage2Walk`]). The caller
//! decides (re-execute the guest, which then faults the table page in through the normal path).

use core::arch::asm;

use aarch64_cpu::registers::{Readable, Writeable, PAR_EL1};

pub use hyp::esr::AtFault;
use vm::Ipa;

/// The IPA of guest VA `va` (`AT S1E1R`). The guest's PAR_EL1 is preserved.
///
/// Always the EL1 read permission check, whatever EL the access came from: every stage-1 AP
/// encoding grants EL1 read (Arm ARM D8.4.1, "Stage 1 data access permissions"), and `AT S1E1R`
/// is not subject to PSTATE.PAN (only AT S1E1RP is, FEAT_PAN2), so it reports the IPA of any
/// valid stage-1 mapping. `AT S1E0R` would fail for an EL0 *execute-only* page (AP = 0b00, UXN = 0:
/// no EL0 read) and the stage-2 permission fault of a fetch from it could never be resolved (the
/// guest would refault forever: `scenarios/xonly.toml`). KVM re-walks with S1E1R too
/// (`__translate_far_to_hpfar`). Whether the access itself was allowed at stage 1 is the
/// hardware's business: it took the stage-2 fault after its own stage-1 checks passed.
pub fn translate(va: u64) -> Result<Ipa, AtFault> {
    let saved = PAR_EL1.get();
    // SAFETY: AT only writes PAR_EL1, which is saved before and restored after; the walk reads
    // guest tables through stage 2, which at worst reports a fault in PAR_EL1 (no exception is
    // taken at EL2 for it).
    unsafe { asm!("at s1e1r, {}", "isb", in(reg) va, options(nostack, preserves_flags)) };
    let par = PAR_EL1.get();
    PAR_EL1.set(saved);
    hyp::esr::par_to_ipa(par, va)
}
