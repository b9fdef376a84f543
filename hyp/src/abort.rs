//! The decisions a stage-2 abort needs, as pure functions of the syndrome and the guest's
//! controls (the arch layer reads the registers; `virt::abort` acts on the answers).
//!
//! Which access to fault in (Arm ARM D19.2 "ISS encoding for an exception from a Data Abort"):
//! - an instruction fetch (EC 0x20) is an exec;
//! - a stage-2 fault on the guest's stage-1 table walk (S1PTW) is a read of the *table page*,
//!   whether the walk was for a fetch or a data access, and a write when the walker itself writes
//!   the descriptor: a permission fault while TCR_EL1.HA/HD let it update the Access flag or the
//!   dirty state (FEAT_HAFDBS). WnR does not say so: it describes the access being translated (a
//!   load whose walk sets AF reports WnR = 0), and mapping the table page for reading again
//!   would refault forever. KVM (`kvm_is_write_fault`) takes every S1PTW permission fault as a
//!   write for the same reason; a translation fault there is a read (the page is mapped
//!   read-only first, and a walker write then refaults once as a permission fault);
//! - a cache-maintenance or address-translation instruction (ISS.CM = 1: DC CIVAC, DC CVAC,
//!   DC CVAU, DC IVAC, IC IVAU, AT) always reports WnR = 1, but it needs read permission only
//!   (at stage 2 a DC IVAC on a read-only page is performed as a clean and invalidate): taking it
//!   as a write would copy a shared page for nothing. DC ZVA (and DC GVA/GZVA) is not a
//!   cache-maintenance instruction for the syndrome: it reports CM = 0, WnR = 1, a write;
//! - any other data abort is a write when WnR = 1, else a read.
//!
//! Where an access that no RAM covers goes: see [`Unbacked`].

use aarch64_cpu::registers::TCR_EL1;
use crate::esr::{AbortIss, FaultKind};
use vm::Access;

/// True when the guest's stage-1 walker may write descriptors (TCR_EL1.HA, hardware update of
/// the Access flag, or HD, of the dirty state; both RES0 without FEAT_HAFDBS, so false on an
/// ARMv8.0 core).
pub fn walker_updates_descriptors(tcr_el1: u64) -> bool {
    TCR_EL1::HA.is_set(tcr_el1) || TCR_EL1::HD.is_set(tcr_el1)
}

/// The access a stage-2 abort must be resolved for. `fetch`: an instruction abort (EC 0x20);
/// `walker_updates`: [`walker_updates_descriptors`] of the guest's TCR_EL1.
pub fn access_needed(iss: &AbortIss, fetch: bool, walker_updates: bool) -> Access {
    if iss.s1ptw {
        let walker_writes = walker_updates && matches!(iss.kind, FaultKind::Permission(_));
        return if walker_writes { Access::Write } else { Access::Read };
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

    use crate::esr::ABORT_ISS;

    /// A data abort ISS with the given fault kind (translation or permission, level 3) and bits.
    fn iss(permission: bool, wnr: bool, cm: bool, s1ptw: bool) -> AbortIss {
        use ABORT_ISS::FSC_TYPE::{Permission, Translation};
        let kind = if permission { Permission } else { Translation };
        let v = kind
            + ABORT_ISS::FSC_LEVEL.val(3)
            + ABORT_ISS::WnR.val(u64::from(wnr))
            + ABORT_ISS::S1PTW.val(u64::from(s1ptw))
            + ABORT_ISS::CM.val(u64::from(cm));
        AbortIss::decode(v.value)
    }

    #[test]
    fn cache_maintenance_needs_read_permission_only() {
        // DC CIVAC / CVAC / IVAC all report CM = 1, WnR = 1, on a read-only (shared) page.
        for permission in [false, true] {
            assert_eq!(access_needed(&iss(permission, true, true, false), false, false), Access::Read);
        }
    }

    #[test]
    fn dc_zva_is_a_write() {
        // DC ZVA: CM = 0, WnR = 1.
        assert_eq!(access_needed(&iss(true, true, false, false), false, false), Access::Write);
        assert_eq!(access_needed(&iss(false, false, false, false), false, false), Access::Read);
    }

    #[test]
    fn a_walk_that_may_update_descriptors_is_a_write_on_a_permission_fault() {
        let ha = TCR_EL1::HA::SET.value;
        let hd = TCR_EL1::HD::SET.value;
        assert!(walker_updates_descriptors(ha) && walker_updates_descriptors(hd));
        // Linux's TCR_EL1 on an ARMv8.0 core (4 KiB granules, 48-bit VAs, IPS 40 bits).
        assert!(!walker_updates_descriptors(0x0000_0032_b519_3519));
        // A load's walk that sets AF in a table page mapped read-only: WnR = 0.
        assert_eq!(access_needed(&iss(true, false, false, true), false, true), Access::Write);
        assert_eq!(access_needed(&iss(true, false, false, true), true, true), Access::Write);
        // The first touch of the table page (translation fault) maps it for reading.
        assert_eq!(access_needed(&iss(false, false, false, true), false, true), Access::Read);
        assert_eq!(access_needed(&iss(false, true, false, true), false, true), Access::Read);
        // Without HA/HD the walker only reads.
        assert_eq!(access_needed(&iss(false, false, false, true), true, false), Access::Read);
    }

    #[test]
    fn fetches_are_exec() {
        assert_eq!(access_needed(&iss(false, false, false, false), true, false), Access::Exec);
        assert_eq!(access_needed(&iss(true, false, false, false), true, false), Access::Exec);
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
