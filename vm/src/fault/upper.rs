//! Case 1: the faulting IPA has an anon in the amap (the upper layer).

use alloc::sync::Arc;

use super::{Fault, FaultCase, Held, Need, Step, View, Want};
use crate::addr::{PageIdx, Prot};
use crate::anon::{anon_dropswap_locked, Anon, AnonState};
use crate::page::Owner;

impl<'m> Fault<'m> {
    /// Handle case 1: make the anon's data resident, handle loans, then 1A (map it) or 1B (copy
    /// it into a new anon and map that).
    ///
    /// 1A maps a CLEAN page (its swap copy current) read-only unless the fault writes: the
    /// stage 2 keeps no modified bit, so the write that dirties the page must fault (then 1A maps
    /// it writable and clears CLEAN), as NetBSD's pmaps emulate the modified bit where the MMU
    /// has none. Mapped writable at once, every page read back from swap would count as dirty
    /// and be written again when paged out, though the guest only read it.
    ///
    /// # Locks
    /// Entry: MAPS (read) and AMAP held in `held`. Takes the ANON lock (not the new anon's in 1B:
    /// see `AmapState::add`), then PMAP, PAGE, PAGE QUEUES. Exit: nothing, on every path.
    ///
    /// The anon's page is kept by the ANON lock, not by BUSY (anonget hands it over without a
    /// token): 1A maps it and leaves its BUSY bit alone, and a reclaim keeps it only if
    /// `Uvm::try_busy` gets it (a `copy_in` may hold it BUSY; that BUSY is the copy's).
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
        let (mut held, mut a, resident) = self.anonget(held, view, anon, a)?;
        let Some(mut pg) = a.page else {
            return Err(Step::ReFault);
        };

        // Loaned page: never written in place.
        if resident.loaned {
            if !want.cow_now {
                want.enter_prot -= Prot::WRITE;
            } else if a.an_ref == 1 {
                match self.break_anon_loan(anon, &mut a, pg) {
                    Some(npg) => pg = npg,
                    None => {
                        let keep = self.uvm.try_busy(pg);
                        drop(a);
                        drop(held);
                        self.bump(|s| &s.fltnoram);
                        return Err(self.reclaim_or_nomem(keep, Need::Page));
                    }
                }
            }
        }

        if want.cow_now && a.an_ref > 1 {
            // Case 1B: promote into a new anon with a copy of the data.
            self.bump(|s| &s.flt_acow);
            let Some((new, nbusy)) = Anon::with_new_page(self.uvm, false) else {
                // Keep the page we copy from through the reclaim (see `reclaim_or_nomem`).
                let keep = self.uvm.try_busy(pg);
                drop(a);
                drop(held);
                self.bump(|s| &s.fltnoram);
                return Err(self.reclaim_or_nomem(keep, Need::Page));
            };
            let npg = nbusy.page();
            self.uvm.mem().copy(self.uvm.pa(npg), self.uvm.pa(pg));
            let slot = view.slot(self.ipa);
            let replaced = match (held.amap.as_mut(), slot) {
                (Some(st), Some(slot)) => st.add(slot, new),
                _ => None,
            };
            if replaced.is_none() {
                // Cannot happen with the amap locked: the new anon went with the slot; give its
                // page back and refault.
                self.uvm.free_page(nbusy);
                return Err(Step::ReFault);
            }
            // The amap no longer refers to the old anon from this slot (cannot reach zero: > 1).
            a.an_ref -= 1;
            if a.unmerge_one() {
                // A page dedup merged is private again: its saving ended.
                self.bump(|s| &s.dedup_unmerged);
            }
            if held.amap.as_ref().is_some_and(|st| st.shared()) {
                // Other maps share this amap (SHARE): they must find the new anon, not keep
                // mapping the old page (the seed's `amap_add(replace)` does the same). The
                // maps holding the old anon through another amap refault it (1A).
                self.uvm.page_protect(pg, Prot::NONE);
            }
            if !self.enter(npg, want.enter_prot, want) {
                // The new anon is in the amap; its page (on the active queue since its
                // allocation) stays BUSY through the reclaim.
                drop(a);
                drop(held);
                return Err(self.reclaim_or_nomem(Some(nbusy), Need::Table));
            }
            // The new anon is not locked, as in 2B (see `finish_case2`); it has no swap slot to
            // drop if wired, so only its page is finished (already on the active queue, or off
            // the queues if wired).
            let dirty = want.wired || want.enter_prot.contains(Prot::WRITE);
            self.uvm.finish_page(nbusy, dirty, false);
            return Ok(FaultCase::AnonCow1B);
        }

