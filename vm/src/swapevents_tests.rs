//! The swap listener hears one event per counted page-out, page-in and bad slot, and one scan
//! per reclaim pass, each naming the page where the VM mapped it.

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::{SlotIo, SwapEvent, SwapEvents};
use crate::map::Map;
use crate::swap::MemSwap;
use crate::sync::Mutex;
use crate::testenv::*;

/// Keeps every event it is told.
#[derive(Default)]
struct Recorder(Mutex<Vec<SwapEvent>>);

impl SwapEvents for Recorder {
    fn swap_event(&self, event: SwapEvent) {
        self.0.lock().push(event);
    }
}

impl Recorder {
    fn take(&self) -> Vec<SwapEvent> {
        core::mem::take(&mut *self.0.lock())
    }
}

fn fill(m: &Map, n: u64) {
    for i in 0..n {
        m.copy_out(page(i), &(i + 1).to_le_bytes()).unwrap();
    }
}

/// A listener installed on a fresh engine with a swap device of `slots` slots.
fn listened(frames: usize, slots: u32) -> (Env, Arc<MemSwap>, Arc<Recorder>) {
    let e = env(frames);
    let swap = MemSwap::new(slots);
    e.uvm.set_swap(swap.clone());
    let rec = Arc::new(Recorder::default());
    e.uvm.set_swap_events(rec.clone());
    (e, swap, rec)
}

#[test]
fn page_outs_and_the_scan_are_heard_with_where_each_page_was_mapped() {
    let (e, _swap, rec) = listened(256, 1024);
    let m = e.anon_map(32);
    fill(&m, 32);
    assert_eq!(e.uvm.reclaim(16), 16);
    let events = rec.take();
    let outs: Vec<_> = events
        .iter()
        .filter_map(|ev| match ev {
            SwapEvent::PageOut { at, slot } => Some((*at, *slot)),
            _ => None,
        })
        .collect();
    let s = e.uvm.daemon_stats();
    assert_eq!(outs.len() as u64, s.pageouts);
    for (i, (at, _)) in outs.iter().enumerate() {
        assert_eq!(*at, Some((m.vmid(), page(i as u64))), "page-out {i}");
    }
    let Some(SwapEvent::Scan {
        scanned,
        freed,
        deactivated,
    }) = events.last().copied()
    else {
        panic!("the pass ends with its scan: {events:?}")
    };
    assert_eq!(
        (u64::from(scanned), freed, u64::from(deactivated)),
        (s.pdscans, 16, s.pddeact)
    );

    // Reading page 3 back is one page-in, from the slot it went to.
    let mut b = [0u8; 8];
    m.copy_in(page(3), &mut b).unwrap();
    assert_eq!(u64::from_le_bytes(b), 4);
    let ins: Vec<_> = rec
        .take()
        .into_iter()
        .filter(|ev| matches!(ev, SwapEvent::PageIn { .. }))
        .collect();
    assert_eq!(
        ins,
        [SwapEvent::PageIn {
            at: Some((m.vmid(), page(3))),
            slot: outs[3].1
        }]
    );
    assert_eq!(e.uvm.stats().pageins, 1);
}

#[test]
fn each_slot_marked_bad_is_heard_with_its_direction() {
    let (e, swap, rec) = listened(64, 64);
    let m = e.anon_map(8);
    fill(&m, 8);
    swap.fail_next_writes(1);
    e.uvm.reclaim(8);
    let bad_writes = rec
        .take()
        .iter()
        .filter(|ev| matches!(ev, SwapEvent::BadSlot { io: SlotIo::Write, .. }))
        .count();
    assert_eq!(bad_writes as u64, e.uvm.daemon_stats().swpgbad);
    assert!(bad_writes > 0);

    // Out again, to good slots; then one read back fails.
    e.uvm.reclaim(8);
    rec.take();
    let before = e.uvm.daemon_stats().swpgbad + e.uvm.stats().swpgbad;
    swap.fail_next_reads(1);
    let mut b = [0u8; 8];
    let out = (0..8).find(|&i| m.copy_in(page(i), &mut b).is_err());
    assert!(out.is_some(), "one read failed");
    let bad_reads = rec
        .take()
        .iter()
        .filter(|ev| matches!(ev, SwapEvent::BadSlot { io: SlotIo::Read, .. }))
        .count();
    let after = e.uvm.daemon_stats().swpgbad + e.uvm.stats().swpgbad;
    assert_eq!((bad_reads as u64, after - before), (1, 1));
}
