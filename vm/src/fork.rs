//! Map-wide operations that copy or pin: clearing `needs_copy` (the entry side of the seed's
//! `amap_copy`), fork with inheritance (the seed's `uvmspace_fork`), and wiring
//! (the seed's `uvm_map_pageable`).
//!
//! # Locks
//! Each operation write-locks the map(s) it changes (bumping their versions), then AMAP and ANON
//! locks in the usual order. Wiring drops the write lock before faulting the pages in.

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::addr::{Ipa, Prot, PAGE_SIZE};
use crate::amap::{amap_copy_range, amap_ref, Amap, AmapRef, CopyError};
use crate::fault::{fault_wire, unwire_pages};
use crate::map::{check_range, Entry, Inherit, Map, MapError};
use crate::pmap::{Pmap, Vmid};
use crate::uvm::Uvm;

/// Clear `needs_copy` on an entry: give it an amap of its own (the seed's `amap_copy`). An entry
/// without an amap gets a new empty one; an amap nobody else refers to is kept as it is; a shared
/// one is copied (same anons, each `an_ref` raised and each resident one write-protected
/// everywhere; with `copy_resident`, resident anons are copied now instead: see
/// `amap_copy_range`).
///
/// # Locks
/// Entry: the map is write-locked by the caller. Takes AMAP, then ANON locks, then (through the
/// reverse map) PMAP locks.
///
/// # Errors
/// Only with `copy_resident`, and then the entry is left exactly as it was (its amap reference,
/// `needs_copy` still set), so nothing is silently zero-filled or shared later: `NoMemory` when
/// no frame is free for a copy, `Busy` when a resident page is BUSY (see `amap_copy_range`).
pub(crate) fn entry_amap_copy(
    uvm: &Uvm,
    e: &mut Entry,
    copy_resident: bool,
) -> Result<(), MapError> {
    let npages = e.npages();
    match &e.aref {
        None => {
            e.aref = Some(AmapRef {
                amap: Amap::new(npages),
                slotoff: 0,
            })
        }
        Some(aref) => {
            let alone = aref.amap.lock().refs() == 1;
            if !alone {
                let copy =
                    amap_copy_range(uvm, aref, npages, copy_resident).map_err(|e| match e {
                        CopyError::NoFrame => MapError::NoMemory,
                        CopyError::Busy => MapError::Busy,
                    })?;
                e.aref = Some(copy);
            }
        }
    }
    e.needs_copy = false;
    Ok(())
}

/// [`entry_amap_copy`] without `copy_resident`: the lazy share used by the fault path's
/// `amapcopy`, a SHARE fork and wiring. Only a copy of resident pages allocates frames, so this
/// cannot fail; the invariant is checked (`debug_assert!`) rather than its result dropped.
///
/// # Locks
/// As [`entry_amap_copy`].
pub(crate) fn entry_amap_share_lazy(uvm: &Uvm, e: &mut Entry) {
    let r = entry_amap_copy(uvm, e, false);
    debug_assert!(
        r.is_ok(),
        "entry_amap_copy without copy_resident failed: {r:?}"
    );
}

