//! The state of a synchronous exception taken to a guest's EL1 (Arm ARM D1.10 "Exception entry",
//! `AArch64.TakeException`), computed from plain register values; `virt::inject` reads the live
//! registers, asks [`enter_el1`], and writes the answer.
//!
//! - ESR_EL1 = the syndrome, FAR_EL1 = the faulting VA (0 with ESR.FnV when unknown),
//!   ELR_EL1 = the preferred return address (the faulting instruction), SPSR_EL1 = the
//!   interrupted PSTATE;
//! - PC = VBAR_EL1 + 0x000 from EL1 with SP_EL0 (EL1t), 0x200 from EL1 with SP_EL1 (EL1h), 0x400
//!   from EL0 in AArch64, 0x600 from EL0 in AArch32 (+ 0x000: synchronous);
//! - PSTATE = EL1h with D, A, I, F masked; PAN set if SCTLR_EL1.SPAN = 0 (else kept); SSBS =
//!   SCTLR_EL1.DSSBS; BTYPE 0. (On ARMv8.0 SPAN is RES1 and DSSBS RES0: no-ops there. MTE's TCO
//!   is not needed: MTE is hidden from guests.)
//!
//! An abort's EC depends on where it was taken from: "same EL" (0x21/0x25) from EL1, "lower EL"
//! (0x20/0x24) from EL0 ([`crate::esr::ExternalAbort`]).

use aarch64_cpu::registers::{SCTLR_EL1, SPSR_EL2};
use tock_registers::register_bitfields;

use crate::esr::{ExternalAbort, ESR_UNDEFINED};

register_bitfields! {u64,
    /// The SPSR fields `aarch64-cpu`'s SPSR_EL2 does not name (it has the AArch64 M[3:0] and
    /// D, A, I, F, NZCV, SS, IL).
    pub SPSR [
        /// PAN (FEAT_PAN).
        PAN OFFSET(22) NUMBITS(1) [],
        /// SSBS (FEAT_SSBS).
        SSBS OFFSET(12) NUMBITS(1) [],
        /// E (AArch32): PSTATE.E, the data endianness.
        E OFFSET(9) NUMBITS(1) [],
        /// M[4]: the exception was taken from AArch32.
        M4 OFFSET(4) NUMBITS(1) [AArch64 = 0, AArch32 = 1],
        /// M[3:2] (AArch64): the exception level it was taken from.
        EL OFFSET(2) NUMBITS(2) [EL0 = 0, EL1 = 1, EL2 = 2]
    ],

    /// The SCTLR_EL1 fields `aarch64-cpu` does not name.
    pub SCTLR_EL1_MORE [
        /// DSSBS: PSTATE.SSBS on exception entry (RES0 without FEAT_SSBS).
        DSSBS OFFSET(44) NUMBITS(1) [],
        /// SPAN: 0 = PSTATE.PAN is set on exception entry to EL1 (RES1 without PAN).
        SPAN OFFSET(23) NUMBITS(1) []
    ]
}

/// PSTATE as saved in SPSR_EL2/SPSR_EL1 (AArch64 format, Arm ARM C5.2.19), by `aarch64-cpu`'s
/// SPSR_EL2 fields and [`SPSR`].
pub mod pstate {
    use super::{SPSR, SPSR_EL2};

    /// M[3:0] = EL1 with SP_EL1.
    pub const MODE_EL1H: u64 = SPSR_EL2::M::EL1h.value;
    /// M[3:0] = EL1 with SP_EL0.
    pub const MODE_EL1T: u64 = SPSR_EL2::M::EL1t.value;
    /// M[3:0] = EL0.
    pub const MODE_EL0T: u64 = SPSR_EL2::M::EL0t.value;
    /// M[3:0] mask.
    pub const MODE_MASK: u64 = SPSR_EL2::M::SET.value;
    /// M[4]: the exception came from AArch32.
    pub const MODE_RW_AARCH32: u64 = SPSR::M4::AArch32.value;
    /// D, A, I, F masks.
    pub const DAIF: u64 =
        SPSR_EL2::D::Masked.value | SPSR_EL2::A::Masked.value | SPSR_EL2::I::Masked.value | SPSR_EL2::F::Masked.value;
    /// SSBS (FEAT_SSBS).
    pub const SSBS: u64 = SPSR::SSBS::SET.value;
    /// PAN (FEAT_PAN).
    pub const PAN: u64 = SPSR::PAN::SET.value;
}

