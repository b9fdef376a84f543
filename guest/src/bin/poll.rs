//! `poll`: a guest polling a device register, as a driver waiting for its UART does: `POLLS` reads
//! of the PL011's UARTFR (MMU off: a Device access, each one trapped and emulated), then a few
//! writes of UARTDR. The hypervisor must count these in its trace (one MMIO aggregate record per
//! register and interval), not write a record per access (scenario `poll`).
#![no_std]
#![no_main]

use guest::{check, println};

guest::entry!(main);

/// The PL011 of QEMU virt, emulated per VM.
const UART: u64 = 0x0900_0000;
/// UARTFR, the flag register.
const UARTFR: u64 = UART + 0x18;
/// UARTFR.TXFE: transmit FIFO empty (the emulated UART's FIFO always is).
const FR_TXFE: u32 = 1 << 7;
/// Reads of UARTFR.
const POLLS: u32 = 100_000;

fn main(_cpu: usize, _arg: u64) -> u32 {
    let mut empty = 0;
    for _ in 0..POLLS {
        // SAFETY: UARTFR is the hypervisor-emulated PL011 flag register; with the MMU off this is
        // a Device access, and reading it has no effect on our memory.
        let fr = unsafe { core::ptr::read_volatile(UARTFR as *const u32) };
        if fr & FR_TXFE != 0 {
            empty += 1;
        }
    }
    check!(empty == POLLS, 2, "UARTFR said TXFE {} times of {}", empty, POLLS);
    for &b in b"poll: done\n" {
        // SAFETY: UARTDR (offset 0) is the emulated PL011 data register, as above.
        unsafe { core::ptr::write_volatile(UART as *mut u32, u32::from(b)) };
    }
    println!("poll: {} reads of UARTFR", POLLS);
    0
}
