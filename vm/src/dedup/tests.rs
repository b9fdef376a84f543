//! Dedup: merges happen only between identical pages, a merged page is copied on write, freed
//! duplicates never show their old bytes (nor the new owner's to their old VMs), and wired, BUSY
//! and loaned pages stay out.

use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::account::account;
use crate::map::Map;
use crate::testenv::*;

const PAGE: usize = PAGE_SIZE as usize;

/// Two maps (VMIDs 1 and 2) of `pages` anonymous pages each, both scanned by a new `Dedup`.
fn two_maps(e: &Env, pages: u64, hasher: Hasher) -> (Arc<Map>, Arc<Map>, Dedup) {
    let a = e.map(1);
    a.insert(anon_spec(0, pages)).unwrap();
    let b = e.map(2);
    b.insert(anon_spec(0, pages)).unwrap();
    let d = Dedup::with_hasher(&e.uvm, hasher);
    d.enable_map(&a);
    d.enable_map(&b);
    (a, b, d)
}

fn fill(m: &Map, at: Ipa, byte: u8) {
    m.copy_out(at, &[byte; PAGE]).unwrap();
}

fn contents(m: &Map, at: Ipa) -> Vec<u8> {
    let mut b = vec![0u8; PAGE];
    m.copy_in(at, &mut b).unwrap();
    b
}

/// Scan until one pass ends.
fn pass(d: &Dedup) {
    let start = d.passes();
    for _ in 0..10_000 {
        d.scan(1);
        if d.passes() > start {
            return;
        }
    }
    panic!("no pass ended");
}

fn passes(d: &Dedup, n: usize) {
    for _ in 0..n {
        pass(d);
    }
}

fn same_anon(a: &Map, b: &Map, at: Ipa) -> bool {
    match (a.anon_at(at), b.anon_at(at)) {
        (Some(x), Some(y)) => Arc::ptr_eq(&x, &y),
        _ => false,
    }
}

/// A constant hash: every page collides with every other.
fn collide(_: &dyn PhysMem, _: Pa) -> u64 {
    42
}

#[test]
fn identical_pages_merge_and_a_write_stays_private() {
    let e = env(64);
    let (a, b, d) = two_maps(&e, 4, frame_hash);
    fill(&a, page(0), 0x5a);
    fill(&b, page(0), 0x5a);
    fill(&a, page(1), 0x11);
    fill(&b, page(1), 0x22);
    let free = e.uvm.free_pages();
    passes(&d, 3);
    assert!(same_anon(&a, &b, page(0)), "identical pages share one anon");
    assert!(!same_anon(&a, &b, page(1)), "different pages do not");
    assert_eq!(
        e.uvm.free_pages(),
        free + 1,
        "the duplicate's frame was freed"
    );
    let anon = a.anon_at(page(0)).unwrap();
    let (an_ref, merged) = {
        let st = anon.lock();
        (st.an_ref, st.merged)
    };
    assert_eq!((an_ref, merged), (2, 1));
    assert_eq!(e.uvm.stats().dedup_saved(), 1);
    for m in [&a, &b] {
        assert_eq!(contents(m, page(0)), vec![0x5a; PAGE]);
        let (pg, p) = m.mapped_page(page(0)).unwrap();
        assert_eq!(Some(pg), anon.lock().page);
        assert!(
            !p.contains(Prot::WRITE),
            "a merged page is mapped read-only"
        );
    }
    let acc = account(&e.uvm, &[(1, &a), (2, &b)], &d.zero_anons());
    for v in &acc.vms {
        assert_eq!(
            (v.resident, v.shared, v.sharers, v.zero),
            (2, 1, 2, 0),
            "{v:?}"
        );
    }
    assert_eq!((acc.global.saved.dedup, acc.global.max_sharers), (1, 2));

    // A write by A is a 1B copy: B keeps the merged bytes.
    a.copy_out(page(0), &[0x77; 8]).unwrap();
    assert_eq!(a.stats().snapshot().flt_acow, 1);
    let mut want = vec![0x5a; PAGE];
    want[..8].fill(0x77);
    assert_eq!(contents(&a, page(0)), want);
    assert_eq!(contents(&b, page(0)), vec![0x5a; PAGE]);
    assert_eq!(
        e.uvm.stats().dedup_saved(),
        0,
        "the saving ended with the copy"
    );
    assert_eq!(contents(&a, page(1)), vec![0x11; PAGE]);
    assert_eq!(contents(&b, page(1)), vec![0x22; PAGE]);
}

