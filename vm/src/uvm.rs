//! `Uvm`: the engine's global context (the seed's `uvm` + `uvmexp` globals, as one value).
//!
//! It owns the page pool (the frames the hypervisor handed over, with per-frame metadata), the page
//! queues, the physical-memory and TLB back ends, the reverse map, the optional swap device and
//! the engine's own counters (and, through the maps it registered, everyone's: [`Uvm::stats`]).
//! Nothing here is a hidden singleton: several `Uvm`s can coexist (the host tests make one per
//! test).
//!
//! It also hands frames to the stage-2 tables ([`TableFrames`]), from the same pool.
//!
//! # Retired table frames
//! A stage-2 table cleared whole (fork) hands its table frames back as one set
//! ([`TableFrames::retire_tables`]), kept as it is on the page queues' retired list: O(1), where
//! freeing each frame would make fork O(tables). The retired frames count as free
//! ([`Uvm::free_pages`]) and are drained lazily: `alloc_table` reuses them first (re-zeroed),
//! `alloc_page` takes one when the free queue is empty, and a root allocation that finds no
//! contiguous pair returns them all to the free queue and searches again. So no allocation
//! reports a shortage while a retired frame is left, and nothing is reused before the
//! invalidation that made it unreachable (that ran before `retire_tables`).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::Range;

use crate::addr::{Pa, PageIdx, Prot, PAGE_SHIFT, PAGE_SIZE};
use crate::anon::SwapSlot;
use crate::page::{Busy, Owner, PageFlags, PageInfo, PageMeta, Queue, Queues};
use crate::physmem::PhysMem;
use crate::pmap::{RetiredTables, Rmap, TableFrames, Tlb, TlbBatch};
use crate::stats::{Stats, StatsSnapshot};
use crate::swap::{Swap, SwapDevice};

/// The global context of the engine.
pub struct Uvm {
    mem: Arc<dyn PhysMem>,
    tlb: Arc<dyn Tlb>,
    rmap: Arc<Rmap>,
    base: Pa,
    pages: Vec<crate::sync::Mutex<PageMeta>>,
    /// Stands in for the metadata of an index outside the pool, so a bad index cannot panic.
    dummy: crate::sync::Mutex<PageMeta>,
    queues: crate::sync::Mutex<Queues>,
    swap: crate::sync::RwLock<Option<Arc<Swap>>>,
    reserve: core::sync::atomic::AtomicUsize,
    /// The fault counters of maps that are gone (and dedup's unmerges).
    stats: Stats,
    /// The pagedaemon's counters (page-outs, scans, frees).
    daemon: Stats,
    /// The counters of every live map (see [`Uvm::stats`]).
    map_stats: crate::sync::Mutex<Vec<Arc<Stats>>>,
    /// Told when a WANTED page is unbusied ([`Uvm::set_waker`]).
    waker: crate::sync::RwLock<Option<Arc<dyn crate::page::PageWaker>>>,
    /// Told of page-outs, page-ins, bad slots and scans ([`Uvm::set_swap_events`]).
    swap_events: crate::sync::RwLock<Option<Arc<dyn crate::swapevents::SwapEvents>>>,
    /// Readahead windows handed to another CPU ([`Uvm::set_readahead_offload`]).
    pub(crate) readaheads: crate::fault::ReadaheadQueue,
    /// The VMs' claims on the pool ([`crate::share`]).
    shares: crate::share::Shares,
}

