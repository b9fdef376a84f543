//! Walking a `Stage2` table: descriptor slots, the non-allocating and allocating walks to a
//! level-3 slot, linking a new table and releasing an emptied one, and visiting the valid leaves
//! of a range. Geometry: see the parent module.
//!
//! The allocating walk (every `enter`, so every fault) remembers the tables of the last 2 MiB
//! region it reached, a one-entry software walk cache: faults come in runs over neighbouring
//! pages, and a hit reads one descriptor instead of three dependent ones. The cache is dropped
//! whenever a table is unlinked (`release_table`) or the whole table is cleared (`clear`), the
//! only ways a level-1 or level-2 descriptor stops pointing where it did.
//!
//! IPAs outside the IPA space (at or above [`Stage2::IPA_LIMIT`]) are refused by both walks, the
//! one range check every lookup and change goes through: the level-1 index is masked to the
//! root's entries, so without it `ipa + 2^40` would walk to the slots of `ipa`.
//!
//! # Locks
//! Every function here runs with the table's lock held by its caller (the `Inner` it is passed,
//! or a guard the caller keeps); `release_table` calls `Tlb` and `TableFrames` with it held.

use super::{Inner, Stage2};
use crate::addr::{Ipa, Pa, PAGE_SIZE};
use crate::pmap::desc::{Descriptor, Entry, Level};
use crate::pmap::PmapError;

const DESC_BYTES: u64 = 8;
const ENTRIES: u64 = 512;

/// The slots a walk passed through to reach a level-3 descriptor.
#[derive(Clone, Copy)]
pub(super) struct Path {
    pub(super) l1_slot: Pa,
    pub(super) l2_table: Pa,
    pub(super) l2_slot: Pa,
    pub(super) l3_table: Pa,
    pub(super) l3_slot: Pa,
}

/// The tables above the level-3 slots of one 2 MiB region (see the module documentation).
#[derive(Clone, Copy)]
pub(super) struct Cached {
    /// The region: IPA >> 21.
    region: u64,
    l1_slot: Pa,
    l2_table: Pa,
    l2_slot: Pa,
    l3_table: Pa,
}

impl Cached {
    fn path(&self, ipa: u64) -> Path {
        Path {
            l1_slot: self.l1_slot,
            l2_table: self.l2_table,
            l2_slot: self.l2_slot,
            l3_table: self.l3_table,
            l3_slot: Stage2::slot(self.l3_table, ipa, Level::L3),
        }
    }
}

/// Result of a non-allocating walk.
pub(super) enum Walk {
    /// The level-3 slot exists (its descriptor may be invalid).
    Found(Path),
    /// Nothing is mapped up to this IPA (exclusive), where the next table would start.
    Hole(u64),
    /// The IPA is outside the IPA space: nothing is or can be mapped there.
    Outside,
}

impl Stage2 {
    pub(super) fn read(&self, slot: Pa) -> Descriptor {
        Descriptor(self.mem.read_u64(slot))
    }

    pub(super) fn write(&self, slot: Pa, d: Descriptor) {
        self.mem.write_u64(slot, d.bits());
    }

    pub(super) fn slot(table: Pa, ipa: u64, level: Level) -> Pa {
        let entries = if level == Level::L1 {
            Self::ROOT_ENTRIES
        } else {
            ENTRIES
        };
        Pa(table.0 + ((ipa >> level.shift()) & (entries - 1)) * DESC_BYTES)
    }

    /// The index in the root of a level-1 slot.
    pub(super) fn root_index(&self, l1_slot: Pa) -> u64 {
        l1_slot.0.saturating_sub(self.root.0) / DESC_BYTES
    }

    /// The level-1 slot of index `index` in the root.
    pub(super) fn root_slot(&self, index: u64) -> Pa {
        Pa(self.root.0 + index * DESC_BYTES)
    }

    pub(super) fn next_boundary(ipa: u64, level: Level) -> u64 {
        (ipa | (level.leaf_size() - 1)).saturating_add(1)
    }

    /// True when `ipa` is inside the IPA space (the walks' range check).
    pub(super) fn in_space(ipa: u64) -> bool {
        ipa < Self::IPA_LIMIT
    }

    /// [`Stage2::walk`] through the walk cache.
    pub(super) fn walk_cached(&self, inner: &Inner, ipa: u64) -> Walk {
        match inner.last_walk {
            Some(c) if c.region == ipa >> Level::L2.shift() => Walk::Found(c.path(ipa)),
            _ => self.walk(ipa),
        }
    }

    /// Walk to the level-3 slot of `ipa` without allocating. A block met on the way (never
    /// written by us) is reported as a hole, an IPA outside the space as `Outside`.
    pub(super) fn walk(&self, ipa: u64) -> Walk {
        if !Self::in_space(ipa) {
            return Walk::Outside;
        }
        let l1_slot = Self::slot(self.root, ipa, Level::L1);
        let Entry::Table(l2_table) = self.read(l1_slot).decode(Level::L1) else {
            return Walk::Hole(Self::next_boundary(ipa, Level::L1));
        };
        let l2_slot = Self::slot(l2_table, ipa, Level::L2);
        let Entry::Table(l3_table) = self.read(l2_slot).decode(Level::L2) else {
            return Walk::Hole(Self::next_boundary(ipa, Level::L2));
        };
        let l3_slot = Self::slot(l3_table, ipa, Level::L3);
        Walk::Found(Path {
            l1_slot,
            l2_table,
            l2_slot,
            l3_table,
            l3_slot,
        })
    }

