//! A PL011 UART per VM, transmit side only (ARM DDI 0183 "PrimeCell UART (PL011)", 3.2 register
//! summary). Bytes written to UARTDR collect in the VM's console line buffer and come out as
//! `[vm<N>] text` lines; UARTFR always says "transmit FIFO empty, receive FIFO empty".

use super::mmio::MmioDevice;
use super::vm::Vm;

/// Data register.
const UARTDR: u64 = 0x000;
/// Flag register.
const UARTFR: u64 = 0x018;
/// UARTFR.RXFE: receive FIFO empty.
const FR_RXFE: u64 = 1 << 4;
/// UARTFR.TXFE: transmit FIFO empty.
const FR_TXFE: u64 = 1 << 7;
/// Registers accepted and ignored (baud rate, line control, control, interrupt mask/clear, …).
const IGNORED: &[u64] = &[
    0x004, // UARTRSR/UARTECR
    0x024, // UARTIBRD
    0x028, // UARTFBRD
    0x02c, // UARTLCR_H
    0x030, // UARTCR
    0x034, // UARTIFLS
    0x038, // UARTIMSC
    0x03c, // UARTRIS
    0x040, // UARTMIS
    0x044, // UARTICR
    0x048, // UARTDMACR
];
/// UARTPeriphID0..3 and UARTPCellID0..3 at 0xFE0..0xFFC (PL011 r1p5).
const ID_BASE: u64 = 0xfe0;
const ID_VALUES: [u64; 8] = [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];
/// A line longer than this is emitted in pieces.
const MAX_LINE: usize = 1024;

pub struct Pl011;

impl MmioDevice for Pl011 {
    fn name(&self) -> &'static str {
        "pl011"
    }

    fn read(&self, _vm: &Vm, offset: u64, _size: u8) -> Option<u64> {
        match offset {
            UARTFR => Some(FR_TXFE | FR_RXFE),
            UARTDR => Some(0),
            o if IGNORED.contains(&o) => Some(0),
            o if (ID_BASE..ID_BASE + 32).contains(&o) && o % 4 == 0 => {
                ID_VALUES.get(((o - ID_BASE) / 4) as usize).copied()
            }
            _ => None,
        }
    }

    fn write(&self, vm: &Vm, offset: u64, _size: u8, value: u64) -> bool {
        match offset {
            UARTDR => {
                put_byte(vm, value as u8);
                true
            }
            o => IGNORED.contains(&o),
        }
    }
}

/// Append a byte to the VM's console line; a newline (or a full buffer) emits it.
///
/// # Locks
/// Takes the VM's `console` only to move the line out: it is printed after the lock is dropped,
/// so other vCPUs of the VM (and `stop_vm`) never wait for a semihosting call.
fn put_byte(vm: &Vm, b: u8) {
    let full = {
        let mut line = vm.console.lock();
        let full = (b == b'\n' || line.len() >= MAX_LINE).then(|| core::mem::take(&mut *line));
        if b != b'\n' {
            line.push(b);
        }
        full
    };
    if let Some(line) = full {
        vm.print_line(&line);
    }
}