impl Map {
    /// A child map with a new stage-2 table tagged `vmid`, holding each entry according to its
    /// inheritance (the seed's `uvmspace_fork`). COPY entries share the amap lazily: both sides
    /// get `needs_copy` and the parent's writable mappings lose write permission, so the first
    /// write on either side copies (case 1B).
    ///
    /// Taking write permission away: the seed write-protects each range (`pmap_protect`), which on
    /// stage 2 means rewriting every resident leaf (there are no hierarchical permissions), a
    /// cost linear in resident memory (~23 ns a page, 1.5 ms for 256 MiB). Instead the parent's
    /// stage-2 table is cleared whole ([`Stage2::clear`](crate::pmap::Stage2::clear): the
    /// root's descriptors invalidated, one `invalidate_vm`, the table frames handed back as one retired set that the
    /// allocator reuses or frees lazily, the reverse-map entries made stale by a generation
    /// bump), which costs O(1) in resident memory and tables. The parent refaults what it touches next
    /// (1A maps an anon read-only while `an_ref > 1`; each fault maps its neighbours too), which is
    /// the price paid later and only for the pages used. A map with wired leaves keeps them
    /// (wired means mapped): then the per-range write-protection is used.
    ///
    /// The parent's entries get `needs_copy` only once every entry is in the child, together
    /// with the write-protection: `needs_copy` on an entry promises that none of its anons is
    /// mapped writable (a later fork skips such an entry's write-protection), so the two never
    /// part. A fork that fails (no frame for the eager copy of a wired entry) leaves the parent
    /// as it was (a SHARE entry may have been given an amap of its own, which no access can
    /// tell).
    ///
    /// # Locks
    /// Write-locks the parent, then the child (which nobody else can reach yet); AMAP, ANON and
    /// PMAP locks under them (`entry_amap_copy`). The parent's stage-2 is cleared or
    /// write-protected before its write lock is released, so no fault of the parent can see
    /// `needs_copy` and a writable leaf together.
    ///
    /// # Errors
    /// `NoMemory` when the child's stage-2 root or an eager copy finds no frame; `Busy` when the
    /// eager copy of a wired entry meets a BUSY page (transient: retry; sharing it instead would
    /// let the parent's next write replace a wired frame). Either way the parent is unchanged
    /// and the half-built child released.
    pub fn fork(&self, vmid: Vmid) -> Result<Arc<Map>, MapError> {
        let uvm = self.uvm().clone();
        let child = Map::new(&uvm, vmid)?;
        let mut pg = self.write();
        let mut cg = child.write();
        let keys: Vec<u64> = pg.entries.keys().copied().collect();
        // Ranges of the parent whose mappings must lose write permission, and the parent
        // entries that get `needs_copy` (both applied only once the child is complete).
        let mut write_protect: Vec<(Ipa, Ipa, Prot)> = Vec::new();
        let mut mark: Vec<u64> = Vec::new();
        for k in keys {
            let Some(pe) = pg.entries.get_mut(&k) else {
                continue;
            };
            let npages = pe.npages();
            match pe.inherit {
                Inherit::None => continue,
                Inherit::Share => {
                    if pe.needs_copy || pe.aref.is_none() {
                        entry_amap_share_lazy(&uvm, pe);
                    }
                    let mut ce = pe.clone();
                    ce.wired_count = 0;
                    if let Some(aref) = &ce.aref {
                        amap_ref(aref, npages, true);
                    }
                    cg.entries.insert(k, ce);
                }
                Inherit::Copy => {
                    let mut ce = pe.clone();
                    ce.wired_count = 0;
                    ce.needs_copy = true;
                    ce.copy_on_write = true;
                    if let Some(aref) = &pe.aref {
                        amap_ref(aref, npages, false);
                        let shared = aref.amap.lock().shared();
                        if shared || pe.is_wired() {
                            // The parent cannot wait: copy the child's amap now. That
                            // write-protects the shared anons in every map (other sharers of a
                            // SHARE amap included), except for a wired parent, whose resident
                            // pages are copied for the child instead (the seed's
                            // `amap_cow_now`): its wired mappings keep their rights and frames.
                            // Out of memory, or a BUSY page that cannot be copied now (the
                            // caller retries): `ce` still holds the reference taken above;
                            // give it back. Entries already in the child are released when
                            // it drops, and the parent has not been touched yet.
                            if let Err(err) = entry_amap_copy(&uvm, &mut ce, pe.is_wired()) {
                                child.release_entry(&ce);
                                return Err(err);
                            }
                        } else {
                            // The seed tests max_protection: a leaf may be writable
                            // only if the maximum protection allows it.
                            if !pe.needs_copy && pe.max_prot.contains(Prot::WRITE) {
                                write_protect.push((pe.start, pe.end, pe.prot - Prot::WRITE));
                            }
                            mark.push(k);
                        }
                    }
                    cg.entries.insert(k, ce);
                }
            }
        }
        for k in mark {
            if let Some(pe) = pg.entries.get_mut(&k) {
                pe.needs_copy = true;
            }
        }
        // Take write permission from the parent: drop its stage-2 contents in O(1) (see
        // `Stage2::clear`; it refaults lazily, read-only while an anon is shared), or, when a wired
        // leaf forbids that, write-protect range by range.
        if !write_protect.is_empty() && !self.stage2().clear() {
            for (start, end, prot) in write_protect {
                self.stage2().protect(start, end, prot);
            }
        }
        drop(cg);
        drop(pg);
        Ok(child)
    }

