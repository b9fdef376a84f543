//! Content dedup across VMs: a scanner that merges byte-identical private anon pages into one
//! shared anon (beyond the seed; the idea is Linux's KSM, fitted to the anon/amap model).
//!
//! # What a merge is
//!
//! Two amap slots (in one VM or two) whose anons hold the same bytes are made to point at one
//! anon, whose `an_ref` is raised for the slot it gained; the duplicate anon is freed with its
//! frame. That is exactly the state a fork leaves behind (`amap_copy_range`), so everything after
//! it is the seed's: the shared anon is mapped read-only everywhere (1A, `an_ref > 1`), and the
//! first write in any VM is an ordinary case 1B copy.
//!
//! ```text
//!   before                               after
//!   VM A amap  [ D ]--> frame 7 "xyz"    VM A amap  [ K ]--+
//!   VM B amap  [ K ]--> frame 9 "xyz"    VM B amap  [ K ]--+--> frame 9 "xyz" (read-only in A, B)
//!                                         frame 7: unmapped everywhere, freed to the pool
//! ```
//!
//! Only *private* anons (`an_ref == 1`) are merged away: an anon shared already (after a fork)
//! is reached from amaps we cannot find from it, so its slots cannot all be redirected. The anon
//! kept may be shared already: it just gains a reference. So an anon a fork shares goes into the
//! stable tree when the scan meets it (read-only everywhere, its contents cannot change), and
//! private twins in other VMs merge into it: a clone family and its unrelated look-alikes end
//! up on one frame.
//!
//! # The scan
//!
//! [`Dedup::scan`] looks at `budget` pages per call (the hypervisor calls it on idle CPU time at
//! the rate it likes), resuming where the last call stopped: map after map of those with dedup
//! enabled, entry after entry, slot after slot. A *pass* ends when every enabled map was walked.
//! Each page looked at is resident, not BUSY, wired or loaned, in an entry that is not wired;
//! its contents are hashed (`PhysMem::hash`, the frame's words through `physmem::FrameHasher`; the hasher
//! is a parameter, [`Dedup::with_hasher`], so tests can force collisions). Then, as KSM does:
//!
//! 1. **Stable tree** (anons merged already, by hash): a twin there is merged into at once.
//! 2. **Volatility**: a page is only a candidate once its hash is the same as at its last look
//!    (a whole pass earlier). A page found changed is looked at again after 1, 2, 4, 8 and then
//!    every 16 passes (its *backoff*, reset when it is found unchanged): a page that keeps
//!    changing costs a hash per 16 passes instead of one per pass, and never a compare. KSM
//!    rehashes such pages every pass; the backoff is measured by the unit test
//!    `volatile_pages_back_off` (5 hashes in 20 passes instead of 20).
//! 3. **Unstable tree** (candidates of this pass, by hash; emptied at the end of every pass,
//!    because its pages may change under it): a twin there is merged with the page, and the
//!    pair's anon goes to the stable tree; otherwise the page is added.
//!
//! Hash equality only nominates: nothing is merged unless the bytes are equal, compared under
//! the locks and BUSY tokens the merge holds, with the duplicate unmapped and the kept page
//! write-protected in every VM.
//! A page written after it was hashed (during the scan) is therefore never merged wrongly: the
//! compare sees the write, or the write faults and waits for the merge and then copies (1B).
//!
//! # The merge ([`Dedup`]'s `try_merge`)
//!
//! With MAPS (read) of the duplicate's map, its AMAP, both anons' ANON locks: check the slot
//! still holds the duplicate (`an_ref == 1`, same page) and the kept anon is alive and resident;
//! claim both pages BUSY (refused if BUSY, wired, loaned: skipped, counted `dedup_busy`); remove
//! every mapping of the duplicate and take write permission from every mapping of the kept page
//! (`Uvm::page_protect`) so neither can change; compare. Equal: the slot gets the kept anon
//! (`an_ref + 1`, `merged + 1`), the duplicate loses its reference (`anon_unref_locked`: its
//! BUSY page is RELEASED) and giving its BUSY back frees the frame (`Uvm::unbusy`).
//! Different: both are unbusied; the duplicate is mapped again by its next access and the kept
//! page's write-protection costs a spurious write fault, as a failed fork's protections do.
//!
//! Why the duplicate is unmapped rather than write-protected: each change of a live stage-2
//! mapping costs a broadcast TLB invalidation (and under QEMU's multi-threaded TCG each one
//! stops every vCPU thread). Write-protecting the duplicate and then freeing it took two; its
//! removal is one, and a kept page that is read-only already (a stable anon) costs none.
//!
//! # All-zero pages
//!
//! Zero pages are merged like any other content: the first two found become one anon, the
//! zero node of the stable tree, and every later zero page is merged into it on first sight. So
//! N zero pages cost one frame in the whole engine, a read of one maps the shared zero frame
//! (no fault-time allocation), and a write copies it (1B). The alternative — unmapping zero
//! pages so that the next touch zero-fills — frees even that frame but gives the memory back to
//! the VM on its next *read* (a 2B zero fill), and cannot work where the empty slot would
//! uncover an object page (an image entry) instead of zeroes. Zero merges are counted apart
//! (`dedup_zero`): whether a new stable anon is all zero is checked once, when it is made.
//!
//! # Accounting
//!
//! Counters in the map of each page (`stats.rs`): `dedup_scanned`, `dedup_volatile`,
//! `dedup_merged`, `dedup_zero`, `dedup_collisions`, `dedup_busy`. Each merged reference is
//! remembered on its anon (`AnonState::merged`); when a reference goes (a 1B break, a slot
//! freed) it is taken from the merged ones first, counted `dedup_unmerged` (so with a fork
//! sharing the same anon, the frame is counted as the fork's, never twice), and the frames
//! dedup saves now are `dedup_merged - dedup_unmerged` of the global totals ([`StatsSnapshot::dedup_saved`](crate::stats::StatsSnapshot::dedup_saved)).
//! What is shared now, per VM and by cause, is `vm::account`'s walk ([`crate::account`]); its
//! zero pages are the scanner's [`Dedup::zero_anons`].
//!
//! # Locks
//!
//! DEDUP (the scanner's state) comes before MAPS: it is held for a whole [`Dedup::scan`] call,
//! and taken by nothing else but the configuration calls ([`Dedup::enable_map`], ...) and
//! [`Dedup::zero_anons`]; no fault ever takes it. Under it a page is looked at with MAPS (read), AMAP,
//! ANON, PAGE taken and dropped per page; a merge holds MAPS (read), AMAP, two ANON locks (the
//! duplicate's, then the kept one's: no other path holds two anon locks, so no order between
//! them is needed), then PMAP and PAGE through the reverse map. The longest hold is one 4 KiB
//! compare and two write-protections. No lock is held between pages.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::addr::{Ipa, Pa, PageIdx, Prot, PAGE_SIZE};
use crate::anon::{anon_unref_locked, Anon};
use crate::map::Map;
use crate::page::{Busy, Owner, PageFlags};
use crate::physmem::PhysMem;
use crate::stats::Stats;
use crate::uvm::Uvm;

