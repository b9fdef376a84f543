//! Amaps: the upper layer of a map entry (the seed's `struct vm_amap`).
//!
//! An amap is an array of slots, each empty or pointing at an [`Anon`]. Map entries refer to a
//! run of its slots through an [`AmapRef`] (amap + slot offset). `refs` counts those entry
//! references; `slot_refs` counts them per slot (the seed's `ppref` array). Like the seed, it
//! exists only once some reference covers part of the amap (an entry clipped while the amap is
//! shared): while every reference covers every slot, each slot's count is `refs`, so taking or
//! dropping a reference is O(1) — which is what makes fork independent of the entries' sizes.
//! Once created it stays: it lets an entry that was clipped and then removed free exactly its
//! own slots. An amap
//! referenced by entries that *share* it (inheritance SHARE) is flagged `shared`: promoting a page
//! into a shared amap must hide the object page from every sharer first.
//!
//! Copy-on-write after a fork is lazy: both entries keep referring to the same amap with
//! `needs_copy` set, and the first fault that needs to write (or finds no object) copies the
//! amap: a new amap whose slots point at the same anons, each anon's `an_ref` raised — the data
//! itself is copied later, page by page, by case 1B.
//!
//! # Locks
//! `Amap::lock` is the AMAP lock: after MAPS, before OBJECT and ANON. Two amaps are never locked
//! at once, except a new private one that nobody else can reach yet.

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::addr::{Ipa, Prot};
use crate::anon::{anon_unref, Anon, AnonState};
use crate::page::PageFlags;
use crate::uvm::Uvm;

/// Pages of the chunk a fault copies of a large shared amap (the seed's `UVM_AMAP_CHUNK`): the
/// first write after a fork clips its entry to the chunk-aligned run around the fault and copies
/// only that (see `Fault::amapcopy`).
pub const AMAP_CHUNK_PAGES: u64 = 16;
/// Entries of at least this many pages are chunked that way (the seed's `UVM_AMAP_LARGE`).
pub const AMAP_LARGE_PAGES: usize = 256;

/// The state behind an amap's lock.
#[derive(Debug)]
pub struct AmapState {
    slots: Vec<Option<Arc<Anon>>>,
    /// Per-slot reference counts; `None` while every reference covers every slot (then each
    /// slot's count is `refs`).
    slot_refs: Option<Vec<u32>>,
    refs: u32,
    shared: bool,
}

/// An array of anon slots.
#[derive(Debug)]
pub struct Amap {
    state: crate::sync::Mutex<AmapState>,
}

/// An entry's reference to a run of an amap's slots (the seed's `struct vm_aref`).
#[derive(Clone, Debug)]
pub struct AmapRef {
    pub amap: Arc<Amap>,
    /// First slot used by the entry (the entry's first page).
    pub slotoff: usize,
}

impl AmapRef {
    /// The slot of `ipa` (inside the entry) for an entry starting at `start`.
    pub fn slot(&self, start: Ipa, ipa: Ipa) -> Option<usize> {
        self.slotoff
            .checked_add(usize::try_from(ipa.pages_since(start)).ok()?)
    }
}

impl Amap {
    /// An empty amap of `nslots` slots, referenced once (by the entry about to hold it).
    ///
    /// # Locks
    /// None: the new amap is unreachable by anyone else until the caller stores it.
    pub fn new(nslots: usize) -> Arc<Amap> {
        Arc::new(Amap {
            state: crate::sync::Mutex::new(AmapState {
                slots: (0..nslots).map(|_| None).collect(),
                slot_refs: None,
                refs: 1,
                shared: false,
            }),
        })
    }

    /// Take the AMAP lock.
    ///
    /// # Locks
    /// Takes AMAP (after MAPS, before OBJECT, ANON and everything below); held until the guard
    /// drops.
    pub fn lock(&self) -> crate::sync::MutexGuard<'_, AmapState> {
        self.state.lock()
    }
}

impl AmapState {
    /// The anon in `slot`, if any (the seed's `amap_lookup`).
    ///
    /// # Locks
    /// Entry and exit: AMAP held (`self` is the locked state). Takes nothing; the anon returned is
    /// not locked.
    pub fn lookup(&self, slot: usize) -> Option<&Arc<Anon>> {
        self.slots.get(slot)?.as_ref()
    }

