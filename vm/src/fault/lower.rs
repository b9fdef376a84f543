//! Case 2: no anon at the faulting IPA: the object's page (2A) or a promotion of it or of zeroes
//! into a new anon (2B).

use super::{Fault, FaultCase, FaultError, Held, Need, Step, View, Want};
use crate::addr::Prot;
use crate::anon::{anon_unref, Anon};
use crate::object::{GetMode, PageSlot, PagerError};
use crate::page::{Busy, PageFlags};

impl<'m> Fault<'m> {
    /// Handle case 2. `uobjpage` is the center object page if the LOCKED get found it (BUSY).
    ///
    /// If the object page is not resident, everything is unlocked for a SYNC get, then relocked
    /// and re-verified (version unchanged, page not released, amap slot still empty).
    ///
    /// # Locks
    /// Entry: MAPS (read) and AMAP (if any) held in `held`; `uobjpage` BUSY. Takes OBJECT (inside
    /// the pager), ANON (an anon replaced in the slot, never the new one: see `AmapState::add`),
    /// PMAP, PAGE, PAGE QUEUES. Exit: nothing, on every path.
    pub(super) fn case2<'a>(
        &mut self,
        held: Held<'a>,
        view: &'a View,
        uobjpage: Option<Busy>,
        mut want: Want,
    ) -> Result<FaultCase, Step>
    where
        'm: 'a,
    {
        let promote = match &view.object {
            None => true,
            Some(_) => want.cow_now && view.copy_on_write,
        };
        let mut held = held;
        let mut uobjpage = uobjpage;

        if let (Some((obj, _)), None) = (&view.object, &uobjpage) {
            drop(held);
            self.bump(|s| &s.fltget);
            let uoff = view.offset(self.ipa).ok_or(FaultError::NoBacking)?;
            let mut slot = [PageSlot::Empty];
            let access = want.access_type & view.mask();
            let got = obj.get(
                self.uvm,
                uoff,
                &mut slot,
                0,
                access,
                view.advice,
                GetMode::Sync,
            );
            let [slot] = slot;
            let busy = match (got, slot) {
                (Ok(_), PageSlot::Page(busy)) => busy,
                (Err(PagerError::Again(pg)), _) => {
                    self.waited.set(Some(pg));
                    self.bump(|s| &s.fltpgwait);
                    return Err(FaultError::Restart.into());
                }
                (Err(PagerError::NoMemory), _) => {
                    self.bump(|s| &s.fltnoram);
                    return Err(self.reclaim_or_nomem(None, Need::Page));
                }
                (Err(PagerError::OutOfRange), _) => return Err(FaultError::NoBacking.into()),
                _ => return Err(FaultError::Io.into()),
            };
            self.uvm.activate(busy.page());

            let relocked = self.relock(view);
            let released = self.uvm.page_has(busy.page(), PageFlags::RELEASED);
            let slot_taken = match (&relocked, view.slot(self.ipa)) {
                (Some(Held { amap: Some(st), .. }), Some(s)) => st.lookup(s).is_some(),
                _ => false,
            };
            match relocked {
                Some(h) if !released && !slot_taken => held = h,
                other => {
                    drop(other);
                    if released {
                        self.bump(|s| &s.fltpgrele);
                    }
                    self.uvm.unbusy(busy);
                    return Err(Step::ReFault);
                }
            }
            uobjpage = Some(busy);
        }

        if !promote {
            // Case 2A: map the object's page.
            let (Some((obj, _)), Some(mut pg)) = (&view.object, uobjpage) else {
                return Err(FaultError::NoBacking.into());
            };
            self.bump(|s| &s.flt_obj);
            if view.copy_on_write || obj.needs_write_fault() {
                want.enter_prot -= Prot::WRITE;
            }
            let loaned = self.uvm.page_meta(pg.page()).lock().loan_count > 0;
            if loaned {
                if !want.cow_now {
                    want.enter_prot -= Prot::WRITE;
                } else {
                    let uoff = view.offset(self.ipa).unwrap_or(0);
                    match obj.loan_break(self.uvm, uoff, pg) {
                        Ok(npg) => {
                            self.bump(|s| &s.fltloanbreak);
                            pg = npg;
                        }
                        Err(pg) => {
                            // `pg` stays BUSY through the reclaim: it is what we refault for.
                            drop(held);
                            self.bump(|s| &s.fltnoram);
                            return Err(self.reclaim_or_nomem(Some(pg), Need::Page));
                        }
                    }
                }
            }
            return self.finish_case2(held, pg, false, want, FaultCase::Obj2A);
        }

        // Case 2B: promote into a new anon (copy of the object page, or zeroes).
        let (Some(st), Some(slot)) = (held.amap.as_mut(), view.slot(self.ipa)) else {
            if let Some(opg) = uobjpage {
                self.uvm.unbusy(opg);
            }
            return Err(FaultError::NoBacking.into());
        };
        let Some((new, nbusy)) = Anon::with_new_page(self.uvm, uobjpage.is_none()) else {
            // The object page stays BUSY through the reclaim: freeing the page we just read, to
            // read it again on the refault, is no progress.
            drop(held);
            self.bump(|s| &s.fltnoram);
            return Err(self.reclaim_or_nomem(uobjpage, Need::Page));
        };
        let case = match uobjpage {
            Some(opg) => {
                self.uvm
                    .mem()
                    .copy(self.uvm.pa(nbusy.page()), self.uvm.pa(opg.page()));
                self.bump(|s| &s.flt_prcopy);
                if st.shared() {
                    // Every sharer must see the new anon, not the object page.
                    self.uvm.page_protect(opg.page(), Prot::NONE);
                }
                self.uvm.unbusy(opg);
                FaultCase::ObjCopy2B
            }
            None => {
                self.bump(|s| &s.flt_przero);
                FaultCase::Zero2B
            }
        };
        match st.add(slot, new) {
            Some(Some(old)) => anon_unref(self.uvm, &old),
            Some(None) => {}
            None => {
                // A slot outside the amap: cannot happen for the entry's own IPA. The new anon is
                // gone with the slot; give its page back and refault.
                self.uvm.free_page(nbusy);
                return Err(Step::ReFault);
            }
        }
        self.finish_case2(held, nbusy, true, want, case)
    }

    /// Enter the BUSY page `pg` (wiring it with a wired mapping; otherwise an object page is
    /// activated, a new anon's is on the active queue already), and clear BUSY. `new_anon`: `pg` is the page of the anon 2B just put in the amap (not an
    /// object page, 2A).
    ///
    /// The new anon is not locked: its state (`an_ref`, `page`, `swslot`) is not changed here,
    /// faulters reach it only through the AMAP lock we hold, and the pagedaemon (through the
    /// page's owner) finds the page BUSY until `finish_page` (or, when `enter` fails, until the
    /// reclaim path unbusies it, the page then unmapped but on the active queue).
    ///
    /// # Locks
    /// Entry: MAPS, AMAP (if any) held; `pg` BUSY. Exit: nothing.
    fn finish_case2(
        &self,
        held: Held<'_>,
        busy: Busy,
        new_anon: bool,
        want: Want,
        case: FaultCase,
    ) -> Result<FaultCase, Step> {
        // A new anon's page was just allocated: never RDONLY.
        let pg = busy.page();
        let rdonly = !new_anon && self.uvm.page_has(pg, PageFlags::RDONLY);
        let prot = if rdonly {
            want.enter_prot - Prot::WRITE
        } else {
            want.enter_prot
        };
        if !self.enter(pg, prot, want) {
            // `pg` stays BUSY through the reclaim (see `reclaim_or_nomem`). A new anon's page is
            // on the active queue since its allocation: should the refault end `NoMemory`, the
            // page stays in the amap unmapped, where the pagedaemon can take it.
            drop(held);
            return Err(self.reclaim_or_nomem(Some(busy), Need::Table));
        }
        // `enter` wired the page if the mapping is wired (see `wire.rs`). A page mapped writable
        // (written through a shared mapping, for an object page) is no longer CLEAN, nor is a
        // wired anon page (it has no swap copy). One PAGE lock round trip for all of it.
        let dirty = prot.contains(Prot::WRITE) || (want.wired && new_anon);
        // A new page is on the active queue since its allocation (or off the queues, wired).
        self.uvm.finish_page(busy, dirty, !want.wired && !new_anon);
        drop(held);
        Ok(case)
    }
}
