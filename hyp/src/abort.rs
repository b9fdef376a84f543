//! The decisions a stage-2 abort needs, as pure functions of the syndrome and the guest's
//! controls (the arch layer reads the registers; `virt::abort` acts on the answers).
//!
//! Which access to fault in (Arm ARM D19.2 "ISS encoding for an exception from a Data Abort"):
//! - an instruction fetch (EC 0x20) is an exec;
//! - a stage-2 fault on the guest's stage-1 table walk (S1PTW) is a read of the *table page*,
//!   whether the walk was for a fetch or a data access, and a write when WnR says so;
//! - a cache-maintenance or address-translation instruction (ISS.CM = 1: DC CIVAC, DC CVAC,
//!   DC CVAU, DC IVAC, IC IVAU, AT) always reports WnR = 1, but it needs read permission only
//!   (at stage 2 a DC IVAC on a read-only page is performed as a clean and invalidate): taking it
//!   as a write would copy a shared page for nothing. DC ZVA (and DC GVA/GZVA) is not a
//!   cache-maintenance instruction for the syndrome: it reports CM = 0, WnR = 1, a write;
//! - any other data abort is a write when WnR = 1, else a read.
//!
//! Where an access that no RAM covers goes: see [`Unbacked`].

use crate::esr::AbortIss;
use vm::Access;

/// The access a stage-2 abort must be resolved for. `fetch`: an instruction abort (EC 0x20).
pub fn access_needed(iss: &AbortIss, fetch: bool) -> Access {
    if iss.s1ptw {
        return if iss.write { Access::Write } else { Access::Read };
    }
    if fetch {
        Access::Exec
    } else if iss.write && !iss.cache_maintenance {
        Access::Write
    } else {
        Access::Read
    }
}

/// What to do with an access to an IPA that neither guest RAM nor an emulated device covers
/// (or a device access the hypervisor cannot emulate).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Unbacked {
    /// A cache-maintenance instruction: there is nothing to maintain, step over it (as KVM does).
    Skip,
    /// Inject a synchronous external abort — a data abort, an instruction abort (IFSC
    /// 0b010000, FAR_EL1 = the VA), or one on the stage-1 walk — into the guest's EL1, as a
    /// physical machine's bus and KVM would. Only an abort that cannot be delivered (the vectors
    /// are not RAM, or a nested-abort loop) stops the VM.
    Inject,
}

/// Where an access outside RAM and devices goes.
pub fn unbacked(iss: &AbortIss, fetch: bool) -> Unbacked {
    if iss.cache_maintenance && !fetch && !iss.s1ptw {
        Unbacked::Skip
    } else {
        Unbacked::Inject
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data abort ISS with the given fault kind (translation or permission, level 3) and bits.
    fn iss(permission: bool, wnr: bool, cm: bool, s1ptw: bool) -> AbortIss {
        let fsc: u64 = if permission { 0b00_1111 } else { 0b00_0111 };
        AbortIss::decode(fsc | u64::from(wnr) << 6 | u64::from(s1ptw) << 7 | u64::from(cm) << 8)
    }

    #[test]
    fn cache_maintenance_needs_read_permission_only() {
        // DC CIVAC / CVAC / IVAC all report CM = 1, WnR = 1, on a read-only (shared) page.
        for permission in [false, true] {
            assert_eq!(access_needed(&iss(permission, true, true, false), false), Access::Read);
        }
    }

    #[test]
    fn dc_zva_is_a_write() {
        // DC ZVA: CM = 0, WnR = 1.
        assert_eq!(access_needed(&iss(true, true, false, false), false), Access::Write);
        assert_eq!(access_needed(&iss(false, false, false, false), false), Access::Read);
    }

    #[test]
    fn fetches_are_exec() {
        assert_eq!(access_needed(&iss(false, false, false, false), true), Access::Exec);
        assert_eq!(access_needed(&iss(true, false, false, false), true), Access::Exec);
    }

    #[test]
    fn cache_maintenance_outside_ram_is_skipped_everything_else_injected() {
        assert_eq!(unbacked(&iss(false, true, true, false), false), Unbacked::Skip);
        assert_eq!(unbacked(&iss(false, true, false, false), false), Unbacked::Inject);
        assert_eq!(unbacked(&iss(false, false, false, true), false), Unbacked::Inject);
        assert_eq!(unbacked(&iss(false, false, false, true), true), Unbacked::Inject);
    }

    #[test]
    fn a_fetch_from_nothing_is_an_instruction_abort_for_the_guest() {
        // As KVM does: the guest's EL1 gets the abort; only an undeliverable one stops the VM.
        assert_eq!(unbacked(&iss(false, false, false, false), true), Unbacked::Inject);
        assert_eq!(unbacked(&iss(true, false, false, false), true), Unbacked::Inject);
    }
}
