//! `anonget`: make an anon's data resident (the seed's `uvmfault_anonget`), reading it from swap
//! with every lock dropped and re-verifying the world afterwards.

use alloc::sync::Arc;

use super::{Fault, FaultError, Held, Need, Step, View};
use crate::anon::{Anon, AnonState, SwapSlot};
use crate::page::{Owner, PageFlags};

pub(super) type AnonGuard<'a> = crate::sync::MutexGuard<'a, AnonState>;

impl<'m> Fault<'m> {
    /// Make the anon's data resident in a page that is neither BUSY nor RELEASED (the seed's
    /// `uvmfault_anonget`), reading it from swap if needed.
    ///
    /// A BUSY page means someone else is doing I/O on it: the seed sleeps, we return `Restart`
    /// (after setting WANTED). A swap-in allocates a BUSY|FAKE|CLEAN page, unlocks everything,
    /// reads, relocks (version check), and then: read error → mark the slot bad (the anon's, or
    /// when the anon was freed meanwhile the one it left with the RELEASED page), free the page,
    /// fail with `Io`; released meanwhile → free the page and its slot and refault; success →
    /// unbusy and loop.
    ///
    /// Also returns whether the page is loaned (read in the same PAGE lock round trip).
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
    ) -> Result<(Held<'a>, AnonGuard<'a>, bool), Step>
    where
        'm: 'a,
    {
        self.bump(|s| &s.fltanget);
        let (mut held, mut a) = (held, a);
        loop {
            if let Some(pg) = a.page {
                let mut m = self.uvm.page_meta(pg).lock();
                if !m.flags.contains(PageFlags::BUSY) {
                    let loaned = m.loan_count > 0;
                    drop(m);
                    return Ok((held, a, loaned));
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
            let released = self.uvm.page_has(pg, PageFlags::RELEASED);
            if result.is_err() {
                if released {
                    // The anon was freed while we read: its slot came with the page.
                    if self.uvm.mark_released_slot_bad(pg) {
                        self.bump(|s| &s.swpgbad);
                    }
                    self.uvm.unbusy(busy);
                    return Err(FaultError::Io.into());
                }
                if let SwapSlot::Slot(s) = a2.swslot {
                    self.uvm.swap_mark_bad(s);
                    self.bump(|s| &s.swpgbad);
                }
                a2.swslot = SwapSlot::Bad;
                if a2.page == Some(pg) {
                    a2.page = None;
                }
                // Never unbusied, so never mapped: free it.
                self.uvm.free_page(busy);
                return Err(FaultError::Io.into());
            }
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
