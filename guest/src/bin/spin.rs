//! `spin`: a guest that never gives the CPU back. It spins on the virtual counter for
//! `SPIN_SECONDS` without a single trap (no hypercall, no fault: its loop is in already mapped
//! image pages and touches no memory), then exits 0. More of these than physical CPUs starve every
//! other VM unless the hypervisor preempts them (scenario `preempt`, with `polite`).
#![no_std]
#![no_main]

guest::entry!(main);

/// Long enough that a VM waiting for a spinner to finish is easy to tell apart from one that ran
/// beside it, even on a slow emulator.
const SPIN_SECONDS: u64 = 15;

fn main(_cpu: usize, _arg: u64) -> u32 {
    let end = guest::timer::now() + SPIN_SECONDS * guest::timer::frequency();
    guest::println!("spin: spinning {} s without a trap", SPIN_SECONDS);
    while guest::timer::now() < end {
        core::hint::spin_loop();
    }
    guest::println!("spin: done");
    0
}
