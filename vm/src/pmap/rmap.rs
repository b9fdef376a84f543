//! The reverse map: for each frame, every (VM, IPA) that maps it — the seed's pv lists.
//!
//! The pagedaemon, dedup and copy-on-write need "all mappings of this frame" (`pmap_page_protect`,
//! `pmap_clear_reference`). One `Rmap` is shared by every `Stage2` of the engine.
//!
//! # Locks
//! Order: a `Stage2`'s lock, then an rmap lock (one per pool frame, one for the frames outside
//! the pool, never two at once), then the tables lock (`tables.rs`, innermost of all). `Stage2` updates the rmap while
//! holding its own lock, so the rmap is exact with respect to each table. The operations here that
//! must change tables go the other way round and therefore never hold the rmap lock while taking a
//! `Stage2` lock: they copy the frame's list under the rmap lock, drop it, then take each `Stage2`'s
//! lock in turn and re-check that the descriptor at that IPA still maps the frame before touching
//! it (it may have been removed or replaced meanwhile). A mapping entered concurrently, after the
//! copy, is not seen: as in the seed, callers that need "no mapping remains" hold the page busy
//! (or its owner locked) so no new mapping of it can be entered.
//!
//! # Stale entries
//! An entry names its table by number and generation (see `tables.rs`). It is *stale* when its
//! table was dropped or cleared (`Stage2::clear` gives the table a new generation instead of
//! visiting each leaf's entry). Stale entries are never counted, listed or
//! acted on, and are pruned from a frame's list whenever the list is changed; `frames` prunes
//! every list.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::sync::Mutex;

use super::tables::{TableId, Tables};
use super::{AgedTables, Stage2, TlbBatch, Vmid};
use crate::addr::{Ipa, Pa, Prot, PAGE_SHIFT};

#[derive(Clone)]
struct RmapEntry {
    table: TableId,
    ipa: Ipa,
    /// The table's generation when the mapping was made (see `Stage2::clear`).
    generation: u64,
}

impl RmapEntry {
    fn is(&self, table: TableId, ipa: Ipa, generation: u64) -> bool {
        self.ipa == ipa && self.generation == generation && self.table == table
    }
}

/// The entries of one frame. Almost every frame is mapped once (by one VM, at one IPA), so the
/// first entry is kept inline and only a second one allocates. Invariant: `more` is empty when
/// `first` is `None`. The order of entries means nothing.
#[derive(Clone, Default)]
struct List {
    first: Option<RmapEntry>,
    more: Vec<RmapEntry>,
}

impl List {
    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn iter(&self) -> impl Iterator<Item = &RmapEntry> {
        self.first.iter().chain(self.more.iter())
    }

    fn push(&mut self, e: RmapEntry) {
        match self.first {
            None => self.first = Some(e),
            Some(_) => self.more.push(e),
        }
    }

    /// Remove the entry `(table, ipa, generation)`; false when there is none.
    fn remove(&mut self, table: TableId, ipa: Ipa, generation: u64) -> bool {
        if self
            .first
            .as_ref()
            .is_some_and(|e| e.is(table, ipa, generation))
        {
            self.first = self.more.pop();
            true
        } else if let Some(i) = self.more.iter().position(|e| e.is(table, ipa, generation)) {
            self.more.swap_remove(i);
            true
        } else {
            false
        }
    }

    /// Drop the stale entries.
    fn prune(&mut self, tables: &Tables) {
        if self.is_empty() {
            return;
        }
        let live = |e: &RmapEntry| tables.is_live(e.table, e.generation);
        self.more.retain(live);
        if self.first.as_ref().is_some_and(|e| !live(e)) {
            self.first = self.more.pop();
        }
    }
}

/// Frame → every (stage-2 table, IPA) mapping it.
///
/// The frames of the engine's pool (given to [`Rmap::for_frames`]) are indexed directly, each
/// with its own lock: entering or removing the one mapping of a pool frame takes that lock and
/// allocates nothing. Any other frame (a test's, or one outside the pool) goes to a map.
#[derive(Default)]
pub struct Rmap {
    /// Address of `frames[0]`.
    base: u64,
    /// One list per indexed frame, each behind its own lock.
    frames: Vec<Mutex<List>>,
    /// Frames outside the indexed range, keyed by `Pa`. A frame with no mapping has no key.
    others: Mutex<BTreeMap<u64, List>>,
    /// The tables the entries name.
    pub(super) tables: Tables,
}

