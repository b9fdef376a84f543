//! Cache geometry and the line ranges of cache maintenance by address (`DC CVAC`, `DC CIVAC`,
//! `IC IVAU` loops in `arch/cache.rs`), computed here so that the coverage is host-tested.
//!
//! A maintenance loop starts at the line holding the first byte and steps one smallest line
//! (CTR_EL0.DminLine / IminLine: the architecture guarantees no line is smaller, so a stride of the
//! smallest line never skips a line of a larger cache) while the address is below the end.

use core::ops::Range;

use tock_registers::register_bitfields;

register_bitfields! {u64,
    /// CTR_EL0 (Arm ARM D19.2.34; `aarch64-cpu` 11 does not define it).
    pub CTR_EL0 [
        /// DIC: instruction cache invalidation to the PoU is not required.
        DIC OFFSET(29) NUMBITS(1) [],
        /// DminLine: log2 of the smallest D-cache line, in 4-byte words.
        DminLine OFFSET(16) NUMBITS(4) [],
        /// L1Ip: the level-1 instruction cache's indexing policy.
        L1Ip OFFSET(14) NUMBITS(2) [VPIPT = 0b00, AIVIVT = 0b01, VIPT = 0b10, PIPT = 0b11],
        /// IminLine: log2 of the smallest I-cache line, in 4-byte words.
        IminLine OFFSET(0) NUMBITS(4) []
    ],

    /// DCZID_EL0 (Arm ARM D19.2.36; not in `aarch64-cpu` 11).
    pub DCZID_EL0 [
        /// DZP: `DC ZVA` is prohibited.
        DZP OFFSET(4) NUMBITS(1) [],
        /// BS: log2 of the `DC ZVA` block size, in 4-byte words.
        BS OFFSET(0) NUMBITS(4) []
    ]
}

/// Smallest D-cache line in bytes, from a CTR_EL0 value.
pub fn dminline_bytes(ctr: u64) -> u64 {
    4 << CTR_EL0::DminLine.read(ctr)
}

/// Smallest I-cache line in bytes, from a CTR_EL0 value.
pub fn iminline_bytes(ctr: u64) -> u64 {
    4 << CTR_EL0::IminLine.read(ctr)
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
        (CTR_EL0::DminLine.val(d) + CTR_EL0::IminLine.val(i)).value
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
