//! `dedup`: fills its RAM beyond its image, rounded down to whole MiB (64 MiB of a 65 MiB VM in
//! `dedup8`, 16 MiB of 17 in `dedup-swap`: the size comes from UVMHYP_INFO's RAM size, as the
//! other memory guests' does), with pages of three kinds — 75 % *common* (the same
//! bytes in every VM running this guest, different from page to page), 10 % all zero, 15 % *own*
//! (bytes only this VM has); a page's content is [`WORDS`] words one every 512 bytes, zeroes
//! between — then waits, idle, while the hypervisor's dedup scanner merges what is identical
//! across VMs: until [`QUIET_PASSES`] scanner passes end without a new saving. Then it verifies
//! all of its memory, prints what the accounting says then (after that pass, on a pool smaller
//! than the VMs' pages, merged anons have been to swap and back: `dedup-swap`), writes to every
//! common and zero page (each write a copy of the merged page: case 1B) with its own bytes, and
//! verifies again — a merge never lets one VM see another's data.
//!
//! The VMs go through these steps together: each step ends at a UVMHYP_PHASE rendezvous of all
//! the run's VMs ([`Phase`]). Without it the first VM to see the saving settle starts verifying,
//! its page-ins change the saving the others watch, and they wait on while it verifies alone
//! and writes its common pages private: 8 runs of `dedup-swap` merged 10,787-10,864 pages when
//! the four left the wait together and 4,911-8,297 when they did not.
#![no_std]
#![no_main]

use guest::hvc::{self, Counter};
use guest::layout::{self, PAGE_SIZE};
use guest::{check, println};

guest::entry!(main);

/// Pages of one MiB: the region is the free RAM rounded down to a multiple of it, so a VM of N
/// MiB fills N - 1 whole MiB (image, `.bss` and stacks take less than one): a size its scenario
/// can state, whatever the image's size.
const MIB_PAGES: u64 = (1 << 20) / PAGE_SIZE;
/// Words written per page, one every `PAGE_SIZE / WORDS` bytes (the rest stays zero).
const WORDS: u64 = 8;
/// How long one idle round lasts between looks at the scanner.
const ROUND_MS: u64 = 50;
/// Scanner passes without a new saving that mean "converged".
const QUIET_PASSES: u64 = 2;
/// Give up waiting after this many rounds (the scenario's check then fails on the saving).
const MAX_ROUNDS: u32 = 6000;
/// How long one idle round lasts between looks at the rendezvous: the VMs leave it within this
/// much of each other.
const MEET_MS: u64 = 5;
/// Give up meeting the other VMs after this many of those rounds (120 s; a VM that stops no
/// longer counts, so only a VM that never gets there makes a guest wait this long).
const MAX_MEET_ROUNDS: u64 = 120_000 / MEET_MS;

/// The steps every VM running this guest ends together (UVMHYP_PHASE's numbers).
#[derive(Clone, Copy)]
enum Phase {
    /// Its memory is written.
    Filled = 1,
    /// The scanner has merged what was resident.
    Converged = 2,
    /// It has verified all of its memory (before any VM writes its common pages).
    Verified = 3,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Common,
    Zero,
    Own,
}

fn kind(page: u64) -> Kind {
    match page % 20 {
        0..=14 => Kind::Common,
        15 | 16 => Kind::Zero,
        _ => Kind::Own,
    }
}

/// Word `w` of `page` in VM `vm` (`tag` 0: before the writes; else the write's tag).
fn word(vm: u64, page: u64, w: u64, tag: u64) -> u64 {
    match (kind(page), tag) {
        (Kind::Common, 0) => guest::pattern(0, page, w),
        (Kind::Zero, 0) => 0,
        (Kind::Own, _) => guest::pattern(vm, page, w),
        (_, t) => guest::pattern(vm ^ t, page, w),
    }
}

/// Write every word of the pages (of `kinds`) with `tag`'s contents.
fn fill(start: u64, pages: u64, vm: u64, tag: u64, only_shared: bool) {
    for p in (0..pages).filter(|&p| !only_shared || kind(p) != Kind::Own) {
        for w in 0..WORDS {
            // SAFETY: [start, start + pages pages) is free RAM beyond image, .bss and stacks.
            unsafe { guest::poke(start + p * PAGE_SIZE + w * (PAGE_SIZE / WORDS), word(vm, p, w, tag)) };
        }
    }
}

