//! Asynchronous swap-in (`anonget` over a device that takes reads and finishes them later,
//! `Uvm::swap_poll`): waiting on one read, out-of-order completion, failure, hand-over by a
//! page-out.

use alloc::sync::Arc;

use super::tests::Woken;
use super::*;
use crate::anon::SwapSlot;
use crate::swap::MemSwap;
use crate::testenv::*;

/// The slot page `n`'s anon was paged out to.
fn slot_of(m: &Map, n: u64) -> u32 {
    match m.anon_at(page(n)).unwrap().lock().swslot {
        SwapSlot::Slot(s) => s,
        other => panic!("page {n} has no slot: {other:?}"),
    }
}

/// A map of 4 anon pages, page `n` holding byte `0x40 + n`, pages 0 and 1 paged out to an
/// asynchronous device.
fn swapped(e: &Env) -> (Arc<Map>, Arc<MemSwap>) {
    let swap = MemSwap::new(16);
    e.uvm.set_swap(swap.clone());
    let m = e.anon_map(4);
    for n in 0..2 {
        m.copy_out(page(n), &[0x40 + n as u8]).unwrap();
        assert!(m.pageout(page(n)));
    }
    swap.set_async(true);
    (m, swap)
}

fn wait(m: &Map, n: u64) -> Failure {
    fault_or_wait(m, page(n), Access::Read, FaultFlags::empty()).unwrap_err()
}

#[test]
fn two_faults_on_one_swapped_anon_wait_on_one_read() {
    let e = env(64);
    let woken = Arc::new(Woken::default());
    e.uvm.set_waker(woken.clone());
    let (m, swap) = swapped(&e);
    let first = wait(&m, 0);
    let second = wait(&m, 0);
    assert_eq!(first.error, FaultError::Restart);
    assert!(first.busy.is_some(), "the fault names the page being read");
    assert_eq!(second, first, "the second fault waits on the same page");
    assert_eq!(swap.queued_reads(), 1, "one read for both");
    assert_eq!(e.uvm.swap_poll(), 0, "nothing finished yet");
    assert!(woken.0.lock().is_empty());
    assert!(swap.finish(slot_of(&m, 0)));
    assert_eq!(e.uvm.swap_poll(), 1);
    assert_eq!(
        *woken.0.lock(),
        [first.busy.unwrap()],
        "the unbusy tells the waker"
    );
    for _ in 0..2 {
        assert_eq!(rd(&m, page(0)).unwrap().case, FaultCase::Anon1A);
    }
    assert_eq!(e.byte(&m, page(0)), 0x40);
    let s = m.stats().snapshot();
    assert_eq!((s.pageins, s.fltpgwait), (1, 2));
    assert_eq!(swap.reads.load(core::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn reads_finishing_out_of_order_give_each_page_its_data() {
    let e = env(64);
    let (m, swap) = swapped(&e);
    let (a, b) = (wait(&m, 0).busy.unwrap(), wait(&m, 1).busy.unwrap());
    assert_ne!(a, b);
    assert_eq!(swap.queued_reads(), 2);
    // The later read finishes first, alone.
    assert!(swap.finish(slot_of(&m, 1)));
    assert_eq!(e.uvm.swap_poll(), 1);
    assert_eq!(rd(&m, page(1)).unwrap().case, FaultCase::Anon1A);
    assert_eq!(wait(&m, 0).busy, Some(a), "page 0 is still being read");
    assert!(swap.finish(slot_of(&m, 0)));
    assert_eq!(e.uvm.swap_poll(), 1);
    assert_eq!(rd(&m, page(0)).unwrap().case, FaultCase::Anon1A);
    assert_eq!((e.byte(&m, page(0)), e.byte(&m, page(1))), (0x40, 0x41));
}

#[test]
fn a_failed_async_read_marks_the_slot_bad_and_fails_as_the_synchronous_one() {
    let e = env(64);
    let woken = Arc::new(Woken::default());
    e.uvm.set_waker(woken.clone());
    let (m, swap) = swapped(&e);
    let free = e.uvm.free_pages();
    let failed = wait(&m, 0);
    assert!(swap.finish(slot_of(&m, 0)));
    swap.fail_next_reads(1);
    assert_eq!(e.uvm.swap_poll(), 1);
    assert_eq!(
        *woken.0.lock(),
        [failed.busy.unwrap()],
        "the waiters are told"
    );
    assert_eq!(e.uvm.free_pages(), free, "the page was freed");
    assert_eq!(m.anon_at(page(0)).unwrap().lock().swslot, SwapSlot::Bad);
    assert_eq!(
        e.uvm.swap().unwrap().counts(),
        (14, 1, 1),
        "slot 1 bad, slot 2 still used"
    );
    assert_eq!(e.uvm.stats().swpgbad, 1);
    assert_eq!(e.uvm.daemon_stats().swpgbad, 1, "in the table's pdaemon column");
    assert_eq!(
        rd(&m, page(0)),
        Err(FaultError::Io),
        "the refault fails as a synchronous read's"
    );
    // The other page still comes back.
    wait(&m, 1);
    assert!(swap.finish(slot_of(&m, 1)));
    assert_eq!(e.uvm.swap_poll(), 1);
    assert_eq!(rd(&m, page(1)).unwrap().case, FaultCase::Anon1A);
    assert_eq!(e.byte(&m, page(1)), 0x41);
}

/// A page-out hands over the swap-ins that finished while its write waited for the device (a
/// device that takes completions in order collects them in that wait), without waiting for the
/// next poll.
#[test]
fn a_page_out_finishes_the_swap_ins_that_completed_during_its_write() {
    let e = env(64);
    let woken = Arc::new(Woken::default());
    e.uvm.set_waker(woken.clone());
    let (m, swap) = swapped(&e);
    let read = wait(&m, 0);
    assert!(swap.finish(slot_of(&m, 0)));
    m.copy_out(page(2), &[0x42]).unwrap();
    assert!(woken.0.lock().is_empty(), "nothing polled yet");
    assert!(m.pageout(page(2)), "page 2 written out");
    assert_eq!(
        *woken.0.lock(),
        [read.busy.unwrap()],
        "page 0's waiters woken by the page-out"
    );
    assert_eq!(swap.queued_reads(), 0);
    assert_eq!(rd(&m, page(0)).unwrap().case, FaultCase::Anon1A);
    assert_eq!(e.byte(&m, page(0)), 0x40);
}
