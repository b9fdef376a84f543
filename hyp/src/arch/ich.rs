//! The GIC's virtualization control registers (ICH_*_EL2, Arm IHI 0069 12.4): the list registers
//! through which `virt::vgic` gives a vCPU its virtual interrupts, and ICH_HCR_EL2. The
//! `aarch64-cpu` crate has none of them, hence `asm!`.

use core::arch::asm;

/// ICH_HCR_EL2.En: the virtual CPU interface is enabled.
pub const HCR_EN: u64 = 1 << 0;
/// ICH_HCR_EL2.UIE: a maintenance interrupt when at most one list register is valid.
pub const HCR_UIE: u64 = 1 << 1;
/// The maintenance interrupt (PPI 9).
pub const MAINTENANCE_INTID: u32 = 25;

/// List registers this CPU implements (ICH_VTR_EL2.ListRegs + 1).
pub fn nr_lrs() -> usize {
    let vtr: u64;
    // SAFETY: reading ICH_VTR_EL2 (an ID register of the GIC CPU interface) has no side effect.
    unsafe { asm!("mrs {}, ich_vtr_el2", out(reg) vtr, options(nomem, nostack, preserves_flags)) };
    (vtr & 0x1f) as usize + 1
}

/// Write ICH_HCR_EL2.
pub fn write_hcr(v: u64) {
    // SAFETY: ICH_HCR_EL2 controls only the virtual CPU interface EL1 sees after the next ERET.
    unsafe { asm!("msr ich_hcr_el2, {}", in(reg) v, options(nomem, nostack, preserves_flags)) };
}

macro_rules! lr_access {
    ($($n:literal),*) => {
        /// Write list register `n` (ignored beyond 15).
        pub fn write_lr(n: usize, v: u64) {
            match n {
                $(
                    // SAFETY: a list register affects only the virtual CPU interface EL1 sees
                    // after the next ERET.
                    $n => unsafe { asm!(concat!("msr ich_lr", $n, "_el2, {}"), in(reg) v, options(nomem, nostack, preserves_flags)) },
                )*
                _ => {}
            }
        }

        /// Read list register `n` (0 beyond 15).
        pub fn read_lr(n: usize) -> u64 {
            let mut v = 0;
            match n {
                $(
                    // SAFETY: reading a list register has no side effect.
                    $n => unsafe { asm!(concat!("mrs {}, ich_lr", $n, "_el2"), out(reg) v, options(nomem, nostack, preserves_flags)) },
                )*
                _ => {}
            }
            v
        }
    };
}
lr_access!(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
