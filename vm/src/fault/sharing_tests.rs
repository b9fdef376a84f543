//! Unit tests of what sharers see: engine bugs 4 and 5 (described with their regression tests
//! in `vm/tests/engine_bugs.rs`), and shared anons through swap.

use super::*;
use crate::map::Inherit;
use crate::page::PageFlags;
use crate::testenv::*;

#[test]
fn case_1b_in_a_shared_amap_unmaps_the_old_page_from_the_sharers() {
    let e = env(64);
    let p = e.anon_map(4);
    p.copy_out(page(0), &[1]).unwrap();
    let _c = p.fork(crate::pmap::Vmid(2)).unwrap(); // COPY: the anon gets an_ref 2
    p.set_inherit(page(0), page(4), Inherit::Share).unwrap();
    let s = p.fork(crate::pmap::Vmid(3)).unwrap(); // p and s share one amap
    assert_eq!(rd(&p, page(0)).unwrap().case, FaultCase::Anon1A);
    let (old, _) = p.mapped_page(page(0)).unwrap();
    assert_eq!(wr(&s, page(0)).unwrap().case, FaultCase::AnonCow1B);
    assert_eq!(
        p.mapped_page(page(0)),
        None,
        "the sharer's mapping of the old page is gone"
    );
    let mut b = [0u8];
    s.copy_out(page(0), &[2]).unwrap();
    p.copy_in(page(0), &mut b).unwrap();
    assert_eq!(b, [2]);
    assert_ne!(p.mapped_page(page(0)).unwrap().0, old);
}

#[test]
fn writable_neighbour_object_pages_are_not_clean() {
    let e = env(64);
    let img = e.image(8 * PAGE_SIZE as usize);
    let a = e.map(1);
    a.insert(image_spec(&img, 0, 8)).unwrap();
    a.advise(page(0), page(8), crate::map::Advice::Random)
        .unwrap();
    rd(&a, page(2)).unwrap(); // object page 2 resident, CLEAN
    let b = e.map(2);
    let mut spec = image_spec(&img, 0, 8);
    spec.copy_on_write = false;
    spec.anon = false;
    b.insert(spec).unwrap();
    assert!(rd(&b, page(1)).unwrap().neighbours > 0);
    let (pg, p) = b.mapped_page(page(2)).expect("neighbour mapped");
    assert!(p.contains(Prot::WRITE));
    assert!(!e.uvm.page_info(pg).flags.contains(PageFlags::CLEAN));
}

/// Anons a clone shares copy-on-write (`an_ref` 2, mapped by both VMs) are written to swap once
/// each, in one clustered request, and come back shared: after the page-in through one VM the
/// other resolves the same frame without a read of its own, `an_ref` is still 2, and both read
/// the data.
#[test]
fn a_shared_anon_is_written_once_and_comes_back_shared() {
    use core::sync::atomic::Ordering;
    let e = env(64);
    let swap = crate::swap::MemSwap::new(64);
    e.uvm.set_swap(swap.clone());
    let p = e.anon_map(4);
    for i in 0..4u8 {
        p.copy_out(page(i.into()), &[i + 1]).unwrap();
    }
    let c = p.fork(crate::pmap::Vmid(2)).unwrap();
    let anons: alloc::vec::Vec<_> = (0..4)
        .map(|i| {
            assert_eq!(rd(&c, page(i)).unwrap().case, FaultCase::Anon1A);
            let (a, b) = (p.anon_at(page(i)).unwrap(), c.anon_at(page(i)).unwrap());
            assert!(alloc::sync::Arc::ptr_eq(&a, &b));
            assert_eq!(a.lock().an_ref, 2);
            a
        })
        .collect();

    assert_eq!(e.uvm.reclaim(4), 4);
    assert_eq!(
        swap.writes.load(Ordering::Relaxed),
        4,
        "one write an anon, not one a VM"
    );
    assert_eq!(swap.write_requests.load(Ordering::Relaxed), 1);
    for (i, a) in (0..4).zip(&anons) {
        assert!(a.lock().page.is_none(), "page {i} is out");
        assert_eq!((prot(&p, page(i)), prot(&c, page(i))), (None, None));
    }

    for (i, a) in (0..4).zip(&anons) {
        // In through the clone, then the parent finds it resident: one read.
        assert_eq!(rd(&c, page(i)).unwrap().case, FaultCase::Anon1A);
        assert_eq!(rd(&p, page(i)).unwrap().case, FaultCase::Anon1A);
        let (pc, _) = c.mapped_page(page(i)).unwrap();
        let (pp, _) = p.mapped_page(page(i)).unwrap();
        assert_eq!(pc, pp, "page {i}: both VMs map the one frame");
        assert_eq!(a.lock().an_ref, 2);
        let want = u8::try_from(i + 1).unwrap();
        assert_eq!((e.byte(&p, page(i)), e.byte(&c, page(i))), (want, want));
    }
    assert_eq!(swap.reads.load(Ordering::Relaxed), 4);
    assert_eq!(
        p.stats().snapshot().pageins + c.stats().snapshot().pageins,
        4
    );
}
