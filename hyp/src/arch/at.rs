//! Address translation of guest VAs with the loaded vCPU's stage-1 tables (`AT S1E1R`/`AT S1E0R`),
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

/// Which stage-1 permissions to walk with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Regime {
    /// EL1 (AT S1E1R; PAN does not apply to it).
    El1,
    /// EL0 (AT S1E0R): for an access the guest made at EL0.
    El0,
}

/// The IPA of guest VA `va` for a read at `regime`. The guest's PAR_EL1 is preserved.
pub fn translate(va: u64, regime: Regime) -> Result<Ipa, AtFault> {
    let saved = PAR_EL1.get();
    // SAFETY: AT only writes PAR_EL1, which is saved before and restored after; the walk reads
    // guest tables through stage 2, which at worst reports a fault in PAR_EL1 (no exception is
    // taken at EL2 for it).
    unsafe {
        match regime {
            Regime::El1 => asm!("at s1e1r, {}", "isb", in(reg) va, options(nostack, preserves_flags)),
            Regime::El0 => asm!("at s1e0r, {}", "isb", in(reg) va, options(nostack, preserves_flags)),
        }
    };
    let par = PAR_EL1.get();
    PAR_EL1.set(saved);
    hyp::esr::par_to_ipa(par, va)
}
