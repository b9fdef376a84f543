//! `anonget`: make an anon's data resident (the seed's `uvmfault_anonget`), reading it from swap
//! with every lock dropped and re-verifying the world afterwards.

use alloc::sync::Arc;

use super::{Fault, FaultError, Held, Need, Step, View};
use crate::anon::{Anon, AnonState, SwapSlot};
use crate::page::{Busy, Owner, PageFlags};
use crate::stats::Stats;
use crate::swap::{ReadKind, Started, SwapIoError};
use crate::swapevents::{SlotIo, SwapEvent};

use super::readahead::{self, drop_readahead};
use crate::uvm::Uvm;

pub(super) type AnonGuard<'a> = crate::sync::MutexGuard<'a, AnonState>;

/// What [`Fault::anonget`] saw of the resident page.
pub(super) struct Resident {
    /// Loaned (never written in place).
    pub loaned: bool,
    /// Its swap copy is current (mapped read-only until written: `upper.rs`).
    pub clean: bool,
}

impl<'m> Fault<'m> {
    /// Make the anon's data resident in a page that is neither BUSY nor RELEASED (the seed's
    /// `uvmfault_anonget`), reading it from swap if needed.
    ///
    /// A BUSY page means someone else is doing I/O on it: the seed sleeps, we return `Restart`
    /// (after setting WANTED). A swap-in allocates a BUSY|FAKE|CLEAN|WANTED page, unlocks
    /// everything and reads. When the device took the read asynchronously, we return `Restart`
    /// naming the page at once (the seed sleeps on it; [`Uvm::swap_poll`] ends the swap-in).
    /// Otherwise we relock (version check), and then: read error → mark the slot bad (the anon's, or
    /// when the anon was freed meanwhile the one it left with the RELEASED page), free the page,
    /// fail with `Io`; released meanwhile → free the page and its slot and refault; success →
    /// unbusy and loop.
    ///
    /// With the entry's advice SEQUENTIAL, a swap-in, or finding the readahead mark on the
    /// resident page, also collects the readahead window after the page, which the fault starts
    /// once every lock is dropped (`readahead.rs`).
    ///
    /// Also returns whether the page is loaned and whether it is CLEAN (read in the same PAGE
    /// lock round trip; the ANON lock held keeps both: a loan or a writable mapping is made
    /// under it).
    ///
    /// The page comes back without a BUSY token: the ANON lock is what keeps it in place. A
    /// `copy_in` may make it BUSY after this looked (it takes no ANON lock); that BUSY is the
    /// copy's, and the caller must leave it alone (see `page.rs`).
    ///
    /// # Locks
    /// Entry: MAPS, AMAP, ANON held. Exit on success: all three held (returned). On failure:
    /// nothing held.
    pub(super) fn anonget<'a>(
        &self,
        held: Held<'a>,
        view: &'a View,
        anon: &'a Arc<Anon>,
        a: AnonGuard<'a>,
    ) -> Result<(Held<'a>, AnonGuard<'a>, Resident), Step>
    where
        'm: 'a,
    {
        self.bump(|s| &s.fltanget);
        let (mut held, mut a) = (held, a);
        loop {
            if let Some(pg) = a.page {
                let mut m = self.uvm.page_meta(pg).lock();
                if !m.flags.contains(PageFlags::BUSY) {
                    let resident = Resident {
                        loaned: m.loan_count > 0,
                        clean: m.flags.contains(PageFlags::CLEAN),
                    };
                    let marked = readahead::take_mark(&mut m.flags);
                    drop(m);
                    if let (true, Some(amap), Some(slot)) = (marked, &held.amap, view.slot(self.ipa)) {
                        self.read_ahead_after(view, amap, slot, self.ipa);
                    }
                    return Ok((held, a, resident));
                }
                m.flags.insert(PageFlags::WANTED);
                drop(m);
                self.waited.set(Some(pg));
                self.bump(|s| &s.fltpgwait);
                return Err(FaultError::Restart.into());
            }

            // No page: bring it in from swap.
            let slot = match a.swslot {
                SwapSlot::Slot(s) => s,
                SwapSlot::Bad | SwapSlot::None => return Err(FaultError::Io.into()),
            };
            let Some(swap) = self.uvm.swap() else {
                return Err(FaultError::Io.into());
            };
            let Some(busy) = self
                .uvm
                .alloc_page(Owner::Anon(Arc::downgrade(anon)), false)
            else {
                drop(a);
                drop(held);
                self.bump(|s| &s.fltnoram);
                return Err(self.reclaim_or_nomem(None, Need::Page));
            };
            let pg = busy.page();
            // WANTED before the read starts: an asynchronous read may finish (and unbusy the page)
            // on another CPU before this fault returns, and that unbusy must tell the waker.
            self.uvm
                .page_meta(pg)
                .lock()
                .flags
                .insert(PageFlags::CLEAN | PageFlags::WANTED);
            a.page = Some(pg);
            if let (Some(amap), Some(slot)) = (&held.amap, view.slot(self.ipa)) {
                self.read_ahead_after(view, amap, slot, self.ipa);
            }
            drop(a);
            drop(held);

            // Everything is unlocked; the BUSY page stands for us.
            self.bump(|s| &s.pageins);
            let at = Some((self.map.vmid(), self.ipa.page_base()));
            self.uvm.swap_event(SwapEvent::PageIn { at, slot });
            let mem = self.uvm.mem();
            let started = swap.start_read(busy, slot, mem.as_ref(), self.uvm.pa(pg));
            let (busy, result) = match started {
                Started::InFlight => {
                    // `Uvm::swap_poll` ends the swap-in; wait for the page like any BUSY one.
                    self.waited.set(Some(pg));
                    self.bump(|s| &s.fltpgwait);
                    return Err(FaultError::Restart.into());
                }
                Started::Done(busy, result) => (busy, result),
            };

            let relocked = self.relock(view);
            let mut a2 = anon.lock();
            if result.is_err() {
                let bad = fail_swap_in(self.uvm, busy, Some(&mut a2));
                drop(a2);
                drop(relocked);
                if let Some(slot) = bad {
                    self.bump(|s| &s.swpgbad);
                    self.uvm.swap_event(SwapEvent::BadSlot { slot, io: SlotIo::Read });
                }
                return Err(FaultError::Io.into());
            }
            let released = self.uvm.page_has(pg, PageFlags::RELEASED);
            if released {
                // The anon was freed while we read: drop the page (and the slot it carries) and
                // refault.
                self.bump(|s| &s.fltpgrele);
                self.uvm.unbusy(busy);
                return Err(Step::ReFault);
            }
            // Already on the active queue (`alloc_page`), where a BUSY page stays.
            self.uvm.unbusy(busy);
            let Some(h) = relocked else {
                return Err(Step::ReFault);
            };
            // Verify nobody moved the anon out of the slot meanwhile.
            let same = match (&h.amap, view.slot(self.ipa)) {
                (Some(st), Some(slot)) => st.lookup(slot).is_some_and(|x| Arc::ptr_eq(x, anon)),
                _ => false,
            };
            if !same {
                return Err(Step::ReFault);
            }
            // The anon lock was taken after the amap's: the order holds.
            held = h;
            a = a2;
            self.bump(|s| &s.fltanretry);
        }
    }
}

