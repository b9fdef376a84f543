//! The invalidations a [`TlbBatch`](crate::pmap::TlbBatch) owes this table (`Inner::owed`):
//! IPAs unmapped without a TLBI, which a TLB may still map to their old frames until the
//! batch is flushed (see `pmap/batch.rs`, "Safety argument").
//!
//! Nothing needs them while the IPA stays unmapped: the old frame is held by the batch's owner
//! until the flush. They matter when the IPA is about to mean something else: entering any
//! mapping at it (invalid → valid writes no TLBI, trusting that nothing faulting is cached),
//! and lowering or removing mappings of a range containing it (whose caller expects no access
//! the range no longer grants to survive). Those invalidate the owed IPAs first, and forget
//! them; the batch's own flush later invalidates again, which is harmless. Each entry carries
//! the token the batch holds, so a batch that flushes late forgets only its own entries, never
//! the debt of a later batch at the same IPA.
//!
//! # Locks
//! `settle_owed_*` run with the table's lock held by the caller; `paid` takes it.

use super::{Inner, Stage2};
use crate::addr::{Ipa, PAGE_SIZE};
use crate::pmap::TlbBatch;

impl Stage2 {
    /// Invalidate `ipa` now if a batch still owes it (before a mapping is entered there).
    pub(super) fn settle_owed_at(&self, inner: &mut Inner, ipa: u64) {
        if !inner.owed.is_empty() && inner.owed.remove(&(ipa & !(PAGE_SIZE - 1))).is_some() {
            self.tlb.invalidate_ipa(self.vmid, Ipa(ipa & !(PAGE_SIZE - 1)));
        }
    }

    /// Invalidate every owed IPA in `[start, end)` now (before the range is protected or
    /// removed): one `invalidate_vm` when there are more than [`TlbBatch::VM_PAGES`].
    pub(super) fn settle_owed_in(&self, inner: &mut Inner, start: u64, end: u64) {
        if inner.owed.is_empty() || start >= end {
            return;
        }
        let first = start & !(PAGE_SIZE - 1);
        let ipas: alloc::vec::Vec<u64> = inner.owed.range(first..end).map(|(&i, _)| i).collect();
        if self.invalidate_pages(ipas.iter().copied()) {
            inner.owed.clear();
        } else {
            for ipa in &ipas {
                inner.owed.remove(ipa);
            }
        }
    }

    /// Invalidate the pages at `ipas`: one `invalidate_vm` when there are more than
    /// [`TlbBatch::VM_PAGES`] (true: every entry of the VMID went), else one `invalidate_ipa`
    /// each.
    fn invalidate_pages(&self, ipas: impl ExactSizeIterator<Item = u64>) -> bool {
        if ipas.len() > TlbBatch::VM_PAGES {
            self.invalidate_all();
            return true;
        }
        ipas.for_each(|ipa| self.tlb.invalidate_ipa(self.vmid, Ipa(ipa)));
        false
    }

    /// A batch's flush of what it owes this table: invalidate `ipas` (one `invalidate_vm` when
    /// there are more than [`TlbBatch::VM_PAGES`]), then forget them (with the tokens the batch
    /// held), unless the table owes a later batch the same IPA. The invalidation runs without
    /// the table's lock: it waits for every CPU, and nothing here needs the table meanwhile (a
    /// concurrent enter at an owed IPA invalidates it itself).
    ///
    /// # Locks
    /// Takes this table's lock after the invalidation; the caller holds no PMAP-or-later lock.
    pub(in crate::pmap) fn pay(&self, ipas: &[(Ipa, u64)]) {
        self.invalidate_pages(ipas.iter().map(|(ipa, _)| ipa.0));
        let mut inner = self.inner.lock();
        for &(ipa, token) in ipas {
            if inner.owed.get(&ipa.0) == Some(&token) {
                inner.owed.remove(&ipa.0);
            }
        }
    }

    /// Number of IPAs this table owes an invalidation (for tests and assertions).
    pub fn owed_invalidations(&self) -> usize {
        self.inner.lock().owed.len()
    }
}
