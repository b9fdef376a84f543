//! WFI and WFE (ESR_EL2.EC 0x01, trapped by HCR_EL2.TWI/TWE).
//!
//! WFE (a spin-wait on another vCPU) yields the physical CPU. WFI returns at once when the
//! vCPU has an interrupt to take (its VM's vGIC says so); otherwise it sleeps until the vCPU's
//! virtual timer deadline (CNTV_CVAL_EL0, when the guest armed and unmasked it) or at most
//! [`MAX_SLEEP_US`]; a wake-up by id (an interrupt made deliverable to it, `run::wake`) ends it
//! earlier. The timer's interrupt is delivered by the vGIC at the next entry (`vgic::load`).

use super::machine::Vcpu;
use super::next::Next;
use crate::arch::{timer, vcpu};
use hyp::esr::Syndrome;

/// Longest WFI sleep of a vCPU whose virtual timer is not armed.
const MAX_SLEEP_US: u64 = 10_000;

/// A trapped WFI or WFE of the loaded vCPU `v` (its preferred return address is the instruction
/// itself: step over it).
pub fn handle(v: &mut Vcpu, syn: &Syndrome) -> Next {
    v.regs.elr_el2 = v.regs.elr_el2.wrapping_add(syn.insn_len());
    if hyp::esr::is_wfe(syn.iss) {
        return Next::Yield;
    }
    until_interrupt(v)
}

/// Wait as WFI does (PSCI CPU_SUSPEND too): resume at once if an interrupt is deliverable, else
/// sleep until the virtual timer's deadline (at most [`MAX_SLEEP_US`]) or a wake-up.
pub fn until_interrupt(v: &mut Vcpu) -> Next {
    if v.vm.gic.as_ref().is_some_and(|g| g.lock().has_deliverable(usize::from(v.index))) {
        return Next::Resume;
    }
    let now = timer::now();
    let timers = [vcpu::live_vtimer().deadline, v.ptimer.deadline(now)].into_iter().flatten().min();
    let until = timers.unwrap_or(u64::MAX).min(now + timer::us_to_ticks(MAX_SLEEP_US));
    if until <= now {
        Next::Yield
    } else {
        Next::Sleep { until }
    }
}
