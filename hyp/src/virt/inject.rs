//! Injecting synchronous exceptions into a guest's EL1 (Arm ARM D1.10 "Exception entry",
//! `AArch64.TakeException`).
//!
//! Taking an exception to EL1 from the vCPU's current PSTATE:
//! - ESR_EL1 = syndrome, FAR_EL1 = faulting VA (aborts; 0 with ESR.FnV when it is unknown),
//!   ELR_EL1 = preferred return address (the faulting instruction), SPSR_EL1 = the interrupted
//!   PSTATE;
//! - PC = VBAR_EL1 + vector offset: 0x000 from EL1 with SP_EL0 (EL1t), 0x200 from EL1 with SP_EL1
//!   (EL1h), 0x400 from EL0 in AArch64, 0x600 from EL0 in AArch32; + 0x000 for a synchronous
//!   exception;
//! - PSTATE = EL1h with D, A, I, F masked; PAN set if SCTLR_EL1.SPAN = 0 (else kept), SSBS =
//!   SCTLR_EL1.DSSBS; BTYPE 0. (On an ARMv8.0 core SPAN is RES1 and DSSBS RES0, so both are
//!   no-ops there; MTE's TCO is not needed: MTE is hidden from guests.)
//!
//! The EC of an abort depends on the source EL: "same EL" (0x21/0x25) from EL1, "lower EL"
//! (0x20/0x24) from EL0.
//!
//! Guest crash policy (README, "Hypercall ABI"): injecting while VBAR_EL1 does not lead to guest
//! RAM, or the third injection in a row taken inside the guest's vector table (a nested abort
//! during exception entry, [`hyp::inject`]), stops the VM instead of looping forever. A guest
//! that handles the same abort again and again runs on.

use alloc::format;
use alloc::string::String;

use super::hvc::GuestRange;
use super::vm::Vcpu;
use crate::arch::at::{self, AtFault, Regime};
use crate::arch::vcpu::{self, pstate, El1Exception, SCTLR_EL1_DSSBS, SCTLR_EL1_M, SCTLR_EL1_SPAN};
use hyp::esr::{ExternalAbort, ESR_UNDEFINED};
use hyp::inject::{Injected, VECTOR_TABLE_BYTES};
use vm::Ipa;

/// Offsets inside the EL1 vector table (synchronous entries).
const VECTOR_CURRENT_SP0: u64 = 0x000;
const VECTOR_CURRENT_SPX: u64 = 0x200;
const VECTOR_LOWER_AARCH64: u64 = 0x400;
const VECTOR_LOWER_AARCH32: u64 = 0x600;

/// The exception cannot be delivered: the VM must be stopped with this reason.
pub type Undeliverable = String;

/// What to inject.
#[derive(Clone, Copy, Debug)]
pub enum Injection {
    /// Synchronous external abort at guest VA `far` (`None`: unknown, FnV).
    Abort { far: Option<u64>, fetch: bool, write: bool, walk_level: Option<u8>, il32: bool },
    /// Undefined instruction.
    Undefined,
}

impl Injection {
    fn name(self) -> &'static str {
        match self {
            Injection::Abort { fetch: true, .. } => "instruction abort",
            Injection::Abort { fetch: false, .. } => "data abort",
            Injection::Undefined => "undefined instruction",
        }
    }
}

/// The stage-1 regime the vCPU was running in when it trapped (from SPSR_EL2.M).
pub fn regime(spsr: u64) -> Regime {
    let el0 = spsr & pstate::MODE_RW_AARCH32 != 0 || spsr & pstate::MODE_MASK == pstate::MODE_EL0T;
    if el0 {
        Regime::El0
    } else {
        Regime::El1
    }
}

/// Deliver `what` to the loaded vCPU `v` (its EL1 registers are live on this CPU).
pub fn inject(v: &mut Vcpu, what: Injection) -> Result<(), Undeliverable> {
    let spsr = v.regs.spsr_el2;
    let (offset, same_el) = if spsr & pstate::MODE_RW_AARCH32 != 0 {
        // HCR_EL2.RW: only EL0 can be AArch32.
        (VECTOR_LOWER_AARCH32, false)
    } else {
        match spsr & pstate::MODE_MASK {
            pstate::MODE_EL1T => (VECTOR_CURRENT_SP0, true),
            pstate::MODE_EL1H => (VECTOR_CURRENT_SPX, true),
            pstate::MODE_EL0T => (VECTOR_LOWER_AARCH64, false),
            m => return Err(format!("exception from unexpected mode {m:#x}")),
        }
    };
    let (esr, far) = match what {
        Injection::Abort { far, fetch, write, walk_level, il32 } => {
            let abort = ExternalAbort { fetch, same_el, write, walk_level, far_unknown: far.is_none(), il32 };
            (abort.esr(), far.unwrap_or(0))
        }
        Injection::Undefined => (ESR_UNDEFINED, 0),
    };

    let (vbar, sctlr) = vcpu::live_vbar_sctlr();
    let elr = v.regs.elr_el2;
    let undeliverable = |why: String| format!("{} at {elr:#x} cannot be delivered: {why}", what.name());
    check_vector(v, vbar, sctlr).map_err(undeliverable)?;
    if let Err(l) = v.inject_loop.record(Injected { elr, from_el1: same_el, vbar }) {
        return Err(undeliverable(format!(
            "nested abort loop ({} exceptions in a row taken inside the vectors at VBAR_EL1 {vbar:#x})",
            l.streak
        )));
    }

    vcpu::inject(&El1Exception { esr_el1: esr, far_el1: far, elr_el1: elr, spsr_el1: spsr });
    v.regs.elr_el2 = vbar + offset;
    v.regs.spsr_el2 = entry_pstate(spsr, sctlr);
    Ok(())
}

/// PSTATE on exception entry to EL1 (`AArch64.TakeException`), from the interrupted `spsr` and
/// the live SCTLR_EL1.
fn entry_pstate(spsr: u64, sctlr: u64) -> u64 {
    let pan = if sctlr & SCTLR_EL1_SPAN == 0 { pstate::PAN } else { spsr & pstate::PAN };
    let ssbs = if sctlr & SCTLR_EL1_DSSBS != 0 { pstate::SSBS } else { 0 };
    pstate::MODE_EL1H | pstate::DAIF | pan | ssbs
}

/// The vector table must be guest RAM: with the MMU off VBAR_EL1 is an IPA; with it on, the
/// loaded stage-1 tables say where it is. When the stage-1 walk itself is not mapped at stage 2
/// yet (PAR.S = 1) nothing can be said: the exception is delivered, the fetch from the vectors
/// faults the tables in, and a vector that really is not RAM ends in the nested-abort rule (its
/// fetch aborts at a PC inside the vector table).
fn check_vector(v: &Vcpu, vbar: u64, sctlr: u64) -> Result<(), Undeliverable> {
    let ipa = if sctlr & SCTLR_EL1_M == 0 { Ok(Ipa(vbar)) } else { at::translate(vbar, Regime::El1) };
    let in_ram = match ipa {
        Ok(ipa) => GuestRange::check(&v.map, ipa.0, VECTOR_TABLE_BYTES, VECTOR_TABLE_BYTES).is_some(),
        Err(AtFault::Stage2Walk) => true,
        Err(AtFault::Stage1) => false,
    };
    if in_ram {
        Ok(())
    } else {
        Err(format!("exception vectors (VBAR_EL1 {vbar:#x}) are not in guest RAM"))
    }
}
