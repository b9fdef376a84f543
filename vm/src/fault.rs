//! The fault routine: a re-design of the seed's `uvm_fault` over guest-physical addresses.
//!
//! # A word on stage-2 faults
//!
//! A guest access to an IPA that its stage-2 table does not map (or maps without the right
//! permission) traps to the hypervisor, which calls [`fault`]. The map entry covering the IPA has
//! up to two layers, and the fault is resolved in one of four ways:
//!
//! ```text
//!   CASE 1: upper layer (an anon is there)        CASE 2: lower layer (no anon there)
//!
//!     1A               1B                           2A                2B
//!     read, or         write, an_ref > 1            read, or write    write to COW, or
//!     write an_ref==1                               not COW           no object (zero fill)
//!        |                |                            |               |
//!     +--|--+          +--|--+     +-----+          +  |  +          | +-----+
//! amap|  V  |          |  -------->| new |             |             | |  ^  |
//!     +-----+          +-----+     +-----+          +  |  +          | +--|--+
//!                                                      |             |    |
//!     +-----+          +-----+                      +--|--+          | +--|--+
//!  obj| d/c |          | d/c |                      |  V  |          +----|  |
//!     +-----+          +-----+                      +-----+            +-----+
//! ```
//!
//! - case 0: neither amap nor object: an error ([`FaultError::NoBacking`]).
//! - 1A: the anon's page is mapped (read-only while `an_ref > 1`).
//! - 1B: a write to a shared anon: a new anon gets a copy, the old one loses a reference.
//! - 2A: the object's page is mapped directly (read-only if the entry is copy-on-write or the
//!   object needs write faults).
//! - 2B: the data is promoted into a new anon: copied from the object page, or zero-filled.
//!
//! # Lock order
//!
//! ```text
//! MAPS → AMAP → OBJECT → ANON → PMAP → PAGE → PAGE QUEUES
//! ```
//!
//! All are `spin` locks. The OBJECT lock lives inside each object and is only held during a pager
//! call; a page handed out by the pager is BUSY, which is what keeps it in place afterwards (see
//! `object.rs`). No lock is held when `fault` returns, whatever it returns.
//!
//! # How the code is structured
//!
//! - [`fault`] counts the fault and loops over `attempt` (the seed's `ReFault` label).
//! - `attempt`: look the entry up (read-locking the map), check protection, handle
//!   `needs_copy` (write-lock, copy the amap, refault), reject case 0, establish the
//!   neighbourhood from the advice, lock the amap and extract the anons, deactivate the pages
//!   behind a sequential fault, map resident neighbour anons, ask the object (LOCKED get) for
//!   resident neighbour pages and map them, then go to case 1 or case 2.
//! - `neighbours.rs`: the neighbour loops of `attempt` (map resident neighbour anons and object
//!   pages, deactivate the pages behind a sequential fault).
//! - `upper.rs`: case 1 — `anonget` (in `anonget.rs`: make the anon's data resident, swap-in),
//!   loan handling, 1A or 1B (`promote` with copy), enter the mapping.
//! - `lower.rs`: case 2 — get the object page (SYNC get, with the map unlocked), 2A (with loan
//!   break) or 2B (promote with copy or zero fill), enter the mapping.
//! - `wire.rs`: `fault_wire` / `unwire` (the seed's `uvm_fault_wire` / `uvm_fault_unwire`).
//!
//! # Unlocking for I/O
//!
//! When the data must be read (swap-in in `anonget`, a SYNC object get), the page is made BUSY and
//! every lock is dropped. Afterwards the world must be re-verified. The seed weighs three
//! alternatives: (1) unbusy and restart from scratch, (2) remember the map's version number (bumped
//! on every write lock) and, on relocking, continue only if it is unchanged, (3) pin parts of the
//! map. Like the seed we use (2): `relock` compares the version and otherwise the fault goes back
//! to `attempt` (counted in `fltrelck`/`fltrelckok`).
//!
//! # Where the seed sleeps, we return `Restart`
//!
//! A hypervisor CPU must never block on a guest's behalf while holding engine state, and a vCPU
//! that faults again simply re-executes the access. So every place where the seed sleeps returns
//! [`FaultError::Restart`] with everything unlocked, and the hypervisor re-enters the guest:
//!
//! - a BUSY anon page in `anonget` (`UVM_UNLOCK_AND_WAIT` "anonget1/2"), counted `fltpgwait`;
//! - a BUSY object page in the SYNC get (`EAGAIN`, "fltagain2");
//! - more refaults than `MAX_REFAULTS` in one call (the seed could loop forever).
//!
//! Where the seed waits for memory (`uvm_wait` "flt_noram*", "flt_pmfail*"), we run the
//! pagedaemon synchronously ([`crate::pdaemon`]) with nothing locked but the page the fault will
//! use afterwards (kept BUSY, so the daemon cannot take it): if the allocation can succeed now the
//! fault refaults, otherwise it fails with [`FaultError::NoMemory`] (the seed's `ENOMEM` when
//! `!uvm_reclaimable()`), and so does a fault that has reclaimed [`MAX_RECLAIMS`] times in one
//! call: a fault that makes no progress ends, it never restarts for ever. The seed's "spare
//! anon" dance exists because its kernel map cannot allocate anons while locked; our anons come
//! from the heap, so there is none.
//!
//! A new anon (1B, 2B) goes into the amap without its lock (the seed calls `amap_add` with it
//! locked): nothing but the AMAP lock the fault holds leads to it, and its page is BUSY until
//! mapped (see `AmapState::add`). Each lock round trip saved is an atomic read-modify-write, the
//! dominant cost of a fault after the page's own zeroing or copying.
//!
//! # Not applicable
//!
//! `kernel_map` special cases (the hypervisor's own memory is never faulted), rusage counters,
//! and `PQ_AOBJ` swap dropping (our only object is a read-only image).

