//! Swap readahead (`readahead.rs`) over an asynchronous [`MemSwap`]: what SEQUENTIAL reads
//! ahead, completion out of order, and a failed read ahead that loses nothing.

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use super::readahead::{MARK_AFTER, READAHEAD_PAGES};
use super::*;
use crate::pdaemon::CLUSTER_PAGES;
use crate::anon::SwapSlot;
use crate::swap::{MemSwap, SwapIoError, SwapOp};
use crate::swapevents::{SwapEvent, SwapEvents};
use crate::testenv::*;

/// Pages in the test map: more than two readahead windows after page 0.
const PAGES: u64 = 2 * READAHEAD_PAGES as u64 + 16;

/// Frames and swap slots of the tests: room for the whole map.
const FRAMES: usize = 2 * PAGES as usize;

/// A map of [`PAGES`] anon pages with `advice`, page `n` holding `n + 1`, all paged out to an
/// asynchronous device.
fn swapped(e: &Env, advice: Advice) -> (Arc<Map>, Arc<MemSwap>) {
    let swap = MemSwap::new(FRAMES as u32);
    e.uvm.set_swap(swap.clone());
    let m = e.anon_map(PAGES);
    m.advise(page(0), page(PAGES), advice).unwrap();
    for n in 0..PAGES {
        m.copy_out(page(n), &(n + 1).to_le_bytes()).unwrap();
        assert!(m.pageout(page(n)));
    }
    swap.set_async(true);
    (m, swap)
}

/// The swap slot of page `n`'s anon, and whether it is resident.
fn anon_state(m: &Map, n: u64) -> (bool, SwapSlot) {
    let anon = m.anon_at(page(n)).unwrap();
    let a = anon.lock();
    (a.page.is_some(), a.swslot)
}

fn slot_of(m: &Map, n: u64) -> u32 {
    match anon_state(m, n).1 {
        SwapSlot::Slot(s) => s,
        other => panic!("page {n} has no slot: {other:?}"),
    }
}

fn value(m: &Map, n: u64) -> u64 {
    let mut b = [0u8; 8];
    m.copy_in(page(n), &mut b).unwrap();
    u64::from_le_bytes(b)
}

/// Without SEQUENTIAL a swap-in reads its page only.
#[test]
fn normal_advice_reads_one_page() {
    let e = env(FRAMES);
    let (m, swap) = swapped(&e, Advice::Normal);
    assert_eq!(rd(&m, page(0)), Err(FaultError::Restart));
    assert_eq!(swap.queued_reads(), 1);
    assert_eq!(m.stats().snapshot().readaheads, 0);
}

/// With SEQUENTIAL the fault on page 0 also starts the reads of the next `READAHEAD_PAGES`
/// anons, a request a cluster of consecutive slots; finished in reverse order, each page gets
/// its own data, and the faults on them find them resident: no further read.
#[test]
fn sequential_reads_the_following_anons_ahead_in_any_order() {
    let e = env(FRAMES);
    let (m, swap) = swapped(&e, Advice::Sequential);
    assert_eq!(rd(&m, page(0)), Err(FaultError::Restart));
    let ahead = READAHEAD_PAGES as u64;
    assert_eq!(swap.queued_reads() as u64, 1 + ahead);
    assert_eq!(m.stats().snapshot().readaheads, ahead);
    assert_eq!(
        swap.read_clusters.load(Ordering::Relaxed),
        READAHEAD_PAGES.div_ceil(CLUSTER_PAGES) as u64,
        "consecutive slots: one request a cluster"
    );
    for n in (0..=ahead).rev() {
        assert!(swap.finish(slot_of(&m, n)), "page {n} is being read");
        assert_eq!(e.uvm.swap_poll(), 1);
    }
    // Up to the mark (and its neighbourhood short of it) every page is there: no read.
    let (_, forward) = Advice::Sequential.range();
    for n in 0..MARK_AFTER - forward {
        assert_eq!(rd(&m, page(n)).unwrap().case, FaultCase::Anon1A, "page {n}");
    }
    assert_eq!(swap.reads.load(Ordering::Relaxed), 1 + ahead);
    assert_eq!(m.stats().snapshot().pageins, 1);
    assert!(
        !anon_state(&m, ahead + 1).0,
        "beyond the readahead: still out"
    );
    for n in 0..=ahead {
        assert_eq!(value(&m, n), n + 1, "page {n}");
    }
}