impl Uvm {
    /// A context whose page pool is every whole frame inside `pool`.
    ///
    /// # Locks
    /// None: the context is unreachable by anyone else until returned.
    pub fn new(mem: Arc<dyn PhysMem>, tlb: Arc<dyn Tlb>, pool: Range<Pa>) -> Arc<Uvm> {
        let start = pool.start.0.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let end = pool.end.0 & !(PAGE_SIZE - 1);
        let n = if end > start {
            (end - start) >> PAGE_SHIFT
        } else {
            0
        };
        let n = u32::try_from(n).unwrap_or(u32::MAX - 1).min(u32::MAX - 1);
        Arc::new(Uvm {
            mem,
            tlb,
            rmap: Rmap::for_frames(Pa(start), n as usize),
            base: Pa(start),
            pages: (0..n)
                .map(|_| crate::sync::Mutex::new(PageMeta::default()))
                .collect(),
            dummy: crate::sync::Mutex::new(PageMeta::default()),
            queues: crate::sync::Mutex::new(Queues::new(n)),
            swap: crate::sync::RwLock::new(None),
            reserve: core::sync::atomic::AtomicUsize::new(0),
            stats: Stats::default(),
            daemon: Stats::default(),
            map_stats: crate::sync::Mutex::new(Vec::new()),
            waker: crate::sync::RwLock::new(None),
            swap_events: crate::sync::RwLock::new(None),
            readaheads: crate::fault::ReadaheadQueue::default(),
            shares: crate::share::Shares::default(),
        })
    }

    /// Global counters: the engine's own (pagedaemon) plus every VM's, live or gone.
    ///
    /// A fault counts only in its map's counters, once: summing here instead of bumping a global
    /// copy of each counter halves the atomic read-modify-writes a fault does for statistics.
    ///
    /// # Locks
    /// Takes the map-statistics list lock (a leaf lock).
    pub fn stats(&self) -> StatsSnapshot {
        let maps = self.map_stats.lock();
        maps.iter().fold(
            self.stats.snapshot().add(&self.daemon.snapshot()),
            |sum, m| sum.add(&m.snapshot()),
        )
    }

    /// The pagedaemon's counters alone (they count in no VM's: a page-out serves the pool).
    ///
    /// # Locks
    /// None (relaxed atomics).
    pub fn daemon_stats(&self) -> StatsSnapshot {
        self.daemon.snapshot()
    }

    /// The pagedaemon's live counters.
    ///
    /// # Locks
    /// None.
    pub(crate) fn daemon(&self) -> &Stats {
        &self.daemon
    }

    /// The engine's own counters (the pagedaemon's; see [`Uvm::stats`] for the totals).
    ///
    /// # Locks
    /// None.
    pub(crate) fn own_stats(&self) -> &Stats {
        &self.stats
    }

    /// Count `stats` (a new map's) in [`Uvm::stats`] from now on.
    ///
    /// # Locks
    /// Takes the map-statistics list lock (a leaf lock).
    pub(crate) fn register_stats(&self, stats: &Arc<Stats>) {
        self.map_stats.lock().push(stats.clone());
    }

    /// A map is going away: keep its counts in the totals and forget its counters.
    ///
    /// # Locks
    /// Takes the map-statistics list lock (a leaf lock); the fold and the removal are one step
    /// under it, so [`Uvm::stats`] never counts the map twice or not at all.
    pub(crate) fn retire_stats(&self, stats: &Arc<Stats>) {
        let mut maps = self.map_stats.lock();
        if let Some(i) = maps.iter().position(|m| Arc::ptr_eq(m, stats)) {
            maps.swap_remove(i);
            self.stats.absorb(&stats.snapshot());
        }
    }

    /// The physical-memory back end.
    ///
    /// # Locks
    /// None.
    pub fn mem(&self) -> &Arc<dyn PhysMem> {
        &self.mem
    }

    /// The TLB back end.
    ///
    /// # Locks
    /// None.
    pub fn tlb(&self) -> &Arc<dyn Tlb> {
        &self.tlb
    }

    /// The reverse map shared by every VM's stage-2 table.
    ///
    /// # Locks
    /// None.
    pub fn rmap(&self) -> &Arc<Rmap> {
        &self.rmap
    }

    /// Attach (or replace) the swap device. Slots of a replaced device are forgotten: only call
    /// this before anything was paged out.
    ///
    /// # Locks
    /// Takes the swap configuration lock for writing (a leaf); no fault may be running.
    pub fn set_swap(&self, dev: Arc<dyn SwapDevice>) {
        *self.swap.write() = Some(Arc::new(Swap::new(dev)));
    }

    /// Who to tell when a page someone waited for is unbusied (the hypervisor's parking).
    ///
    /// # Locks
    /// Takes the waker lock for writing (a leaf).
    pub fn set_waker(&self, waker: Arc<dyn crate::page::PageWaker>) {
        *self.waker.write() = Some(waker);
    }

