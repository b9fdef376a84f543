//! The EL2 physical timer ("hypervisor timer": CNTHP_CTL_EL2 / CNTHP_CVAL_EL2, PPI INTID 26) on
//! the system counter CNTPCT_EL0. Used by the hypervisor for preemption; guests' virtual timers
//! are the virtualization layer's business.
//!
//! The interrupt is level-sensitive while the condition holds: an interrupt handler must
//! [`disarm`] (or re-[`arm_in`] later) before it EOIs, or the interrupt fires again at once.

use core::arch::asm;

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{Readable, Writeable, CNTFRQ_EL0, CNTHP_CTL_EL2, CNTPCT_EL0};

/// Counter frequency in Hz (CNTFRQ_EL0; 62.5 MHz on QEMU virt).
pub fn freq() -> u64 {
    CNTFRQ_EL0.get()
}

/// Current system counter value (CNTPCT_EL0, ordered after earlier instructions by an ISB).
pub fn now() -> u64 {
    barrier::isb(barrier::SY);
    CNTPCT_EL0.get()
}

/// Fires the hypervisor timer interrupt `ticks` counter ticks from now (replaces any earlier
/// deadline).
pub fn arm_in(ticks: u64) {
    arm_at(now().saturating_add(ticks));
}

/// Fires the hypervisor timer interrupt when the counter reaches `deadline`.
pub fn arm_at(deadline: u64) {
    // SAFETY: programming the EL2 physical timer only affects when INTID 26 is raised.
    // (CNTHP_CVAL_EL2 is not in `aarch64-cpu` 11.)
    unsafe { asm!("msr cnthp_cval_el2, {}", in(reg) deadline, options(nomem, nostack, preserves_flags)) };
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::SET + CNTHP_CTL_EL2::IMASK::CLEAR);
    barrier::isb(barrier::SY);
}

/// Stops the hypervisor timer (no interrupt until the next [`arm_in`]).
pub fn disarm() {
    // Disabling the EL2 physical timer only deasserts INTID 26.
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::CLEAR + CNTHP_CTL_EL2::IMASK::SET);
    barrier::isb(barrier::SY);
}

/// Sleeps this CPU in WFI for about `us` microseconds, or less when an interrupt is pending, then
/// puts back whatever deadline was armed (a vCPU's time slice). For waits on a device that QEMU's
/// I/O thread completes: under TCG a WFI gives the host thread up, where a spin keeps a host CPU
/// from that I/O thread (on 2 host cores, spinning waiters made each swap request take
/// milliseconds).
pub fn nap(us: u64) {
    let ctl = CNTHP_CTL_EL2.get();
    let cval: u64;
    // SAFETY: reading the EL2 physical timer's compare value has no side effect.
    unsafe { asm!("mrs {}, cnthp_cval_el2", out(reg) cval, options(nomem, nostack, preserves_flags)) };
    arm_in(us_to_ticks(us));
    aarch64_cpu::asm::wfi();
    // SAFETY: as in `arm_at`: only when INTID 26 is raised changes.
    unsafe { asm!("msr cnthp_cval_el2, {}", in(reg) cval, options(nomem, nostack, preserves_flags)) };
    CNTHP_CTL_EL2.set(ctl);
    barrier::isb(barrier::SY);
}

/// Converts microseconds to counter ticks.
pub fn us_to_ticks(us: u64) -> u64 {
    us.saturating_mul(freq()) / 1_000_000
}