mod anonget;
#[cfg(test)]
mod async_swap_tests;
mod lower;
mod neighbours;
#[cfg(test)]
mod path_tests;
mod readahead;
#[cfg(test)]
mod readahead_tests;
#[cfg(test)]
mod reclaim_tests;
#[cfg(test)]
mod sharing_tests;
#[cfg(test)]
mod swap_fault_tests;
#[cfg(test)]
mod tests;
mod upper;
mod wire;
#[cfg(test)]
mod wiring_tests;

pub(crate) use wire::unwire_pages;
pub use readahead::ReadaheadOffload;
pub(crate) use readahead::ReadaheadQueue;
pub use wire::{fault_wire, unwire};

use alloc::sync::Arc;
use core::sync::atomic::AtomicU64;

use crate::addr::{Access, Ipa, Pa, PageIdx, Prot, PAGE_SIZE};
use crate::amap::{AmapRef, AmapState, AMAP_CHUNK_PAGES, AMAP_LARGE_PAGES};
use crate::anon::Anon;
use crate::map::{Advice, Map, MapInner};
use crate::object::{GetMode, ObjFault, Object, PageSlot};
use crate::stats::Stats;
use crate::uvm::Uvm;

/// Which of the seed's cases resolved a fault (recorded in the trace).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum FaultCase {
    /// Case 0: the entry has neither amap nor object (always an error).
    Layerless0 = 0,
    /// Case 1A: the anon's page mapped directly (read, or write with an_ref == 1).
    Anon1A = 1,
    /// Case 1B: write to a shared anon: promoted into a new anon, data copied.
    AnonCow1B = 2,
    /// Case 2A: the object's page mapped directly.
    Obj2A = 3,
    /// Case 2B: the object's page promoted (copied) into a new anon.
    ObjCopy2B = 4,
    /// Case 2B without an object: a zero-filled page in a new anon.
    Zero2B = 5,
    /// The object's own fault hook (`pgo_fault`) resolved it.
    ObjFault = 6,
}