    /// Who to tell of the pagedaemon's and swap-in's events (the hypervisor's trace).
    ///
    /// # Locks
    /// Takes the listener lock for writing (a leaf).
    pub fn set_swap_events(&self, events: Arc<dyn crate::swapevents::SwapEvents>) {
        *self.swap_events.write() = Some(events);
    }

    /// Whether a listener is installed: the callers skip the reverse-map lookup that names a
    /// page without one.
    ///
    /// # Locks
    /// Takes the listener lock for reading (a leaf); the caller may hold any engine lock.
    pub(crate) fn swap_events_on(&self) -> bool {
        self.swap_events.read().is_some()
    }

    /// Tell the listener, if any, of `event`.
    ///
    /// # Locks
    /// Call with no engine lock held (see [`crate::swapevents::SwapEvents`]); takes the
    /// listener lock for reading (a leaf) around the call.
    pub(crate) fn swap_event(&self, event: crate::swapevents::SwapEvent) {
        let events = self.swap_events.read().clone();
        if let Some(e) = events {
            e.swap_event(event);
        }
    }

    /// Tell the waker that `pg`, which someone WANTED, is no longer BUSY.
    ///
    /// # Locks
    /// Call with no engine lock held; takes the waker lock for reading (a leaf) around the call.
    pub(crate) fn wake_waiters(&self, pg: PageIdx) {
        let waker = self.waker.read().clone();
        if let Some(w) = waker {
            w.unbusied(self.pa(pg));
        }
    }

    /// The VMs' claims on the pool: empty (first come, first served) until VMs join.
    ///
    /// # Locks
    /// None.
    pub fn shares(&self) -> &crate::share::Shares {
        &self.shares
    }

    /// The swap device and its slot map, if configured.
    ///
    /// # Locks
    /// Takes the swap configuration lock for reading (a leaf); anything above it may be held.
    pub fn swap(&self) -> Option<Arc<Swap>> {
        self.swap.read().clone()
    }

    /// Keep `frames` free frames for stage-2 tables: guest pages are not allocated below it.
    ///
    /// # Locks
    /// None (an atomic).
    pub fn set_reserve(&self, frames: usize) {
        self.reserve
            .store(frames, core::sync::atomic::Ordering::Relaxed);
    }

    /// Number of frames in the pool.
    ///
    /// # Locks
    /// None.
    pub fn total_pages(&self) -> usize {
        self.pages.len()
    }

    /// (free, active, inactive) queue lengths; free counts the retired table frames (see the
    /// module documentation).
    ///
    /// # Locks
    /// Takes PAGE QUEUES; the caller may hold PAGE, not PAGE QUEUES.
    pub fn queue_counts(&self) -> (usize, usize, usize) {
        let q = self.queues.lock();
        (
            q.free_count() + q.retired_count(),
            q.active_count(),
            q.inactive_count(),
        )
    }

    /// Number of free frames: the free queue and the retired table frames, which any
    /// allocation takes before it fails (see the module documentation).
    ///
    /// # Locks
    /// Takes PAGE QUEUES; the caller may hold PAGE, not PAGE QUEUES.
    pub fn free_pages(&self) -> usize {
        let q = self.queues.lock();
        q.free_count() + q.retired_count()
    }

    /// Number of retired table frames not yet reused or freed (counted in `free_pages`).
    ///
    /// # Locks
    /// Takes PAGE QUEUES; the caller may hold PAGE, not PAGE QUEUES.
    pub fn retired_tables(&self) -> usize {
        self.queues.lock().retired_count()
    }

    /// Return every retired table frame to the free queue.
    ///
    /// # Locks
    /// Takes PAGE QUEUES, then PAGE and PAGE QUEUES (not nested) per frame; the caller holds
    /// neither.
    fn drain_retired(&self) {
        loop {
            let Some(frame) = self.queues.lock().pop_retired() else {
                return;
            };
            self.free_table(frame);
        }
    }

    /// Physical address of a pool frame.
    ///
    /// # Locks
    /// None.
    pub fn pa(&self, pg: PageIdx) -> Pa {
        self.base.add_pages(u64::from(pg.0))
    }

