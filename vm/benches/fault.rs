//! Fault-path benchmarks, each beside its physical baseline measured in the same run:
//!
//! - `zero_fill/fault_2b_zero` vs `zero_fill/baseline_zero_4k`: a Zero2B fault vs zeroing 4 KiB
//!   (one frame, cache-hot), and vs `baseline_zero_4k_cold`: zeroing each of the batch's frames
//!   in turn, the memory traffic the faults have;
//! - `cow_1b/fault_1b` vs `cow_1b/baseline_copy_4k`: a 1B copy-on-write fault vs copying 4 KiB
//!   (cache-hot), and vs `baseline_copy_4k_cold` (each of the batch's frames in turn);
//! - `paired/zero_fill`, `paired/cow_1b` (printed): each fault batch timed back to back with its
//!   cold baseline's batch, the median ratio of 31 pairs (immune to the drift between two
//!   criterion runs on a shared machine);
//! - `seq_64m/<advice>` vs `seq_64m/baseline_copy_64m`: reading 64 MiB of a resident image in a
//!   new VM page by page (faulting where stage 2 refuses), per advice; faults per MiB printed;
//! - `fork/<n>MiB` vs `fork/baseline_copy_<n>MiB`: fork of the same map (one 512 MiB entry) with
//!   16 / 256 MiB of it resident vs copying the resident memory eagerly: fork's time should not
//!   depend on how much is resident;
//! - `fork_first_write/256MiB`: the first write fault after a fork of a map whose one 256 MiB
//!   entry is all resident (the fault that clears `needs_copy`, under the map write lock), vs
//!   `fork_first_write/baseline_copy_4k`: copying the one page that write needs.
//!
//! Memory is the host simulation (`SimMem`, a Vec of frames), the TLB a counter. The fault
//! benchmarks materialise every simulated frame first, as their baselines' frames are: otherwise
//! a fault's first touch of a frame would pay for a host allocation and host page fault that a
//! real machine does not have.
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

mod common;
use common::{env, ipa};
use vm::addr::{Access, Ipa, Pa, PageIdx, Prot, PAGE_SIZE};
use vm::fault::{fault, FaultFlags};
use vm::map::{Advice, EntrySpec, Map};
use vm::object::ImageObject;
use vm::physmem::PhysMem;
use vm::pmap::{Entry, Level, Stage2Attributes, Vmid};

const MIB_PAGES: u64 = (1 << 20) / PAGE_SIZE;

fn anon(pages: u64, advice: Advice) -> EntrySpec {
    EntrySpec {
        advice,
        ..EntrySpec::anon(ipa(0), ipa(pages), Prot::READ | Prot::WRITE)
    }
}

/// True when stage 2 lets the CPU do `access` at `at`.
fn allowed(map: &Map, at: Ipa, access: Access) -> bool {
    match map.stage2().descriptor(at).decode(Level::L3) {
        Entry::Leaf { attrs, .. } => {
            attrs.contains(Stage2Attributes::AF) && attrs.prot().contains(access.prot())
        }
        _ => false,
    }
}

/// Frames of a fault batch: criterion's iterations run in batches of at most this many faults,
/// each batch in a new environment (and so do the cold baselines, like for like). 64 MiB: twice
/// the last-level cache of the machine the README's numbers come from (32 MiB), so that faults
/// and baselines alike touch memory the cache does not hold, as a guest's new pages, taken from a
/// free list, are not in the cache. Lower it to see the cache-resident case.
const BATCH: u64 = 16384;

/// `n` (≤ [`BATCH`]) Zero2B faults in a new VM (frames materialised first).
fn zero_faults(n: u64) -> Duration {
    let e = env(BATCH as usize + 64, false);
    e.mem.materialise();
    let map = Map::new(&e.uvm, Vmid(1)).unwrap();
    map.insert(anon(BATCH, Advice::Random)).unwrap();
    let t = Instant::now();
    for i in 0..n {
        black_box(fault(&map, ipa(i), Access::Write, FaultFlags::empty()).unwrap());
    }
    let took = t.elapsed();
    assert_eq!(map.stats().snapshot().flt_przero, n);
    took
}

/// Zeroing `n` (≤ [`BATCH`]) frames, each in turn, of a new environment: a zero-fill fault's
/// memory traffic without the engine.
fn zero_frames(n: u64) -> Duration {
    let e = env(BATCH as usize + 64, false);
    e.mem.materialise();
    let base = e.mem.range().start.0;
    let t = Instant::now();
    for i in 0..n {
        e.mem.zero(black_box(Pa(base + i * PAGE_SIZE)));
    }
    t.elapsed()
}

