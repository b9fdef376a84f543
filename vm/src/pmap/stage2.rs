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
//! the TLBI is the dominant cost of a fault under QEMU). Any change of a valid descriptor that the
//! hardware reads is followed by `Tlb::invalidate_ipa`; a change that needs break-before-make
//! writes the invalid descriptor, invalidates, and only then writes the new one.
//!
//! # Clearing in O(tables), and stale reverse-map entries
//!
//! Stage 2 has no hierarchical permissions (no APTable), so taking write permission from every
//! mapping of a VM means rewriting every leaf: O(resident). [`Stage2::clear`] instead drops the
//! whole contents: the root is zeroed, one `invalidate_vm`, and the level-2/3 table frames are
//! freed (O(resident / 512)). The leaves' reverse-map entries are not visited: each entry
//! records the *generation* of its table when it was made, and `clear` bumps the generation, so
//! all of them become stale at once. The rmap ignores stale entries (and entries of dropped
//! tables) everywhere — `page_protect`, reference bits, `mappings` — and prunes them whenever it
//! touches their frame's list. The VM refaults what it uses; a fault maps its neighbours too.
//!
//! # Locks
//! One spin lock per `Stage2` serialises every change and walk of its tables. Order: this lock,
//! then the rmap lock. `Tlb` and `TableFrames` are called with the lock held; they must not call
//! back into the pmap.

use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

use super::desc::{Descriptor, Entry, Level, MemAttr, Stage2Attributes};
use super::{EnterFlags, Pmap, PmapError, Rmap, TableFrames, Tlb, Vmid};
use crate::addr::{Ipa, Pa, Prot, PAGE_SIZE};
use crate::physmem::PhysMem;

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
    /// Set while a large `remove` batches its TLB maintenance (see [`Deferred`]).
    deferred: Option<Deferred>,
}

/// Work a large `remove` postpones until one `invalidate_vm` has run: per-page broadcast TLBIs
/// dominate the cost of tearing down a VM's RAM under QEMU. Until that invalidation, other CPUs may
/// still hold TLB entries for the removed pages, so neither the rmap entries (which tell owners the
/// frame is still mapped) nor the freed table frames may be released before it.
#[derive(Default)]
struct Deferred {
    /// (frame, ipa) of every leaf removed.
    unmapped: alloc::vec::Vec<(Pa, u64)>,
    /// Table frames unlinked.
    tables: alloc::vec::Vec<Pa>,
}

/// The slots a walk passed through to reach a level-3 descriptor.
#[derive(Clone, Copy)]
struct Path {
    l1_slot: Pa,
    l2_table: Pa,
    l2_slot: Pa,
    l3_table: Pa,
    l3_slot: Pa,
}

/// Result of a non-allocating walk.
enum Walk {
    /// The level-3 slot exists (its descriptor may be invalid).
    Found(Path),
    /// Nothing is mapped up to this IPA (exclusive), where the next table would start.
    Hole(u64),
}