    /// Wire `[start, end)` (the seed's `uvm_map_pageable` with `new_pageable = false`): every
    /// entry's wired count is raised, and the entries that became wired are faulted in with
    /// `fault_wire` (pages wired, mappings entered WIRED). On failure everything is undone.
    ///
    /// As in the seed, wiring is checked against the entry's maximum protection (WIREMAX), not
    /// its current one: a range protected NONE can be wired (its leaves permit nothing until a
    /// `protect` raises them), and an entry whose maximum protection allows writes is copied
    /// now (`needs_copy` cleared here, copy-on-write done by the wiring fault), so that a later
    /// `protect(RW)` never makes a wired page copy-on-write.
    ///
    /// # Locks
    /// Write-locks the map to count and clip, then faults with nothing held (`fault_wire`).
    ///
    /// # Errors
    /// `NoEntry` when `[start, end)` is not covered; `Fault` when a page cannot be faulted in
    /// (then the range's wired counts and the pages wired so far are undone).
    pub fn wire(&self, start: Ipa, end: Ipa) -> Result<(), MapError> {
        check_range(start, end)?;
        let newly: Vec<(Ipa, Ipa)> = {
            let mut g = self.write();
            if !g.covers(start, end) {
                return Err(MapError::NoEntry);
            }
            let uvm = self.uvm().clone();
            let mut newly = Vec::new();
            for k in g.clip_range(start, end) {
                let Some(e) = g.entries.get_mut(&k) else {
                    continue;
                };
                e.wired_count = e.wired_count.saturating_add(1);
                if e.wired_count == 1 {
                    // The seed's test: the maximum protection, since wiring faults are
                    // WIREMAX and copy-on-write happens now when writes may ever be allowed.
                    if e.needs_copy && (e.max_prot.contains(Prot::WRITE) || e.object.is_none()) {
                        entry_amap_share_lazy(&uvm, e);
                    }
                    newly.push((e.start, e.end));
                }
            }
            newly
        };
        for (i, &(s, e)) in newly.iter().enumerate() {
            if let Err(err) = fault_wire(self, s, e, true) {
                // fault_wire unwound its own range; undo the counts and the earlier entries.
                let mut g = self.write();
                for k in g.clip_range(start, end) {
                    if let Some(en) = g.entries.get_mut(&k) {
                        en.wired_count = en.wired_count.saturating_sub(1);
                    }
                }
                for &(s2, e2) in newly.get(..i).unwrap_or(&[]) {
                    unwire_pages(self, &g, s2, e2);
                }
                return Err(MapError::Fault(err));
            }
        }
        Ok(())
    }

    /// Unwire `[start, end)` (the seed's `uvm_map_pageable` with `new_pageable = true`): entries
    /// whose wired count drops to zero have their pages unwired and their mappings made pageable.
    pub fn unwire(&self, start: Ipa, end: Ipa) -> Result<(), MapError> {
        check_range(start, end)?;
        let mut g = self.write();
        if !g.covers(start, end) {
            return Err(MapError::NoEntry);
        }
        let mut done = Vec::new();
        for k in g.clip_range(start, end) {
            let Some(e) = g.entries.get_mut(&k) else {
                continue;
            };
            if e.wired_count == 0 {
                continue;
            }
            e.wired_count -= 1;
            if e.wired_count == 0 {
                done.push((e.start, e.end));
            }
        }
        for (s, e) in done {
            unwire_pages(self, &g, s, e);
        }
        Ok(())
    }

    /// Page out the anon at `ipa` now, if it is resident and may be paged out (for tests and
    /// explicit reclaim). Returns true when the page went to swap.
    pub fn pageout(&self, ipa: Ipa) -> bool {
        match self.anon_at(ipa) {
            Some(anon) => crate::pdaemon::pageout_anon(self.uvm(), &anon),
            None => false,
        }
    }
}

/// Page-aligned IPAs from `start` to `end`.
pub(crate) fn pages(start: Ipa, end: Ipa) -> impl Iterator<Item = Ipa> {
    (start.0..end.0).step_by(PAGE_SIZE as usize).map(Ipa)
}
