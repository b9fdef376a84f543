//! Parking a vCPU on a BUSY page (the seed's `UVM_UNLOCK_AND_WAIT`): a fault that meets a page
//! another vCPU is filling, copying or reading in gives `Restart` naming the page
//! (`vm::fault::fault_or_wait`); instead of re-entering the guest to fault again and again, the
//! vCPU sleeps ([`Next::WaitPage`](super::next::Next)) until the engine unbusies the page and
//! tells [`Parking`] (its `vm::page::PageWaker`), which wakes every vCPU waiting for it.
//!
//! A vCPU parks for at most [`MAX_PARK_US`]: the page may be unbusied between the fault's return
//! and the vCPU's arrival among the sleepers (the wake-up then finds nobody), and the deadline
//! bounds what that costs. `fltpgwait` counts the faults that parked.
//!
//! # Locks
//! The waiter list is a leaf; [`Parking::unbusied`] may run with engine locks held (a page freed
//! under ANON) and takes only the waiter list, then the run queue, each alone.

use alloc::vec::Vec;
use spin::Mutex;

use alloc::boxed::Box;

use super::machine::Vcpu;
use hyp::runq::{RunQueue, VcpuId};
use vm::page::PageWaker;
use vm::Pa;

/// Longest park of a vCPU on one page.
pub const MAX_PARK_US: u64 = 1_000;

/// vCPUs waiting for BUSY pages.
#[derive(Default)]
pub struct Waiters(Mutex<Vec<(Pa, VcpuId)>>);

impl Waiters {
    /// `id` waits for `page`.
    pub fn add(&self, page: Pa, id: VcpuId) {
        self.0.lock().push((page, id));
    }

    /// Everyone waiting for `page`, no longer waiting.
    fn take(&self, page: Pa) -> Vec<VcpuId> {
        let mut w = self.0.lock();
        let mut out = Vec::new();
        w.retain(|&(p, id)| {
            let hit = p == page;
            if hit {
                out.push(id);
            }
            !hit
        });
        out
    }

    /// Forget `id` (it woke by its deadline, or its VM stopped).
    pub fn forget(&self, id: VcpuId) {
        self.0.lock().retain(|&(_, w)| w != id);
    }
}

/// The engine's page waker: the hypervisor's waiter list and run queue, once built.
pub struct Parking {
    pub waiters: &'static Waiters,
    pub queue: &'static Mutex<RunQueue<Box<Vcpu>>>,
}

impl PageWaker for Parking {
    fn unbusied(&self, page: Pa) {
        let ids = self.waiters.take(page);
        if !ids.is_empty() {
            let mut q = self.queue.lock();
            for id in ids {
                q.wake(id);
            }
        }
    }
}
