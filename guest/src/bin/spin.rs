//! `spin`: a guest that never gives the CPU back. It spins on the virtual counter for
//! `SPIN_SECONDS` without a single trap (no hypercall, no fault: its loop is in already mapped
//! image pages and touches no memory), then exits 0. More of these than physical CPUs starve every
//! other VM unless the hypervisor preempts them (scenario `preempt`, with `polite`).
#![no_std]
#![no_main]

use core::arch::asm;

guest::entry!(main);

/// Long enough that a VM waiting for a spinner to finish is easy to tell apart from one that ran
/// beside it, even on a slow emulator.
const SPIN_SECONDS: u64 = 15;

fn counter() -> (u64, u64) {
    let (now, freq): (u64, u64);
    // SAFETY: reading the virtual counter and its frequency has no side effect.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", "mrs {}, cntfrq_el0", out(reg) now, out(reg) freq, options(nomem, nostack)) };
    (now, freq)
}

fn main(_cpu: usize, _arg: u64) -> u32 {
    let (start, freq) = counter();
    guest::println!("spin: spinning {} s without a trap", SPIN_SECONDS);
    let end = start + SPIN_SECONDS * freq;
    while counter().0 < end {
        core::hint::spin_loop();
    }
    guest::println!("spin: done");
    0
}
