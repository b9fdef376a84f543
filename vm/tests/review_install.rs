//! Issue 7, bug 4 and the `install_anon` protection race: regression tests for
//! `Map::install_anon`, the entry the loan and dedup paths use to put an anon into an amap.
#![forbid(unsafe_code)]

mod common;

use common::*;
use vm::addr::Prot;
use vm::map::{Map, MapError};
use vm::object::{loan_to_anon, ImageObject, Object};
use vm::pmap::Vmid;

/// Bug 4 (issue 7), fixed: `install_anon`'s error paths dropped the anon they were given without
/// unreferencing it. For a loaned anon the loan was never ended: the object's page kept
/// `loan_count == 1` for ever, so dropping the image orphaned it instead of freeing it, and the
/// frame was lost to the pool for good.
#[test]
fn a_failed_install_ends_the_loan_and_loses_no_frame() {
    let env = Env::new(64, 16);
    let free_at_start = env.uvm.free_pages();
    let img = ImageObject::new(&env.uvm, image_bytes(0, 2 * PAGE));
    let map = Map::new(&env.uvm, Vmid(1)).unwrap();
    map.insert(anon_spec(0, 1, Prot::READ | Prot::WRITE))
        .unwrap();

    let anon = loan_to_anon(&env.uvm, img.as_ref(), 0).expect("loan");
    let pg = img.resident(0).expect("the loan made the page resident");
    assert_eq!(env.uvm.page_info(pg).loan_count, 1);
    // No entry at page 5: refused, and the anon given up with its loan.
    assert_eq!(map.install_anon(ipa(5), anon), Err(MapError::NoEntry));
    assert_eq!(
        env.uvm.page_info(pg).loan_count,
        0,
        "the refused anon still holds its loan"
    );

    drop(map);
    drop(img);
    assert_eq!(
        env.uvm.free_pages(),
        free_at_start,
        "a frame never came back to the pool"
    );
}

/// Bug 4's other error path: an entry whose amap must still be copied (`needs_copy`, after a
/// fork) refuses the anon, which must be given up in the same way.
#[test]
fn an_install_refused_for_needs_copy_ends_the_loan() {
    let env = Env::new(64, 16);
    let img = ImageObject::new(&env.uvm, image_bytes(0, 2 * PAGE));
    let parent = Map::new(&env.uvm, Vmid(1)).unwrap();
    parent
        .insert(anon_spec(0, 2, Prot::READ | Prot::WRITE))
        .unwrap();
    vm::fault::fault(
        &parent,
        ipa(1),
        vm::addr::Access::Write,
        vm::fault::FaultFlags::empty(),
    )
    .expect("the amap exists once written");
    let child = parent.fork(Vmid(2)).unwrap();
    assert!(child.entry(ipa(0)).expect("entry").needs_copy);

    let anon = loan_to_anon(&env.uvm, img.as_ref(), 0).expect("loan");
    let pg = img.resident(0).expect("resident");
    assert_eq!(child.install_anon(ipa(0), anon), Err(MapError::NoEntry));
    assert_eq!(
        env.uvm.page_info(pg).loan_count,
        0,
        "the refused anon still holds its loan"
    );
}
