//! A vCPU's EL1 system-register context.
//!
//! While a vCPU is loaded on a physical CPU its EL1 registers live in the hardware; they are
//! copied out ([`El1Sysregs::save`]) only when another vCPU takes the CPU. Exception injection
//! therefore writes the *live* registers ([`inject`]), and must only be used on the loaded vCPU.
//! The EL2 controls that run a vCPU (HCR_EL2, stage 2) are in `hcr.rs`; address translation of
//! guest VAs in `at.rs`.

use core::arch::asm;

/// SPSR/PSTATE fields used when starting or injecting into a vCPU.
pub mod pstate {
    /// M[3:0] = EL1 with SP_EL1.
    pub const MODE_EL1H: u64 = 0b0101;
    /// M[3:0] = EL1 with SP_EL0.
    pub const MODE_EL1T: u64 = 0b0100;
    /// M[3:0] = EL0.
    pub const MODE_EL0T: u64 = 0b0000;
    /// M[3:0] mask.
    pub const MODE_MASK: u64 = 0b1111;
    /// M[4]: the exception came from AArch32.
    pub const MODE_RW_AARCH32: u64 = 1 << 4;
    /// D, A, I, F masks (bits 9:6).
    pub const DAIF: u64 = 0b1111 << 6;
    /// SSBS, bit 12 (FEAT_SSBS).
    pub const SSBS: u64 = 1 << 12;
    /// PAN, bit 22 (FEAT_PAN).
    pub const PAN: u64 = 1 << 22;
}

/// SCTLR_EL1 reset value for a new vCPU: the RES1 bits of ARMv8.0, MMU and caches off.
pub const SCTLR_EL1_RESET: u64 = (1 << 29) | (1 << 28) | (1 << 23) | (1 << 22) | (1 << 20) | (1 << 11);
/// SCTLR_EL1.M: stage-1 MMU enabled.
pub const SCTLR_EL1_M: u64 = 1 << 0;
/// SCTLR_EL1.SPAN [23]: 0 = PSTATE.PAN is set on exception entry to EL1 (RES1 without PAN).
pub const SCTLR_EL1_SPAN: u64 = 1 << 23;
/// SCTLR_EL1.DSSBS [44]: PSTATE.SSBS on exception entry (RES0 without FEAT_SSBS).
pub const SCTLR_EL1_DSSBS: u64 = 1 << 44;
/// CPACR_EL1.FPEN = 0b11: FP/SIMD does not trap at EL1/EL0 (Rust guests use NEON from the start).
pub const CPACR_EL1_FPEN: u64 = 0b11 << 20;
macro_rules! el1_sysregs {
    ($($field:ident),* $(,)?) => {
        /// Every EL1/EL0 system register a guest owns, named as the Arm ARM names them.
        #[derive(Clone, Default, Debug)]
        pub struct El1Sysregs {
            $(pub $field: u64,)*
        }

        impl El1Sysregs {
            /// Copy the live registers out of this CPU.
            fn save_plain(&mut self) {
                $(
                    let v: u64;
                    // SAFETY: reading an EL1/EL0 system register at EL2 has no side effect.
                    unsafe { asm!(concat!("mrs {}, ", stringify!($field)), out(reg) v, options(nomem, nostack, preserves_flags)) };
                    self.$field = v;
                )*
            }

            /// Load the registers into this CPU.
            fn restore_plain(&self) {
                $(
                    // SAFETY: EL1/EL0 registers only affect EL1&0 execution, which does not run
                    // on this CPU until the next ERET; EL2's own translation regime is separate.
                    unsafe { asm!(concat!("msr ", stringify!($field), ", {}"), in(reg) self.$field, options(nomem, nostack, preserves_flags)) };
                )*
            }
        }
    };
}

el1_sysregs!(
    sctlr_el1, ttbr0_el1, ttbr1_el1, tcr_el1, mair_el1, amair_el1, vbar_el1, contextidr_el1,
    tpidr_el0, tpidr_el1, tpidrro_el0, sp_el0, sp_el1, elr_el1, spsr_el1, esr_el1, far_el1,
    afsr0_el1, afsr1_el1, par_el1, cpacr_el1, cntkctl_el1, csselr_el1,
    cntv_cval_el0, cntv_ctl_el0,
);

