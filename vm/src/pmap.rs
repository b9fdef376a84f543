//! The pmap layer: the hardware's stage-2 translation, behind the seed's pmap interface.
//!
//! `Pmap` is the interface the fault routine uses (`pmap_enter`, `pmap_remove`, …). `Stage2` is the
//! real implementation: a VMSAv8-64 stage-2 table (4 KiB granule, 40-bit IPA, start level 1) that
//! lives in frames reached through `PhysMem`, with break-before-make on every change of a valid
//! descriptor and TLB maintenance through `Tlb`. The reverse map (which VM/IPA maps a frame) is
//! kept here, like a pmap's pv lists, so that `page_protect` can find every mapping of a frame.
//!
//! Files: `desc` (descriptor encoding, the break-before-make rule), `stage2` (the table, split
//! into `stage2/{walk,leaf,clear,remove,owed}.rs`),
//! `rmap` (the reverse map), `batch` (`TlbBatch`: one invalidation for a run of unmaps).
//!
//! # Locks
//! A `Stage2`'s own lock is taken after ANON and before PAGE QUEUES; the reverse-map locks come
//! after it (Stage2 → Rmap → the rmap's tables lock, innermost of all, see `tables.rs`). `Rmap` operations that change tables copy the frame's
//! list under the rmap lock and release it before taking any `Stage2` lock, so they must be called
//! with no PMAP-or-later lock held (no `Stage2` lock, no PAGE QUEUES lock). `Stage2` calls `Tlb`
//! and `TableFrames` (PAGE QUEUES) with its lock held. Nothing here sleeps or calls back into the
//! engine.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::addr::{Ipa, Pa, Prot, PAGE_SIZE};

mod aged;
mod batch;
pub mod desc;
pub mod rmap;
pub mod stage2;
mod tables;
#[cfg(test)]
mod tests;

pub use aged::AgedTables;
pub use batch::TlbBatch;
pub use desc::{Descriptor, Entry, Level, MemAttr, Stage2Attributes};
pub use rmap::Rmap;
pub use stage2::Stage2;

/// VM identifier programmed into VTTBR_EL2.VMID; tags that VM's stage-2 TLB entries.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Vmid(pub u16);

bitflags::bitflags! {
    /// Flags of `Pmap::enter` (the seed's `PMAP_CANFAIL`, `PMAP_WIRED`).
    #[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
    pub struct EnterFlags: u8 {
        /// Return `PmapError::NoMemory` instead of treating a table-frame shortage as fatal.
        const CANFAIL = 1 << 0;
        /// The mapping is wired: `unwire` must be called before it may be removed by paging.
        const WIRED = 1 << 1;
    }
}

/// Why `Pmap::enter` failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PmapError {
    /// No frame was available for an intermediate table (only with `CANFAIL`).
    NoMemory,
    /// The IPA is outside the stage-2 input range.
    OutOfRange,
}

/// TLB maintenance for stage-2 changes. The hypervisor implements it with `TLBI IPAS2E1IS` /
/// `TLBI VMALLS12E1IS` and the barriers the Arm ARM requires; host tests with a recorder.
pub trait Tlb: Send + Sync {
    /// Invalidate stage-2 (and combined stage-1+2) entries for `ipa` in `vmid`, all CPUs, and wait.
    fn invalidate_ipa(&self, vmid: Vmid, ipa: Ipa);
    /// Invalidate every entry of `vmid`, all CPUs, and wait.
    fn invalidate_vm(&self, vmid: Vmid);
}

/// Frames for intermediate translation tables (taken from the same pool as guest pages).
pub trait TableFrames: Send + Sync {
    /// A zeroed frame, or `None` when the pool is empty.
    fn alloc_table(&self) -> Option<Pa>;
    /// Return a table frame that no descriptor points to any more.
    fn free_table(&self, frame: Pa);

    /// Take back a whole set of table frames at once ([`Stage2::clear`]): every one is
    /// unreachable by the hardware (unlinked, and the invalidation covering their walk-cache
    /// entries has run), so each may be reused at once. Handing them over costs O(1): an
    /// implementation keeps the set as it is and takes frames out of it lazily — reused
    /// (re-zeroed) by `alloc_table`, and returned to the pool before any allocation would
    /// otherwise fail — rather than freeing each frame now.
    ///
    /// The provided version frees each frame with `free_table` (O(frames)).
    fn retire_tables(&self, tables: RetiredTables) {
        for frame in tables {
            self.free_table(frame);
        }
    }

