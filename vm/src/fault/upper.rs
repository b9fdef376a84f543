//! Case 1: the faulting IPA has an anon in the amap (the upper layer).

use alloc::sync::Arc;

use super::{Fault, FaultCase, FaultError, Held, Step, View, Want};
use crate::addr::{PageIdx, Prot};
use crate::anon::{anon_dropswap_locked, Anon, AnonState, SwapSlot};
use crate::page::{Owner, PageFlags};

type AnonGuard<'a> = spin::MutexGuard<'a, AnonState>;

impl<'m> Fault<'m> {
    /// Handle case 1: make the anon's data resident, handle loans, then 1A (map it) or 1B (copy
    /// it into a new anon and map that).
    ///
    /// # Locks
    /// Entry: MAPS (read) and AMAP held in `held`. Takes the ANON lock (and the new anon's in 1B),
    /// then PMAP, PAGE, PAGE QUEUES. Exit: nothing, on every path.
    pub(super) fn case1<'a>(
        &mut self,
        held: Held<'a>,
        view: &'a View,
        anon: &'a Arc<Anon>,
        mut want: Want,
    ) -> Result<FaultCase, Step>
    where
        'm: 'a,
    {
        let a = anon.lock();
        let (mut held, mut a) = self.anonget(held, view, anon, a)?;
        let Some(mut pg) = a.page else {
            return Err(Step::ReFault);
        };

        // Loaned page: never written in place.
        let loaned = self.uvm.page_meta(pg).lock().loan_count > 0;
        if loaned {
            if !want.cow_now {
                want.enter_prot -= Prot::WRITE;
            } else if a.an_ref == 1 {
                match self.break_anon_loan(anon, &mut a, pg) {
                    Some(npg) => pg = npg,
                    None => {
                        drop(a);
                        drop(held);
                        self.bump(|s| &s.fltnoram);
                        return Err(self.reclaim_or_nomem());
                    }
                }
            }
        }

        if want.cow_now && a.an_ref > 1 {
            // Case 1B: promote into a new anon with a copy of the data.
            self.bump(|s| &s.flt_acow);
            let new = Anon::new();
            let Some(npg) = self
                .uvm
                .alloc_page(Owner::Anon(Arc::downgrade(&new)), false)
            else {
                drop(a);
                drop(held);
                self.bump(|s| &s.fltnoram);
                return Err(self.reclaim_or_nomem());
            };
            self.uvm.mem().copy(self.uvm.pa(npg), self.uvm.pa(pg));
            let mut na = new.lock();
            na.page = Some(npg);
            let slot = view.slot(self.ipa);
            let replaced = match (held.amap.as_mut(), slot) {
                (Some(st), Some(slot)) => st.add(slot, new.clone()),
                _ => None,
            };
            if replaced.is_none() {
                // Cannot happen with the amap locked; undo and refault.
                na.page = None;
                drop(na);
                self.uvm.free_page(npg);
                return Err(Step::ReFault);
            }
            // The amap no longer refers to the old anon from this slot (cannot reach zero: > 1).
            a.an_ref -= 1;
            if !self.enter(npg, want.enter_prot, want) {
                self.uvm.activate(npg);
                self.uvm.unbusy(npg);
                drop(na);
                drop(a);
                drop(held);
                return Err(self.reclaim_or_nomem());
            }
            self.finish_anon_page(&mut na, npg, want);
            return Ok(FaultCase::AnonCow1B);
        }

        // Case 1A: map the anon's own page (read-only while shared).
        self.bump(|s| &s.flt_anon);
        if a.an_ref > 1 {
            want.enter_prot -= Prot::WRITE;
        }
        if !self.enter(pg, want.enter_prot, want) {
            drop(a);
            drop(held);
            return Err(self.reclaim_or_nomem());
        }
        self.finish_anon_page(&mut a, pg, want);
        Ok(FaultCase::Anon1A)
    }

    /// After a successful enter: wire (dropping the swap copy: a wired page is never paged out,
    /// and a page without swap is not CLEAN) or activate, and clear BUSY.
    fn finish_anon_page(&self, a: &mut AnonState, pg: PageIdx, want: Want) {
        if want.wire_fault {
            self.uvm.wire(pg);
            self.uvm.page_meta(pg).lock().flags.remove(PageFlags::CLEAN);
            anon_dropswap_locked(self.uvm, a);
        } else {
            self.uvm.activate(pg);
        }
        self.uvm.unbusy(pg);
    }

    /// Write fault on a loaned page of an anon nobody else refers to: give the anon a private
    /// copy and end its part in the loan (the seed's "KILL loan"). `None` when no frame is free.
    ///
    /// # Locks
    /// Entry and exit: MAPS, AMAP, ANON held. Takes PMAP, PAGE, PAGE QUEUES.
    fn break_anon_loan(&self, anon: &Arc<Anon>, a: &mut AnonState, pg: PageIdx) -> Option<PageIdx> {
        let npg = self
            .uvm
            .alloc_page(Owner::Anon(Arc::downgrade(anon)), false)?;
        self.uvm.mem().copy(self.uvm.pa(npg), self.uvm.pa(pg));
        self.uvm.page_protect(pg, Prot::NONE);
        let lender = {
            let mut m = self.uvm.page_meta(pg).lock();
            if matches!(m.owner, Owner::Object { .. }) {
                // We borrowed it from an object: return it.
                m.loan_count = m.loan_count.saturating_sub(1);
                m.loan_anon = None;
                false
            } else {
                // We lent it out: the borrowers keep it, nobody owns it.
                m.owner = Owner::Orphan;
                true
            }
        };
        if lender {
            self.uvm.dequeue(pg);
        }
        a.page = Some(npg);
        self.uvm.activate(npg);
        self.uvm.unbusy(npg);
        self.bump(|s| &s.fltloanbreak);
        Some(npg)
    }

    /// Make the anon's data resident in a page that is neither BUSY nor RELEASED (the seed's
    /// `uvmfault_anonget`), reading it from swap if needed.
    ///
    /// A BUSY page means someone else is doing I/O on it: the seed sleeps, we return `Restart`
    /// (after setting WANTED). A swap-in allocates a BUSY|FAKE|CLEAN page, unlocks everything,
    /// reads, relocks (version check), and then: released meanwhile → free it and refault; read
    /// error → mark the slot bad, free the page, fail with `Io`; success → activate and loop.
    ///
    /// # Locks
    /// Entry: MAPS, AMAP, ANON held. Exit on success: all three held (returned). On failure:
    /// nothing held.
    fn anonget<'a>(
        &self,
        held: Held<'a>,
        view: &'a View,
        anon: &'a Arc<Anon>,
        a: AnonGuard<'a>,
    ) -> Result<(Held<'a>, AnonGuard<'a>), Step>
    where
        'm: 'a,
    {
        self.bump(|s| &s.fltanget);
        let (mut held, mut a) = (held, a);
        loop {
            if let Some(pg) = a.page {
                let mut m = self.uvm.page_meta(pg).lock();
                if !m.flags.contains(PageFlags::BUSY) {
                    drop(m);
                    return Ok((held, a));
                }
                m.flags.insert(PageFlags::WANTED);
                drop(m);
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
            let Some(pg) = self
                .uvm
                .alloc_page(Owner::Anon(Arc::downgrade(anon)), false)
            else {
                drop(a);
                drop(held);
                self.bump(|s| &s.fltnoram);
                return Err(self.reclaim_or_nomem());
            };
            self.uvm.page_meta(pg).lock().flags.insert(PageFlags::CLEAN);
            a.page = Some(pg);
            drop(a);
            drop(held);

            // Everything is unlocked; the BUSY page stands for us.
            self.bump(|s| &s.pageins);
            let result = swap
                .dev
                .read(slot, self.uvm.mem().as_ref(), self.uvm.pa(pg));

            let relocked = self.relock(view);
            let mut a2 = anon.lock();
            let released = self
                .uvm
                .page_meta(pg)
                .lock()
                .flags
                .contains(PageFlags::RELEASED);
            if result.is_err() {
                if let SwapSlot::Slot(s) = a2.swslot {
                    self.uvm.swap_mark_bad(s);
                    self.bump(|s| &s.swpgbad);
                }
                a2.swslot = SwapSlot::Bad;
                if a2.page == Some(pg) {
                    a2.page = None;
                }
                // Never unbusied, so never mapped: free it (or let the release path do it).
                if released {
                    self.uvm.unbusy(pg);
                } else {
                    self.uvm.free_page(pg);
                }
                return Err(FaultError::Io.into());
            }
            if released {
                // The anon was freed while we read: drop the page and refault.
                self.bump(|s| &s.fltpgrele);
                self.uvm.unbusy(pg);
                return Err(Step::ReFault);
            }
            self.uvm.activate(pg);
            self.uvm.unbusy(pg);
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
