//! `Stage2`: one VM's stage-2 translation table, the real `Pmap`.
//!
//! Geometry: 4 KiB granule, 40-bit IPA (T0SZ = 24), lookup starting at level 1. A 40-bit IPA
//! resolves IPA\[39:30\] (10 bits) at level 1, so the root is two *concatenated* level-1 tables: two
//! physically contiguous frames, 8 KiB aligned, 1024 entries (Arm ARM D8.2, "concatenated
//! translation tables"; KVM does the same for its default 40-bit IPA). Levels 2 and 3 are ordinary
//! 512-entry tables in single frames. We only write 4 KiB pages (level-3 descriptors); blocks are
//! decodable (see `desc`) for the 2 MiB work to come.
//!
//! ```text
//!  IPA  39        30 29       21 20       12 11        0
//!      +------------+-----------+-----------+-----------+
//!      | L1 (1024)  | L2 (512)  | L3 (512)  |  offset   |
//!      +------------+-----------+-----------+-----------+
//!  root (2 frames) ─► L2 table ─► L3 table ─► page
//! ```
//!
//! Every table frame comes from `TableFrames` and is reached only through `PhysMem`. Each
//! non-root table's count of valid entries is kept in the lock-protected state, so `remove` can
//! free a table the moment it empties (after invalidating its table descriptor and the TLB).
//!
//! TLB maintenance: invalid → valid needs none (the architecture caches no faulting entry, and
//! the TLBI is the dominant cost of a fault under QEMU), except at an IPA a `TlbBatch` still owes
//! an invalidation (see `owed.rs`). Any change of a valid descriptor that the hardware reads is
//! followed by `Tlb::invalidate_ipa`, except clearing the access flag for aging, which is lazy
//! (`leaf.rs`, `Stage2::clear_access_flag`), and an unmap fed to a `TlbBatch`
//! (`pmap/batch.rs`), whose owner invalidates before the frame goes; a change that needs
//! break-before-make writes the invalid descriptor, invalidates, and only then writes the new
//! one.
//!
//! Clearing the whole table in one step (fork) is in `clear`, with the generations that make its
//! reverse-map entries stale; its table frames go back to `TableFrames` as one retired set
//! (`TableFrames::retire_tables`), reused or freed lazily by the allocator.
//!
//! Files: this one (the table, its geometry and the `Pmap` operations), `walk` (descriptor slots,
//! walks, allocating and releasing tables), `leaf` (changing level-3 descriptors:
//! enter, protect, unwire, the rmap's operations), `clear` (the one-step clear with generations),
//! `remove` (the batched `remove`), `owed` (the invalidations a `TlbBatch` owes this table).
//!
//! # Locks
//! One spin lock per `Stage2` serialises every change and walk of its tables. Order: this lock,
//! then the rmap lock, then the reverse map's tables lock (`pmap/tables.rs`). `Tlb` and `TableFrames` are called with the lock held; they must not call
//! back into the pmap.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use core::sync::atomic::AtomicU64;

use crate::sync::Mutex;

use super::desc::{Descriptor, Entry, Level, Stage2Attributes};
use super::tables::TableId;
use super::{EnterFlags, Pmap, PmapError, Rmap, TableFrames, Tlb, Vmid};
use crate::addr::{Ipa, Pa, Prot, PAGE_SIZE};
use crate::physmem::PhysMem;

mod clear;
mod leaf;
mod owed;
mod remove;
mod walk;

use remove::Deferred;
use walk::Walk;