/// Why a fault was not resolved. Each variant says who is at fault.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum FaultError {
    /// Guest: no map entry covers the IPA.
    NoMapping = 1,
    /// Guest: the entry's protection forbids the access.
    Protection = 2,
    /// Case 0: an entry with neither amap nor object (a hypervisor configuration error).
    NoBacking = 3,
    /// Hypervisor: no memory and nothing reclaimable.
    NoMemory = 4,
    /// Device: the swap or object pager failed to read the page.
    Io = 5,
    /// Transient: a page is busy or memory must be reclaimed first. The seed would sleep; we
    /// return so the caller re-enters the guest (which re-faults) or runs the pagedaemon.
    Restart = 6,
}

/// What a successful fault did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Resolved {
    /// The case that mapped the faulting page.
    pub case: FaultCase,
    /// Neighbouring pages mapped on the way (fltnamap + fltnomap of this fault).
    pub neighbours: u8,
    /// How many times the routine went back to ReFault internally.
    pub refaults: u8,
}

bitflags::bitflags! {
    /// Kind of fault (the seed's `fault_flag`).
    #[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
    pub struct FaultFlags: u8 {
        /// Wiring fault: full access, no neighbourhood, the page gets wired (`UVM_FAULT_WIRE`).
        const WIRE = 1 << 0;
        /// Wiring fault checked against the maximum protection (`UVM_FAULT_WIREMAX`).
        const WIREMAX = 1 << 1;
    }
}

/// Most pages in one fault's neighbourhood (the seed's `UVM_MAXRANGE`): the largest advice
/// range, SEQUENTIAL's 8 back + 7 forward + the faulting page. The neighbourhood's anons and
/// object pages live in arrays of this size on the stack.
pub const MAXRANGE: usize = 16;

// The neighbourhood is asked about as a `u32` bit mask (`Stage2::mapped_pages`).
const _: () = assert!(MAXRANGE <= 32);

const _: () = {
    let (b, f) = Advice::Sequential.range();
    assert!(b + f < MAXRANGE as u64);
};

/// Internal refaults allowed in one call before giving `Restart` back to the caller.
pub const MAX_REFAULTS: u8 = 8;

/// Pages the pagedaemon is asked to free when a fault runs out of memory.
const RECLAIM_BATCH: usize = 16;

/// Times one call of `fault` runs the pagedaemon before it gives up with `NoMemory`.
pub const MAX_RECLAIMS: u8 = 3;

/// What allocation failed, for [`Fault::reclaim_or_nomem`]'s progress test.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    /// A guest page (`Uvm::alloc_page`, which keeps the reserve).
    Page,
    /// A stage-2 table frame (`pmap_enter` failed).
    Table,
}

/// How an attempt ended short of success.
enum Step {
    /// Go back to the top (`goto ReFault`); nothing is locked.
    ReFault,
    /// Give up; nothing is locked.
    Fail(FaultError),
}

impl From<FaultError> for Step {
    fn from(e: FaultError) -> Step {
        Step::Fail(e)
    }
}

/// The locks held across the phases of one attempt: MAPS (read) and, if the entry has one, AMAP.
struct Held<'a> {
    #[allow(dead_code, reason = "held for its lock, never read")]
    map: crate::sync::RwLockReadGuard<'a, MapInner>,
    amap: Option<crate::sync::MutexGuard<'a, AmapState>>,
}

/// What an attempt learned from the entry (copied out, so the map lock can come and go).
struct View {
    start: Ipa,
    version: u64,
    advice: Advice,
    copy_on_write: bool,
    wired_entry: bool,
    aref: Option<AmapRef>,
    object: Option<(Arc<dyn Object>, u64)>,
}

impl View {
    /// Amap slot of `ipa`.
    fn slot(&self, ipa: Ipa) -> Option<usize> {
        self.aref.as_ref()?.slot(self.start, ipa)
    }

