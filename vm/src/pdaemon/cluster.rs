//! Page-out clusters: anons paged out together, into contiguous swap slots, by one write
//! request (the seed's `swapcluster_*` in `uvm_pdaemon.c` with `uvm_pager`'s clustered I/O).
//!
//! # Which pages make a cluster
//! The consecutive pageable anons of the pagedaemon's inactive-queue scan, as NetBSD's
//! `uvmpd_scan_inactive` fills its swap cluster. The alternative, an anon's neighbours in its
//! amap, needs the way back from a page to its amap slot, which the engine does not keep (an
//! anon knows neither its amaps nor its slots in them), and would take AMAP locks from the
//! daemon, against the lock order it already walks backwards. The scan order is close to what
//! the amap order would give anyway: the inactive queue is refilled from the oldest active
//! pages, and a guest touching its memory in order faulted them in that order, so neighbouring
//! guest pages land in neighbouring slots and a sequential swap-in reads neighbouring sectors.
//!
//! # A cluster's life
//! [`SwapCluster::add`] claims a page (BUSY), gives its anon the cluster's next slot (a dirty
//! page's old slot is freed first: its copy is stale, as the seed's `uvmpd_dropswap`), unmaps it
//! everywhere and unlocks the anon. Slots are reserved [`CLUSTER_PAGES`] at a time (fewer when
//! the device has no run that long, down to one); a full cluster is written at once. A clean
//! page whose swap copy is current is unmapped the same way and kept BUSY, to be dropped by
//! the next flush (at most [`CLUSTER_PAGES`] of them wait).
//! [`SwapCluster::flush`] first runs the TLB invalidations the unmaps left to the cluster's
//! [`TlbBatch`], then frees the dropped clean pages, writes the others with one
//! [`SwapDevice::write_cluster`], no lock held, then, for each page written, frees the frame
//! (or, when the anon was freed meanwhile, the frame and the slot it left, `anon.rs`), and
//! gives back the reserved slots no page took.
//!
//! # TLB invalidation
//! The unmaps of a cluster are not invalidated one by one (a broadcast TLBI each, which under
//! QEMU TCG stops every vCPU thread): they go to the cluster's [`TlbBatch`], invalidated once
//! per VM at the flush (`pmap/batch.rs`). That is safe because, until then, every page
//! unmapped is BUSY and still its anon's page: a fault on it waits, no fault can map another
//! frame for it, and its frame is neither written out nor freed; the flush invalidates before
//! it does either (a guest write through a stale entry after the copy was taken would be
//! lost, and a freed frame could be reused while a TLB still maps it).
//!
//! A failed write: which of the request's sectors hold data is not known, so every page stays
//! resident and dirty with no slot (the next sweep may page it out elsewhere), and every slot of
//! the request is marked bad, as the seed's `uvm_swap_markbad(swslot, npages)` after a failed
//! cluster write: never handed out again, so the sector that failed is never used again either.
//! The slots reserved and not written are freed unused.
//!
//! # Locks
//! Entry and exit of every function here: nothing held. While a cluster gathers, its pages are
//! BUSY (not locked): a fault on one restarts and waits, as during the write itself.
//!
//! [`SwapDevice::write_cluster`]: crate::swap::SwapDevice::write_cluster

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::addr::{Pa, Prot};
use crate::anon::{Anon, SwapSlot};
use crate::page::{Busy, Owner, PageFlags};
use crate::pmap::TlbBatch;
use crate::stats::Stats;
use crate::swap::Swap;
use crate::swapevents::{Place, SlotIo, SwapEvent};
use crate::uvm::Uvm;

/// Most pages in one page-out request (64 KiB; the hypervisor's disk takes up to this many in
/// one virtio request).
pub const CLUSTER_PAGES: usize = 16;

/// Most clean pages held BUSY for one flush: their unmaps cost one TLB invalidation per VM
/// (`pmap/batch.rs`). Under TCG a broadcast one stops every vCPU thread; at 16 pages a flush, a
/// guest reading its swapped memory back in order (its pages clean, dropped again behind it)
/// had one every few dozen µs. 64: the hypervisor's reclaim batch, one invalidation a batch.
pub const DROP_PAGES: usize = 64;

