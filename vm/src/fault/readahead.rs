//! Swap readahead for SEQUENTIAL entries: a swap-in also starts reads of the following anons of
//! the same amap (the "readahead of neighbouring slots"; the seed reads one page in
//! `uvmfault_anonget` and leaves readahead to the pager's clusters).
//!
//! The pagedaemon writes consecutive pages into consecutive slots (`pdaemon/cluster.rs`), so the
//! following amap slots' anons are mostly in the following swap slots: a guest reading its memory
//! in order finds the next pages resident (or their reads in flight) instead of faulting and
//! parking on each. A window is the [`READAHEAD_PAGES`] amap slots after a page, anons in
//! consecutive slots read as one request, and only what the device takes asynchronously
//! ([`Swap::start_readahead_cluster`]): a declined read ends the readahead, nothing is ever read
//! ahead synchronously, and a fault never waits for a read it did not need.
//!
//! # Keeping ahead of the guest
//! Reading ahead only when a fault has to page in would leave the guest waiting at the end of
//! every window: it catches up with the reads it just started. So, as Linux's `PG_readahead`
//! does, a window marks one of the pages it reads ([`PageFlags::READAHEAD`]): the first one at
//! least half a window after the page that started it. A fault that finds the mark on a page it
//! maps — the faulting page or a neighbour, resident by then — clears it and starts the window
//! after that page, whose first half is resident or in flight already, so only its second half
//! is read, and marked again. In a steady ascending pass each window reads half a window of
//! pages, started half a window before the guest needs the first of them.
//!
//! A read ahead that fails is dropped: its page is freed and the anon keeps its slot, so the
//! data is still there for the fault that needs it, which reads it again and, if that read fails
//! too, marks the slot bad as any swap-in does. The seed marks a slot bad only after a read a
//! fault waited for; a speculative read's failure (a transient error, a disk that died with it in
//! flight) is no evidence the guest's data is gone, and must not cost it.
//!
//! Each read started ahead is told to the swap listener as a page-in (`SwapEvent::PageIn`, the
//! trace's swap record), as a demand swap-in is, placed at the IPA the faulting entry maps its
//! amap slot at: the trace then has one page-in record per `pageins` plus one per `readaheads`.
//! A read the device declined was never started and is not told.
//!
//! # Another CPU starts it
//! Starting a window costs its CPU the frames' claims and a request or two to the device (under
//! TCG a virtio notify is ~50-120 µs), and that CPU is the one the guest is waiting on. When the
//! hypervisor has an idle CPU it says so ([`ReadaheadOffload`]): the fault queues the window
//! ([`ReadaheadQueue`], at most [`QUEUED_WINDOWS`]) and the idle CPU starts it
//! ([`Uvm::run_readaheads`]) while the guest runs on through the half window still ahead of it.
//! Otherwise, or with the queue full (nobody is draining it), the fault starts it itself.
//! A queued window is only anons and counters: a page it names that became resident, or an anon
//! freed meanwhile, is skipped when it runs, as in any window.
//!
//! # Locks
//! The anons are collected under AMAP (the fault's locks); the reads start after every lock is
//! dropped (`Fault::start_readahead`, or [`Uvm::run_readaheads`]), each anon locked alone to
//! give it its BUSY page (ANON, then PAGE QUEUES and PAGE). The queue's lock is a leaf.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::addr::{Ipa, Pa};
use crate::amap::AmapState;
use crate::anon::{Anon, SwapSlot};
use crate::page::{Busy, Owner, PageFlags};
use crate::pdaemon::CLUSTER_PAGES;
use crate::stats::Stats;
use crate::swap::Swap;
use crate::swapevents::{Place, SwapEvent};
use crate::uvm::Uvm;
use crate::PAGE_SIZE;

/// The readahead window: how many amap slots after a page one readahead looks at.
pub const READAHEAD_PAGES: usize = 128;

/// Where in a window the next one is triggered (see the module documentation): the first page
/// read at least this many slots after the page that started the window carries the mark.
pub const MARK_AFTER: u64 = READAHEAD_PAGES as u64 / 2;

/// Most windows queued for another CPU ([`ReadaheadQueue`]); a fault that finds the queue full
/// starts its window itself.
pub const QUEUED_WINDOWS: usize = 4;

/// Clear the readahead mark of a page a fault maps; true if it was there (the fault then
/// starts the next window: see the module documentation).
///
/// # Locks
/// Entry and exit: the page's PAGE lock held (`flags` is its metadata's); takes nothing.
pub(super) fn take_mark(flags: &mut PageFlags) -> bool {
    let marked = flags.contains(PageFlags::READAHEAD);
    flags.remove(PageFlags::READAHEAD);
    marked
}

