//! Multi-threaded stress test of the fault engine's locking: four writer threads fault the same
//! and different pages of one map at once, while a fork thread forks it (and checks each child's
//! copy) and a pageout thread pushes its pages to swap. Each writer owns tagged slots (a word in
//! each page it writes), reads every write back, and at the end every slot must hold its owner's
//! last value; the counters must agree with what the threads did; and after dropping everything
//! the pool must be whole.
//!
//! The simulated CPU checks the stage-2 descriptor and then touches the frame; a real CPU is
//! protected between the two by TLB invalidation, which waits for accesses in flight. The test
//! stands that in with a reader–writer lock: a CPU access (descriptor check + touch, what a TLB
//! lookup and the access stand for) holds it shared; the operations that take rights away from
//! live mappings (pageout, reclaim, fork) hold it exclusively. Faults run outside it, so they do
//! run at the same time as forks, pageouts and reclaims. Memory is ample so that faults never run
//! the pagedaemon themselves (checked).
//!
//! The work is bounded by a count ([`ROUNDS`] per writer), not by time; the time taken is printed
//! only (this is not a benchmark: those are in `vm/benches/`).
#![forbid(unsafe_code)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use common::*;
use vm::addr::{Access, Prot};
use vm::fault::{fault, FaultError, FaultFlags};
use vm::map::Map;
use vm::object::ImageObject;
use vm::pmap::Vmid;

const WRITERS: u64 = 4;
/// Pages private to each writer: writer t owns pages [t * OWN, (t + 1) * OWN).
const OWN: u64 = 32;
/// Pages every writer writes (each in its own word) start here.
const SHARED: u64 = WRITERS * OWN;
const NSHARED: u64 = 32;
/// A copy-on-write image entry after the anonymous pages.
const IMG: u64 = SHARED + NSHARED;
const NIMG: u64 = 32;
/// Rounds each writer runs (each writes and reads back three pages).
const ROUNDS: u64 = 300_000;

/// Tag of writer `t`'s `n`-th write to page `pg`.
fn tag(t: u64, pg: u64, n: u64) -> u64 {
    ((t + 1) << 56) | (pg << 32) | n
}

/// One access through the simulated CPU, faulting until stage 2 allows it. Returns the number of
/// faults taken.
fn cpu(
    map: &Map,
    env: &Env,
    gate: &RwLock<()>,
    pg: u64,
    word: u64,
    write: Option<u64>,
) -> (u64, u64) {
    let at = vm::addr::Ipa(ipa(pg).0 + word * 8);
    let access = if write.is_some() {
        Access::Write
    } else {
        Access::Read
    };
    let mut faults = 0;
    loop {
        {
            // The TLB lookup and the access: nothing may take the rights away in between.
            let _g = gate.read().unwrap();
            if let Some(pa) = cpu_frame(map, at, access) {
                return match write {
                    Some(v) => {
                        write_u64(env.mem.as_ref(), pa, v);
                        (v, faults)
                    }
                    None => (read_u64(env.mem.as_ref(), pa), faults),
                };
            }
        }
        // The stage-2 abort: the fault runs concurrently with fork, pageout and reclaim.
        faults += 1;
        match fault(map, at, access, FaultFlags::empty()) {
            Ok(_) | Err(FaultError::Restart) => {}
            Err(e) => panic!("page {pg}: fault {e:?}"),
        }
        assert!(faults < 10_000, "page {pg}: no progress");
        if faults % 8 == 0 {
            std::thread::yield_now();
        }
    }
}

