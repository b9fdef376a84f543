//! Filling and checking free RAM page by page with `pattern(tag, page, word)`: `WORDS` words per
//! page, one every `PAGE_SIZE / WORDS` bytes, so every page is touched and a page that holds
//! another VM's (or another tag's) data is seen.

use crate::layout::PAGE_SIZE;
use crate::{pattern, println};

/// Words written and checked per page.
pub const WORDS: u64 = 8;

/// The stride of [`strided`]'s order, in pages: a prime, so coprime with any page count that is
/// not its multiple (a power of two in particular).
const STRIDE: u64 = 7919;

/// The page visited `i`-th of `count` in the memory programs' second pass: `i × STRIDE mod
/// count`, an order unlike ascending, descending and the fill's, which visits every page once
/// while `count` is no multiple of the prime `STRIDE`; plain descending order when it is.
pub fn strided(i: u64, count: u64) -> u64 {
    if count.is_multiple_of(STRIDE) {
        count - 1 - i
    } else {
        (i * STRIDE) % count
    }
}

fn word_addr(start: u64, page: u64, word: u64) -> u64 {
    start + page * PAGE_SIZE + word * (PAGE_SIZE / WORDS)
}

/// Write `pattern(tag, p, w)` into pages `pages` of the region at `start`.
///
/// # Safety
/// `[start + pages.start × PAGE_SIZE, start + pages.end × PAGE_SIZE)` is RAM the program owns
/// (beyond image, `.bss` and stacks).
pub unsafe fn fill(start: u64, pages: core::ops::Range<u64>, tag: u64) {
    for p in pages {
        for w in 0..WORDS {
            // SAFETY: the caller's contract.
            unsafe { crate::poke(word_addr(start, p, w), pattern(tag, p, w)) };
        }
    }
}

/// How many words of pages `pages` do not hold `pattern(tag, p, w)`; the first four are printed
/// with `what`.
///
/// # Safety
/// As [`fill`].
pub unsafe fn mismatches(start: u64, pages: core::ops::Range<u64>, tag: u64, what: &str) -> u64 {
    let mut bad = 0u64;
    for p in pages {
        for w in 0..WORDS {
            let addr = word_addr(start, p, w);
            // SAFETY: the caller's contract.
            let got = unsafe { crate::peek(addr) };
            let want = pattern(tag, p, w);
            if got != want {
                if bad < 4 {
                    println!("FAIL: {what}: {:#x}: read {:#018x}, expected {:#018x}", addr, got, want);
                }
                bad += 1;
            }
        }
    }
    bad
}
