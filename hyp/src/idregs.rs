//! Which ID register fields a guest sees clamped, and to what (HCR_EL2.TID3 traps the op0 = 3,
//! op1 = 0, CRn = 0, CRm = 1..7 space; `arch::idregs` reads the real value and applies
//! [`guest_view`]). A feature whose state the vCPU model neither context-switches nor emulates
//! is hidden, so a guest (Linux) never decides to use it:
//! - SVE and SME (their registers are not switched; CPTR_EL2.TZ/TSM trap them),
//! - pointer authentication (keys not switched; HCR_EL2.API/APK = 0 trap them),
//! - MTE (tags not switched; HCR_EL2.ATA = 0 traps it), MPAM,
//! - LORegions (LORSA/LOREA/LORN/LORC_EL1 are not switched),
//! - RAS (the ERR* record registers are not switched but trapped; DISR_EL1, which the guest
//!   reaches as VDISR_EL2, is switched, `arch::vcpu`), the activity monitors (AMU),
//! - the PMU, statistical profiling (SPE), the trace unit, trace filter and trace buffer (TRBE),
//!   branch records (BRBE) (MDCR_EL2 traps them, RAZ/WI);
//! - debug: MDCR_EL2.TDA makes every breakpoint and watchpoint register RAZ/WI, so the guest is
//!   told the architectural minimum (2 breakpoints, 2 watchpoints, 1 context-aware; the
//!   fields hold "number minus one") of the base Armv8.0 debug architecture, never more.
//!
//! Every clamped field here is an unsigned one (a larger value means more), so the clamp is a
//! minimum.

//!
//! Field positions are `aarch64-cpu`'s where it defines the field; the fields (and registers) it
//! lacks are declared below with the same macro, named as the Arm ARM names them.

use aarch64_cpu::registers as cpu;
use tock_registers::fields::Field;
use tock_registers::{register_bitfields, RegisterLongName};

register_bitfields! {u64,
    /// ID_DFR0_EL1 (AArch32 debug features).
    pub ID_DFR0_EL1 [
        PerfMon OFFSET(24) NUMBITS(4) []
    ],
    /// ID_AA64PFR0_EL1, the fields `aarch64-cpu` does not name.
    pub ID_AA64PFR0_EL1 [
        MPAM OFFSET(40) NUMBITS(4) [],
        RAS OFFSET(28) NUMBITS(4) [NotImplemented = 0b0000, RAS = 0b0001, RASv1p1 = 0b0010, RASv2 = 0b0011]
    ],
    /// ID_AA64PFR1_EL1, the fields `aarch64-cpu` does not name.
    pub ID_AA64PFR1_EL1 [
        SME OFFSET(24) NUMBITS(4) [],
        MPAM_frac OFFSET(16) NUMBITS(4) [],
        RAS_frac OFFSET(12) NUMBITS(4) []
    ],
    /// ID_AA64ZFR0_EL1 (SVE features) and ID_AA64SMFR0_EL1 (SME features): hidden whole.
    pub ID_AA64ZFR0_EL1 [
        ALL OFFSET(0) NUMBITS(64) []
    ],
    /// ID_AA64ISAR2_EL1 (not in `aarch64-cpu` 11).
    pub ID_AA64ISAR2_EL1 [
        APA3 OFFSET(12) NUMBITS(4) [],
        GPA3 OFFSET(8) NUMBITS(4) []
    ]
}

/// One field of register `(crm, op2)` of the ID space, clamped to at most `max`.
#[derive(Clone, Copy, Debug)]
pub struct Clamp {
    pub crm: u8,
    pub op2: u8,
    /// The field's ones, in place.
    pub mask: u64,
    pub shift: usize,
    pub max: u64,
}

const fn at_most<R: RegisterLongName>(crm: u8, op2: u8, f: Field<u64, R>, max: u64) -> Clamp {
    Clamp { crm, op2, mask: f.mask << f.shift, shift: f.shift, max }
}

