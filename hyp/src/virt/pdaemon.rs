//! The pagedaemon's hypervisor side: when the engine's clock (`vm::pdaemon`, `Uvm::reclaim`)
//! runs. The policy of what to free is the engine's; here is only the *when*:
//!
//! - **watermarks**: below [`low_water`] free frames the daemon frees up to [`high_water`], a
//!   bounded batch at a time ([`BATCH`]), after each fault that mapped a page ([`after_fault`])
//!   and on idle CPU time ([`on_idle`]) — so most faults find a free frame and never reclaim
//!   themselves. One CPU at a time runs it ([`RUNNING`]): several would only race for the same
//!   inactive pages.
//! - **empty pool**: a fault that still ended `NoMemory` (it reclaims itself, `reclaim_or_nomem`,
//!   but other CPUs took the frames it freed) is retried when the daemon can free something now
//!   ([`retry_after_no_memory`]); only when nothing is reclaimable is the VM stopped.
//!
//! Without a swap device only clean object pages can be freed, as before.
//!
//! # Locks
//! Nothing is held on entry to any function here; `Uvm::reclaim` takes the engine's locks.

use core::sync::atomic::{AtomicBool, Ordering};

use super::state::Hyp;

/// Frames one call frees at most (a fault's latency stays bounded).
pub const BATCH: usize = 64;
/// The daemon runs on one CPU at a time.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Below this many free frames the daemon runs: 1/64 of the pool (5 MiB of 320 MiB).
pub fn low_water(total: usize) -> usize {
    total / 64
}

/// The daemon stops freeing at this many free frames: 1/32 of the pool.
pub fn high_water(total: usize) -> usize {
    total / 32
}

/// Free frames up to the high watermark when below the low one, at most [`BATCH`]; returns how
/// many were freed (0 also when another CPU runs the daemon).
fn balance(h: &Hyp) -> usize {
    let (free, total) = (h.uvm.free_pages(), h.uvm.total_pages());
    if free >= low_water(total) || RUNNING.swap(true, Ordering::Acquire) {
        return 0;
    }
    let freed = h.uvm.reclaim((high_water(total) - free).min(BATCH));
    RUNNING.store(false, Ordering::Release);
    freed
}

/// After a fault mapped a page: keep the free frames above the low watermark.
pub fn after_fault(h: &Hyp) {
    if h.uvm.swap().is_some() {
        balance(h);
    }
}

/// An idle CPU: true if it freed frames (then it looks for vCPUs again instead of sleeping).
pub fn on_idle(h: &Hyp) -> bool {
    h.uvm.swap().is_some() && balance(h) != 0
}

/// A fault ended `NoMemory`: true when it is worth retrying, because the daemon freed frames
/// now or some are free again (other CPUs' page-outs).
pub fn retry_after_no_memory(h: &Hyp) -> bool {
    h.uvm.swap().is_some() && (h.uvm.can_allocate(false) || h.uvm.reclaim(BATCH) != 0)
}
