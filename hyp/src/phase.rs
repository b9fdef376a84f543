//! UVMHYP_PHASE: a rendezvous of the run's VMs, for test guests that must go through the steps
//! of an experiment together (README, "Hypercall ABI").
//!
//! Why: a memory experiment over several VMs measures what they do at the same time — the dedup
//! guests of `dedup-swap` verify their memory while the others do, so that pages of one index
//! come back from swap together and merge; one VM that writes its shared pages while another
//! still waits leaves the other nothing to merge with. Each guest deciding for itself from the
//! counters when a step is over does not line them up: the first to decide starts faulting,
//! and that changes what the others are watching.
//!
//! Each VM has a phase: 0 when built, its parent's for a clone (it is a copy of the parent at
//! that point). A call raises the caller's phase to its argument (phases never go down) and
//! answers the lowest phase of the VMs not stopped, the caller's included; a guest that calls
//! again, idling in between, until the answer reaches its phase waits at a barrier for every
//! other running VM. A VM that stops no longer holds anyone back; one that never calls holds
//! everyone at 0 (a guest bounds its wait). The call tells a VM only how far the slowest other
//! VM has got — a test facility, as the all-VM dedup counters of UVMHYP_COUNTER are.

use core::sync::atomic::{AtomicU64, Ordering};

/// The phase a VM has reached.
#[derive(Debug)]
pub struct Phase(AtomicU64);

impl Phase {
    pub const fn new(at: u64) -> Phase {
        Phase(AtomicU64::new(at))
    }

    /// Raise the phase to `n`; a lower `n` leaves it as it is.
    pub fn reach(&self, n: u64) {
        self.0.fetch_max(n, Ordering::AcqRel);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// The answer of UVMHYP_PHASE: the lowest phase among `running` (the phases of the VMs not
/// stopped, the caller's among them); `at` — the caller's own — if there is no other.
pub fn least(at: u64, running: impl IntoIterator<Item = u64>) -> u64 {
    running.into_iter().fold(at, u64::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_only_rises() {
        let p = Phase::new(0);
        p.reach(2);
        p.reach(1);
        assert_eq!(p.get(), 2);
        p.reach(3);
        assert_eq!(p.get(), 3);
    }

    #[test]
    fn the_answer_is_the_slowest_running_vm() {
        assert_eq!(least(2, [2, 1, 3]), 1);
        assert_eq!(least(2, [2, 2]), 2);
        // A VM that never called holds the others at 0.
        assert_eq!(least(5, [5, 0]), 0);
        assert_eq!(least(4, []), 4);
    }
}
