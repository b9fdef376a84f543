//! Physical interrupts at EL2. EL2 runs with every interrupt masked; physical IRQs only arrive as
//! guest exits (HCR_EL2.IMO) or wake an idle CPU's WFI: the hypervisor timer (end of a time
//! slice, a guest's virtual-timer deadline, or an idle CPU's deadline), the kick SGI (work was
//! queued, or an interrupt is waiting for a running vCPU), the GIC maintenance interrupt
//! (list registers ran low) and, on CPU 0, the swap disk's (a request completed:
//! `swapdisk::on_irq`). Each only needs the exit it caused: the run loop's next entry reloads
//! the list registers, re-arms the timer and polls the disk.

use super::machine::Vcpu;
use super::next::Next;
use crate::arch::gic::{self, Group};
use crate::arch::timer;

/// Acknowledge every pending IRQ; true if the hypervisor timer (end of a slice) was among them.
pub fn drain() -> bool {
    let mut tick = false;
    gic::drain(Group::One, |intid| {
        if intid == gic::HYP_TIMER_INTID {
            timer::disarm();
            tick = true;
        } else {
            super::swapdisk::on_irq(intid);
        }
    });
    tick
}

/// A physical IRQ while vCPU `v` ran: the hypervisor timer ends the time slice once it is over
/// (earlier, it was the guest's timer deadline); anything else only made it exit.
pub fn irq(v: &Vcpu) -> Next {
    if drain() && timer::now() >= v.slice_end {
        Next::Yield
    } else {
        Next::Resume
    }
}

/// A physical FIQ (Group 0; the hypervisor enables none): acknowledge and end it so a level FIQ
/// cannot bring the guest straight back here forever, and end the time slice.
pub fn fiq() -> Next {
    gic::drain(Group::Zero, |intid| log::warn!("unexpected Group 0 interrupt {intid}"));
    Next::Yield
}
