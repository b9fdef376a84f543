//! The batched `remove`: a range of more than [`Stage2::BATCH_REMOVE_PAGES`] pages is torn down
//! with one `invalidate_vm` instead of one `invalidate_ipa` per page, its rmap removals and table
//! frees postponed until that invalidation has run.
//!
//! # Locks
//! `remove_range` takes the table's lock, then the rmap lock; `finish_deferred` runs with the
//! table's lock held.

use super::Stage2;
use crate::addr::{Ipa, Pa, PAGE_SIZE};

/// Work a large `remove` postpones until one `invalidate_vm` has run: per-page broadcast TLBIs
/// dominate the cost of tearing down a VM's RAM under QEMU. Until that invalidation, other CPUs may
/// still hold TLB entries for the removed pages, so neither the rmap entries (which tell owners the
/// frame is still mapped) nor the freed table frames may be released before it.
#[derive(Default)]
pub(super) struct Deferred {
    /// (frame, ipa) of every leaf removed.
    pub(super) unmapped: alloc::vec::Vec<(Pa, u64)>,
    /// Table frames unlinked.
    pub(super) tables: alloc::vec::Vec<Pa>,
}

impl Stage2 {
    /// [`Pmap::remove`](crate::pmap::Pmap::remove): unmap every page of `[start, end)`, freeing the
    /// tables it empties.
    ///
    /// # Locks
    /// Takes this table's lock, then the rmap lock.
    pub(super) fn remove_range(&self, start: Ipa, end: Ipa) {
        let mut inner = self.inner.lock();
        self.settle_owed_in(&mut inner, start.0, end.0);
        let first = start.0 & !(PAGE_SIZE - 1);
        if end.0.min(Self::IPA_LIMIT).saturating_sub(first) > Self::BATCH_REMOVE_PAGES * PAGE_SIZE {
            inner.deferred = Some(Deferred::default());
        }
        // Each page is walked afresh, so freeing the table a leaf was in is harmless.
        self.for_each_leaf(first, end.0, |ipa, path, d| {
            self.remove_leaf(&mut inner, ipa, path, d)
        });
        if let Some(deferred) = inner.deferred.take() {
            self.finish_deferred(deferred);
        }
    }

    /// One invalidation for the whole VM, then what a batched `remove` postponed.
    fn finish_deferred(&self, deferred: Deferred) {
        if deferred.unmapped.is_empty() && deferred.tables.is_empty() {
            return;
        }
        self.invalidate_all();
        for (oa, ipa) in deferred.unmapped {
            self.rmap.remove(oa, self.id, Ipa(ipa), self.generation());
        }
        for table in deferred.tables {
            self.frames.free_table(table);
        }
    }
}