    /// Object offset of `ipa`.
    fn offset(&self, ipa: Ipa) -> Option<u64> {
        let (_, off) = self.object.as_ref()?;
        off.checked_add(ipa.0.checked_sub(self.start.0)?)
    }

    /// The seed's `MASK(entry)`: a copy-on-write entry never maps an object page writable.
    fn mask(&self) -> Prot {
        if self.copy_on_write {
            Prot::ALL - Prot::WRITE
        } else {
            Prot::ALL
        }
    }
}

/// Protections and flags decided at the top of an attempt.
#[derive(Clone, Copy)]
struct Want {
    /// Protection to enter the page with (may be lowered on the way).
    enter_prot: Prot,
    /// Access the fault needs (full entry protection for wiring faults).
    access_type: Prot,
    /// The fault will write now: copy-on-write must happen now.
    cow_now: bool,
    /// Enter the mapping WIRED (an entry's wiring or a wiring fault); the page is wired with
    /// it (see `wire.rs`).
    wired: bool,
}

/// One call of `fault`.
struct Fault<'m> {
    map: &'m Map,
    uvm: &'m Uvm,
    ipa: Ipa,
    access: Access,
    flags: FaultFlags,
    narrow: bool,
    neighbours: u8,
    /// Pagedaemon runs in this call (see [`Fault::reclaim_or_nomem`]).
    reclaims: core::cell::Cell<u8>,
    /// The BUSY page this call marked WANTED before giving up with `Restart`, if any.
    waited: core::cell::Cell<Option<PageIdx>>,
    /// A readahead window an attempt collected, started once it dropped its locks.
    window: core::cell::Cell<Option<readahead::Window>>,
}

/// A fault that did not resolve, and whether it stopped at a BUSY page.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Failure {
    pub error: FaultError,
    /// With `Restart`: the BUSY page the fault found (marked WANTED). The caller may wait for it
    /// — the seed's `UVM_UNLOCK_AND_WAIT` — instead of refaulting at once: the engine tells
    /// its [`crate::page::PageWaker`] when it is unbusied.
    pub busy: Option<Pa>,
}

/// Resolve a stage-2 fault at `ipa` for `access` (the seed's `uvm_fault_internal`).
///
/// # Locks
/// Entry: nothing held by the caller for this map. Exit: nothing held, on every path.
pub fn fault(
    map: &Map,
    ipa: Ipa,
    access: Access,
    flags: FaultFlags,
) -> Result<Resolved, FaultError> {
    fault_or_wait(map, ipa, access, flags).map_err(|f| f.error)
}

/// [`fault`], saying which BUSY page a `Restart` waits for.
///
/// # Locks
/// As [`fault`].
pub fn fault_or_wait(
    map: &Map,
    ipa: Ipa,
    access: Access,
    flags: FaultFlags,
) -> Result<Resolved, Failure> {
    let wire = flags.intersects(FaultFlags::WIRE | FaultFlags::WIREMAX);
    let mut f = Fault {
        map,
        uvm: map.uvm(),
        ipa: ipa.page_base(),
        access,
        flags,
        narrow: wire,
        neighbours: 0,
        reclaims: core::cell::Cell::new(0),
        waited: core::cell::Cell::new(None),
        window: core::cell::Cell::new(None),
    };
    f.bump(|s| &s.faults);
    let mut refaults = 0u8;
    loop {
        let step = f.attempt();
        f.start_readahead();
        match step {
            Ok(case) => {
                return Ok(Resolved {
                    case,
                    neighbours: f.neighbours,
                    refaults,
                })
            }
            Err(Step::ReFault) if refaults < MAX_REFAULTS => refaults += 1,
            Err(Step::ReFault) => {
                f.bump(|s| &s.fltrestart);
                return Err(Failure {
                    error: FaultError::Restart,
                    busy: None,
                });
            }
            Err(Step::Fail(e)) => {
                let busy = if e == FaultError::Restart {
                    f.bump(|s| &s.fltrestart);
                    f.waited.get().map(|pg| f.uvm.pa(pg))
                } else {
                    None
                };
                return Err(Failure { error: e, busy });
            }
        }
    }
}