#[test]
fn stress_concurrent_faults_fork_pageout() {
    let env = Arc::new(Env::new(4096, 1024));
    let total = env.uvm.total_pages();
    let map = Map::new(&env.uvm, Vmid(1)).unwrap();
    map.insert(anon_spec(0, IMG, Prot::READ | Prot::WRITE))
        .unwrap();
    let img = ImageObject::new(&env.uvm, image_bytes(0, NIMG as usize * PAGE));
    map.insert(image_spec(&img, 0, IMG, NIMG)).unwrap();
    let gate = Arc::new(RwLock::new(()));
    let stop = Arc::new(AtomicBool::new(false));
    let faults_taken = Arc::new(AtomicU64::new(0));
    let start = Instant::now();

    let writers: Vec<_> = (0..WRITERS)
        .map(|t| {
            let (env, map, gate, faults_taken) =
                (env.clone(), map.clone(), gate.clone(), faults_taken.clone());
            std::thread::spawn(move || {
                let mut last = std::collections::BTreeMap::new();
                for n in 1..=ROUNDS {
                    // Own page, shared page (own word), image page (own word): write, read back.
                    let pages = [
                        t * OWN + n % OWN,
                        SHARED + (n * 7 + t) % NSHARED,
                        IMG + (n * 3 + t) % NIMG,
                    ];
                    for pg in pages {
                        let v = tag(t, pg, n);
                        let (_, f1) = cpu(&map, &env, &gate, pg, t, Some(v));
                        let (got, f2) = cpu(&map, &env, &gate, pg, t, None);
                        faults_taken.fetch_add(f1 + f2, Ordering::Relaxed);
                        assert_eq!(got, v, "writer {t} page {pg}: read back another value");
                        last.insert(pg, v);
                    }
                }
                last
            })
        })
        .collect();

    let forker = {
        let (env, map, gate, stop) = (env.clone(), map.clone(), gate.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut forks = 0u64;
            let mut vmid = 2u16;
            while !stop.load(Ordering::Relaxed) {
                let child = {
                    let _g = gate.write().unwrap();
                    map.fork(Vmid(vmid)).expect("fork")
                };
                vmid = if vmid == 200 { 2 } else { vmid + 1 };
                forks += 1;
                // The child's copy holds, in each writer's word, zero or a tag of that writer
                // for that page.
                for pg in (0..SHARED + NSHARED).step_by(5) {
                    for t in 0..WRITERS {
                        let (v, _) = cpu(&child, &env, &gate, pg, t, None);
                        let owner_ok = v >> 56 == t + 1 && (v >> 32) & 0xff_ffff == pg;
                        let untouched = v == 0 && pg < SHARED + NSHARED;
                        assert!(
                            owner_ok || untouched || (pg < SHARED && pg / OWN != t),
                            "child page {pg} word {t}: {v:#x}"
                        );
                    }
                }
                drop(child);
                std::thread::yield_now();
            }
            forks
        })
    };

    let pager = {
        let (env, map, gate, stop) = (env.clone(), map.clone(), gate.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut out, mut n) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let _g = gate.write().unwrap();
                n += 1;
                if map.pageout(ipa(n * 13 % IMG)) {
                    out += 1;
                }
                if n % 16 == 0 {
                    env.uvm.reclaim(8);
                }
                drop(_g);
                std::thread::yield_now();
            }
            out
        })
    };

    let lasts: Vec<_> = writers
        .into_iter()
        .map(|h| h.join().expect("writer"))
        .collect();
    stop.store(true, Ordering::Relaxed);
    let forks = forker.join().expect("forker");
    let pageouts = pager.join().expect("pager");
    let elapsed = start.elapsed();

    // Every slot holds its owner's last write.
    for (t, last) in lasts.iter().enumerate() {
        for (&pg, &v) in last {
            let (got, _) = cpu(&map, &env, &gate, pg, t as u64, None);
            assert_eq!(got, v, "writer {t} page {pg}: final value");
        }
    }
    let writes: usize = lasts.iter().map(|l| l.len()).sum();

    // Counters agree with what the threads did.
    let g = env.uvm.stats();
    let m = map.stats().snapshot();
    let taken = faults_taken.load(Ordering::Relaxed);
    assert!(
        m.faults >= taken,
        "map faults {} < faults taken by writers {taken}",
        m.faults
    );
    assert!(g.faults >= m.faults);
    assert_eq!(
        g.fltnoram, 0,
        "faults ran out of memory: the test's assumption is broken"
    );
    assert_eq!(
        g.pageouts,
        env.swap.writes.load(Ordering::Relaxed),
        "pageouts vs device writes"
    );
    assert_eq!(
        g.pageins,
        env.swap.reads.load(Ordering::Relaxed),
        "pageins vs device reads"
    );
    assert!(
        g.flt_acow > 0 || forks == 0,
        "forks happened but no 1B copy-on-write fault"
    );
    println!(
        "stress: {elapsed:.1?}: {WRITERS} writers, {writes} slots checked, {taken} faults by writers \
         ({} total), {forks} forks, {pageouts} pageouts ({} pageins), restarts {}, 1B {}, 2B zero {}, \
         2B copy {}",
        g.faults, g.pageins, g.fltrestart, g.flt_acow, g.flt_przero, g.flt_prcopy
    );
    assert!(
        forks > 0 && pageouts > 0,
        "no fork ({forks}) or no pageout ({pageouts}) ran alongside the writers"
    );

    drop(map);
    drop(img);
    assert_eq!(env.uvm.free_pages(), total, "frames leaked");
    assert_eq!(
        env.uvm.swap().map(|s| s.counts().1),
        Some(0),
        "swap slots leaked"
    );
}
