//! Maps: one VM's IPA space as sorted entries (the seed's `struct vm_map`).
//!
//! Each [`Entry`] covers `[start, end)` with a protection (and the maximum it may be raised to),
//! an inheritance for fork, an advice for the fault neighbourhood, a wired count, and its two
//! layers: an amap reference (upper, private anons) and an object reference (lower, shared pages).
//! `needs_copy` says the amap is shared copy-on-write with another map and must be copied before
//! this entry may write into it; `copy_on_write` says writes never reach the object (they promote
//! into the amap).
//!
//! The map's `version` is bumped every time it is write-locked: a fault that unlocked the map for
//! I/O relocks it and compares versions to know whether its lookup still holds (the seed's
//! alternative 2).
//!
//! Files: this one (the `Map`: its lock, version and operations), `entry` (entries and the
//! sorted set of them), `access` (the hypervisor reading and writing guest memory).
//!
//! # Locks
//! `Map` holds the MAPS lock (a reader–writer spin lock), first in the order MAPS → AMAP → OBJECT
//! → ANON → PMAP → PAGE → PAGE QUEUES. Faults take it for reading; every change of entries takes
//! it for writing (and bumps the version).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::addr::{Ipa, PageIdx, Prot, PAGE_SIZE};
use crate::amap::{amap_unref, Amap, AmapRef};
use crate::anon::{anon_unref, anon_unref_locked, Anon};
use crate::pmap::{Pmap, Stage2, Vmid};
use crate::stats::Stats;
use crate::uvm::Uvm;

mod access;
mod entry;

pub use entry::{Advice, Entry, EntrySpec, Inherit, MapError, MapInner};

/// One VM's address space.
pub struct Map {
    uvm: Arc<Uvm>,
    stage2: Arc<Stage2>,
    vmid: Vmid,
    stats: Arc<Stats>,
    version: AtomicU64,
    inner: crate::sync::RwLock<MapInner>,
}

/// Guard of a write-locked map; the version was bumped when it was taken.
pub type MapWriteGuard<'a> = crate::sync::RwLockWriteGuard<'a, MapInner>;

impl Map {
    /// An empty map with a fresh stage-2 table tagged `vmid`.
    pub fn new(uvm: &Arc<Uvm>, vmid: Vmid) -> Result<Arc<Map>, MapError> {
        let frames: Arc<dyn crate::pmap::TableFrames> = uvm.clone();
        let stage2 = Stage2::new(
            uvm.mem().clone(),
            uvm.tlb().clone(),
            frames,
            uvm.rmap().clone(),
            vmid,
        )
        .map_err(|_| MapError::NoMemory)?;
        let stats = Arc::new(Stats::default());
        uvm.register_stats(&stats);
        Ok(Arc::new(Map {
            uvm: uvm.clone(),
            stage2,
            vmid,
            stats,
            version: AtomicU64::new(0),
            inner: crate::sync::RwLock::new(MapInner::default()),
        }))
    }

    /// The engine context.
    pub fn uvm(&self) -> &Arc<Uvm> {
        &self.uvm
    }

    /// The VM's stage-2 table.
    pub fn stage2(&self) -> &Arc<Stage2> {
        &self.stage2
    }

    /// The VM's VMID.
    pub fn vmid(&self) -> Vmid {
        self.vmid
    }

    /// Per-VM counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The per-VM counters, to count in after the fault (a readahead another CPU starts).
    pub(crate) fn stats_arc(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Current version (bumped by every write lock).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Take the MAPS lock for reading.
    pub fn read(&self) -> crate::sync::RwLockReadGuard<'_, MapInner> {
        self.inner.read()
    }

