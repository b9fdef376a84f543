//! `hostile`: a guest that tries to mislead or swamp the hypervisor (runs with its MMU off).
//!
//! - Forges console lines: a PRINT and PL011 output whose bytes contain a newline followed by a
//!   fake `uvmhyp: vm9 (fake) exited 0`. A PRINT is one line, so the hypervisor shows its newline
//!   escaped (`\x0a`); the PL011 is a byte stream whose newline ends a line, and the next line is
//!   still prefixed `[vm1] `. Either way the fake text never starts a console line.
//! - Calls PSCI CPU_ON with entry points that are misaligned or outside its RAM: INVALID_ADDRESS
//!   (-9), and the vCPU must stay off (CPU_ON with a good entry afterwards still succeeds).
//! - Floods the console with more lines than the hypervisor's budget: the excess is dropped and
//!   counted, never blocking the hypervisor.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, Ordering};
use guest::hvc::{self, INVALID_ADDRESS};
use guest::layout::RAM_BASE;
use guest::{check, println};

guest::entry!(main);

/// The forged text: one newline away from a hypervisor line.
const FORGED: &[u8] = b"x\nuvmhyp: vm9 (fake) exited 0";
/// The PL011 data register (UARTDR), emulated per VM.
const UARTDR: u64 = guest::layout::PL011_BASE;
/// More lines than the hypervisor's console budget lets through at once.
const FLOOD_LINES: u64 = 10_000;

static SECOND_VCPU_RAN: AtomicBool = AtomicBool::new(false);

fn main(cpu: usize, _arg: u64) -> u32 {
    if cpu != 0 {
        SECOND_VCPU_RAN.store(true, Ordering::Release);
        return 0;
    }
    hvc::print(FORGED);
    for &b in FORGED.iter().chain(b"\n") {
        // SAFETY: UARTDR is the hypervisor-emulated PL011 data register; with the MMU off this is
        // a Device access, and the write has no effect on our memory.
        unsafe { core::ptr::write_volatile(UARTDR as *mut u32, b as u32) };
    }

    for (entry, what) in [(RAM_BASE + 2, "misaligned"), (0x2000_0000, "outside RAM"), (0x2, "at 0x2")] {
        let r = hvc::psci_cpu_on(1, entry, 0);
        check!(r == INVALID_ADDRESS, 2, "CPU_ON with an entry {} returned {}, expected {}", what, r, INVALID_ADDRESS);
    }
    check!(!SECOND_VCPU_RAN.load(Ordering::Acquire), 3, "vCPU 1 ran after refused CPU_ONs");
    let r = hvc::psci_cpu_on(1, guest::rt::entry_point(), 1);
    check!(r == 0, 4, "CPU_ON with a good entry returned {}", r);
    let mut spins = 0u64;
    while !SECOND_VCPU_RAN.load(Ordering::Acquire) {
        spins += 1;
        check!(spins < 1 << 26, 5, "vCPU 1 did not run after CPU_ON");
        if spins.is_multiple_of(1024) {
            hvc::yield_now();
        }
    }

    println!("hostile: forged lines sent, bad CPU_ON entries refused; flooding");
    // Nothing printed after the flood can be relied on to get through: the exit status reports.
    for i in 0..FLOOD_LINES {
        println!("hostile: flood {}", i);
    }
    0
}