/// Pages 0 ..= `READAHEAD_PAGES` read as the first test does, and resident.
fn first_window_read(e: &Env, m: &Map, swap: &MemSwap) {
    assert_eq!(rd(m, page(0)), Err(FaultError::Restart));
    for n in 0..=READAHEAD_PAGES as u64 {
        assert!(swap.finish(slot_of(m, n)));
    }
    assert_eq!(e.uvm.swap_poll(), 1 + READAHEAD_PAGES);
}

/// The fault that maps the marked page (half a window on) starts the next window from there:
/// only its pages not resident yet are read, and its own mark is half a window after the
/// fault again, so a guest reading on in order never waits for a read it could have started
/// earlier. The pages before the mark start nothing.
#[test]
fn the_marked_page_starts_the_next_window_half_a_window_ahead() {
    let e = env(FRAMES);
    let (m, swap) = swapped(&e, Advice::Sequential);
    first_window_read(&e, &m, &swap);
    let ahead = READAHEAD_PAGES as u64;
    // The centre of each fault, with the faults' neighbourhoods, ends just short of the mark.
    let (_, forward) = Advice::Sequential.range();
    for n in (0..MARK_AFTER - forward).step_by(forward as usize + 1) {
        assert_eq!(rd(&m, page(n)).unwrap().case, FaultCase::Anon1A);
    }
    assert_eq!(swap.queued_reads(), 0, "nothing before the mark");
    assert_eq!(rd(&m, page(MARK_AFTER)).unwrap().case, FaultCase::Anon1A);
    let second = ahead + 1..=MARK_AFTER + ahead;
    assert_eq!(swap.queued_reads() as u64, second.clone().count() as u64);
    for n in second.clone() {
        assert!(swap.finish(slot_of(&m, n)), "page {n} is read by the second window");
    }
    e.uvm.swap_poll();
    // Its mark is its first page: the one at least half a window after page MARK_AFTER.
    assert_eq!(rd(&m, page(ahead - forward)).unwrap().case, FaultCase::Anon1A);
    assert_eq!(swap.queued_reads(), 0, "pages up to {ahead} are not marked");
    assert_eq!(rd(&m, page(ahead + 1)).unwrap().case, FaultCase::Anon1A);
    let third = MARK_AFTER + ahead + 1..=ahead + 1 + ahead;
    assert_eq!(swap.queued_reads() as u64, third.clone().count() as u64);
    for n in third {
        assert!(swap.finish(slot_of(&m, n)));
    }
    e.uvm.swap_poll();
    assert_eq!(m.stats().snapshot().pageins, 1, "one demand read in all");
    for n in 0..=ahead + 1 + ahead {
        assert_eq!(value(&m, n), n + 1, "page {n}");
    }
}

/// A mark on a neighbour the fault maps starts the window as well: the guest may never fault
/// on the marked page itself.
#[test]
fn a_marked_neighbour_starts_the_next_window() {
    let e = env(FRAMES);
    let (m, swap) = swapped(&e, Advice::Sequential);
    first_window_read(&e, &m, &swap);
    let (_, forward) = Advice::Sequential.range();
    let r = rd(&m, page(MARK_AFTER - forward)).unwrap();
    assert_eq!(r.neighbours as u64, forward, "the marked page is mapped on the way");
    let ahead = READAHEAD_PAGES as u64;
    assert_eq!(
        swap.queued_reads() as u64,
        MARK_AFTER,
        "the window after the marked page, less what is resident"
    );
    for n in ahead + 1..=MARK_AFTER + ahead {
        assert!(swap.finish(slot_of(&m, n)));
    }
    e.uvm.swap_poll();
    // Mapped by the fault, the page is not marked any more: faulting on it reads nothing.
    assert_eq!(rd(&m, page(MARK_AFTER)).unwrap().case, FaultCase::Anon1A);
    assert_eq!(swap.queued_reads(), 0);
}

/// NORMAL advice reads nothing ahead, marked pages or not.
#[test]
fn a_mark_under_normal_advice_starts_nothing() {
    let e = env(FRAMES);
    let (m, swap) = swapped(&e, Advice::Sequential);
    first_window_read(&e, &m, &swap);
    m.advise(page(0), page(PAGES), Advice::Normal).unwrap();
    assert_eq!(rd(&m, page(MARK_AFTER)).unwrap().case, FaultCase::Anon1A);
    assert_eq!(swap.queued_reads(), 0);
    assert_eq!(m.stats().snapshot().readaheads, READAHEAD_PAGES as u64);
}