    /// The pool frame at `pa`, if `pa` is inside the pool.
    ///
    /// # Locks
    /// None.
    pub fn page_at(&self, pa: Pa) -> Option<PageIdx> {
        let off = pa.0.checked_sub(self.base.0)?;
        let i = u32::try_from(off >> PAGE_SHIFT).ok()?;
        ((i as usize) < self.pages.len()).then_some(PageIdx(i))
    }

    /// A snapshot of one page's metadata and queue.
    ///
    /// # Locks
    /// Takes PAGE, then PAGE QUEUES (not nested); the caller holds neither.
    pub fn page_info(&self, pg: PageIdx) -> PageInfo {
        let (flags, owner, loan_count, wire_count) = {
            let m = self.page_meta(pg).lock();
            (m.flags, m.owner_kind(), m.loan_count, m.wire_count)
        };
        PageInfo {
            flags,
            owner,
            loan_count,
            wire_count,
            queue: self.queues.lock().queue_of(pg),
        }
    }

    /// The metadata lock of a frame (PAGE: a leaf, only PAGE QUEUES may be taken inside).
    ///
    /// # Locks
    /// Takes nothing; the caller locks the returned PAGE lock, holding no PAGE or PAGE QUEUES.
    pub(crate) fn page_meta(&self, pg: PageIdx) -> &crate::sync::Mutex<PageMeta> {
        self.pages.get(pg.0 as usize).unwrap_or(&self.dummy)
    }

    /// True when the frame's flags contain `flag` (a snapshot: only the owner's lock or BUSY keep
    /// it true afterwards).
    ///
    /// # Locks
    /// Takes and drops PAGE; the caller holds no PAGE or PAGE QUEUES.
    pub(crate) fn page_has(&self, pg: PageIdx, flag: crate::page::PageFlags) -> bool {
        self.page_meta(pg).lock().flags.contains(flag)
    }

    /// Allocate a frame for `owner` (the seed's `uvm_pagealloc`): BUSY for the caller (the token
    /// returned), and zeroed when `zero` (otherwise FAKE: its contents are garbage until
    /// filled). `None` when only the reserve is left.
    ///
    /// The page goes to the tail of the active queue in the PAGE QUEUES round trip that takes it
    /// off the free queue, so a fault's new page needs no second trip to be activated. The
    /// pagedaemon leaves it alone meanwhile: BUSY pages are neither taken nor deactivated, and in
    /// the instant before its metadata below is written its owner still reads `Free` (`Table`
    /// for a retired table frame), which `deactivate` skips as well. Wiring takes it off the
    /// queues again (`Uvm::wire`).
    ///
    /// # Locks
    /// Takes PAGE QUEUES then PAGE; any lock above them may be held.
    pub(crate) fn alloc_page(&self, owner: Owner, zero: bool) -> Option<Busy> {
        let reserve = self.reserve.load(core::sync::atomic::Ordering::Relaxed);
        let pg = {
            let mut q = self.queues.lock();
            if q.free_count() + q.retired_count() <= reserve {
                return None;
            }
            // A retired table frame only when the free queue is empty (the meta is rewritten
            // below, whoever owned the frame).
            let pg = match q.pop_free() {
                Some(pg) => pg,
                None => self.page_at(q.pop_retired()?)?,
            };
            q.move_to(pg, Queue::Active);
            pg
        };
        if zero {
            self.mem.zero(self.pa(pg));
        }
        let mut m = self.page_meta(pg).lock();
        *m = PageMeta {
            flags: if zero {
                PageFlags::empty()
            } else {
                PageFlags::FAKE
            },
            owner,
            ..PageMeta::default()
        };
        // Fresh metadata: never BUSY, so the claim succeeds.
        Busy::claim(&mut m, pg)
    }

    /// Make `pg` BUSY for the caller unless someone holds it BUSY already (`None`).
    ///
    /// # Locks
    /// Takes and drops PAGE; the caller holds no PAGE or PAGE QUEUES lock.
    pub(crate) fn try_busy(&self, pg: PageIdx) -> Option<Busy> {
        Busy::claim(&mut self.page_meta(pg).lock(), pg)
    }

