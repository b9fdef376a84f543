//! The fault routine (the seed's `uvm_fault`). ENGINE HELPER: replace this placeholder header with
//! the essay and the implementation; keep the public types below (hyp and tools use them).

use crate::addr::Access;

/// Which of the seed's cases resolved a fault (recorded in the trace).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum FaultCase {
    /// Case 0: the entry has neither amap nor object (always an error).
    Layerless0 = 0,
    /// Case 1A: the anon's page mapped directly (read, or write with an_ref == 1).
    Anon1A = 1,
    /// Case 1B: write to a shared anon: promoted into a new anon, data copied.
    AnonCow1B = 2,
    /// Case 2A: the object's page mapped directly.
    Obj2A = 3,
    /// Case 2B: the object's page promoted (copied) into a new anon.
    ObjCopy2B = 4,
    /// Case 2B without an object: a zero-filled page in a new anon.
    Zero2B = 5,
    /// The object's own fault hook (`pgo_fault`) resolved it.
    ObjFault = 6,
}

/// Why a fault was not resolved. Each variant says who is at fault.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum FaultError {
    /// Guest: no map entry covers the IPA.
    NoMapping = 1,
    /// Guest: the entry's protection forbids the access.
    Protection = 2,
    /// Case 0: an entry with neither amap nor object (a hypervisor configuration error).
    NoBacking = 3,
    /// Hypervisor: no memory and nothing reclaimable.
    NoMemory = 4,
    /// Device: the swap or object pager failed to read the page.
    Io = 5,
    /// Transient: a page is busy or memory must be reclaimed first. The seed would sleep; we
    /// return so the caller re-enters the guest (which re-faults) or runs the pagedaemon.
    Restart = 6,
}

/// What a successful fault did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Resolved {
    /// The case that mapped the faulting page.
    pub case: FaultCase,
    /// Neighbouring pages mapped on the way (fltnamap + fltnomap of this fault).
    pub neighbours: u8,
    /// How many times the routine went back to ReFault internally.
    pub refaults: u8,
}
