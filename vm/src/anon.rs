//! Anons: the upper layer's unit of memory (the seed's `struct vm_anon`).
//!
//! An anon is one page of private memory. Its data is in a resident page, in a swap slot, or in
//! both (a clean resident copy of a swapped page). `an_ref` counts the amap slots that point at it:
//! an anon with `an_ref > 1` is shared copy-on-write (after a fork) and is never written in place;
//! the first write promotes it (case 1B).
//!
//! # Locks
//! `Anon::lock` is the ANON lock: taken after AMAP and OBJECT, before PMAP and PAGE. It protects
//! `an_ref`, `page` and `swslot`; the page's own flags are changed with it held (or by the holder
//! of BUSY).
//!
//! # A free during I/O
//! An anon freed while the page it owns is BUSY (a page-out writing it, a swap-in reading into it)
//! hands its page *and its swap slot* to the BUSY holder (the page is marked RELEASED and keeps
//! the slot in `released_swslot`), as the seed keeps both until `uvm_anon_release`: the holder's
//! I/O is still using the slot, which must not be handed out again before it completes. The
//! holder frees the page and the slot together (`Uvm::unbusy` → `Uvm::free_page`), or marks the
//! slot bad when its read failed.

use alloc::sync::Arc;

use crate::addr::{PageIdx, Prot};
use crate::page::{Busy, Owner, PageFlags};
use crate::uvm::Uvm;

/// Where an anon's data lives on swap.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum SwapSlot {
    /// Never swapped (or the slot was dropped): the resident page is the only copy.
    #[default]
    None,
    /// A slot holding a copy of the data (1-based, as the seed's `an_swslot`).
    Slot(u32),
    /// A read from the slot failed: the data is lost and the slot is never used again
    /// (the seed's `SWSLOT_BAD`).
    Bad,
}

/// The state behind an anon's lock.
#[derive(Debug)]
pub struct AnonState {
    /// Amap slots referring to this anon.
    pub an_ref: u32,
    /// The resident page, if any.
    pub page: Option<PageIdx>,
    /// The swap copy, if any.
    pub swslot: SwapSlot,
    /// Of the `an_ref` references, how many count as a dedup merge's: the frames dedup saves
    /// through this anon (see `dedup.rs`). A reference that goes is taken from
    /// these first ([`AnonState::unmerge_one`]): which slot's reference went is not known, and
    /// so dedup never claims a frame that a fork's sharing may be what saves. Always at most
    /// `an_ref - 1`.
    pub merged: u32,
}

impl AnonState {
    /// `an_ref` was just lowered: count the reference against the merged ones first (see
    /// [`AnonState::merged`]). True when that ended a saving of dedup (one frame is no longer
    /// saved); the caller counts it in `dedup_unmerged`.
    ///
    /// # Locks
    /// Entry and exit: the anon is locked (`self`); takes nothing.
    pub(crate) fn unmerge_one(&mut self) -> bool {
        let ended = self.merged > 0;
        self.merged = self.merged.saturating_sub(1);
        debug_assert!(self.merged < self.an_ref.max(1));
        ended
    }
}

/// One anonymous page.
#[derive(Debug)]
pub struct Anon {
    state: crate::sync::Mutex<AnonState>,
}

impl Anon {
    /// A new anon with `an_ref == 1`, no page and no swap slot.
    ///
    /// # Locks
    /// None: the new anon is unreachable by anyone else until the caller stores it.
    pub fn new() -> Arc<Anon> {
        Arc::new(Anon {
            state: crate::sync::Mutex::new(AnonState {
                an_ref: 1,
                page: None,
                swslot: SwapSlot::None,
                merged: 0,
            }),
        })
    }

    /// A new anon (`an_ref == 1`) owning a new BUSY page: the seed's `uvm_analloc` followed by
    /// `uvm_pagealloc(..., anon, ...)`, as one step. The page is zero-filled when `zero`, FAKE
    /// (its contents still to come) otherwise; the caller holds it BUSY (the token returned).
    /// `None` when no frame is free (the anon made for it is dropped again).
    ///
    /// The page's owner is the anon under construction, so the anon is born with its page and
    /// without a lock round trip to store it.
    ///
    /// # Locks
    /// Takes PAGE QUEUES, then PAGE (`Uvm::alloc_page`); any lock above them may be held. The new
    /// anon is reachable only through its page's owner, and that page is BUSY.
    pub(crate) fn with_new_page(uvm: &Uvm, zero: bool) -> Option<(Arc<Anon>, Busy)> {
        let mut busy = None;
        let anon = Arc::new_cyclic(|me| {
            busy = uvm.alloc_page(Owner::Anon(me.clone()), zero);
            Anon {
                state: crate::sync::Mutex::new(AnonState {
                    an_ref: 1,
                    page: busy.as_ref().map(Busy::page),
                    swslot: SwapSlot::None,
                    merged: 0,
                }),
            }
        });
        Some((anon, busy?))
    }