/// A read ahead that fails drops its page and nothing else: the anon keeps its slot (not bad),
/// and the fault that needs the page reads it again and gets the data.
#[test]
fn a_failed_readahead_loses_nothing_and_marks_nothing_bad() {
    let e = env(FRAMES);
    let (m, swap) = swapped(&e, Advice::Sequential);
    let victim = slot_of(&m, 3);
    swap.set_hook(Some(Arc::new(move |op, slot| {
        if op == SwapOp::Read && slot == victim {
            return Err(SwapIoError);
        }
        Ok(())
    })));
    assert_eq!(rd(&m, page(0)), Err(FaultError::Restart));
    for n in 0..=READAHEAD_PAGES as u64 {
        assert!(swap.finish(slot_of(&m, n)));
    }
    assert_eq!(e.uvm.swap_poll(), 1 + READAHEAD_PAGES);
    swap.set_hook(None);
    assert_eq!(anon_state(&m, 3), (false, SwapSlot::Slot(victim)));
    assert_eq!(e.uvm.swap().unwrap().counts().2, 0, "no slot is bad");
    assert_eq!(e.uvm.stats().swpgbad, 0);
    assert_eq!(
        rd(&m, page(3)),
        Err(FaultError::Restart),
        "read again, on demand"
    );
    // That fault reads ahead too: its window's pages after the first readahead's.
    let rest = 1 + READAHEAD_PAGES as u64..4 + READAHEAD_PAGES as u64;
    assert_eq!(swap.queued_reads(), 1 + rest.clone().count());
    assert!(swap.finish(victim));
    for n in rest.clone() {
        assert!(swap.finish(slot_of(&m, n)));
    }
    assert_eq!(e.uvm.swap_poll(), 1 + rest.count());
    for n in 0..4 + READAHEAD_PAGES as u64 {
        assert_eq!(value(&m, n), n + 1, "page {n}");
    }
}

/// Anons whose slots are not consecutive (paged out in descending order) are still all read
/// ahead, one request each, and each page gets its own data.
#[test]
fn sequential_reads_scattered_slots_one_request_each() {
    let e = env(FRAMES);
    let swap = MemSwap::new(FRAMES as u32);
    e.uvm.set_swap(swap.clone());
    let m = e.anon_map(PAGES);
    m.advise(page(0), page(PAGES), Advice::Sequential).unwrap();
    for n in (0..PAGES).rev() {
        m.copy_out(page(n), &(n + 1).to_le_bytes()).unwrap();
    }
    for n in (0..PAGES).rev() {
        assert!(m.pageout(page(n)));
    }
    assert_eq!(slot_of(&m, 1), slot_of(&m, 2) + 1, "descending slots");
    swap.set_async(true);
    assert_eq!(rd(&m, page(0)), Err(FaultError::Restart));
    let ahead = READAHEAD_PAGES as u64;
    assert_eq!(swap.queued_reads() as u64, 1 + ahead);
    assert_eq!(swap.read_clusters.load(Ordering::Relaxed), ahead);
    for n in 0..=ahead {
        assert!(swap.finish(slot_of(&m, n)));
    }
    assert_eq!(e.uvm.swap_poll() as u64, 1 + ahead);
    for n in 0..=ahead {
        assert_eq!(value(&m, n), n + 1, "page {n}");
    }
}

/// Keeps every swap event it is told.
#[derive(Default)]
struct Recorder(crate::sync::Mutex<alloc::vec::Vec<SwapEvent>>);

impl SwapEvents for Recorder {
    fn swap_event(&self, event: SwapEvent) {
        self.0.lock().push(event);
    }
}

impl Recorder {
    fn page_ins(&self) -> alloc::vec::Vec<SwapEvent> {
        let mut l = self.0.lock();
        let ins = l
            .iter()
            .copied()
            .filter(|e| matches!(e, SwapEvent::PageIn { .. }))
            .collect();
        l.clear();
        ins
    }
}

/// Each page read ahead is a page-in event, as the demand read is, at the page's own IPA and
/// slot: one event per `pageins` plus one per `readaheads`. A readahead the device declines (a
/// synchronous one) starts no read and tells nothing.
#[test]
fn each_page_read_ahead_is_a_page_in_event_where_it_is_mapped() {
    let e = env(FRAMES);
    let (m, swap) = swapped(&e, Advice::Sequential);
    let rec = Arc::new(Recorder::default());
    e.uvm.set_swap_events(rec.clone());
    assert_eq!(rd(&m, page(0)), Err(FaultError::Restart));
    let ahead = READAHEAD_PAGES as u64;
    // The fault's own first, then the reads ahead in slot order.
    let ins = rec.page_ins();
    let want: alloc::vec::Vec<SwapEvent> = (0..=ahead)
        .map(|n| SwapEvent::PageIn {
            at: Some((m.vmid(), page(n))),
            slot: slot_of(&m, n),
        })
        .collect();
    assert_eq!(ins, want);
    let s = m.stats().snapshot();
    assert_eq!((s.pageins, s.readaheads), (1, ahead));
    assert_eq!(ins.len() as u64, s.pageins + s.readaheads);
    for n in 0..=ahead {
        assert!(swap.finish(slot_of(&m, n)));
    }
    assert_eq!(e.uvm.swap_poll() as u64, 1 + ahead);

    // Synchronous now: the next fault's readahead is declined, its own read is the only event.
    swap.set_async(false);
    let next = ahead + 1;
    assert_eq!(rd(&m, page(next)).unwrap().case, FaultCase::Anon1A);
    assert_eq!(
        rec.page_ins(),
        [SwapEvent::PageIn {
            at: Some((m.vmid(), page(next))),
            slot: slot_of(&m, next)
        }]
    );
    assert_eq!(
        m.stats().snapshot().readaheads,
        ahead,
        "nothing more read ahead"
    );
}