#[test]
fn a_forced_collision_never_merges_different_pages() {
    let e = env(64);
    let (a, b, d) = two_maps(&e, 4, collide);
    for i in 0..3u8 {
        fill(&a, page(u64::from(i)), i + 1);
        fill(&b, page(u64::from(i)), i + 0x81);
    }
    fill(&a, page(3), 0xee);
    fill(&b, page(3), 0xee);
    passes(&d, 6);
    let s = e.uvm.stats();
    assert!(s.dedup_collisions > 0, "the collisions were compared");
    assert_eq!(s.dedup_merged, 1, "only the identical pair merged");
    assert!(same_anon(&a, &b, page(3)));
    for i in 0..3u8 {
        assert!(!same_anon(&a, &b, page(u64::from(i))));
        assert_eq!(contents(&a, page(u64::from(i))), vec![i + 1; PAGE]);
        assert_eq!(contents(&b, page(u64::from(i))), vec![i + 0x81; PAGE]);
    }
    assert_eq!(contents(&a, page(3)), vec![0xee; PAGE]);
    assert_eq!(contents(&b, page(3)), vec![0xee; PAGE]);
}

#[test]
fn a_page_written_during_the_scan_is_not_merged() {
    let e = env(64);
    let (a, b, d) = two_maps(&e, 1, frame_hash);
    fill(&a, page(0), 0x33);
    fill(&b, page(0), 0x33);
    pass(&d); // both seen once
    d.scan(1); // A's page: unchanged, a candidate of this pass
    fill(&a, page(0), 0x44); // written after it was hashed
    d.scan(1); // B's page finds A's as a hash twin: the compare must refuse it
    assert!(!same_anon(&a, &b, page(0)));
    assert_eq!(e.uvm.stats().dedup_collisions, 1);
    assert_eq!(contents(&a, page(0)), vec![0x44; PAGE]);
    assert_eq!(contents(&b, page(0)), vec![0x33; PAGE]);
}

#[test]
fn a_freed_duplicate_never_shows_its_bytes_to_another_vm() {
    let e = env(64);
    let (a, b, d) = two_maps(&e, 4, frame_hash);
    let canary = |i: u64| 0xc0 | i as u8;
    for i in 0..4 {
        fill(&a, page(i), canary(i));
        fill(&b, page(i), canary(i));
    }
    let before: Vec<PageIdx> = (0..4)
        .flat_map(|i| [&a, &b].map(|m| m.mapped_page(page(i)).unwrap().0))
        .collect();
    passes(&d, 3);
    assert_eq!(e.uvm.stats().dedup_merged, 4);
    let kept: Vec<PageIdx> = (0..4)
        .map(|i| a.anon_at(page(i)).unwrap().lock().page.unwrap())
        .collect();
    let freed: Vec<PageIdx> = before.into_iter().filter(|p| !kept.contains(p)).collect();
    assert_eq!(freed.len(), 4);

    // A third VM takes most free frames (the rest is for its tables); the freed duplicates
    // are among them.
    let c = e.map(3);
    let n = e.uvm.free_pages() as u64 - 8;
    c.insert(anon_spec(0, n)).unwrap();
    let mut reused = 0;
    for i in 0..n {
        let data = contents(&c, page(i));
        assert!(
            data.iter().all(|&x| x == 0),
            "page {i} of C shows old bytes"
        );
        reused += usize::from(freed.contains(&c.mapped_page(page(i)).unwrap().0));
        // And C's own bytes must not reach A or B (through a stale mapping of a freed frame).
        fill(&c, page(i), 0xdd);
    }
    assert!(reused > 0, "C got at least one freed duplicate");
    for i in 0..4 {
        assert_eq!(contents(&a, page(i)), vec![canary(i); PAGE]);
        assert_eq!(contents(&b, page(i)), vec![canary(i); PAGE]);
    }
}