    /// True when an allocation can succeed now: a stage-2 table frame (`table`), or a guest page
    /// (`alloc_page`, which leaves the reserve alone).
    ///
    /// # Locks
    /// Takes PAGE QUEUES (to count); any lock above it may be held.
    pub fn can_allocate(&self, table: bool) -> bool {
        let reserve = if table {
            0
        } else {
            self.reserve.load(core::sync::atomic::Ordering::Relaxed)
        };
        self.free_pages() > reserve
    }

    /// Return a page the caller holds BUSY to the free queue. The caller made sure nothing maps
    /// it. The swap slot a RELEASED page carries (`PageMeta::released_swslot`, see `anon.rs`) is
    /// freed with it: the caller is the page's BUSY holder, done with its I/O.
    ///
    /// # Locks
    /// Takes PAGE, then PAGE QUEUES, then the swap map's lock (not nested); the caller holds
    /// none of them.
    pub(crate) fn free_page(&self, busy: Busy) {
        self.free_frame(busy.page());
    }

    /// Return any frame (a page, a table frame) to the free queue, with the swap slot it carries.
    ///
    /// # Locks
    /// As [`Uvm::free_page`].
    fn free_frame(&self, pg: PageIdx) {
        let old = core::mem::take(&mut *self.page_meta(pg).lock());
        self.queues.lock().push_free(pg);
        if let SwapSlot::Slot(slot) = old.released_swslot {
            self.swap_free(slot);
        }
        // Freed while BUSY and WANTED (a released page): whoever waited must look again.
        if old.flags.contains(PageFlags::WANTED) {
            self.wake_waiters(pg);
        }
    }

    /// The I/O on RELEASED page `pg` failed: mark the swap slot it carries (see
    /// [`Uvm::free_page`]) bad instead of letting it be freed with the page. Returns that slot,
    /// if there was one.
    ///
    /// # Locks
    /// Takes PAGE, then the swap map's lock (not nested); the caller holds neither. The caller
    /// holds `pg` BUSY.
    pub(crate) fn mark_released_slot_bad(&self, pg: PageIdx) -> Option<u32> {
        let slot = core::mem::take(&mut self.page_meta(pg).lock().released_swslot);
        let SwapSlot::Slot(s) = slot else { return None };
        self.swap_mark_bad(s);
        Some(s)
    }

    /// Clear BUSY (and WANTED, FAKE) on a page the caller made BUSY (its token). A page RELEASED
    /// meanwhile is freed instead; returns true in that case. (The seed wakes WANTED sleepers
    /// here; our waiters restarted and will simply re-fault.)
    ///
    /// # Locks
    /// Takes PAGE; for a RELEASED page then PMAP locks (through the reverse map, to remove
    /// every mapping), PAGE and PAGE QUEUES: the caller must hold no PMAP-or-later lock.
    pub(crate) fn unbusy(&self, busy: Busy) -> bool {
        self.finish_page(busy, false, false)
    }

    /// The end of a fault for the page it holds BUSY, under one PAGE lock (the fault path would
    /// otherwise take it three times in a row): clear CLEAN when `dirty`, move the page to the
    /// tail of the active queue when `activate` (as [`Uvm::activate`]), then clear BUSY (as
    /// [`Uvm::unbusy`], freeing a page RELEASED meanwhile; returns true in that case).
    ///
    /// # Locks
    /// Takes PAGE, then PAGE QUEUES inside it; for a RELEASED page then PMAP, PAGE and PAGE
    /// QUEUES: the caller must hold no PMAP-or-later lock.
    pub(crate) fn finish_page(&self, busy: Busy, dirty: bool, activate: bool) -> bool {
        let pg = busy.page();
        let released = {
            let mut m = self.page_meta(pg).lock();
            self.settle(&mut m, pg, dirty, activate);
            debug_assert!(
                m.flags.contains(PageFlags::BUSY),
                "a token means BUSY is set"
            );
            let released = m.flags.contains(PageFlags::RELEASED);
            let wanted = m.flags.contains(PageFlags::WANTED);
            m.flags
                .remove(PageFlags::BUSY | PageFlags::WANTED | PageFlags::FAKE);
            (released, wanted)
        };
        let (released, wanted) = released;
        if released {
            self.page_protect(pg, Prot::NONE);
            self.free_page(busy);
        }
        if wanted {
            self.wake_waiters(pg);
        }
        released
    }

