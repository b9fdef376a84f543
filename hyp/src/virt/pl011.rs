//! A PL011 UART per VM, transmit side (ARM DDI 0183 "PrimeCell UART (PL011)", 3.2 register
//! summary). Bytes written to UARTDR collect in the device's line buffer and come out as
//! `[vm<N>] text` lines; UARTFR always says "transmit FIFO empty, receive FIFO empty" (the
//! host takes every byte at once; there is no input yet).
//!
//! Interrupts, as QEMU's model raises them (Linux's `amba-pl011` sends its tty output by them):
//! each UARTDR write sets the transmit interrupt's raw status (the FIFO drained), UARTICR clears
//! raw bits, UARTIMSC masks; the line to the VM's vGIC (SPI [`PL011_SPI`]) is high while
//! UARTMIS = RIS & IMSC is not zero.

use alloc::boxed::Box;
use alloc::vec::Vec;
use spin::Mutex;
use tock_registers::register_bitfields;
use tock_registers::LocalRegisterCopy;

use super::device::{wake_ids, Access, Ctx, Device, Reply};
use hyp::platform::PL011_SPI;

register_bitfields![u32,
    /// UARTFR, the flag register (offset 0x018).
    UARTFR [
        /// Receive FIFO empty.
        RXFE OFFSET(4) NUMBITS(1) [],
        /// Transmit FIFO empty.
        TXFE OFFSET(7) NUMBITS(1) [],
    ],
    /// UARTIMSC/UARTRIS/UARTMIS/UARTICR: one bit per interrupt.
    UARTINT [
        /// Transmit.
        TX OFFSET(5) NUMBITS(1) [],
    ]
];

/// Data register.
const UARTDR: u64 = 0x000;
/// Flag register.
const UARTFR_OFFSET: u64 = 0x018;
/// Interrupt mask set/clear, raw and masked status, clear.
const UARTIMSC: u64 = 0x038;
const UARTRIS: u64 = 0x03c;
const UARTMIS: u64 = 0x040;
const UARTICR: u64 = 0x044;
/// The interrupt bits this model implements.
const INT_BITS: u32 = UARTINT::TX::SET.value;
/// Registers accepted and ignored (baud rate, line control, control, DMA).
const IGNORED: &[u64] = &[
    0x004, // UARTRSR/UARTECR
    0x024, // UARTIBRD
    0x028, // UARTFBRD
    0x02c, // UARTLCR_H
    0x030, // UARTCR
    0x034, // UARTIFLS
    0x048, // UARTDMACR
];
/// UARTPeriphID0..3, UARTPCellID0..3 (0xfe0..0xffc): a PL011 r1p5, as QEMU's.
const ID_BASE: u64 = 0xfe0;
const ID_VALUES: [u64; 8] = [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];
/// A line longer than this is emitted in pieces.
const MAX_LINE: usize = 1024;

/// One VM's UART: its partial output line and interrupt state.
#[derive(Default)]
pub struct Pl011 {
    line: Mutex<Vec<u8>>,
    irq: Mutex<Irq>,
}

/// Raw interrupt status and mask (UARTINT bits).
#[derive(Clone, Copy, Default)]
struct Irq {
    raw: u32,
    mask: u32,
}

impl Irq {
    fn line(self) -> bool {
        self.raw & self.mask != 0
    }
}

impl Pl011 {
    /// UARTFR as the guest reads it.
    fn flags() -> u64 {
        let mut fr = LocalRegisterCopy::<u32, UARTFR::Register>::new(0);
        fr.modify(UARTFR::TXFE::SET + UARTFR::RXFE::SET);
        u64::from(fr.get())
    }

    fn read(&self, offset: u64) -> Option<u64> {
        let irq = *self.irq.lock();
        match offset {
            UARTFR_OFFSET => Some(Self::flags()),
            UARTIMSC => Some(u64::from(irq.mask)),
            UARTRIS => Some(u64::from(irq.raw)),
            UARTMIS => Some(u64::from(irq.raw & irq.mask)),
            UARTDR => Some(0),
            o if IGNORED.contains(&o) => Some(0),
            o if (ID_BASE..ID_BASE + 32).contains(&o) && o % 4 == 0 => ID_VALUES.get(((o - ID_BASE) / 4) as usize).copied(),
            _ => None,
        }
    }

    /// Change the interrupt state and drive the line into the VM's vGIC (if it has one): the
    /// vCPU the SPI goes to is woken or kicked when it rises.
    ///
    /// # Locks
    /// Takes the interrupt state, then (after dropping it) the VM's `gic`, each alone.
    fn set_irq(&self, cx: &Ctx<'_>, change: impl FnOnce(&mut Irq)) -> Reply {
        let line = {
            let mut irq = self.irq.lock();
            change(&mut irq);
            irq.line()
        };
        let Some(gic) = cx.vm.gic() else { return Reply::Value(0) };
        let n = gic.lock().set_level(0, 32 + PL011_SPI, line);
        if n.0 == 0 {
            Reply::Value(0)
        } else {
            Reply::Wake(0, wake_ids(cx.vm.number(), n))
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
        let change: fn(&mut Irq, u32) = match (a.write, a.offset) {
            (None, o) => return self.read(o).map_or(Reply::Unknown, Reply::Value),
            (Some(v), UARTDR) => {
                self.put_byte(cx, v as u8);
                |irq, _| irq.raw |= INT_BITS
            }
            (Some(_), UARTIMSC) => |irq, v| irq.mask = v & INT_BITS,
            (Some(_), UARTICR) => |irq, v| irq.raw &= !v,
            (Some(_), o) if IGNORED.contains(&o) => return Reply::Value(0),
            (Some(_), _) => return Reply::Unknown,
        };
        self.set_irq(cx, |irq| change(irq, a.write.unwrap_or(0) as u32))
    }

    /// # Locks
    /// Takes the line lock alone, for the copy.
    fn fork(&self) -> Box<dyn Device> {
        Box::new(Pl011 { line: Mutex::new(self.line.lock().clone()), irq: Mutex::new(*self.irq.lock()) })
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
