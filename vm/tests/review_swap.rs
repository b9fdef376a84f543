//! Regression tests for the swap-slot and `install_anon` bugs of issue 7 (found by review, not
//! by the model test: they need something to happen *during* an I/O, which the simulated swap
//! device's hook, `MemSwap::set_hook`, now makes happen), and for one found while fixing them (a
//! borrowed page RELEASED by its borrower). Each test's doc says what the bug was.
#![forbid(unsafe_code)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use vm::addr::{Access, Prot};
use vm::fault::{fault, FaultError, FaultFlags};
use vm::map::{Map, MapError};
use vm::object::{loan_to_anon, ImageObject, Object};
use vm::pdaemon::pageout_anon;
use vm::pmap::Vmid;
use vm::swap::{SwapIoError, SwapOp};

/// A VM with one private page, written with `v`.
fn vm_with_page(env: &Env, vmid: u16, v: u64) -> Arc<Map> {
    let map = Map::new(&env.uvm, Vmid(vmid)).unwrap();
    map.insert(anon_spec(0, 1, Prot::READ | Prot::WRITE))
        .unwrap();
    guest_write(&map, 0, v);
    map
}

/// (free, used, bad) swap slots.
fn slots(env: &Env) -> (u32, u32, u32) {
    env.uvm.swap().expect("swap configured").counts()
}

/// Bug 1 (issue 7): an anon freed while its page is BUSY being paged out gave its swap slot back
/// at once (`anon_free_locked`; the page was only marked RELEASED). Another page-out took the
/// slot and wrote its page there, then the first write landed over it: the second VM read the
/// first VM's data back. The slot must stay allocated until the BUSY holder is done.
#[test]
fn slot_of_an_anon_freed_during_its_pageout_is_not_reused_mid_write() {
    let env = Env::new(64, 1); // one slot: a freed slot is the next one handed out
    let a = vm_with_page(&env, 1, 0xaaaa);
    let b = vm_with_page(&env, 2, 0xbbbb);
    let anon_a = a.anon_at(ipa(0)).unwrap();
    let anon_b = b.anon_at(ipa(0)).unwrap();

    let fired = Arc::new(AtomicBool::new(false));
    let (hook_fired, hook_a, hook_uvm) = (fired.clone(), a.clone(), env.uvm.clone());
    let hook_b = anon_b.clone();
    env.swap.set_hook(Some(Arc::new(move |op, _slot| {
        if op == SwapOp::Write && !hook_fired.swap(true, Ordering::SeqCst) {
            // A's write is in flight: VM A lets go of its page, then B's page is paged out.
            hook_a.remove(ipa(0), ipa(1)).unwrap();
            pageout_anon(&hook_uvm, &hook_b);
        }
        Ok(())
    })));
    assert!(pageout_anon(&env.uvm, &anon_a), "A's page is freed");
    env.swap.set_hook(None);
    assert!(fired.load(Ordering::SeqCst));

    assert_eq!(
        guest_read(&b, 0),
        0xbbbb,
        "VM B reads VM A's data from a reused slot"
    );
    assert_eq!(
        slots(&env),
        (1, 0, 0),
        "A's slot is free once its write is done"
    );
    // The slot works for B now.
    assert!(pageout_anon(&env.uvm, &anon_b));
    assert_eq!(guest_read(&b, 0), 0xbbbb);
}

/// Bug 1, same root (issue 7): a swap-in whose read failed after its anon was freed meanwhile
/// (page RELEASED) did not mark the slot bad: the anon had already given the slot back, so the
/// failing slot went back into use.
#[test]
fn failed_read_of_an_anon_freed_during_it_marks_the_slot_bad() {
    let env = Env::new(64, 1);
    let a = vm_with_page(&env, 1, 0xaaaa);
    let anon_a = a.anon_at(ipa(0)).unwrap();
    assert!(pageout_anon(&env.uvm, &anon_a));
    assert_eq!(slots(&env), (0, 1, 0));

    let hook_a = a.clone();
    let fired = Arc::new(AtomicBool::new(false));
    let hook_fired = fired.clone();
    env.swap.set_hook(Some(Arc::new(move |op, _slot| {
        if op == SwapOp::Read && !hook_fired.swap(true, Ordering::SeqCst) {
            // The swap-in is in flight: the VM lets go of the page, and the read fails.
            hook_a.remove(ipa(0), ipa(1)).unwrap();
            return Err(SwapIoError);
        }
        Ok(())
    })));
    let r = fault(&a, ipa(0), Access::Read, FaultFlags::empty());
    env.swap.set_hook(None);
    assert!(fired.load(Ordering::SeqCst));
    assert_eq!(r, Err(FaultError::Io));
    assert_eq!(slots(&env), (0, 0, 1), "the slot that failed is marked bad");
    let (_, active, inactive) = env.uvm.queue_counts();
    assert_eq!((active, inactive), (0, 0), "the swap-in page is freed");
}

