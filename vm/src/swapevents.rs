//! What the pagedaemon and swap-in tell a listener (the hypervisor's trace): each page written
//! to or read from swap, each slot marked bad, and each reclaim pass's scan — the records behind
//! the counters `pageouts`, `pageins` and `readaheads`, `swpgbad`, `pdscans`, `pdfreed` and
//! `pddeact`.
//!
//! The engine names a page by a stage-2 mapping of it (the VMID and IPA the reverse map gives
//! before the page is unmapped), not by the hypervisor's VM number: turning a VMID into a VM is
//! the listener's business, and it must not take the hypervisor's VM table for it (see
//! [`SwapEvents`]).
//!
//! Cost without a listener: one read of the listener lock per event, and no reverse-map lookup
//! (`Uvm::swap_events_on`).

use crate::addr::Ipa;
use crate::pmap::Vmid;

/// Where a page was mapped when it went to swap or came back: `None` when it was mapped nowhere
/// (a page-out of a page no VM maps at stage 2, or a page-in the listener cannot place).
pub type Place = Option<(Vmid, Ipa)>;

/// Which transfer failed on a slot.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SlotIo {
    Read,
    Write,
}

/// One pagedaemon or swap event.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SwapEvent {
    /// The page mapped at `at` was written to `slot` and its frame freed (one per `pageouts`
    /// that succeeded).
    PageOut { at: Place, slot: u32 },
    /// A read of the page mapped at `at` from `slot` started: a fault's swap-in (one per
    /// `pageins`) or a read ahead of a following page by a SEQUENTIAL fault (one per
    /// `readaheads`, `at` where the faulting entry maps that page).
    PageIn { at: Place, slot: u32 },
    /// `slot` was marked bad after a failed transfer (one per `swpgbad`).
    BadSlot { slot: u32, io: SlotIo },
    /// One reclaim pass: pages examined (`pdscans`), frames freed (`pdfreed` and clean object
    /// pages), pages moved to the inactive queue (`pddeact`).
    Scan {
        scanned: u32,
        freed: u32,
        deactivated: u32,
    },
}

/// The listener (`Uvm::set_swap_events`).
pub trait SwapEvents: Send + Sync {
    /// Told `event`.
    ///
    /// # Locks
    /// Called with no engine lock held (after the write, after the anon and page are
    /// unlocked), but possibly from inside a fault, whose caller may hold its own locks: an
    /// implementation takes only leaf locks of its own (the hypervisor's trace buffers), never
    /// the hypervisor's VM table.
    fn swap_event(&self, event: SwapEvent);
}

#[cfg(test)]
#[path = "swapevents_tests.rs"]
mod tests;