/// `n` (< [`BATCH`]) 1B faults: the parent of a fork writes the pages it shares with the child.
fn cow_faults(n: u64) -> Duration {
    let n = n.min(BATCH - 1);
    let e = env(2 * BATCH as usize + 128, false);
    e.mem.materialise();
    let map = Map::new(&e.uvm, Vmid(1)).unwrap();
    map.insert(anon(BATCH, Advice::Random)).unwrap();
    for i in 0..BATCH {
        fault(&map, ipa(i), Access::Write, FaultFlags::empty()).unwrap();
    }
    let child = map.fork(Vmid(2)).unwrap();
    // Resolve needs_copy outside the timing (one amap copy for the whole entry).
    fault(&map, ipa(BATCH - 1), Access::Write, FaultFlags::empty()).unwrap();
    let t = Instant::now();
    for i in 0..n {
        black_box(fault(&map, ipa(i), Access::Write, FaultFlags::empty()).unwrap());
    }
    let took = t.elapsed();
    // The untimed write above was a 1B fault too.
    assert_eq!(map.stats().snapshot().flt_acow, n + 1);
    drop(child);
    took
}

/// Copying `n` (< [`BATCH`]) frames into `n` others, each in turn, in a new environment: a 1B
/// fault's memory traffic without the engine.
fn copy_frames(n: u64) -> Duration {
    let n = n.min(BATCH - 1);
    let e = env(2 * BATCH as usize + 128, false);
    e.mem.materialise();
    let base = e.mem.range().start.0;
    let t = Instant::now();
    for i in 0..n {
        let (dst, src) = (Pa(base + (BATCH + i) * PAGE_SIZE), Pa(base + i * PAGE_SIZE));
        e.mem.copy(black_box(dst), black_box(src));
    }
    t.elapsed()
}

/// Times `n` operations, in a new environment.
type Batch = fn(u64) -> Duration;

/// Criterion's `iters` run as batches of `batch(n)`.
fn in_batches(iters: u64, per_batch: u64, batch: Batch) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(per_batch);
        total += batch(n);
        left -= n;
    }
    total
}

/// Zero2B fault vs zeroing 4 KiB: one frame over and over (cache-hot), and each frame of a batch
/// in turn (`_cold`, the fault's own memory traffic).
fn zero_fill(c: &mut Criterion) {
    let mut g = c.benchmark_group("zero_fill");
    g.bench_function("fault_2b_zero", |b| {
        b.iter_custom(|iters| in_batches(iters, BATCH, zero_faults))
    });
    let e = env(16, false);
    let pa = e.mem.range().start;
    g.bench_function("baseline_zero_4k", |b| b.iter(|| e.mem.zero(black_box(pa))));
    g.bench_function("baseline_zero_4k_cold", |b| {
        b.iter_custom(|iters| in_batches(iters, BATCH, zero_frames))
    });
    g.finish();
}

/// 1B copy-on-write fault vs copying 4 KiB: hot and cold, as [`zero_fill`].
fn cow_1b(c: &mut Criterion) {
    let mut g = c.benchmark_group("cow_1b");
    g.bench_function("fault_1b", |b| {
        b.iter_custom(|iters| in_batches(iters, BATCH - 1, cow_faults))
    });
    let e = env(16, false);
    let (dst, src) = (e.mem.range().start, Pa(e.mem.range().start.0 + PAGE_SIZE));
    e.mem.write(src, &[0x5a; 4096]);
    g.bench_function("baseline_copy_4k", |b| {
        b.iter(|| e.mem.copy(black_box(dst), black_box(src)))
    });
    g.bench_function("baseline_copy_4k_cold", |b| {
        b.iter_custom(|iters| in_batches(iters, BATCH - 1, copy_frames))
    });
    g.finish();
}

/// True when criterion was asked not to measure (`--list`, `--test`, `--profile-time`).
fn criterion_not_measuring() -> bool {
    std::env::args().any(|a| matches!(a.as_str(), "--list" | "--test" | "--profile-time"))
}

