//! `clone8`: a template fills 64 MiB beyond its image, then clones itself into 8 children
//! (UVMHYP_CLONE of 8). Child k overwrites its own eighth of the region and verifies all of it:
//! its eighth holds its tag, the other seven still the template's — what another child wrote is
//! never seen. The template waits for nothing: it verifies the region is still its own and exits.
#![no_std]
#![no_main]

use guest::hvc::{self, Cloned, Counter};
use guest::layout::{self, PAGE_SIZE};
use guest::{check, pages, println};

guest::entry!(main);

const CHILDREN: u64 = 8;
const PAGES: u64 = (64 << 20) / PAGE_SIZE;
const SLICE: u64 = PAGES / CHILDREN;
const TEMPLATE: u64 = 0x7e;

fn main(_cpu: usize, _arg: u64) -> u32 {
    guest::mmu::enable();
    let info = hvc::info();
    let start = layout::free_start();
    check!(layout::RAM_BASE + info.ram_bytes >= start + PAGES * PAGE_SIZE, 2, "RAM of {} bytes is too small", info.ram_bytes);
    // SAFETY: [start, start + PAGES pages) is free RAM beyond image, .bss and stacks; so for
    // every call below.
    // SAFETY: the free region above, as for the first call.
    unsafe { pages::fill(start, 0..PAGES, TEMPLATE) };
    match hvc::clone(CHILDREN) {
        Cloned::Parent { first, count } => {
            check!(count == CHILDREN, 3, "asked for {} children, got {}", CHILDREN, count);
            // SAFETY: the free region above, as for the first call.
            let bad = unsafe { pages::mismatches(start, 0..PAGES, TEMPLATE, "template") };
            check!(bad == 0, 4, "template: {} words changed", bad);
            println!("clone8: template vm {} made vms {}..={}; its 64 MiB unchanged", info.vm, first, first + count - 1);
        }
        Cloned::Child { index } => {
            check!((1..=CHILDREN).contains(&index), 3, "child index {}", index);
            let mine = (index - 1) * SLICE..index * SLICE;
            let acow = hvc::counter(Counter::FltAcow);
            // SAFETY: the free region above, as for the first call.
            unsafe { pages::fill(start, mine.clone(), index) };
            // SAFETY: the free region above, as for the first call.
            let own = unsafe { pages::mismatches(start, mine.clone(), index, "own slice") };
            // SAFETY: the free region above, as for the first call.
            let below = unsafe { pages::mismatches(start, 0..mine.start, TEMPLATE, "template's") };
            // SAFETY: the free region above, as for the first call.
            let above = unsafe { pages::mismatches(start, mine.end..PAGES, TEMPLATE, "template's") };
            check!(own + below + above == 0, 5, "child {}: {} own, {} other words wrong", index, own, below + above);
            // The template and the other children still share these pages: every write copies.
            let copies = hvc::counter(Counter::FltAcow) - acow;
            check!(copies >= SLICE, 6, "child {}: {} 1B faults for {} pages written", index, copies, SLICE);
            println!("clone8: child {} (vm {}) wrote {} pages ({} copies), verified all {}", index, hvc::info().vm, SLICE, copies, PAGES);
        }
        Cloned::Failed(e) => guest::fail!(4, "UVMHYP_CLONE failed: {}", e),
    }
    0
}