/// One page of a cluster: its anon, the BUSY claim on its page, and where it was mapped (for
/// the swap listener; `None` without one).
struct Member {
    anon: Arc<Anon>,
    busy: Busy,
    at: Place,
}

/// A clean page whose swap copy is current, unmapped and waiting (BUSY) for the flush's TLB
/// invalidation to be freed.
struct Dropped {
    anon: Arc<Anon>,
    busy: Busy,
}

/// What [`SwapCluster::add`] did with an anon.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Added {
    /// Its page is in the cluster, to be written by the next flush.
    Queued,
    /// Its page was clean and already had a slot: unmapped, the frame is freed by the next
    /// flush (once the TLBs no longer map it), without writing.
    Dropped,
    /// Nothing: no resident page, not pageable (BUSY, wired, loaned), or no swap slot free.
    Refused,
}

/// Pages claimed for one page-out request, and the run of slots reserved for them.
pub(crate) struct SwapCluster<'u> {
    uvm: &'u Uvm,
    swap: Arc<Swap>,
    /// Most pages before a flush.
    capacity: usize,
    /// The first reserved slot (meaningful when `reserved > 0`).
    first: u32,
    /// Slots reserved from `first`; the first `members.len()` are taken.
    reserved: usize,
    members: Vec<Member>,
    /// Clean pages to free at the flush.
    dropped: Vec<Dropped>,
    /// The invalidations the unmaps of `members` and `dropped` owe (see the module docs).
    tlb: TlbBatch,
}

