//! The physical PL011 of QEMU `virt` (`-serial`), read for host console input. Output never goes
//! here (the hypervisor console is semihosting); the hypervisor only takes received bytes.
//!
//! Polled, not interrupt-driven (`virt::input` polls it from each CPU's run loop): QEMU's
//! character backend stops reading stdin while the UART's FIFO is full, so a poll that comes late
//! loses nothing, and the run loop comes round at least every time slice (idle CPUs every idle
//! poll). An interrupt would need an SPI routed on the physical GIC and an EL2 handler taking it
//! while guests run, for typing speed that does not need it.

use core::ptr::{read_volatile, write_volatile};

use hyp::platform::host::PL011_BASE;

/// UARTDR, UARTFR, UARTLCR_H, UARTCR, UARTIMSC offsets (ARM DDI 0183, 3.2).
const UARTDR: u64 = 0x000;
const UARTFR: u64 = 0x018;
const UARTLCR_H: u64 = 0x02c;
const UARTCR: u64 = 0x030;
const UARTIMSC: u64 = 0x038;
/// UARTFR.RXFE: receive FIFO empty.
const FR_RXFE: u32 = 1 << 4;
/// UARTLCR_H: 8-bit words (WLEN 0b11), FIFOs enabled (FEN).
const LCR_H_8N1_FIFO: u32 = 0b11 << 5 | 1 << 4;
/// UARTCR: UART, receive and transmit enabled.
const CR_ENABLE_RX_TX: u32 = 1 << 0 | 1 << 9 | 1 << 8;

fn reg(offset: u64) -> *mut u32 {
    (PL011_BASE + offset) as *mut u32
}

/// Enable the receiver with its FIFO and mask its interrupts (CPU 0, once, after the MMU is on).
pub fn init() {
    // SAFETY: PL011_BASE is QEMU virt's UART, identity-mapped Device-nGnRE by mmu.rs (inside
    // DEVICE_WINDOW); these are its 32-bit control registers, which nothing else uses.
    unsafe {
        write_volatile(reg(UARTIMSC), 0);
        write_volatile(reg(UARTLCR_H), LCR_H_8N1_FIFO);
        write_volatile(reg(UARTCR), CR_ENABLE_RX_TX);
    }
}

/// The next received byte, if there is one. Callers serialise (one CPU at a time reads the
/// UART; `virt::input` holds its lock).
pub fn read_byte() -> Option<u8> {
    // SAFETY: as in `init`; UARTFR is a read-only status register.
    let fr = unsafe { read_volatile(reg(UARTFR)) };
    if fr & FR_RXFE != 0 {
        return None;
    }
    // SAFETY: as in `init`; reading UARTDR pops one entry of the receive FIFO, which only this
    // function (under the caller's lock) does.
    let dr = unsafe { read_volatile(reg(UARTDR)) };
    Some(dr as u8)
}
