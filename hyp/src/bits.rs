//! Named bit fields of system registers (`Field::new(hi, lo)` for `[hi:lo]`), so that trap
//! decoding and register values read as the Arm ARM spells them, without bare masks.

/// A bit field `[hi:lo]` of a system register.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    lo: u32,
    width: u32,
}

impl Field {
    /// Bits `[hi:lo]`.
    pub const fn new(hi: u32, lo: u32) -> Field {
        Field { lo, width: hi - lo + 1 }
    }
    /// Bit `n`.
    pub const fn bit(n: u32) -> Field {
        Field { lo: n, width: 1 }
    }
    /// The field's value in `v`.
    pub const fn get(self, v: u64) -> u64 {
        (v >> self.lo) & self.ones()
    }
    /// True when the field is not zero in `v`.
    pub const fn is_set(self, v: u64) -> bool {
        self.get(v) != 0
    }
    /// The field's bits in place.
    pub const fn mask(self) -> u64 {
        self.ones() << self.lo
    }
    /// `width` one bits (a 64-bit field is all ones).
    const fn ones(self) -> u64 {
        if self.width >= 64 {
            u64::MAX
        } else {
            (1u64 << self.width) - 1
        }
    }
    /// `value` placed in the field (truncated to its width).
    pub const fn place(self, value: u64) -> u64 {
        (value & self.ones()) << self.lo
    }
}

/// MPIDR_EL1 affinity fields (Arm ARM D19.2.92).
pub mod mpidr {
    use super::Field;
    pub const AFF0: Field = Field::new(7, 0);
    pub const AFF1: Field = Field::new(15, 8);
    pub const AFF2: Field = Field::new(23, 16);
    pub const AFF3: Field = Field::new(39, 32);
    /// Aff3..Aff0 together, as PSCI CPU_ON expects them.
    pub const AFFINITY_MASK: u64 = AFF0.mask() | AFF1.mask() | AFF2.mask() | AFF3.mask();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        let f = Field::new(15, 11);
        assert_eq!(f.get(0x4100_3000 | (6 << 11)), 6);
        assert_eq!(f.place(0x3f), 0x1f << 11);
        assert!(Field::bit(0).is_set(1));
        assert_eq!(mpidr::AFFINITY_MASK, 0xff_00ff_ffff);
        assert_eq!(mpidr::AFF1.get(0x8000_0203), 2);
        assert_eq!(Field::new(63, 0).mask(), u64::MAX);
        assert_eq!(Field::new(63, 0).get(u64::MAX), u64::MAX);
    }
}
