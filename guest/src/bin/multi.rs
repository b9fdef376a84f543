//! `multi`: run as 4 VMs at once. Each reads every page of a range first (it must be zero: fresh
//! zero-fill, nothing leaked from another VM), writes its VM id pattern, yields so the others run,
//! and verifies its pattern is intact (its memory is private).
#![no_std]
#![no_main]

use guest::hvc::{self, Counter};
use guest::layout::{self, PAGE_SIZE};
use guest::{check, println};

guest::entry!(main);

const PAGES: u64 = 1024;
const ROUNDS: u64 = 4;
const WORDS: u64 = 4;

fn main(_cpu: usize, _arg: u64) -> u32 {
    guest::mmu::enable();
    let info = hvc::info();
    let start = layout::free_start();
    check!(start + PAGES * PAGE_SIZE <= layout::RAM_BASE + info.ram_bytes, 2, "RAM too small");
    println!("multi: vm {}: {} pages at {:#x}", info.vm, PAGES, start);

    for p in 0..PAGES {
        let base = start + p * PAGE_SIZE;
        for w in 0..WORDS {
            let addr = base + w * (PAGE_SIZE / WORDS) + 8 * p % (PAGE_SIZE / WORDS);
            // SAFETY: free RAM beyond image, .bss and stacks; 8-byte aligned.
            let v = unsafe { guest::peek(addr & !7) };
            check!(v == 0, 3, "first read of {:#x} is {:#x}, not zero", addr & !7, v);
        }
        for w in 0..WORDS {
            // SAFETY: as above.
            unsafe { guest::poke(base + w * (PAGE_SIZE / WORDS), guest::pattern(info.vm, p, w)) };
        }
        if p % (PAGES / ROUNDS) == 0 {
            hvc::yield_now();
        }
    }
    for round in 0..ROUNDS {
        for _ in 0..4 {
            hvc::yield_now();
        }
        for p in 0..PAGES {
            let base = start + p * PAGE_SIZE;
            for w in 0..WORDS {
                // SAFETY: as above.
                let v = unsafe { guest::peek(base + w * (PAGE_SIZE / WORDS)) };
                let want = guest::pattern(info.vm, p, w);
                check!(v == want, 4, "round {}: page {} word {} is {:#x}, wrote {:#x}", round, p, w, v, want);
            }
        }
    }
    println!(
        "multi: vm {}: ok; faults {} zero-fill {}",
        info.vm,
        hvc::counter(Counter::Faults),
        hvc::counter(Counter::FltPrzero)
    );
    0
}
