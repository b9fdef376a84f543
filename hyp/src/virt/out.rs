//! Console lines of the hypervisor's parsed output (README, "What a run prints"): one semihosting SYS_WRITE0 per
//! line, so lines from different CPUs never interleave.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};

use crate::arch::semihosting;

/// Print one line (a newline is added).
pub fn line(args: fmt::Arguments<'_>) {
    let mut s = String::new();
    let _ = s.write_fmt(args);
    let mut bytes: Vec<u8> = s.into_bytes();
    bytes.retain(|b| *b != 0);
    bytes.extend_from_slice(b"\n\0");
    semihosting::write0(&bytes);
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
