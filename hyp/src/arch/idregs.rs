//! The ID registers as guests see them (HCR_EL2.TID3 traps the op0 = 3, op1 = 0, CRn = 0,
//! CRm = 1..7 space): the real value, with the features the vCPU model neither context-switches
//! nor allows hidden, so a guest (Linux) never decides to use them:
//! - SVE and SME (their registers are not switched; CPTR_EL2.TZ/TSM trap them),
//! - pointer authentication (keys not switched; HCR_EL2.API/APK = 0 trap them),
//! - MTE (tags not switched; HCR_EL2.ATA = 0 traps it), MPAM,
//! - the PMU and the statistical profiling extension (MDCR_EL2 traps them, RAZ/WI).
//!
//! This is what makes `-cpu max` (QEMU's every-feature CPU) usable for guests.

use core::arch::asm;

use hyp::bits::Field;

/// Fields cleared from register `(crm, op2)` of the ID space.
const HIDDEN: &[(u8, u8, &[Field])] = &[
    // ID_DFR0_EL1.PerfMon [27:24] (AArch32 view of the PMU).
    (1, 2, &[Field::new(27, 24)]),
    // ID_AA64PFR0_EL1: SVE [35:32], MPAM [43:40].
    (4, 0, &[Field::new(35, 32), Field::new(43, 40)]),
    // ID_AA64PFR1_EL1: MTE [11:8], SME [27:24], MPAM_frac [19:16].
    (4, 1, &[Field::new(11, 8), Field::new(27, 24), Field::new(19, 16)]),
    // ID_AA64ZFR0_EL1 (SVE features) and ID_AA64SMFR0_EL1 (SME features): all.
    (4, 4, &[Field::new(63, 0)]),
    (4, 5, &[Field::new(63, 0)]),
    // ID_AA64DFR0_EL1: PMUVer [11:8], PMSVer [35:32].
    (5, 0, &[Field::new(11, 8), Field::new(35, 32)]),
    // ID_AA64ISAR1_EL1: APA [7:4], API [11:8], GPA [27:24], GPI [31:28].
    (6, 1, &[Field::new(7, 4), Field::new(11, 8), Field::new(27, 24), Field::new(31, 28)]),
    // ID_AA64ISAR2_EL1: GPA3 [11:8], APA3 [15:12].
    (6, 2, &[Field::new(11, 8), Field::new(15, 12)]),
];

macro_rules! read_id {
    ($crm:expr, $op2:expr; $(($c:literal, $o:literal)),* $(,)?) => {
        match ($crm, $op2) {
            $(($c, $o) => {
                let v: u64;
                // SAFETY: reading an ID register (allocated or RAZ reserved encoding) at EL2 has
                // no side effect.
                unsafe { asm!(concat!("mrs {}, s3_0_c0_c", $c, "_", $o), out(reg) v, options(nomem, nostack, preserves_flags)) };
                v
            })*
            _ => 0,
        }
    };
}

/// `S3_0_C0_C<crm>_<op2>` as the guest sees it (0 outside CRm = 1..7).
pub fn guest_view(crm: u8, op2: u8) -> u64 {
    let real = read_id!(crm, op2;
        (1, 0), (1, 1), (1, 2), (1, 3), (1, 4), (1, 5), (1, 6), (1, 7),
        (2, 0), (2, 1), (2, 2), (2, 3), (2, 4), (2, 5), (2, 6), (2, 7),
        (3, 0), (3, 1), (3, 2), (3, 3), (3, 4), (3, 5), (3, 6), (3, 7),
        (4, 0), (4, 1), (4, 2), (4, 3), (4, 4), (4, 5), (4, 6), (4, 7),
        (5, 0), (5, 1), (5, 2), (5, 3), (5, 4), (5, 5), (5, 6), (5, 7),
        (6, 0), (6, 1), (6, 2), (6, 3), (6, 4), (6, 5), (6, 6), (6, 7),
        (7, 0), (7, 1), (7, 2), (7, 3), (7, 4), (7, 5), (7, 6), (7, 7),
    );
    HIDDEN
        .iter()
        .filter(|(c, o, _)| (*c, *o) == (crm, op2))
        .flat_map(|(_, _, fields)| fields.iter())
        .fold(real, |v, f| v & !f.mask())
}