const fn hide<R: RegisterLongName>(crm: u8, op2: u8, f: Field<u64, R>) -> Clamp {
    at_most(crm, op2, f, 0)
}

/// ID_AA64DFR0_EL1.DebugVer 0b0110: the Armv8.0 debug architecture.
pub const DEBUG_V8: u64 = 0b0110;

/// Every clamp, by register.
pub const CLAMPS: &[Clamp] = &[
    // ID_DFR0_EL1 (the AArch32 view of the PMU).
    hide(1, 2, ID_DFR0_EL1::PerfMon),
    // ID_AA64PFR0_EL1.
    hide(4, 0, ID_AA64PFR0_EL1::RAS),
    hide(4, 0, cpu::ID_AA64PFR0_EL1::SVE),
    hide(4, 0, ID_AA64PFR0_EL1::MPAM),
    hide(4, 0, cpu::ID_AA64PFR0_EL1::AMU),
    // ID_AA64PFR1_EL1.
    hide(4, 1, cpu::ID_AA64PFR1_EL1::MTE),
    hide(4, 1, ID_AA64PFR1_EL1::RAS_frac),
    hide(4, 1, ID_AA64PFR1_EL1::MPAM_frac),
    hide(4, 1, ID_AA64PFR1_EL1::SME),
    // ID_AA64ZFR0_EL1 (SVE features) and ID_AA64SMFR0_EL1 (SME features): all.
    hide(4, 4, ID_AA64ZFR0_EL1::ALL),
    hide(4, 5, ID_AA64ZFR0_EL1::ALL),
    // ID_AA64DFR0_EL1: DebugVer at most v8.0, BRPs and WRPs at most 1 (two each), CTX_CMPs 0
    // (one), no trace, PMU, SPE, trace filter, trace buffer or branch records.
    at_most(5, 0, cpu::ID_AA64DFR0_EL1::DebugVer, DEBUG_V8),
    hide(5, 0, cpu::ID_AA64DFR0_EL1::TraceVer),
    hide(5, 0, cpu::ID_AA64DFR0_EL1::PMUVer),
    at_most(5, 0, cpu::ID_AA64DFR0_EL1::BRPs, 1),
    at_most(5, 0, cpu::ID_AA64DFR0_EL1::WRPs, 1),
    hide(5, 0, cpu::ID_AA64DFR0_EL1::CTX_CMPs),
    hide(5, 0, cpu::ID_AA64DFR0_EL1::PMSVer),
    hide(5, 0, cpu::ID_AA64DFR0_EL1::TraceFilt),
    hide(5, 0, cpu::ID_AA64DFR0_EL1::TraceBuffer),
    hide(5, 0, cpu::ID_AA64DFR0_EL1::BRBE),
    // ID_AA64ISAR1_EL1: pointer authentication.
    hide(6, 1, cpu::ID_AA64ISAR1_EL1::APA),
    hide(6, 1, cpu::ID_AA64ISAR1_EL1::API),
    hide(6, 1, cpu::ID_AA64ISAR1_EL1::GPA),
    hide(6, 1, cpu::ID_AA64ISAR1_EL1::GPI),
    // ID_AA64ISAR2_EL1: pointer authentication (QARMA3).
    hide(6, 2, ID_AA64ISAR2_EL1::GPA3),
    hide(6, 2, ID_AA64ISAR2_EL1::APA3),
    // ID_AA64MMFR1_EL1: LORegions.
    hide(7, 1, cpu::ID_AA64MMFR1_EL1::LO),
];

/// `S3_0_C0_C<crm>_<op2>` as the guest sees it, given the `real` value.
pub fn guest_view(crm: u8, op2: u8, real: u64) -> u64 {
    CLAMPS.iter().filter(|c| (c.crm, c.op2) == (crm, op2)).fold(real, |v, c| {
        let clamped = ((v & c.mask) >> c.shift).min(c.max);
        (v & !c.mask) | (clamped << c.shift)
    })
}

