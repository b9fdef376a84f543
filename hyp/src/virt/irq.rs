//! Physical interrupts at EL2. EL2 runs with every interrupt masked; physical IRQs only arrive as
//! guest exits (HCR_EL2.IMO) or wake an idle CPU's WFI: the hypervisor timer (end of a time
//! slice, or an idle CPU's deadline) and the kick SGI (work was queued).

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
        }
    });
    tick
}

/// A physical IRQ while the guest ran: the hypervisor timer ends the time slice; an SGI from
/// another CPU only woke this one.
pub fn irq() -> Next {
    if drain() {
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
