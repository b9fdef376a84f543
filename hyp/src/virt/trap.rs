//! Trap dispatch: what to do with a guest's exit, by exception class (one module per class).
//!
//! Exits from AArch32 EL0 (HCR_EL2.RW makes EL1 AArch64, but EL0 may run A32/T32 code) are handled
//! like AArch64 ones where the syndrome is the same — interrupts, stage-2 aborts, WFI/WFE — and
//! anything AArch32-specific is an undefined instruction for the guest's EL1.

use super::inject;
use super::machine::Vcpu;
use super::next::Next;
use super::state::Hyp;
use super::{abort, irq, smccc, sysreg, wait};
use crate::arch::vectors::{Exit, ExitKind};
use hyp::esr::{ExceptionClass, Syndrome};
use hyp::exception::Injection;
use hyp::stop::{Cause, Stop};

/// Handle the exit `exit` of the loaded vCPU `v`.
pub fn handle(h: &Hyp, v: &mut Vcpu, exit: Exit) -> Next {
    match exit.kind {
        ExitKind::Sync => sync(h, v, exit.from_aarch32),
        ExitKind::Irq => irq::irq(v),
        ExitKind::Fiq => irq::fiq(),
        ExitKind::SError(seen) => match hyp::serror::origin(seen) {
            hyp::serror::Origin::Guest => {
                let vm = v.vm.clone();
                h.stop_vm(&vm, Stop::crash(Cause::GuestFault, "SError"))
            }
            hyp::serror::Origin::Hypervisor => {
                let cpu = crate::arch::cpu::index();
                log::warn!("{}", hyp::serror::HypervisorSError { cpu, syndrome: v.regs.serror });
                Next::Resume
            }
        },
    }
}

fn sync(h: &Hyp, v: &mut Vcpu, aarch32: bool) -> Next {
    let syn = Syndrome::decode(v.regs.esr_el2);
    match syn.class {
        ExceptionClass::DataAbortLower => abort::handle(h, v, &syn, false),
        ExceptionClass::InstrAbortLower => abort::handle(h, v, &syn, true),
        ExceptionClass::WfiWfe => wait::handle(v, &syn),
        ExceptionClass::Hvc64 if !aarch32 => smccc::handle(h, v, &syn, false),
        ExceptionClass::Smc64 if !aarch32 => smccc::handle(h, v, &syn, true),
        ExceptionClass::SysReg if !aarch32 => sysreg::handle(h, v, &syn),
        _ => {
            log::debug!(
                "vm{} vcpu{}: trapped {:?} (ESR_EL2 {:#x}{}) at {:#x}: undefined instruction",
                v.vm.number,
                v.index,
                syn.class,
                syn.raw,
                if aarch32 { ", AArch32" } else { "" },
                v.regs.elr_el2
            );
            inject::deliver(h, v, Injection::Undefined)
        }
    }
}