/// Named fields of VTCR_EL2 (Arm ARM D19, "VTCR_EL2, Virtualization Translation Control
/// Register").
pub mod vtcr_el2 {
    /// T0SZ, bits \[5:0\]: the IPA space is 2^(64 - T0SZ) bytes.
    pub const fn t0sz(ipa_bits: u32) -> u64 {
        (64 - ipa_bits as u64) & 0x3f
    }
    /// SL0, bits \[7:6\], with TG0 = 4 KiB: 0b01 = start at level 1.
    pub const SL0_LEVEL1: u64 = 0b01 << 6;
    /// IRGN0, bits \[9:8\]: table walks Normal inner Write-Back Read-Allocate Write-Allocate.
    pub const IRGN0_WBRAWA: u64 = 0b01 << 8;
    /// ORGN0, bits \[11:10\]: table walks Normal outer Write-Back Read-Allocate Write-Allocate.
    pub const ORGN0_WBRAWA: u64 = 0b01 << 10;
    /// SH0, bits \[13:12\]: table walks inner shareable.
    pub const SH0_INNER: u64 = 0b11 << 12;
    /// TG0, bits \[15:14\]: 0b00 = 4 KiB granule.
    pub const TG0_4K: u64 = 0b00 << 14;
    /// PS, bits \[18:16\]: 0b010 = 40-bit output (physical) addresses.
    pub const PS_40BIT: u64 = 0b010 << 16;
    /// Bit 31 is RES1.
    pub const RES1: u64 = 1 << 31;
}

/// Non-root table frames and their number of valid entries, plus the counters.
struct Inner {
    /// Table frame → valid entries in it (level-2 and level-3 tables; the root is not here).
    live: BTreeMap<u64, u16>,
    /// Valid leaf descriptors.
    resident: usize,
    /// Valid leaf descriptors with the software wired bit.
    wired: usize,
    /// Set while a large `remove` batches its TLB maintenance (see `remove.rs`).
    deferred: Option<Deferred>,
    /// The tables of the last 2 MiB region an allocating walk reached (see `walk.rs`).
    last_walk: Option<walk::Cached>,
    /// Which level-1 slots of the root hold a table descriptor: what `clear` invalidates.
    root_used: RootSlots,
    /// IPAs unmapped into a `TlbBatch` whose invalidation has not run yet, each with the token
    /// the batch holds for it: what must be invalidated before another mapping of the IPA is
    /// entered (see `pmap/batch.rs`).
    owed: BTreeMap<u64, u64>,
    /// Set for the length of one batched unmap (`rmap_protect_batched`): the token the removal
    /// records in `owed` instead of invalidating. `remove_leaf` takes it.
    batching: Option<u64>,
    /// The next token for `owed`.
    next_token: u64,
}

/// A set of level-1 slots of the root, one bit each.
#[derive(Default)]
struct RootSlots([u64; (Stage2::ROOT_ENTRIES / 64) as usize]);

impl RootSlots {
    fn set(&mut self, index: u64, used: bool) {
        let bit = 1u64 << (index % 64);
        if let Some(w) = self.0.get_mut((index / 64) as usize) {
            if used {
                *w |= bit;
            } else {
                *w &= !bit;
            }
        }
    }

    /// Every slot in the set, ascending, emptying it.
    fn take(&mut self) -> impl Iterator<Item = u64> {
        let words = core::mem::take(&mut self.0);
        words.into_iter().enumerate().flat_map(|(i, mut w)| {
            core::iter::from_fn(move || {
                (w != 0).then(|| {
                    let b = u64::from(w.trailing_zeros());
                    w &= w - 1;
                    i as u64 * 64 + b
                })
            })
        })
    }
}

/// One VM's stage-2 translation table. See the module documentation.
pub struct Stage2 {
    /// This table's number in the reverse map (see `tables.rs`).
    id: TableId,
    mem: Arc<dyn PhysMem>,
    tlb: Arc<dyn Tlb>,
    frames: Arc<dyn TableFrames>,
    rmap: Arc<Rmap>,
    vmid: Vmid,
    root: Pa,
    /// Renewed (under the lock) by [`Stage2::clear`]: reverse-map entries of an older generation
    /// are stale (see `stage2/clear.rs`).
    generation: AtomicU64,
    /// Invalidations of the whole VMID so far ([`Stage2::invalidate_all`]): one the clock's
    /// aging would owe is already done when this moved (`pmap/aged.rs`).
    whole_invalidations: AtomicU64,
    inner: Mutex<Inner>,
}