#[cfg(test)]
mod tests;

/// A content hash of one frame. Equal contents must hash equal; unequal ones may collide
/// (nothing is merged on a hash alone).
pub type Hasher = fn(&dyn PhysMem, Pa) -> u64;

/// The default hasher: the physical-memory back end's own (`PhysMem::hash`).
pub fn frame_hash(mem: &dyn PhysMem, frame: Pa) -> u64 {
    mem.hash(frame)
}

/// Most backoff steps of a page that keeps changing: it is looked at every `2^MAX_BACKOFF`
/// passes at worst.
const MAX_BACKOFF: u8 = 4;
/// Most twins of one hash compared per page (bounds the work a flood of collisions can cause).
const MAX_TRIES: usize = 4;
/// Empty amap slots a scan call may step over per page of its budget.
const EMPTY_PER_PAGE: usize = 64;

/// The content scanner and merger. One per engine; the hypervisor owns it and calls
/// [`Dedup::scan`].
pub struct Dedup {
    uvm: Arc<Uvm>,
    hasher: Hasher,
    on: AtomicBool,
    /// `Scanner::pass`, published after each pass ends: guests poll it (UVMHYP_COUNTER) while
    /// the scanner holds DEDUP for a whole `scan` call, and must not spin on that lock meanwhile.
    passes: AtomicU64,
    state: crate::sync::Mutex<Scanner>,
}