    /// The end of a fault for a page that its owner's lock kept in place, not BUSY (case 1A):
    /// as [`Uvm::finish_page`] but BUSY is left alone, whoever holds it (a `copy_in` may).
    ///
    /// # Locks
    /// Entry and exit: the owner's lock (ANON) held. Takes PAGE, then PAGE QUEUES inside it.
    pub(crate) fn finish_owned_page(&self, pg: PageIdx, dirty: bool, activate: bool) {
        let mut m = self.page_meta(pg).lock();
        self.settle(&mut m, pg, dirty, activate);
    }

    /// The common part of the fault's end: clear CLEAN when `dirty`; activate when `activate`
    /// (pages on no paging queue by nature stay off).
    ///
    /// # Locks
    /// Entry and exit: `pg`'s PAGE lock held (`m`). Takes PAGE QUEUES inside it.
    fn settle(&self, m: &mut PageMeta, pg: PageIdx, dirty: bool, activate: bool) {
        if dirty {
            m.flags.remove(PageFlags::CLEAN);
        }
        if activate && m.wire_count == 0 && !matches!(m.owner, Owner::Free | Owner::Table) {
            self.queues.lock().move_to(pg, Queue::Active);
        }
    }

    /// Clear CLEAN: the page is (or may become) different from its backing store. Stage-2 has no
    /// modified bit we track, so a writable mapping counts as a modification (the seed asks
    /// `pmap_clear_modify` instead).
    ///
    /// # Locks
    /// Takes PAGE; no PAGE or PAGE QUEUES lock may be held.
    pub(crate) fn mark_dirty(&self, pg: PageIdx) {
        self.page_meta(pg).lock().flags.remove(PageFlags::CLEAN);
    }

    /// Put a page at the tail of the active queue (wired pages stay off the queues).
    ///
    /// # Locks
    /// Takes PAGE, then PAGE QUEUES inside it; no PAGE or PAGE QUEUES lock may be held.
    pub(crate) fn activate(&self, pg: PageIdx) {
        let _ = self.requeue(pg, Queue::Active);
    }

    /// Deactivate a page (the seed's `uvm_pagedeactivate`): put it at the tail of the inactive
    /// queue and clear its reference (every mapping's access flag, `pmap_clear_reference`), so
    /// the clock frees it unless it is used again meanwhile. Wired pages stay off the queues,
    /// BUSY ones where they are (their reference untouched); true when it moved. Used for the
    /// pages behind a sequential fault (`uvmfault_anonflush`, an object's `put` with
    /// DEACTIVATE); the pagedaemon's refill keeps the reference ([`Uvm::age`]).
    ///
    /// # Locks
    /// Takes PAGE, then PAGE QUEUES inside it, then (neither held) PMAP locks through the
    /// reverse map: no PMAP-or-later lock may be held. The caller holds the page's owner
    /// (ANON or OBJECT lock), so the page cannot be freed and reused between the two steps.
    pub(crate) fn deactivate(&self, pg: PageIdx) -> bool {
        let moved = self.requeue(pg, Queue::Inactive);
        if moved {
            let _ = self.rmap.clear_reference(self.pa(pg));
        }
        moved
    }

    /// Move a page to the tail of the inactive queue keeping its reference: the pagedaemon's
    /// refill, whose clock scan follows at once and gives a referenced page its second chance
    /// (in the seed the scan comes later and sees the references made after deactivation; here
    /// the reference made before is what the scan can see). Wired and BUSY pages as
    /// [`Uvm::deactivate`]; true when it moved.
    ///
    /// # Locks
    /// As [`Uvm::activate`].
    pub(crate) fn age(&self, pg: PageIdx) -> bool {
        self.requeue(pg, Queue::Inactive)
    }

