//! Dropping clean object pages in batches: their unmaps share one TLB invalidation per VM
//! ([`TlbBatch`], `pmap/batch.rs`), as a page-out cluster's do (`cluster.rs`).
//!
//! [`ObjectDrops::add`] claims a clean, unwired, unloaned object page (BUSY) and unmaps it
//! everywhere into the batch; [`ObjectDrops::flush`] runs the invalidations, then gives each
//! page to its pager's `put` with FREE, which finds it BUSY and marks it RELEASED (taking it
//! out of the object), and lets go of it: a RELEASED page is freed by `Uvm::unbusy`. A page the
//! pager kept (no longer clean, or the pager refused) is simply let go, resident and unmapped.
//!
//! Until the flush the page is BUSY and still its object's: a fault on it waits, so no TLB can
//! be handed a new mapping of it, and its frame is not freed while a stale entry may reach it.
//!
//! # Locks
//! Entry and exit of every function here: nothing held.

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::addr::{PageIdx, Prot, PAGE_SIZE};
use crate::object::{Object, PutFlags};
use crate::page::{Busy, Owner, PageFlags};
use crate::pmap::TlbBatch;
use crate::stats::Stats;
use crate::uvm::Uvm;

use super::CLUSTER_PAGES;

/// One claimed page: its BUSY token, object and offset.
struct Claimed {
    busy: Busy,
    object: Arc<dyn Object>,
    offset: u64,
}

/// Clean object pages unmapped and waiting for their invalidation to be freed.
pub(super) struct ObjectDrops<'u> {
    uvm: &'u Uvm,
    pages: Vec<Claimed>,
    tlb: TlbBatch,
}

impl<'u> ObjectDrops<'u> {
    /// An empty batch.
    pub(super) fn new(uvm: &'u Uvm) -> ObjectDrops<'u> {
        ObjectDrops {
            uvm,
            pages: Vec::new(),
            tlb: TlbBatch::new(),
        }
    }

    /// Pages claimed and not yet freed.
    pub(super) fn pending(&self) -> usize {
        self.pages.len()
    }

    /// Claim and unmap `pg` if it is a droppable object page; flush when [`CLUSTER_PAGES`] wait.
    /// Returns how many frames a flush freed.
    ///
    /// # Locks
    /// Takes PAGE to check and claim the page, then (nothing held) PMAP, PAGE, PAGE QUEUES for
    /// the unmap; a flush as [`ObjectDrops::flush`].
    pub(super) fn add(&mut self, pg: PageIdx) -> usize {
        if !self.claim(pg) || self.pages.len() < CLUSTER_PAGES {
            return 0;
        }
        self.flush()
    }

    fn claim(&mut self, pg: PageIdx) -> bool {
        let uvm = self.uvm;
        let (object, offset, busy) = {
            let mut m = uvm.page_meta(pg).lock();
            let Owner::Object { object, offset } = &m.owner else {
                return false;
            };
            let (object, offset) = (object.clone(), *offset);
            let ok = m.flags.contains(PageFlags::CLEAN) && m.loan_count == 0 && m.wire_count == 0;
            // Checked and claimed in one step: nobody may start using it in between.
            let Some(busy) = ok.then(|| Busy::claim(&mut m, pg)).flatten() else {
                return false;
            };
            (object, offset, busy)
        };
        let Some(object) = object.upgrade() else {
            uvm.unbusy(busy);
            return false;
        };
        uvm.page_protect_batched(pg, Prot::NONE, &mut self.tlb);
        self.pages.push(Claimed {
            busy,
            object,
            offset,
        });
        true
    }

    /// Invalidate, then free every claimed page its pager lets go (see the module
    /// documentation). Returns how many frames were freed.
    ///
    /// # Locks
    /// Entry: nothing. PMAP locks one at a time (the invalidations), then per page OBJECT (and
    /// under it PAGE) through `put`, then PAGE, PMAP, PAGE QUEUES (`Uvm::unbusy`). Exit: nothing.
    pub(super) fn flush(&mut self) -> usize {
        self.tlb.flush();
        let mut freed = 0;
        for Claimed {
            busy,
            object,
            offset,
        } in core::mem::take(&mut self.pages)
        {
            // BUSY: `put` marks the page RELEASED (if it is still clean) instead of freeing it.
            let _ = object.put(
                self.uvm,
                offset,
                offset.saturating_add(PAGE_SIZE),
                PutFlags::FREE,
            );
            if self.uvm.unbusy(busy) {
                Stats::bump(&self.uvm.daemon().pdfreed);
                freed += 1;
            }
        }
        freed
    }
}

impl Drop for ObjectDrops<'_> {
    /// Claimed pages are BUSY and unmapped: only the flush lets them go.
    fn drop(&mut self) {
        self.flush();
    }
}
