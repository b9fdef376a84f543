//! Guest text made safe for the hypervisor console.
//!
//! Tools parse the console line by line (README, "What a run prints"), so a guest must never be able to start a
//! line of its own: a `\n` inside a UVMHYP_PRINT or a PL011 line could otherwise forge
//! `uvmhyp: vm2 (touch) exited 0`, a counters row or the summary. Every control character (C0,
//! DEL and C1) except tab is shown as `\xNN` (`\u{NNNN}` for C1), so a guest line stays one line
//! and the escaping is visible to whoever reads it. Invalid UTF-8 becomes U+FFFD.

use alloc::string::String;
use core::fmt::Write;

/// `bytes` as one printable line: trailing CR/LF dropped, then every control character but tab
/// escaped.
pub fn guest_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end_matches(['\r', '\n']);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\t' => out.push(c),
            c if (c as u32) < 0x80 && c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_cannot_start_a_line_of_its_own() {
        let forged = guest_line(b"x\nuvmhyp: vm2 (touch) exited 0\r\nuvmhyp: 2 VMs, 0 failed");
        assert!(!forged.contains('\n') && !forged.contains('\r'), "{forged}");
        assert_eq!(forged, "x\\x0auvmhyp: vm2 (touch) exited 0\\x0d\\x0auvmhyp: 2 VMs, 0 failed");
        assert_eq!(guest_line(b"\n"), "");
        assert_eq!(guest_line(b"\n\nz"), "\\x0a\\x0az");
    }

    #[test]
    fn controls_are_escaped_and_text_kept() {
        assert_eq!(guest_line(b"a\tb\x1b[2Jc\x7f\0"), "a\tb\\x1b[2Jc\\x7f\\x00");
        assert_eq!(guest_line("caf\u{e9} \u{85}".as_bytes()), "caf\u{e9} \\u{0085}");
        assert_eq!(guest_line(b"ok\r\n"), "ok");
        assert_eq!(guest_line(&[0xff, b'a']), "\u{fffd}a");
    }
}
