//! Unit tests of page wiring following wired mappings (`wire.rs`): engine bugs 2 and 3 (their
//! regression tests and descriptions are in `vm/tests/engine_bugs.rs`).

use super::*;
use crate::testenv::*;

fn snap(map: &Map) -> crate::stats::StatsSnapshot {
    map.stats().snapshot()
}
use alloc::sync::Arc;

fn wire_count(e: &Env, m: &Map, ipa: Ipa) -> u32 {
    let (pg, _) = m.mapped_page(ipa).expect("mapped");
    e.uvm.page_info(pg).wire_count
}

#[test]
fn protect_none_on_a_wired_range_keeps_the_wiring_reachable() {
    let e = env(64);
    let m = e.anon_map(2);
    m.wire(page(0), page(2)).unwrap();
    let (pg, _) = m.mapped_page(page(0)).unwrap();
    m.protect(page(0), page(2), Prot::NONE).unwrap();
    // Still mapped, with no access: the guest takes a permission fault, the entry refuses it.
    assert_eq!(prot(&m, page(0)), Some(Prot::NONE));
    assert_eq!(rd(&m, page(0)), Err(FaultError::Protection));
    m.unwire(page(0), page(2)).unwrap();
    assert_eq!(e.uvm.page_info(pg).wire_count, 0);
    assert_eq!(
        prot(&m, page(0)),
        None,
        "the no-access leaf goes with the wiring"
    );
    assert_eq!(m.stage2().wired(), 0);
    assert_eq!(
        e.uvm.page_info(pg).queue,
        crate::page::Queue::Active,
        "pageable again"
    );
}

#[test]
fn wiring_a_read_only_cow_entry_promotes_now_2b() {
    // WIREMAX (the seed's `uvm_map_pageable`): the maximum protection allows writes, so the
    // wiring fault copies now (cow_now) and a later protect(RW) + write needs no copy: a wired
    // page never changes under the guest.
    let e = env(64);
    let img = e.image(4 * PAGE_SIZE as usize);
    let m = e.map(1);
    let mut spec = image_spec(&img, 0, 4);
    spec.prot = Prot::READ;
    m.insert(spec).unwrap();
    m.wire(page(0), page(1)).unwrap();
    let (newpg, p) = m.mapped_page(page(0)).unwrap();
    assert_eq!(p, Prot::READ, "entered with the current protection");
    assert!(
        m.anon_at(page(0)).is_some(),
        "promoted by the wiring fault (2B)"
    );
    assert_eq!(snap(&m).flt_prcopy, 1);
    assert_eq!(e.uvm.page_info(newpg).wire_count, 1);
    assert_eq!(e.byte(&m, page(0)), 1);
    m.protect(page(0), page(4), Prot::READ | Prot::WRITE)
        .unwrap();
    assert_eq!(wr(&m, page(0)).unwrap().case, FaultCase::Anon1A);
    assert_eq!(
        m.mapped_page(page(0)).unwrap().0,
        newpg,
        "the wired frame stays"
    );
    assert!(m.stage2().is_wired(page(0)));
    m.unwire(page(0), page(1)).unwrap();
    assert_eq!(e.uvm.page_info(newpg).wire_count, 0);
    assert_eq!(m.stage2().wired(), 0);
}

#[test]
fn wiring_a_read_only_shared_anon_promotes_now_1b() {
    let e = env(64);
    let p = e.anon_map(1);
    p.copy_out(page(0), &[7]).unwrap();
    let c = p.fork(crate::pmap::Vmid(2)).unwrap();
    assert_eq!(rd(&c, page(0)).unwrap().case, FaultCase::Anon1A); // the anon: an_ref 2
    let (old, _) = c.mapped_page(page(0)).unwrap();
    p.protect(page(0), page(1), Prot::READ).unwrap();
    p.wire(page(0), page(1)).unwrap(); // WIREMAX: 1B now, the shared page is not wired
    assert_eq!(snap(&p).flt_acow, 1);
    assert_eq!(
        e.uvm.page_info(old).wire_count,
        0,
        "the shared page is not wired"
    );
    let (new, prot_) = p.mapped_page(page(0)).unwrap();
    assert_ne!(new, old);
    assert_eq!(prot_, Prot::READ);
    assert_eq!(e.uvm.page_info(new).wire_count, 1);
    p.protect(page(0), page(1), Prot::READ | Prot::WRITE)
        .unwrap();
    assert_eq!(wr(&p, page(0)).unwrap().case, FaultCase::Anon1A);
    p.copy_out(page(0), &[8]).unwrap();
    p.unwire(page(0), page(1)).unwrap();
    assert_eq!(e.uvm.page_info(new).wire_count, 0);
    let mut b = [0u8];
    c.copy_in(page(0), &mut b).unwrap();
    assert_eq!(b, [7]);
}