/// What one [`Dedup::scan`] call did.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct ScanReport {
    /// Private resident pages looked at (at most the budget).
    pub visited: usize,
    /// Of those, pages hashed (the others were backing off).
    pub hashed: usize,
    /// Pages merged (frames freed).
    pub merged: usize,
    /// Passes completed during the call.
    pub passes: u64,
}

/// The scanner's state, behind the DEDUP lock.
#[derive(Default)]
struct Scanner {
    maps: Vec<Weak<Map>>,
    /// Where the next call resumes: an index in `maps` and an IPA in that map.
    cursor: (usize, Ipa),
    pass: u64,
    /// Per anon looked at (by address: the `Weak` keeps the address unique while tracked).
    tracks: BTreeMap<usize, Track>,
    stable: BTreeMap<u64, Vec<Node>>,
    /// The anons of `stable` (by address), so a shared anon is added once.
    stable_anons: BTreeSet<usize>,
    unstable: BTreeMap<u64, Vec<Cand>>,
}

/// The last look at one private page.
struct Track {
    anon: Weak<Anon>,
    hash: u64,
    /// First pass at which the page is looked at again.
    next: u64,
    backoff: u8,
}

/// A merged anon of the stable tree.
struct Node {
    anon: Weak<Anon>,
    zero: bool,
}

/// A candidate of the unstable tree: a page unchanged for a pass, hashed this pass.
struct Cand {
    anon: Weak<Anon>,
}

/// A private page found by the walk.
struct Found {
    ipa: Ipa,
    anon: Arc<Anon>,
    page: PageIdx,
    /// Shared already (`an_ref > 1`, copy-on-write after a fork): a stable node, never a
    /// duplicate.
    shared: bool,
}

/// How a merge attempt ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Merge {
    /// Merged; the kept page is all zero (only asked when the kept anon is new to the stable
    /// tree: `zero` is false otherwise).
    Merged { zero: bool },
    /// Hash twins with different bytes.
    Differ,
    /// The duplicate is no longer the private page that was hashed: forget it.
    DupGone,
    /// The kept anon is gone, not resident, or the same anon.
    KeepGone,
    /// A page was BUSY, wired or loaned.
    Busy,
}

impl Dedup {
    /// A scanner over `uvm`'s pages, hashing with [`frame_hash`], on, with no map enabled.
    ///
    /// # Locks
    /// None.
    pub fn new(uvm: &Arc<Uvm>) -> Dedup {
        Dedup::with_hasher(uvm, frame_hash)
    }

    /// [`Dedup::new`] with another content hash (experiments, and tests forcing collisions).
    ///
    /// # Locks
    /// None.
    pub fn with_hasher(uvm: &Arc<Uvm>, hasher: Hasher) -> Dedup {
        Dedup {
            uvm: uvm.clone(),
            hasher,
            on: AtomicBool::new(true),
            passes: AtomicU64::new(0),
            state: crate::sync::Mutex::new(Scanner::default()),
        }
    }

    /// Turn dedup on or off globally: off, [`Dedup::scan`] does nothing (pages merged stay
    /// merged until written).
    ///
    /// # Locks
    /// None (an atomic).
    pub fn set_enabled(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
    }

    /// Scan `map`'s private pages from now on (a no-op if enabled already). The scanner keeps
    /// a weak reference: a map dropped simply leaves the scan.
    ///
    /// # Locks
    /// Takes DEDUP (waits for a running scan call).
    pub fn enable_map(&self, map: &Arc<Map>) {
        let mut s = self.state.lock();
        if !s
            .maps
            .iter()
            .any(|w| core::ptr::eq(w.as_ptr(), Arc::as_ptr(map)))
        {
            s.maps.push(Arc::downgrade(map));
        }
    }

