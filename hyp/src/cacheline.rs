//! Cache geometry and the line ranges of cache maintenance by address (`DC CVAC`, `DC CIVAC`,
//! `IC IVAU` loops in `arch/cache.rs`), computed here so that the coverage is host-tested.
//!
//! A maintenance loop starts at the line holding the first byte and steps one smallest line
//! (CTR_EL0.DminLine / IminLine: the architecture guarantees no line is smaller, so a stride of the
//! smallest line never skips a line of a larger cache) while the address is below the end.

use core::ops::Range;

use crate::bits::Field;

/// CTR_EL0.IminLine \[3:0\]: log2 of the smallest I-cache line, in 4-byte words.
const CTR_IMINLINE: Field = Field::new(3, 0);
/// CTR_EL0.DminLine \[19:16\]: log2 of the smallest D-cache line, in 4-byte words.
const CTR_DMINLINE: Field = Field::new(19, 16);

/// Smallest D-cache line in bytes, from a CTR_EL0 value.
pub fn dminline_bytes(ctr: u64) -> u64 {
    4 << CTR_DMINLINE.get(ctr)
}

/// Smallest I-cache line in bytes, from a CTR_EL0 value.
pub fn iminline_bytes(ctr: u64) -> u64 {
    4 << CTR_IMINLINE.get(ctr)
}

/// The addresses a maintenance loop over `[start, start + len)` with `line`-byte lines (a power
/// of two) runs from and to: `start` rounded down to its line, and the end. `None` when there is
/// nothing to do (`len == 0`) or the range wraps the address space.
pub fn line_span(start: u64, len: u64, line: u64) -> Option<Range<u64>> {
    debug_assert!(line.is_power_of_two());
    if len == 0 {
        return None;
    }
    let end = start.checked_add(len)?;
    Some(start & !(line - 1)..end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// The line addresses the `arch/cache.rs` loop visits: from the span's start, one `line` at a
    /// time, while below the end.
    fn visited(span: Range<u64>, line: u64) -> Vec<u64> {
        let mut a = span.start;
        let mut out = Vec::new();
        while a < span.end {
            out.push(a);
            a += line;
        }
        out
    }

    /// CTR_EL0 with DminLine = `d` and IminLine = `i`.
    fn ctr(d: u64, i: u64) -> u64 {
        (d << 16) | i
    }

    #[test]
    fn line_sizes_come_from_ctr_el0() {
        // Cortex-A72 (QEMU's cortex-a72 model): CTR_EL0 = 0x8444_c004, 64-byte lines.
        assert_eq!(dminline_bytes(0x8444_c004), 64);
        assert_eq!(iminline_bytes(0x8444_c004), 64);
        assert_eq!(dminline_bytes(ctr(3, 0)), 32);
        assert_eq!(iminline_bytes(ctr(0, 5)), 128);
        assert_eq!(dminline_bytes(ctr(9, 9)), 2048);
    }

    #[test]
    fn every_line_of_a_frame_is_visited_once_for_every_line_size() {
        for log in 0..=9 {
            let line = dminline_bytes(ctr(log, 0));
            let frame = 0x4800_3000;
            let lines = visited(line_span(frame, 4096, line).unwrap(), line);
            assert_eq!(lines.len() as u64, 4096 / line, "line {line}");
            assert!(lines.iter().enumerate().all(|(k, &a)| a == frame + k as u64 * line), "line {line}");
        }
    }

    #[test]
    fn unaligned_ranges_cover_their_first_and_last_partial_lines() {
        let line = 64;
        for (start, len) in [(0x4800_0001u64, 1u64), (0x4800_003f, 2), (0x4800_0010, 200), (0x4800_0fff, 4096)] {
            let span = line_span(start, len, line).unwrap();
            let lines = visited(span, line);
            for byte in [start, start + len / 2, start + len - 1] {
                assert_eq!(lines.iter().filter(|&&a| a <= byte && byte < a + line).count(), 1, "{start:#x}+{len}");
            }
            // No line wholly outside the range.
            assert!(lines.iter().all(|&a| a + line > start && a < start + len), "{start:#x}+{len}");
        }
    }

    #[test]
    fn empty_and_wrapping_ranges_do_nothing() {
        assert_eq!(line_span(0x4800_0000, 0, 64), None);
        assert_eq!(line_span(u64::MAX - 10, 64, 64), None);
        assert_eq!(line_span(u64::MAX - 63, 63, 64), Some(u64::MAX - 63..u64::MAX));
    }
}