    /// Activate a page that is on no queue (the seed's `uvm_pageenqueue`).
    ///
    /// # Locks
    /// As [`Uvm::activate`].
    pub(crate) fn enqueue(&self, pg: PageIdx) {
        let m = self.page_meta(pg).lock();
        if m.wire_count == 0 {
            let mut q = self.queues.lock();
            if q.queue_of(pg) == Queue::None {
                q.move_to(pg, Queue::Active);
            }
        }
    }

    /// Take a page off the paging queues.
    ///
    /// # Locks
    /// Takes PAGE QUEUES; the caller may hold PAGE.
    pub(crate) fn dequeue(&self, pg: PageIdx) {
        self.queues.lock().dequeue(pg);
    }

    /// Move a page to the tail of `to`; true when it was moved. Wired, free and table frames
    /// stay where they are, and so does a BUSY page asked to go inactive: it is being filled or
    /// mapped (a new page waits on the active queue, see `alloc_page`), not idle.
    fn requeue(&self, pg: PageIdx, to: Queue) -> bool {
        let m = self.page_meta(pg).lock();
        let busy_to_inactive = to == Queue::Inactive && m.flags.contains(PageFlags::BUSY);
        if m.wire_count == 0 && !matches!(m.owner, Owner::Free | Owner::Table) && !busy_to_inactive
        {
            self.queues.lock().move_to(pg, to);
            return true;
        }
        false
    }

    /// Wire a page (the seed's `uvm_pagewire`): off the queues, never paged out.
    ///
    /// # Locks
    /// Takes PAGE, then PAGE QUEUES inside it; no PAGE or PAGE QUEUES lock may be held.
    pub(crate) fn wire(&self, pg: PageIdx) {
        let mut m = self.page_meta(pg).lock();
        m.wire_count = m.wire_count.saturating_add(1);
        self.queues.lock().dequeue(pg);
    }

    /// Unwire a page (the seed's `uvm_pageunwire`): back on the active queue at zero.
    ///
    /// # Locks
    /// As [`Uvm::wire`].
    pub(crate) fn unwire(&self, pg: PageIdx) {
        let mut m = self.page_meta(pg).lock();
        m.wire_count = m.wire_count.saturating_sub(1);
        if m.wire_count == 0 && !matches!(m.owner, Owner::Free | Owner::Table) {
            self.queues.lock().move_to(pg, Queue::Active);
        }
    }

    /// Lower every mapping of a page, in every VM, to `prot` (NONE removes them). Page wiring
    /// follows wired mappings (one wiring per wired stage-2 leaf, see `fault::wire`): each wired
    /// mapping removed here takes its wiring off the page.
    ///
    /// # Locks
    /// No PMAP-or-later lock may be held (see `Rmap::page_protect`). Takes PMAP locks, then PAGE
    /// and PAGE QUEUES.
    pub(crate) fn page_protect(&self, pg: PageIdx, prot: Prot) {
        for _ in 0..self.rmap.page_protect_wired(self.pa(pg), prot) {
            self.unwire(pg);
        }
    }

    /// [`Uvm::page_protect`], the invalidation of each mapping it removes left to `batch`
    /// (`pmap/batch.rs`): the caller holds the page (BUSY) and flushes the batch before the
    /// frame is written out, freed or reused.
    ///
    /// # Locks
    /// As [`Uvm::page_protect`].
    pub(crate) fn page_protect_batched(&self, pg: PageIdx, prot: Prot, batch: &mut TlbBatch) {
        for _ in 0..self.rmap.page_protect_batched(self.pa(pg), prot, batch) {
            self.unwire(pg);
        }
    }

    /// Up to `max` pages from the oldest end of a queue.
    ///
    /// # Locks
    /// Takes PAGE QUEUES; the caller holds neither PAGE nor PAGE QUEUES.
    pub(crate) fn oldest(&self, q: Queue, max: usize) -> Vec<PageIdx> {
        self.queues.lock().oldest(q, max)
    }

    /// Give a swap slot back.
    ///
    /// # Locks
    /// Takes the swap map's lock (a leaf); the caller may hold anything above it.
    pub(crate) fn swap_free(&self, slot: u32) {
        if let Some(s) = self.swap() {
            s.map.lock().free(slot);
        }
    }

