//! Injecting synchronous exceptions into a guest's EL1: the entry state is computed by
//! [`hyp::exception::enter_el1`] (host-tested) from the live registers, and written back here.
//!
//! Guest crash policy (README, "Hypercall ABI"): injecting while VBAR_EL1 does not lead to guest
//! RAM, or the third injection in a row taken inside the guest's vector table (a nested abort
//! during exception entry, [`hyp::inject`]), stops the VM instead of looping forever. A guest
//! that handles the same abort again and again runs on.

use alloc::format;
use alloc::string::String;

use super::guestmem::GuestRange;
use super::machine::Vcpu;
use super::next::Next;
use super::state::Hyp;
use crate::arch::at::{self, AtFault};
use crate::arch::vcpu::{self, El1Exception};
use hyp::exception::{enter_el1, sctlr, From, Injection};
use hyp::inject::{Injected, VECTOR_TABLE_BYTES};
use hyp::stop::{Cause, Stop};
use vm::Ipa;

/// Deliver `what` to the loaded vCPU `v` (its EL1 registers are live on this CPU); if it cannot
/// be delivered, the VM crashes (the guest's fault).
pub fn deliver(h: &Hyp, v: &mut Vcpu, what: Injection) -> Next {
    match try_deliver(v, what) {
        Ok(()) => Next::Resume,
        Err(reason) => {
            let vm = v.vm.clone();
            h.stop_vm(&vm, Stop::crash(Cause::GuestFault, reason))
        }
    }
}

fn try_deliver(v: &mut Vcpu, what: Injection) -> Result<(), String> {
    let spsr = v.regs.spsr_el2;
    let elr = v.regs.elr_el2;
    let Some(from) = From::of_spsr(spsr) else {
        return Err(format!("{} at {elr:#x}: exception from unexpected mode {spsr:#x}", what.name()));
    };
    let (vbar, sctlr) = vcpu::live_vbar_sctlr();
    let undeliverable = |why: String| format!("{} at {elr:#x} cannot be delivered: {why}", what.name());
    check_vector(v, vbar, sctlr).map_err(undeliverable)?;
    if let Err(l) = v.inject_loop.record(Injected { elr, from_el1: from.is_el1(), vbar }) {
        return Err(undeliverable(format!(
            "nested abort loop ({} exceptions in a row taken inside the vectors at VBAR_EL1 {vbar:#x})",
            l.streak
        )));
    }
    let e = enter_el1(what, from, spsr, elr, vbar, sctlr);
    vcpu::inject(&El1Exception { esr_el1: e.esr_el1, far_el1: e.far_el1, elr_el1: e.elr_el1, spsr_el1: e.spsr_el1 });
    v.regs.elr_el2 = e.pc;
    v.regs.spsr_el2 = e.pstate;
    Ok(())
}

/// The vector table must be guest RAM: with the MMU off VBAR_EL1 is an IPA; with it on, the
/// loaded stage-1 tables say where it is. When the stage-1 walk itself is not mapped at stage 2
/// yet (PAR.S = 1) nothing can be said: the exception is delivered, the fetch from the vectors
/// faults the tables in, and a vector that really is not RAM ends in the nested-abort rule (its
/// fetch aborts at a PC inside the vector table).
fn check_vector(v: &Vcpu, vbar: u64, sctlr_el1: u64) -> Result<(), String> {
    let ipa = if sctlr_el1 & sctlr::M == 0 { Ok(Ipa(vbar)) } else { at::translate(vbar) };
    let in_ram = match ipa {
        Ok(ipa) => GuestRange::check(v.map(), ipa.0, VECTOR_TABLE_BYTES, VECTOR_TABLE_BYTES).is_some(),
        Err(AtFault::Stage2Walk) => true,
        Err(AtFault::Stage1) => false,
    };
    if in_ram {
        Ok(())
    } else {
        Err(format!("exception vectors (VBAR_EL1 {vbar:#x}) are not in guest RAM"))
    }
}