    /// Stop scanning `map`. Its pages merged so far stay merged (a write copies them, 1B).
    ///
    /// # Locks
    /// Takes DEDUP (waits for a running scan call).
    pub fn disable_map(&self, map: &Map) {
        let mut s = self.state.lock();
        if let Some(i) = s.maps.iter().position(|w| core::ptr::eq(w.as_ptr(), map)) {
            s.maps.remove(i);
            if s.cursor.0 > i {
                s.cursor.0 -= 1;
            } else if s.cursor.0 == i {
                s.cursor.1 = Ipa(0);
            }
        }
    }

    /// True when `map` is scanned.
    ///
    /// # Locks
    /// Takes DEDUP.
    pub fn is_enabled(&self, map: &Map) -> bool {
        let s = self.state.lock();
        s.maps.iter().any(|w| core::ptr::eq(w.as_ptr(), map))
    }

    /// Passes completed so far.
    ///
    /// # Locks
    /// Takes none (a counter the scanner publishes under DEDUP).
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::Acquire)
    }

    /// Look at up to `budget` private pages (and step over at most 64 empty or unmergeable
    /// slots per page of budget), merging what is identical; resumes where the last call stopped. Cost: per page
    /// a few lock round trips and a 4 KiB hash (~1 µs), per merge a 4 KiB compare and the
    /// write-protection of both pages' mappings; at most one pass ends per call that visits
    /// nothing.
    ///
    /// # Locks
    /// Entry: nothing held. Takes DEDUP for the call, and per page MAPS (read), AMAP, ANON,
    /// PAGE (see the module documentation). Exit: nothing.
    pub fn scan(&self, budget: usize) -> ScanReport {
        let mut report = ScanReport::default();
        if !self.on.load(Ordering::Relaxed) {
            return report;
        }
        let mut s = self.state.lock();
        let mut empty_left = budget.saturating_mul(EMPTY_PER_PAGE);
        let mut visited_at_pass_start = 0;
        while report.visited < budget && !s.maps.is_empty() {
            let (mi, from) = s.cursor;
            if mi >= s.maps.len() {
                s.end_pass();
                self.passes.store(s.pass, Ordering::Release);
                report.passes += 1;
                if report.visited == visited_at_pass_start {
                    break;
                }
                visited_at_pass_start = report.visited;
                continue;
            }
            let Some(map) = s.maps.get(mi).and_then(Weak::upgrade) else {
                s.maps.remove(mi);
                s.cursor.1 = Ipa(0);
                continue;
            };
            match self.next_page(&map, from, &mut empty_left) {
                Walk::Page(found) => {
                    s.cursor.1 = Ipa(found.ipa.0.saturating_add(PAGE_SIZE));
                    report.visited += 1;
                    self.visit(&mut s, &map, found, &mut report);
                }
                Walk::Stopped(at) => {
                    s.cursor.1 = at;
                    break;
                }
                Walk::End => s.cursor = (mi + 1, Ipa(0)),
            }
        }
        report
    }

    /// The next private page of `map` at or after `from` that may be merged.
    ///
    /// # Locks
    /// Entry: DEDUP. Takes MAPS (read), AMAP, then per occupied slot ANON and PAGE; exit: DEDUP
    /// only.
    fn next_page(&self, map: &Map, from: Ipa, empty_left: &mut usize) -> Walk {
        let g = map.read();
        let first = g.lookup(from).map_or(from.0, |e| e.start.0);
        for e in g.entries.range(first..).map(|(_, e)| e) {
            let Some(aref) = e.aref.as_ref().filter(|_| !e.is_wired()) else {
                continue;
            };
            let st = aref.amap.lock();
            let mut ipa = from.max(e.start);
            while ipa < e.end {
                let anon = e.slot(ipa).and_then(|slot| st.lookup(slot));
                match anon.and_then(|anon| self.mergeable(anon).map(|m| (anon, m))) {
                    Some((anon, (page, shared))) => {
                        return Walk::Page(Found {
                            ipa,
                            anon: anon.clone(),
                            page,
                            shared,
                        })
                    }
                    // An empty slot, or a page that cannot take part (merged already, BUSY, ...).
                    None => {
                        *empty_left = empty_left.saturating_sub(1);
                        if *empty_left == 0 {
                            return Walk::Stopped(ipa);
                        }
                    }
                }
                ipa = Ipa(ipa.0 + PAGE_SIZE);
            }
        }
        Walk::End
    }

    /// The page of `anon`, and whether it is shared already (`an_ref > 1`), if it is resident,
    /// not a merge's anon already (those are in the stable tree) and its page is neither BUSY,
    /// wired, loaned nor being filled (a snapshot: the merge checks again).
    ///
    /// # Locks
    /// Entry and exit: AMAP of a slot holding `anon`. Takes ANON, then PAGE.
    fn mergeable(&self, anon: &Anon) -> Option<(PageIdx, bool)> {
        let a = anon.lock();
        let pg = a.page.filter(|_| a.merged == 0)?;
        let m = self.uvm.page_meta(pg).lock();
        page_mergeable(&m).then_some((pg, a.an_ref > 1))
    }

    /// True when the page of `anon` is still `page` and all zero.
    ///
    /// # Locks
    /// Entry: DEDUP. Takes ANON (which keeps the frame in place). Exit: DEDUP only.
    fn zero_page(&self, anon: &Anon, page: PageIdx) -> bool {
        let a = anon.lock();
        a.page == Some(page) && is_zero(self.uvm.mem().as_ref(), self.uvm.pa(page))
    }

    /// Hash the page of `anon` if it is still `page` (the ANON lock keeps it from being paged
    /// out and its frame reused while it is read).
    ///
    /// # Locks
    /// Entry: DEDUP. Takes ANON. Exit: DEDUP only.
    fn hash(&self, anon: &Anon, page: PageIdx) -> Option<u64> {
        let a = anon.lock();
        (a.page == Some(page)).then(|| (self.hasher)(self.uvm.mem().as_ref(), self.uvm.pa(page)))
    }

    /// One page through the stable tree, the volatility test and the unstable tree (see the
    /// module documentation).
    ///
    /// # Locks
    /// Entry and exit: DEDUP (`s`). Takes what [`Dedup::hash`] and `try_merge` take.
    fn visit(&self, s: &mut Scanner, map: &Map, f: Found, report: &mut ScanReport) {
        let key = Arc::as_ptr(&f.anon) as usize;
        let pass = s.pass;
        if s.tracks.get(&key).is_some_and(|t| pass < t.next) {
            return;
        }
        if f.shared && s.stable_anons.contains(&key) {
            return;
        }
        let Some(hash) = self.hash(&f.anon, f.page) else {
            return;
        };
        report.hashed += 1;
        Stats::bump(&map.stats().dedup_scanned);
        if f.shared {
            // Shared by a fork: read-only everywhere while `an_ref > 1`, so its contents stay;
            // private twins may merge into it.
            let zero = self.zero_page(&f.anon, f.page);
            s.add_stable(hash, &f.anon, zero);
            return;
        }

        // 1. A twin already merged.
        let twins: Vec<(Arc<Anon>, bool)> = s
            .stable
            .get(&hash)
            .into_iter()
            .flatten()
            .filter_map(|n| Some((n.anon.upgrade()?, n.zero)))
            .take(MAX_TRIES)
            .collect();
        for (keep, zero) in twins {
            match self.try_merge(map, &f, &keep, false) {
                Merge::Merged { .. } => {
                    self.merged(map, zero, report);
                    s.tracks.remove(&key);
                    return;
                }
                Merge::DupGone => {
                    s.tracks.remove(&key);
                    return;
                }
                Merge::Differ | Merge::KeepGone | Merge::Busy => {}
            }
        }

        // 2. Changed since the last look: back off.
        match s.tracks.get_mut(&key) {
            None => {
                s.tracks.insert(
                    key,
                    Track {
                        anon: Arc::downgrade(&f.anon),
                        hash,
                        next: pass + 1,
                        backoff: 0,
                    },
                );
                return;
            }
            Some(t) if t.hash != hash => {
                t.hash = hash;
                t.backoff = (t.backoff + 1).min(MAX_BACKOFF);
                t.next = pass + (1u64 << t.backoff);
                Stats::bump(&map.stats().dedup_volatile);
                return;
            }
            Some(t) => {
                t.next = pass + 1;
                t.backoff = 0;
            }
        }

        // 3. A twin among this pass's candidates.
        let cands: Vec<Arc<Anon>> = s
            .unstable
            .get(&hash)
            .into_iter()
            .flatten()
            .filter_map(|c| c.anon.upgrade())
            .take(MAX_TRIES)
            .collect();
        if cands.iter().any(|c| Arc::ptr_eq(c, &f.anon)) {
            return;
        }
        for keep in cands {
            match self.try_merge(map, &f, &keep, true) {
                Merge::Merged { zero } => {
                    self.merged(map, zero, report);
                    s.tracks.remove(&key);
                    s.tracks.remove(&(Arc::as_ptr(&keep) as usize));
                    if let Some(v) = s.unstable.get_mut(&hash) {
                        v.retain(|c| !core::ptr::eq(c.anon.as_ptr(), Arc::as_ptr(&keep)));
                    }
                    s.add_stable(hash, &keep, zero);
                    return;
                }
                Merge::DupGone => {
                    s.tracks.remove(&key);
                    return;
                }
                Merge::Differ | Merge::KeepGone | Merge::Busy => {}
            }
        }
        s.unstable.entry(hash).or_default().push(Cand {
            anon: Arc::downgrade(&f.anon),
        });
    }

    /// Count a merge of one of `map`'s pages.
    ///
    /// # Locks
    /// None taken (atomic counters).
    fn merged(&self, map: &Map, zero: bool, report: &mut ScanReport) {
        report.merged += 1;
        Stats::bump(&map.stats().dedup_merged);
        if zero {
            Stats::bump(&map.stats().dedup_zero);
        }
    }

    /// Merge the page found at `f.ipa` of `map` into `keep` if their bytes are equal (see the
    /// module documentation). `ask_zero`: also tell whether the page is all zero (a new stable
    /// anon).
    ///
    /// # Locks
    /// Entry: DEDUP. Takes MAPS (read), AMAP, the duplicate's ANON, the kept ANON, then PMAP,
    /// PAGE and PAGE QUEUES (write-protection, compare, free). Exit: DEDUP only, on every path.
    fn try_merge(&self, map: &Map, f: &Found, keep: &Arc<Anon>, ask_zero: bool) -> Merge {
        let uvm = &*self.uvm;
        if Arc::ptr_eq(keep, &f.anon) {
            return Merge::KeepGone;
        }
        let g = map.read();
        let Some(e) = g.lookup(f.ipa).filter(|e| !e.is_wired()) else {
            return Merge::DupGone;
        };
        let (Some(aref), Some(slot)) = (e.aref.as_ref(), e.slot(f.ipa)) else {
            return Merge::DupGone;
        };
        let mut st = aref.amap.lock();
        if !st.lookup(slot).is_some_and(|a| Arc::ptr_eq(a, &f.anon)) {
            return Merge::DupGone;
        }
        let mut d = f.anon.lock();
        if d.an_ref != 1 || d.page != Some(f.page) {
            return Merge::DupGone;
        }
        let mut k = keep.lock();
        let Some(kpg) = k.page.filter(|_| k.an_ref > 0) else {
            return Merge::KeepGone;
        };
        let Some(dbusy) = self.claim(f.page) else {
            Stats::bump(&map.stats().dedup_busy);
            return Merge::Busy;
        };
        let Some(kbusy) = self.claim(kpg) else {
            uvm.unbusy(dbusy);
            Stats::bump(&map.stats().dedup_busy);
            return Merge::Busy;
        };
        // Neither page can change now: no guest mapping may write (the duplicate has none left,
        // the kept page is read-only in every VM), no fault can enter one (both ANON locks), no
        // hypervisor copy can start (both BUSY).
        uvm.page_protect(f.page, Prot::NONE);
        uvm.page_protect(kpg, Prot::ALL - Prot::WRITE);
        if !uvm.mem().same(uvm.pa(f.page), uvm.pa(kpg)) {
            uvm.unbusy(kbusy);
            uvm.unbusy(dbusy);
            Stats::bump(&map.stats().dedup_collisions);
            return Merge::Differ;
        }
        let zero = ask_zero && is_zero(uvm.mem().as_ref(), uvm.pa(kpg));
        let replaced = st.add(slot, keep.clone());
        debug_assert!(replaced
            .as_ref()
            .is_some_and(|o| o.as_ref().is_some_and(|o| Arc::ptr_eq(o, &f.anon))));
        k.an_ref = k.an_ref.saturating_add(1);
        k.merged = k.merged.saturating_add(1);
        // The duplicate's only reference goes: its BUSY page is RELEASED to us, and giving the
        // BUSY back removes its last (read-only) mappings in every VM and frees the frame.
        anon_unref_locked(uvm, &mut d);
        uvm.unbusy(dbusy);
        uvm.unbusy(kbusy);
        drop((k, d, st));
        drop(replaced);
        Merge::Merged { zero }
    }

    /// Make `pg` BUSY for a merge if it may be merged (see [`page_mergeable`]).
    ///
    /// # Locks
    /// Entry: the owner's ANON lock. Takes and drops PAGE.
    fn claim(&self, pg: PageIdx) -> Option<Busy> {
        let mut m = self.uvm.page_meta(pg).lock();
        if !page_mergeable(&m) {
            return None;
        }
        Busy::claim(&mut m, pg)
    }

    /// The zero anons of the stable tree (all-zero content, merged), for [`crate::account`]:
    /// held, so that their addresses stay theirs while an account runs.
    ///
    /// # Locks
    /// Takes DEDUP alone. Exit: nothing.
    pub fn zero_anons(&self) -> crate::account::ZeroAnons {
        let s = self.state.lock();
        let anons = s.stable.values().flatten().filter(|n| n.zero);
        crate::account::ZeroAnons::new(anons.filter_map(|n| n.anon.upgrade()).collect())
    }
}