    /// Mark a swap slot bad.
    ///
    /// # Locks
    /// As [`Uvm::swap_free`].
    pub(crate) fn swap_mark_bad(&self, slot: u32) {
        if let Some(s) = self.swap() {
            s.map.lock().mark_bad(slot);
        }
    }
}

impl TableFrames for Uvm {
    /// A retired table frame first (re-zeroed), else a free one.
    fn alloc_table(&self) -> Option<Pa> {
        let pg = {
            let mut q = self.queues.lock();
            match q.pop_retired().and_then(|pa| self.page_at(pa)) {
                Some(pg) => pg,
                None => q.pop_free()?,
            }
        };
        let pa = self.pa(pg);
        self.mem.zero(pa);
        *self.page_meta(pg).lock() = PageMeta {
            owner: Owner::Table,
            ..PageMeta::default()
        };
        Some(pa)
    }

    fn free_table(&self, frame: Pa) {
        if let Some(pg) = self.page_at(frame) {
            self.free_frame(pg);
        }
    }

    /// Kept whole on the retired list (O(1)); see the module documentation.
    fn retire_tables(&self, tables: RetiredTables) {
        self.queues.lock().retire(tables);
    }

    /// A contiguous pair from the free queue; when there is none, the retired table frames are
    /// returned to the free queue first and the search is made again.
    fn alloc_root(&self) -> Option<Pa> {
        let base = self.base.0;
        let ok = |i: u32| (base + u64::from(i) * PAGE_SIZE).is_multiple_of(2 * PAGE_SIZE);
        let found = self.queues.lock().take_pair(ok);
        let first = match found {
            Some(first) => first,
            None => {
                self.drain_retired();
                self.queues.lock().take_pair(ok)?
            }
        };
        for pg in [first, PageIdx(first.0 + 1)] {
            self.mem.zero(self.pa(pg));
            *self.page_meta(pg).lock() = PageMeta {
                owner: Owner::Table,
                ..PageMeta::default()
            };
        }
        Some(self.pa(first))
    }
}

impl core::fmt::Debug for Uvm {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Uvm")
            .field("base", &self.base)
            .field("pages", &self.pages.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::Owner;
    use crate::testenv::env;

    /// Retired table frames count as free, are reused by `alloc_table` (re-zeroed), taken by
    /// `alloc_page` once the free queue is empty, and drained when a root finds no pair.
    #[test]
    fn retired_tables_are_handed_out_before_any_allocation_fails() {
        let e = env(8);
        let frames: Vec<Pa> = (0..8).map(|_| e.uvm.alloc_table().unwrap()).collect();
        assert_eq!(e.uvm.free_pages(), 0);
        assert!(e.uvm.alloc_root().is_none());
        for &f in &frames[..4] {
            e.mem.write_u64(f, 0x5a5a);
        }
        let set = frames[..4].iter().map(|f| (f.0, 1)).collect();
        e.uvm.retire_tables(RetiredTables::from_index(set));
        assert_eq!((e.uvm.free_pages(), e.uvm.retired_tables()), (4, 4));
        assert_eq!(e.uvm.queue_counts().0, 4);

        let t = e.uvm.alloc_table().unwrap();
        assert_eq!(t, frames[0], "the lowest retired frame");
        assert_eq!(e.mem.read_u64(t), 0, "re-zeroed");
        assert_eq!(e.uvm.retired_tables(), 3);

        let pg = e.uvm.alloc_page(Owner::Free, true).unwrap();
        assert_eq!(e.uvm.pa(pg.page()), frames[1]);
        assert_eq!(e.mem.read_u64(frames[1]), 0);
        assert_eq!(e.uvm.free_pages(), 2);

        // No free pair on the free queue: the retired frames 2 and 3 are drained and used.
        let root = e.uvm.alloc_root().unwrap();
        assert_eq!(root, frames[2]);
        assert_eq!((e.uvm.free_pages(), e.uvm.retired_tables()), (0, 0));
        assert!(e.uvm.alloc_table().is_none());
        assert!(e.uvm.alloc_page(Owner::Free, false).is_none());
    }
}