#[test]
fn wiring_checks_the_maximum_protection() {
    // The seed wires with WIREMAX: protect(NONE) then wire succeeds, with a no-access wired
    // leaf; the guest still gets Protection; protect(RW) makes the wired page usable.
    let e = env(64);
    let m = e.anon_map(4);
    m.protect(page(0), page(4), Prot::NONE).unwrap();
    m.wire(page(0), page(2)).unwrap();
    assert_eq!(prot(&m, page(0)), Some(Prot::NONE));
    assert!(m.stage2().is_wired(page(0)));
    assert_eq!(wire_count(&e, &m, page(0)), 1);
    assert_eq!(rd(&m, page(0)), Err(FaultError::Protection));
    m.protect(page(0), page(4), Prot::READ | Prot::WRITE)
        .unwrap();
    assert_eq!(wr(&m, page(1)).unwrap().case, FaultCase::Anon1A);
    m.unwire(page(0), page(2)).unwrap();
    assert_eq!(m.stage2().wired(), 0);
    // A maximum protection without READ still wires (the seed asks for max_protection).
    let n = e.map(2);
    n.insert(crate::map::EntrySpec {
        prot: Prot::EXEC,
        max_prot: Prot::EXEC,
        ..anon_spec(0, 1)
    })
    .unwrap();
    n.wire(page(0), page(1)).unwrap();
    assert!(n.stage2().is_wired(page(0)));
    n.unwire(page(0), page(1)).unwrap();
    assert_eq!(n.stage2().wired(), 0);
}

#[test]
fn install_anon_on_a_wired_entry_moves_the_wiring() {
    let e = env(64);
    let img = e.image(4 * PAGE_SIZE as usize);
    let m = e.anon_map(4);
    m.wire(page(0), page(1)).unwrap();
    let old = m.anon_at(page(0)).unwrap();
    let (oldpg, _) = m.mapped_page(page(0)).unwrap();
    assert_eq!(e.uvm.page_info(oldpg).wire_count, 1);
    // The old anon lives on elsewhere (another amap holds it).
    old.lock().an_ref += 1;
    let loan = crate::object::loan_to_anon(&e.uvm, img.as_ref(), PAGE_SIZE).unwrap();
    m.install_anon(page(0), loan.clone()).unwrap();
    assert_eq!(e.uvm.page_info(oldpg).wire_count, 0, "old page unwired");
    assert_eq!(
        e.uvm.page_info(oldpg).queue,
        crate::page::Queue::Active,
        "old page pageable again"
    );
    // Wired means mapped: the new anon's page is mapped WIRED and wired once.
    assert!(m.stage2().is_wired(page(0)));
    assert!(m.anon_at(page(0)).is_some_and(|a| Arc::ptr_eq(&a, &loan)));
    let (newpg, _) = m.mapped_page(page(0)).unwrap();
    assert_eq!(e.uvm.page_info(newpg).wire_count, 1);
    assert_eq!(m.stage2().wired(), 1);
    assert_eq!(e.byte(&m, page(0)), 2);
    m.unwire(page(0), page(1)).unwrap();
    assert_eq!(e.uvm.page_info(newpg).wire_count, 0);
    assert_eq!(m.stage2().wired(), 0);
    crate::anon::anon_unref(&e.uvm, &old);
    assert_eq!(e.uvm.page_info(oldpg).owner, crate::page::OwnerKind::Free);
}

#[test]
fn install_anon_in_a_shared_amap_unmaps_the_old_page_from_the_sharers() {
    let e = env(64);
    let img = e.image(4 * PAGE_SIZE as usize);
    let p = e.anon_map(4);
    p.set_inherit(page(0), page(4), crate::map::Inherit::Share)
        .unwrap();
    p.copy_out(page(0), &[9]).unwrap();
    let s = p.fork(crate::pmap::Vmid(2)).unwrap();
    assert_eq!(rd(&s, page(0)).unwrap().case, FaultCase::Anon1A);
    let loan = crate::object::loan_to_anon(&e.uvm, img.as_ref(), PAGE_SIZE).unwrap();
    p.install_anon(page(0), loan).unwrap();
    assert_eq!(prot(&s, page(0)), None, "the sharer refaults");
    let mut b = [0u8];
    s.copy_in(page(0), &mut b).unwrap();
    assert_eq!(b, [2], "and finds the new anon");
}