impl<'m> Fault<'m> {
    /// Count in the VM's counters (the global totals sum them, see `Uvm::stats`).
    ///
    /// # Locks
    /// None taken (atomic counters); callable with any lock held.
    fn bump(&self, counter: impl Fn(&Stats) -> &AtomicU64) {
        Stats::bump(counter(self.map.stats()));
    }

    /// Start the readahead window the last attempt collected, if any, or hand it to another CPU
    /// (`readahead.rs`).
    ///
    /// # Locks
    /// Entry and exit: nothing held. Takes the readahead queue's lock (a leaf), or what
    /// [`readahead::read_ahead`] takes.
    fn start_readahead(&self) {
        let Some(window) = self.window.take() else {
            return;
        };
        if let (Some(window), Some(swap)) = (self.uvm.readaheads.offer(window), self.uvm.swap()) {
            readahead::read_ahead(self.uvm, &swap, window);
        }
    }

    /// Collect the readahead window after the page of amap slot `slot`, mapped at `ipa`, to be
    /// started when the attempt has dropped its locks: only for a SEQUENTIAL entry.
    ///
    /// # Locks
    /// Entry and exit: AMAP held (`amap`); takes nothing.
    fn read_ahead_after(&self, view: &View, amap: &AmapState, slot: usize, ipa: Ipa) {
        if view.advice == Advice::Sequential {
            let at = Some((self.map.vmid(), ipa));
            let stats = self.map.stats_arc();
            self.window
                .set(Some(readahead::following(amap, slot, at, stats)));
        }
    }