        // Case 1A: map the anon's own page (read-only while shared, or while clean).
        self.bump(|s| &s.flt_anon);
        if a.an_ref > 1 || (!want.cow_now && resident.clean) {
            want.enter_prot -= Prot::WRITE;
        }
        if !self.enter(pg, want.enter_prot, want) {
            // Keep the page through the reclaim, unless someone else holds it BUSY (then it is
            // theirs to unbusy, not ours: see `reclaim_or_nomem`).
            let keep = self.uvm.try_busy(pg);
            drop(a);
            drop(held);
            return Err(self.reclaim_or_nomem(keep, Need::Table));
        }
        self.finish_anon_page(&mut a, pg, want);
        Ok(FaultCase::Anon1A)
    }

    /// Case 1A, after a successful enter with `want.enter_prot` (which wired the page if the
    /// mapping is wired, see `wire.rs`): drop a wired page's swap copy (a wired page is never
    /// paged out, and a page without swap is not CLEAN) or activate; a page mapped writable is
    /// no longer CLEAN. BUSY is left alone: 1A never set it (the ANON lock keeps the page), so a
    /// BUSY bit here is someone else's, a `copy_in`'s (issue 7, bug 2: clearing it let the page
    /// be paged out and its frame reused mid-copy). The page part is one PAGE lock round trip
    /// ([`Uvm::finish_owned_page`]).
    ///
    /// # Locks
    /// Entry and exit: the anon's lock held. Takes PAGE, PAGE QUEUES.
    ///
    /// [`Uvm::finish_owned_page`]: crate::uvm::Uvm::finish_owned_page
    fn finish_anon_page(&self, a: &mut AnonState, pg: PageIdx, want: Want) {
        if want.wired {
            anon_dropswap_locked(self.uvm, a);
        }
        let dirty = want.wired || want.enter_prot.contains(Prot::WRITE);
        self.uvm.finish_owned_page(pg, dirty, !want.wired);
    }

    /// Write fault on a loaned page of an anon nobody else refers to: give the anon a private
    /// copy and end its part in the loan (the seed's "KILL loan"). `None` when no frame is free.
    ///
    /// The loan is judged again under the page's PAGE lock: the lending object may have broken
    /// the loan since anonget looked (an object-side write fault, under the object's lock, not
    /// ours), handing the page to this anon. Then the page is simply ours: the copy is dropped
    /// and `pg` returned.
    ///
    /// # Locks
    /// Entry and exit: MAPS, AMAP, ANON held. Takes PMAP, PAGE, PAGE QUEUES.
    fn break_anon_loan(&self, anon: &Arc<Anon>, a: &mut AnonState, pg: PageIdx) -> Option<PageIdx> {
        enum Loan {
            /// Broken by the lender meanwhile: the page is this anon's own.
            Gone,
            /// We borrowed it from an object: returned.
            Returned,
            /// We lent it out: the borrowers keep it, nobody owns it.
            Lent,
        }
        let nbusy = self
            .uvm
            .alloc_page(Owner::Anon(Arc::downgrade(anon)), false)?;
        let npg = nbusy.page();
        self.uvm.mem().copy(self.uvm.pa(npg), self.uvm.pa(pg));
        self.uvm.page_protect(pg, Prot::NONE);
        let loan = {
            let mut m = self.uvm.page_meta(pg).lock();
            if m.loan_count == 0 {
                debug_assert!(matches!(m.owner, Owner::Anon(_)), "handed to its borrower");
                Loan::Gone
            } else if matches!(m.owner, Owner::Object { .. }) {
                m.loan_count -= 1;
                m.loan_anon = None;
                Loan::Returned
            } else {
                m.owner = Owner::Orphan;
                Loan::Lent
            }
        };
        match loan {
            Loan::Gone => {
                // Its mappings went with the page_protect above: the caller maps it again.
                self.uvm.free_page(nbusy);
                return Some(pg);
            }
            Loan::Lent => self.uvm.dequeue(pg),
            Loan::Returned => {}
        }
        a.page = Some(npg);
        // Already on the active queue (`alloc_page`), where a BUSY page stays.
        self.uvm.unbusy(nbusy);
        self.bump(|s| &s.fltloanbreak);
        Some(npg)
    }
}
