//! `println!` over UVMHYP_PRINT: text is collected in a stack buffer and sent one line per call.

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