/// A window to read, collected under the fault's locks and started after they are dropped.
pub(crate) struct Window {
    anons: Vec<Ahead>,
    /// Where the page the window follows is mapped (see [`read_ahead`]).
    at: Place,
    /// The faulting VM's counters (`readaheads`).
    stats: Arc<Stats>,
}

/// The hypervisor's say in who starts a readahead window (see the module documentation).
pub trait ReadaheadOffload: Send + Sync {
    /// Whether another CPU can start a window soon (one is idle).
    ///
    /// # Locks
    /// Called with nothing held, or the readahead queue's lock; takes none of the engine's.
    fn can_offload(&self) -> bool;
    /// A window was queued: have that CPU call [`Uvm::run_readaheads`] (wake it).
    ///
    /// # Locks
    /// Called with nothing held.
    fn kick(&self);
}

/// Windows faults handed to another CPU, and who says whether to ([`Uvm::set_readahead_offload`]).
#[derive(Default)]
pub(crate) struct ReadaheadQueue {
    windows: crate::sync::Mutex<VecDeque<Window>>,
    offload: crate::sync::RwLock<Option<Arc<dyn ReadaheadOffload>>>,
}

impl ReadaheadQueue {
    /// Queue `window` for another CPU when the hypervisor has one to spare and the queue has
    /// room, and wake that CPU; otherwise give it back, for the fault to start.
    ///
    /// # Locks
    /// Entry and exit: nothing held. Takes the offload lock (reading) and the queue's, leaves.
    pub(super) fn offer(&self, window: Window) -> Option<Window> {
        let Some(offload) = self.offload.read().clone() else {
            return Some(window);
        };
        {
            let mut q = self.windows.lock();
            if q.len() >= QUEUED_WINDOWS || !offload.can_offload() {
                return Some(window);
            }
            q.push_back(window);
        }
        offload.kick();
        None
    }
}

impl Uvm {
    /// Have readahead windows started by another CPU when `offload` says one can
    /// ([`ReadaheadOffload`], `fault/readahead.rs`).
    ///
    /// # Locks
    /// Takes the offload lock for writing (a leaf).
    pub fn set_readahead_offload(&self, offload: Arc<dyn ReadaheadOffload>) {
        *self.readaheads.offload.write() = Some(offload);
    }

    /// Start the readahead windows faults queued for another CPU (see the module
    /// documentation), each read counted in the faulting VM's `readaheads` ([`read_ahead`]).
    /// Returns how many windows ran. Called by the hypervisor on an idle CPU.
    ///
    /// # Locks
    /// Entry and exit: nothing held. Takes the queue's lock alone, then for each window what
    /// [`read_ahead`] takes.
    pub fn run_readaheads(&self) -> usize {
        let mut ran = 0;
        loop {
            let Some(window) = self.readaheads.windows.lock().pop_front() else {
                return ran;
            };
            ran += 1;
            if let Some(swap) = self.swap() {
                read_ahead(self, &swap, window);
            }
        }
    }
}

/// An anon to read ahead, and how many pages after the faulting one its amap slot is (so
/// where the faulting entry maps it, for the swap listener).
pub(super) struct Ahead {
    anon: Arc<Anon>,
    after: u64,
}

/// The window after `slot`, the page mapped at `at`: the anons of the [`READAHEAD_PAGES`] amap
/// slots after it (empty slots skipped).
///
/// # Locks
/// Entry and exit: AMAP held (`amap`); takes nothing, the anons are not locked.
pub(super) fn following(amap: &AmapState, slot: usize, at: Place, stats: Arc<Stats>) -> Window {
    let anons = match slot.checked_add(1) {
        Some(next) => (1u64..)
            .zip(amap.lookups(next, READAHEAD_PAGES))
            .filter_map(|(after, anon)| Some(Ahead { anon: anon?, after }))
            .collect(),
        None => Vec::new(),
    };
    Window { anons, at, stats }
}

/// Where the page `after` pages past the faulting one (mapped at `at`) is mapped: the same
/// entry, `after` pages on (amap slots follow the entry's pages one to one). `None` when `at`
/// is, or past the end of the IPA space.
fn place_after(at: Place, after: u64) -> Place {
    let (vmid, ipa) = at?;
    let ipa = after
        .checked_mul(PAGE_SIZE)
        .and_then(|d| ipa.page_base().0.checked_add(d))?;
    Some((vmid, Ipa(ipa)))
}