impl core::fmt::Debug for Stage2 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Stage2")
            .field("vmid", &self.vmid)
            .field("root", &self.root)
            .finish()
    }
}

impl Stage2 {
    /// Width of the IPA space.
    pub const IPA_BITS: u32 = 40;
    /// First IPA outside the space.
    pub const IPA_LIMIT: u64 = 1 << Self::IPA_BITS;
    /// Width of output addresses (VTCR_EL2.PS).
    pub const PA_BITS: u32 = 40;
    /// Frames of the concatenated level-1 root.
    pub const ROOT_FRAMES: usize = 2;
    /// A `remove` of more pages than this uses one `invalidate_vm` instead of per-page TLBIs.
    pub const BATCH_REMOVE_PAGES: u64 = 64;
    /// Entries of the concatenated level-1 root.
    const ROOT_ENTRIES: u64 = 1 << (Self::IPA_BITS - Level::L1.shift());

    /// VTCR_EL2 for this geometry: T0SZ = 24 (40-bit IPA), SL0 = level 1, walks inner/outer
    /// WB RA WA inner shareable, 4 KiB granule, 40-bit PS, 8-bit VMID (VS = 0), no hardware AF
    /// or dirty management (HA = HD = 0), RES1 bit 31: 0x8002_3558.
    /// (The design notes' working value, 0x8002_3560, is the same with T0SZ = 32, a 4 GiB IPA
    /// space.)
    pub const VTCR_EL2: u64 = vtcr_el2::RES1
        | vtcr_el2::PS_40BIT
        | vtcr_el2::TG0_4K
        | vtcr_el2::SH0_INNER
        | vtcr_el2::ORGN0_WBRAWA
        | vtcr_el2::IRGN0_WBRAWA
        | vtcr_el2::SL0_LEVEL1
        | vtcr_el2::t0sz(Self::IPA_BITS);

    /// Largest VMID: VTCR_EL2.VS = 0 selects 8-bit VMIDs (VTTBR_EL2 bits \[55:48\]).
    pub const MAX_VMID: u16 = 0xff;

