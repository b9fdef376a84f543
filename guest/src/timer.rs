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

/// The EL1 physical timer (CNTP_*_EL0; the hypervisor emulates it: every access traps).
pub mod phys {
    use core::arch::asm;

    /// CNTP_CTL_EL0.
    pub fn ctl() -> u64 {
        let v: u64;
        // SAFETY: reading the physical timer's control has no side effect.
        unsafe { asm!("mrs {}, cntp_ctl_el0", out(reg) v, options(nomem, nostack)) };
        v
    }

    /// CNTP_TVAL_EL0 (a signed 32-bit count down to the deadline).
    pub fn tval() -> i32 {
        let v: u64;
        // SAFETY: as for `ctl`.
        unsafe { asm!("mrs {}, cntp_tval_el0", out(reg) v, options(nomem, nostack)) };
        v as u32 as i32
    }

    /// Arm it `ticks` from now with control `ctl` (ENABLE = 1, IMASK = 2).
    pub fn arm(ticks: u32, ctl: u64) {
        // SAFETY: the physical timer only raises its own interrupt, which this guest masks.
        unsafe { asm!("msr cntp_tval_el0, {}", "msr cntp_ctl_el0, {}", "isb", in(reg) u64::from(ticks), in(reg) ctl, options(nomem, nostack)) };
    }
}

/// WFI: the hypervisor traps it and lets the physical CPU idle (for at most its WFI sleep, or
/// until the virtual timer's deadline when the guest armed it).
pub fn wfi() {
    // SAFETY: WFI only waits; it touches no memory.
    unsafe { asm!("wfi", options(nomem, nostack)) };
}
