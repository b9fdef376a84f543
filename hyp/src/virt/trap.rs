//! Trap dispatch: what to do with a guest's exit, by exception class (one module per class).
//!
//! Exits from AArch32 EL0 (HCR_EL2.RW makes EL1 AArch64, but EL0 may run A32/T32 code) are handled
//! like AArch64 ones where the syndrome is the same — interrupts, stage-2 aborts, WFI/WFE — and
//! anything AArch32-specific is an undefined instruction for the guest's EL1.

use super::inject::Injection;
use super::vm::{Stopped, Vcpu};
use super::{abort, hvc, sched, sysreg, Hyp, Next};
use crate::arch::gic;
use crate::arch::vectors::{Exit, ExitKind};
use hyp::esr::{ExceptionClass, Syndrome};

/// Handle the exit `exit` of the loaded vCPU `v`.
pub fn handle(h: &Hyp, v: &mut Vcpu, exit: Exit) -> Next {
    match exit.kind {
        ExitKind::Sync => sync(h, v, exit.from_aarch32),
        ExitKind::Irq => irq(),
        ExitKind::Fiq => fiq(),
        ExitKind::SError => h.stop_vm(&v.vm, Stopped::Crashed("SError".into())),
    }
}

fn sync(h: &Hyp, v: &mut Vcpu, aarch32: bool) -> Next {
    let syn = Syndrome::decode(v.regs.esr_el2);
    match syn.class {
        ExceptionClass::DataAbortLower => abort::handle(h, v, &syn, false),
        ExceptionClass::InstrAbortLower => abort::handle(h, v, &syn, true),
        ExceptionClass::WfiWfe => sched::wait(v, &syn),
        ExceptionClass::Hvc64 if !aarch32 => hvc::handle(h, v, &syn, false),
        ExceptionClass::Smc64 if !aarch32 => hvc::handle(h, v, &syn, true),
        ExceptionClass::SysReg if !aarch32 => sysreg::handle(h, v, &syn),
        _ => {
            log::debug!(
                "vm{} vcpu{}: trapped {:?} (ESR_EL2 {:#x}{}) at {:#x}: undefined instruction",
                v.vm.id,
                v.index,
                syn.class,
                syn.raw,
                if aarch32 { ", AArch32" } else { "" },
                v.regs.elr_el2
            );
            h.inject(v, Injection::Undefined)
        }
    }
}

/// A physical IRQ while the guest ran: the hypervisor timer ends the time slice; an SGI from
/// another CPU only woke this one.
fn irq() -> Next {
    if sched::drain_irqs() {
        Next::Yield
    } else {
        Next::Resume
    }
}

/// A physical FIQ (Group 0; the hypervisor enables none): acknowledge and end it so a level FIQ
/// cannot bring the guest straight back here forever, and end the time slice.
fn fiq() -> Next {
    gic::drain(gic::Group::Zero, |intid| log::warn!("unexpected Group 0 interrupt {intid}"));
    Next::Yield
}
