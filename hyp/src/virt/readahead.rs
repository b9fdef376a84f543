//! Who starts swap readahead windows (`vm::fault::readahead`): an idle CPU when there is one,
//! so that the faulting vCPU's CPU goes back to the guest at once — under TCG a window's
//! claims and virtio notifies cost its CPU a few hundred µs, during which the guest would wait.
//! With every CPU busy the fault starts its window itself, as before.
//!
//! # Locks
//! Takes none: the idle mask is an atomic, the kick an SGI.

use super::state::Hyp;

/// The engine's [`vm::fault::ReadaheadOffload`] over the run loop's idle CPUs.
pub struct IdleCpus(pub &'static Hyp);

impl vm::fault::ReadaheadOffload for IdleCpus {
    fn can_offload(&self) -> bool {
        self.0.idle_others() != 0
    }

    fn kick(&self) {
        self.0.kick_idle();
    }
}