impl Rmap {
    /// An empty reverse map, to be shared by every `Stage2` of one engine; no frame indexed.
    pub fn new() -> Arc<Rmap> {
        Arc::new(Rmap::default())
    }

    /// An empty reverse map indexing the `n` frames from `base` (the engine's page pool).
    pub fn for_frames(base: Pa, n: usize) -> Arc<Rmap> {
        Arc::new(Rmap {
            base: base.page_base().0,
            frames: (0..n).map(|_| Mutex::new(List::default())).collect(),
            others: Mutex::new(BTreeMap::new()),
            tables: Tables::default(),
        })
    }

    /// Run `f` on the list of `pa` with its lock held (the list is created empty if needed, and
    /// forgotten again if `f` leaves it empty).
    fn with<R>(&self, pa: Pa, f: impl FnOnce(&mut List) -> R) -> R {
        let pa = pa.page_base().0;
        let slot = pa
            .checked_sub(self.base)
            .and_then(|off| usize::try_from(off >> PAGE_SHIFT).ok())
            .and_then(|i| self.frames.get(i));
        match slot {
            Some(list) => f(&mut list.lock()),
            None => {
                let mut others = self.others.lock();
                let list = others.entry(pa).or_default();
                let r = f(list);
                if list.is_empty() {
                    others.remove(&pa);
                }
                r
            }
        }
    }

    /// Number of mappings of `pa`, across every VM (a table being dropped still counts until its
    /// `Drop` unregisters it).
    ///
    /// # Locks
    /// Takes the rmap lock, then the tables lock. No table reference is taken under the rmap
    /// lock: dropping the last one there would run the table's `Drop` (which frees frames) inside
    /// the innermost lock.
    pub fn mappings(&self, pa: Pa) -> usize {
        self.with(pa, |l| {
            l.iter()
                .filter(|e| self.tables.is_live(e.table, e.generation))
                .count()
        })
    }

    /// Every (VM, IPA) mapping `pa` (VMs being destroyed are left out).
    ///
    /// # Locks
    /// Takes the rmap lock.
    pub fn mappings_of(&self, pa: Pa) -> Vec<(Vmid, Ipa)> {
        self.snapshot(pa)
            .iter()
            .filter_map(|e| self.live(e).map(|s2| (s2.vmid(), e.ipa)))
            .collect()
    }

    /// One (VM, IPA) mapping `pa`, if any (the first live one; the swap trace names a page by
    /// it: `crate::swapevents`).
    ///
    /// # Locks
    /// Takes the rmap lock.
    pub fn first_mapping(&self, pa: Pa) -> Option<(Vmid, Ipa)> {
        self.snapshot(pa)
            .iter()
            .find_map(|e| self.live(e).map(|s2| (s2.vmid(), e.ipa)))
    }

    /// Number of frames with at least one mapping (prunes every stale entry).
    ///
    /// # Locks
    /// Takes each frame's rmap lock in turn, then the lock of the frames outside the pool.
    pub fn frames(&self) -> usize {
        let mut n = 0;
        for list in &self.frames {
            let mut l = list.lock();
            l.prune(&self.tables);
            n += usize::from(!l.is_empty());
        }
        let mut others = self.others.lock();
        others.retain(|_, l| {
            l.prune(&self.tables);
            !l.is_empty()
        });
        n + others.len()
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
        for e in self.snapshot(pa).iter() {
            if let Some(s2) = self.tables.get(e.table) {
                if s2.rmap_protect(e.ipa, pa.page_base(), prot, e.generation) {
                    wired += 1;
                }
            }
        }
        wired
    }