/// Words that differ from `tag`'s contents.
fn mismatches(start: u64, pages: u64, vm: u64, tag: u64) -> u64 {
    let mut bad = 0;
    for p in 0..pages {
        let t = if kind(p) == Kind::Own { 0 } else { tag };
        for w in 0..WORDS {
            // SAFETY: as in `fill`.
            let got = unsafe { guest::peek(start + p * PAGE_SIZE + w * (PAGE_SIZE / WORDS)) };
            if got != word(vm, p, w, t) {
                if bad < 4 {
                    println!("FAIL: page {} word {}: {:#x}, expected {:#x}", p, w, got, word(vm, p, w, t));
                }
                bad += 1;
            }
        }
    }
    bad
}

/// Idle about `ms` milliseconds in WFI: the physical CPU is free meanwhile, and the hypervisor
/// scans.
fn nap(ms: u64) {
    let until = guest::timer::now() + guest::timer::frequency() * ms / 1000;
    while guest::timer::now() < until {
        guest::timer::wfi();
    }
}

/// Wait, idle, until every running VM has reached `phase`; false if they do not within
/// [`MAX_MEET_ROUNDS`].
fn meet(phase: Phase) -> bool {
    let n = phase as u64;
    for _ in 0..MAX_MEET_ROUNDS {
        if hvc::phase(n) >= n {
            return true;
        }
        nap(MEET_MS);
    }
    false
}

fn main(_cpu: usize, _arg: u64) -> u32 {
    guest::mmu::enable();
    let info = hvc::info();
    let start = layout::free_start();
    let pages = (layout::RAM_BASE + info.ram_bytes).saturating_sub(start) / PAGE_SIZE / MIB_PAGES * MIB_PAGES;
    check!(pages > 0, 2, "RAM of {} bytes is too small", info.ram_bytes);
    fill(start, pages, info.vm, 0, false);
    println!("dedup: vm {} filled {} pages (75% common, 10% zero, 15% own)", info.vm, pages);
    check!(meet(Phase::Filled), 6, "the other VMs did not fill their memory within 120 s");

    // Converged: the saving is the same as QUIET_PASSES passes ago (and not zero).
    let (mut saved, mut since, mut rounds) = (hvc::counter(Counter::DedupSavedAll), hvc::counter(Counter::DedupPasses), 0);
    while rounds < MAX_ROUNDS {
        nap(ROUND_MS);
        rounds += 1;
        let (now, passes) = (hvc::counter(Counter::DedupSavedAll), hvc::counter(Counter::DedupPasses));
        if now != saved || now == 0 {
            (saved, since) = (now, passes);
        } else if passes >= since + QUIET_PASSES {
            break;
        }
    }
    check!(meet(Phase::Converged), 6, "the other VMs did not see the scanner converge within 120 s");
    println!(
        "dedup: vm {} sees {} frames saved over all VMs after {} rounds; its own: {} merged ({} zero)",
        info.vm,
        saved,
        rounds,
        hvc::counter(Counter::DedupMerged),
        hvc::counter(Counter::DedupZero)
    );
    // Merged pages are shared with the other VMs; the accounting must see them as such.
    let [resident, private, shared, zero] = hvc::account(0);
    let [_, _, by_dedup, distinct] = hvc::account(2);
    println!(
        "dedup: vm {} account: {} resident, {} private, {} shared, {} zero; all VMs: {} frames saved by dedup, {} distinct",
        info.vm, resident, private, shared, zero, by_dedup, distinct
    );
    check!(resident == private + shared && shared > 0 && by_dedup > 0, 5, "UVMHYP_ACCOUNT: {} resident, {} private, {} shared, {} saved", resident, private, shared, by_dedup);
    let bad = mismatches(start, pages, info.vm, 0);
    check!(bad == 0, 3, "{} words changed by the merging", bad);
    // With swap (`dedup-swap`) this pass paged merged anons out and back in: are they shared still?
    let [resident, _, shared, _] = hvc::account(0);
    let [swapped, ..] = hvc::account(1);
    let [_, _, by_dedup, _] = hvc::account(2);
    println!("dedup: vm {} verified all: {} resident ({} shared), {} swapped; all VMs: {} frames saved by dedup", info.vm, resident, shared, swapped, by_dedup);
    check!(meet(Phase::Verified), 6, "the other VMs did not verify their memory within 120 s");
    let copies = hvc::counter(Counter::FltAcow);
    fill(start, pages, info.vm, 0x5eed, true);
    let bad = mismatches(start, pages, info.vm, 0x5eed);
    check!(bad == 0, 4, "{} words not this VM's after writing the shared pages", bad);
    println!("dedup: vm {} wrote its shared pages ({} copy-on-write faults) and verified all: ok", info.vm, hvc::counter(Counter::FltAcow) - copies);
    0
}
