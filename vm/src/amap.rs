//! Amaps: the upper layer of a map entry (the seed's `struct vm_amap`).
//!
//! An amap is an array of slots, each empty or pointing at an [`Anon`]. Map entries refer to a
//! run of its slots through an [`AmapRef`] (amap + slot offset). `refs` counts those entry
//! references; `slot_refs` counts them per slot (the seed's optional `ppref` array, kept always:
//! it lets an entry that was clipped and then removed free exactly its own slots). An amap
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

use crate::anon::{anon_unref, Anon};
use crate::uvm::Uvm;

/// The state behind an amap's lock.
#[derive(Debug)]
pub struct AmapState {
    slots: Vec<Option<Arc<Anon>>>,
    slot_refs: Vec<u32>,
    refs: u32,
    shared: bool,
}

/// An array of anon slots.
#[derive(Debug)]
pub struct Amap {
    state: spin::Mutex<AmapState>,
}

/// An entry's reference to a run of an amap's slots (the seed's `struct vm_aref`).
#[derive(Clone, Debug)]
pub struct AmapRef {
    pub amap: Arc<Amap>,
    /// First slot used by the entry (the entry's first page).
    pub slotoff: usize,
}

impl Amap {
    /// An empty amap of `nslots` slots, referenced once (by the entry about to hold it).
    pub fn new(nslots: usize) -> Arc<Amap> {
        Arc::new(Amap {
            state: spin::Mutex::new(AmapState {
                slots: (0..nslots).map(|_| None).collect(),
                slot_refs: alloc::vec![1; nslots],
                refs: 1,
                shared: false,
            }),
        })
    }

    /// Take the AMAP lock.
    pub fn lock(&self) -> spin::MutexGuard<'_, AmapState> {
        self.state.lock()
    }
}

impl AmapState {
    /// The anon in `slot`, if any (the seed's `amap_lookup`).
    pub fn lookup(&self, slot: usize) -> Option<&Arc<Anon>> {
        self.slots.get(slot)?.as_ref()
    }

    /// The anons of `n` slots from `slot` (the seed's `amap_lookups`); slots past the end read
    /// as empty.
    pub fn lookups(&self, slot: usize, n: usize) -> Vec<Option<Arc<Anon>>> {
        (0..n)
            .map(|i| slot.checked_add(i).and_then(|s| self.lookup(s)).cloned())
            .collect()
    }

    /// Put `anon` into `slot` (the seed's `amap_add`), returning the anon it replaces. The caller
    /// drops the replaced anon's reference itself (with its lock held, as case 1B does).
    pub(crate) fn add(&mut self, slot: usize, anon: Arc<Anon>) -> Option<Option<Arc<Anon>>> {
        let s = self.slots.get_mut(slot)?;
        Some(s.replace(anon))
    }

    /// Number of entry references.
    pub fn refs(&self) -> u32 {
        self.refs
    }

    /// True when entries share this amap (inheritance SHARE).
    pub fn shared(&self) -> bool {
        self.shared
    }

    /// Number of slots.
    pub fn nslots(&self) -> usize {
        self.slots.len()
    }

    /// Number of occupied slots.
    pub fn nused(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    fn range(&self, slotoff: usize, n: usize) -> core::ops::Range<usize> {
        let end = slotoff.saturating_add(n).min(self.slots.len());
        slotoff.min(end)..end
    }
}

/// Add one entry reference to `npages` slots of `aref` (the seed's `amap_ref`); `share` marks
/// the amap shared.
///
/// # Locks
/// Takes and releases the AMAP lock.
pub(crate) fn amap_ref(aref: &AmapRef, npages: usize, share: bool) {
    let mut st = aref.amap.lock();
    st.refs = st.refs.saturating_add(1);
    if share {
        st.shared = true;
    }
    let r = st.range(aref.slotoff, npages);
    for c in st.slot_refs.get_mut(r).into_iter().flatten() {
        *c = c.saturating_add(1);
    }
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

fn unref_locked(uvm: &Uvm, st: &mut AmapState, slotoff: usize, npages: usize) {
    st.refs = st.refs.saturating_sub(1);
    if st.refs <= 1 {
        st.shared = false;
    }
    let r = st.range(slotoff, npages);
    for i in r {
        let Some(c) = st.slot_refs.get_mut(i) else {
            continue;
        };
        *c = c.saturating_sub(1);
        if *c == 0 {
            if let Some(anon) = st.slots.get_mut(i).and_then(Option::take) {
                anon_unref(uvm, &anon);
            }
        }
    }
}

/// Copy `npages` slots of `old` into a new private amap (the copying half of the seed's
/// `amap_copy`): the new amap points at the same anons, each `an_ref` raised, and `old` loses
/// this entry's reference. The caller decided a copy is needed (`old` has other references).
///
/// # Locks
/// Takes the AMAP lock of `old`, then each anon's lock in turn. The new amap is unreachable by
/// anyone else until returned.
pub(crate) fn amap_copy_range(uvm: &Uvm, old: &AmapRef, npages: usize) -> AmapRef {
    let new = Amap::new(npages);
    {
        let mut nst = new.lock();
        let mut ost = old.amap.lock();
        for (i, slot) in nst.slots.iter_mut().enumerate() {
            if let Some(anon) = old.slotoff.checked_add(i).and_then(|s| ost.lookup(s)) {
                let mut a = anon.lock();
                a.an_ref = a.an_ref.saturating_add(1);
                drop(a);
                *slot = Some(anon.clone());
            }
        }
        unref_locked(uvm, &mut ost, old.slotoff, npages);
    }
    AmapRef {
        amap: new,
        slotoff: 0,
    }
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
        let slot_refs = st.slot_refs.split_off(cut);
        drop(st);
        let new = Arc::new(Amap {
            state: spin::Mutex::new(AmapState {
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
