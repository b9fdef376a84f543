//! The hypervisor console: whole lines to the semihosting console, never interleaved across CPUs.
//!
//! - [`write_line`] writes one raw line (through `virt::out`'s `outln!`, for the exact formats
//!   tools parse: `[vm1] hello`, the counters table, `uvmhyp: vm1 (name) exited 0`).
//! - The `log` crate goes through [`Logger`]: `info!("x")` prints `uvmhyp: x`, `warn!` prints
//!   `uvmhyp: warning: x`, `error!` prints `uvmhyp: error: x`, `debug!`/`trace!` print
//!   `uvmhyp: debug(target): x` (compiled in, filtered at [`LevelFilter::Info`] by default).
//!
//! # Locks
//! One spin lock, [`CONSOLE`], held for the whole of one line (one or more SYS_WRITE0 calls).
//! Nothing else is ever taken while it is held. The panic handler takes it with a bounded wait.

use core::fmt::{self, Write};

use log::{Level, LevelFilter, Metadata, Record};
use spin::Mutex;

use crate::arch::semihosting;

/// Bytes buffered before a SYS_WRITE0 (a line longer than this costs several calls, still atomic).
const LINE_BUF: usize = 1024;

/// Serialises lines from all CPUs.
static CONSOLE: Mutex<()> = Mutex::new(());

/// Accumulates text and hands it to SYS_WRITE0 in NUL-terminated chunks.
struct LineWriter {
    buf: [u8; LINE_BUF],
    len: usize,
}

impl LineWriter {
    const fn new() -> Self {
        LineWriter { buf: [0; LINE_BUF], len: 0 }
    }
    fn flush(&mut self) {
        if self.len > 0 {
            self.buf[self.len] = 0;
            semihosting::write0(&self.buf[..=self.len]);
            self.len = 0;
        }
    }
}

impl Write for LineWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == LINE_BUF - 1 {
                self.flush();
            }
            // A NUL would end SYS_WRITE0 early: show it as U+FFFD's ASCII stand-in.
            self.buf[self.len] = if b == 0 { b'?' } else { b };
            self.len += 1;
        }
        Ok(())
    }
}

/// Writes `args` followed by a newline as one uninterleaved line.
pub fn write_line(args: fmt::Arguments<'_>) {
    let _guard = CONSOLE.lock();
    emit(args);
}

fn emit(args: fmt::Arguments<'_>) {
    let mut w = LineWriter::new();
    let _ = w.write_fmt(args);
    let _ = w.write_str("\n");
    w.flush();
}

/// Writes a line even if another CPU (or this one, mid-line) holds the console lock: waits a
/// bounded time for it, then writes anyway. For the panic path only.
pub fn write_line_forced(args: fmt::Arguments<'_>) {
    for _ in 0..1_000_000 {
        if let Some(_guard) = CONSOLE.try_lock() {
            emit(args);
            return;
        }
        core::hint::spin_loop();
    }
    emit(args);
}

/// The `log` backend.
pub struct Logger;

static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        match record.level() {
            Level::Info => write_line(format_args!("uvmhyp: {}", record.args())),
            Level::Warn => write_line(format_args!("uvmhyp: warning: {}", record.args())),
            Level::Error => write_line(format_args!("uvmhyp: error: {}", record.args())),
            Level::Debug => write_line(format_args!("uvmhyp: debug({}): {}", record.target(), record.args())),
            Level::Trace => write_line(format_args!("uvmhyp: trace({}): {}", record.target(), record.args())),
        }
    }

    fn flush(&self) {}
}

/// Installs the logger (CPU 0, once, before anything logs) at `level`.
pub fn init(level: LevelFilter) {
    // Only fails if a logger is already set, which would be a boot-order bug worth ignoring.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
