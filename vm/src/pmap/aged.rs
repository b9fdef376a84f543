//! The clock's TLB cadence: [`AgedTables`], the tables whose access flags one pagedaemon pass
//! cleared, each invalidated once when the pass ends.
//!
//! The flag is cleared with no TLB invalidation (`Stage2::clear_access_flag` says why), so a
//! vCPU whose TLB still holds a mapping uses it without faulting and without setting the flag:
//! the page looks unreferenced while it is in use. Linux and KVM leave the stale entries to
//! "the regular system cadence" of TLB flushes, and so did this engine; but a vCPU that never
//! leaves its CPU sees no such cadence here — none at all once the hypervisor stopped making
//! QEMU flush every CPU at each park (`hyp/src/arch/tlb.rs`), after which scenario
//! `fairmem-off`'s hog lost the frame of its own hot code to the latecomer's reclaim and was
//! stopped. One invalidation per aged VM per pass is that cadence: what a guest touches
//! after a pass sets the flag again (an access-flag fault), and the next pass sees it. A table
//! whose whole VMID was invalidated after its last cleared flag (the pass's own page-out
//! cluster, say) is not invalidated again.
//!
//! # Locks
//! Filling takes what `Rmap::clear_reference` takes. [`AgedTables::flush`] must be called
//! with no PMAP-or-later lock held: each invalidation waits for every CPU, and dropping the
//! last reference to a table frees its frames (PAGE QUEUES).

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::Stage2;

/// The tables one pass cleared access flags in, each with its count of whole-VMID
/// invalidations at the last flag cleared (see the module documentation).
#[derive(Default)]
pub struct AgedTables {
    tables: Vec<(Arc<Stage2>, u64)>,
}

impl AgedTables {
    /// None yet.
    pub fn new() -> AgedTables {
        AgedTables::default()
    }

    /// `table` had an access flag cleared.
    ///
    /// # Locks
    /// Takes none (called between the table's lock and the next page's, `Rmap`).
    pub(super) fn note(&mut self, table: &Arc<Stage2>) {
        let now = table.whole_invalidations();
        match self.tables.iter_mut().find(|(t, _)| Arc::ptr_eq(t, table)) {
            Some((_, at)) => *at = now,
            None => self.tables.push((table.clone(), now)),
        }
    }

    /// Invalidate the VMID of each noted table not invalidated whole since, and forget them.
    ///
    /// # Locks
    /// Entry and exit: no PMAP-or-later lock held.
    pub fn flush(&mut self) {
        for (table, at) in core::mem::take(&mut self.tables) {
            if table.whole_invalidations() == at {
                table.invalidate_all();
            }
        }
    }
}

impl Drop for AgedTables {
    fn drop(&mut self) {
        self.flush();
    }
}
