//! Unit tests of the out-of-memory policy (`Fault::reclaim_or_nomem`): a fault that cannot make
//! progress ends with `NoMemory`, it does not restart for ever.

use super::*;
use crate::map::Inherit;
use crate::page::PageFlags;
use crate::pmap::Vmid;
use crate::swap::MemSwap;
use crate::testenv::*;

/// Wire the pages of `[first, first + max)` one by one until the pool is exhausted; returns how
/// many were wired.
fn wire_until_full(m: &Map, first: u64, max: u64) -> u64 {
    let mut n = 0;
    while n < max && m.wire(page(first + n), page(first + n + 1)).is_ok() {
        n += 1;
    }
    assert!(n < max, "the pool did not run out");
    n
}

#[test]
fn case_2b_does_not_count_freeing_its_own_object_page_as_progress() {
    let e = env(40);
    let obj = e.image(8 * PAGE_SIZE as usize);
    let m = e.map(1);
    m.insert(anon_spec(0, 48)).unwrap();
    m.insert(image_spec(&obj, 48, 8)).unwrap();
    m.advise(page(48), page(56), Advice::Random).unwrap();
    // Everything else wired: nothing is pageable (and there is no swap).
    let wired = wire_until_full(&m, 0, 48);
    // One frame comes back: enough to read the object page, not to promote it.
    m.remove(page(wired - 1), page(wired)).unwrap();
    assert_eq!(e.uvm.free_pages(), 1);

    // The seed's livelock: read the object page into the last frame, fail to allocate the anon,
    // the pagedaemon frees the object page (clean), refault, read it again, … → Restart for ever.
    assert_eq!(wr(&m, page(50)), Err(FaultError::NoMemory));
    let s = m.stats().snapshot();
    assert!(s.fltnoanon >= 1);
    assert_eq!(
        s.fltrestart, 0,
        "no Restart: the fault could not make progress"
    );
    // The object page stayed resident and is no longer BUSY.
    let opg = obj
        .resident(2 * PAGE_SIZE)
        .expect("the object page was kept");
    assert!(!e.uvm.page_info(opg).flags.contains(PageFlags::BUSY));
    // A read needs no new frame: 2A.
    assert_eq!(rd(&m, page(50)).unwrap().case, FaultCase::Obj2A);
    // With a frame to spare the write promotes.
    m.remove(page(wired - 2), page(wired - 1)).unwrap();
    assert_eq!(wr(&m, page(50)).unwrap().case, FaultCase::ObjCopy2B);
    assert_eq!(e.byte(&m, page(50)), 3);
}

#[test]
fn case_1b_does_not_count_paging_out_the_page_it_copies_as_progress() {
    let e = env(40);
    e.uvm.set_swap(MemSwap::new(16));
    let p = e.map(1);
    p.insert(anon_spec(0, 1)).unwrap();
    let mut wired_spec = anon_spec(8, 48);
    wired_spec.inherit = Inherit::None;
    p.insert(wired_spec).unwrap();
    p.copy_out(page(0), &[7]).unwrap();
    let c = p.fork(Vmid(2)).unwrap();
    assert_eq!(rd(&c, page(0)).unwrap().case, FaultCase::Anon1A);
    // Every other frame wired: the anon page both maps share is the only pageable one.
    let wired = wire_until_full(&p, 8, 48);
    // Filling up paged the shared page out (and freed the child's emptied tables): give three
    // frames back and swap it in again through the child.
    p.remove(page(8 + wired - 3), page(8 + wired)).unwrap();
    assert_eq!(e.uvm.free_pages(), 3);
    assert_eq!(rd(&c, page(0)).unwrap().case, FaultCase::Anon1A);
    assert!(c.anon_at(page(0)).unwrap().lock().page.is_some());
    assert_eq!(e.uvm.free_pages(), 0);

    // Without the fix: 1B cannot allocate, the pagedaemon pages out the page 1B copies from,
    // the refault swaps it back in, … → Restart for ever.
    assert_eq!(wr(&c, page(0)), Err(FaultError::NoMemory));
    assert_eq!(c.stats().snapshot().fltrestart, 0);
    let anon = c.anon_at(page(0)).unwrap();
    let pg = anon.lock().page.expect("still resident");
    assert!(!e.uvm.page_info(pg).flags.contains(PageFlags::BUSY));
    // Nothing was lost, and with a frame to spare the copy happens.
    p.remove(page(8), page(9)).unwrap();
    assert_eq!(wr(&c, page(0)).unwrap().case, FaultCase::AnonCow1B);
    assert_eq!(e.byte(&c, page(0)), 7);
    let mut b = [0u8];
    p.copy_in(page(0), &mut b).unwrap();
    assert_eq!(b, [7]);
}

#[test]
fn a_fault_reclaims_a_bounded_number_of_times() {
    // Swap that accepts nothing: every pageout fails, the queues stay full of anon pages.
    let e = env(24);
    let swap = MemSwap::new(64);
    e.uvm.set_swap(swap.clone());
    let m = e.anon_map(64);
    swap.fail_next_writes(u32::MAX);
    let mut n = 0;
    let err = loop {
        match wr(&m, page(n)) {
            Ok(_) => n += 1,
            Err(err) => break err,
        }
    };
    assert_eq!(err, FaultError::NoMemory);
    assert_eq!(m.stats().snapshot().fltrestart, 0);
}

/// A guest that touched every resident page since it was queued (every access flag set, as after
/// writing all of its memory once) still gets frames: the pagedaemon keeps sweeping until it has
/// cleared the references, then pages out. A sweep shorter than the queues would find only
/// referenced pages and end the fault with `NoMemory` while almost everything is reclaimable.
#[test]
fn reclaim_pages_out_when_every_resident_page_was_referenced() {
    let e = env(1024);
    e.uvm.set_swap(MemSwap::new(4096));
    let m = e.anon_map(2048);
    for i in 0..2048u64 {
        assert!(
            wr(&m, page(i)).is_ok(),
            "write fault on page {i} of 2048 with 1024 frames and swap"
        );
        m.copy_out(page(i), &i.to_le_bytes()).unwrap();
    }
    for i in 0..2048u64 {
        let mut b = [0u8; 8];
        m.copy_in(page(i), &mut b).unwrap();
        assert_eq!(u64::from_le_bytes(b), i, "page {i}");
    }
    assert!(e.uvm.daemon_stats().pageouts >= 1024);
    assert!(m.stats().snapshot().pageins >= 1024);
}