/// An idle CPU to hand windows to, or none; counts its kicks.
struct Offload {
    idle: core::sync::atomic::AtomicBool,
    kicks: core::sync::atomic::AtomicUsize,
}

impl super::ReadaheadOffload for Offload {
    fn can_offload(&self) -> bool {
        self.idle.load(Ordering::Relaxed)
    }
    fn kick(&self) {
        self.kicks.fetch_add(1, Ordering::Relaxed);
    }
}

fn offload(e: &Env, idle: bool) -> Arc<Offload> {
    let o = Arc::new(Offload {
        idle: core::sync::atomic::AtomicBool::new(idle),
        kicks: core::sync::atomic::AtomicUsize::new(0),
    });
    e.uvm.set_readahead_offload(o.clone());
    o
}

/// With a CPU to spare, the fault reads only its own page and queues its window (waking that
/// CPU); the window's reads start when that CPU runs the queue, counted for the faulting VM.
#[test]
fn a_spare_cpu_starts_the_window_the_fault_queued() {
    let e = env(FRAMES);
    let (m, swap) = swapped(&e, Advice::Sequential);
    let o = offload(&e, true);
    assert_eq!(rd(&m, page(0)), Err(FaultError::Restart));
    assert_eq!(swap.queued_reads(), 1, "the fault's own read only");
    assert_eq!(o.kicks.load(Ordering::Relaxed), 1);
    assert_eq!(m.stats().snapshot().readaheads, 0);
    assert_eq!(e.uvm.run_readaheads(), 1);
    assert_eq!(e.uvm.run_readaheads(), 0, "the queue is empty again");
    let ahead = READAHEAD_PAGES as u64;
    assert_eq!(swap.queued_reads() as u64, 1 + ahead);
    assert_eq!(m.stats().snapshot().readaheads, ahead);
    for n in 0..=ahead {
        assert!(swap.finish(slot_of(&m, n)));
    }
    e.uvm.swap_poll();
    for n in 0..=ahead {
        assert_eq!(value(&m, n), n + 1, "page {n}");
    }
}

/// No CPU to spare, or the queue full (nobody drains it): the fault starts its window itself.
#[test]
fn without_a_spare_cpu_or_with_the_queue_full_the_fault_reads_ahead_itself() {
    let e = env(FRAMES);
    let (m, swap) = swapped(&e, Advice::Sequential);
    let o = offload(&e, false);
    assert_eq!(rd(&m, page(0)), Err(FaultError::Restart));
    let ahead = READAHEAD_PAGES as u64;
    assert_eq!(swap.queued_reads() as u64, 1 + ahead);
    assert_eq!(o.kicks.load(Ordering::Relaxed), 0);
    assert_eq!(e.uvm.run_readaheads(), 0);

    // Idle now, but nobody runs the queue: the faults after the QUEUED_WINDOWS-th read ahead
    // themselves. Each fault is on a page of its own window's end (swapped out, no reads
    // overlapping), so every window has something to read.
    let e = env(FRAMES);
    let (m, swap) = swapped(&e, Advice::Sequential);
    let o = offload(&e, true);
    for k in 0..=super::readahead::QUEUED_WINDOWS as u64 {
        assert_eq!(rd(&m, page(k)), Err(FaultError::Restart));
    }
    let queued = super::readahead::QUEUED_WINDOWS;
    assert_eq!(o.kicks.load(Ordering::Relaxed), queued);
    // The last fault's window was read at once: from page QUEUED_WINDOWS on.
    assert_eq!(swap.queued_reads() as u64, queued as u64 + 1 + ahead);
    assert_eq!(e.uvm.run_readaheads(), queued);
}