impl<'u> SwapCluster<'u> {
    /// An empty cluster of at most `capacity` pages (at least 1); `None` without swap.
    ///
    /// # Locks
    /// Takes the swap configuration lock (a leaf).
    pub(crate) fn new(uvm: &'u Uvm, capacity: usize) -> Option<SwapCluster<'u>> {
        Some(SwapCluster {
            uvm,
            swap: uvm.swap()?,
            capacity: capacity.clamp(1, CLUSTER_PAGES),
            first: 0,
            reserved: 0,
            members: Vec::with_capacity(capacity),
            dropped: Vec::new(),
            tlb: TlbBatch::new(),
        })
    }

    /// Pages queued and not yet written or dropped: the frames the next flush frees if all
    /// goes well.
    pub(crate) fn pending(&self) -> usize {
        self.members.len() + self.dropped.len()
    }

    /// Add `anon`'s page (see the module documentation); a cluster that is then full is
    /// written at once. Returns what happened to `anon`, and how many frames a flush freed.
    ///
    /// # Locks
    /// Entry: nothing. Takes ANON, and under it PAGE, the swap map's lock, PMAP and PAGE QUEUES
    /// one after the other; a flush as [`SwapCluster::flush`]. Exit: nothing.
    pub(crate) fn add(&mut self, anon: &Arc<Anon>) -> (Added, usize) {
        let added = self.add_one(anon);
        let freed = if self.reserved > 0 && self.members.len() >= self.reserved {
            self.flush()
        } else if self.dropped.len() >= DROP_PAGES {
            // Enough clean pages held BUSY: free them, leaving the write to fill up.
            self.flush_dropped()
        } else {
            0
        };
        (added, freed)
    }

    /// [`SwapCluster::add`] without the flush.
    ///
    /// # Locks
    /// As [`SwapCluster::add`], without the flush's.
    fn add_one(&mut self, anon: &Arc<Anon>) -> Added {
        let uvm = self.uvm;
        let mut a = anon.lock();
        let Some(pg) = a.page else {
            return Added::Refused;
        };
        // Check and claim the page (BUSY) in one step: nobody may start using it in between.
        let (busy, clean) = {
            let mut m = uvm.page_meta(pg).lock();
            let pageable =
                m.wire_count == 0 && m.loan_count == 0 && matches!(m.owner, Owner::Anon(_));
            if !pageable {
                return Added::Refused;
            }
            let Some(busy) = Busy::claim(&mut m, pg) else {
                return Added::Refused;
            };
            (busy, m.flags.contains(PageFlags::CLEAN))
        };
        if let (SwapSlot::Slot(_), true) = (a.swslot, clean) {
            // The swap copy is current: the frame is dropped, once no TLB maps it (the flush).
            // The anon keeps its BUSY page until then, so a fault waits rather than reading the
            // slot into another frame while a stale entry still reaches this one.
            uvm.page_protect_batched(pg, Prot::NONE, &mut self.tlb);
            drop(a);
            self.dropped.push(Dropped {
                anon: anon.clone(),
                busy,
            });
            return Added::Dropped;
        }
        if let SwapSlot::Slot(old) = a.swslot {
            // Dirty since it was written there: that copy is stale. Freed first, so that a full
            // device can hand it out again (as the seed drops it before allocating).
            uvm.swap_free(old);
            a.swslot = SwapSlot::None;
        }
        let Some(slot) = self.next_slot() else {
            uvm.unbusy(busy);
            return Added::Refused;
        };
        a.swslot = SwapSlot::Slot(slot);
        // Named before it is unmapped: afterwards no mapping says where it was.
        let at = if uvm.swap_events_on() {
            uvm.rmap().first_mapping(uvm.pa(pg))
        } else {
            None
        };
        uvm.page_protect_batched(pg, Prot::NONE, &mut self.tlb);
        drop(a);
        self.members.push(Member {
            anon: anon.clone(),
            busy,
            at,
        });
        Added::Queued
    }

    /// The slot for the next member: the next reserved one, reserving a run first when none is
    /// left (the longest the map has, from `capacity` down by halves to 1).
    ///
    /// # Locks
    /// Takes the swap map's lock (a leaf); the caller may hold ANON.
    fn next_slot(&mut self) -> Option<u32> {
        if self.reserved == 0 {
            let mut map = self.swap.map.lock();
            let mut want = self.capacity;
            let first = loop {
                if let Some(first) = map.alloc_cluster(want) {
                    break first;
                }
                if want == 1 {
                    return None;
                }
                want /= 2;
            };
            self.first = first;
            self.reserved = want;
        }
        debug_assert!(
            self.members.len() < self.reserved,
            "a full cluster is flushed at once"
        );
        u32::try_from(self.members.len())
            .ok()
            .and_then(|k| self.first.checked_add(k))
    }

    /// Invalidate what the unmaps owe, free the dropped clean pages, write the queued pages as
    /// one request and finish each (see the module documentation), telling the swap listener
    /// of each page written or slot marked bad once the page is finished. Returns how many
    /// frames were freed.
    ///
    /// # Locks
    /// Entry: nothing. The invalidations take PMAP locks one at a time; the write with nothing
    /// held; then per page ANON, PAGE, PMAP, PAGE QUEUES and the swap map's lock, as
    /// `Uvm::unbusy`, `Uvm::free_page` and `Uvm::swap_mark_bad` take them, and the listener
    /// with nothing held; after a write, what `Uvm::swap_poll` takes. Exit: nothing.
    pub(crate) fn flush(&mut self) -> usize {
        let uvm = self.uvm;
        // Invalidates before any frame is freed and before the write is submitted: afterwards
        // no guest can reach (let alone write) a page of the cluster.
        let mut freed = self.flush_dropped();
        let members = core::mem::take(&mut self.members);
        let (first, reserved) = (self.first, core::mem::take(&mut self.reserved));
        let written = members.len();
        let result = if written == 0 {
            Ok(())
        } else {
            let frames: Vec<Pa> = members.iter().map(|m| uvm.pa(m.busy.page())).collect();
            let r = self
                .swap
                .dev
                .write_cluster(first, uvm.mem().as_ref(), &frames);
            Stats::bump(&uvm.daemon().pdpageouts);
            r
        };
        for (k, Member { anon, busy, at }) in members.into_iter().enumerate() {
            Stats::bump(&uvm.daemon().pageouts);
            let slot = first + k as u32;
            let failed = result.is_err().then_some(slot);
            let end = finish(uvm, &anon, busy, failed);
            if end.freed {
                freed += 1;
            }
            if result.is_ok() {
                uvm.swap_event(SwapEvent::PageOut { at, slot });
            } else if end.bad {
                uvm.swap_event(SwapEvent::BadSlot {
                    slot,
                    io: SlotIo::Write,
                });
            }
        }
        // The reserved slots no page took were never written.
        if reserved > written {
            self.swap.map.lock().unreserve(first + written as u32, reserved - written);
        }
        // Swap-ins that finished while the write waited for the device may have been collected
        // by that wait (the hypervisor's disk takes completions in used-ring order, so every one
        // ahead of the write's own), their interrupt taken by a CPU that found the disk busy:
        // finish them now, not at whichever poll comes next.
        if written != 0 {
            uvm.swap_poll();
        }
        freed
    }
}

impl SwapCluster<'_> {
    /// Run the invalidations the cluster's unmaps owe (the queued pages' too), then free the
    /// dropped clean pages. Returns how many frames were freed.
    ///
    /// # Locks
    /// Entry: nothing. PMAP locks one at a time (the batch's flush), then per page as
    /// [`finish`]. Exit: nothing.
    fn flush_dropped(&mut self) -> usize {
        self.tlb.flush();
        let mut freed = 0;
        for Dropped { anon, busy } in core::mem::take(&mut self.dropped) {
            // A successful end without I/O: frees the frame, or the frame and the slot an anon
            // freed meanwhile left (`anon.rs`); the slot is not ours otherwise.
            if finish(self.uvm, &anon, busy, None).freed {
                freed += 1;
            }
        }
        freed
    }
}