impl Scanner {
    /// End a pass: the unstable tree is emptied (its pages may have changed), and the stable
    /// tree and the tracks forget anons that are gone or no longer shared.
    ///
    /// # Locks
    /// Entry and exit: DEDUP (`self`). Takes each stable anon's ANON lock in turn.
    fn end_pass(&mut self) {
        self.pass += 1;
        self.cursor = (0, Ipa(0));
        self.unstable.clear();
        self.tracks.retain(|_, t| t.anon.strong_count() > 0);
        self.stable.retain(|_, nodes| {
            nodes.retain(|n| n.anon.upgrade().is_some_and(|a| a.lock().an_ref > 1));
            !nodes.is_empty()
        });
        self.stable_anons = self
            .stable
            .values()
            .flatten()
            .map(|n| n.anon.as_ptr() as usize)
            .collect();
    }

    /// Put `anon` (of contents `hash`) into the stable tree.
    ///
    /// # Locks
    /// Entry and exit: DEDUP (`self`); takes nothing.
    fn add_stable(&mut self, hash: u64, anon: &Arc<Anon>, zero: bool) {
        if self.stable_anons.insert(Arc::as_ptr(anon) as usize) {
            self.stable.entry(hash).or_default().push(Node {
                anon: Arc::downgrade(anon),
                zero,
            });
        }
    }
}

/// Where the walk of one map stopped.
enum Walk {
    Page(Found),
    /// The empty-slot allowance ran out at this IPA.
    Stopped(Ipa),
    /// No page left in the map.
    End,
}

/// True when a page may take part in a merge: an anon's own page (not an object's lent one, not
/// lent out), not wired, not BUSY (being filled, copied or paged), not released.
///
/// # Locks
/// Entry and exit: the page's PAGE lock (`m`); takes nothing.
fn page_mergeable(m: &crate::page::PageMeta) -> bool {
    m.wire_count == 0
        && m.loan_count == 0
        && matches!(m.owner, Owner::Anon(_))
        && !m
            .flags
            .intersects(PageFlags::BUSY | PageFlags::RELEASED | PageFlags::FAKE)
}

/// True when the frame holds only zero bytes.
///
/// # Locks
/// None; the caller keeps the frame in place (BUSY).
fn is_zero(mem: &dyn PhysMem, frame: Pa) -> bool {
    let mut buf = [0u8; 512];
    (0..PAGE_SIZE / 512).all(|i| {
        mem.read(Pa(frame.0 + i * 512), &mut buf);
        buf.iter().all(|&b| b == 0)
    })
}