    /// Take the MAPS lock for writing and bump the version.
    pub fn write(&self) -> MapWriteGuard<'_> {
        let g = self.inner.write();
        self.version.fetch_add(1, Ordering::AcqRel);
        g
    }

    /// True when an entry covers `ipa`.
    pub fn contains(&self, ipa: Ipa) -> bool {
        self.read().lookup(ipa).is_some()
    }

    /// A copy of the entry covering `ipa`.
    pub fn entry(&self, ipa: Ipa) -> Option<Entry> {
        self.read().lookup(ipa).cloned()
    }

    /// Copies of every entry, in address order.
    pub fn entries(&self) -> Vec<Entry> {
        self.read().entries.values().cloned().collect()
    }

    /// The anon in the amap slot of `ipa`, if any.
    pub fn anon_at(&self, ipa: Ipa) -> Option<Arc<Anon>> {
        let g = self.read();
        let e = g.lookup(ipa)?;
        let slot = e.slot(ipa.page_base())?;
        let aref = e.aref.as_ref()?;
        let st = aref.amap.lock();
        st.lookup(slot).cloned()
    }

    /// The pool page the stage-2 table maps at `ipa`, with its protection.
    pub fn mapped_page(&self, ipa: Ipa) -> Option<(PageIdx, Prot)> {
        let (pa, prot) = self.stage2.extract(ipa.page_base())?;
        Some((self.uvm.page_at(pa)?, prot))
    }

    /// Add an entry (the seed's `uvm_map`). An entry that is copy-on-write without an amap
    /// starts with `needs_copy`, so its first write creates the amap.
    pub fn insert(&self, spec: EntrySpec) -> Result<(), MapError> {
        let EntrySpec {
            start,
            end,
            prot,
            max_prot,
            inherit,
            advice,
            object,
            anon,
            copy_on_write,
        } = spec;
        check_range(start, end)?;
        if !max_prot.contains(prot) {
            return Err(MapError::Protection);
        }
        if let Some((obj, off)) = &object {
            if !off.is_multiple_of(PAGE_SIZE) {
                return Err(MapError::Unaligned);
            }
            let need = off
                .checked_add(end.0 - start.0)
                .ok_or(MapError::ObjectRange)?;
            if need > obj.size() {
                return Err(MapError::ObjectRange);
            }
        }
        let npages = usize::try_from(end.pages_since(start)).map_err(|_| MapError::BadRange)?;
        let mut g = self.write();
        let overlaps =
            g.lookup(start).is_some() || g.entries.range(start.0..end.0).next().is_some();
        if overlaps {
            return Err(MapError::Overlap);
        }
        let entry = Entry {
            start,
            end,
            prot,
            max_prot,
            inherit,
            advice,
            wired_count: 0,
            needs_copy: copy_on_write && !anon,
            copy_on_write,
            aref: anon.then(|| AmapRef {
                amap: Amap::new(npages),
                slotoff: 0,
            }),
            object,
        };
        g.entries.insert(start.0, entry);
        Ok(())
    }

    /// Remove every mapping in `[start, end)` (the seed's `uvm_unmap`): entries are clipped,
    /// wired pages unwired, the stage-2 range emptied, amap slots released.
    pub fn remove(&self, start: Ipa, end: Ipa) -> Result<(), MapError> {
        check_range(start, end)?;
        let mut g = self.write();
        let keys = g.clip_range(start, end);
        let removed: Vec<Entry> = keys.iter().filter_map(|k| g.entries.remove(k)).collect();
        for e in &removed {
            if e.is_wired() {
                crate::fault::unwire_pages(self, &g, e.start, e.end);
            }
        }
        self.stage2.remove(start, end);
        drop(g);
        for e in removed {
            self.release_entry(&e);
        }
        Ok(())
    }

    /// Set the protection of `[start, end)` (the seed's `uvm_map_protect`); holes are skipped.
    /// Lowering takes the rights away from the stage-2 mappings now; raising waits for faults.
    pub fn protect(&self, start: Ipa, end: Ipa, prot: Prot) -> Result<(), MapError> {
        check_range(start, end)?;
        let mut g = self.write();
        let exceeds = g
            .entries
            .values()
            .any(|e| e.start < end && start < e.end && !e.max_prot.contains(prot));
        if exceeds {
            return Err(MapError::Protection);
        }
        for k in g.clip_range(start, end) {
            if let Some(e) = g.entries.get_mut(&k) {
                let old = e.prot;
                e.prot = prot;
                if !prot.contains(old) {
                    self.stage2.protect(e.start, e.end, prot);
                }
            }
        }
        Ok(())
    }

    /// Set the advice of `[start, end)` (the seed's `uvm_map_advice`).
    pub fn advise(&self, start: Ipa, end: Ipa, advice: Advice) -> Result<(), MapError> {
        self.modify(start, end, |e| e.advice = advice)
    }

    /// Set the inheritance of `[start, end)` (the seed's `uvm_map_inherit`).
    pub fn set_inherit(&self, start: Ipa, end: Ipa, inherit: Inherit) -> Result<(), MapError> {
        self.modify(start, end, |e| e.inherit = inherit)
    }

    fn modify(&self, start: Ipa, end: Ipa, f: impl Fn(&mut Entry)) -> Result<(), MapError> {
        check_range(start, end)?;
        let mut g = self.write();
        for k in g.clip_range(start, end) {
            if let Some(e) = g.entries.get_mut(&k) {
                f(e);
            }
        }
        Ok(())
    }

    /// Put `anon` into the amap slot of `ipa` (for loans and dedup), replacing what was there.
    /// The entry must have an amap and no `needs_copy`.
    ///
    /// The IPA is unmapped first. Page wiring follows wired mappings (see `fault::wire`), so a
    /// wired leaf is unwired through `Stage2::unwire_leaf` and its page loses that wiring (the old
    /// anon may live on in another amap: its page must not stay wired for ever). In a shared amap
    /// the other sharers' mappings of the old page go too (as in 1B). A wired entry keeps its
    /// invariant "wired means mapped": the new anon's page is faulted in wired afterwards.
    ///
    /// `anon` comes with one reference (`an_ref`) for the slot. When it cannot be installed that
    /// reference is dropped (`anon_unref`): a loan it holds ends, a page it owns is freed.
    ///
    /// # Errors
    /// `NoEntry` when no entry with an amap covers `ipa`; `Fault` when the new page of a wired
    /// entry cannot be wired (the anon is installed all the same).
    ///
    /// # Locks
    /// Takes MAPS (write), AMAP, the old anon's ANON (held while its page's mappings go, so that
    /// the page cannot be paged out and its frame reused by someone else meanwhile), then
    /// (through the reverse map) PMAP, PAGE, PAGE QUEUES; the wiring fault runs after they are
    /// released. On a refusal, `anon`'s ANON (and what freeing it takes) with MAPS released.
    pub fn install_anon(&self, ipa: Ipa, anon: Arc<Anon>) -> Result<(), MapError> {
        let ipa = ipa.page_base();
        let wired = {
            let g = self.write();
            let target = g
                .lookup(ipa)
                .and_then(|e| match (&e.aref, e.slot(ipa), e.needs_copy) {
                    (Some(aref), Some(slot), false) => Some((e, aref, slot)),
                    _ => None,
                });
            let Some((e, aref, slot)) = target else {
                drop(g);
                anon_unref(&self.uvm, &anon);
                return Err(MapError::NoEntry);
            };
            let next = Ipa(ipa.0 + PAGE_SIZE);
            crate::fault::unwire_pages(self, &g, ipa, next);
            self.stage2.remove(ipa, next);
            let mut st = aref.amap.lock();
            let shared = st.shared();
            let Some(old) = st.add(slot, anon.clone()) else {
                drop(st);
                drop(g);
                anon_unref(&self.uvm, &anon);
                return Err(MapError::NoEntry);
            };
            if let Some(old) = old {
                let mut a = old.lock();
                if let (true, Some(pg)) = (shared, a.page) {
                    self.uvm.page_protect(pg, Prot::NONE);
                }
                anon_unref_locked(&self.uvm, &mut a);
            }
            e.is_wired()
        };
        if wired {
            crate::fault::fault_wire(self, ipa, Ipa(ipa.0 + PAGE_SIZE), true)
                .map_err(MapError::Fault)?;
        }
        Ok(())
    }

    /// Drop an entry's layers (after it left the map and the stage-2 table).
    pub(crate) fn release_entry(&self, e: &Entry) {
        if let Some(aref) = &e.aref {
            amap_unref(&self.uvm, aref, e.npages());
        }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        let entries = core::mem::take(&mut self.inner.get_mut().entries);
        for e in entries.values() {
            if e.is_wired() {
                let g = self.inner.read();
                crate::fault::unwire_pages(self, &g, e.start, e.end);
            }
        }
        self.stage2.remove(Ipa(0), Ipa(Stage2::IPA_LIMIT));
        for e in entries.values() {
            self.release_entry(e);
        }
        self.uvm.retire_stats(&self.stats);
    }
}

impl core::fmt::Debug for Map {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Map")
            .field("vmid", &self.vmid)
            .field("version", &self.version())
            .finish()
    }
}

pub(crate) fn check_range(start: Ipa, end: Ipa) -> Result<(), MapError> {
    if !start.is_page_aligned() || !end.is_page_aligned() {
        return Err(MapError::Unaligned);
    }
    if start >= end || end.0 > Stage2::IPA_LIMIT {
        return Err(MapError::BadRange);
    }
    Ok(())
}
