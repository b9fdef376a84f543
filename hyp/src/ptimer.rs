//! The EL1 physical timer of a vCPU, emulated (Arm ARM D11.2 "The AArch64 view of the Generic
//! Timer"): the guest's device tree promises it (PPI 14), but its registers stay trapped
//! (CNTHCTL_EL2.EL1PCEN = 0: the physical timer hardware belongs to the CPU, not to a vCPU), so
//! CNTP_CTL_EL0, CNTP_CVAL_EL0 and CNTP_TVAL_EL0 are kept here per vCPU against the physical
//! counter. Its interrupt is a level line the vGIC raises while it fires (`virt::vgic::load`).

use aarch64_cpu::registers::CNTP_CTL_EL0;

/// CNTP_CTL_EL0 bits (`aarch64-cpu`'s fields).
const ENABLE: u64 = CNTP_CTL_EL0::ENABLE::SET.value;
const IMASK: u64 = CNTP_CTL_EL0::IMASK::SET.value;
const ISTATUS: u64 = CNTP_CTL_EL0::ISTATUS::SET.value;

/// The physical timer's interrupt (PPI 14).
pub const INTID: u32 = 30;

/// Which timer register a trapped access names (op0 3, op1 3, CRn 14, CRm 2, op2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    Tval,
    Ctl,
    Cval,
}

impl Reg {
    /// The register of a trapped MRS/MSR, if it is one of the physical timer's.
    pub fn of(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> Option<Reg> {
        match (op0, op1, crn, crm, op2) {
            (3, 3, 14, 2, 0) => Some(Reg::Tval),
            (3, 3, 14, 2, 1) => Some(Reg::Ctl),
            (3, 3, 14, 2, 2) => Some(Reg::Cval),
            _ => None,
        }
    }
}

/// One vCPU's EL1 physical timer; out of reset disabled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysTimer {
    ctl: u64,
    cval: u64,
}

impl PhysTimer {
    /// Read `reg` at counter value `now`.
    pub fn read(&self, reg: Reg, now: u64) -> u64 {
        match reg {
            // TVAL is a signed 32-bit view of CVAL - now.
            Reg::Tval => self.cval.wrapping_sub(now) & 0xffff_ffff,
            Reg::Ctl => (self.ctl & (ENABLE | IMASK)) | if self.met(now) { ISTATUS } else { 0 },
            Reg::Cval => self.cval,
        }
    }

    /// Write `value` to `reg` at counter value `now`.
    pub fn write(&mut self, reg: Reg, value: u64, now: u64) {
        match reg {
            Reg::Tval => self.cval = now.wrapping_add(value as u32 as i32 as i64 as u64),
            Reg::Ctl => self.ctl = value & (ENABLE | IMASK),
            Reg::Cval => self.cval = value,
        }
    }

    /// The timer condition (enabled and CVAL reached), whether or not it is masked.
    fn met(&self, now: u64) -> bool {
        self.ctl & ENABLE != 0 && now >= self.cval
    }

    /// Its interrupt line at `now`.
    pub fn firing(&self, now: u64) -> bool {
        self.met(now) && self.ctl & IMASK == 0
    }

    /// When its line rises, if it is armed and has not yet.
    pub fn deadline(&self, now: u64) -> Option<u64> {
        (self.ctl & (ENABLE | IMASK) == ENABLE && now < self.cval).then_some(self.cval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tval_counts_down_from_a_write_and_istatus_follows_cval() {
        let mut t = PhysTimer::default();
        t.write(Reg::Tval, 100, 1000);
        assert_eq!(t.read(Reg::Cval, 1000), 1100);
        assert_eq!(t.read(Reg::Tval, 1040), 60);
        assert_eq!(t.read(Reg::Tval, 1101), 0xffff_ffff, "past the deadline TVAL is negative");
        assert_eq!(t.read(Reg::Ctl, 2000), 0, "disabled: no ISTATUS");
        t.write(Reg::Ctl, ENABLE, 1000);
        assert_eq!((t.read(Reg::Ctl, 1099), t.read(Reg::Ctl, 1100)), (ENABLE, ENABLE | ISTATUS));
        assert_eq!((t.firing(1099), t.firing(1100)), (false, true));
        assert_eq!(t.deadline(1000), Some(1100));
        assert_eq!(t.deadline(1100), None, "already firing");
    }

    #[test]
    fn a_masked_timer_does_not_fire_and_a_negative_tval_is_in_the_past() {
        let mut t = PhysTimer::default();
        t.write(Reg::Ctl, ENABLE | IMASK | ISTATUS, 0);
        assert_eq!(t.read(Reg::Ctl, 0) & (ENABLE | IMASK), ENABLE | IMASK, "ISTATUS is read-only");
        t.write(Reg::Tval, (-5i32) as u32 as u64, 1000);
        assert_eq!(t.read(Reg::Cval, 0), 995);
        assert!(!t.firing(1000) && t.read(Reg::Ctl, 1000) & ISTATUS != 0);
        assert_eq!(t.deadline(0), None, "masked");
        assert_eq!(Reg::of(3, 3, 14, 2, 1), Some(Reg::Ctl));
        assert_eq!(Reg::of(3, 3, 14, 3, 1), None, "the virtual timer is not trapped");
    }
}
