//! A PL011 UART per VM, transmit side only (ARM DDI 0183 "PrimeCell UART (PL011)", 3.2 register
//! summary). Bytes written to UARTDR collect in the device's line buffer and come out as
//! `[vm<N>] text` lines; UARTFR always says "transmit FIFO empty, receive FIFO empty".

use alloc::boxed::Box;
use alloc::vec::Vec;
use spin::Mutex;
use tock_registers::register_bitfields;
use tock_registers::LocalRegisterCopy;

use super::device::{Access, Ctx, Device, Reply};

register_bitfields![u32,
    /// UARTFR, the flag register (offset 0x018).
    UARTFR [
        /// Receive FIFO empty.
        RXFE OFFSET(4) NUMBITS(1) [],
        /// Transmit FIFO empty.
        TXFE OFFSET(7) NUMBITS(1) [],
    ]
];

/// Data register.
const UARTDR: u64 = 0x000;
/// Flag register.
const UARTFR_OFFSET: u64 = 0x018;
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
/// UARTPeriphID0..3, UARTPCellID0..3 (0xfe0..0xffc): a PL011 r1p5, as QEMU's.
const ID_BASE: u64 = 0xfe0;
const ID_VALUES: [u64; 8] = [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];
/// A line longer than this is emitted in pieces.
const MAX_LINE: usize = 1024;

/// One VM's UART: its partial output line.
#[derive(Default)]
pub struct Pl011 {
    line: Mutex<Vec<u8>>,
}

impl Pl011 {
    /// UARTFR as the guest reads it.
    fn flags() -> u64 {
        let mut fr = LocalRegisterCopy::<u32, UARTFR::Register>::new(0);
        fr.modify(UARTFR::TXFE::SET + UARTFR::RXFE::SET);
        u64::from(fr.get())
    }

    fn read(offset: u64) -> Option<u64> {
        match offset {
            UARTFR_OFFSET => Some(Self::flags()),
            UARTDR => Some(0),
            o if IGNORED.contains(&o) => Some(0),
            o if (ID_BASE..ID_BASE + 32).contains(&o) && o % 4 == 0 => ID_VALUES.get(((o - ID_BASE) / 4) as usize).copied(),
            _ => None,
        }
    }

    /// Append a byte to the line; a newline (or a full buffer) emits it.
    ///
    /// # Locks
    /// Takes the line lock only to move the line out: it is printed after the lock is dropped,
    /// so other vCPUs of the VM never wait for a semihosting call.
    fn put_byte(&self, cx: &Ctx<'_>, b: u8) {
        let full = {
            let mut line = self.line.lock();
            let full = (b == b'\n' || line.len() >= MAX_LINE).then(|| core::mem::take(&mut *line));
            if b != b'\n' {
                line.push(b);
            }
            full
        };
        if let Some(line) = full {
            cx.vm.print_line(&line);
        }
    }
}

impl Device for Pl011 {
    fn name(&self) -> &'static str {
        "pl011"
    }

    fn access(&self, cx: &Ctx<'_>, a: Access) -> Reply {
        match a.write {
            None => Self::read(a.offset).map_or(Reply::Unknown, Reply::Value),
            Some(v) if a.offset == UARTDR => {
                self.put_byte(cx, v as u8);
                Reply::Value(0)
            }
            Some(_) if IGNORED.contains(&a.offset) => Reply::Value(0),
            Some(_) => Reply::Unknown,
        }
    }

    /// # Locks
    /// Takes the line lock alone, for the copy.
    fn fork(&self) -> Box<dyn Device> {
        Box::new(Pl011 { line: Mutex::new(self.line.lock().clone()) })
    }

    /// # Locks
    /// Takes the line lock alone, to move the partial line out.
    fn stop(&self, cx: &Ctx<'_>) {
        let line = core::mem::take(&mut *self.line.lock());
        if !line.is_empty() {
            cx.vm.print_line(&line);
        }
    }
}
