//! Changing the level-3 descriptors of a `Stage2`: replacing a valid leaf with the TLB
//! maintenance it needs (break-before-make when the architecture requires it), removing one and
//! freeing the tables it empties, lowering permissions, entering (`enter_replacing`) and
//! unwiring, and the operations the reverse map calls (`rmap_protect`, `rmap_reference`).
//!
//! # Locks
//! The private functions run with the table's lock held by the caller (the `Inner` they are
//! passed); the public ones take it, then the rmap lock.

use super::walk::{Path, Walk};
use super::{Inner, Stage2};
use core::sync::atomic::Ordering;
use crate::addr::{Ipa, Pa, Prot};
use crate::pmap::desc::{Descriptor, Entry, Level, MemAttr, Stage2Attributes};
#[cfg(doc)]
use crate::pmap::Pmap;
use crate::pmap::{EnterFlags, PmapError};

impl Stage2 {
    /// Replace the valid leaf `old` at `slot` by `new` with the TLB maintenance it needs.
    pub(super) fn replace(&self, slot: Pa, ipa: u64, old: Descriptor, new: Descriptor) {
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
    pub(super) fn remove_leaf(&self, inner: &mut Inner, ipa: u64, path: Path, old: Descriptor) {
        self.write(path.l3_slot, Descriptor::INVALID);
        inner.resident = inner.resident.saturating_sub(1);
        if old.attributes().contains(Stage2Attributes::SW_WIRED) {
            inner.wired = inner.wired.saturating_sub(1);
        }
        if let Entry::Leaf { oa, .. } = old.decode(Level::L3) {
            match (inner.deferred.as_mut(), inner.batching.take()) {
                (Some(deferred), _) => deferred.unmapped.push((oa, ipa)),
                (None, Some(token)) => {
                    // A batched unmap (`pmap/batch.rs`): the batch's owner invalidates before
                    // the frame goes; the table remembers the debt for a new mapping of `ipa`.
                    // The rmap entry goes now: the table no longer maps the frame, and the
                    // owner holds the frame until the flush, so nobody acts on the early news.
                    inner.owed.insert(ipa, token);
                    self.rmap.remove(oa, self.id, Ipa(ipa), self.generation());
                }
                (None, None) => {
                    self.tlb.invalidate_ipa(self.vmid, Ipa(ipa));
                    self.rmap.remove(oa, self.id, Ipa(ipa), self.generation());
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
    /// wired one when `keep_wired` (see [`Pmap::protect`]). Returns true when a wired leaf
    /// was removed.
    pub(super) fn protect_leaf(
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

    // ---- operations for the rmap (called without the rmap lock) ------------------------------

    /// `page_protect` of one mapping: lower `ipa`'s mapping to at most `prot` if it still maps `pa`.
    /// Unlike [`Pmap::protect`], a wired mapping left with nothing is removed too: the caller is
    /// taking the frame away (freeing, replacing or paging it out). Returns true when a wired
    /// mapping was removed, so that the caller can take that wiring off the page.
    ///
    /// # Locks
    /// Takes this table's lock, then the rmap lock. The caller holds neither.
    pub(in crate::pmap) fn rmap_protect(
        &self,
        ipa: Ipa,
        pa: Pa,
        prot: Prot,
        generation: u64,
    ) -> bool {
        let mut inner = self.inner.lock();
        if generation != self.generation() {
            return false;
        }
        match self.leaf_mapping(ipa, pa) {
            Some((path, old)) => self.protect_leaf(&mut inner, ipa.0, path, old, prot, false),
            None => false,
        }
    }

    /// [`Stage2::rmap_protect`] for a [`TlbBatch`](crate::pmap::TlbBatch): a mapping it removes
    /// is not invalidated; returns, beside the wired flag, the token of the invalidation this
    /// table now owes for `ipa` (`None` when nothing was removed, or a lowered mapping was
    /// invalidated at once). The caller pushes it to its batch.
    ///
    /// # Locks
    /// As [`Stage2::rmap_protect`].
    pub(in crate::pmap) fn rmap_protect_batched(
        &self,
        ipa: Ipa,
        pa: Pa,
        prot: Prot,
        generation: u64,
    ) -> (bool, Option<u64>) {
        let mut inner = self.inner.lock();
        if generation != self.generation() {
            return (false, None);
        }
        let Some((path, old)) = self.leaf_mapping(ipa, pa) else {
            return (false, None);
        };
        let token = inner.next_token;
        inner.next_token = token.wrapping_add(1);
        inner.batching = Some(token);
        let wired = self.protect_leaf(&mut inner, ipa.0, path, old, prot, false);
        // `remove_leaf` took the token if it removed the leaf without invalidating.
        let owed = inner.batching.take().is_none().then_some(token);
        (wired, owed)
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
        // A stale entry a `TlbBatch` still owes must go before `ipa` maps anything new.
        self.settle_owed_at(&mut inner, ipa);
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
                Walk::Hole(_) | Walk::Outside => None,
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
                    self.rmap.remove(oa, self.id, Ipa(ipa), self.generation());
                    self.rmap.insert(pa, self.id, Ipa(ipa), self.generation());
                }
            }
            _ => {
                // Invalid -> valid: no TLB maintenance needed.
                self.write(path.l3_slot, new);
                inner.resident += 1;
                *inner.live.entry(path.l3_table.0).or_insert(0) += 1;
                self.rmap.insert(pa, self.id, Ipa(ipa), self.generation());
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
    pub(super) fn leaf_of(d: Descriptor) -> Option<(Pa, bool)> {
        match d.decode(Level::L3) {
            Entry::Leaf { oa, attrs, .. } => Some((oa, attrs.contains(Stage2Attributes::SW_WIRED))),
            _ => None,
        }
    }

    /// Test (and with `clear`, clear) the access flag of `ipa`'s mapping if it still maps `pa`.
    ///
    /// # Locks
    /// As [`Stage2::rmap_protect`].
    pub(in crate::pmap) fn rmap_reference(
        &self,
        ipa: Ipa,
        pa: Pa,
        clear: bool,
        generation: u64,
    ) -> bool {
        let _g = self.inner.lock();
        if generation != self.generation() {
            return false;
        }
        let Some((path, old)) = self.leaf_mapping(ipa, pa) else {
            return false;
        };
        let was = old.attributes().contains(Stage2Attributes::AF);
        if was && clear {
            self.clear_access_flag(path.l3_slot, old);
        }
        was
    }

    /// Clear the access flag of the valid leaf `old` at `slot`, with no TLB invalidation.
    ///
    /// The pagedaemon's clock clears the access flag of every mapping of a page it ages and
    /// tests it on the next pass ("test and clear young"). A TLB entry cached while AF was 1
    /// may survive the clear, and accesses through it neither fault nor set AF (VTCR_EL2.HA =
    /// 0), so the page may look unreferenced while it is in use: aging is less accurate, never
    /// wrong. Nothing relies on an AF = 0 entry faulting for correctness: dirty state is not
    /// tracked through faults (a page is no longer CLEAN once it is entered writable,
    /// `fault.rs`), copy-on-write and write protection lower S2AP, which is always invalidated
    /// whatever AF says (`Descriptor::needs_tlb_invalidation`), and every unmap invalidates.
    ///
    /// This is what Linux does. KVM arm64's `kvm_pgtable_stage2_mkold` (now
    /// `kvm_pgtable_stage2_test_clear_young`) issues no TLBI ("But where's the TLBI?!" ... "Over
    /// in the core code"), and the core code's aging path, `kvm_mmu_notifier_clear_young`,
    /// "never issue\[s\] secondary TLB flushes from clear_young, leaving this job up to the
    /// regular system cadence"; x86's `ptep_clear_flush_young` (and arm64's since 2023) dropped
    /// its flush for the same reason: "clearing the accessed bit without a TLB flush doesn't
    /// cause data corruption. [ It could cause incorrect page aging and the (mistaken) reclaim
    /// of hot pages, but the chance of that should be relatively low. ]" Under QEMU TCG every
    /// broadcast TLBI stops all vCPU threads, and the clock clears the flag of each page it
    /// looks at: one TLBI per scanned page was a large part of the swap benchmark's time. The
    /// cadence that stale entries need is the clock's own: each pass ends with one
    /// invalidation of every VM whose flags it cleared ([`Stage2::invalidate_all`],
    /// `pmap/aged.rs`).
    ///
    /// # Locks
    /// The table's lock is held by the caller.
    pub(super) fn clear_access_flag(&self, slot: Pa, old: Descriptor) {
        let new = old.with_attributes(old.attributes() - Stage2Attributes::AF);
        debug_assert!(!Descriptor::needs_tlb_invalidation(old, new));
        self.write(slot, new);
    }

    /// Drop every TLB entry of the VMID (`Tlb::invalidate_vm`), and count it: the clock's aging
    /// asks [`Stage2::whole_invalidations`] whether one came after its last cleared flag
    /// (`pmap/aged.rs`).
    ///
    /// # Locks
    /// Takes none of the engine's (nor does the `Tlb`); called with or without this table's
    /// lock.
    pub(in crate::pmap) fn invalidate_all(&self) {
        self.tlb.invalidate_vm(self.vmid);
        self.whole_invalidations.fetch_add(1, Ordering::AcqRel);
    }

    /// How many times [`Stage2::invalidate_all`] ran.
    pub(in crate::pmap) fn whole_invalidations(&self) -> u64 {
        self.whole_invalidations.load(Ordering::Acquire)
    }

    /// The valid leaf at `ipa` if it maps `pa`. Lock held by the caller.
    pub(super) fn leaf_mapping(&self, ipa: Ipa, pa: Pa) -> Option<(Path, Descriptor)> {
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
