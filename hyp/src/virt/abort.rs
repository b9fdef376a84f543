//! Stage-2 aborts (ESR_EL2.EC 0x24 data, 0x20 instruction): the guest touched an IPA its stage-2
//! table does not map (or maps with too little permission).
//!
//! ```text
//! IPA = HPFAR_EL2.FIPA | FAR_EL2[11:0]   (permission fault, not on a walk: AT S1E1R of FAR_EL2)
//!   ├─ guest RAM (a map entry covers it) ─► vm::fault ─► Resolved: re-enter
//!   │                                                    Restart: yield, then retry
//!   │                                                    NoMemory / Io / NoBacking: VM crashed
//!   │                                                    NoMapping / Protection: as "nothing"
//!   ├─ a device window, data access, ISV=1 ─► mmio::access, skip the instruction
//!   └─ nothing (or ISV=0) ─► data: inject SEA into the guest; instruction fetch: VM crashed
//! ```
//! Access kind: instruction abort → exec; otherwise WnR. For a stage-1 walk (S1PTW) WnR is set
//! only when the walker itself writes (hardware AF/DBM update, not on ARMv8.0 cores), so a walk
//! is a read of the table page. A cache-maintenance instruction (CM) reports WnR = 1 when it
//! needs write permission (DC IVAC): treating it as a read would map the page read-only again and
//! loop. A cache-maintenance instruction on an IPA that is not RAM is skipped (as KVM does):
//! there is nothing to maintain.

use alloc::format;

use super::esr::{hpfar_page, AbortIss, FaultKind, Syndrome};
use super::inject::Injection;
use super::mmio;
use super::vm::{Stopped, Vcpu};
use super::{Hyp, Next};
use crate::arch::vcpu::translate_s1e1r;
use vm::fault::{FaultError, FaultFlags};
use vm::trace::{Outcome, Record};
use vm::{Access, Ipa};

/// Handle one stage-2 abort of the loaded vCPU `v`.
pub fn handle(h: &Hyp, v: &mut Vcpu, syn: &Syndrome, instr: bool) -> Next {
    if v.vm.is_stopped() {
        // Its RAM may already be gone; the vCPU is dropped.
        return Next::Drop;
    }
    let iss = AbortIss::decode(syn.iss);
    let far = v.regs.far_el2;
    let page = match iss.kind {
        FaultKind::Translation(_) | FaultKind::AccessFlag(_) => hpfar_page(v.regs.hpfar_el2),
        // HPFAR_EL2 may be invalid for a permission fault that is not on a stage-1 walk.
        FaultKind::Permission(_) if iss.s1ptw => hpfar_page(v.regs.hpfar_el2),
        FaultKind::Permission(_) => match translate_s1e1r(far) {
            Some(ipa) => ipa & !0xfff,
            // The guest's stage 1 changed under us: re-execute and see.
            None => return Next::Resume,
        },
        FaultKind::Other(fsc) => {
            return bad_access(h, v, instr, far, &format!("unhandled stage-2 fault status {fsc:#x}"));
        }
    };
    let ipa = page | (far & 0xfff);
    let access = if instr {
        Access::Exec
    } else if iss.write {
        Access::Write
    } else {
        Access::Read
    };

    if v.vm.map.contains(Ipa(ipa)) {
        return ram(h, v, Ipa(ipa), access, instr, far);
    }
    if !instr && iss.cache_maintenance {
        v.regs.elr_el2 = v.regs.elr_el2.wrapping_add(4);
        trace(h, v, Ipa(ipa), access, None, Outcome::Mmio, 0, 0);
        return Next::Resume;
    }
    if !instr {
        if let Some(w) = mmio::find(ipa) {
            return device(h, v, w, ipa, &iss, access);
        }
    }
    trace(h, v, Ipa(ipa), access, None, Outcome::AbortInjected, 0, 0);
    bad_access(h, v, instr, far, &format!("{access:?} at IPA {ipa:#x} outside RAM and devices"))
}

/// A fault on guest RAM: the engine decides.
fn ram(h: &Hyp, v: &mut Vcpu, ipa: Ipa, access: Access, instr: bool, far: u64) -> Next {
    match vm::fault::fault(&v.vm.map, ipa, access, FaultFlags::empty()) {
        Ok(r) => {
            trace(h, v, ipa, access, Some(r.case), Outcome::Resolved, r.neighbours, r.refaults);
            Next::Resume
        }
        Err(e) => {
            trace(h, v, ipa, access, None, Outcome::Failed(e), 0, 0);
            match e {
                // Where the seed sleeps (a busy page, memory to reclaim): let whoever holds the
                // page run first instead of spinning on the fault; the guest retries when it is
                // next scheduled.
                FaultError::Restart => Next::Yield,
                FaultError::NoMapping | FaultError::Protection => {
                    bad_access(h, v, instr, far, &format!("{access:?} at IPA {ipa} refused: {e:?}"))
                }
                FaultError::NoMemory | FaultError::Io | FaultError::NoBacking => {
                    h.stop_vm(&v.vm, Stopped::Crashed(format!("fault at IPA {ipa} failed: {e:?}")))
                }
            }
        }
    }
}

/// A data access to an emulated device.
fn device(h: &Hyp, v: &mut Vcpu, w: &mmio::Window, ipa: u64, iss: &AbortIss, access: Access) -> Next {
    let Some(acc) = iss.access else {
        trace(h, v, Ipa(ipa), access, None, Outcome::AbortInjected, 0, 0);
        let far = v.regs.far_el2;
        return bad_access(h, v, false, far, "MMIO access without a valid syndrome (ISV=0)");
    };
    let value = v.regs.reg(acc.reg);
    let loaded = mmio::access(&v.vm, w, ipa, &acc, iss.write, value);
    if !iss.write {
        v.regs.set_reg(acc.reg, loaded);
    }
    v.regs.elr_el2 = v.regs.elr_el2.wrapping_add(4);
    trace(h, v, Ipa(ipa), access, None, Outcome::Mmio, 0, 0);
    Next::Resume
}

/// The guest accessed something that is not there: a data access gets a synchronous external
/// abort; an instruction fetch (or an undeliverable abort) stops the VM.
fn bad_access(h: &Hyp, v: &mut Vcpu, instr: bool, far: u64, what: &str) -> Next {
    if instr {
        let elr = v.regs.elr_el2;
        return h.stop_vm(&v.vm, Stopped::Crashed(format!("instruction abort at {elr:#x}: {what}")));
    }
    log::debug!("vm{}: data abort at {:#x} (FAR {far:#x}): {what}; injecting SEA", v.vm.id, v.regs.elr_el2);
    h.inject(v, Injection::DataAbort { far })
}

#[allow(clippy::too_many_arguments)]
fn trace(
    h: &Hyp,
    v: &Vcpu,
    ipa: Ipa,
    access: Access,
    case: Option<vm::fault::FaultCase>,
    outcome: Outcome,
    neighbours: u8,
    refaults: u8,
) {
    let rec = Record {
        seq: h.trace.next_seq(),
        ipa,
        vm: v.vm.id,
        vcpu: v.index,
        access,
        case,
        outcome,
        neighbours,
        refaults,
    };
    h.trace.record(crate::arch::cpu::index(), &rec);
}
