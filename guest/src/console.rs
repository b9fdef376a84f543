//! `println!` over UVMHYP_PRINT: text is collected in a stack buffer and sent one line per call;
//! and input from the PL011 ([`read_byte`]).

use core::fmt;

const LINE: usize = 200;

/// A `fmt::Write` sink that sends a PRINT per line (or per full buffer).
pub struct LineWriter {
    buf: [u8; LINE],
    len: usize,
}

impl LineWriter {
    pub const fn new() -> Self {
        LineWriter { buf: [0; LINE], len: 0 }
    }

    /// Send what is buffered as one line (nothing if empty).
    pub fn flush(&mut self) {
        if self.len > 0 {
            crate::hvc::print(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl Default for LineWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Write for LineWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if b == b'\n' {
                // An empty line is still a line.
                if self.len == 0 {
                    crate::hvc::print(b"");
                }
                self.flush();
                continue;
            }
            if self.len == LINE {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

/// Print one formatted line through the hypervisor.
pub fn print_line(args: fmt::Arguments) {
    let mut w = LineWriter::new();
    let _ = fmt::write(&mut w, args);
    w.flush();
}

/// `println!` for guests: one PRINT hypercall per line.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::console::print_line(format_args!($($arg)*))
    };
}

const UARTDR: u64 = crate::layout::PL011_BASE;
const UARTFR: u64 = crate::layout::PL011_BASE + 0x018;
/// UARTFR.RXFE.
const RXFE: u32 = 1 << 4;
/// UARTDR's error bits: overrun, break, parity, framing.
pub const DR_ERRORS: u32 = 0xf00;

fn read_reg(addr: u64) -> u32 {
    // SAFETY: `addr` is a register of the hypervisor-emulated PL011, mapped as device memory
    // with the MMU on (`mmu.rs`) and flat with it off (no Rust object lives there); a UARTDR read
    // pops the receive FIFO, which only this guest reads.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

/// The next UARTDR entry (a byte and its error bits, [`DR_ERRORS`]) from the PL011, yielding the
/// CPU while there is none.
pub fn read_byte() -> u32 {
    while read_reg(UARTFR) & RXFE != 0 {
        crate::hvc::yield_now();
    }
    read_reg(UARTDR)
}