    /// A new, empty stage-2 table for `vmid`, its root taken from `frames`.
    ///
    /// # Errors
    /// `OutOfRange` when `vmid` exceeds [`Stage2::MAX_VMID`]; `NoMemory` when `frames` has no
    /// 8 KiB-aligned pair of frames for the root.
    pub fn new(
        mem: Arc<dyn PhysMem>,
        tlb: Arc<dyn Tlb>,
        frames: Arc<dyn TableFrames>,
        rmap: Arc<Rmap>,
        vmid: Vmid,
    ) -> Result<Arc<Stage2>, PmapError> {
        if vmid.0 > Self::MAX_VMID {
            return Err(PmapError::OutOfRange);
        }
        let root = frames.alloc_root().ok_or(PmapError::NoMemory)?;
        let aligned = root.0.is_multiple_of(PAGE_SIZE * Self::ROOT_FRAMES as u64);
        if !aligned || root.0 >> Self::PA_BITS != 0 {
            frames.free_root(root);
            return Err(PmapError::NoMemory);
        }
        // Zeroed by `TableFrames`: every level-1 descriptor is invalid already.
        let generation = rmap.tables.next_generation();
        Ok(Arc::new_cyclic(|me| Stage2 {
            id: rmap.tables.register(me.clone(), generation),
            mem,
            tlb,
            frames,
            rmap,
            vmid,
            root,
            generation: AtomicU64::new(generation),
            whole_invalidations: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                live: BTreeMap::new(),
                resident: 0,
                wired: 0,
                deferred: None,
                last_walk: None,
                root_used: RootSlots::default(),
                owed: BTreeMap::new(),
                batching: None,
                next_token: 0,
            }),
        }))
    }

    /// Base of the concatenated level-1 root (8 KiB aligned).
    pub fn root(&self) -> Pa {
        self.root
    }

    /// The VMID tagging this table's TLB entries.
    pub fn vmid(&self) -> Vmid {
        self.vmid
    }

    /// VTTBR_EL2 for this VM: VMID in bits \[63:48\], root table base in BADDR.
    pub fn vttbr(&self) -> u64 {
        (u64::from(self.vmid.0) << 48) | self.root.0
    }

    /// Number of pages mapped.
    pub fn resident(&self) -> usize {
        self.inner.lock().resident
    }

    /// Number of wired pages mapped.
    pub fn wired(&self) -> usize {
        self.inner.lock().wired
    }

    /// Number of level-2 and level-3 table frames in use (the root's two frames not counted).
    pub fn table_frames(&self) -> usize {
        self.inner.lock().live.len()
    }

    /// The raw level-3 descriptor for `ipa` (`INVALID` when no level-3 table covers it, and
    /// outside the IPA space: see `walk.rs`).
    pub fn descriptor(&self, ipa: Ipa) -> Descriptor {
        let _g = self.inner.lock();
        match self.walk(ipa.0) {
            Walk::Found(p) => self.read(p.l3_slot),
            Walk::Hole(_) | Walk::Outside => Descriptor::INVALID,
        }
    }

    /// Which of the `n` (≤ 32) pages from `start` are mapped: bit `i` set when page `i` has a
    /// valid leaf (as [`Pmap::extract`] would find it) and, with `young`, its access flag set
    /// (an old leaf's next access faults). One lock round trip and one walk per level-3 table
    /// for the whole range, where `n` calls of `extract` would take `n` of each: this is how a
    /// fault asks which of its neighbours need no work.
    ///
    /// # Locks
    /// Takes this table's lock.
    pub fn mapped_pages(&self, start: Ipa, n: usize, young: bool) -> u32 {
        let inner = self.inner.lock();
        let mut mask = 0;
        let mut path = None;
        for i in 0..n.min(32) {
            let ipa = start.page_base().0 + i as u64 * PAGE_SIZE;
            if !Self::in_space(ipa) {
                break;
            }
            if i == 0 || ipa.trailing_zeros() >= Level::L2.shift() {
                path = match self.walk_cached(&inner, ipa) {
                    Walk::Found(p) => Some(p.l3_table),
                    Walk::Hole(_) | Walk::Outside => None,
                };
            }
            let Some(l3_table) = path else { continue };
            let d = self.read(Self::slot(l3_table, ipa, Level::L3));
            if let Entry::Leaf { attrs, .. } = d.decode(Level::L3) {
                if !young || attrs.contains(Stage2Attributes::AF) {
                    mask |= 1 << i;
                }
            }
        }
        mask
    }

    /// True when `ipa` is mapped with the wired bit.
    pub fn is_wired(&self, ipa: Ipa) -> bool {
        let d = self.descriptor(ipa.page_base());
        d.is_valid() && d.attributes().contains(Stage2Attributes::SW_WIRED)
    }

    /// Call `f(ipa, pa, prot)` for every mapped page, in IPA order.
    ///
    /// # Locks
    /// `f` runs with this table's lock held: it must not call back into this `Stage2`.
    pub fn for_each_mapping(&self, mut f: impl FnMut(Ipa, Pa, Prot)) {
        let _g = self.inner.lock();
        self.for_each_leaf(0, Self::IPA_LIMIT, |ipa, _path, d| {
            if let Entry::Leaf { oa, attrs, .. } = d.decode(Level::L3) {
                f(Ipa(ipa), oa, attrs.prot());
            }
        });
    }
}

