//! The EL2 physical timer ("hypervisor timer": CNTHP_CTL_EL2 / CNTHP_CVAL_EL2, PPI INTID 26) on
//! the system counter CNTPCT_EL0. Used by the hypervisor for preemption; guests' virtual timers
//! are the virtualization layer's business.
//!
//! The interrupt is level-sensitive while the condition holds: an interrupt handler must
//! [`disarm`] (or re-[`arm_in`] later) before it EOIs, or the interrupt fires again at once.

use core::arch::asm;

/// CNTHP_CTL_EL2.ENABLE, bit [0].
const CTL_ENABLE: u64 = 1 << 0;
/// CNTHP_CTL_EL2.IMASK, bit [1]: interrupt masked.
const CTL_IMASK: u64 = 1 << 1;

/// Counter frequency in Hz (CNTFRQ_EL0; 62.5 MHz on QEMU virt).
pub fn freq() -> u64 {
    let f: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effects.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) f, options(nomem, nostack, preserves_flags)) };
    f
}

/// Current system counter value (CNTPCT_EL0, ordered after earlier instructions by an ISB).
pub fn now() -> u64 {
    let t: u64;
    // SAFETY: ISB + reading CNTPCT_EL0 have no side effects.
    unsafe { asm!("isb", "mrs {}, cntpct_el0", out(reg) t, options(nomem, nostack, preserves_flags)) };
    t
}

/// Fires the hypervisor timer interrupt `ticks` counter ticks from now (replaces any earlier
/// deadline).
pub fn arm_in(ticks: u64) {
    arm_at(now().saturating_add(ticks));
}

/// Fires the hypervisor timer interrupt when the counter reaches `deadline`.
pub fn arm_at(deadline: u64) {
    // SAFETY: programming the EL2 physical timer only affects when INTID 26 is raised.
    unsafe {
        asm!(
            "msr cnthp_cval_el2, {cval}",
            "msr cnthp_ctl_el2, {ctl}",
            "isb",
            cval = in(reg) deadline,
            ctl = in(reg) CTL_ENABLE,
            options(nomem, nostack, preserves_flags),
        );
    }
}

/// Stops the hypervisor timer (no interrupt until the next [`arm_in`]).
pub fn disarm() {
    // SAFETY: disabling the EL2 physical timer only deasserts INTID 26.
    unsafe {
        asm!("msr cnthp_ctl_el2, {ctl}", "isb", ctl = in(reg) CTL_IMASK,
            options(nomem, nostack, preserves_flags));
    }
}

/// Converts microseconds to counter ticks.
pub fn us_to_ticks(us: u64) -> u64 {
    us.saturating_mul(freq()) / 1_000_000
}
