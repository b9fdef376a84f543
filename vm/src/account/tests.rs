//! Accounting: exact per-VM and global figures after a fork and writes, an image shared by two
//! maps, dedup merges of identical and of zero pages, and a page out.

use alloc::vec;

use super::*;
use crate::dedup::{frame_hash, Dedup};
use crate::map::Map;
use crate::pmap::Vmid;
use crate::swap::MemSwap;
use crate::testenv::*;

const PAGE: usize = PAGE_SIZE as usize;

fn fill(m: &Map, page_no: u64, byte: u8) {
    m.copy_out(page(page_no), &[byte; PAGE]).unwrap();
}

/// (resident, private, shared, sharers, zero, swapped) of one VM.
fn figures(v: &VmAccount) -> (u64, u64, u64, u64, u64, u64) {
    (
        v.resident, v.private, v.shared, v.sharers, v.zero, v.swapped,
    )
}

/// The identity every account keeps: the savings by cause add up to Σ resident − distinct.
fn check_identity(a: &Account, uvm: &Uvm) {
    assert_eq!(a.global.saved.total(), a.resident_sum() - a.global.distinct);
    for v in &a.vms {
        assert_eq!(v.private + v.shared, v.resident);
    }
    assert_eq!(a.global.pool_total, uvm.total_pages() as u64);
    assert_eq!(a.global.pool_free, uvm.free_pages() as u64);
}

#[test]
fn a_fork_shares_every_page_until_written() {
    let e = env(128);
    let p = e.anon_map(8);
    for i in 0..8 {
        fill(&p, i, 0x10 + i as u8);
    }
    let c = p.fork(Vmid(2)).unwrap();
    let none = ZeroAnons::default();
    let a = account(&e.uvm, &[(1, &p), (2, &c)], &none);
    check_identity(&a, &e.uvm);
    for v in &a.vms {
        assert_eq!(figures(v), (8, 0, 8, 16, 0, 0), "{v:?}");
    }
    assert_eq!(
        (
            a.global.distinct,
            a.global.shared_frames,
            a.global.max_sharers
        ),
        (8, 8, 2)
    );
    assert_eq!(
        a.global.saved,
        Saved {
            clone: 8,
            image: 0,
            dedup: 0
        }
    );

    // The child writes pages 0 and 1, the parent page 2: three 1B copies.
    c.copy_out(page(0), &[1]).unwrap();
    c.copy_out(page(1), &[1]).unwrap();
    p.copy_out(page(2), &[1]).unwrap();
    let a = account(&e.uvm, &[(1, &p), (2, &c)], &none);
    check_identity(&a, &e.uvm);
    for v in &a.vms {
        assert_eq!(figures(v), (8, 3, 5, 10, 0, 0), "{v:?}");
    }
    assert_eq!((a.global.distinct, a.global.shared_frames), (11, 5));
    assert_eq!(
        a.global.saved,
        Saved {
            clone: 5,
            image: 0,
            dedup: 0
        }
    );
    let (recs, g) = a.records(99, 1);
    assert_eq!(recs.len(), 2);
    assert_eq!(
        (
            recs[1].vm,
            recs[1].resident,
            recs[1].private,
            recs[1].shared,
            recs[1].time
        ),
        (2, 8, 3, 5, 99)
    );
    assert_eq!(
        (g.distinct, g.shared_frames, g.saved_clone, g.max_sharers),
        (11, 5, 5, 2)
    );
    assert_eq!(u64::from(g.pool_used + g.pool_free), a.global.pool_total);
    // Only the VMs given are counted: the parent alone shares nothing.
    let alone = account(&e.uvm, &[(1, &p)], &none);
    assert_eq!(figures(&alone.vms[0]), (8, 8, 0, 0, 0, 0));
    assert_eq!(alone.global.saved.total(), 0);
}

#[test]
fn an_image_shared_by_two_maps_is_counted_once() {
    let e = env(128);
    let obj = e.image(4 * PAGE);
    let a = e.map(1);
    a.insert(image_spec(&obj, 0, 4)).unwrap();
    let b = e.map(2);
    b.insert(image_spec(&obj, 0, 4)).unwrap();
    for i in 0..4 {
        rd(&a, page(i)).unwrap();
    }
    // B has faulted nothing: the object's resident pages are reachable from it all the same.
    let none = ZeroAnons::default();
    let acc = account(&e.uvm, &[(1, &a), (2, &b)], &none);
    check_identity(&acc, &e.uvm);
    for v in &acc.vms {
        assert_eq!(figures(v), (4, 0, 4, 8, 0, 0), "{v:?}");
    }
    assert_eq!(
        acc.global.saved,
        Saved {
            clone: 0,
            image: 4,
            dedup: 0
        }
    );

    // B writes page 3: a 2B copy into its amap hides the object page from B.
    b.copy_out(page(3), &[9]).unwrap();
    let acc = account(&e.uvm, &[(1, &a), (2, &b)], &none);
    check_identity(&acc, &e.uvm);
    for v in &acc.vms {
        assert_eq!(figures(v), (4, 1, 3, 6, 0, 0), "{v:?}");
    }
    assert_eq!((acc.global.distinct, acc.global.shared_frames), (5, 3));
    assert_eq!(
        acc.global.saved,
        Saved {
            clone: 0,
            image: 3,
            dedup: 0
        }
    );
}

