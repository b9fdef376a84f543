//! The receive side of the emulated PL011 (ARM DDI 0183, 2.4.3 "UART receive FIFO" and 3.4
//! "Interrupts"): a 32-entry FIFO of 12-bit entries (data in bits 7:0, the four error bits
//! 11:8 — framing, parity, break, overrun — always zero: host input has no line errors), and the
//! two receive interrupts' conditions, host-tested here; `virt::pl011` owns the register file.
//!
//! - **RXIS** (receive): the FIFO holds at least the trigger level that UARTIFLS.RXIFLSEL selects
//!   (1/8, 1/4, 1/2, 3/4 or 7/8 of 32; 1/2 at reset). It falls when reading takes the FIFO below
//!   the level.
//! - **RTIS** (receive timeout): the FIFO is not empty and no more data came for 32 bit periods.
//!   Host input arrives in batches (a poll of the host UART hands over all it has), so the model
//!   takes the timeout as elapsed as soon as a batch is in: RTIS is up while the FIFO is not
//!   empty, and falls when reading empties it.
//!
//! Writing UARTICR clears either raw bit until the next byte arrives (as on the real part, where
//! a new byte restarts the level and timeout logic). Linux's `amba-pl011` enables RXIM | RTIM,
//! reads UARTDR until UARTFR.RXFE, and never needs ICR for them; at start-up it clears both
//! through ICR and drains the FIFO.

/// Entries of the FIFO (PL011 r1p5).
pub const DEPTH: usize = 32;

/// The receive FIFO and its interrupt conditions.
#[derive(Clone, Debug)]
pub struct RxFifo {
    entries: [u16; DEPTH],
    /// Index of the oldest entry.
    head: usize,
    len: usize,
    /// UARTIFLS.RXIFLSEL (bits 5:3), 0..=4.
    rx_level_select: u8,
    /// RXIS / RTIS cleared through UARTICR since the last byte arrived.
    rx_cleared: bool,
    timeout_cleared: bool,
}

impl Default for RxFifo {
    fn default() -> Self {
        RxFifo { entries: [0; DEPTH], head: 0, len: 0, rx_level_select: 0b010, rx_cleared: false, timeout_cleared: false }
    }
}

impl RxFifo {
    /// Entries held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == DEPTH
    }

    /// Room for this many more bytes.
    pub fn room(&self) -> usize {
        DEPTH - self.len
    }

    /// Receive `byte`; false (and nothing changes) when the FIFO is full: callers offer only
    /// what [`RxFifo::room`] allows, the rest waits host-side, so no overrun is ever signalled.
    pub fn push(&mut self, byte: u8) -> bool {
        if self.is_full() {
            return false;
        }
        self.entries[(self.head + self.len) % DEPTH] = u16::from(byte);
        self.len += 1;
        self.rx_cleared = false;
        self.timeout_cleared = false;
        true
    }

    /// A UARTDR read: the oldest entry (data and error bits), or 0 when empty (the real part
    /// returns whatever the holding register had; 0 is as good and deterministic).
    pub fn pop(&mut self) -> u16 {
        if self.is_empty() {
            return 0;
        }
        let e = self.entries[self.head];
        self.head = (self.head + 1) % DEPTH;
        self.len -= 1;
        e
    }

    /// UARTIFLS written: keep RXIFLSEL (bits 5:3; the reserved values 5..7 act as 7/8).
    pub fn set_ifls(&mut self, ifls: u32) {
        self.rx_level_select = ((ifls >> 3) & 0b111).min(4) as u8;
    }

    /// RXIFLSEL in UARTIFLS's position (TXIFLSEL is the caller's: transmit is immediate).
    pub fn ifls_bits(&self) -> u32 {
        u32::from(self.rx_level_select) << 3
    }

    /// Bytes that raise RXIS: 4, 8, 16, 24 or 28.
    pub fn trigger(&self) -> usize {
        [DEPTH / 8, DEPTH / 4, DEPTH / 2, DEPTH * 3 / 4, DEPTH * 7 / 8][usize::from(self.rx_level_select)]
    }

    /// RXIS's raw state.
    pub fn rx_interrupt(&self) -> bool {
        self.len >= self.trigger() && !self.rx_cleared
    }

    /// RTIS's raw state.
    pub fn timeout_interrupt(&self) -> bool {
        self.len != 0 && !self.timeout_cleared
    }

    /// UARTICR: clear RXIS (`rx`) and/or RTIS (`timeout`) until the next byte.
    pub fn clear(&mut self, rx: bool, timeout: bool) {
        self.rx_cleared |= rx;
        self.timeout_cleared |= timeout;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_come_out_in_order_and_a_full_fifo_refuses() {
        let mut f = RxFifo::default();
        assert!(f.is_empty() && f.pop() == 0);
        for b in 0..DEPTH as u8 {
            assert!(f.push(b'a' + b));
        }
        assert!(f.is_full() && !f.push(b'!') && f.room() == 0);
        assert_eq!(f.pop(), u16::from(b'a'));
        assert!(f.push(b'!'));
        let rest: alloc::vec::Vec<u16> = (0..DEPTH).map(|_| f.pop()).collect();
        assert_eq!(rest[0], u16::from(b'b'));
        assert_eq!(rest[DEPTH - 1], u16::from(b'!'));
        // Error bits 11:8 are zero in every entry.
        assert!(rest.iter().all(|e| e >> 8 == 0));
        assert!(f.is_empty());
    }

    #[test]
    fn rxis_follows_the_trigger_level_rtis_any_data() {
        let mut f = RxFifo::default();
        assert_eq!(f.trigger(), 16);
        f.push(b'x');
        assert!(f.timeout_interrupt() && !f.rx_interrupt());
        for _ in 1..16 {
            f.push(b'x');
        }
        assert!(f.rx_interrupt());
        f.pop();
        assert!(!f.rx_interrupt() && f.timeout_interrupt());
        while !f.is_empty() {
            f.pop();
        }
        assert!(!f.timeout_interrupt());
        // Linux's 4/8 is the reset value; 1/8 makes 4 bytes enough; reserved values act as 7/8.
        f.set_ifls(0b000_000);
        assert_eq!((f.trigger(), f.ifls_bits()), (4, 0));
        f.set_ifls(0b111_000);
        assert_eq!(f.trigger(), 28);
    }

    #[test]
    fn icr_clears_until_the_next_byte() {
        let mut f = RxFifo::default();
        f.set_ifls(0);
        for _ in 0..4 {
            f.push(b'y');
        }
        assert!(f.rx_interrupt() && f.timeout_interrupt());
        f.clear(true, true);
        assert!(!f.rx_interrupt() && !f.timeout_interrupt());
        f.push(b'z');
        assert!(f.rx_interrupt() && f.timeout_interrupt());
        f.clear(false, true);
        assert!(f.rx_interrupt() && !f.timeout_interrupt());
    }
}