/// The filter criterion was given (its one positional argument), if any.
fn criterion_filter() -> Option<String> {
    const VALUED: &[&str] = &[
        "-c",
        "-s",
        "-b",
        "--baseline-lenient",
        "--warm-up-time",
        "--measurement-time",
        "--sample-size",
        "--save-baseline",
        "--baseline",
        "--load-baseline",
        "--profile-time",
        "--output-format",
        "--plotting-backend",
        "--color",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--nresamples",
        "--format",
    ];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if VALUED.contains(&a.as_str()) {
            args.next();
        } else if !a.starts_with('-') {
            return Some(a);
        }
    }
    None
}

/// Each fault batch timed back to back with its cold baseline's batch, [`PAIRS`] times; prints
/// the median of the per-pair ratios. On a shared machine two criterion runs taken seconds
/// apart drift by 10-20 % against each other; a pair is taken within a few milliseconds, so its
/// ratio does not drift. Honours criterion's filter on `paired/<case>`.
fn paired(_c: &mut Criterion) {
    const PAIRS: usize = 31;
    if criterion_not_measuring() {
        return;
    }
    // As criterion reads its filter: a regex, or the whole name with `--exact`.
    let exact = std::env::args().any(|a| a == "--exact");
    let filter = criterion_filter();
    let regex = filter
        .as_deref()
        .filter(|_| !exact)
        .map(|f| regex::Regex::new(f).expect("criterion's filter"));
    let wanted = |name: &str| {
        let id = format!("paired/{name}");
        match (&filter, &regex) {
            (None, _) => true,
            (Some(_), Some(r)) => r.is_match(&id),
            (Some(f), None) => *f == id,
        }
    };
    let cases: [(&str, Batch, Batch, u64); 2] = [
        ("zero_fill", zero_faults, zero_frames, BATCH),
        ("cow_1b", cow_faults, copy_frames, BATCH - 1),
    ];
    for (name, faults, baseline, n) in cases {
        if !wanted(name) {
            continue;
        }
        let mut ratios: Vec<f64> = (0..PAIRS)
            .map(|_| faults(n).as_secs_f64() / baseline(n).as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        println!(
            "paired/{name}: fault / cold baseline = {:.2} (median of {PAIRS} pairs of {n}; \
             quartiles {:.2}-{:.2})",
            ratios[PAIRS / 2],
            ratios[PAIRS / 4],
            ratios[3 * PAIRS / 4]
        );
    }
}

/// Read 64 MiB of an image that another VM already made resident, page by page, in a new VM with
/// each advice; the neighbourhood decides how many faults that takes.
fn seq_64m(c: &mut Criterion) {
    const PAGES: u64 = 64 * MIB_PAGES;
    let e = env(PAGES as usize + 4096, false);
    let bytes: Vec<u8> = (0..PAGES as usize * 4096)
        .map(|i| (i >> 12) as u8 ^ i as u8)
        .collect();
    let img = ImageObject::new(&e.uvm, bytes.into());
    let spec = |advice| EntrySpec {
        advice,
        ..EntrySpec::image(img.clone(), 0, ipa(0), ipa(PAGES))
    };
    {
        // Warm: a first VM makes every image page resident.
        let warm = Map::new(&e.uvm, Vmid(1)).unwrap();
        warm.insert(spec(Advice::Random)).unwrap();
        for i in 0..PAGES {
            fault(&warm, ipa(i), Access::Read, FaultFlags::empty()).unwrap();
        }
    }
    let mut g = c.benchmark_group("seq_64m");
    g.sample_size(10);
    for (name, advice) in [
        ("normal", Advice::Normal),
        ("random", Advice::Random),
        ("sequential", Advice::Sequential),
    ] {
        let mut faults = 0;
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let m = Map::new(&e.uvm, Vmid(2)).unwrap();
                    m.insert(spec(advice)).unwrap();
                    m
                },
                |m| {
                    for i in 0..PAGES {
                        if !allowed(&m, ipa(i), Access::Read) {
                            fault(&m, ipa(i), Access::Read, FaultFlags::empty()).unwrap();
                        }
                    }
                    faults = m.stats().snapshot().faults;
                    m
                },
                BatchSize::PerIteration,
            );
        });
        if faults > 0 {
            // (Zero when the filter left this benchmark out.)
            println!("seq_64m/{name}: {} faults per MiB", faults as f64 / 64.0);
        }
    }
    let frames = e.mem.range().start;
    g.bench_function("baseline_copy_64m", |b| {
        b.iter(|| {
            for i in 0..PAGES {
                e.mem.copy(
                    Pa(frames.0 + i * PAGE_SIZE),
                    Pa(frames.0 + ((i + 1) % PAGES) * PAGE_SIZE),
                );
            }
        })
    });
    g.finish();
    drop(img);
}