    /// This map's stage-2 table.
    ///
    /// # Locks
    /// None taken; the table's own methods take PMAP.
    fn pmap(&self) -> &'m crate::pmap::Stage2 {
        self.map.stage2()
    }

    /// One pass from the top (the seed's code from `ReFault:` on).
    ///
    /// # Locks
    /// Entry: nothing. Exit: nothing.
    fn attempt(&mut self) -> Result<FaultCase, Step> {
        let map: &'m Map = self.map;
        let guard = map.read();
        let version = map.version();
        let Some(e) = guard.lookup(self.ipa) else {
            return Err(FaultError::NoMapping.into());
        };

        // Check protection.
        let wire_fault = self
            .flags
            .intersects(FaultFlags::WIRE | FaultFlags::WIREMAX);
        let check_prot = if self.flags.contains(FaultFlags::WIREMAX) {
            e.max_prot
        } else {
            e.prot
        };
        // A WIREMAX fault asks for the maximum protection itself (the seed's `uvm_fault_wire`
        // passes `access_type = max_protection`), so its check passes by construction: an entry
        // is wired whatever its current protection (even NONE: the leaf then permits nothing).
        let asked = if self.flags.contains(FaultFlags::WIREMAX) {
            check_prot
        } else {
            self.access.prot()
        };
        if !check_prot.contains(asked) {
            return Err(FaultError::Protection.into());
        }
        let wired = e.is_wired() || wire_fault;
        let mut want = Want {
            enter_prot: e.prot,
            access_type: if wired { e.prot } else { self.access.prot() },
            cow_now: if wired {
                check_prot.contains(Prot::WRITE)
            } else {
                self.access == Access::Write
            },
            wired,
        };

        // needs_copy: copy the amap (write lock) and refault, or map read-only for now.
        if e.needs_copy {
            if want.cow_now || e.object.is_none() {
                drop(guard);
                self.amapcopy();
                self.bump(|s| &s.fltamcopy);
                return Err(Step::ReFault);
            }
            want.enter_prot -= Prot::WRITE;
        }

        let view = View {
            start: e.start,
            version,
            advice: e.advice,
            copy_on_write: e.copy_on_write,
            wired_entry: e.is_wired(),
            aref: e.aref.clone(),
            object: e.object.clone(),
        };
        let end = e.end;

        // Case 0.
        if view.aref.is_none() && view.object.is_none() {
            return Err(FaultError::NoBacking.into());
        }

        // The neighbourhood, only on the first pass (then "narrow").
        let (nback, nforw) = if self.narrow {
            (0, 0)
        } else {
            let (b, f) = view.advice.range();
            (
                b.min(self.ipa.pages_since(view.start)),
                f.min(end.pages_since(self.ipa).saturating_sub(1)),
            )
        };
        self.narrow = true;
        let mut startva = Ipa(self.ipa.0 - nback * PAGE_SIZE);
        let mut npages = usize::try_from(nback + nforw + 1)
            .unwrap_or(1)
            .min(MAXRANGE);
        let mut centeridx = usize::try_from(nback).unwrap_or(0);

        // Lock the amap. The neighbourhood's anons are looked up in it in place (borrowed from
        // the locked amap: nothing is copied or allocated on the fault path).
        let held = Held {
            map: guard,
            amap: view.aref.as_ref().map(|a| a.amap.lock()),
        };
        let first_slot = view.slot(startva);
        let anon_at = |i: usize| -> Option<&Arc<Anon>> {
            held.amap.as_ref()?.lookup(first_slot?.checked_add(i)?)
        };

        // Sequential: deactivate the pages behind us and forget them.
        let mut first = 0;
        if view.advice == Advice::Sequential && nback > 0 {
            self.anonflush((0..centeridx).filter_map(anon_at));
            if let (Some((obj, _)), Some(uoff)) = (&view.object, view.offset(startva)) {
                let _ = obj.put(
                    self.uvm,
                    uoff,
                    uoff.saturating_add(nback * PAGE_SIZE),
                    crate::object::PutFlags::DEACTIVATE,
                );
            }
            first = centeridx;
            startva = self.ipa;
            npages -= centeridx;
            centeridx = 0;
        }

        // Map in resident neighbour anons; note whether the center is shadowed by an anon.
        let mut pages_buf = [const { PageSlot::Empty }; MAXRANGE];
        let pages = pages_buf.get_mut(..npages).unwrap_or(&mut []);
        let mut shadowed = false;
        // A neighbour that carried the readahead mark (see `readahead.rs`).
        let mut marked = None;
        // Which neighbours are mapped already (the centre is not asked: it faulted). Under
        // SEQUENTIAL an old mapping (access flag clear, the pagedaemon's aging) counts as not
        // mapped: the guest is about to touch the page, and re-entering it now saves the
        // access-flag fault per page that would follow (an ascending pass over memory aged
        // while the guest was elsewhere took one fault a page).
        let mapped = if npages > 1 {
            let young = view.advice == Advice::Sequential;
            self.pmap().mapped_pages(startva, npages, young)
        } else {
            0
        };
        for (lcv, slot) in pages.iter_mut().enumerate() {
            let anon = anon_at(first + lcv);
            let currva = startva.add_pages(lcv as u64);
            if lcv != centeridx && mapped & (1 << lcv) != 0 {
                *slot = PageSlot::DontCare;
                continue;
            }
            let Some(anon) = anon else { continue };
            *slot = PageSlot::DontCare;
            if lcv == centeridx {
                shadowed = true;
                continue;
            }
            if self.map_neighbour_anon(anon, currva, want.enter_prot, view.wired_entry) {
                marked = Some((first + lcv, currva));
            }
        }
        if let (Some((i, ipa)), Some(amap)) = (marked, &held.amap) {
            if let Some(slot) = first_slot.and_then(|s| s.checked_add(i)) {
                self.read_ahead_after(&view, amap, slot, ipa);
            }
        }

        // Object: its own fault routine, or resident neighbours from a LOCKED get.
        let mut uobjpage = None;
        if let (Some((obj, _)), false) = (&view.object, shadowed) {
            let Some(uoff) = view.offset(startva) else {
                return Err(FaultError::NoBacking.into());
            };
            let mut args = ObjFault {
                uvm: self.uvm,
                pmap: self.pmap(),
                start: startva,
                offset: uoff,
                pages,
                center: centeridx,
                access: want.access_type,
                enter_prot: want.enter_prot,
                wired: want.wired,
            };
            if let Some(r) = obj.fault(&mut args) {
                drop(held);
                return match r {
                    Ok(()) => Ok(FaultCase::ObjFault),
                    Err(FaultError::Restart) => Err(Step::ReFault),
                    Err(e) => Err(e.into()),
                };
            }
            self.bump(|s| &s.fltlget);
            let access = want.access_type & view.mask();
            let got = obj
                .get(
                    self.uvm,
                    uoff,
                    pages,
                    centeridx,
                    access,
                    view.advice,
                    GetMode::Locked,
                )
                .unwrap_or(0);
            if got > 0 {
                uobjpage =
                    self.map_neighbour_pages(obj.as_ref(), pages, startva, centeridx, want, &view);
            }
        }

        if shadowed {
            let Some(anon) = anon_at(first + centeridx).cloned() else {
                return Err(Step::ReFault);
            };
            self.case1(held, &view, &anon, want)
        } else {
            self.case2(held, &view, uobjpage, want)
        }
    }

    /// Clear `needs_copy` for the faulting IPA's entry (the seed's `uvmfault_amapcopy`, which
    /// asks `amap_copy` for the faulting address only and lets it chunk; NetBSD's `amap_copy`
    /// chunks only the creation of a new amap, here the copy of a shared one is chunked too,
    /// and an entry without an amap is left whole: see below). A large entry
    /// (at least [`AMAP_LARGE_PAGES`] pages) is first clipped to the [`AMAP_CHUNK_PAGES`]-aligned
    /// chunk around the fault, so only that chunk's slots are copied, under the map write lock
    /// that stops every other fault of the VM meanwhile: copying a whole 256 MiB entry's amap
    /// here took ~5 ms. The rest of the entry keeps `needs_copy` and the shared amap (a clip of a
    /// shared amap takes a reference, see `amap_split`) until a write reaches it. An entry with
    /// no amap or an amap of its own is not clipped (nothing is copied). If the entry is gone
    /// the refault reports it.
    ///
    /// # Locks
    /// Entry: nothing. Takes MAPS for writing (bumping the version), then AMAP (the clips) and
    /// AMAP, ANON and PMAP locks (the copy). Exit: nothing.
    fn amapcopy(&self) {
        let mut g = self.map.write();
        let Some(e) = g.lookup(self.ipa) else { return };
        if !e.needs_copy {
            return;
        }
        // Only a copy is chunked: an amap nobody else refers to is taken over whole, at no cost.
        let copies = e.aref.as_ref().is_some_and(|a| a.amap.lock().refs() > 1);
        if copies && e.npages() >= AMAP_LARGE_PAGES {
            let chunk = AMAP_CHUNK_PAGES * PAGE_SIZE;
            let start = Ipa(self.ipa.0 - self.ipa.0 % chunk).max(e.start);
            let end = start.checked_add(chunk).map_or(e.end, |end| end.min(e.end));
            g.clip(start);
            g.clip(end);
        }
        if let Some(e) = g.lookup_mut(self.ipa) {
            crate::fork::entry_amap_share_lazy(self.uvm, e);
        }
    }

    /// Relock after I/O (the seed's `uvmfault_relock`): MAPS for reading, then AMAP, if the map's
    /// version is unchanged; `None` (nothing locked) otherwise.
    ///
    /// # Locks
    /// Entry: nothing held but the BUSY page the caller did I/O on. Exit: MAPS (read) and AMAP
    /// held in the returned `Held` if the version matched; on failure nothing is held (the
    /// caller unbusies its page and refaults).
    fn relock<'a>(&self, view: &'a View) -> Option<Held<'a>>
    where
        'm: 'a,
    {
        self.bump(|s| &s.fltrelck);
        let map: &'m Map = self.map;
        let g = map.read();
        if map.version() != view.version {
            return None;
        }
        self.bump(|s| &s.fltrelckok);
        Some(Held {
            map: g,
            amap: view.aref.as_ref().map(|a| a.amap.lock()),
        })
    }

    /// Out of memory with no map, amap or anon lock held: run the pagedaemon, then refault if the
    /// allocation that failed can succeed now, otherwise fail with `NoMemory` (the seed's
    /// `uvm_reclaimable()` test).
    ///
    /// Progress is judged by what the fault needs, not by what the daemon freed: "freed one
    /// frame" is no progress when that frame is the very page this fault read and will read again
    /// on the refault (an object page for 2B, the old anon page for 1B), which is how a fault
    /// livelocked with most frames wired (found by the model, seed 1795627362871842251). So:
    ///
    /// - `keep` is the page the fault holds BUSY (its token) and will use after the refault: the
    ///   pagedaemon never takes a BUSY page, and it is unbusied here after the reclaim. A fault
    ///   that holds the page only through its owner's lock tries to make it BUSY first
    ///   (`Uvm::try_busy`) and, when someone else holds it BUSY (a `copy_in`), keeps nothing: that
    ///   BUSY is not the fault's to clear;
    /// - the fault refaults only if a frame is now allocatable (`need`: a guest page above the
    ///   reserve, or a stage-2 table frame);
    /// - a fault that has reclaimed [`MAX_RECLAIMS`] times in one call without succeeding fails
    ///   with `NoMemory` (frames freed for it went to someone else, or to its own neighbours'
    ///   tables): a fault that cannot make progress ends, it never restarts for ever.
    ///
    /// # Locks
    /// Entry: nothing locked except `keep`'s BUSY. Exit: nothing; `keep` unbusied.
    fn reclaim_or_nomem(&self, keep: Option<crate::page::Busy>, need: Need) -> Step {
        let rounds = self.reclaims.get().saturating_add(1);
        self.reclaims.set(rounds);
        if rounds <= MAX_RECLAIMS {
            self.uvm.reclaim(RECLAIM_BATCH);
        }
        if let Some(busy) = keep {
            self.uvm.unbusy(busy);
        }
        if rounds <= MAX_RECLAIMS && self.uvm.can_allocate(need == Need::Table) {
            Step::ReFault
        } else {
            self.bump(|s| &s.fltnoanon);
            Step::Fail(FaultError::NoMemory)
        }
    }

    /// Enter the faulting page's mapping with the fault's flags; the page's wiring follows the
    /// mapping (see `wire.rs`). The caller then clears CLEAN if `prot` has WRITE (we track no
    /// modified bit: a page the guest may write is no longer CLEAN), in the same PAGE lock round
    /// trip that activates the page and unbusies it if the fault holds it BUSY
    /// (`Uvm::finish_page`; case 1A holds it through the ANON lock: `Uvm::finish_owned_page`).
    ///
    /// # Locks
    /// Entry and exit: MAPS, AMAP (if any) and the page's owner lock (ANON) or its BUSY held.
    /// Takes PMAP, then PAGE and PAGE QUEUES. On failure (false, counted `fltpmapfail`)
    /// nothing was entered and the caller still holds everything: it unlocks and goes to
    /// `reclaim_or_nomem`.
    fn enter(&self, pg: crate::addr::PageIdx, prot: Prot, want: Want) -> bool {
        let ok = wire::enter_page(self.uvm, self.map, self.ipa, pg, prot, want.wired).is_ok();
        if !ok {
            self.bump(|s| &s.fltpmapfail);
        }
        ok
    }
}