/// Bug 1, write side (issue 7): a page-out whose write failed after its anon was freed meanwhile
/// had no slot left to mark bad (the anon had given it back at once): the failing slot went
/// back into use. Now the slot comes with the RELEASED page and is marked bad.
#[test]
fn failed_write_of_an_anon_freed_during_it_marks_the_slot_bad() {
    let env = Env::new(64, 1);
    let a = vm_with_page(&env, 1, 0xaaaa);
    let anon_a = a.anon_at(ipa(0)).unwrap();
    let hook_a = a.clone();
    let fired = Arc::new(AtomicBool::new(false));
    let hook_fired = fired.clone();
    env.swap.set_hook(Some(Arc::new(move |op, _slot| {
        if op == SwapOp::Write && !hook_fired.swap(true, Ordering::SeqCst) {
            hook_a.remove(ipa(0), ipa(1)).unwrap();
            return Err(SwapIoError);
        }
        Ok(())
    })));
    assert!(
        pageout_anon(&env.uvm, &anon_a),
        "the released page is freed"
    );
    env.swap.set_hook(None);
    assert!(fired.load(Ordering::SeqCst));
    assert_eq!(slots(&env), (0, 0, 1), "the slot that failed is marked bad");
    let (_, active, inactive) = env.uvm.queue_counts();
    assert_eq!((active, inactive), (0, 0), "the page is freed");
}

/// Bug 4 (issue 7): `Map::install_anon`'s error paths dropped the anon without unreferencing
/// it. For a loaned anon the object page kept its loan for ever: the pagedaemon could never take
/// it, and when the object went the frame was orphaned, lost for good.
#[test]
fn failed_install_anon_ends_the_loan() {
    let env = Env::new(64, 4);
    let img = ImageObject::new(&env.uvm, image_bytes(0, 2 * PAGE));
    let map = Map::new(&env.uvm, Vmid(1)).unwrap();
    // Page 0..2: an image entry still `needs_copy` (no amap yet); page 4: nothing.
    let mut spec = image_spec(&img, 0, 0, 2);
    spec.anon = false;
    map.insert(spec).unwrap();
    let free0 = env.uvm.free_pages();

    for (n, off) in [(0u64, 0u64), (4, 1)] {
        let anon = loan_to_anon(&env.uvm, img.as_ref(), off * PAGE as u64).unwrap();
        let pg = anon.lock().page.unwrap();
        assert_eq!(env.uvm.page_info(pg).loan_count, 1);
        assert_eq!(map.install_anon(ipa(n), anon), Err(MapError::NoEntry));
        assert_eq!(
            env.uvm.page_info(pg).loan_count,
            0,
            "the loan of a refused anon never ends (page {n})"
        );
    }
    // Both object pages are reclaimable, and every frame is back.
    assert_eq!(env.uvm.reclaim(2), 2);
    assert_eq!(env.uvm.free_pages(), free0);
}

/// Bug 4 (issue 7), frame side: with the object gone while the loan was leaked, the orphaned
/// frame never came back to the pool.
#[test]
fn failed_install_anon_loses_no_frame_when_the_object_goes() {
    let env = Env::new(64, 4);
    let map = Map::new(&env.uvm, Vmid(1)).unwrap();
    let free0 = env.uvm.free_pages();
    let img = ImageObject::new(&env.uvm, image_bytes(0, PAGE));
    let anon = loan_to_anon(&env.uvm, img.as_ref(), 0).unwrap();
    assert_eq!(map.install_anon(ipa(0), anon), Err(MapError::NoEntry));
    drop(img);
    assert_eq!(env.uvm.free_pages(), free0, "a frame is lost for good");
}

/// Found while fixing bug 1 (issue 7): freeing an anon that borrows an object page (an object →
/// anon loan) while someone else held that page BUSY marked the object's page RELEASED instead of
/// ending the loan, so the BUSY holder freed the object's page while the object still had it.
/// Here the holder is a case-2B fault on the same object page, keeping it BUSY through the
/// reclaim its allocation needs; the reclaim's page-out frees the borrower (the swap hook).
#[test]
fn anon_freed_while_its_borrowed_page_is_busy_ends_the_loan() {
    let env = Env::new(64, 8);
    let img = ImageObject::new(&env.uvm, image_bytes(0, 2 * PAGE));
    let victim = vm_with_page(&env, 3, 0x3333); // what the pagedaemon will page out
    let borrower = Map::new(&env.uvm, Vmid(2)).unwrap();
    borrower
        .insert(anon_spec(0, 1, Prot::READ | Prot::WRITE))
        .unwrap();
    let loan = loan_to_anon(&env.uvm, img.as_ref(), 0).unwrap();
    let pg = loan.lock().page.unwrap();
    borrower.install_anon(ipa(0), loan).unwrap();
    let vm1 = Map::new(&env.uvm, Vmid(1)).unwrap();
    vm1.insert(image_spec(&img, 0, 0, 1)).unwrap();

    let fired = Arc::new(AtomicBool::new(false));
    let (hook_fired, hook_borrower) = (fired.clone(), borrower.clone());
    env.swap.set_hook(Some(Arc::new(move |op, _slot| {
        if op == SwapOp::Write && !hook_fired.swap(true, Ordering::SeqCst) {
            hook_borrower.remove(ipa(0), ipa(1)).unwrap();
        }
        Ok(())
    })));
    // No guest page can be allocated: the 2B write fault reclaims, holding the object page BUSY.
    env.uvm.set_reserve(env.uvm.free_pages());
    let r = fault(&vm1, ipa(0), Access::Write, FaultFlags::empty());
    env.uvm.set_reserve(0);
    env.swap.set_hook(None);
    assert!(fired.load(Ordering::SeqCst), "the victim was paged out");

    assert_eq!(env.uvm.page_info(pg).loan_count, 0, "the loan ended");
    assert_eq!(img.resident(0), Some(pg));
    assert_eq!(
        env.uvm.page_info(pg).owner,
        vm::page::OwnerKind::Object { offset: 0 },
        "the object's page was freed under it (fault: {r:?})"
    );
    assert_eq!(guest_read(&vm1, 0), image_word(0));
    assert_eq!(guest_read(&victim, 0), 0x3333);
}