impl El1Sysregs {
    /// The state of a vCPU out of reset: MMU off, FP enabled, everything else zero.
    pub fn reset() -> Self {
        El1Sysregs { sctlr_el1: SCTLR_EL1_RESET, cpacr_el1: CPACR_EL1_FPEN, ..Default::default() }
    }

    /// Save the live EL1 context and silence the virtual timer so it cannot fire while another
    /// vCPU owns this CPU.
    pub fn save(&mut self) {
        self.save_plain();
        write_cntv_ctl(0);
    }

    /// Load this context (the timer's CVAL is restored before its CTL by field order).
    pub fn restore(&self) {
        self.restore_plain();
        isb();
    }
}

/// CNTV_CTL_EL0.ENABLE [0] and IMASK [1].
const CNTV_CTL_ENABLE: u64 = 1 << 0;
const CNTV_CTL_IMASK: u64 = 1 << 1;

/// When the loaded vCPU's virtual timer fires, as a physical counter value (CNTVOFF_EL2 added
/// back), or `None` when it is disabled or masked.
pub fn live_vtimer_deadline() -> Option<u64> {
    let (ctl, cval, off): (u64, u64, u64);
    // SAFETY: reading the virtual timer's registers and CNTVOFF_EL2 has no side effect.
    unsafe {
        asm!("mrs {}, cntv_ctl_el0", "mrs {}, cntv_cval_el0", "mrs {}, cntvoff_el2",
             out(reg) ctl, out(reg) cval, out(reg) off, options(nomem, nostack, preserves_flags))
    };
    (ctl & CNTV_CTL_ENABLE != 0 && ctl & CNTV_CTL_IMASK == 0).then(|| cval.saturating_add(off))
}

fn isb() {
    // SAFETY: a barrier has no memory-safety effect.
    unsafe { asm!("isb", options(nomem, nostack, preserves_flags)) };
}

fn write_cntv_ctl(v: u64) {
    // SAFETY: writing the EL1 virtual timer control only affects the virtual timer interrupt.
    unsafe { asm!("msr cntv_ctl_el0, {}", "isb", in(reg) v, options(nomem, nostack, preserves_flags)) };
}

/// The loaded vCPU's VBAR_EL1 and SCTLR_EL1.
pub fn live_vbar_sctlr() -> (u64, u64) {
    let (vbar, sctlr): (u64, u64);
    // SAFETY: reading EL1 system registers has no side effect.
    unsafe {
        asm!("mrs {}, vbar_el1", "mrs {}, sctlr_el1", out(reg) vbar, out(reg) sctlr,
             options(nomem, nostack, preserves_flags))
    };
    (vbar, sctlr)
}

/// The loaded vCPU's TCR_EL1.
pub fn live_tcr_el1() -> u64 {
    let tcr: u64;
    // SAFETY: reading an EL1 system register has no side effect.
    unsafe { asm!("mrs {}, tcr_el1", out(reg) tcr, options(nomem, nostack, preserves_flags)) };
    tcr
}

/// The exception-entry registers of EL1, written when the hypervisor injects an exception.
#[derive(Clone, Copy, Debug)]
pub struct El1Exception {
    pub esr_el1: u64,
    pub far_el1: u64,
    pub elr_el1: u64,
    pub spsr_el1: u64,
}

/// Write the loaded vCPU's ESR/FAR/ELR/SPSR_EL1 (the rest of injection — the new PC and PSTATE —
/// is in the vCPU's `GuestRegs`).
pub fn inject(e: &El1Exception) {
    // SAFETY: these EL1 registers are only consumed by guest code after the next ERET.
    unsafe {
        asm!(
            "msr esr_el1, {esr}",
            "msr far_el1, {far}",
            "msr elr_el1, {elr}",
            "msr spsr_el1, {spsr}",
            esr = in(reg) e.esr_el1,
            far = in(reg) e.far_el1,
            elr = in(reg) e.elr_el1,
            spsr = in(reg) e.spsr_el1,
            options(nomem, nostack, preserves_flags),
        )
    };
}

