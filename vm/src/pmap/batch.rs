//! Deferred stage-2 invalidations for a run of unmaps: [`TlbBatch`], the pagedaemon's
//! "shootdown" collector (Linux's `arch_tlbbatch` for reclaim, NetBSD's deferred `pmap_update`).
//!
//! Under QEMU TCG every broadcast TLBI stops every vCPU thread, so the page-out of a 16-page
//! cluster used to cost 16 of them. Unmaps fed to a batch ([`Rmap::page_protect_batched`])
//! clear the descriptor (and the reverse-map entry) at once but leave the TLB alone; the
//! batch's [`TlbBatch::flush`] then invalidates once per table: one `invalidate_vm` for a table
//! with more than [`TlbBatch::VM_PAGES`] pages in the batch, else one `invalidate_ipa` a page.
//!
//! # Safety argument
//! Until a batch is flushed, any CPU may still reach an unmapped page's frame through a stale
//! TLB entry, for reads and, if the mapping allowed it, writes. So:
//! - **No frame may be freed or reused while a batch still owes its invalidation.** The batch's
//!   owner holds every such page BUSY (or otherwise owns it) and frees it only after `flush`.
//! - **A page may not be written to swap while a guest can still write it**: the owner flushes
//!   before it submits the write (a write through a stale entry after the copy was taken would
//!   be lost).
//! - **No other mapping of the IPA may become visible while the old one may be cached**: while
//!   the page is BUSY no fault can map it again, but the IPA could come to resolve to another
//!   frame (the anon freed and the IPA faulted afresh, an object page refetched), and then one
//!   vCPU would see the new frame and another the old one. Each table remembers the IPAs it
//!   owes an invalidation (`Inner::owed`, with the batch's token): entering a mapping at such
//!   an IPA, and lowering or removing mappings of a range containing one, invalidates it first
//!   (Linux's `flush_tlb_batched_pending` does the same for an mm with reclaim's flush pending).
//!   `Stage2::clear` and dropping a table invalidate the whole VMID and forget what was owed.
//!
//! A batch holds a reference to each table it owes; the flush (or dropping the batch, which
//! flushes) releases them.
//!
//! # Locks
//! Filling a batch takes what `Rmap::page_protect` takes. `flush` takes each owed table's lock
//! in turn (after its invalidation, to forget what it owed), and must be called with no
//! PMAP-or-later lock held: it may drop the last reference to a table, whose `Drop` frees
//! frames (PAGE QUEUES).

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::Stage2;
use crate::addr::Ipa;
#[cfg(doc)]
use crate::pmap::Rmap;

/// What one table is owed: the IPAs unmapped without invalidation, each with the token the
/// table recorded for it.
struct Owed {
    table: Arc<Stage2>,
    ipas: Vec<(Ipa, u64)>,
}

/// Stage-2 invalidations owed by unmaps made without one (see the module documentation).
#[derive(Default)]
pub struct TlbBatch {
    owed: Vec<Owed>,
}

impl TlbBatch {
    /// A table with more pages than this in a batch gets one `invalidate_vm`, not one
    /// `invalidate_ipa` a page: one broadcast stops the vCPUs once, whatever it covers, and a
    /// VM's other entries refill from its tables.
    pub const VM_PAGES: usize = 2;

    /// An empty batch.
    pub fn new() -> TlbBatch {
        TlbBatch::default()
    }

    /// True when nothing is owed.
    pub fn is_empty(&self) -> bool {
        self.owed.is_empty()
    }

    /// Number of pages unmapped and not yet invalidated.
    pub fn pages(&self) -> usize {
        self.owed.iter().map(|o| o.ipas.len()).sum()
    }

    /// Record that `table` owes an invalidation of `ipa` (its token `token`).
    pub(super) fn push(&mut self, table: &Arc<Stage2>, ipa: Ipa, token: u64) {
        match self.owed.iter_mut().find(|o| Arc::ptr_eq(&o.table, table)) {
            Some(o) => o.ipas.push((ipa, token)),
            None => self.owed.push(Owed {
                table: table.clone(),
                ipas: alloc::vec![(ipa, token)],
            }),
        }
    }

    /// Run every owed invalidation (each waits for completion on all CPUs, `Tlb`); afterwards
    /// no TLB maps any page unmapped into the batch, and their frames may be written out,
    /// freed or reused. Empties the batch.
    ///
    /// # Locks
    /// Entry: no PMAP-or-later lock. Takes each owed table's lock in turn. Exit: as on entry.
    pub fn flush(&mut self) {
        for Owed { table, ipas } in core::mem::take(&mut self.owed) {
            table.pay(&ipas);
        }
    }
}

impl Drop for TlbBatch {
    /// A batch never goes away owing: its pages' frames are about to be freed.
    fn drop(&mut self) {
        self.flush();
    }
}
