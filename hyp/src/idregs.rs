//! Which ID register fields a guest sees clamped, and to what (HCR_EL2.TID3 traps the op0 = 3,
//! op1 = 0, CRn = 0, CRm = 1..7 space; `arch::idregs` reads the real value and applies
//! [`guest_view`]). A feature whose state the vCPU model neither context-switches nor emulates
//! is hidden, so a guest (Linux) never decides to use it:
//! - SVE and SME (their registers are not switched; CPTR_EL2.TZ/TSM trap them),
//! - pointer authentication (keys not switched; HCR_EL2.API/APK = 0 trap them),
//! - MTE (tags not switched; HCR_EL2.ATA = 0 traps it), MPAM,
//! - LORegions (LORSA/LOREA/LORN/LORC_EL1 are not switched),
//! - RAS (the ERR* record registers and DISR_EL1 are not switched), the activity monitors (AMU),
//! - the PMU, statistical profiling (SPE), the trace unit, trace filter and trace buffer (TRBE),
//!   branch records (BRBE) (MDCR_EL2 traps them, RAZ/WI);
//! - debug: MDCR_EL2.TDA makes every breakpoint and watchpoint register RAZ/WI, so the guest is
//!   told the architectural minimum (2 breakpoints, 2 watchpoints, 1 context-aware; the
//!   fields hold "number minus one") of the base Armv8.0 debug architecture, never more.
//!
//! Every clamped field here is an unsigned one (a larger value means more), so the clamp is a
//! minimum.

use crate::bits::Field;

/// One field of register `(crm, op2)` of the ID space, clamped to at most `max`.
#[derive(Clone, Copy, Debug)]
pub struct Clamp {
    pub crm: u8,
    pub op2: u8,
    pub field: Field,
    pub max: u64,
}

const fn hide(crm: u8, op2: u8, hi: u32, lo: u32) -> Clamp {
    Clamp { crm, op2, field: Field::new(hi, lo), max: 0 }
}

const fn at_most(crm: u8, op2: u8, hi: u32, lo: u32, max: u64) -> Clamp {
    Clamp { crm, op2, field: Field::new(hi, lo), max }
}

/// ID_AA64DFR0_EL1.DebugVer 0b0110: the Armv8.0 debug architecture.
pub const DEBUG_V8: u64 = 0b0110;

/// Every clamp, by register (Arm ARM D19 field positions).
pub const CLAMPS: &[Clamp] = &[
    // ID_DFR0_EL1.PerfMon [27:24] (AArch32 view of the PMU).
    hide(1, 2, 27, 24),
    // ID_AA64PFR0_EL1: RAS [31:28], SVE [35:32], MPAM [43:40], AMU [47:44].
    hide(4, 0, 31, 28),
    hide(4, 0, 35, 32),
    hide(4, 0, 43, 40),
    hide(4, 0, 47, 44),
    // ID_AA64PFR1_EL1: MTE [11:8], RAS_frac [15:12], MPAM_frac [19:16], SME [27:24].
    hide(4, 1, 11, 8),
    hide(4, 1, 15, 12),
    hide(4, 1, 19, 16),
    hide(4, 1, 27, 24),
    // ID_AA64ZFR0_EL1 (SVE features) and ID_AA64SMFR0_EL1 (SME features): all.
    hide(4, 4, 63, 0),
    hide(4, 5, 63, 0),
    // ID_AA64DFR0_EL1: DebugVer [3:0] at most v8.0, TraceVer [7:4], PMUVer [11:8], BRPs [15:12]
    // and WRPs [23:20] at most 1 (two each), CTX_CMPs [31:28] 0 (one), PMSVer [35:32],
    // TraceFilt [43:40], TraceBuffer [47:44], BRBE [55:52].
    at_most(5, 0, 3, 0, DEBUG_V8),
    hide(5, 0, 7, 4),
    hide(5, 0, 11, 8),
    at_most(5, 0, 15, 12, 1),
    at_most(5, 0, 23, 20, 1),
    hide(5, 0, 31, 28),
    hide(5, 0, 35, 32),
    hide(5, 0, 43, 40),
    hide(5, 0, 47, 44),
    hide(5, 0, 55, 52),
    // ID_AA64ISAR1_EL1: APA [7:4], API [11:8], GPA [27:24], GPI [31:28].
    hide(6, 1, 7, 4),
    hide(6, 1, 11, 8),
    hide(6, 1, 27, 24),
    hide(6, 1, 31, 28),
    // ID_AA64ISAR2_EL1: GPA3 [11:8], APA3 [15:12].
    hide(6, 2, 11, 8),
    hide(6, 2, 15, 12),
    // ID_AA64MMFR1_EL1: LO [19:16].
    hide(7, 1, 19, 16),
];

/// `S3_0_C0_C<crm>_<op2>` as the guest sees it, given the `real` value.
pub fn guest_view(crm: u8, op2: u8, real: u64) -> u64 {
    CLAMPS.iter().filter(|c| (c.crm, c.op2) == (crm, op2)).fold(real, |v, c| {
        let clamped = c.field.get(v).min(c.max);
        (v & !c.field.mask()) | c.field.place(clamped)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of every register at its largest value.
    const ALL: u64 = u64::MAX;

    fn field(crm: u8, op2: u8, hi: u32, lo: u32) -> u64 {
        Field::new(hi, lo).get(guest_view(crm, op2, ALL))
    }

    #[test]
    fn unswitched_features_are_hidden() {
        assert_eq!(field(7, 1, 19, 16), 0, "ID_AA64MMFR1_EL1.LO");
        assert_eq!(field(4, 0, 31, 28), 0, "ID_AA64PFR0_EL1.RAS");
        assert_eq!(field(4, 1, 15, 12), 0, "ID_AA64PFR1_EL1.RAS_frac");
        assert_eq!(field(4, 0, 47, 44), 0, "ID_AA64PFR0_EL1.AMU");
        assert_eq!(field(5, 0, 35, 32), 0, "ID_AA64DFR0_EL1.PMSVer (SPE)");
        assert_eq!(field(5, 0, 47, 44), 0, "ID_AA64DFR0_EL1.TraceBuffer (TRBE)");
        assert_eq!(field(5, 0, 11, 8), 0, "ID_AA64DFR0_EL1.PMUVer");
        assert_eq!(field(4, 0, 35, 32), 0, "ID_AA64PFR0_EL1.SVE");
        assert_eq!(guest_view(4, 4, ALL), 0, "ID_AA64ZFR0_EL1");
    }

    #[test]
    fn debug_is_the_architectural_minimum() {
        assert_eq!(field(5, 0, 3, 0), DEBUG_V8, "DebugVer");
        assert_eq!(field(5, 0, 15, 12), 1, "BRPs: two breakpoints");
        assert_eq!(field(5, 0, 23, 20), 1, "WRPs: two watchpoints");
        assert_eq!(field(5, 0, 31, 28), 0, "CTX_CMPs: one context-aware");
        // A smaller real value stays: BRPs 0b0001 of a minimal CPU is not raised.
        let minimal = Field::new(15, 12).place(1) | Field::new(3, 0).place(DEBUG_V8);
        assert_eq!(guest_view(5, 0, minimal), minimal);
    }

    #[test]
    fn untouched_fields_and_registers_pass_through() {
        // ID_AA64MMFR1_EL1 outside LO, and ID_AA64MMFR0_EL1 (7, 0) entirely.
        assert_eq!(guest_view(7, 1, ALL), ALL & !Field::new(19, 16).mask());
        assert_eq!(guest_view(7, 0, 0x1234_5678), 0x1234_5678);
    }
}