#[test]
fn wired_busy_and_loaned_pages_are_not_merged() {
    let e = env(64);
    let (a, b, d) = two_maps(&e, 3, frame_hash);
    for m in [&a, &b] {
        fill(m, page(0), 0x10);
        fill(m, page(1), 0x20);
    }
    // Page 0 wired in A, page 1 BUSY in B.
    a.wire(page(0), page(1)).unwrap();
    let busy_pg = b.anon_at(page(1)).unwrap().lock().page.unwrap();
    let busy = e.uvm.try_busy(busy_pg).unwrap();
    // Page 2: B borrows page 0 of an image (bytes 1) and A holds the same bytes.
    let img = e.image(PAGE);
    let loan = crate::object::loan_to_anon(&e.uvm, img.as_ref(), 0).unwrap();
    b.install_anon(page(2), loan).unwrap();
    fill(&a, page(2), 1);
    assert_eq!(contents(&b, page(2)), vec![1; PAGE]);
    passes(&d, 4);
    assert_eq!(e.uvm.stats().dedup_merged, 0);
    for i in 0..3 {
        assert!(!same_anon(&a, &b, page(i)), "page {i}");
    }
    // Once unwired and unbusied they merge: the refusal was theirs.
    e.uvm.unbusy(busy);
    a.unwire(page(0), page(1)).unwrap();
    passes(&d, 3);
    assert!(same_anon(&a, &b, page(0)));
    assert!(same_anon(&a, &b, page(1)));
    assert!(!same_anon(&a, &b, page(2)), "the loan stays out");
    assert_eq!(contents(&a, page(2)), vec![1; PAGE]);
    assert_eq!(contents(&b, page(2)), vec![1; PAGE]);
}

#[test]
fn zero_pages_merge_into_one_zero_anon() {
    let e = env(96);
    let maps: Vec<Arc<Map>> = (1..=3).map(|v| e.map(v)).collect();
    let d = Dedup::new(&e.uvm);
    for m in &maps {
        m.insert(anon_spec(0, 8)).unwrap();
        d.enable_map(m);
        for i in 0..8 {
            if i % 4 == 3 {
                fill(m, page(i), m.vmid().0 as u8 + i as u8);
            } else {
                assert_eq!(contents(m, page(i)), vec![0; PAGE]);
            }
        }
    }
    let free = e.uvm.free_pages();
    passes(&d, 3);
    let zero = maps[0].anon_at(page(0)).unwrap();
    for m in &maps {
        for i in (0..8).filter(|i| i % 4 != 3) {
            assert!(
                Arc::ptr_eq(&m.anon_at(page(i)).unwrap(), &zero),
                "{m:?} page {i}"
            );
        }
    }
    let s = e.uvm.stats();
    assert_eq!(
        (s.dedup_merged, s.dedup_zero),
        (17, 17),
        "18 zero pages, one kept"
    );
    assert_eq!(e.uvm.free_pages(), free + 17);
    let vms: Vec<(u16, &Map)> = maps.iter().map(|m| (m.vmid().0, m.as_ref())).collect();
    let acc = account(&e.uvm, &vms, &d.zero_anons());
    for v in &acc.vms {
        assert_eq!((v.zero, v.shared), (6, 6), "{v:?}");
    }
    assert_eq!((acc.global.saved.dedup, acc.global.max_sharers), (17, 3));
    // A write to a zero page copies it; the others still read zero.
    fill(&maps[1], page(0), 0x99);
    assert_eq!(contents(&maps[1], page(0)), vec![0x99; PAGE]);
    assert_eq!(contents(&maps[0], page(0)), vec![0; PAGE]);
    assert_eq!(contents(&maps[2], page(1)), vec![0; PAGE]);
}

/// A page that changes every pass is hashed after 1, 2, 4, 8, 16 passes: 5 times in 20 passes
/// (a page that keeps its contents is hashed every pass).
#[test]
fn volatile_pages_back_off() {
    let e = env(32);
    let m = e.anon_map(2);
    let d = Dedup::new(&e.uvm);
    d.enable_map(&m);
    fill(&m, page(1), 0x42);
    for n in 0..20u8 {
        fill(&m, page(0), n);
        pass(&d);
    }
    let s = m.stats().snapshot();
    assert_eq!(s.dedup_scanned, 5 + 20);
    assert_eq!(s.dedup_volatile, 4);
}