/// One VM's stage-2 translation table. See the module documentation.
pub struct Stage2 {
    me: Weak<Stage2>,
    mem: Arc<dyn PhysMem>,
    tlb: Arc<dyn Tlb>,
    frames: Arc<dyn TableFrames>,
    rmap: Arc<Rmap>,
    vmid: Vmid,
    root: Pa,
    /// Bumped (under the lock) by [`Stage2::clear`]: reverse-map entries of an older generation
    /// are stale (see the module documentation).
    generation: AtomicU64,
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

const DESC_BYTES: u64 = 8;
const ENTRIES: u64 = 512;

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
    /// (DESIGN §7's 0x8002_3560 is the same with T0SZ = 32, a 4 GiB IPA space.)
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
        mem.zero(root);
        mem.zero(root.add_pages(1));
        Ok(Arc::new_cyclic(|me| Stage2 {
            me: me.clone(),
            mem,
            tlb,
            frames,
            rmap,
            vmid,
            root,
            generation: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                live: BTreeMap::new(),
                resident: 0,
                wired: 0,
                deferred: None,
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

    /// The current generation (see [`Stage2::clear`]).
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Unmap everything at once, in time proportional to the number of tables, not of mappings:
    /// the root is cleared, one `invalidate_vm` is issued, and every level-2 and level-3 table
    /// frame is freed. The reverse-map entries of the leaves are not visited: the generation
    /// is bumped, which makes them all stale at once (see the module documentation). This is
    /// fork's way of taking write permission from the parent (see `fork.rs`).
    ///
    /// Refused (returns false, nothing changed) while any leaf is wired: a wired leaf is what
    /// keeps a page's wiring reachable (see `fault::wire`), and wired means mapped.
    ///
    /// # Locks
    /// Takes this table's lock; calls `Tlb` and `TableFrames` with it held. Not the rmap lock.
    pub fn clear(&self) -> bool {
        let mut inner = self.inner.lock();
        if inner.wired > 0 {
            return false;
        }
        if inner.resident == 0 && inner.live.is_empty() {
            return true;
        }
        debug_assert!(inner.deferred.is_none());
        self.generation.fetch_add(1, Ordering::AcqRel);
        // Break: every level-1 table descriptor invalid, then one invalidation for the VMID
        // (walk caches included) before a table frame can be reused.
        self.mem.zero(self.root);
        self.mem.zero(self.root.add_pages(1));
        self.tlb.invalidate_vm(self.vmid);
        for (&frame, _) in inner.live.iter() {
            self.frames.free_table(Pa(frame));
        }
        inner.live.clear();
        inner.resident = 0;
        true
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

    /// The raw level-3 descriptor for `ipa` (`INVALID` when no level-3 table covers it).
    pub fn descriptor(&self, ipa: Ipa) -> Descriptor {
        let _g = self.inner.lock();
        match self.walk(ipa.0) {
            Walk::Found(p) => self.read(p.l3_slot),
            Walk::Hole(_) => Descriptor::INVALID,
        }
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

    // ---- walking -------------------------------------------------------------------------

    fn read(&self, slot: Pa) -> Descriptor {
        Descriptor(self.mem.read_u64(slot))
    }

    fn write(&self, slot: Pa, d: Descriptor) {
        self.mem.write_u64(slot, d.bits());
    }

    fn slot(table: Pa, ipa: u64, level: Level) -> Pa {
        let entries = if level == Level::L1 {
            Self::ROOT_ENTRIES
        } else {
            ENTRIES
        };
        Pa(table.0 + ((ipa >> level.shift()) & (entries - 1)) * DESC_BYTES)
    }

    fn next_boundary(ipa: u64, level: Level) -> u64 {
        (ipa | (level.leaf_size() - 1)).saturating_add(1)
    }

    /// Walk to the level-3 slot of `ipa` without allocating. A block met on the way (never
    /// written by us) is reported as a hole.
    fn walk(&self, ipa: u64) -> Walk {
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

    /// Walk to the level-3 slot of `ipa`, allocating missing tables.
    fn walk_alloc(&self, inner: &mut Inner, ipa: u64) -> Result<Path, PmapError> {
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
    fn new_table(&self, inner: &mut Inner, slot: Pa, parent: Option<Pa>) -> Result<Pa, PmapError> {
        let frame = self.frames.alloc_table().ok_or(PmapError::NoMemory)?;
        if !frame.is_page_aligned() || frame.0 >> Self::PA_BITS != 0 {
            // Not a frame a descriptor can point to: a broken allocator; refuse it.
            debug_assert!(false, "TableFrames gave {frame:?}");
            self.frames.free_table(frame);
            return Err(PmapError::NoMemory);
        }
        self.mem.zero(frame);
        inner.live.insert(frame.0, 0);
        // Invalid -> valid: no TLB maintenance.
        self.write(slot, Descriptor::table(frame));
        if let Some(p) = parent {
            *inner.live.entry(p.0).or_insert(0) += 1;
        }
        Ok(frame)
    }

    /// Unlink the (empty) table `table` from `slot` in `parent` and free it; if that empties the
    /// parent, unlink and free the parent too (with `grand_slot` being the parent's slot).
    fn release_table(&self, inner: &mut Inner, table: Pa, slot: Pa, parent: Option<Pa>, ipa: u64) {
        self.write(slot, Descriptor::INVALID);
        inner.live.remove(&table.0);
        if let Some(deferred) = inner.deferred.as_mut() {
            deferred.tables.push(table);
        } else {
            // Walk caches may hold the table descriptor: invalidate before the frame is reused.
            self.tlb
                .invalidate_ipa(self.vmid, Ipa(ipa & !(PAGE_SIZE - 1)));
            self.frames.free_table(table);
        }
        if let Some(p) = parent {
            if let Some(n) = inner.live.get_mut(&p.0) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// Visit every level-3 slot holding a valid descriptor in `[start, end)`.
    fn for_each_leaf(&self, start: u64, end: u64, mut f: impl FnMut(u64, Path, Descriptor)) {
        let end = end.min(Self::IPA_LIMIT);
        let mut ipa = start & !(PAGE_SIZE - 1);
        while ipa < end {
            match self.walk(ipa) {
                Walk::Hole(next) => ipa = next,
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

    // ---- changing leaves -------------------------------------------------------------------

    /// Replace the valid leaf `old` at `slot` by `new` with the TLB maintenance it needs.
    fn replace(&self, slot: Pa, ipa: u64, old: Descriptor, new: Descriptor) {
        if Descriptor::needs_break_before_make(old, new) {
            self.write(slot, Descriptor::INVALID);
            self.tlb.invalidate_ipa(self.vmid, Ipa(ipa));
            self.write(slot, new);
        } else if Descriptor::needs_tlb_invalidation(old, new) {
            self.write(slot, new);
            self.tlb.invalidate_ipa(self.vmid, Ipa(ipa));
        } else if old != new {
            self.write(slot, new);
        }
    }

    /// Remove the valid leaf `old` at `path`, keep counters and rmap exact, free emptied tables.
    fn remove_leaf(&self, inner: &mut Inner, ipa: u64, path: Path, old: Descriptor) {
        self.write(path.l3_slot, Descriptor::INVALID);
        inner.resident = inner.resident.saturating_sub(1);
        if old.attributes().contains(Stage2Attributes::SW_WIRED) {
            inner.wired = inner.wired.saturating_sub(1);
        }
        if let Entry::Leaf { oa, .. } = old.decode(Level::L3) {
            match inner.deferred.as_mut() {
                Some(deferred) => deferred.unmapped.push((oa, ipa)),
                None => {
                    self.tlb.invalidate_ipa(self.vmid, Ipa(ipa));
                    self.rmap.remove(oa, &self.me, Ipa(ipa), self.generation());
                }
            }
        }
        let l3_left = match inner.live.get_mut(&path.l3_table.0) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n
            }
            None => return,
        };
        if l3_left == 0 {
            self.release_table(inner, path.l3_table, path.l2_slot, Some(path.l2_table), ipa);
            if inner.live.get(&path.l2_table.0) == Some(&0) {
                self.release_table(inner, path.l2_table, path.l1_slot, None, ipa);
            }
        }
    }

    /// Lower the leaf at `path` to at most `prot`. A leaf left with nothing is removed, except a
    /// wired one when `keep_wired` (see [`Pmap::protect`] below). Returns true when a wired leaf
    /// was removed.
    fn protect_leaf(
        &self,
        inner: &mut Inner,
        ipa: u64,
        path: Path,
        old: Descriptor,
        prot: Prot,
        keep_wired: bool,
    ) -> bool {
        let attrs = old.attributes();
        let new_prot = attrs.prot() & prot;
        let wired = attrs.contains(Stage2Attributes::SW_WIRED);
        if new_prot.is_empty() && !(wired && keep_wired) {
            self.remove_leaf(inner, ipa, path, old);
            wired
        } else {
            self.replace(
                path.l3_slot,
                ipa,
                old,
                old.with_attributes(attrs.with_prot(new_prot)),
            );
            false
        }
    }

    /// One invalidation for the whole VM, then what a batched `remove` postponed.
    fn finish_deferred(&self, deferred: Deferred) {
        if deferred.unmapped.is_empty() && deferred.tables.is_empty() {
            return;
        }
        self.tlb.invalidate_vm(self.vmid);
        for (oa, ipa) in deferred.unmapped {
            self.rmap.remove(oa, &self.me, Ipa(ipa), self.generation());
        }
        for table in deferred.tables {
            self.frames.free_table(table);
        }
    }

    fn check_ipa(ipa: Ipa) -> Result<u64, PmapError> {
        if !ipa.is_page_aligned() || ipa.0 >= Self::IPA_LIMIT {
            return Err(PmapError::OutOfRange);
        }
        Ok(ipa.0)
    }

    // ---- operations for the rmap (called without the rmap lock) ------------------------------

    /// `page_protect` of one mapping: lower `ipa`'s mapping to at most `prot` if it still maps `pa`.
    /// Unlike [`Pmap::protect`], a wired mapping left with nothing is removed too: the caller is
    /// taking the frame away (freeing, replacing or paging it out). Returns true when a wired
    /// mapping was removed, so that the caller can take that wiring off the page.
    ///
    /// # Locks
    /// Takes this table's lock, then the rmap lock. The caller holds neither.
    pub(super) fn rmap_protect(&self, ipa: Ipa, pa: Pa, prot: Prot, generation: u64) -> bool {
        let mut inner = self.inner.lock();
        if generation != self.generation() {
            return false;
        }
        match self.leaf_mapping(ipa, pa) {
            Some((path, old)) => self.protect_leaf(&mut inner, ipa.0, path, old, prot, false),
            None => false,
        }
    }

    /// [`Pmap::enter`], returning the leaf it replaced: its frame and whether it was wired. The
    /// fault routine moves page wiring along with wired mappings through this (see
    /// `fault::wire`), so reading the old leaf and writing the new one is one step under this
    /// table's lock.
    ///
    /// # Errors
    /// As [`Pmap::enter`].
    ///
    /// # Locks
    /// Takes this table's lock, then the rmap lock.
    pub fn enter_replacing(
        &self,
        ipa: Ipa,
        pa: Pa,
        prot: Prot,
        flags: EnterFlags,
    ) -> Result<Option<(Pa, bool)>, PmapError> {
        let ipa = Self::check_ipa(ipa)?;
        if !pa.is_page_aligned() || pa.0 >> Self::PA_BITS != 0 {
            return Err(PmapError::OutOfRange);
        }
        let mut inner = self.inner.lock();
        // No access: nothing to map, unless the mapping is wired, which keeps a no-access leaf
        // (see `protect`: the leaf is what remembers the wired frame).
        if prot.is_empty() && !flags.contains(EnterFlags::WIRED) {
            let old = match self.walk(ipa) {
                Walk::Found(path) => {
                    let d = self.read(path.l3_slot);
                    let old = Self::leaf_of(d);
                    if d.is_valid() {
                        self.remove_leaf(&mut inner, ipa, path, d);
                    }
                    old
                }
                Walk::Hole(_) => None,
            };
            return Ok(old);
        }
        let mut attrs = Stage2Attributes::for_prot(prot, MemAttr::NormalWriteBack);
        if flags.contains(EnterFlags::WIRED) {
            attrs |= Stage2Attributes::SW_WIRED;
        }
        let new = Descriptor::page(pa, attrs);

        let path = self.walk_alloc(&mut inner, ipa)?;
        let old = self.read(path.l3_slot);
        let old_leaf = Self::leaf_of(old);
        if old == new {
            return Ok(old_leaf);
        }
        let old_wired = old.is_valid() && old.attributes().contains(Stage2Attributes::SW_WIRED);
        let new_wired = flags.contains(EnterFlags::WIRED);
        match old.decode(Level::L3) {
            Entry::Leaf { oa, .. } => {
                self.replace(path.l3_slot, ipa, old, new);
                if oa != pa {
                    self.rmap.remove(oa, &self.me, Ipa(ipa), self.generation());
                    self.rmap.insert(pa, &self.me, Ipa(ipa), self.generation());
                }
            }
            _ => {
                // Invalid -> valid: no TLB maintenance needed.
                self.write(path.l3_slot, new);
                inner.resident += 1;
                *inner.live.entry(path.l3_table.0).or_insert(0) += 1;
                self.rmap.insert(pa, &self.me, Ipa(ipa), self.generation());
            }
        }
        match (old_wired, new_wired) {
            (false, true) => inner.wired += 1,
            (true, false) => inner.wired = inner.wired.saturating_sub(1),
            _ => {}
        }
        Ok(old_leaf)
    }

    /// Clear the wired bit of `ipa`'s mapping; returns its frame if it was wired. A mapping that
    /// grants no access (kept only because it was wired, see [`Pmap::protect`]) is removed.
    ///
    /// # Locks
    /// Takes this table's lock, then the rmap lock.
    pub fn unwire_leaf(&self, ipa: Ipa) -> Option<Pa> {
        let mut inner = self.inner.lock();
        let ipa = ipa.page_base().0;
        let Walk::Found(path) = self.walk(ipa) else {
            return None;
        };
        let d = self.read(path.l3_slot);
        let Some((pa, true)) = Self::leaf_of(d) else {
            return None;
        };
        let unwired = d.with_attributes(d.attributes() - Stage2Attributes::SW_WIRED);
        inner.wired = inner.wired.saturating_sub(1);
        if unwired.attributes().prot().is_empty() {
            self.remove_leaf(&mut inner, ipa, path, unwired);
        } else {
            // The wired bit is ignored by the hardware: no TLB maintenance.
            self.write(path.l3_slot, unwired);
        }
        Some(pa)
    }

    /// The frame of a valid level-3 leaf and whether it is wired.
    fn leaf_of(d: Descriptor) -> Option<(Pa, bool)> {
        match d.decode(Level::L3) {
            Entry::Leaf { oa, attrs, .. } => Some((oa, attrs.contains(Stage2Attributes::SW_WIRED))),
            _ => None,
        }
    }

    /// Test (and with `clear`, clear) the access flag of `ipa`'s mapping if it still maps `pa`.
    ///
    /// # Locks
    /// As [`Stage2::rmap_protect`].
    pub(super) fn rmap_reference(&self, ipa: Ipa, pa: Pa, clear: bool, generation: u64) -> bool {
        let _g = self.inner.lock();
        if generation != self.generation() {
            return false;
        }
        let Some((path, old)) = self.leaf_mapping(ipa, pa) else {
            return false;
        };
        let was = old.attributes().contains(Stage2Attributes::AF);
        if was && clear {
            self.replace(
                path.l3_slot,
                ipa.0,
                old,
                old.with_attributes(old.attributes() - Stage2Attributes::AF),
            );
        }
        was
    }

    /// The valid leaf at `ipa` if it maps `pa`. Lock held by the caller.
    fn leaf_mapping(&self, ipa: Ipa, pa: Pa) -> Option<(Path, Descriptor)> {
        let Walk::Found(path) = self.walk(ipa.0) else {
            return None;
        };
        let d = self.read(path.l3_slot);
        match d.decode(Level::L3) {
            Entry::Leaf { oa, .. } if oa == pa => Some((path, d)),
            _ => None,
        }
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
    /// `invalidate_vm` instead of one `invalidate_ipa` per page (see [`Deferred`]).
    fn remove(&self, start: Ipa, end: Ipa) {
        let mut inner = self.inner.lock();
        let mut ipa = start.0 & !(PAGE_SIZE - 1);
        let end = end.0.min(Self::IPA_LIMIT);
        if end.saturating_sub(ipa) > Self::BATCH_REMOVE_PAGES * PAGE_SIZE {
            inner.deferred = Some(Deferred::default());
        }
        // Not `for_each_leaf`: removing may free the table the walk is in.
        while ipa < end {
            match self.walk(ipa) {
                Walk::Hole(next) => ipa = next,
                Walk::Found(path) => {
                    let d = self.read(path.l3_slot);
                    if d.is_valid() {
                        self.remove_leaf(&mut inner, ipa, path, d);
                    }
                    ipa += PAGE_SIZE;
                }
            }
        }
        if let Some(deferred) = inner.deferred.take() {
            self.finish_deferred(deferred);
        }
    }

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
        let mut ipa = start.0 & !(PAGE_SIZE - 1);
        let end = end.0.min(Self::IPA_LIMIT);
        while ipa < end {
            match self.walk(ipa) {
                Walk::Hole(next) => ipa = next,
                Walk::Found(path) => {
                    let d = self.read(path.l3_slot);
                    if d.is_valid() {
                        self.protect_leaf(&mut inner, ipa, path, d, prot, true);
                    }
                    ipa += PAGE_SIZE;
                }
            }
        }
    }

    /// Clears the software wired bit (see [`Stage2::unwire_leaf`]).
    fn unwire(&self, ipa: Ipa) {
        let _ = self.unwire_leaf(ipa);
    }

    /// TLB maintenance is done at each change: nothing is deferred.
    fn update(&self) {}

    fn clear_access(&self, ipa: Ipa) -> bool {
        let _g = self.inner.lock();
        let Walk::Found(path) = self.walk(ipa.page_base().0) else {
            return false;
        };
        let d = self.read(path.l3_slot);
        if !d.is_valid() || !d.attributes().contains(Stage2Attributes::AF) {
            return false;
        }
        let new = d.with_attributes(d.attributes() - Stage2Attributes::AF);
        self.replace(path.l3_slot, ipa.page_base().0, d, new);
        true
    }
}

impl Drop for Stage2 {
    /// Invalidate the VMID's TLB entries, free every table. The rmap entries of this table need
    /// no walk: they can no longer be upgraded, so they are stale and pruned lazily (see the
    /// module documentation).
    fn drop(&mut self) {
        self.tlb.invalidate_vm(self.vmid);
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