#[test]
fn dedup_merges_of_identical_and_of_zero_pages() {
    let e = env(128);
    let a = e.anon_map(4);
    let b = e.map(2);
    b.insert(anon_spec(0, 4)).unwrap();
    // A: 0x5a, zero, zero; B: 0x5a, zero, 0x22. Page 3 untouched in both.
    fill(&a, 0, 0x5a);
    fill(&a, 1, 0);
    fill(&a, 2, 0);
    fill(&b, 0, 0x5a);
    fill(&b, 1, 0);
    fill(&b, 2, 0x22);
    let d = Dedup::with_hasher(&e.uvm, frame_hash);
    d.enable_map(&a);
    d.enable_map(&b);
    let before = account(&e.uvm, &[(1, &a), (2, &b)], &d.zero_anons());
    assert_eq!(before.global.distinct, 6);
    assert_eq!(before.global.saved.total(), 0);
    for _ in 0..4 {
        let start = d.passes();
        while d.passes() == start {
            d.scan(16);
        }
    }
    let acc = account(&e.uvm, &[(1, &a), (2, &b)], &d.zero_anons());
    check_identity(&acc, &e.uvm);
    // A's three pages are on frames B reaches too (0x5a and the zero anon).
    assert_eq!(figures(&acc.vms[0]), (3, 0, 3, 6, 2, 0));
    // B: 0x5a and zero shared, 0x22 its own.
    assert_eq!(figures(&acc.vms[1]), (3, 1, 2, 4, 1, 0));
    assert_eq!(
        (
            acc.global.distinct,
            acc.global.shared_frames,
            acc.global.max_sharers
        ),
        (3, 2, 2)
    );
    // The 0x5a anon: 2 references, 1 merged; the zero anon: 3 references, 2 merged.
    assert_eq!(
        acc.global.saved,
        Saved {
            clone: 0,
            image: 0,
            dedup: 3
        }
    );
    assert_eq!(acc.global.saved.dedup, e.uvm.stats().dedup_saved());
    assert_eq!(
        acc.global.pool_free,
        before.global.pool_free + 3,
        "three frames freed"
    );
}

/// A merged anon a fork also shares: dedup claims only the reference it made.
#[test]
fn a_merge_into_a_forked_anon_counts_dedup_and_clone_apart() {
    let e = env(128);
    let p = e.anon_map(2);
    fill(&p, 0, 0x33);
    let c = p.fork(Vmid(2)).unwrap();
    let o = e.map(3);
    o.insert(anon_spec(0, 2)).unwrap();
    fill(&o, 0, 0x33);
    let d = Dedup::new(&e.uvm);
    for m in [&p, &c, &o] {
        d.enable_map(m);
    }
    for _ in 0..4 {
        let start = d.passes();
        while d.passes() == start {
            d.scan(16);
        }
    }
    let acc = account(&e.uvm, &[(1, &p), (2, &c), (3, &o)], &d.zero_anons());
    check_identity(&acc, &e.uvm);
    for v in &acc.vms {
        assert_eq!(figures(v), (1, 0, 1, 3, 0, 0), "{v:?}");
    }
    assert_eq!((acc.global.distinct, acc.global.max_sharers), (1, 3));
    assert_eq!(
        acc.global.saved,
        Saved {
            clone: 1,
            image: 0,
            dedup: 1
        }
    );
}

#[test]
fn a_page_out_moves_a_page_from_resident_to_swapped() {
    let e = env(64);
    e.uvm.set_swap(MemSwap::new(8));
    let m = e.anon_map(4);
    fill(&m, 0, 1);
    fill(&m, 1, 2);
    assert!(m.pageout(page(1)));
    let acc = account(&e.uvm, &[(7, &m)], &ZeroAnons::default());
    check_identity(&acc, &e.uvm);
    assert_eq!(acc.vms[0].vm, 7);
    assert_eq!(figures(&acc.vms[0]), (1, 1, 0, 0, 0, 1));
    assert_eq!(acc.global.distinct, 1);
}

#[test]
fn zero_anons_are_a_set() {
    let (x, y) = (Anon::new(), Anon::new());
    let z = ZeroAnons::new(vec![x.clone(), x.clone()]);
    assert!(z.contains(&x));
    assert!(!z.contains(&y));
}