/// Fork of a map of one [`FORK_MAP_MIB`] MiB entry with `mib` MiB of it resident (amap shared
/// with needs_copy: the child copies nothing) vs copying the resident memory.
///
/// Fork clears the parent's stage 2 (see `Map::fork`), so before each fork the parent's memory
/// is made resident again (written, untimed). That costs milliseconds at 256 MiB, far more than
/// the fork, so each sample runs at most `MAX_FORKS` forks and scales their mean to the
/// iteration count criterion asked for.
fn fork(c: &mut Criterion) {
    const MAX_FORKS: u64 = 4;
    let mut g = c.benchmark_group("fork");
    g.sample_size(10);
    for mib in [16u64, 256] {
        let pages = mib * MIB_PAGES;
        let e = env(2 * pages as usize + 4096, false);
        let map = Map::new(&e.uvm, Vmid(1)).unwrap();
        map.insert(anon(FORK_MAP_MIB * MIB_PAGES, Advice::Normal))
            .unwrap();
        let make_resident = || {
            for i in 0..pages {
                if !allowed(&map, ipa(i), Access::Write) {
                    fault(&map, ipa(i), Access::Write, FaultFlags::empty()).unwrap();
                }
            }
            assert_eq!(map.stage2().resident() as u64, pages);
        };
        g.bench_function(format!("{mib}MiB"), |b| {
            b.iter_custom(|iters| {
                let runs = iters.clamp(1, MAX_FORKS);
                let mut total = Duration::ZERO;
                for _ in 0..runs {
                    make_resident();
                    let t = Instant::now();
                    let child = black_box(map.fork(Vmid(2)).unwrap());
                    total += t.elapsed();
                    drop(child);
                }
                Duration::from_secs_f64(total.as_secs_f64() / runs as f64 * iters as f64)
            });
        });
        let base = e.mem.range().start.0;
        g.bench_function(format!("baseline_copy_{mib}MiB"), |b| {
            b.iter(|| {
                for i in 0..pages {
                    let src = e.uvm.pa(PageIdx(i as u32));
                    e.mem.copy(Pa(base + (pages + 64 + i) * PAGE_SIZE), src);
                }
            })
        });
    }
    g.finish();
}

/// Size of the forked map's one entry.
const FORK_MAP_MIB: u64 = 512;

/// The first write after a fork: a new map with one all-resident 256 MiB entry is forked (both
/// untimed), then the parent's first write fault in the middle of the entry is timed: it copies
/// the amap (what `needs_copy` asks for) and then the page (1B). Building the map costs far more
/// than the fault, so, as in `fork`, each sample times a few faults and scales their mean.
fn fork_first_write(c: &mut Criterion) {
    const MAX_RUNS: u64 = 4;
    const MIB: u64 = 256;
    let pages = MIB * MIB_PAGES;
    let mut g = c.benchmark_group("fork_first_write");
    g.sample_size(10);
    let e = env(2 * pages as usize + 4096, false);
    let one_run = || {
        let map = Map::new(&e.uvm, Vmid(1)).unwrap();
        map.insert(anon(pages, Advice::Normal)).unwrap();
        for i in 0..pages {
            fault(&map, ipa(i), Access::Write, FaultFlags::empty()).unwrap();
        }
        let child = map.fork(Vmid(2)).unwrap();
        let t = Instant::now();
        black_box(fault(&map, ipa(pages / 2), Access::Write, FaultFlags::empty()).unwrap());
        let took = t.elapsed();
        drop(child);
        took
    };
    g.bench_function(format!("{MIB}MiB"), |b| {
        b.iter_custom(|iters| {
            let runs = iters.clamp(1, MAX_RUNS);
            let total: Duration = (0..runs).map(|_| one_run()).sum();
            Duration::from_secs_f64(total.as_secs_f64() / runs as f64 * iters as f64)
        });
    });
    let (src, dst) = (e.uvm.pa(PageIdx(0)), e.uvm.pa(PageIdx(1)));
    g.bench_function("baseline_copy_4k", |b| {
        b.iter(|| e.mem.copy(black_box(dst), black_box(src)))
    });
    g.finish();
}

criterion_group!(
    benches,
    zero_fill,
    cow_1b,
    paired,
    seq_64m,
    fork,
    fork_first_write
);
criterion_main!(benches);
