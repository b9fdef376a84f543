//! Trapped system-register accesses (ESR_EL2.EC 0x18).
//!
//! MDCR_EL2 traps the debug and PMU registers (see `arch::hcr`): they are not context-switched,
//! so guests get a machine without them — reads as zero, writes ignored, as KVM does for a VM
//! without a PMU. Everything else that traps here (HCR_EL2.TIDCP: implementation-defined
//! registers) is an undefined instruction for the guest.

use hyp::esr::{SysRegIss, Syndrome};

use super::inject::Injection;
use super::vm::Vcpu;
use super::{Hyp, Next};

/// Handle a trapped MSR/MRS of the loaded vCPU `v`.
pub fn handle(h: &Hyp, v: &mut Vcpu, syn: &Syndrome) -> Next {
    let s = SysRegIss::decode(syn.iss);
    if s.is_debug() || s.is_pmu() {
        if s.read {
            v.regs.set_reg(s.rt, 0);
        }
        v.regs.elr_el2 = v.regs.elr_el2.wrapping_add(syn.insn_len());
        return Next::Resume;
    }
    log::debug!(
        "vm{} vcpu{}: trapped system register S{}_{}_C{}_C{}_{} at {:#x}: undefined instruction",
        v.vm.id,
        v.index,
        s.op0,
        s.op1,
        s.crn,
        s.crm,
        s.op2,
        v.regs.elr_el2
    );
    h.inject(v, Injection::Undefined)
}
