//! Console lines of the hypervisor's parsed output (README, "What a run prints"), without the
//! `uvmhyp:` prefix of log lines; written whole through [`crate::console`], so lines from
//! different CPUs never interleave.

use core::fmt;

/// Print one line (a newline is added).
pub fn line(args: fmt::Arguments<'_>) {
    crate::console::write_line(args);
}

/// `println!`-style front end of [`line`].
macro_rules! outln {
    ($($arg:tt)*) => { $crate::virt::out::line(format_args!($($arg)*)) };
}
pub(crate) use outln;

/// A guest's console line: `[vm<N>] <text>`, with the guest's control characters escaped
/// (`hyp::text`: a guest cannot start a line of its own).
pub fn guest_line(vm: u16, text: &[u8]) {
    line(format_args!("[vm{vm}] {}", hyp::text::guest_line(text)));
}
