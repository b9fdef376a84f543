//! The generic timer's virtual counter, as guests read it (no trap: EL1 reads CNTVCT_EL0 directly).

use core::arch::asm;

/// CNTVCT_EL0, read in program order (ISB first).
pub fn now() -> u64 {
    let t: u64;
    // SAFETY: reading the virtual counter has no side effect; the ISB keeps it in program order.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) t, options(nomem, nostack)) };
    t
}

/// CNTFRQ_EL0: counter ticks per second.
pub fn frequency() -> u64 {
    let f: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effect.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) f, options(nomem, nostack)) };
    f.max(1)
}
