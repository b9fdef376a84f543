//! The GIC's virtualization control registers (ICH_*_EL2, Arm IHI 0069 12.4): the list registers
//! through which `virt::vgic` gives a vCPU its virtual interrupts, and ICH_HCR_EL2, through
//! `aarch64-cpu`'s accessors and fields.

use aarch64_cpu::registers::*;

/// ICH_HCR_EL2.En: the virtual CPU interface is enabled.
pub const HCR_EN: u64 = ICH_HCR_EL2::En::SET.value;
/// ICH_HCR_EL2.UIE: a maintenance interrupt when at most one list register is valid.
pub const HCR_UIE: u64 = ICH_HCR_EL2::UIE::SET.value;
/// The maintenance interrupt (PPI 9).
pub const MAINTENANCE_INTID: u32 = 25;

/// List registers this CPU implements (ICH_VTR_EL2.ListRegs + 1).
pub fn nr_lrs() -> usize {
    ICH_VTR_EL2.read(ICH_VTR_EL2::ListRegs) as usize + 1
}

/// Write ICH_HCR_EL2 (it controls only the virtual CPU interface EL1 sees after the next ERET).
pub fn write_hcr(v: u64) {
    ICH_HCR_EL2.set(v);
}

macro_rules! lr_access {
    ($($n:literal => $reg:ident),*) => {
        /// Write list register `n` (ignored beyond 15). A list register affects only the virtual
        /// CPU interface EL1 sees after the next ERET.
        pub fn write_lr(n: usize, v: u64) {
            match n {
                $($n => $reg.set(v),)*
                _ => {}
            }
        }

        /// Read list register `n` (0 beyond 15).
        pub fn read_lr(n: usize) -> u64 {
            match n {
                $($n => $reg.get(),)*
                _ => 0,
            }
        }
    };
}
lr_access!(
    0 => ICH_LR0_EL2, 1 => ICH_LR1_EL2, 2 => ICH_LR2_EL2, 3 => ICH_LR3_EL2, 4 => ICH_LR4_EL2,
    5 => ICH_LR5_EL2, 6 => ICH_LR6_EL2, 7 => ICH_LR7_EL2, 8 => ICH_LR8_EL2, 9 => ICH_LR9_EL2,
    10 => ICH_LR10_EL2, 11 => ICH_LR11_EL2, 12 => ICH_LR12_EL2, 13 => ICH_LR13_EL2,
    14 => ICH_LR14_EL2, 15 => ICH_LR15_EL2
);