    /// Two physically contiguous zeroed frames, the first 8 KiB aligned: the concatenated
    /// level-1 root of a 40-bit stage-2 table (see `Stage2`). `None` when there is no such pair.
    ///
    /// The provided version looks for an aligned adjacent pair among up to
    /// [`ROOT_SEARCH_FRAMES`] frames from `alloc_table` and returns the others; it works for
    /// allocators that hand out ascending frames (a fresh free list). A pool that can allocate
    /// contiguous frames should override it (and `free_root`).
    fn alloc_root(&self) -> Option<Pa> {
        let mut got: Vec<Pa> = Vec::new();
        let mut found = None;
        let pair = |a: Pa, b: Pa| a.0.is_multiple_of(2 * PAGE_SIZE) && b.0 == a.0 + PAGE_SIZE;
        while got.len() < ROOT_SEARCH_FRAMES {
            let Some(f) = self.alloc_table() else { break };
            // Only pairs involving the newest frame are new.
            found = got.iter().find_map(|&g| {
                if pair(f, g) {
                    Some(f)
                } else if pair(g, f) {
                    Some(g)
                } else {
                    None
                }
            });
            got.push(f);
            if found.is_some() {
                break;
            }
        }
        for &f in &got {
            if found.is_none_or(|lo: Pa| f != lo && f.0 != lo.0 + PAGE_SIZE) {
                self.free_table(f);
            }
        }
        found
    }

    /// Return a root obtained from `alloc_root`.
    fn free_root(&self, root: Pa) {
        self.free_table(root);
        self.free_table(root.add_pages(1));
    }
}

/// Table frames a [`Stage2`] gave up at once (see [`TableFrames::retire_tables`]): no descriptor
/// points to any of them and no TLB or walk cache holds them. Taking the set out of the table is
/// O(1) (it is the table's own index of frames, moved); taking a frame out of it is O(log n).
#[derive(Debug, Default)]
pub struct RetiredTables {
    frames: BTreeMap<u64, u16>,
}

impl RetiredTables {
    /// Wrap a `Stage2`'s index of table frames (frame → valid entries; the counts are ignored).
    pub(crate) fn from_index(frames: BTreeMap<u64, u16>) -> RetiredTables {
        RetiredTables { frames }
    }

    /// Number of frames left in the set.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True when no frame is left.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// True when `frame` is in the set.
    pub fn contains(&self, frame: Pa) -> bool {
        self.frames.contains_key(&frame.0)
    }

    /// Take one frame out of the set.
    pub fn pop(&mut self) -> Option<Pa> {
        self.frames.pop_first().map(|(f, _)| Pa(f))
    }
}

impl Iterator for RetiredTables {
    type Item = Pa;
    fn next(&mut self) -> Option<Pa> {
        self.pop()
    }
}

/// How many frames the provided `TableFrames::alloc_root` tries before giving up.
pub const ROOT_SEARCH_FRAMES: usize = 64;

/// The seed's pmap interface, over one VM's IPA space.
pub trait Pmap: Send + Sync {
    /// Map `ipa` (page aligned) to `pa` with `prot`. Replacing a valid mapping with a different
    /// output address goes through break-before-make. `prot` NONE removes the mapping, except
    /// with WIRED: a wiring fault on an entry protected NONE (WIREMAX) enters a valid no-access
    /// leaf, which keeps the wired frame until it is unwired (as `protect` does).
    fn enter(&self, ipa: Ipa, pa: Pa, prot: Prot, flags: EnterFlags) -> Result<(), PmapError>;
    /// Unmap every page in `[start, end)`.
    fn remove(&self, start: Ipa, end: Ipa);
    /// The frame and protection `ipa` maps to, if any.
    fn extract(&self, ipa: Ipa) -> Option<(Pa, Prot)>;
    /// Lower the protection of every mapping in `[start, end)` to at most `prot` (NONE removes,
    /// except a wired mapping, which stays as a valid no-access mapping until it is unwired).
    fn protect(&self, start: Ipa, end: Ipa, prot: Prot);
    /// Clear the wired flag of the mapping at `ipa`.
    fn unwire(&self, ipa: Ipa);
    /// Make deferred changes visible (TLB maintenance is immediate here, so this is a barrier).
    fn update(&self);
    /// Test and clear the access flag of the mapping at `ipa` (pagedaemon reference bit).
    fn clear_access(&self, ipa: Ipa) -> bool;
}
