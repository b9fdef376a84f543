//! `bench`: what a demand fault costs the guest, against the work the fault does, measured in the
//! same run. Run it under `-icount shift=0` (`make bench`): the virtual counter then advances with
//! executed instructions, so the numbers are counts, not wall time, and repeat exactly.
//!
//! Phases, each over its own pages, timed with CNTVCT_EL0 and reported in instructions per page
//! (under `-icount shift=0` one instruction is 1 ns of virtual time; the counter runs at CNTFRQ):
//! 1. `zero-fill fault`: first write to each of 4096 pages of demand-zero RAM (case 2B, zero fill);
//!    baseline `memset 4 KiB`: the guest zeroing each of those (now mapped) pages itself.
//! 2. `2A read fault`: first read of each page of a 1 MiB initialised array in the image (case 2A);
//!    `2B COW fault`: first write to each of those pages (promoted: the page is copied);
//!    baseline `copy 4 KiB`: the guest copying each of those pages itself.
//! 3. `mapped touch`: one write per already mapped page (no fault: TLB walk only).
//!
//! The instructions are the whole machine's: the guest's and the hypervisor's work for it.
//! Prints one `bench: <name> pages <n> insns/page <i> faults <f>` line per phase, then the ratios.
#![no_std]
#![no_main]

use guest::hvc::{self, Counter};
use guest::layout::{self, PAGE_SIZE};
use guest::{check, println};

guest::entry!(main);

const ZERO_PAGES: u64 = 4096;
const IMAGE_WORDS: usize = (1 << 20) / 8;
const WORDS_PER_PAGE: usize = (PAGE_SIZE / 8) as usize;

const fn make_image_data() -> [u64; IMAGE_WORDS] {
    let mut t = [0u64; IMAGE_WORDS];
    let mut i = 0;
    while i < IMAGE_WORDS {
        t[i] = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        i += 1;
    }
    t
}

/// 1 MiB of initialised, writable data: 256 pages of the image object.
static mut IMAGE_DATA: [u64; IMAGE_WORDS] = make_image_data();

/// Nanoseconds of virtual time per counter tick (= instructions per tick under `-icount shift=0`).
fn ns_per_tick() -> u64 {
    1_000_000_000 / guest::timer::frequency()
}

/// A timed phase: instructions per page and the faults the hypervisor counted for it.
struct Phase {
    name: &'static str,
    pages: u64,
    per_page: u64,
    faults: u64,
}

fn timed(name: &'static str, pages: u64, mut body: impl FnMut(u64)) -> Phase {
    let f0 = hvc::counter(Counter::Faults);
    let t0 = guest::timer::now();
    for p in 0..pages {
        body(p);
    }
    let t1 = guest::timer::now();
    let faults = hvc::counter(Counter::Faults) - f0;
    let phase = Phase { name, pages, per_page: (t1 - t0) * ns_per_tick() / pages, faults };
    println!(
        "bench: {} pages {} insns/page {} faults {}",
        phase.name, phase.pages, phase.per_page, phase.faults
    );
    phase
}

fn ratio(a: &Phase, b: &Phase) {
    let milli = a.per_page * 1000 / b.per_page.max(1);
    println!("bench: ratio {} / {} = {}.{:03}", a.name, b.name, milli / 1000, milli % 1000);
}

fn main(_cpu: usize, _arg: u64) -> u32 {
    guest::mmu::enable();
    let info = hvc::info();
    let start = layout::free_start();
    let need = start + ZERO_PAGES * PAGE_SIZE;
    check!(need <= layout::RAM_BASE + info.ram_bytes, 2, "needs {} MiB of RAM", (need - layout::RAM_BASE) >> 20);
    let page = |p: u64| start + p * PAGE_SIZE;

    // SAFETY (all pokes below): [start, need) is free RAM beyond image, .bss and stacks.
    let zero_fault = timed("zero-fill-fault", ZERO_PAGES, |p| unsafe { guest::poke(page(p), p | 1) });
    let memset = timed("memset-4KiB", ZERO_PAGES, |p| {
        for w in 0..WORDS_PER_PAGE as u64 {
            unsafe { guest::poke(page(p) + w * 8, 0) };
        }
    });
    let touch = timed("mapped-touch", ZERO_PAGES, |p| unsafe { guest::poke(page(p), p) });

    let data = core::ptr::addr_of_mut!(IMAGE_DATA) as *mut u64;
    let data_pages = (IMAGE_WORDS / WORDS_PER_PAGE) as u64;
    let word = |p: u64| -> *mut u64 { data.wrapping_add(p as usize * WORDS_PER_PAGE) };
    let mut sum = 0u64;
    // SAFETY (image accesses): in bounds of IMAGE_DATA; this program is single-threaded.
    let read_fault = timed("2A-read-fault", data_pages, |p| sum ^= unsafe { core::ptr::read_volatile(word(p)) });
    let cow_fault = timed("2B-cow-fault", data_pages, |p| unsafe { core::ptr::write_volatile(word(p), p) });
    let copy = timed("copy-4KiB", data_pages, |p| {
        let src = word(p);
        let dst = page(p) as *mut u64;
        for w in 0..WORDS_PER_PAGE {
            unsafe { core::ptr::write_volatile(dst.add(w), core::ptr::read_volatile(src.add(w))) };
        }
    });
    check!(sum != 0, 3, "image data read back as zero");
    check!(zero_fault.faults >= ZERO_PAGES, 4, "{} zero-fill faults for {} pages", zero_fault.faults, ZERO_PAGES);
    check!(memset.faults == 0 && touch.faults == 0 && copy.faults == 0, 5, "mapped pages faulted again");
    check!(cow_fault.faults >= data_pages, 6, "{} COW faults for {} pages", cow_fault.faults, data_pages);

    ratio(&zero_fault, &memset);
    ratio(&cow_fault, &copy);
    println!(
        "bench: fault overhead above its work: zero fill {} insns, COW {} insns; a 2A read fault {} insns",
        zero_fault.per_page.saturating_sub(memset.per_page),
        cow_fault.per_page.saturating_sub(copy.per_page),
        read_fault.per_page.saturating_sub(touch.per_page)
    );
    println!("bench: ok");
    0
}
