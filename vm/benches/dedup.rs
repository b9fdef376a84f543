//! Dedup benchmarks, each beside its physical baseline measured in the same run:
//!
//! - `dedup_merge/per_page` vs `dedup_merge/baseline_same_4k` and `baseline_hash_4k`: the
//!   scanner's pass that merges [`PAIRS`] pairs of identical pages of two VMs (each page hashed,
//!   the second of a pair compared with the first and merged: slot redirected, both
//!   write-protected, the duplicate unmapped and freed), per page merged, vs comparing two
//!   identical 4 KiB frames and hashing one (cache-hot);
//! - `dedup_scan/per_page` vs `baseline_hash_4k`: a pass over unique, unchanged pages (hashed,
//!   looked up, left as candidates), per page: the cost of a tick's budget when nothing merges;
//! - `dedup_cow/fault_1b` vs `dedup_cow/baseline_copy_4k`: the write fault that breaks a merged
//!   page (1B: copy into a new anon) vs copying 4 KiB.
//!
//! Memory is the host simulation (`SimMem`), materialised first, the TLB a counter.
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

mod common;
use common::{env, ipa, Env};
use vm::addr::{Access, Pa, Prot, PAGE_SIZE};
use vm::dedup::Dedup;
use vm::fault::{fault, FaultFlags};
use vm::map::{EntrySpec, Map};
use vm::physmem::PhysMem;
use vm::pmap::Vmid;

/// Identical pairs (and unique pages) of one timed batch.
const PAIRS: u64 = 1024;

/// Page `i`'s bytes: distinct for every `i`.
fn bytes(i: u64) -> Vec<u8> {
    let mut v: Vec<u8> = (0..PAGE_SIZE).map(|o| (o as u8) ^ (i as u8)).collect();
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

/// VMs A and B with [`PAIRS`] pages each; B's page `i` equals A's page `i` when `twins`, and
/// every page is different otherwise. One pass has seen them (so the next one merges).
fn setup(twins: bool) -> (Env, Arc<Map>, Arc<Map>, Dedup) {
    let e = env(4 * PAIRS as usize + 256, true);
    let maps: Vec<Arc<Map>> = (1..=2u16)
        .map(|v| {
            let m = Map::new(&e.uvm, Vmid(v)).unwrap();
            m.insert(EntrySpec::anon(
                ipa(0),
                ipa(PAIRS),
                Prot::READ | Prot::WRITE,
            ))
            .unwrap();
            m
        })
        .collect();
    for i in 0..PAIRS {
        maps[0].copy_out(ipa(i), &bytes(i)).unwrap();
        let other = if twins { i } else { PAIRS + i };
        maps[1].copy_out(ipa(i), &bytes(other)).unwrap();
    }
    let d = Dedup::new(&e.uvm);
    d.enable_map(&maps[0]);
    d.enable_map(&maps[1]);
    while d.passes() == 0 {
        d.scan(64);
    }
    let (a, b) = (maps[0].clone(), maps[1].clone());
    (e, a, b, d)
}

/// One pass over the 2 × [`PAIRS`] pages of a new set-up, timed; per merged (or unique) page.
fn one_pass(twins: bool) -> (Duration, u64) {
    let (e, a, b, d) = setup(twins);
    let start = d.passes();
    let t = Instant::now();
    while d.passes() == start {
        black_box(d.scan(64));
    }
    let took = t.elapsed();
    let merged = e.uvm.stats().dedup_merged;
    assert_eq!(merged, if twins { PAIRS } else { 0 });
    drop((a, b));
    (took, if twins { PAIRS } else { 2 * PAIRS })
}

/// Criterion's `iters` as whole passes, scaled to the mean per page.
fn per_page(iters: u64, twins: bool) -> Duration {
    let runs = iters.div_ceil(PAIRS).clamp(1, 8);
    let (mut total, mut pages) = (Duration::ZERO, 0);
    for _ in 0..runs {
        let (t, n) = one_pass(twins);
        total += t;
        pages += n;
    }
    Duration::from_secs_f64(total.as_secs_f64() / pages as f64 * iters as f64)
}

fn merge(c: &mut Criterion) {
    let mut g = c.benchmark_group("dedup_merge");
    g.bench_function("per_page", |b| b.iter_custom(|iters| per_page(iters, true)));
    let e = env(4, true);
    let (x, y) = (e.mem.range().start, Pa(e.mem.range().start.0 + PAGE_SIZE));
    e.mem.write(x, &bytes(3));
    e.mem.write(y, &bytes(3));
    g.bench_function("baseline_same_4k", |b| {
        b.iter(|| assert!(e.mem.same(black_box(x), black_box(y))))
    });
    g.bench_function("baseline_hash_4k", |b| {
        b.iter(|| black_box(e.mem.hash(black_box(x))))
    });
    g.finish();
}

fn scan(c: &mut Criterion) {
    let mut g = c.benchmark_group("dedup_scan");
    g.bench_function("per_page", |b| {
        b.iter_custom(|iters| per_page(iters, false))
    });
    g.finish();
}

/// Write faults on [`PAIRS`] merged pages of A, timed, after an untimed merging pass.
fn cow_breaks(n: u64) -> Duration {
    let (e, a, b, d) = setup(true);
    let start = d.passes();
    while d.passes() == start {
        d.scan(64);
    }
    let t = Instant::now();
    for i in 0..n {
        black_box(fault(&a, ipa(i), Access::Write, FaultFlags::empty()).unwrap());
    }
    let took = t.elapsed();
    assert_eq!(a.stats().snapshot().flt_acow, n);
    assert_eq!(e.uvm.stats().dedup_saved(), PAIRS - n);
    drop((a, b));
    took
}

fn cow(c: &mut Criterion) {
    let mut g = c.benchmark_group("dedup_cow");
    g.bench_function("fault_1b", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(PAIRS);
                total += cow_breaks(n);
                left -= n;
            }
            total
        })
    });
    let e = env(4, true);
    let (dst, src) = (e.mem.range().start, Pa(e.mem.range().start.0 + PAGE_SIZE));
    e.mem.write(src, &bytes(5));
    g.bench_function("baseline_copy_4k", |b| {
        b.iter(|| e.mem.copy(black_box(dst), black_box(src)))
    });
    g.finish();
}

criterion_group!(benches, merge, scan, cow);
criterion_main!(benches);
