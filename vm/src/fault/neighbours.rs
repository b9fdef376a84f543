//! The fault's neighbourhood: pages around the faulting IPA that are mapped on the way (the
//! neighbour loops of the seed's `uvm_fault_upper_lookup` and `uvm_fault_lower_lookup`), and the
//! deactivation of the pages behind a sequential fault (`uvmfault_anonflush`).

use alloc::sync::Arc;

use super::{Fault, View, Want};
use crate::addr::{Ipa, Prot};
use crate::anon::Anon;
use crate::object::{Object, PageSlot};
use crate::page::{Busy, PageFlags};

impl<'m> Fault<'m> {
    /// Deactivate the resident pages of `anons` (the seed's `uvmfault_anonflush`), clearing their
    /// reference (see `Uvm::deactivate`); busy and wired pages are left alone, and so are shared
    /// ones (`an_ref > 1`; the seed deactivates them too): one slot streamed past says nothing
    /// of the other slots using the page, in other VMs or, once dedup merged pages of this VM,
    /// in this one — the shared zero page may even lie ahead of this very fault, which
    /// deactivated it and mapped it again (found by the model test).
    ///
    /// # Locks
    /// Entry and exit: MAPS, AMAP held. Takes each ANON, then PAGE and PAGE QUEUES, then (with
    /// the ANON still held) PMAP locks through the reverse map.
    pub(super) fn anonflush<'a>(&self, anons: impl Iterator<Item = &'a Arc<Anon>>) {
        for anon in anons {
            let a = anon.lock();
            if let Some(pg) = a.page.filter(|_| a.an_ref == 1) {
                // `deactivate` leaves BUSY (and wired) pages where they are.
                let _ = self.uvm.deactivate(pg);
            }
        }
    }

    /// Map a resident, unloaned, non-busy neighbour anon page (read-only while shared or
    /// clean). A pmap failure is ignored: this page is not the one faulting. Returns whether the
    /// page carried the readahead mark, which it clears (the caller starts the next window:
    /// `readahead.rs`).
    ///
    /// # Locks
    /// Entry and exit: MAPS, AMAP held. Takes the ANON lock, then PMAP, PAGE, PAGE QUEUES.
    pub(super) fn map_neighbour_anon(
        &mut self,
        anon: &Arc<Anon>,
        currva: Ipa,
        enter_prot: Prot,
        wired: bool,
    ) -> bool {
        let a = anon.lock();
        let Some(pg) = a.page else { return false };
        let (ok, marked, clean) = {
            let mut m = self.uvm.page_meta(pg).lock();
            let ok = m.loan_count == 0 && !m.flags.contains(PageFlags::BUSY);
            let marked = ok && super::readahead::take_mark(&mut m.flags);
            (ok, marked, m.flags.contains(PageFlags::CLEAN))
        };
        if !ok {
            return false;
        }
        self.bump(|s| &s.fltnamap);
        // Clean: read-only until a write faults, as in 1A (`upper.rs`).
        let prot = if a.an_ref > 1 || clean {
            enter_prot - Prot::WRITE
        } else {
            enter_prot
        };
        if super::wire::enter_page(self.uvm, self.map, currva, pg, prot, wired).is_ok() {
            self.neighbours = self.neighbours.saturating_add(1);
            if prot.contains(Prot::WRITE) {
                self.uvm.mark_dirty(pg);
            }
        }
        marked
    }

    /// Map the neighbour pages a LOCKED get found (taking them out of `pages`), giving their BUSY
    /// back; return the center page (still BUSY) if it was found.
    ///
    /// # Locks
    /// Entry and exit: MAPS, AMAP (if any) held; the returned page is BUSY. Takes PMAP, PAGE,
    /// PAGE QUEUES.
    pub(super) fn map_neighbour_pages(
        &mut self,
        obj: &dyn Object,
        pages: &mut [PageSlot],
        startva: Ipa,
        centeridx: usize,
        want: Want,
        view: &View,
    ) -> Option<Busy> {
        let mut center = None;
        for (lcv, slot) in pages.iter_mut().enumerate() {
            let PageSlot::Page(busy) = core::mem::replace(slot, PageSlot::Empty) else {
                continue;
            };
            if lcv == centeridx {
                center = Some(busy);
                continue;
            }
            let pg = busy.page();
            let currva = startva.add_pages(lcv as u64);
            self.bump(|s| &s.fltnomap);
            let readonly = {
                let m = self.uvm.page_meta(pg).lock();
                m.flags.contains(PageFlags::RDONLY) || m.loan_count > 0 || obj.needs_write_fault()
            };
            let prot = if readonly {
                want.enter_prot - Prot::WRITE
            } else {
                want.enter_prot & view.mask()
            };
            let mapped =
                super::wire::enter_page(self.uvm, self.map, currva, pg, prot, want.wired).is_ok();
            if mapped {
                self.neighbours = self.neighbours.saturating_add(1);
            }
            // Mapped writable without a fault: no longer equal to the object's source. The page
            // is on a paging queue already (`alloc_page`), unless wired.
            self.uvm
                .finish_page(busy, mapped && prot.contains(Prot::WRITE), false);
        }
        center
    }
}
