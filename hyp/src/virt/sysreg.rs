//! Trapped system-register accesses (ESR_EL2.EC 0x18).
//!
//! What traps here and what the guest gets (the trap bits are in `arch::hcr`):
//! - debug and PMU registers (MDCR_EL2): not context-switched, so guests get a machine without
//!   them — reads as zero, writes ignored, as KVM does for a VM without a PMU;
//! - ID registers (HCR_EL2.TID3): the real value minus what is hidden (`arch::idregs`);
//! - ACTLR_EL1 (HCR_EL2.TACR): reads as zero, writes ignored;
//! - DC ISW/CSW/CISW (HCR_EL2.TSW): clean and invalidate of that line on this CPU;
//! - CNTP_CTL/CVAL/TVAL_EL0 (CNTHCTL_EL2.EL1PCEN = 0): the vCPU's emulated physical timer
//!   (`hyp::ptimer`; its interrupt goes through the vGIC);
//! - ICC_SGI1R/ASGI1R/SGI0R_EL1 writes (HCR_EL2.IMO) of a VM with a vGIC: the SGI goes to its
//!   targets (`hyp::vgic::Vgic::sgi`), who are woken or kicked;
//! - anything else (HCR_EL2.TIDCP: implementation-defined registers; writes to ID registers):
//!   an undefined instruction.

use hyp::esr::{SysRegIss, Syndrome};

use super::device::wake_ids;
use super::inject;
use super::machine::Vcpu;
use super::next::Next;
use super::state::Hyp;
use crate::arch::{cache, idregs, timer};
use hyp::exception::Injection;
use hyp::{ptimer, vgic};

/// Handle a trapped MSR/MRS of the loaded vCPU `v`.
pub fn handle(h: &Hyp, v: &mut Vcpu, syn: &Syndrome) -> Next {
    let s = SysRegIss::decode(syn.iss);
    let emulated = if s.is_debug() || s.is_pmu() || s.is_actlr_el1() {
        if s.read {
            v.regs.set_reg(s.rt, 0);
        }
        true
    } else if s.is_id_register() && s.read {
        v.regs.set_reg(s.rt, idregs::guest_view(s.crm, s.op2));
        true
    } else if s.is_dc_set_way() && !s.read {
        cache::clean_invalidate_set_way(v.regs.reg(s.rt));
        true
    } else if let Some(reg) = ptimer::Reg::of(s.op0, s.op1, s.crn, s.crm, s.op2) {
        let now = timer::now();
        if s.read {
            v.regs.set_reg(s.rt, v.ptimer.read(reg, now));
        } else {
            v.ptimer.write(reg, v.regs.reg(s.rt), now);
        }
        true
    } else if let (true, Some(gic)) = (vgic::is_sgi_register(&s), v.vm.gic.as_ref()) {
        let n = gic.lock().sgi(usize::from(v.index), v.regs.reg(s.rt));
        v.regs.elr_el2 = v.regs.elr_el2.wrapping_add(syn.insn_len());
        return Next::Wake(wake_ids(v.vm.number, n));
    } else {
        false
    };
    if emulated {
        v.regs.elr_el2 = v.regs.elr_el2.wrapping_add(syn.insn_len());
        return Next::Resume;
    }
    log::debug!(
        "vm{} vcpu{}: trapped system register S{}_{}_C{}_C{}_{} at {:#x}: undefined instruction",
        v.vm.number,
        v.index,
        s.op0,
        s.op1,
        s.crn,
        s.crm,
        s.op2,
        v.regs.elr_el2
    );
    inject::deliver(h, v, Injection::Undefined)
}