impl Drop for SwapCluster<'_> {
    /// A cluster dropped with pages queued writes (or drops) them: their pages are BUSY and
    /// unmapped, and only the flush gives them back.
    fn drop(&mut self) {
        self.flush();
    }
}

/// How one page's page-out ended.
struct Ended {
    /// The frame was freed.
    freed: bool,
    /// A slot was marked bad (counted in `swpgbad`).
    bad: bool,
}

/// End one page's page-out after its request (or, for a dropped clean page, after the TLB
/// flush): free the frame on success; when the write to `failed` failed, keep the page resident
/// with no slot and mark that slot bad. An anon freed during the write left its page and slot
/// to us: both are freed (the slot marked bad when the write failed).
///
/// # Locks
/// Entry: nothing. Takes ANON, and under it PAGE, PMAP, PAGE QUEUES and the swap map's lock
/// (`Uvm::unbusy`, `Uvm::free_page`, `Uvm::swap_mark_bad`). Exit: nothing.
fn finish(uvm: &Uvm, anon: &Arc<Anon>, busy: Busy, failed: Option<u32>) -> Ended {
    let pg = busy.page();
    let ok = failed.is_none();
    let mut a = anon.lock();
    if uvm.page_has(pg, PageFlags::RELEASED) {
        let bad = !ok && uvm.mark_released_slot_bad(pg).is_some();
        if bad {
            Stats::bump(&uvm.daemon().swpgbad);
        }
        uvm.unbusy(busy);
        Stats::bump(&uvm.daemon().pdfreed);
        return Ended { freed: true, bad };
    }
    if let Some(slot) = failed {
        uvm.swap_mark_bad(slot);
        Stats::bump(&uvm.daemon().swpgbad);
        if a.swslot == SwapSlot::Slot(slot) {
            a.swslot = SwapSlot::None;
        }
        uvm.activate(pg);
        uvm.unbusy(busy);
        return Ended {
            freed: false,
            bad: true,
        };
    }
    a.page = None;
    uvm.free_page(busy);
    Stats::bump(&uvm.daemon().pdfreed);
    Ended {
        freed: true,
        bad: false,
    }
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
