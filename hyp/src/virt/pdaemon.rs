//! The pagedaemon's hypervisor side: when the engine's clock (`vm::pdaemon`, `Uvm::reclaim`)
//! runs. The policy of what to free is the engine's; here is only the *when*, two watermarks as
//! Linux's kswapd and direct reclaim have:
//!
//! - **background**: below [`high_water`] free frames, idle CPUs free frames a batch at a time
//!   ([`BATCH`], [`on_idle`]) until the pool is above it; a fault that sees the pool below it
//!   wakes a sleeping CPU to do so ([`after_fault`]). A guest streaming through swapped memory
//!   (readahead takes half a window of frames at a time, `vm::fault::readahead`) then finds its
//!   frames freed by the other CPU, not by its own.
//! - **direct**: below [`low_water`] (no CPU idle, or the background cannot keep up) the CPU of
//!   the fault that mapped a page frees a batch itself ([`after_fault`]) — so most faults find a
//!   free frame and never reclaim themselves.
//! - One CPU at a time runs the daemon ([`RUNNING`]): several would only race for the same
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

/// Frames one call frees (at most: a fault's latency stays bounded), a whole batch even just
/// below the high watermark, so the pool ends up to a batch above it. Freeing only the frames
/// missing, as before, meant one pagedaemon pass and one broadcast TLB invalidation per frame
/// a guest took while the pool sat at the watermark: `swapbench` ran 16,225 passes for 41,051
/// frames, and its strided pass broadcast 5,242 invalidations by IPA for its 15,996 swap-ins
/// (now 4).
pub const BATCH: usize = 64;
/// The daemon runs on one CPU at a time.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Below this many free frames a fault's CPU frees frames itself: 1/64 of the pool (5 MiB of
/// 320 MiB).
pub fn low_water(total: usize) -> usize {
    total / 64
}

/// Below this many free frames idle CPUs free frames, and every run of the daemon stops here:
/// 1/16 of the pool (20 MiB of 320 MiB; 256 frames of a 16 MiB pool, two readahead windows).
pub fn high_water(total: usize) -> usize {
    total / 16
}

/// Free a batch of frames ([`BATCH`]) when fewer than `below` are free; returns how many were
/// freed (0 also when another CPU runs the daemon).
fn balance(h: &Hyp, below: fn(usize) -> usize) -> usize {
    let (free, total) = (h.uvm.free_pages(), h.uvm.total_pages());
    if free >= below(total) || RUNNING.swap(true, Ordering::Acquire) {
        return 0;
    }
    let freed = h.uvm.reclaim(BATCH);
    RUNNING.store(false, Ordering::Release);
    freed
}

/// After a fault mapped a page: below the low watermark free frames now; below the high one
/// have an idle CPU do it, if there is one. Only a CPU asleep in WFI is kicked: one working
/// through its idle work runs [`on_idle`] each time round without an SGI (a kick per fault
/// reached it 1,023 times in `swapbench`'s ascending pass, and the pass sent 1,438 SGIs where
/// it now sends 453; the pass's time did not move measurably). One that checked the
/// watermark and is about to sleep misses the kick and looks again at its idle poll, 1 ms
/// later; meanwhile the faults' own CPUs free frames below the low watermark.
pub fn after_fault(h: &Hyp) {
    if h.uvm.swap().is_none() {
        return;
    }
    if balance(h, low_water) == 0 && h.uvm.free_pages() < high_water(h.uvm.total_pages()) {
        h.kick_asleep();
    }
}

/// An idle CPU: below the high watermark free frames; true if it freed some (then it looks
/// for vCPUs again instead of sleeping).
pub fn on_idle(h: &Hyp) -> bool {
    h.uvm.swap().is_some() && balance(h, high_water) != 0
}

/// A fault ended `NoMemory`: true when it is worth retrying, because the daemon freed frames
/// now or some are free again (other CPUs' page-outs).
pub fn retry_after_no_memory(h: &Hyp) -> bool {
    h.uvm.swap().is_some() && (h.uvm.can_allocate(false) || h.uvm.reclaim(BATCH) != 0)
}
