//! Unit tests of what sharers see: engine bugs 4 and 5 (described with their regression tests
//! in `vm/tests/engine_bugs.rs`).

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
