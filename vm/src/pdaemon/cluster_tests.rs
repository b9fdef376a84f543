//! Unit tests of clustered page-out (`cluster.rs`): one request for neighbouring pages in
//! neighbouring slots, and a failed request that loses nothing.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::{SwapCluster, CLUSTER_PAGES};
use crate::anon::SwapSlot;
use crate::map::Map;
use crate::swap::{MemSwap, SlotState};
use crate::testenv::*;

/// Write a distinct value to each of the first `n` pages of `m`.
fn fill(m: &Map, n: u64) {
    for i in 0..n {
        m.copy_out(page(i), &(i + 1).to_le_bytes()).unwrap();
    }
}

/// Every one of the first `n` pages reads back its value.
fn check(m: &Map, n: u64) {
    for i in 0..n {
        let mut b = [0u8; 8];
        m.copy_in(page(i), &mut b).unwrap();
        assert_eq!(u64::from_le_bytes(b), i + 1, "page {i}");
    }
}

/// (resident, slot) of the anon at page `i`.
fn where_is(m: &Map, i: u64) -> (bool, SwapSlot) {
    let anon = m.anon_at(page(i)).unwrap();
    let a = anon.lock();
    (a.page.is_some(), a.swslot)
}

/// The pagedaemon pages out pages a guest wrote in order with one request for each cluster, and
/// neighbouring pages land in neighbouring slots.
#[test]
fn neighbouring_page_outs_are_one_request_in_neighbouring_slots() {
    let e = env(256);
    let swap = MemSwap::new(1024);
    e.uvm.set_swap(swap.clone());
    let m = e.anon_map(64);
    fill(&m, 64);
    let want = 2 * CLUSTER_PAGES;
    assert_eq!(e.uvm.reclaim(want), want);
    assert_eq!(swap.writes.load(Ordering::Relaxed), want as u64);
    assert_eq!(swap.write_requests.load(Ordering::Relaxed), 2);
    let s = e.uvm.daemon_stats();
    assert_eq!((s.pageouts, s.pdpageouts), (want as u64, 2));
    let out: Vec<(u64, u32)> = (0..64)
        .filter_map(|i| match where_is(&m, i) {
            (false, SwapSlot::Slot(s)) => Some((i, s)),
            _ => None,
        })
        .collect();
    assert_eq!(out.len(), want);
    for w in out.windows(2) {
        assert_eq!(
            w[1].0,
            w[0].0 + 1,
            "the oldest pages went, in order: {out:?}"
        );
        assert_eq!(w[1].1, w[0].1 + 1, "in neighbouring slots: {out:?}");
    }
    check(&m, 64);
}

/// A failed cluster write: every page stays resident, dirty and slotless, every slot of the
/// request is marked bad (never handed out again), the reserved slots no page took are free,
/// and the data is intact; the next page-out puts the pages elsewhere.
#[test]
fn a_failed_cluster_write_keeps_every_page_and_no_slot_of_it() {
    let e = env(64);
    let swap = MemSwap::new(64);
    e.uvm.set_swap(swap.clone());
    let m = e.anon_map(8);
    fill(&m, 8);
    swap.fail_next_writes(1);
    let mut c = SwapCluster::new(&e.uvm, CLUSTER_PAGES).unwrap();
    for i in 0..8 {
        let anon = m.anon_at(page(i)).unwrap();
        assert_eq!(c.add(&anon), (super::Added::Queued, 0));
        assert!(prot(&m, page(i)).is_none(), "unmapped while queued");
    }
    assert_eq!(c.flush(), 0);
    drop(c);
    for i in 0..8 {
        assert_eq!(where_is(&m, i), (true, SwapSlot::None), "page {i}");
    }
    let map = e.uvm.swap().unwrap();
    assert_eq!(map.counts(), (56, 0, 8));
    let s = e.uvm.daemon_stats();
    assert_eq!((s.swpgbad, s.pdpageouts, s.pdfreed), (8, 1, 0));
    check(&m, 8);

    assert_eq!(e.uvm.reclaim(8), 8);
    for i in 0..8 {
        let (resident, slot) = where_is(&m, i);
        let SwapSlot::Slot(slot) = slot else {
            panic!("page {i} has no slot")
        };
        assert!(!resident && slot > 8, "page {i} in slot {slot}");
        assert_eq!(map.map.lock().state(slot), Some(SlotState::Used));
    }
    check(&m, 8);
}

/// An anon freed while its cluster is written leaves its page and slot to the daemon, which
/// frees both; the other pages of the request are paged out as usual.
#[test]
fn an_anon_freed_during_its_cluster_write_frees_its_page_and_slot() {
    let e = env(64);
    let swap = MemSwap::new(64);
    e.uvm.set_swap(swap.clone());
    let m = e.anon_map(4);
    fill(&m, 4);
    let victim = m.clone();
    let once = core::sync::atomic::AtomicBool::new(false);
    swap.set_hook(Some(Arc::new(move |_, _| {
        if !once.swap(true, Ordering::SeqCst) {
            victim.remove(page(2), page(3)).unwrap();
        }
        Ok(())
    })));
    let free_before = e.uvm.free_pages();
    let mut c = SwapCluster::new(&e.uvm, CLUSTER_PAGES).unwrap();
    for i in 0..4 {
        c.add(&m.anon_at(page(i)).unwrap());
    }
    assert_eq!(c.pending(), 4);
    assert_eq!(c.flush(), 4, "all four frames freed, the removed one too");
    swap.set_hook(None);
    // (Unmapping may also have freed emptied stage-2 tables.)
    assert!(e.uvm.free_pages() >= free_before + 4);
    assert_eq!(
        e.uvm.swap().unwrap().counts(),
        (61, 3, 0),
        "the removed anon's slot is free"
    );
    assert!(m.anon_at(page(2)).is_none());
    for i in [0, 1, 3] {
        let mut b = [0u8; 8];
        m.copy_in(page(i), &mut b).unwrap();
        assert_eq!(u64::from_le_bytes(b), i + 1);
    }
}