impl Pmap for Stage2 {
    /// Map `ipa` → `pa` as Normal Write-Back memory with `prot` (an empty `prot` removes the
    /// mapping). Replacing a mapping of another frame goes through break-before-make.
    ///
    /// # Errors
    /// `OutOfRange` for an unaligned or ≥ 2^40 IPA or PA; `NoMemory` when a table frame is needed
    /// and `TableFrames` has none (with or without `CANFAIL`: nothing here panics).
    ///
    /// # Locks
    /// Takes this table's lock, then the rmap lock.
    fn enter(&self, ipa: Ipa, pa: Pa, prot: Prot, flags: EnterFlags) -> Result<(), PmapError> {
        self.enter_replacing(ipa, pa, prot, flags).map(|_| ())
    }

    /// # Locks
    /// Takes this table's lock, then the rmap lock.
    ///
    /// Ranges of more than [`Stage2::BATCH_REMOVE_PAGES`] pages are torn down with a single
    /// `invalidate_vm` instead of one `invalidate_ipa` per page (see `remove.rs`).
    fn remove(&self, start: Ipa, end: Ipa) {
        self.remove_range(start, end);
    }

    /// `None` outside the IPA space (the walk's range check, see `walk.rs`).
    fn extract(&self, ipa: Ipa) -> Option<(Pa, Prot)> {
        let _g = self.inner.lock();
        let Walk::Found(path) = self.walk(ipa.0) else {
            return None;
        };
        match self.read(path.l3_slot).decode(Level::L3) {
            Entry::Leaf { oa, attrs, .. } => Some((oa, attrs.prot())),
            _ => None,
        }
    }

    /// A wired mapping left with nothing (`prot` NONE, or EXEC over a read-only mapping) is not
    /// removed but kept as a valid descriptor that permits nothing (S2AP = 0b00, XN; the guest
    /// takes a permission fault on it). The wired leaf is what remembers which frame the wiring
    /// pinned: `unwire` finds wired pages through their mappings (as the seed's
    /// `uvm_fault_unwire_locked` does) and takes the no-access leaf away with the wiring. The
    /// alternative, finding the page through the amap or object at unwire time, would have to
    /// guess which layer's page the wiring went to (the anon's, or the object page under it) and
    /// take the object's lock on an unwire path; the leaf knows.
    ///
    /// # Locks
    /// Takes this table's lock, then the rmap lock.
    fn protect(&self, start: Ipa, end: Ipa, prot: Prot) {
        let mut inner = self.inner.lock();
        self.settle_owed_in(&mut inner, start.0, end.0);
        self.for_each_leaf(start.0, end.0, |ipa, path, d| {
            self.protect_leaf(&mut inner, ipa, path, d, prot, true);
        });
    }

    /// Clears the software wired bit (see [`Stage2::unwire_leaf`]).
    fn unwire(&self, ipa: Ipa) {
        let _ = self.unwire_leaf(ipa);
    }

    /// TLB maintenance is done at each change: nothing is deferred.
    fn update(&self) {}

    /// False outside the IPA space (the walk's range check, see `walk.rs`).
    fn clear_access(&self, ipa: Ipa) -> bool {
        let _g = self.inner.lock();
        let Walk::Found(path) = self.walk(ipa.page_base().0) else {
            return false;
        };
        let d = self.read(path.l3_slot);
        if !d.is_valid() || !d.attributes().contains(Stage2Attributes::AF) {
            return false;
        }
        // No TLBI: see `Stage2::clear_access_flag`.
        self.clear_access_flag(path.l3_slot, d);
        true
    }
}

impl Drop for Stage2 {
    /// Unregister from the reverse map, invalidate the VMID's TLB entries, free every table. The
    /// rmap entries of this table need no walk: their table number is unregistered, so they are
    /// stale and pruned lazily (see `pmap/tables.rs`).
    fn drop(&mut self) {
        self.rmap.tables.unregister(self.id);
        self.invalidate_all();
        let inner = self.inner.get_mut();
        for (&frame, _) in inner.live.iter() {
            self.frames.free_table(Pa(frame));
        }
        inner.live.clear();
        inner.resident = 0;
        inner.wired = 0;
        self.frames.free_root(self.root);
    }
}
