//! `touch`: writes a pattern distinct per (VM, page, word) to every page of up to 64 MiB of RAM
//! beyond its image (all of it when the VM has less), reads everything back, and checks that its
//! own `faults` counter shows demand faulting: at least one fault per 8 touched pages (neighbours
//! may be mapped with a fault) and at most one per page plus the image, `.bss` and stack pages.
#![no_std]
#![no_main]

use guest::hvc::{self, Counter};
use guest::layout::{self, PAGE_SIZE};
use guest::{check, pages, println};

guest::entry!(main);

const MAX_BYTES: u64 = 64 << 20;

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

    // SAFETY: [start, start + bytes) is RAM beyond image, .bss and stacks: nothing lives there.
    unsafe { pages::fill(start, 0..pages, info.vm) };
    // SAFETY: as above.
    let bad = unsafe { pages::mismatches(start, 0..pages, info.vm, "touch") };
    check!(bad == 0, 3, "{} of {} words differ from what was written", bad, pages * pages::WORDS);

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
