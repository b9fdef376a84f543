//! `overshare`: `overcommit` over shared memory. A template writes a signature to every page of
//! its RAM beyond its image, then clones itself into 3 children (UVMHYP_CLONE): the 4 VMs share
//! those anons. Child k then overwrites its own eighth (copy-on-write: private pages), and every
//! VM verifies the whole region twice, ascending then strided, as `overcommit` does. Run on a
//! pool smaller than the shared region (scenario `overcommit-shared`), the shared anons go to
//! the swap disk and back while 4 VMs read them; at the end each VM prints what the accounting
//! (UVMHYP_ACCOUNT) says of its resident pages: how many are shared (one frame for every VM that
//! maps it, not one copy each). The scenario asserts that sharing at the VMs' stops (a VM that
//! finishes after the others have exited has nobody left to share with, so the guest cannot).
#![no_std]
#![no_main]

use guest::hvc::{self, Cloned};
use guest::layout::{self, PAGE_SIZE};
use guest::{check, pages, println};

guest::entry!(main);

const CHILDREN: u64 = 3;
/// The template's tag: what every page holds until a child writes its own eighth.
const TEMPLATE: u64 = 0x5e;

/// The tag page `p` holds in the VM whose own eighth is `mine`.
fn tag_of(p: u64, mine: &core::ops::Range<u64>, own: u64) -> u64 {
    if mine.contains(&p) {
        own
    } else {
        TEMPLATE
    }
}

/// Words wrong in page `p`.
///
/// # Safety
/// Page `p` of the region at `start` is the program's free RAM.
unsafe fn check_page(start: u64, p: u64, mine: &core::ops::Range<u64>, own: u64, what: &str) -> u64 {
    // SAFETY: the caller's contract.
    unsafe { pages::mismatches(start, p..p + 1, tag_of(p, mine, own), what) }
}

fn main(_cpu: usize, _arg: u64) -> u32 {
    guest::mmu::enable();
    let info = hvc::info();
    let start = layout::free_start();
    let end = layout::RAM_BASE + info.ram_bytes;
    check!(end > start + 8 * PAGE_SIZE, 2, "RAM of {} bytes is too small", info.ram_bytes);
    let count = (end - start) / PAGE_SIZE;
    // SAFETY: [start, end) is RAM beyond image, .bss and stacks; so for every call below.
    unsafe { pages::fill(start, 0..count, TEMPLATE) };
    let (own, mine) = match hvc::clone(CHILDREN) {
        Cloned::Parent { count: made, .. } => {
            check!(made == CHILDREN, 3, "asked for {} children, got {}", CHILDREN, made);
            (TEMPLATE, 0..0)
        }
        Cloned::Child { index } => {
            check!((1..=CHILDREN).contains(&index), 3, "child index {}", index);
            let eighth = count / 8;
            let mine = (index - 1) * eighth..index * eighth;
            // SAFETY: as above.
            unsafe { pages::fill(start, mine.clone(), index) };
            (index, mine)
        }
        Cloned::Failed(e) => guest::fail!(3, "UVMHYP_CLONE failed: {}", e),
    };
    let vm = hvc::info().vm;
    // SAFETY: as above, for both passes; every page index is below `count`.
    let bad: u64 = (0..count).map(|p| unsafe { check_page(start, p, &mine, own, "ascending") }).sum();
    check!(bad == 0, 4, "{} words wrong in the ascending pass", bad);
    let strided = (0..count).map(|i| pages::strided(i, count));
    // SAFETY: as above.
    let bad: u64 = strided.map(|p| unsafe { check_page(start, p, &mine, own, "strided") }).sum();
    check!(bad == 0, 5, "{} words wrong in the strided pass", bad);
    let [resident, private, shared, _] = hvc::account(0);
    let [swapped, ..] = hvc::account(1);
    println!(
        "overshare: vm {} verified {} pages twice ({} its own): {} resident ({} private, {} shared), {} swapped",
        vm,
        count,
        mine.end - mine.start,
        resident,
        private,
        shared,
        swapped
    );
    0
}