/// SCTLR_EL1 bits exception entry depends on.
pub mod sctlr {
    use super::{SCTLR_EL1, SCTLR_EL1_MORE};

    /// M: stage-1 MMU enabled (VBAR_EL1 is then a VA).
    pub const M: u64 = SCTLR_EL1::M::SET.value;
    /// SPAN: 0 = PSTATE.PAN is set on exception entry to EL1 (RES1 without PAN).
    pub const SPAN: u64 = SCTLR_EL1_MORE::SPAN::SET.value;
    /// DSSBS: PSTATE.SSBS on exception entry (RES0 without FEAT_SSBS).
    pub const DSSBS: u64 = SCTLR_EL1_MORE::DSSBS::SET.value;
}

/// Offsets of the synchronous entries inside the EL1 vector table.
const VECTOR_CURRENT_SP0: u64 = 0x000;
const VECTOR_CURRENT_SPX: u64 = 0x200;
const VECTOR_LOWER_AARCH64: u64 = 0x400;
const VECTOR_LOWER_AARCH32: u64 = 0x600;

/// What to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injection {
    /// Synchronous external abort at guest VA `far` (`None`: unknown, FnV).
    Abort { far: Option<u64>, fetch: bool, write: bool, walk_level: Option<u8>, il32: bool },
    /// Undefined instruction.
    Undefined,
}

impl Injection {
    pub fn name(self) -> &'static str {
        match self {
            Injection::Abort { fetch: true, .. } => "instruction abort",
            Injection::Abort { fetch: false, .. } => "data abort",
            Injection::Undefined => "undefined instruction",
        }
    }
}

/// Where the exception is taken from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum From {
    El1Sp0,
    El1Spx,
    El0Aarch64,
    El0Aarch32,
}

impl From {
    /// The mode in SPSR_EL2, or `None` for one a guest exit cannot come from (EL2/EL3, or an
    /// AArch32 EL1 that HCR_EL2.RW rules out).
    pub fn of_spsr(spsr: u64) -> Option<From> {
        if spsr & pstate::MODE_RW_AARCH32 != 0 {
            // HCR_EL2.RW: only EL0 can be AArch32; its M[3:0] = 0b0000 is User mode.
            return (spsr & pstate::MODE_MASK == 0).then_some(From::El0Aarch32);
        }
        match spsr & pstate::MODE_MASK {
            pstate::MODE_EL1T => Some(From::El1Sp0),
            pstate::MODE_EL1H => Some(From::El1Spx),
            pstate::MODE_EL0T => Some(From::El0Aarch64),
            _ => None,
        }
    }

    pub fn is_el1(self) -> bool {
        matches!(self, From::El1Sp0 | From::El1Spx)
    }

    fn vector_offset(self) -> u64 {
        match self {
            From::El1Sp0 => VECTOR_CURRENT_SP0,
            From::El1Spx => VECTOR_CURRENT_SPX,
            From::El0Aarch64 => VECTOR_LOWER_AARCH64,
            From::El0Aarch32 => VECTOR_LOWER_AARCH32,
        }
    }
}

/// The registers after exception entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub esr_el1: u64,
    pub far_el1: u64,
    pub elr_el1: u64,
    pub spsr_el1: u64,
    /// Where the guest resumes (ELR_EL2).
    pub pc: u64,
    /// Its PSTATE (SPSR_EL2).
    pub pstate: u64,
}