    /// The anons of `n` slots from `slot` (the seed's `amap_lookups`); slots past the end read
    /// as empty.
    ///
    /// # Locks
    /// Entry and exit: AMAP held (`self` is the locked state). Takes nothing: each anon is cloned,
    /// not locked.
    pub fn lookups(&self, slot: usize, n: usize) -> Vec<Option<Arc<Anon>>> {
        (0..n)
            .map(|i| slot.checked_add(i).and_then(|s| self.lookup(s)).cloned())
            .collect()
    }

    /// Put `anon` into `slot` (the seed's `amap_add`), returning the anon it replaces. The caller
    /// drops the replaced anon's reference itself (with its lock held, as case 1B does).
    ///
    /// # Locks
    /// Entry and exit: AMAP held (`self` is the locked state); takes nothing. A slot past the end
    /// returns `None` (dropping `anon`) and changes nothing. The seed calls `amap_add` with the
    /// new anon locked; 1B and 2B add an anon nobody else can reach yet without this AMAP lock
    /// (its page, the only other way to it, is BUSY), so they do not lock it.
    pub(crate) fn add(&mut self, slot: usize, anon: Arc<Anon>) -> Option<Option<Arc<Anon>>> {
        let s = self.slots.get_mut(slot)?;
        Some(s.replace(anon))
    }

    /// Number of entry references.
    ///
    /// # Locks
    /// Entry and exit: AMAP held (`self` is the locked state); takes nothing.
    pub fn refs(&self) -> u32 {
        self.refs
    }

    /// True when entries share this amap (inheritance SHARE).
    ///
    /// # Locks
    /// Entry and exit: AMAP held (`self` is the locked state); takes nothing.
    pub fn shared(&self) -> bool {
        self.shared
    }

    /// Number of slots.
    ///
    /// # Locks
    /// Entry and exit: AMAP held (`self` is the locked state); takes nothing.
    pub fn nslots(&self) -> usize {
        self.slots.len()
    }

