//! The bad-slot rules of swap I/O errors (issue 10 point 5; the QEMU side is scenarios
//! `swapfail-read` and `swapfail-write`): a failed page-out keeps the page resident with its data
//! and retires the slot; a failed page-in loses that anon's data for good and retires the slot;
//! a retired slot is never allocated again.

use super::*;
use crate::anon::SwapSlot;
use crate::swap::{MemSwap, SlotState};
use crate::testenv::*;

/// A map of 4 anon pages, page `n` holding byte `0x10 + n`, over a device of `slots` slots.
fn filled(e: &Env, slots: u32) -> (Arc<Map>, Arc<MemSwap>) {
    let swap = MemSwap::new(slots);
    e.uvm.set_swap(swap.clone());
    let m = e.anon_map(4);
    for n in 0..4 {
        m.copy_out(page(n), &[0x10 + n as u8]).unwrap();
    }
    (m, swap)
}

#[test]
fn a_failed_pageout_keeps_the_page_and_its_data_and_retires_the_slot() {
    let e = env(64);
    let (m, swap) = filled(&e, 3);
    let used = e.uvm.free_pages();
    swap.fail_next_writes(1);
    assert!(!m.pageout(page(0)), "the frame is not freed");
    assert_eq!(e.uvm.free_pages(), used);
    let a = m.anon_at(page(0)).unwrap();
    assert!(a.lock().page.is_some(), "still resident");
    assert_eq!(a.lock().swslot, SwapSlot::None, "the anon keeps no slot");
    assert_eq!(e.uvm.swap().unwrap().map.lock().state(1), Some(SlotState::Bad));
    assert_eq!(e.uvm.stats().swpgbad, 1);
    // Unmapped for the write; the refault finds the resident page and its byte.
    rd(&m, page(0)).unwrap();
    assert_eq!(e.byte(&m, page(0)), 0x10);
    // The bad slot is skipped: the next two page-outs take slots 2 and 3, then the disk is full.
    assert!(m.pageout(page(1)) && m.pageout(page(2)));
    let slots: alloc::vec::Vec<SwapSlot> = (1..3).map(|n| m.anon_at(page(n)).unwrap().lock().swslot).collect();
    assert_eq!(slots, [SwapSlot::Slot(2), SwapSlot::Slot(3)]);
    assert!(!m.pageout(page(3)), "no free slot: slot 1 is never reused");
    assert_eq!(e.uvm.swap().unwrap().counts(), (0, 2, 1));
    assert_eq!((e.byte(&m, page(0)), e.byte(&m, page(3))), (0x10, 0x13));
}

#[test]
fn a_failed_pagein_loses_only_that_anon_and_its_slot_is_never_allocated_again() {
    let e = env(64);
    let (m, swap) = filled(&e, 2);
    assert!(m.pageout(page(0)));
    swap.fail_next_reads(1);
    assert_eq!(rd(&m, page(0)), Err(FaultError::Io));
    // Every later access fails the same way, writes too (the data is gone, nothing may pretend
    // otherwise by zero-filling it).
    assert_eq!(wr(&m, page(0)), Err(FaultError::Io));
    assert_eq!(rd(&m, page(0)), Err(FaultError::Io));
    assert_eq!(swap.reads.load(core::sync::atomic::Ordering::Relaxed), 0, "never read again");
    // The other pages are untouched, and the bad slot 1 is not handed out again.
    assert!(m.pageout(page(1)));
    assert_eq!(m.anon_at(page(1)).unwrap().lock().swslot, SwapSlot::Slot(2));
    assert!(!m.pageout(page(2)), "slot 2 used, slot 1 bad: full");
    rd(&m, page(1)).unwrap();
    assert_eq!((e.byte(&m, page(1)), e.byte(&m, page(2))), (0x11, 0x12));
    assert_eq!(e.uvm.swap().unwrap().counts().2, 1);
}
