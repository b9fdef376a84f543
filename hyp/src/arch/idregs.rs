//! The ID registers as guests see them: the real value read here, with the fields
//! `hyp::idregs` clamps (the decision, host-tested, and why each field is clamped).
//!
//! This is what makes `-cpu max` (QEMU's every-feature CPU) usable for guests.

use core::arch::asm;

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
    hyp::idregs::guest_view(crm, op2, real)
}
