//! `overcommit`: writes a signature to every page of its RAM beyond its image (8 words a page,
//! no two pages of any VM alike), then verifies every word twice, in two different orders:
//! first ascending, then by a stride that visits every page once in an order unlike both the
//! write and the first pass. Run with more guest RAM than the hypervisor's page pool (scenario
//! `overcommit`), most pages have been to the swap disk and back by the end: a page that came back
//! wrong, from another page or another VM, fails the check. The ascending pass runs with the
//! range advised SEQUENTIAL (UVMHYP_ADVISE: the hypervisor reads swapped pages ahead of it), the
//! strided one NORMAL again (readahead would only read pages it does not want next); a bad
//! range or advice value must be refused. Each phase prints its time in milliseconds of the
//! virtual counter (`make bench` turns them into swap throughputs).
#![no_std]
#![no_main]

use guest::hvc;
use guest::layout::{self, PAGE_SIZE};
use guest::{check, pages, println, timer};

guest::entry!(main);

/// UVMHYP_ADVISE's answer to a bad argument (INVALID_PARAMETERS).
const INVALID: i64 = -2;

fn main(_cpu: usize, _arg: u64) -> u32 {
    guest::mmu::enable();
    let info = hvc::info();
    let start = layout::free_start();
    let end = layout::RAM_BASE + info.ram_bytes;
    check!(end > start, 2, "RAM of {} bytes is too small", info.ram_bytes);
    let count = (end - start) / PAGE_SIZE;
    let ms = |since: u64| (timer::now() - since) * 1000 / timer::frequency();
    let t = timer::now();
    // SAFETY: [start, end) is RAM beyond image, .bss and stacks.
    unsafe { pages::fill(start, 0..count, info.vm) };
    // This VM's pages in swap now: what the fill paged out (nothing came back yet).
    let [swapped, ..] = hvc::account(1);
    println!("overcommit: vm {} wrote {} pages in {} ms, {} swapped", info.vm, count, ms(t), swapped);
    let len = end - start;
    // Another advice value, an empty range, an unaligned one, one beyond RAM.
    let refused = [
        hvc::advise(start, len, 3),
        hvc::advise(start, 0, 2),
        hvc::advise(start + 1, len, 2),
        hvc::advise(end, PAGE_SIZE, 2),
    ];
    check!(refused.iter().all(|&r| r == INVALID), 5, "UVMHYP_ADVISE took bad arguments: {:?}", refused);
    let r = hvc::advise(start, len, hvc::Advice::Sequential as u64);
    check!(r == 0, 5, "UVMHYP_ADVISE SEQUENTIAL answered {}", r);
    let t = timer::now();
    // SAFETY: as above.
    let bad = unsafe { pages::mismatches(start, 0..count, info.vm, "ascending") };
    check!(bad == 0, 3, "{} words wrong in the ascending pass", bad);
    println!("overcommit: vm {} verified {} pages ascending in {} ms", info.vm, count, ms(t));
    let r = hvc::advise(start, len, hvc::Advice::Normal as u64);
    check!(r == 0, 5, "UVMHYP_ADVISE NORMAL answered {}", r);
    let t = timer::now();
    let bad: u64 = (0..count)
        .map(|i| pages::strided(i, count))
        // SAFETY: as above; `strided` stays below `count`.
        .map(|p| unsafe { pages::mismatches(start, p..p + 1, info.vm, "strided") })
        .sum();
    check!(bad == 0, 4, "{} words wrong in the strided pass", bad);
    println!("overcommit: vm {} verified {} pages strided in {} ms: ok", info.vm, count, ms(t));
    0
}