/// The RAS extension is implemented (ID_AA64PFR0_EL1.RAS, the real value).
pub fn has_ras(id_aa64pfr0_el1: u64) -> bool {
    !ID_AA64PFR0_EL1::RAS::NotImplemented.matches_all(id_aa64pfr0_el1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of every register at its largest value.
    const ALL: u64 = u64::MAX;

    fn field<R: RegisterLongName>(crm: u8, op2: u8, f: Field<u64, R>) -> u64 {
        f.read(guest_view(crm, op2, ALL))
    }

    #[test]
    fn unswitched_features_are_hidden() {
        assert_eq!(field(7, 1, cpu::ID_AA64MMFR1_EL1::LO), 0, "ID_AA64MMFR1_EL1.LO");
        assert_eq!(field(4, 0, ID_AA64PFR0_EL1::RAS), 0, "ID_AA64PFR0_EL1.RAS");
        assert_eq!(field(4, 1, ID_AA64PFR1_EL1::RAS_frac), 0, "ID_AA64PFR1_EL1.RAS_frac");
        assert_eq!(field(4, 0, cpu::ID_AA64PFR0_EL1::AMU), 0, "ID_AA64PFR0_EL1.AMU");
        assert_eq!(field(5, 0, cpu::ID_AA64DFR0_EL1::PMSVer), 0, "ID_AA64DFR0_EL1.PMSVer (SPE)");
        assert_eq!(field(5, 0, cpu::ID_AA64DFR0_EL1::TraceBuffer), 0, "ID_AA64DFR0_EL1.TraceBuffer (TRBE)");
        assert_eq!(field(5, 0, cpu::ID_AA64DFR0_EL1::PMUVer), 0, "ID_AA64DFR0_EL1.PMUVer");
        assert_eq!(field(4, 0, cpu::ID_AA64PFR0_EL1::SVE), 0, "ID_AA64PFR0_EL1.SVE");
        assert_eq!(guest_view(4, 4, ALL), 0, "ID_AA64ZFR0_EL1");
        // The Arm ARM positions, independently of the definitions above.
        assert_eq!(guest_view(4, 0, ALL) & (0xf << 28), 0, "RAS [31:28]");
        assert_eq!(guest_view(7, 1, ALL) & (0xf << 16), 0, "LO [19:16]");
    }

    #[test]
    fn debug_is_the_architectural_minimum() {
        use cpu::ID_AA64DFR0_EL1 as DFR0;
        assert_eq!(field(5, 0, DFR0::DebugVer), DEBUG_V8, "DebugVer");
        assert_eq!(field(5, 0, DFR0::BRPs), 1, "BRPs: two breakpoints");
        assert_eq!(field(5, 0, DFR0::WRPs), 1, "WRPs: two watchpoints");
        assert_eq!(field(5, 0, DFR0::CTX_CMPs), 0, "CTX_CMPs: one context-aware");
        // A smaller real value stays: BRPs 0b0001 of a minimal CPU is not raised.
        let minimal = (DFR0::BRPs.val(1) + DFR0::DebugVer.val(DEBUG_V8)).value;
        assert_eq!(guest_view(5, 0, minimal), minimal);
    }

    #[test]
    fn untouched_fields_and_registers_pass_through() {
        // ID_AA64MMFR1_EL1 outside LO, and ID_AA64MMFR0_EL1 (7, 0) entirely.
        assert_eq!(guest_view(7, 1, ALL), cpu::ID_AA64MMFR1_EL1::LO::CLEAR.modify(ALL));
        assert_eq!(guest_view(7, 0, 0x1234_5678), 0x1234_5678);
    }

    #[test]
    fn ras_presence() {
        assert!(!has_ras(0x1122_0000_0fff_ffff));
        assert!(has_ras(ID_AA64PFR0_EL1::RAS::RAS.value));
        assert!(has_ras(ID_AA64PFR0_EL1::RAS::RASv1p1.value));
    }
}
