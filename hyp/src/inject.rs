//! When injecting an exception into a guest would only loop (the policy half of
//! `virt::inject`, host-tested).
//!
//! A guest that handles an exception and returns to the same faulting access — a probe, a
//! fixup, a retry — is legal however often it does it: it is preemptible like any loop, and KVM
//! does not stop it either. What cannot make progress is a guest whose exception entry itself
//! faults: the vector is not mapped, or its first instructions touch memory that is not there (a
//! bad SP_EL1). Such a nested abort overwrites ELR_EL1/SPSR_EL1 before the handler could save
//! them, so the guest can never return, and each re-entry faults again — with a different FAR
//! when each entry pushes a frame lower, so "same ELR and FAR" does not see it.
//!
//! EL2 cannot see an ERET, but it sees where an exception was taken: the vector table
//! (`VBAR_EL1 .. + 0x800`, 16 entries of 32 instructions) runs only as exception entry code, so
//! an exception taken from EL1 at a PC inside it is an abort during entry, before the handler
//! got out of its vector slot. [`MAX_INJECT_STREAK`] such injections in a row stop the VM; an
//! injection taken anywhere else — the guest made progress — starts the count again.

/// Size of the EL1 vector table.
pub const VECTOR_TABLE_BYTES: u64 = 0x800;
/// Injections in a row taken inside the vector table before the VM is declared crashed.
pub const MAX_INJECT_STREAK: u8 = 3;

/// One exception about to be injected.
#[derive(Clone, Copy, Debug)]
pub struct Injected {
    /// ELR: where the exception was taken (the faulting instruction).
    pub elr: u64,
    /// Taken from EL1 (not EL0).
    pub from_el1: bool,
    /// The guest's VBAR_EL1, where it is sent.
    pub vbar: u64,
}

/// The injection would loop: the VM must be stopped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct InjectLoop {
    /// Injections in a row that counted.
    pub streak: u8,
}

/// Loop detection state of one vCPU: injections in a row taken inside the vector table.
#[derive(Clone, Copy, Debug)]
pub struct LoopDetector {
    streak: u8,
}

impl LoopDetector {
    /// A vCPU out of reset.
    pub const fn new() -> LoopDetector {
        LoopDetector { streak: 0 }
    }

    /// Account for injecting `e`: `Err` when it must not be delivered.
    pub fn record(&mut self, e: Injected) -> Result<(), InjectLoop> {
        let in_vectors = e.from_el1 && e.elr.wrapping_sub(e.vbar) < VECTOR_TABLE_BYTES;
        self.streak = if in_vectors { self.streak.saturating_add(1) } else { 0 };
        if self.streak >= MAX_INJECT_STREAK {
            return Err(InjectLoop { streak: self.streak });
        }
        Ok(())
    }
}

impl Default for LoopDetector {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VBAR: u64 = 0x4000_0800;
    /// The current-EL-with-SP_ELx synchronous entry.
    const SPX_SYNC: u64 = VBAR + 0x200;

    /// An exception from EL1 at `elr` (what FAR it reports does not matter).
    fn at(elr: u64) -> Injected {
        Injected { elr, from_el1: true, vbar: VBAR }
    }

    #[test]
    fn a_guest_that_handles_the_same_abort_again_and_again_runs_on() {
        let mut d = LoopDetector::new();
        for _ in 0..10 {
            assert_eq!(d.record(at(0x4000_1234)), Ok(()));
        }
    }

    #[test]
    fn unbacked_vectors_are_a_loop() {
        // The first abort elsewhere, then the fetch of the vector entry itself aborts.
        let mut d = LoopDetector::new();
        assert_eq!(d.record(at(0x4000_1234)), Ok(()));
        assert_eq!(d.record(at(SPX_SYNC)), Ok(()));
        assert_eq!(d.record(at(SPX_SYNC)), Ok(()));
        assert!(d.record(at(SPX_SYNC)).is_err());
    }

    #[test]
    fn an_abort_inside_the_vector_entry_every_time_is_a_loop() {
        // The vector's first store goes to an unbacked stack: each entry pushes a frame lower,
        // so FAR differs every time (the old same-ELR-and-FAR rule never fired), but the vCPU
        // never gets out of its vector entry.
        let mut d = LoopDetector::new();
        assert_eq!(d.record(at(0x4000_1234)), Ok(()));
        let mut stopped = false;
        for _ in 0..MAX_INJECT_STREAK {
            if d.record(at(SPX_SYNC + 4)).is_err() {
                stopped = true;
                break;
            }
        }
        assert!(stopped);
    }

    #[test]
    fn progress_between_entries_starts_the_count_again() {
        let mut d = LoopDetector::new();
        for _ in 0..4 {
            assert_eq!(d.record(at(SPX_SYNC + 4)), Ok(()));
            assert_eq!(d.record(at(SPX_SYNC + 8)), Ok(()));
            assert_eq!(d.record(at(0x4000_1234)), Ok(()));
        }
    }

    #[test]
    fn exceptions_from_el0_never_count_as_inside_the_el1_vectors() {
        // An EL0 PC that happens to equal the EL1 vector's VA is EL0 code, not the vector.
        let mut d = LoopDetector::new();
        for _ in 0..10 {
            assert_eq!(d.record(Injected { elr: SPX_SYNC, from_el1: false, vbar: VBAR }), Ok(()));
        }
    }
}
