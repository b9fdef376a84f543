//! Standard output that a closed pipe ends quietly: `tools trace … | head` stops printing when
//! `head` exits instead of panicking in `println!` (Rust ignores SIGPIPE, so the write fails with
//! EPIPE). Every line of output goes through [`out!`]; its error travels up with `?` so a run in
//! progress can still stop QEMU before the process exits with [`crate::Status::Closed`].

use std::fmt;
use std::io::Write;

/// Standard output could not be written (the reader went away): stop printing.
#[derive(Debug)]
pub struct Closed;

/// Write one line to stdout.
pub fn line(args: fmt::Arguments) -> Result<(), Closed> {
    let mut o = std::io::stdout().lock();
    o.write_fmt(args).and_then(|()| o.write_all(b"\n")).map_err(|_| Closed)
}

/// `println!` that returns `Result<(), Closed>` instead of panicking.
macro_rules! out {
    () => { $crate::out::line(format_args!("")) };
    ($($a:tt)*) => { $crate::out::line(format_args!($($a)*)) };
}
