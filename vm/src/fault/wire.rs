//! Wiring: faulting a range in and pinning it (the seed's `uvm_fault_wire`), and undoing it
//! (`uvm_fault_unwire`, `uvm_fault_unwire_locked`).

use super::{fault, FaultError, FaultFlags};
use crate::addr::{Access, Ipa};
use crate::map::{Map, MapInner};
use crate::pmap::Pmap;

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

/// Unwire `[start, end)` (the seed's `uvm_fault_unwire`): every mapped page is unwired, and its
/// mapping made pageable when its entry is no longer wired.
///
/// # Locks
/// Entry: nothing held for this map. Takes MAPS for reading. Exit: nothing.
pub fn unwire(map: &Map, start: Ipa, end: Ipa) {
    let g = map.read();
    unwire_pages(map, &g, start, end);
}

/// The guts of [`unwire`] (the seed's `uvm_fault_unwire_locked`).
///
/// # Locks
/// Entry and exit: MAPS held (read or write) by the caller. Takes PMAP, PAGE, PAGE QUEUES.
pub(crate) fn unwire_pages(map: &Map, g: &MapInner, start: Ipa, end: Ipa) {
    let uvm = map.uvm();
    for va in crate::fork::pages(start.page_base(), end) {
        let Some((pa, _)) = map.stage2().extract(va) else {
            continue;
        };
        if !g.lookup(va).is_some_and(|e| e.is_wired()) {
            map.stage2().unwire(va);
        }
        if let Some(pg) = uvm.page_at(pa) {
            uvm.unwire(pg);
        }
    }
}
