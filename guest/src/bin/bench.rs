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

use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use guest::hvc::{self, Counter};
use guest::layout::{self, PAGE_SIZE};
use guest::{check, println};

guest::entry!(main);

const ZERO_PAGES: u64 = 4096;
const IMAGE_WORDS: usize = (1 << 20) / 8;
const WORDS_PER_PAGE: usize = (PAGE_SIZE / 8) as usize;

const fn make_image_data() -> [AtomicU64; IMAGE_WORDS] {
    let mut t = [const { AtomicU64::new(0) }; IMAGE_WORDS];
    let mut i = 0;
    while i < IMAGE_WORDS {
        t[i] = AtomicU64::new((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        i += 1;
    }
    t
}

/// 1 MiB of initialised, writable data: 256 pages of the image object. Relaxed atomics compile to
/// plain loads and stores and need no `unsafe`.
static IMAGE_DATA: [AtomicU64; IMAGE_WORDS] = make_image_data();

/// The first word of image data page `p`.
fn image_word(p: u64) -> &'static AtomicU64 {
    &IMAGE_DATA[p as usize * WORDS_PER_PAGE]
}

/// Store `value` at `addr` in `free`, the RAM beyond image, `.bss` and stacks that this program
/// alone uses.
fn store(free: &Range<u64>, addr: u64, value: u64) {
    debug_assert!(free.contains(&addr) && addr.is_multiple_of(8));
    // SAFETY: `addr` is an aligned address in `free`, where no Rust object lives.
    unsafe { guest::poke(addr, value) }
}

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
    let free = start..need;
    let page = |p: u64| start + p * PAGE_SIZE;

    let zero_fault = timed("zero-fill-fault", ZERO_PAGES, |p| store(&free, page(p), p | 1));
    let memset = timed("memset-4KiB", ZERO_PAGES, |p| {
        for w in 0..WORDS_PER_PAGE as u64 {
            store(&free, page(p) + w * 8, 0);
        }
    });
    let touch = timed("mapped-touch", ZERO_PAGES, |p| store(&free, page(p), p));

    let data_pages = (IMAGE_WORDS / WORDS_PER_PAGE) as u64;
    let mut sum = 0u64;
    let read_fault = timed("2A-read-fault", data_pages, |p| sum ^= image_word(p).load(Relaxed));
    let cow_fault = timed("2B-cow-fault", data_pages, |p| image_word(p).store(p, Relaxed));
    let copy = timed("copy-4KiB", data_pages, |p| {
        let src = &IMAGE_DATA[p as usize * WORDS_PER_PAGE..][..WORDS_PER_PAGE];
        for (w, word) in src.iter().enumerate() {
            store(&free, page(p) + w as u64 * 8, word.load(Relaxed));
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
