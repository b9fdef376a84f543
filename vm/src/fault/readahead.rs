//! Swap readahead for SEQUENTIAL entries: a swap-in also starts reads of the following anons of
//! the same amap (the "readahead of neighbouring slots"; the seed reads one page in
//! `uvmfault_anonget` and leaves readahead to the pager's clusters).
//!
//! The pagedaemon writes consecutive pages into consecutive slots (`pdaemon/cluster.rs`), so the
//! following amap slots' anons are mostly in the following swap slots: a guest reading its memory
//! in order finds the next pages resident (or their reads in flight) instead of faulting and
//! parking on each. At most [`READAHEAD_PAGES`] a fault, anons in consecutive slots as one
//! request, and only what the device takes asynchronously ([`Swap::start_readahead_cluster`]):
//! a declined read ends the readahead, nothing is ever read ahead synchronously, and a fault
//! never waits for a read it did not need.
//!
//! A read ahead that fails is dropped: its page is freed and the anon keeps its slot, so the
//! data is still there for the fault that needs it, which reads it again and, if that read fails
//! too, marks the slot bad as any swap-in does. The seed marks a slot bad only after a read a
//! fault waited for; a speculative read's failure (a transient error, a disk that died with it in
//! flight) is no evidence the guest's data is gone, and must not cost it.
//!
//! # Locks
//! The anons are collected under AMAP (the fault's locks); the reads start after every lock is
//! dropped, each anon locked alone to give it its BUSY page (ANON, then PAGE QUEUES and PAGE).

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::addr::Pa;
use crate::amap::AmapState;
use crate::anon::{Anon, SwapSlot};
use crate::page::{Busy, Owner, PageFlags};
use crate::pdaemon::CLUSTER_PAGES;
use crate::swap::Swap;
use crate::uvm::Uvm;

/// Most pages read ahead by one fault.
pub const READAHEAD_PAGES: usize = 8;

/// The anons of the [`READAHEAD_PAGES`] amap slots after `slot` (empty slots skipped).
///
/// # Locks
/// Entry and exit: AMAP held (`amap`); takes nothing, the anons are not locked.
pub(super) fn following(amap: &AmapState, slot: usize) -> Vec<Arc<Anon>> {
    let Some(next) = slot.checked_add(1) else {
        return Vec::new();
    };
    amap.lookups(next, READAHEAD_PAGES)
        .into_iter()
        .flatten()
        .collect()
}

/// Start reading ahead the swapped-out ones of `anons`, in order, until the device declines one
/// or no frame is free. Anons in consecutive slots (as the pagedaemon's clusters leave them) are
/// read as one request ([`Swap::start_readahead_cluster`]): a guest's ascending pass then costs
/// the device one request a run instead of one a page. Returns how many reads were started.
///
/// # Locks
/// Entry and exit: nothing held. Takes each anon's ANON alone, under it PAGE QUEUES and PAGE
/// (`Uvm::alloc_page`); then the in-flight list's and the device's locks (leaves).
pub(super) fn read_ahead(uvm: &Uvm, swap: &Swap, anons: &[Arc<Anon>]) -> usize {
    let mut started = 0;
    let mut pages = claim(uvm, anons).into_iter().peekable();
    while let Some((busy, first)) = pages.next() {
        let mut run = alloc::vec![busy];
        while run.len() < CLUSTER_PAGES {
            let next = u32::try_from(run.len())
                .ok()
                .and_then(|k| first.checked_add(k));
            match pages.next_if(|(_, slot)| Some(*slot) == next) {
                Some((busy, _)) => run.push(busy),
                None => break,
            }
        }
        let asked = run.len();
        let frames: Vec<Pa> = run.iter().map(|b| uvm.pa(b.page())).collect();
        let declined = swap.start_readahead_cluster(run, first, uvm.mem().as_ref(), &frames);
        started += asked - declined.len();
        if !declined.is_empty() {
            declined
                .into_iter()
                .for_each(|busy| drop_readahead(uvm, busy));
            pages.for_each(|(busy, _)| drop_readahead(uvm, busy));
            break;
        }
    }
    started
}

/// Give each swapped-out, non-resident one of `anons` a BUSY page for its read ahead, in
/// order, until no frame is free: the pages and their anons' slots.
///
/// # Locks
/// Entry and exit: nothing held. Takes each anon's ANON alone, under it PAGE QUEUES and PAGE
/// (`Uvm::alloc_page`).
fn claim(uvm: &Uvm, anons: &[Arc<Anon>]) -> Vec<(Busy, u32)> {
    let mut out = Vec::with_capacity(anons.len());
    for anon in anons {
        let mut a = anon.lock();
        let SwapSlot::Slot(slot) = a.swslot else {
            continue;
        };
        if a.page.is_some() || a.an_ref == 0 {
            continue;
        }
        let Some(busy) = uvm.alloc_page(Owner::Anon(Arc::downgrade(anon)), false) else {
            break;
        };
        // Its contents are the slot's: clean as a swap-in's page (and FAKE until read).
        uvm.page_meta(busy.page())
            .lock()
            .flags
            .insert(PageFlags::CLEAN);
        a.page = Some(busy.page());
        out.push((busy, slot));
    }
    out
}

/// Give up a page read ahead (not started, or its read failed): free it, and leave the anon its
/// slot. An anon freed meanwhile left the page RELEASED with the slot: both are freed. Faults
/// that found the page BUSY and wait on it are woken (`Uvm::free_page`) and read it themselves.
///
/// # Locks
/// Entry and exit: nothing held. Takes PAGE, then ANON and under it PAGE, PAGE QUEUES, the swap
/// map's lock and for a RELEASED page PMAP (`Uvm::free_page`, `Uvm::unbusy`).
pub(crate) fn drop_readahead(uvm: &Uvm, busy: Busy) {
    let pg = busy.page();
    let owner = match &uvm.page_meta(pg).lock().owner {
        Owner::Anon(w) => w.upgrade(),
        _ => None,
    };
    let Some(anon) = owner else {
        uvm.unbusy(busy);
        return;
    };
    let mut a = anon.lock();
    if uvm.page_has(pg, PageFlags::RELEASED) {
        drop(a);
        uvm.unbusy(busy);
        return;
    }
    if a.page == Some(pg) {
        a.page = None;
    }
    // Never unbusied, so never mapped.
    uvm.free_page(busy);
}
