//! The reverse map: for each frame, every (VM, IPA) that maps it — the seed's pv lists.
//!
//! The pagedaemon, dedup and copy-on-write need "all mappings of this frame" (`pmap_page_protect`,
//! `pmap_clear_reference`). One `Rmap` is shared by every `Stage2` of the engine.
//!
//! # Locks
//! Order: a `Stage2`'s lock, then the rmap lock (innermost of all). `Stage2` updates the rmap while
//! holding its own lock, so the rmap is exact with respect to each table. The operations here that
//! must change tables go the other way round and therefore never hold the rmap lock while taking a
//! `Stage2` lock: they copy the frame's list under the rmap lock, drop it, then take each `Stage2`'s
//! lock in turn and re-check that the descriptor at that IPA still maps the frame before touching
//! it (it may have been removed or replaced meanwhile). A mapping entered concurrently, after the
//! copy, is not seen: as in the seed, callers that need "no mapping remains" hold the page busy
//! (or its owner locked) so no new mapping of it can be entered.
//!
//! # Stale entries
//! An entry is *stale* when its table was dropped or cleared (`Stage2::clear` bumps the table's
//! generation instead of visiting each leaf's entry). Stale entries are never counted, listed or
//! acted on, and are pruned from a frame's list whenever the list is changed; `frames` prunes
//! every list.

use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;

use spin::Mutex;

use super::{Stage2, Vmid};
use crate::addr::{Ipa, Pa, Prot};

#[derive(Clone)]
struct RmapEntry {
    s2: Weak<Stage2>,
    ipa: Ipa,
    /// The table's generation when the mapping was made (see `Stage2::clear`).
    generation: u64,
}

impl RmapEntry {
    /// The table, if the entry is live: the table still exists and was not cleared since.
    fn live(&self) -> Option<Arc<Stage2>> {
        self.s2
            .upgrade()
            .filter(|s2| s2.generation() == self.generation)
    }
}

/// Frame → every (stage-2 table, IPA) mapping it.
#[derive(Default)]
pub struct Rmap {
    /// Keyed by the frame's `Pa`. A frame with no mapping has no key.
    lists: Mutex<BTreeMap<u64, Vec<RmapEntry>>>,
}

impl Rmap {
    /// An empty reverse map, to be shared by every `Stage2` of one engine.
    pub fn new() -> Arc<Rmap> {
        Arc::new(Rmap::default())
    }

    /// Number of mappings of `pa`, across every VM.
    ///
    /// # Locks
    /// Takes the rmap lock.
    pub fn mappings(&self, pa: Pa) -> usize {
        self.lists
            .lock()
            .get(&pa.page_base().0)
            .map_or(0, |l| l.iter().filter(|e| e.live().is_some()).count())
    }

    /// Every (VM, IPA) mapping `pa` (VMs being destroyed are left out).
    ///
    /// # Locks
    /// Takes the rmap lock.
    pub fn mappings_of(&self, pa: Pa) -> Vec<(Vmid, Ipa)> {
        self.snapshot(pa)
            .into_iter()
            .filter_map(|e| e.live().map(|s2| (s2.vmid(), e.ipa)))
            .collect()
    }

    /// Number of frames with at least one mapping (prunes every stale entry).
    pub fn frames(&self) -> usize {
        let mut lists = self.lists.lock();
        lists.retain(|_, l| {
            l.retain(|e| e.live().is_some());
            !l.is_empty()
        });
        lists.len()
    }

    /// The seed's `pmap_page_protect`: lower every mapping of `pa` to at most `prot`. `Prot::NONE`
    /// (or any `prot` that leaves a mapping nothing) removes the mappings, in every VM; `READ`
    /// takes write permission away.
    ///
    /// # Locks
    /// Takes the rmap lock (to copy the list), then each affected `Stage2`'s lock in turn, never
    /// two at once. See the module's note on concurrent `enter`.
    pub fn page_protect(&self, pa: Pa, prot: Prot) {
        let _ = self.page_protect_wired(pa, prot);
    }

    /// [`Rmap::page_protect`], returning how many *wired* mappings it removed (a wired mapping is
    /// removed like any other here: the caller is taking the frame away). Each wired mapping
    /// stands for one wiring of the page, which the caller drops (`Uvm::page_protect`).
    ///
    /// # Locks
    /// As [`Rmap::page_protect`].
    pub fn page_protect_wired(&self, pa: Pa, prot: Prot) -> usize {
        let mut wired = 0;
        for e in self.snapshot(pa) {
            if let Some(s2) = e.s2.upgrade() {
                if s2.rmap_protect(e.ipa, pa.page_base(), prot, e.generation) {
                    wired += 1;
                }
            }
        }
        wired
    }

    /// True when some mapping of `pa` has its access flag set (the pagedaemon's reference bit).
    ///
    /// # Locks
    /// As [`Rmap::page_protect`].
    pub fn is_referenced(&self, pa: Pa) -> bool {
        self.snapshot(pa).into_iter().any(|e| {
            e.s2.upgrade()
                .is_some_and(|s2| s2.rmap_reference(e.ipa, pa.page_base(), false, e.generation))
        })
    }

    /// Clear the access flag of every mapping of `pa`; true when any was set. The next guest
    /// access to such a mapping takes an access-flag fault, which the fault path resolves by
    /// entering the mapping again.
    ///
    /// # Locks
    /// As [`Rmap::page_protect`].
    pub fn clear_reference(&self, pa: Pa) -> bool {
        let mut any = false;
        for e in self.snapshot(pa) {
            if let Some(s2) = e.s2.upgrade() {
                any |= s2.rmap_reference(e.ipa, pa.page_base(), true, e.generation);
            }
        }
        any
    }

    fn snapshot(&self, pa: Pa) -> Vec<RmapEntry> {
        self.lists
            .lock()
            .get(&pa.page_base().0)
            .cloned()
            .unwrap_or_default()
    }

    /// Record that `s2` (at `generation`) maps `ipa` to `pa`; prunes the frame's stale entries.
    ///
    /// # Locks
    /// Called with `s2`'s lock held; takes the rmap lock.
    pub(super) fn insert(&self, pa: Pa, s2: &Weak<Stage2>, ipa: Ipa, generation: u64) {
        let entry = RmapEntry {
            s2: s2.clone(),
            ipa,
            generation,
        };
        let mut lists = self.lists.lock();
        let list = lists.entry(pa.0).or_default();
        if !list.is_empty() {
            list.retain(|e| e.live().is_some());
        }
        list.push(entry);
    }

    /// Forget that `s2` (at `generation`) maps `ipa` to `pa`; prunes the frame's stale entries.
    ///
    /// # Locks
    /// Called with `s2`'s lock held; takes the rmap lock.
    pub(super) fn remove(&self, pa: Pa, s2: &Weak<Stage2>, ipa: Ipa, generation: u64) {
        let mut lists = self.lists.lock();
        let Some(list) = lists.get_mut(&pa.0) else {
            debug_assert!(false, "rmap: {pa:?} has no list");
            return;
        };
        if let Some(i) = list
            .iter()
            .position(|e| e.ipa == ipa && e.generation == generation && Weak::ptr_eq(&e.s2, s2))
        {
            list.swap_remove(i);
        } else {
            debug_assert!(false, "rmap: {pa:?} not mapped at {ipa:?}");
        }
        if !list.is_empty() {
            list.retain(|e| e.live().is_some());
        }
        if list.is_empty() {
            lists.remove(&pa.0);
        }
    }
}