#[test]
fn dedup_is_switched_per_map_and_globally() {
    let e = env(64);
    let (a, b, d) = two_maps(&e, 1, frame_hash);
    fill(&a, page(0), 7);
    fill(&b, page(0), 7);
    d.set_enabled(false);
    assert_eq!(d.scan(100), ScanReport::default());
    d.set_enabled(true);
    d.disable_map(&b);
    assert!(!d.is_enabled(&b) && d.is_enabled(&a));
    passes(&d, 3);
    assert!(!same_anon(&a, &b, page(0)));
    d.enable_map(&b);
    passes(&d, 3);
    assert!(same_anon(&a, &b, page(0)));
}

#[test]
fn a_dropped_vm_gives_its_saving_back() {
    let e = env(64);
    let (a, b, d) = two_maps(&e, 2, frame_hash);
    for m in [&a, &b] {
        fill(m, page(0), 3);
        fill(m, page(1), 4);
    }
    passes(&d, 3);
    assert_eq!(e.uvm.stats().dedup_saved(), 2);
    drop(b);
    assert_eq!(e.uvm.stats().dedup_saved(), 0);
    assert_eq!(contents(&a, page(0)), vec![3; PAGE]);
    d.scan(100);
    drop(a);
    assert_eq!(e.uvm.free_pages(), e.uvm.total_pages(), "nothing leaked");
}

/// A page a fork shares (`an_ref` 2) is a stable node: a third VM's identical private page
/// merges into it, and every VM keeps its own bytes after writes.
#[test]
fn a_private_twin_merges_into_a_page_a_fork_shares() {
    let e = env(64);
    let a = e.anon_map(2);
    fill(&a, page(0), 0x61);
    let child = a.fork(crate::pmap::Vmid(2)).unwrap();
    fill(&a, page(1), 0x62); // the amap copy: page 0's anon is now shared, an_ref 2
    let shared = a.anon_at(page(0)).unwrap();
    assert_eq!(shared.lock().an_ref, 2);
    let c = e.map(3);
    c.insert(anon_spec(0, 2)).unwrap();
    fill(&c, page(0), 0x61);
    let d = Dedup::new(&e.uvm);
    for m in [&a, &child, &c] {
        d.enable_map(m);
    }
    let c_frame = c.mapped_page(page(0)).unwrap().0;
    passes(&d, 2);
    assert!(Arc::ptr_eq(&c.anon_at(page(0)).unwrap(), &shared));
    let (an_ref, merged) = {
        let st = shared.lock();
        (st.an_ref, st.merged)
    };
    assert_eq!((an_ref, merged), (3, 1));
    let info = e.uvm.page_info(c_frame);
    assert_eq!(
        info.owner,
        crate::page::OwnerKind::Free,
        "C's frame was freed"
    );
    assert_eq!(e.uvm.stats().dedup_saved(), 1);
    fill(&c, page(0), 0x63);
    assert_eq!(contents(&c, page(0)), vec![0x63; PAGE]);
    assert_eq!(contents(&a, page(0)), vec![0x61; PAGE]);
    assert_eq!(contents(&child, page(0)), vec![0x61; PAGE]);
    assert_eq!(e.uvm.stats().dedup_saved(), 0);
}

#[test]
fn a_merge_costs_one_tlb_invalidation_per_changed_mapping() {
    let e = env(64);
    let (a, b, d) = two_maps(&e, 2, frame_hash);
    let c = e.map(3);
    c.insert(anon_spec(0, 2)).unwrap();
    d.enable_map(&c);
    // Page 1 differs per map and keeps each map's stage-2 tables in use (an emptied table's
    // teardown has invalidations of its own).
    for (m, own) in [(&a, 1), (&b, 2), (&c, 3)] {
        fill(m, page(0), 0x3c);
        fill(m, page(1), own);
    }
    pass(&d);
    e.tlb.clear();
    pass(&d);
    assert!(same_anon(&a, &b, page(0)) && same_anon(&a, &c, page(0)));
    // b into a: a's writable mapping made read-only (1), b's removed (1); c into the stable anon,
    // read-only already (0): c's removed (1). Write-protecting each duplicate before freeing it
    // took 5.
    assert_eq!(e.tlb.ipa_count(), 3, "{:?}", e.tlb.invalidations());
    for m in [&a, &b, &c] {
        assert_eq!(contents(m, page(0)), vec![0x3c; PAGE]);
    }
}
