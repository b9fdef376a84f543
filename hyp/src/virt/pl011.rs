//! A PL011 UART per VM (ARM DDI 0183 "PrimeCell UART (PL011)", 3.2 register summary).
//!
//! Transmit: bytes written to UARTDR collect in the device's line buffer and come out as
//! `[vm<N>] text` lines; the host takes every byte at once, so UARTFR always says "transmit FIFO
//! empty", and each UARTDR write sets the transmit interrupt's raw status (the FIFO drained), as
//! QEMU's model does (Linux's `amba-pl011` sends its tty output by that interrupt).
//!
//! Receive: host console input for the VM (`virt::input`, focus and the VM's host-side queue in
//! `hyp::console_in`) fills the 32-entry receive FIFO (`hyp::pl011_rx`: entries, the RX and
//! RX-timeout conditions); a UARTDR read pops it and refills it from the VM's queue. UARTFR's
//! RXFE/RXFF tell empty and full.
//!
//! Interrupts: UARTRIS = TXIS | RXIS | RTIS, UARTIMSC masks, UARTICR clears raw bits; the line
//! to the VM's vGIC (SPI [`PL011_SPI`]) is high while UARTMIS = RIS & IMSC is not zero.
//!
//! # Locks
//! The device's `state`, then the VM's input queue (taken only inside `state`, or alone by
//! `virt::input` to queue bytes); `line` and `state` are never held together; the VM's `gic`
//! is taken after `state` is dropped.

use alloc::boxed::Box;
use alloc::vec::Vec;
use spin::Mutex;
use tock_registers::register_bitfields;
use tock_registers::LocalRegisterCopy;

use super::device::{wake_ids, Access, Ctx, Device, Reply, VmView};
use hyp::pl011_rx::RxFifo;
use hyp::platform::PL011_SPI;

register_bitfields![u32,
    /// UARTFR, the flag register (offset 0x018).
    UARTFR [
        /// Receive FIFO empty.
        RXFE OFFSET(4) NUMBITS(1) [],
        /// Receive FIFO full.
        RXFF OFFSET(6) NUMBITS(1) [],
        /// Transmit FIFO empty.
        TXFE OFFSET(7) NUMBITS(1) [],
    ],
    /// UARTIMSC/UARTRIS/UARTMIS/UARTICR: one bit per interrupt.
    UARTINT [
        /// Receive.
        RX OFFSET(4) NUMBITS(1) [],
        /// Transmit.
        TX OFFSET(5) NUMBITS(1) [],
        /// Receive timeout.
        RT OFFSET(6) NUMBITS(1) [],
    ]
];

/// Data register.
const UARTDR: u64 = 0x000;
/// Flag register.
const UARTFR_OFFSET: u64 = 0x018;
/// Interrupt FIFO level select.
const UARTIFLS: u64 = 0x034;
/// Interrupt mask set/clear, raw and masked status, clear.
const UARTIMSC: u64 = 0x038;
const UARTRIS: u64 = 0x03c;
const UARTMIS: u64 = 0x040;
const UARTICR: u64 = 0x044;
/// The interrupt bits this model implements.
const INT_BITS: u32 = UARTINT::TX::SET.value | UARTINT::RX::SET.value | UARTINT::RT::SET.value;
/// UARTIFLS's transmit level (bits 2:0): kept for reading back; transmit is immediate.
const IFLS_TX: u32 = 0b111;
/// Registers accepted and ignored (baud rate, line control, control, DMA).
const IGNORED: &[u64] = &[
    0x004, // UARTRSR/UARTECR
    0x024, // UARTIBRD
    0x028, // UARTFBRD
    0x02c, // UARTLCR_H
    0x030, // UARTCR
    0x048, // UARTDMACR
];
/// UARTPeriphID0..3, UARTPCellID0..3 (0xfe0..0xffc): a PL011 r1p5 (revision 3 in PeriphID2:
/// 32-entry FIFOs, as Linux's `get_fifosize_arm` reads it).
const ID_BASE: u64 = 0xfe0;
const ID_VALUES: [u64; 8] = [0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1];
/// A line longer than this is emitted in pieces.
const MAX_LINE: usize = 1024;

/// One VM's UART: its partial output line, receive FIFO and interrupt state.
#[derive(Default)]
pub struct Pl011 {
    line: Mutex<Vec<u8>>,
    state: Mutex<State>,
}

/// Registers and FIFO.
#[derive(Clone, Default)]
struct State {
    /// TXIS's raw status.
    tx: bool,
    /// UARTIMSC.
    mask: u32,
    /// UARTIFLS's transmit level (the receive level is the FIFO's).
    ifls_tx: u32,
    rx: RxFifo,
}

impl State {
    /// UARTRIS.
    fn raw(&self) -> u32 {
        let mut ris = LocalRegisterCopy::<u32, UARTINT::Register>::new(0);
        if self.tx {
            ris.modify(UARTINT::TX::SET);
        }
        if self.rx.rx_interrupt() {
            ris.modify(UARTINT::RX::SET);
        }
        if self.rx.timeout_interrupt() {
            ris.modify(UARTINT::RT::SET);
        }
        ris.get()
    }