/// A swap-in's read into `busy`'s page failed: mark the slot bad — the anon's, or, when the anon
/// was freed during the read, the one it left with the RELEASED page — and give the page up (the
/// seed's `uvmfault_anonget` error path). `a` is the page's anon, `None` when it is gone.
/// Returns the slot marked bad, if one was.
///
/// # Locks
/// Entry and exit: the anon locked (`a`), nothing else. Takes PAGE, the swap map's lock, PAGE
/// QUEUES, and for a RELEASED page PMAP (`Uvm::unbusy`), one after the other.
fn fail_swap_in(uvm: &Uvm, busy: Busy, a: Option<&mut AnonState>) -> Option<u32> {
    let pg = busy.page();
    match a {
        Some(a) if !uvm.page_has(pg, PageFlags::RELEASED) => {
            let bad = match a.swslot {
                SwapSlot::Slot(s) => Some(s),
                SwapSlot::Bad | SwapSlot::None => None,
            };
            if let Some(s) = bad {
                uvm.swap_mark_bad(s);
            }
            a.swslot = SwapSlot::Bad;
            if a.page == Some(pg) {
                a.page = None;
            }
            // Never unbusied, so never mapped: free it.
            uvm.free_page(busy);
            bad
        }
        _ => {
            // The anon was freed while we read: its slot came with the page.
            let bad = uvm.mark_released_slot_bad(pg);
            uvm.unbusy(busy);
            bad
        }
    }
}

impl Uvm {
    /// Finish the asynchronous swap-ins the device reports done (its [`SwapDevice::poll`]):
    /// each page is unbusied with its data (waking the vCPUs parked on it; a page whose anon
    /// was freed meanwhile is freed with its slot), or, when the read failed, its slot is marked
    /// bad and the page freed, as the synchronous path does — the waiters' refault then fails
    /// with `Io`. Returns how many reads finished. Called by the hypervisor's run loop.
    ///
    /// [`SwapDevice::poll`]: crate::swap::SwapDevice::poll
    ///
    /// # Locks
    /// Entry and exit: nothing held. Takes the device's locks, the in-flight list's, then per
    /// read ANON, PAGE, PAGE QUEUES, the swap map's and PMAP as [`fail_swap_in`] and
    /// [`Uvm::unbusy`] do.
    pub fn swap_poll(&self) -> usize {
        let Some(swap) = self.swap() else { return 0 };
        if !swap.reading() {
            return 0;
        }
        let done = swap.dev.poll(self.mem().as_ref());
        let n = done.len();
        for (tag, result) in done {
            match swap.take_in_flight(tag) {
                Some((busy, ReadKind::Demand)) => self.finish_swap_in(busy, result),
                Some((busy, ReadKind::Ahead)) if result.is_err() => drop_readahead(self, busy),
                // Read ahead: resident, clean, with its slot; unmapped until a fault maps it.
                Some((busy, ReadKind::Ahead)) => {
                    self.unbusy(busy);
                }
                None => {}
            }
        }
        n
    }

    /// End one asynchronous swap-in (see [`Uvm::swap_poll`]).
    ///
    /// # Locks
    /// As [`Uvm::swap_poll`], for one read.
    fn finish_swap_in(&self, busy: Busy, result: Result<(), SwapIoError>) {
        if result.is_ok() {
            // Already on the active queue (`alloc_page`); a RELEASED page goes with its slot.
            self.unbusy(busy);
            return;
        }
        let owner = match &self.page_meta(busy.page()).lock().owner {
            Owner::Anon(w) => w.upgrade(),
            _ => None,
        };
        let bad = match &owner {
            Some(anon) => fail_swap_in(self, busy, Some(&mut anon.lock())),
            None => fail_swap_in(self, busy, None),
        };
        if let Some(slot) = bad {
            // No VM's fault is running here: counted with the pagedaemon's swap work (its own
            // column in the hypervisor's counters table, where the engine's other counters are not).
            Stats::bump(&self.daemon().swpgbad);
            self.swap_event(SwapEvent::BadSlot { slot, io: SlotIo::Read });
        }
    }
}
