//! `touch`: writes a pattern distinct per (VM, page, word) to every page of up to 64 MiB of RAM
//! beyond its image (all of it when the VM has less), reads everything back, and checks that its
//! own `faults` counter shows demand faulting: at least one fault per 8 touched pages (neighbours
//! may be mapped with a fault) and at most one per page plus the image, `.bss` and stack pages.
#![no_std]
#![no_main]

use guest::hvc::{self, Counter};
use guest::layout::{self, PAGE_SIZE};
use guest::{check, println};

guest::entry!(main);

const MAX_BYTES: u64 = 64 << 20;
/// Words written per page (one every 512 bytes).
const WORDS: u64 = 8;

fn main(_cpu: usize, _arg: u64) -> u32 {
    guest::mmu::enable();
    let info = hvc::info();
    let start = layout::free_start();
    let ram_end = layout::RAM_BASE + info.ram_bytes;
    check!(ram_end > start, 2, "RAM of {} bytes leaves nothing beyond the image", info.ram_bytes);
    let bytes = (ram_end - start).min(MAX_BYTES) & !(PAGE_SIZE - 1);
    let pages = bytes / PAGE_SIZE;
    println!(
        "touch: vm {} ram {} MiB, image {} bytes; touching {} pages at {:#x}..{:#x}",
        info.vm,
        info.ram_bytes >> 20,
        info.image_bytes,
        pages,
        start,
        start + bytes
    );
    let before = hvc::counter(Counter::Faults);

    for p in 0..pages {
        let base = start + p * PAGE_SIZE;
        for w in 0..WORDS {
            // SAFETY: [start, ram_end) is RAM beyond image, .bss and stacks: nothing lives there.
            unsafe { guest::poke(base + w * (PAGE_SIZE / WORDS), guest::pattern(info.vm, p, w)) };
        }
    }
    let mut bad = 0u64;
    for p in 0..pages {
        let base = start + p * PAGE_SIZE;
        for w in 0..WORDS {
            let addr = base + w * (PAGE_SIZE / WORDS);
            // SAFETY: as above.
            let got = unsafe { guest::peek(addr) };
            let want = guest::pattern(info.vm, p, w);
            if got != want {
                if bad < 4 {
                    println!("FAIL: {:#x}: read {:#018x}, wrote {:#018x}", addr, got, want);
                }
                bad += 1;
            }
        }
    }
    check!(bad == 0, 3, "{} of {} words differ from what was written", bad, pages * WORDS);

    let faults = hvc::counter(Counter::Faults);
    let slack = layout::reserved_pages() + 16;
    let (lo, hi) = (pages / 8, pages + slack);
    println!(
        "touch: {} pages verified; faults {} ({} before touching), zero-fill {}, neighbours {}",
        pages,
        faults,
        before,
        hvc::counter(Counter::FltPrzero),
        hvc::counter(Counter::Fltnamap) + hvc::counter(Counter::Fltnomap)
    );
    check!(faults >= lo && faults <= hi, 4, "faults {} outside [{}, {}]", faults, lo, hi);
    println!("touch: ok");
    0
}
