//! The pagedaemon: freeing frames by paging anons out to swap and dropping clean object pages.
//!
//! Mechanism ([`pageout_anon`], clusters of anons written by one request, `cluster.rs`, and
//! batches of clean object pages dropped, `objdrop.rs`) is apart from policy ([`Uvm::reclaim`]), as the seed keeps
//! `uvm_pdaemon.c` apart from `uvm_pdpolicy_clock.c`. The policy is a clock over the inactive
//! queue with a second chance: a page whose stage-2 access flag is set (in any VM) goes back to
//! the active queue and loses the flag; the next pass may take it. The inactive queue is refilled
//! from the oldest active pages.
//!
//! The unmaps of a cluster or of a batch of dropped pages share one TLB invalidation per VM
//! (`pmap::TlbBatch`), run before any of their frames is written or freed; aging clears access
//! flags with none at all (`Stage2::clear_access_flag`).
//!
//! The daemon runs synchronously: when a fault runs out of memory it calls `reclaim` with nothing
//! locked (the seed wakes a thread and sleeps); tests and the hypervisor may call it any time.
//!
//! # Locks
//! Pages are found through the PAGE QUEUES, which is backwards in the lock order, so the queue
//! lock is dropped before an owner is locked. An anon is paged out with its lock held except
//! during the write, when the page is BUSY (and unmapped everywhere): a fault finding it BUSY
//! restarts; a free finding it BUSY marks it RELEASED and hands it its swap slot, and the daemon
//! frees both once the write is done (see `anon.rs`).

use alloc::sync::Arc;

use crate::anon::Anon;
use crate::page::{Owner, Queue};
use crate::pmap::AgedTables;
use crate::stats::Stats;
use crate::uvm::Uvm;

mod cluster;
mod objdrop;
pub use cluster::CLUSTER_PAGES;
#[cfg(test)]
#[path = "pdaemon/tlb_tests.rs"]
mod tlb_tests;
use cluster::{Added, SwapCluster};
use objdrop::ObjectDrops;

/// Write `anon`'s page to swap and free it (the seed's pageout of an anon page): a cluster of
/// one (`cluster.rs`). Returns true when the frame was freed. Refuses (false) when there is no
/// swap or no free slot, or the page is BUSY, wired or loaned. A CLEAN page that already has a
/// slot is freed without writing. A write error keeps the page (its slot is marked bad). An anon
/// freed during the write leaves its page and slot to us: both are freed after the write (the
/// slot is marked bad if the write failed).
///
/// # Locks
/// Entry: nothing. Takes ANON (dropped during the write), PMAP, PAGE, PAGE QUEUES. Exit: nothing.
pub fn pageout_anon(uvm: &Uvm, anon: &Arc<Anon>) -> bool {
    let Some(mut cluster) = SwapCluster::new(uvm, 1) else {
        return false;
    };
    // A cluster of one is written by the `add` that fills it; a clean page dropped waits for
    // the flush.
    match cluster.add(anon) {
        (Added::Queued | Added::Dropped, freed) => freed + cluster.flush() == 1,
        (Added::Refused, _) => false,
    }
}

impl Uvm {
    /// Try to free `target` frames (the pagedaemon's policy): refill the inactive queue from the
    /// oldest active pages, then sweep it like a clock — referenced pages get a second chance,
    /// anon pages go to swap, clean object pages are dropped — for at most two turns of the clock
    /// (twice the queued pages scanned). Returns how many frames were freed. While VMs have
    /// claims on the pool, pages of VMs at or under their entitlement are passed over as if
    /// referenced when some VM is over its own (`crate::share::Spare`).
    ///
    /// # Locks
    /// Entry: nothing held. Exit: nothing.
    pub fn reclaim(&self, target: usize) -> usize {
        self.reclaim_sparing(target, crate::share::Spare::for_reclaim(self))
    }

    /// [`Uvm::reclaim`], passing over the pages `spare` spares (`crate::share`). The pass ends
    /// by telling the swap listener what it scanned, freed and deactivated.
    ///
    /// # Locks
    /// Entry: nothing held. Exit: nothing.
    pub fn reclaim_sparing(&self, target: usize, spare: crate::share::Spare) -> usize {
        let mut freed = 0;
        // Up to two turns of the clock: when every queued page was touched since it was queued
        // (a guest that just wrote all its memory), the first turn only clears references and
        // the second finds the pages the first cleared. A short sweep would give up with
        // reclaimable memory left.
        let (_, active, inactive) = self.queue_counts();
        let budget = active.saturating_add(inactive).saturating_mul(2).max(16);
        let mut scanned = 0usize;
        // This pass's share of `pdscans` and `pddeact`, for the listener.
        let (mut examined, mut deactivated) = (0u32, 0u32);
        // Anon pages go out in clusters of consecutive scanned pages (`cluster.rs`).
        let mut cluster = SwapCluster::new(self, CLUSTER_PAGES);
        // Clean object pages are dropped in batches too (`objdrop.rs`).
        let mut objects = ObjectDrops::new(self);
        // The VMs whose access flags the scan clears, invalidated once when the pass ends.
        let mut aged = AgedTables::new();
        while freed < target && scanned < budget {
            let want = target.saturating_mul(2);
            let (_, _, inactive) = self.queue_counts();
            if inactive < want {
                for pg in self.oldest(Queue::Active, want - inactive) {
                    if self.age(pg) {
                        Stats::bump(&self.daemon().pddeact);
                        deactivated = deactivated.saturating_add(1);
                    }
                }
            }
            let scan = self.oldest(Queue::Inactive, target.saturating_mul(4).max(16));
            if scan.is_empty() {
                break;
            }
            scanned = scanned.saturating_add(scan.len());
            for pg in scan {
                let pending = cluster.as_ref().map_or(0, SwapCluster::pending) + objects.pending();
                if freed + pending >= target {
                    break;
                }
                Stats::bump(&self.daemon().pdscans);
                examined = examined.saturating_add(1);
                let pa = self.pa(pg);
                if spare.spares(self, pg) || self.rmap().clear_reference_aging(pa, &mut aged) {
                    self.activate(pg);
                    continue;
                }
                let anon = match &self.page_meta(pg).lock().owner {
                    Owner::Anon(w) => Some(w.upgrade()),
                    _ => None,
                };
                freed += match (anon, cluster.as_mut()) {
                    (Some(Some(anon)), Some(cluster)) => cluster.add(&anon).1,
                    (Some(_), _) => 0,
                    (None, _) => objects.add(pg),
                };
            }
            // Written before the next batch ages pages and before returning: nothing stays
            // BUSY longer than one scan.
            freed += cluster.as_mut().map_or(0, SwapCluster::flush);
            freed += objects.flush();
        }
        aged.flush();
        if examined != 0 || deactivated != 0 {
            self.swap_event(crate::swapevents::SwapEvent::Scan {
                scanned: examined,
                freed: u32::try_from(freed).unwrap_or(u32::MAX),
                deactivated,
            });
        }
        freed
    }
}