    /// [`Rmap::page_protect_wired`], leaving the invalidation of every mapping it removes to
    /// `batch` (`pmap/batch.rs`): the descriptors and rmap entries go now, the TLB entries when
    /// the caller flushes the batch, which it must do before `pa` is written out, freed or
    /// reused. A mapping only lowered (not removed) is invalidated at once.
    ///
    /// # Locks
    /// As [`Rmap::page_protect`].
    pub fn page_protect_batched(&self, pa: Pa, prot: Prot, batch: &mut TlbBatch) -> usize {
        let mut wired = 0;
        for e in self.snapshot(pa).iter() {
            if let Some(s2) = self.tables.get(e.table) {
                let (w, owed) = s2.rmap_protect_batched(e.ipa, pa.page_base(), prot, e.generation);
                wired += usize::from(w);
                if let Some(token) = owed {
                    batch.push(&s2, e.ipa, token);
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
        self.snapshot(pa).iter().any(|e| {
            self.tables
                .get(e.table)
                .is_some_and(|s2| s2.rmap_reference(e.ipa, pa.page_base(), false, e.generation))
        })
    }

    /// Clear the access flag of every mapping of `pa`; true when any was set. The next guest
    /// access to such a mapping takes an access-flag fault, which the fault path resolves by
    /// entering the mapping again, unless a TLB still holds the mapping from before: the flag
    /// is cleared with no TLB invalidation (`Stage2::clear_access_flag`), so an access through
    /// such an entry goes unnoticed (aging is approximate, as in Linux; never wrong). The
    /// pagedaemon's clock uses [`Rmap::clear_reference_aging`] instead.
    ///
    /// # Locks
    /// As [`Rmap::page_protect`].
    pub fn clear_reference(&self, pa: Pa) -> bool {
        self.clear_reference_noting(pa, |_| {})
    }

    /// [`Rmap::clear_reference`], noting in `aged` each table where a flag was set, for the
    /// invalidation that ends the clock's pass (`pmap/aged.rs`).
    ///
    /// # Locks
    /// As [`Rmap::page_protect`].
    pub fn clear_reference_aging(&self, pa: Pa, aged: &mut AgedTables) -> bool {
        self.clear_reference_noting(pa, |s2| aged.note(s2))
    }

    /// Clear the access flag of every mapping of `pa`, calling `note` with each table where it
    /// was set; true when any was.
    fn clear_reference_noting(&self, pa: Pa, mut note: impl FnMut(&Arc<Stage2>)) -> bool {
        let mut any = false;
        for e in self.snapshot(pa).iter() {
            if let Some(s2) = self.tables.get(e.table) {
                if s2.rmap_reference(e.ipa, pa.page_base(), true, e.generation) {
                    note(&s2);
                    any = true;
                }
            }
        }
        any
    }

    /// The table of `e`, if the entry is live: the table still exists and was not cleared since.
    fn live(&self, e: &RmapEntry) -> Option<Arc<Stage2>> {
        self.tables
            .get(e.table)
            .filter(|s2| s2.generation() == e.generation)
    }

    /// A copy of the list of `pa` (allocates only for a frame mapped more than once).
    fn snapshot(&self, pa: Pa) -> List {
        self.with(pa, |l| l.clone())
    }

    /// Record that `table` (at `generation`) maps `ipa` to `pa`; prunes the frame's stale
    /// entries.
    ///
    /// # Locks
    /// Called with the table's lock held; takes the rmap lock (and the tables lock to prune).
    pub(super) fn insert(&self, pa: Pa, table: TableId, ipa: Ipa, generation: u64) {
        let entry = RmapEntry {
            table,
            ipa,
            generation,
        };
        self.with(pa, |list| {
            list.prune(&self.tables);
            list.push(entry);
        });
    }

    /// Forget that `table` (at `generation`) maps `ipa` to `pa`; prunes the frame's stale
    /// entries.
    ///
    /// # Locks
    /// Called with the table's lock held; takes the rmap lock (and the tables lock to prune).
    pub(super) fn remove(&self, pa: Pa, table: TableId, ipa: Ipa, generation: u64) {
        let found = self.with(pa, |list| {
            let found = list.remove(table, ipa, generation);
            list.prune(&self.tables);
            found
        });
        debug_assert!(found, "rmap: {pa:?} not mapped at {ipa:?}");
    }
}
