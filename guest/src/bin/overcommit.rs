//! `overcommit`: writes a signature to every page of its RAM beyond its image (8 words a page,
//! no two pages of any VM alike), then verifies every word twice, in two different orders:
//! first ascending, then by a stride that visits every page once in an order unlike both the
//! write and the first pass. Run with more guest RAM than the hypervisor's page pool (scenario
//! `overcommit`), most pages have been to the swap disk and back by the end: a page that came back
//! wrong, from another page or another VM, fails the check.
#![no_std]
#![no_main]

use guest::hvc;
use guest::layout::{self, PAGE_SIZE};
use guest::{check, println};

guest::entry!(main);

/// Words written per page, one every `PAGE_SIZE / WORDS` bytes.
const WORDS: u64 = 8;
/// The second pass's stride in pages: odd, so it is coprime with a power-of-two page count and,
/// for any count, `visit` below falls back to every page once.
const STRIDE: u64 = 7919;

fn addr(start: u64, page: u64, w: u64) -> u64 {
    start + page * PAGE_SIZE + w * (PAGE_SIZE / WORDS)
}

fn fill(start: u64, pages: u64, vm: u64) {
    for p in 0..pages {
        for w in 0..WORDS {
            // SAFETY: [start, start + pages pages) is RAM beyond image, .bss and stacks.
            unsafe { guest::poke(addr(start, p, w), guest::pattern(vm, p, w)) };
        }
    }
}

/// Words of page `p` that are not its signature (the first few printed).
fn check_page(start: u64, p: u64, vm: u64, bad: &mut u64) {
    for w in 0..WORDS {
        // SAFETY: as in `fill`.
        let got = unsafe { guest::peek(addr(start, p, w)) };
        let want = guest::pattern(vm, p, w);
        if got != want {
            if *bad < 4 {
                println!("FAIL: page {} word {}: {:#x}, expected {:#x}", p, w, got, want);
            }
            *bad += 1;
        }
    }
}

/// The page visited `i`-th in the strided order: `i × STRIDE mod pages` when that is a
/// permutation (STRIDE coprime with `pages`), else plain descending order.
fn visit(i: u64, pages: u64) -> u64 {
    if gcd(STRIDE, pages) == 1 {
        (i * STRIDE) % pages
    } else {
        pages - 1 - i
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn main(_cpu: usize, _arg: u64) -> u32 {
    guest::mmu::enable();
    let info = hvc::info();
    let start = layout::free_start();
    let end = layout::RAM_BASE + info.ram_bytes;
    check!(end > start, 2, "RAM of {} bytes is too small", info.ram_bytes);
    let pages = (end - start) / PAGE_SIZE;
    fill(start, pages, info.vm);
    println!("overcommit: vm {} wrote {} pages", info.vm, pages);
    let mut bad = 0;
    (0..pages).for_each(|p| check_page(start, p, info.vm, &mut bad));
    check!(bad == 0, 3, "{} words wrong in the ascending pass", bad);
    println!("overcommit: vm {} verified {} pages ascending", info.vm, pages);
    (0..pages).for_each(|i| check_page(start, visit(i, pages), info.vm, &mut bad));
    check!(bad == 0, 4, "{} words wrong in the strided pass", bad);
    println!("overcommit: vm {} verified {} pages strided: ok", info.vm, pages);
    0
}