    fn line(&self) -> bool {
        self.raw() & self.mask != 0
    }

    /// UARTFR as the guest reads it.
    fn flags(&self) -> u64 {
        let mut fr = LocalRegisterCopy::<u32, UARTFR::Register>::new(0);
        fr.modify(UARTFR::TXFE::SET);
        if self.rx.is_empty() {
            fr.modify(UARTFR::RXFE::SET);
        }
        if self.rx.is_full() {
            fr.modify(UARTFR::RXFF::SET);
        }
        u64::from(fr.get())
    }

    /// Move what fits from the VM's host-side input queue into the FIFO.
    ///
    /// # Locks
    /// Called with `state` held; takes the VM's input queue inside it.
    fn refill(&mut self, vm: &dyn VmView) {
        if self.rx.is_full() {
            return;
        }
        let mut q = vm.input().lock();
        while !self.rx.is_full() {
            match q.pop() {
                Some(b) => {
                    self.rx.push(b);
                }
                None => break,
            }
        }
    }

    /// A register read that changes nothing (UARTDR is [`Pl011::access`]'s: it pops).
    fn read(&self, offset: u64) -> Option<u64> {
        match offset {
            UARTFR_OFFSET => Some(self.flags()),
            UARTIFLS => Some(u64::from(self.ifls_tx | self.rx.ifls_bits())),
            UARTIMSC => Some(u64::from(self.mask)),
            UARTRIS => Some(u64::from(self.raw())),
            UARTMIS => Some(u64::from(self.raw() & self.mask)),
            o if IGNORED.contains(&o) => Some(0),
            o if (ID_BASE..ID_BASE + 32).contains(&o) && o % 4 == 0 => ID_VALUES.get(((o - ID_BASE) / 4) as usize).copied(),
            _ => None,
        }
    }
}

impl Pl011 {
    /// Change the state (`change` returns the access's value) and drive the line into the VM's
    /// vGIC (if it has one): the vCPU the SPI goes to is woken or kicked when it rises.
    ///
    /// # Locks
    /// Takes `state` (and the VM's input queue inside it, through `change`), then (after
    /// dropping it) the VM's `gic`, each alone.
    fn set_irq(&self, cx: &Ctx<'_>, change: impl FnOnce(&mut State) -> u64) -> Reply {
        let (value, line) = {
            let mut st = self.state.lock();
            let value = change(&mut st);
            (value, st.line())
        };
        let Some(gic) = cx.vm.gic() else { return Reply::Value(value) };
        let n = gic.lock().set_level(0, 32 + PL011_SPI, line);
        if n.0 == 0 {
            Reply::Value(value)
        } else {
            Reply::Wake(value, wake_ids(cx.vm.number(), n))
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
        let v = a.write.unwrap_or(0) as u32;
        match (a.write, a.offset) {
            (None, UARTDR) => self.set_irq(cx, |st| {
                let e = st.rx.pop();
                st.refill(cx.vm);
                u64::from(e)
            }),
            (None, o) => self.state.lock().read(o).map_or(Reply::Unknown, Reply::Value),
            (Some(_), UARTDR) => {
                self.put_byte(cx, v as u8);
                self.set_irq(cx, |st| {
                    st.tx = true;
                    0
                })
            }
            (Some(_), UARTIFLS) => self.set_irq(cx, |st| {
                st.ifls_tx = v & IFLS_TX;
                st.rx.set_ifls(v);
                0
            }),
            (Some(_), UARTIMSC) => self.set_irq(cx, |st| {
                st.mask = v & INT_BITS;
                0
            }),
            (Some(_), UARTICR) => self.set_irq(cx, |st| {
                let icr = LocalRegisterCopy::<u32, UARTINT::Register>::new(v);
                st.tx &= !icr.is_set(UARTINT::TX);
                st.rx.clear(icr.is_set(UARTINT::RX), icr.is_set(UARTINT::RT));
                0
            }),
            (Some(_), o) if IGNORED.contains(&o) => Reply::Value(0),
            (Some(_), _) => Reply::Unknown,
        }
    }

    /// # Locks
    /// As [`Pl011::set_irq`].
    fn receive(&self, cx: &Ctx<'_>) -> Reply {
        self.set_irq(cx, |st| {
            st.refill(cx.vm);
            0
        })
    }

    /// The copy has the partial line, registers and receive FIFO; the host-side input queue is
    /// the parent VM's (input typed for it is not the clone's).
    ///
    /// # Locks
    /// Takes the line lock, then `state`, each alone, for the copies.
    fn fork(&self) -> Box<dyn Device> {
        let line = self.line.lock().clone();
        Box::new(Pl011 { line: Mutex::new(line), state: Mutex::new(self.state.lock().clone()) })
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