/// Start reading the swapped-out, non-resident anons of `window`, in order, until the device
/// declines one or no frame is free, marking the first at least [`MARK_AFTER`] slots on (see
/// the module documentation). Anons in consecutive slots (as the pagedaemon's clusters leave
/// them) are read as one request ([`Swap::start_readahead_cluster`]): a guest's ascending pass
/// then costs the device one request a run instead of one a page. Each read started is told to
/// the swap listener as a page-in, placed from the window's `at` (see the module
/// documentation), and counted in the faulting VM's `readaheads`.
///
/// # Locks
/// Entry and exit: nothing held. Takes each anon's ANON alone, under it PAGE QUEUES and PAGE
/// (`Uvm::alloc_page`); then the in-flight list's and the device's locks (leaves); the listener
/// with nothing held.
pub(crate) fn read_ahead(uvm: &Uvm, swap: &Swap, window: Window) {
    let Window { anons, at, stats } = window;
    let mut pages = claim(uvm, &anons).into_iter().peekable();
    while let Some(c) = pages.next() {
        let first = c.slot;
        let mut run = alloc::vec![c];
        while run.len() < CLUSTER_PAGES {
            let next = u32::try_from(run.len())
                .ok()
                .and_then(|k| first.checked_add(k));
            match pages.next_if(|c| Some(c.slot) == next) {
                Some(c) => run.push(c),
                None => break,
            }
        }
        let frames: Vec<Pa> = run.iter().map(|c| uvm.pa(c.busy.page())).collect();
        let told: Vec<_> = run
            .iter()
            .map(|c| (c.busy.page(), c.slot, c.after))
            .collect();
        let busies = run.into_iter().map(|c| c.busy).collect();
        let declined = swap.start_readahead_cluster(busies, first, uvm.mem().as_ref(), &frames);
        // Told and counted once started (before, a read the device then declined could not be
        // left out): one event a read whose token did not come back.
        for (pg, slot, after) in told {
            if !declined.iter().any(|b| b.page() == pg) {
                Stats::bump(&stats.readaheads);
                let at = place_after(at, after);
                uvm.swap_event(SwapEvent::PageIn { at, slot });
            }
        }
        if !declined.is_empty() {
            declined
                .into_iter()
                .for_each(|busy| drop_readahead(uvm, busy));
            pages.for_each(|c| drop_readahead(uvm, c.busy));
            break;
        }
    }
}

/// A page claimed for a read ahead: its BUSY token, its anon's slot, and how many pages after
/// the faulting one it is ([`Ahead`]).
struct Claimed {
    busy: Busy,
    slot: u32,
    after: u64,
}

/// Give each swapped-out, non-resident one of `anons` a BUSY page for its read ahead, in
/// order, until no frame is free; the first at least [`MARK_AFTER`] slots after the window's
/// page gets the mark.
///
/// # Locks
/// Entry and exit: nothing held. Takes each anon's ANON alone, under it PAGE QUEUES and PAGE
/// (`Uvm::alloc_page`).
fn claim(uvm: &Uvm, anons: &[Ahead]) -> Vec<Claimed> {
    let mut out = Vec::with_capacity(anons.len());
    let mut marked = false;
    for &Ahead { ref anon, after } in anons {
        let mut a = anon.lock();
        let SwapSlot::Slot(slot) = a.swslot else {
            continue;
        };
        if a.page.is_some() || a.an_ref == 0 {
            continue;
        }
        let Some(busy) = uvm.alloc_page(Owner::Anon(Arc::downgrade(anon)), false) else {
            break;
        };
        // Its contents are the slot's: clean as a swap-in's page (and FAKE until read).
        let mark = !marked && after >= MARK_AFTER;
        marked |= mark;
        let mut flags = PageFlags::CLEAN;
        flags.set(PageFlags::READAHEAD, mark);
        uvm.page_meta(busy.page()).lock().flags.insert(flags);
        a.page = Some(busy.page());
        out.push(Claimed { busy, slot, after });
    }
    out
}

/// Give up a page read ahead (not started, or its read failed): free it, and leave the anon its
/// slot. An anon freed meanwhile left the page RELEASED with the slot: both are freed. Faults
/// that found the page BUSY and wait on it are woken (`Uvm::free_page`) and read it themselves.
///
/// # Locks
/// Entry and exit: nothing held. Takes PAGE, then ANON and under it PAGE, PAGE QUEUES, the swap
/// map's lock and for a RELEASED page PMAP (`Uvm::free_page`, `Uvm::unbusy`).
pub(crate) fn drop_readahead(uvm: &Uvm, busy: Busy) {
    let pg = busy.page();
    let owner = match &uvm.page_meta(pg).lock().owner {
        Owner::Anon(w) => w.upgrade(),
        _ => None,
    };
    let Some(anon) = owner else {
        uvm.unbusy(busy);
        return;
    };
    let mut a = anon.lock();
    if uvm.page_has(pg, PageFlags::RELEASED) {
        drop(a);
        uvm.unbusy(busy);
        return;
    }
    if a.page == Some(pg) {
        a.page = None;
    }
    // Never unbusied, so never mapped.
    uvm.free_page(busy);
}