    /// Number of occupied slots.
    ///
    /// # Locks
    /// Entry and exit: AMAP held (`self` is the locked state); takes nothing.
    pub fn nused(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// # Locks
    /// Entry and exit: AMAP held (`self` is the locked state); takes nothing.
    fn range(&self, slotoff: usize, n: usize) -> core::ops::Range<usize> {
        let end = slotoff.saturating_add(n).min(self.slots.len());
        slotoff.min(end)..end
    }

    /// True when `n` slots from `slotoff` are all the amap's slots.
    ///
    /// # Locks
    /// Entry and exit: AMAP held (`self` is the locked state); takes nothing.
    fn whole(&self, slotoff: usize, n: usize) -> bool {
        slotoff == 0 && n >= self.slots.len()
    }

    /// The per-slot counts, created (each slot at `refs`) if they did not exist: a reference to
    /// part of the amap is about to be taken or dropped (the seed's `amap_pp_establish`).
    ///
    /// # Locks
    /// Entry and exit: AMAP held (`self` is the locked state); takes nothing.
    fn slot_refs_mut(&mut self) -> &mut Vec<u32> {
        let (n, refs) = (self.slots.len(), self.refs);
        self.slot_refs.get_or_insert_with(|| alloc::vec![refs; n])
    }

    /// The reference count of `slot` (for tests and assertions).
    ///
    /// # Locks
    /// Entry and exit: AMAP held (`self` is the locked state); takes nothing.
    pub fn slot_refs(&self, slot: usize) -> u32 {
        match &self.slot_refs {
            None => self.refs,
            Some(v) => v.get(slot).copied().unwrap_or(0),
        }
    }
}

/// Add one entry reference to `npages` slots of `aref` (the seed's `amap_ref`); `share` marks
/// the amap shared.
///
/// # Locks
/// Takes and releases the AMAP lock.
pub(crate) fn amap_ref(aref: &AmapRef, npages: usize, share: bool) {
    let mut st = aref.amap.lock();
    if share {
        st.shared = true;
    }
    if st.slot_refs.is_some() || !st.whole(aref.slotoff, npages) {
        let r = st.range(aref.slotoff, npages);
        for c in st.slot_refs_mut().get_mut(r).into_iter().flatten() {
            *c = c.saturating_add(1);
        }
    }
    st.refs = st.refs.saturating_add(1);
}

/// Drop one entry reference to `npages` slots of `aref` (the seed's `amap_unref`): slots no entry
/// refers to any more lose their anon (whose `an_ref` drops, maybe freeing it).
///
/// # Locks
/// Takes the AMAP lock, then each anon's lock in turn.
pub(crate) fn amap_unref(uvm: &Uvm, aref: &AmapRef, npages: usize) {
    let mut st = aref.amap.lock();
    unref_locked(uvm, &mut st, aref.slotoff, npages);
}

/// # Locks
/// Entry and exit: AMAP held by the caller (`st`). Takes each dropped anon's lock in turn
/// (`anon_unref`), and for an anon freed, PMAP (through the reverse map), PAGE and PAGE QUEUES.
fn unref_locked(uvm: &Uvm, st: &mut AmapState, slotoff: usize, npages: usize) {
    if st.slot_refs.is_none() && st.whole(slotoff, npages) {
        // Every slot's count is `refs`: they all reach zero together, or none does.
        st.refs = st.refs.saturating_sub(1);
        if st.refs <= 1 {
            st.shared = false;
        }
        if st.refs == 0 {
            for anon in st.slots.iter_mut().filter_map(Option::take) {
                anon_unref(uvm, &anon);
            }
        }
        return;
    }
    let r = st.range(slotoff, npages);
    st.slot_refs_mut();
    st.refs = st.refs.saturating_sub(1);
    if st.refs <= 1 {
        st.shared = false;
    }
    let AmapState {
        slots, slot_refs, ..
    } = st;
    for i in r {
        let Some(c) = slot_refs.as_mut().and_then(|v| v.get_mut(i)) else {
            continue;
        };
        *c = c.saturating_sub(1);
        if *c == 0 {
            if let Some(anon) = slots.get_mut(i).and_then(Option::take) {
                anon_unref(uvm, &anon);
            }
        }
    }
}

/// Copy `npages` slots of `old` into a new private amap (the copying half of the seed's
/// `amap_copy`): the new amap points at the same anons, each `an_ref` raised, and `old` loses
/// this entry's reference. The caller decided a copy is needed (`old` has other references).
///
/// An anon with `an_ref > 1` is never mapped writable anywhere (1A and the neighbour loop enter
/// it read-only; case 1B copies before writing). Raising `an_ref` from 1 is what makes an anon
/// shared, so it is here — one of the two places that raise it, with a dedup merge
/// (`dedup.rs`, which write-protects likewise) — that a resident anon's page loses write
/// permission, in every VM (through the reverse map): the mappings entered while the anon was
/// private may be writable, in this map and in every other map sharing `old` (an amap shared by
/// SHARE inheritance is copied for a COPY fork right away). The seed only write-protects the
/// parent's pmap in `uvmspace_fork`, which misses the other sharers.
///
/// With `copy_resident` (a COPY fork of a wired entry: the seed's `amap_cow_now`), a resident
/// anon is not shared at all: the new amap gets a new anon with a copy of its data, so the
/// existing mappings keep their write permission and their frames (a wired parent's frames must
/// not change under it, which a later 1B would do). An anon whose page is BUSY (a hypervisor
/// copy, which holds no map lock, or a fill) cannot be copied now and must not be shared either
/// (sharing is what lets a later 1B replace the wired frame): the copy is undone and `Busy`
/// returned, for the caller to retry (the seed's `amap_cow_now` sleeps on the page and starts
/// over). When no frame is free the copy is undone likewise (the new amap released, the caller
/// keeps its reference to `old`) and `NoFrame` returned.
///
/// # Locks
/// Takes the AMAP lock of `old`, then each anon's lock in turn, and with the anon locked the
/// PMAP locks of the mappings of its page (through `Rmap::page_protect`, so no PMAP-or-later lock
/// may be held by the caller). Holding `old`'s AMAP lock keeps every fault of a map using `old`
/// from entering a new writable mapping of these anons meanwhile. The new amap is unreachable by
/// anyone else until returned.
pub(crate) fn amap_copy_range(
    uvm: &Uvm,
    old: &AmapRef,
    npages: usize,
    copy_resident: bool,
) -> Result<AmapRef, CopyError> {
    let new = Amap::new(npages);
    let mut nst = new.lock();
    let mut ost = old.amap.lock();
    let mut result = Ok(());
    for (i, slot) in nst.slots.iter_mut().enumerate() {
        let Some(anon) = old.slotoff.checked_add(i).and_then(|s| ost.lookup(s)) else {
            continue;
        };
        let mut a = anon.lock();
        if copy_resident {
            match anon_copy_now(uvm, &a) {
                Ok(Some(copy)) => {
                    *slot = Some(copy);
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        a.an_ref = a.an_ref.saturating_add(1);
        if a.an_ref == 2 {
            if let Some(pg) = a.page {
                uvm.page_protect(pg, Prot::ALL - Prot::WRITE);
            }
        }
        drop(a);
        *slot = Some(anon.clone());
    }
    if let Err(e) = result {
        // Undo the half-built copy: its anons lose their new references, copies are freed.
        // The caller's entry keeps its reference to `old`: nothing it can see has changed
        // (write-protections done on the way only cost a refault).
        drop(ost);
        let n = nst.slots.len();
        unref_locked(uvm, &mut nst, 0, n);
        return Err(e);
    }
    // The caller's entry gives up its reference to `old` for the copy.
    unref_locked(uvm, &mut ost, old.slotoff, npages);
    drop(ost);
    drop(nst);
    Ok(AmapRef {
        amap: new,
        slotoff: 0,
    })
}

/// Why `amap_copy_range` with `copy_resident` could not copy a resident anon.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum CopyError {
    /// No frame was free for the copy.
    NoFrame,
    /// The page was BUSY: its data may be changing or not there yet (transient).
    Busy,
}

/// A new anon holding a copy of the resident page of `a`; `Ok(None)` when `a` has no resident
/// page (it is shared instead: nothing maps it).
///
/// # Errors
/// `Busy` when the page is BUSY, `NoFrame` when no frame is free.
///
/// # Locks
/// Entry and exit: `a`'s ANON lock held. Takes PAGE and PAGE QUEUES.
fn anon_copy_now(uvm: &Uvm, a: &AnonState) -> Result<Option<Arc<Anon>>, CopyError> {
    let Some(opg) = a.page else { return Ok(None) };
    if uvm.page_has(opg, PageFlags::BUSY) {
        return Err(CopyError::Busy);
    }
    let (new, nbusy) = Anon::with_new_page(uvm, false).ok_or(CopyError::NoFrame)?;
    uvm.mem().copy(uvm.pa(nbusy.page()), uvm.pa(opg));
    // Already on the active queue (`alloc_page`), where a BUSY page stays.
    uvm.unbusy(nbusy);
    Ok(Some(new))
}

/// Split `aref` (covering `total` pages) at page `at`, for an entry being clipped: returns the
/// reference the upper part should use (the seed's `amap_splitref`). An amap only this entry
/// refers to is split for real, so each half owns its slots; a shared one gains a reference.
///
/// # Locks
/// Takes the AMAP lock.
pub(crate) fn amap_split(aref: &AmapRef, at: usize, total: usize) -> AmapRef {
    let mut st = aref.amap.lock();
    let cut = aref.slotoff.saturating_add(at);
    if st.refs == 1 && !st.shared && aref.slotoff == 0 && total == st.slots.len() && cut <= total {
        let slots = st.slots.split_off(cut);
        let slot_refs = st.slot_refs.as_mut().map(|v| v.split_off(cut));
        drop(st);
        let new = Arc::new(Amap {
            state: crate::sync::Mutex::new(AmapState {
                slots,
                slot_refs,
                refs: 1,
                shared: false,
            }),
        });
        AmapRef {
            amap: new,
            slotoff: 0,
        }
    } else {
        // Two references now cover what one did: each slot's count is unchanged, but they no
        // longer cover the whole amap.
        st.slot_refs_mut();
        st.refs = st.refs.saturating_add(1);
        AmapRef {
            amap: aref.amap.clone(),
            slotoff: cut,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_past_end_are_empty() {
        let a = Amap::new(2);
        let st = a.lock();
        assert_eq!(st.lookups(1, 4).len(), 4);
        assert!(st.lookups(1, 4).iter().all(Option::is_none));
        assert!(st.lookup(usize::MAX).is_none());
    }

    #[test]
    fn split_private_moves_slots() {
        let a = Amap::new(4);
        let anon = Anon::new();
        let _ = a.lock().add(3, anon.clone());
        let aref = AmapRef {
            amap: a.clone(),
            slotoff: 0,
        };
        let upper = amap_split(&aref, 2, 4);
        assert!(!Arc::ptr_eq(&upper.amap, &a));
        assert_eq!(a.lock().nslots(), 2);
        assert!(upper
            .amap
            .lock()
            .lookup(1)
            .is_some_and(|x| Arc::ptr_eq(x, &anon)));
    }

    /// Engine bug 1 (`vm/tests/engine_bugs.rs`): a COPY fork of an entry whose amap is shared
    /// (SHARE) copies the child's amap at once; every map sharing the amap loses write
    /// permission on the anons that became shared, so the parent's next write copies (1B) and
    /// the child keeps the fork-time data.
    #[test]
    fn copying_a_shared_amap_write_protects_every_sharer() {
        use crate::addr::Ipa;
        use crate::map::{Inherit, Map};
        use crate::pmap::Vmid;
        use crate::testenv::*;
        let e = env(128);
        let p = e.anon_map(4);
        p.set_inherit(page(0), page(4), Inherit::Share).unwrap();
        p.copy_out(page(1), &[0x11]).unwrap();
        let s = p.fork(Vmid(2)).unwrap();
        let mut b = [0u8];
        s.copy_in(page(1), &mut b).unwrap();
        s.copy_out(page(1), &[0x11]).unwrap(); // s maps the anon writable too (an_ref 1)
        let rw = Prot::READ | Prot::WRITE;
        assert_eq!((prot(&p, page(1)), prot(&s, page(1))), (Some(rw), Some(rw)));
        p.set_inherit(page(0), page(4), Inherit::Copy).unwrap();
        let c = p.fork(Vmid(3)).unwrap();
        for m in [&p, &s] {
            assert!(!prot(m, page(1)).unwrap().contains(Prot::WRITE), "{m:?}");
        }
        p.copy_out(page(1), &[0x22]).unwrap();
        c.copy_in(page(1), &mut b).unwrap();
        assert_eq!(b, [0x11], "the child keeps the data of fork time");
        let read = |m: &Map, at: Ipa| {
            let mut b = [0u8];
            m.copy_in(at, &mut b).unwrap();
            b[0]
        };
        assert_eq!(read(&p, page(1)), 0x22);
    }

    /// Whole references keep no per-slot counts (O(1) fork); the first partial one creates them
    /// at the whole references' count, and the slots then go exactly when their count does.
    #[test]
    fn per_slot_counts_only_for_partial_references() {
        let e = crate::testenv::env(16);
        let a = Amap::new(4);
        let anons: Vec<_> = (0..4).map(|_| Anon::new()).collect();
        for (i, anon) in anons.iter().enumerate() {
            let _ = a.lock().add(i, anon.clone());
        }
        let whole = AmapRef {
            amap: a.clone(),
            slotoff: 0,
        };
        amap_ref(&whole, 4, false);
        {
            let st = a.lock();
            assert!(st.slot_refs.is_none());
            assert_eq!((st.refs(), st.slot_refs(3)), (2, 2));
        }
        let tail = AmapRef {
            amap: a.clone(),
            slotoff: 2,
        };
        amap_ref(&tail, 2, false);
        let counts: Vec<u32> = {
            let st = a.lock();
            (0..4).map(|i| st.slot_refs(i)).collect()
        };
        assert_eq!(counts, [2, 2, 3, 3]);
        amap_unref(&e.uvm, &whole, 4);
        amap_unref(&e.uvm, &whole, 4);
        assert_eq!(
            a.lock().nused(),
            2,
            "the head slots went with the whole references"
        );
        assert_eq!(anons[0].lock().an_ref, 0);
        assert_eq!(anons[3].lock().an_ref, 1);
        amap_unref(&e.uvm, &tail, 2);
        let st = a.lock();
        assert_eq!((st.nused(), st.refs()), (0, 0));
    }

    #[test]
    fn split_shared_takes_a_reference() {
        let a = Amap::new(4);
        let aref = AmapRef {
            amap: a.clone(),
            slotoff: 0,
        };
        amap_ref(&aref, 4, true);
        let upper = amap_split(&aref, 1, 4);
        assert!(Arc::ptr_eq(&upper.amap, &a));
        assert_eq!(upper.slotoff, 1);
        assert_eq!(a.lock().refs(), 3);
        assert!(a.lock().shared());
    }
}