    /// Take the ANON lock.
    ///
    /// # Locks
    /// Takes ANON (after MAPS, AMAP and OBJECT, before PMAP, PAGE and PAGE QUEUES); held until the
    /// guard drops.
    pub fn lock(&self) -> crate::sync::MutexGuard<'_, AnonState> {
        self.state.lock()
    }
}

/// Drop one amap reference of `anon`; free it when it was the last (the seed's
/// `an_ref--; if (an_ref == 0) uvm_anfree(anon)`).
///
/// # Locks
/// Entry: the AMAP that held the reference is locked by the caller, the anon is not.
/// Exit: same.
pub(crate) fn anon_unref(uvm: &Uvm, anon: &Arc<Anon>) {
    anon_unref_locked(uvm, &mut anon.lock());
}

/// [`anon_unref`] for a caller that holds the anon's lock (and needs it held around the drop, so
/// that the page it saw cannot be paged out and its frame reused meanwhile).
///
/// A reference a dedup merge added ends here too (counted in the engine's `dedup_unmerged`).
///
/// # Locks
/// Entry and exit: the anon is locked (and the AMAP that held the reference, as for
/// [`anon_unref`]). Takes what [`anon_free_locked`] takes.
pub(crate) fn anon_unref_locked(uvm: &Uvm, st: &mut AnonState) {
    st.an_ref = st.an_ref.saturating_sub(1);
    if st.unmerge_one() {
        crate::stats::Stats::bump(&uvm.own_stats().dedup_unmerged);
    }
    if st.an_ref == 0 {
        anon_free_locked(uvm, st);
    }
}

/// Free an anon whose `an_ref` reached zero: its page and its swap slot (the seed's `uvm_anfree`).
///
/// A BUSY page (I/O in progress) is marked RELEASED and left to the BUSY holder with the swap slot
/// (see the module documentation): the holder frees both when it unbusies. A loaned page is given
/// up but lives on while the loan lasts.
///
/// # Locks
/// Entry and exit: the anon is locked. Takes PMAP (through the reverse map), PAGE and PAGE QUEUES,
/// and the swap map's lock (a leaf).
pub(crate) fn anon_free_locked(uvm: &Uvm, st: &mut AnonState) {
    if let Some(pg) = st.page.take() {
        release_anon_page(uvm, pg, &mut st.swslot);
    }
    anon_dropswap_locked(uvm, st);
}

/// Give up the anon's hold on `pg` (see [`anon_free_locked`]). A BUSY `pg` is RELEASED and takes
/// the anon's `swslot` with it (its BUSY holder frees both); otherwise `swslot` is left alone.
///
/// # Locks
/// Entry and exit: the owning anon locked, its `page` already taken; `pg` not BUSY for the caller.
/// Takes PAGE; then, with PAGE released, PMAP (through the reverse map) and PAGE QUEUES to free the
/// page, or PAGE QUEUES alone to dequeue a page lent out. A BUSY page the anon owns alone is only
/// marked RELEASED: its BUSY holder frees it when it unbusies (`Uvm::unbusy`). A borrowed page
/// ends its loan, BUSY or not (it stays the object's).
pub(crate) fn release_anon_page(uvm: &Uvm, pg: PageIdx, swslot: &mut SwapSlot) {
    enum Then {
        Nothing,
        Free(Busy),
        Orphan,
    }
    let then = {
        let mut m = uvm.page_meta(pg).lock();
        // Loans first, as the seed's `uvm_anfree`: a page we do not own alone is never RELEASED,
        // or its BUSY holder would free a page someone else still has.
        if matches!(m.owner, Owner::Object { .. }) {
            // We were the receiver of an object → anon loan: end our loan. The page is the
            // object's, BUSY or not.
            m.loan_count = m.loan_count.saturating_sub(1);
            m.loan_anon = None;
            Then::Nothing
        } else if m.loan_count > 0 {
            // We lent the page out: it lives on, owned by nobody, until the loans end.
            m.owner = Owner::Orphan;
            Then::Orphan
        } else if m.flags.contains(PageFlags::BUSY) {
            m.flags.insert(PageFlags::RELEASED);
            m.released_swslot = core::mem::take(swslot);
            Then::Nothing
        } else {
            // Claim it so that nobody starts using it while the mappings go (not BUSY: checked
            // above, under the same lock).
            Busy::claim(&mut m, pg).map_or(Then::Nothing, Then::Free)
        }
    };
    match then {
        Then::Nothing => {}
        Then::Orphan => uvm.dequeue(pg),
        Then::Free(busy) => {
            uvm.page_protect(pg, Prot::NONE);
            uvm.free_page(busy);
        }
    }
}

/// Release the anon's swap slot (the seed's `uvm_anon_dropswap`). A BAD slot stays BAD on the
/// device but the anon forgets it.
///
/// # Locks
/// Entry and exit: the anon is locked.
pub(crate) fn anon_dropswap_locked(uvm: &Uvm, st: &mut AnonState) {
    if let SwapSlot::Slot(slot) = st.swslot {
        uvm.swap_free(slot);
    }
    st.swslot = SwapSlot::None;
}
