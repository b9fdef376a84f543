//! Wiring: faulting a range in and pinning it (the seed's `uvm_fault_wire`), undoing it
//! (`uvm_fault_unwire`, `uvm_fault_unwire_locked`), and keeping page wiring with the mappings.
//!
//! # Page wiring follows wired mappings
//!
//! A page's `wire_count` is the number of WIRED stage-2 leaves that map it, in every VM. The
//! seed wires pages only in a wiring fault and unwires whatever the pmap maps at unwire time,
//! which goes wrong as soon as a wired entry's mapping changes page: a promoting write fault (1B,
//! 2B) on a wired entry maps the new page WIRED and strands the wiring on the old one, which then
//! stays off the paging queues for ever (modern NetBSD tracks this as `wire_paging`). So here:
//!
//! - every mapping the fault routine enters goes through [`enter_page`], which reads the leaf it
//!   replaces under the pmap lock and moves the wiring: the new page gains one if the new leaf is
//!   WIRED, the old page loses one if the old leaf was (nothing changes when both are the same
//!   wired leaf). A wiring fault needs nothing else: its leaf is WIRED.
//! - a wired leaf is never removed by `Pmap::protect` (it becomes a no-access leaf, see
//!   `Stage2::protect`), and one removed by `Uvm::page_protect` (the page is being freed or
//!   replaced) takes its wiring with it.
//! - [`unwire_pages`] clears each leaf's wired bit and unwires the page of each leaf that had it.

use super::{fault, FaultError, FaultFlags};
use crate::addr::{Access, Ipa, PageIdx, Prot};
use crate::map::{Map, MapInner};
use crate::pmap::{EnterFlags, PmapError};
use crate::uvm::Uvm;

/// Enter `pg` at `ipa` in `map`'s stage-2 table, WIRED when `wired`, and move page wiring along
/// with the leaf it replaces (see the module documentation).
///
/// # Locks
/// Entry: MAPS (and the owner's lock, or the page BUSY) held by the caller; no PMAP-or-later
/// lock. Takes PMAP, then PAGE and PAGE QUEUES.
pub(super) fn enter_page(
    uvm: &Uvm,
    map: &Map,
    ipa: Ipa,
    pg: PageIdx,
    prot: Prot,
    wired: bool,
) -> Result<(), PmapError> {
    let flags = EnterFlags::CANFAIL
        | if wired {
            EnterFlags::WIRED
        } else {
            EnterFlags::empty()
        };
    let pa = uvm.pa(pg);
    let old = map.stage2().enter_replacing(ipa, pa, prot, flags)?;
    let old_wired = old.and_then(|(opa, w)| w.then_some(opa));
    let new_wired = wired.then_some(pa);
    if old_wired != new_wired {
        if new_wired.is_some() {
            uvm.wire(pg);
        }
        if let Some(opg) = old_wired.and_then(|opa| uvm.page_at(opa)) {
            uvm.unwire(opg);
        }
    }
    Ok(())
}

/// Wire `[start, end)` page by page (the seed's `uvm_fault_wire`): each page faulted in with full
/// access, no neighbourhood, its page wired and its mapping entered WIRED. `wiremax` checks the
/// entry's maximum protection instead of its current one. On failure the pages already wired are
/// unwired.
///
/// # Locks
/// Entry: nothing held for this map. Exit: nothing.
pub fn fault_wire(map: &Map, start: Ipa, end: Ipa, wiremax: bool) -> Result<(), FaultError> {
    if start > end {
        return Err(FaultError::NoMapping);
    }
    let flags = if wiremax {
        FaultFlags::WIREMAX
    } else {
        FaultFlags::WIRE
    };
    for va in crate::fork::pages(start.page_base(), end) {
        if let Err(e) = fault(map, va, Access::Read, flags) {
            if va != start.page_base() {
                unwire(map, start.page_base(), va);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Unwire `[start, end)` (the seed's `uvm_fault_unwire`): every wired mapping is made pageable
/// and its page unwired.
///
/// # Locks
/// Entry: nothing held for this map. Takes MAPS for reading. Exit: nothing.
pub fn unwire(map: &Map, start: Ipa, end: Ipa) {
    let g = map.read();
    unwire_pages(map, &g, start, end);
}

/// The guts of [`unwire`] (the seed's `uvm_fault_unwire_locked`). Unlike the seed, the wired bit
/// is cleared even if the entry is still wired: this is only called when the wiring of the range
/// is being undone (unwire at wired count zero, remove, a failed `fault_wire`), and a page is
/// unwired exactly when its leaf loses the wired bit, so the two cannot drift apart. A no-access
/// leaf kept only for its wiring goes away with it.
///
/// # Locks
/// Entry and exit: MAPS held (read or write) by the caller. Takes PMAP, PAGE, PAGE QUEUES.
pub(crate) fn unwire_pages(map: &Map, _g: &MapInner, start: Ipa, end: Ipa) {
    let uvm = map.uvm();
    for va in crate::fork::pages(start.page_base(), end) {
        if let Some(pg) = map.stage2().unwire_leaf(va).and_then(|pa| uvm.page_at(pa)) {
            uvm.unwire(pg);
        }
    }
}