    /// Walk to the level-3 slot of `ipa`, allocating missing tables (through the walk cache).
    /// `OutOfRange` for an IPA outside the space.
    pub(super) fn walk_alloc(&self, inner: &mut Inner, ipa: u64) -> Result<Path, PmapError> {
        if !Self::in_space(ipa) {
            return Err(PmapError::OutOfRange);
        }
        let region = ipa >> Level::L2.shift();
        if let Some(c) = inner.last_walk.filter(|c| c.region == region) {
            return Ok(c.path(ipa));
        }
        let path = self.walk_alloc_uncached(inner, ipa)?;
        inner.last_walk = Some(Cached {
            region,
            l1_slot: path.l1_slot,
            l2_table: path.l2_table,
            l2_slot: path.l2_slot,
            l3_table: path.l3_table,
        });
        Ok(path)
    }

    fn walk_alloc_uncached(&self, inner: &mut Inner, ipa: u64) -> Result<Path, PmapError> {
        let l1_slot = Self::slot(self.root, ipa, Level::L1);
        let (l2_table, l2_new) = match self.read(l1_slot).decode(Level::L1) {
            Entry::Table(t) => (t, false),
            Entry::Invalid | Entry::Reserved => (self.new_table(inner, l1_slot, None)?, true),
            Entry::Leaf { .. } => return Err(PmapError::OutOfRange),
        };
        let l2_slot = Self::slot(l2_table, ipa, Level::L2);
        let l3_table = match self.read(l2_slot).decode(Level::L2) {
            Entry::Table(t) => t,
            Entry::Invalid | Entry::Reserved => {
                match self.new_table(inner, l2_slot, Some(l2_table)) {
                    Ok(t) => t,
                    Err(e) => {
                        if l2_new {
                            self.release_table(inner, l2_table, l1_slot, None, ipa);
                        }
                        return Err(e);
                    }
                }
            }
            Entry::Leaf { .. } => return Err(PmapError::OutOfRange),
        };
        let l3_slot = Self::slot(l3_table, ipa, Level::L3);
        Ok(Path {
            l1_slot,
            l2_table,
            l2_slot,
            l3_table,
            l3_slot,
        })
    }

    /// Allocate a zeroed table and link it into `slot` (of table `parent`, `None` for the root).
    pub(super) fn new_table(
        &self,
        inner: &mut Inner,
        slot: Pa,
        parent: Option<Pa>,
    ) -> Result<Pa, PmapError> {
        let frame = self.frames.alloc_table().ok_or(PmapError::NoMemory)?;
        if !frame.is_page_aligned() || frame.0 >> Self::PA_BITS != 0 {
            // Not a frame a descriptor can point to: a broken allocator; refuse it.
            debug_assert!(false, "TableFrames gave {frame:?}");
            self.frames.free_table(frame);
            return Err(PmapError::NoMemory);
        }
        // `TableFrames` hands out zeroed frames: every descriptor is invalid already.
        inner.live.insert(frame.0, 0);
        // Invalid -> valid: no TLB maintenance.
        self.write(slot, Descriptor::table(frame));
        match parent {
            Some(p) => *inner.live.entry(p.0).or_insert(0) += 1,
            None => inner.root_used.set(self.root_index(slot), true),
        }
        Ok(frame)
    }

    /// Unlink the (empty) table `table` from `slot` in `parent` and free it; if that empties the
    /// parent, unlink and free the parent too (with `grand_slot` being the parent's slot).
    pub(super) fn release_table(
        &self,
        inner: &mut Inner,
        table: Pa,
        slot: Pa,
        parent: Option<Pa>,
        ipa: u64,
    ) {
        self.write(slot, Descriptor::INVALID);
        inner.live.remove(&table.0);
        inner.last_walk = None;
        if let Some(deferred) = inner.deferred.as_mut() {
            deferred.tables.push(table);
        } else {
            // Walk caches may hold the table descriptor: invalidate before the frame is reused.
            self.tlb
                .invalidate_ipa(self.vmid, Ipa(ipa & !(PAGE_SIZE - 1)));
            self.frames.free_table(table);
        }
        match parent {
            Some(p) => {
                if let Some(n) = inner.live.get_mut(&p.0) {
                    *n = n.saturating_sub(1);
                }
            }
            None => inner.root_used.set(self.root_index(slot), false),
        }
    }

    /// Visit every level-3 slot holding a valid descriptor in `[start, end)`.
    pub(super) fn for_each_leaf(
        &self,
        start: u64,
        end: u64,
        mut f: impl FnMut(u64, Path, Descriptor),
    ) {
        let end = end.min(Self::IPA_LIMIT);
        let mut ipa = start & !(PAGE_SIZE - 1);
        while ipa < end {
            match self.walk(ipa) {
                Walk::Hole(next) => ipa = next,
                Walk::Outside => break,
                Walk::Found(path) => {
                    let d = self.read(path.l3_slot);
                    if d.is_valid() {
                        f(ipa, path, d);
                    }
                    ipa += PAGE_SIZE;
                }
            }
        }
    }

    pub(super) fn check_ipa(ipa: Ipa) -> Result<u64, PmapError> {
        if !ipa.is_page_aligned() || !Self::in_space(ipa.0) {
            return Err(PmapError::OutOfRange);
        }
        Ok(ipa.0)
    }
}
