//! `Stage2::clear`: unmapping a whole VM in one step, and the generations that make the
//! reverse-map entries of its leaves stale without visiting them.
//!
//! # Clearing in O(1), and stale reverse-map entries
//!
//! Stage 2 has no hierarchical permissions (no APTable), so taking write permission from every
//! mapping of a VM means rewriting every leaf: O(resident). [`Stage2::clear`] instead drops the
//! whole contents: the root's table descriptors are written invalid (at most one per GiB of
//! IPA space in use) and one `invalidate_vm` is issued. The level-2/3 table frames are then unreachable by the hardware (no descriptor points to them, no walk cache
//! holds them), so they are handed back to `TableFrames` as one set
//! ([`TableFrames::retire_tables`]): the table's index of its frames is moved out whole, without
//! visiting a frame, and the allocator reuses or frees them lazily. Freeing them one by one here
//! would cost ~45 ns a table, O(resident / 512). The leaves' reverse-map entries are not visited
//! either: each entry records the *generation* of its table when it was made, and `clear` gives
//! the table a new one (from the reverse map's counter, see `pmap/tables.rs`), so all of them
//! become stale at once. The rmap ignores stale entries (and
//! entries of dropped tables) everywhere — `page_protect`, reference bits, `mappings` — and
//! prunes them whenever it touches their frame's list. The VM refaults what it uses; a fault maps
//! its neighbours too.

use core::sync::atomic::Ordering;

use super::Stage2;
#[cfg(doc)]
use crate::pmap::TableFrames;
use crate::pmap::{Descriptor, RetiredTables};

impl Stage2 {
    /// The current generation (see [`Stage2::clear`]).
    pub(in crate::pmap) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Unmap everything at once, in time independent of the number of mappings and of tables:
    /// the root's valid descriptors are written invalid (one `write_u64` each, as
    /// break-before-make on a live table requires), one `invalidate_vm` is issued, and the level-2 and level-3 table
    /// frames are handed back to `TableFrames` as one set, after that invalidation
    /// ([`TableFrames::retire_tables`]). The reverse-map entries of the leaves are not visited:
    /// the table takes a new generation, which makes them all stale at once (see the module
    /// documentation). This is fork's way of taking write permission from the parent (see `fork.rs`).
    ///
    /// Refused (returns false, nothing changed) while any leaf is wired: a wired leaf is what
    /// keeps a page's wiring reachable (see `fault::wire`), and wired means mapped.
    ///
    /// # Locks
    /// Takes this table's lock; calls `Tlb` and `TableFrames` with it held, and takes the reverse
    /// map's tables lock inside it (to record the new generation). Not an rmap frame lock.
    pub fn clear(&self) -> bool {
        let mut inner = self.inner.lock();
        if inner.wired > 0 {
            return false;
        }
        if inner.resident == 0 && inner.live.is_empty() {
            return true;
        }
        debug_assert!(inner.deferred.is_none());
        let generation = self.rmap.tables.next_generation();
        self.generation.store(generation, Ordering::Release);
        self.rmap.tables.set_generation(self.id, generation);
        // Break: every level-1 table descriptor invalid, then one invalidation for the VMID
        // (walk caches included) before a table frame can be reused. The root is live (other
        // vCPUs walk it meanwhile), so each descriptor is written with `write_u64`, the one
        // store a walker sees whole (`PhysMem::zero` promises no single-copy atomicity); only
        // the slots in use are written, at most one per GiB of IPA space mapped.
        for index in inner.root_used.take() {
            self.write(self.root_slot(index), Descriptor::INVALID);
        }
        self.invalidate_all();
        // That covered every IPA a `TlbBatch` still owes (`owed.rs`).
        inner.owed.clear();
        // Only now may a table frame be reused: hand the whole index over, untouched (O(1)).
        let tables = core::mem::take(&mut inner.live);
        inner.last_walk = None;
        inner.resident = 0;
        if !tables.is_empty() {
            self.frames.retire_tables(RetiredTables::from_index(tables));
        }
        true
    }
}
