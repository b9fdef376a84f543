//! MMIO data between the guest's register and the device: access size, sign or zero extension
//! (ISS.SAS/SSE/SF) and the guest's data endianness (the policy half of `virt::mmio`,
//! host-tested).
//!
//! Emulated device registers are little-endian, as the devices they model (a PL011 is). A
//! big-endian guest access stores its register's bytes most significant first, so the device
//! sees them byte-reversed, and a load byte-reverses what the device returns before it is
//! extended into the register (KVM: `vcpu_data_guest_to_host` / `vcpu_data_host_to_guest`).
//! Which accesses are big-endian (Arm ARM D5 "Endianness"): at EL1 SCTLR_EL1.EE, at AArch64
//! EL0 SCTLR_EL1.E0E, at AArch32 EL0 PSTATE.E (SPSR.E, set by SETEND).

use aarch64_cpu::registers::SCTLR_EL1;

use crate::esr::AccessSyndrome;
use crate::exception::SPSR;

/// The byte order of a guest's data access.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Endian {
    Little,
    Big,
}

/// The endianness of the data access that trapped, from the guest's SCTLR_EL1 and the SPSR of
/// the trap (the interrupted PSTATE).
pub fn data_endian(sctlr_el1: u64, spsr: u64) -> Endian {
    // SCTLR_EL1.EE: explicit data accesses at EL1 are big-endian; E0E: at AArch64 EL0.
    let big = if SPSR::M4::AArch32.matches_all(spsr) {
        SPSR::E.is_set(spsr)
    } else if SPSR::EL::EL0.matches_all(spsr) {
        SCTLR_EL1::E0E.is_set(sctlr_el1)
    } else {
        SCTLR_EL1::EE.is_set(sctlr_el1)
    };
    if big {
        Endian::Big
    } else {
        Endian::Little
    }
}

/// Mask of an access of `size` bytes.
fn size_mask(size: u8) -> u64 {
    match size {
        8 => u64::MAX,
        s => (1u64 << (u32::from(s) * 8)) - 1,
    }
}

/// `v`, an access of `size` bytes, in the other byte order when the access is big-endian.
fn order(v: u64, size: u8, endian: Endian) -> u64 {
    match (endian, size) {
        (Endian::Little, _) | (Endian::Big, 1) => v,
        (Endian::Big, 2) => u64::from((v as u16).swap_bytes()),
        (Endian::Big, 4) => u64::from((v as u32).swap_bytes()),
        (Endian::Big, _) => v.swap_bytes(),
    }
}

/// What the device is given for a store of register value `reg`.
pub fn store_value(reg: u64, acc: &AccessSyndrome, endian: Endian) -> u64 {
    order(reg & size_mask(acc.size), acc.size, endian)
}

/// What goes into the register for a load that read `device` from the device: reordered, then
/// sign- or zero-extended per the syndrome (a W register's upper 32 bits are zero).
pub fn load_value(device: u64, acc: &AccessSyndrome, endian: Endian) -> u64 {
    let v = order(device & size_mask(acc.size), acc.size, endian);
    let bits = u32::from(acc.size) * 8;
    let v = if acc.sign_extend && bits < 64 {
        let shift = 64 - bits;
        (((v << shift) as i64) >> shift) as u64
    } else {
        v
    };
    if acc.sixty_four {
        v
    } else {
        v & 0xffff_ffff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(size: u8, sign_extend: bool, sixty_four: bool) -> AccessSyndrome {
        AccessSyndrome { size, sign_extend, reg: 0, sixty_four }
    }

    const EL1H: u64 = 0b0101;
    const EL0T: u64 = 0b0000;
    const EE: u64 = SCTLR_EL1::EE::SET.value;
    const E0E: u64 = SCTLR_EL1::E0E::SET.value;

    #[test]
    fn which_accesses_are_big_endian() {
        assert_eq!(data_endian(0, EL1H), Endian::Little);
        assert_eq!(data_endian(EE, EL1H), Endian::Big);
        assert_eq!(data_endian(E0E, EL1H), Endian::Little);
        assert_eq!(data_endian(E0E, EL0T), Endian::Big);
        assert_eq!(data_endian(EE, EL0T), Endian::Little);
        // AArch32 EL0 (M = 0b10000, usr): PSTATE.E decides.
        assert_eq!(data_endian(EE | E0E, 0b1_0000), Endian::Little);
        assert_eq!(data_endian(0, 0b1_0000 | SPSR::E::SET.value), Endian::Big);
    }

    #[test]
    fn little_endian_data_is_the_register() {
        assert_eq!(store_value(0x1122_3344_5566_7788, &acc(4, false, false), Endian::Little), 0x5566_7788);
        assert_eq!(load_value(0x11, &acc(4, false, false), Endian::Little), 0x11);
        assert_eq!(load_value(0x80, &acc(1, true, true), Endian::Little), 0xffff_ffff_ffff_ff80);
        assert_eq!(load_value(0x8000, &acc(2, true, false), Endian::Little), 0xffff_8000);
        assert_eq!(load_value(u64::MAX, &acc(8, false, true), Endian::Little), u64::MAX);
    }

    #[test]
    fn big_endian_data_is_byte_reversed_then_extended() {
        // A 32-bit big-endian read of a PL011 ID register that holds 0x11.
        assert_eq!(load_value(0x11, &acc(4, false, false), Endian::Big), 0x1100_0000);
        assert_eq!(load_value(0x0080, &acc(2, true, true), Endian::Big), 0xffff_ffff_ffff_8000);
        assert_eq!(load_value(0x0102_0304_0506_0708, &acc(8, false, true), Endian::Big), 0x0807_0605_0403_0201);
        // Bytes have no order.
        assert_eq!(load_value(0x80, &acc(1, false, true), Endian::Big), 0x80);
        // A big-endian store of 'A' in the top byte of a word reaches the device as 0x41.
        assert_eq!(store_value(0x4100_0000, &acc(4, false, false), Endian::Big), 0x41);
        assert_eq!(store_value(0xaabb, &acc(2, false, false), Endian::Big), 0xbbaa);
    }
}