/// Take `what` to EL1 from a vCPU at `elr` with PSTATE `spsr`, vector base `vbar` and
/// SCTLR_EL1 `sctlr`.
pub fn enter_el1(what: Injection, from: From, spsr: u64, elr: u64, vbar: u64, sctlr: u64) -> Entry {
    let (esr_el1, far_el1) = match what {
        Injection::Abort { far, fetch, write, walk_level, il32 } => {
            let abort = ExternalAbort { fetch, same_el: from.is_el1(), write, walk_level, far_unknown: far.is_none(), il32 };
            (abort.esr(), far.unwrap_or(0))
        }
        Injection::Undefined => (ESR_UNDEFINED, 0),
    };
    let pan = if sctlr & sctlr::SPAN == 0 { pstate::PAN } else { spsr & pstate::PAN };
    let ssbs = if sctlr & sctlr::DSSBS != 0 { pstate::SSBS } else { 0 };
    Entry {
        esr_el1,
        far_el1,
        elr_el1: elr,
        spsr_el1: spsr,
        pc: vbar.wrapping_add(from.vector_offset()),
        pstate: pstate::MODE_EL1H | pstate::DAIF | pan | ssbs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ESR.EC of an injected syndrome.
    fn ec(esr: u64) -> u64 {
        esr >> 26 & 0x3f
    }

    const VBAR: u64 = 0x4000_8000;
    const ABORT: Injection = Injection::Abort { far: Some(0x1234), fetch: false, write: true, walk_level: None, il32: true };

    #[test]
    fn each_mode_enters_its_vector_with_its_ec() {
        let cases = [
            (pstate::MODE_EL1T, From::El1Sp0, 0x000, 0x25),
            (pstate::MODE_EL1H, From::El1Spx, 0x200, 0x25),
            (pstate::MODE_EL0T, From::El0Aarch64, 0x400, 0x24),
            (pstate::MODE_RW_AARCH32, From::El0Aarch32, 0x600, 0x24),
        ];
        for (spsr, from, offset, ec_expected) in cases {
            assert_eq!(From::of_spsr(spsr), Some(from));
            let e = enter_el1(ABORT, from, spsr, 0x4000_1000, VBAR, sctlr::SPAN);
            assert_eq!(e.pc, VBAR + offset, "{from:?}");
            assert_eq!(ec(e.esr_el1), ec_expected, "{from:?}");
            assert_eq!((e.elr_el1, e.spsr_el1, e.far_el1), (0x4000_1000, spsr, 0x1234));
            assert_eq!(e.pstate & (pstate::MODE_MASK | pstate::MODE_RW_AARCH32 | pstate::DAIF), pstate::MODE_EL1H | pstate::DAIF);
        }
    }

    #[test]
    fn modes_a_guest_cannot_trap_from_are_refused() {
        for m in [0b1000, 0b1001, 0b1100, 0b1101, 0b0001, pstate::MODE_RW_AARCH32 | 0b0011] {
            assert_eq!(From::of_spsr(m), None, "{m:#b}");
        }
    }

    #[test]
    fn pan_follows_span_and_ssbs_follows_dssbs() {
        let from_el0 = |sctlr, spsr| enter_el1(Injection::Undefined, From::El0Aarch64, spsr, 0, VBAR, sctlr).pstate;
        assert_ne!(from_el0(0, 0) & pstate::PAN, 0, "SPAN = 0 sets PAN");
        assert_eq!(from_el0(sctlr::SPAN, 0) & pstate::PAN, 0, "SPAN = 1 keeps PAN clear");
        assert_ne!(from_el0(sctlr::SPAN, pstate::PAN) & pstate::PAN, 0, "SPAN = 1 keeps PAN set");
        assert_ne!(from_el0(sctlr::SPAN | sctlr::DSSBS, 0) & pstate::SSBS, 0);
        assert_eq!(from_el0(sctlr::SPAN, pstate::SSBS) & pstate::SSBS, 0);
    }

    #[test]
    fn unknown_far_is_zero_and_undefined_has_no_far() {
        let abort = Injection::Abort { far: None, fetch: true, write: false, walk_level: None, il32: true };
        let e = enter_el1(abort, From::El1Spx, pstate::MODE_EL1H, 8, VBAR, 0);
        assert_eq!(e.far_el1, 0);
        assert_eq!(ec(e.esr_el1), 0x21);
        let u = enter_el1(Injection::Undefined, From::El1Spx, pstate::MODE_EL1H, 8, VBAR, 0);
        assert_eq!((u.esr_el1, u.far_el1), (ESR_UNDEFINED, 0));
    }
}
