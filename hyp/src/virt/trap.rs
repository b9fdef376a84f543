//! Trap dispatch: what to do with a guest's exit, by exception class (one module per class).


use super::esr::{ExceptionClass, Syndrome};
use super::inject::Injection;
use super::vm::{Stopped, Vcpu};
use super::{abort, hvc, Hyp, Next};
use crate::arch::vectors::Exit;
use crate::arch::{gic, timer};

/// Handle the exit `exit` of the loaded vCPU `v`.
pub fn handle(h: &Hyp, v: &mut Vcpu, exit: Exit) -> Next {
    match exit {
        Exit::Sync => sync(h, v),
        Exit::Irq => irq(),
        Exit::Fiq => Next::Resume,
        Exit::SError => h.stop_vm(&v.vm, Stopped::Crashed("SError".into())),
        Exit::Aarch32 => h.stop_vm(&v.vm, Stopped::Crashed("exception from AArch32 state".into())),
    }
}

fn sync(h: &Hyp, v: &mut Vcpu) -> Next {
    let syn = Syndrome::decode(v.regs.esr_el2);
    match syn.class {
        ExceptionClass::DataAbortLower => abort::handle(h, v, &syn, false),
        ExceptionClass::InstrAbortLower => abort::handle(h, v, &syn, true),
        ExceptionClass::Hvc64 => hvc::handle(h, v, &syn, false),
        ExceptionClass::Smc64 => hvc::handle(h, v, &syn, true),
        ExceptionClass::WfiWfe => {
            // The preferred return address of a trapped WFI/WFE is the instruction itself.
            v.regs.elr_el2 = v.regs.elr_el2.wrapping_add(4);
            Next::Yield
        }
        ExceptionClass::Unknown
        | ExceptionClass::FpSimd
        | ExceptionClass::SysReg
        | ExceptionClass::PcAlignment
        | ExceptionClass::SpAlignment
        | ExceptionClass::SError
        | ExceptionClass::Other(_) => {
            log::debug!(
                "vm{} vcpu{}: trapped {:?} (ESR_EL2 {:#x}) at {:#x}: undefined instruction",
                v.vm.id,
                v.index,
                syn.class,
                syn.raw,
                v.regs.elr_el2
            );
            h.inject(v, Injection::Undefined)
        }
    }
}

/// A physical IRQ while the guest ran: the hypervisor timer ends the time slice.
fn irq() -> Next {
    let mut next = Next::Resume;
    while let Some(intid) = gic::ack() {
        if intid == gic::HYP_TIMER_INTID {
            timer::disarm();
            next = Next::Yield;
        }
        gic::eoi(intid);
    }
    next
}
