//! `fork`: fills 4 MiB beyond its image with its tag, forks itself (UVMHYP_CLONE of one), and
//! then each side checks it still sees the pre-fork contents, overwrites all of it with a tag of
//! its own, and verifies it — twice, yielding in between, so that each side re-reads while the
//! other writes. Neither side may ever see the other's data. For each page, whichever side writes
//! it first copies it (case 1B); the other then owns the original alone (an_ref 1) and writes it
//! in place (1A), so the two sides' 1B faults add up to one per page (the scenario checks it).
//! Both sides also check the identity registers: the child's say clone 1 of the parent, the
//! parent's one child.
#![no_std]
#![no_main]

use guest::hvc::{self, Cloned, Counter};
use guest::layout::{self, PAGE_SIZE};
use guest::{check, identity, pages, println};

guest::entry!(main);

const PAGES: u64 = 1024;
/// Tags: before the fork, and each side's after it.
const BEFORE: u64 = 0xb0;
const PARENT: u64 = 0xa1;
const CHILD: u64 = 0xc1;

fn main(_cpu: usize, _arg: u64) -> u32 {
    guest::mmu::enable();
    let info = hvc::info();
    let start = layout::free_start();
    check!(layout::RAM_BASE + info.ram_bytes >= start + PAGES * PAGE_SIZE, 2, "RAM of {} bytes is too small", info.ram_bytes);
    // SAFETY: [start, start + PAGES pages) is free RAM beyond image, .bss and stacks.
    unsafe { pages::fill(start, 0..PAGES, BEFORE) };

    let (side, tag) = match hvc::clone(1) {
        Cloned::Parent { first, count } => {
            check!(count == 1, 3, "asked for one child, got {}", count);
            let (index, children) = (identity::read(identity::CLONE_INDEX), identity::read(identity::CHILDREN));
            check!(index == 0 && children == 1, 7, "parent: identity says clone {}, {} children", index, children);
            println!("fork: parent vm {} made vm {}", info.vm, first);
            ("parent", PARENT)
        }
        Cloned::Child { index } => {
            check!(index == 1, 3, "child index {}", index);
            let id = [identity::MAGIC, identity::VM, identity::CLONE_INDEX, identity::PARENT].map(identity::read);
            let want = [identity::MAGIC_VALUE, hvc::info().vm as u32, 1, info.vm as u32];
            check!(id == want, 7, "child: identity registers {:x?}, expected {:x?}", id, want);
            println!("fork: child of vm {} is vm {}", info.vm, hvc::info().vm);
            ("child", CHILD)
        }
        Cloned::Failed(e) => guest::fail!(4, "UVMHYP_CLONE failed: {}", e),
    };
    // SAFETY: as above, for every call below.
    let bad = unsafe { pages::mismatches(start, 0..PAGES, BEFORE, side) };
    check!(bad == 0, 5, "{}: {} words changed across the fork", side, bad);
    let acow = hvc::counter(Counter::FltAcow);
    // SAFETY: the free region above, as for the first call.
    unsafe { pages::fill(start, 0..PAGES, tag) };
    for round in 0..2 {
        // SAFETY: the free region above, as for the first call.
        let bad = unsafe { pages::mismatches(start, 0..PAGES, tag, side) };
        check!(bad == 0, 6, "{} round {}: {} words are not its own", side, round, bad);
        hvc::yield_now();
    }
    let copies = hvc::counter(Counter::FltAcow) - acow;
    println!("fork: {} wrote and verified {} pages; {} copy-on-write faults", side, PAGES, copies);
    println!("fork: {side} ok");
    0
}
