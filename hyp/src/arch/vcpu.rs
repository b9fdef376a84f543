//! A vCPU's EL1 system-register context and the EL2 controls that run it.
//!
//! While a vCPU is loaded on a physical CPU its EL1 registers live in the hardware; they are
//! copied out ([`El1Sysregs::save`]) only when another vCPU takes the CPU. Exception injection
//! therefore writes the *live* registers ([`inject`]), and must only be used on the loaded vCPU.
//!
//! HCR_EL2 for every guest ([`HCR_GUEST`]):
//! - VM: stage-2 translation on; RW: EL1 is AArch64.
//! - SWIO: set/way invalidation by EL1 is upgraded to clean+invalidate (guest RAM frames are
//!   shared with the hypervisor, which must never lose a dirty line).
//! - FMO/IMO/AMO: physical FIQ/IRQ/SError go to EL2 (the hypervisor timer preempts the guest);
//!   the guest's virtual interrupts are masked by its own PSTATE.
//! - FB: TLB and I-cache maintenance from EL1 is broadcast inner-shareable, because a vCPU migrates
//!   between physical CPUs and its stale entries on a CPU it left must die too.
//! - BSU = inner shareable: barriers of the guest are upgraded to cover the other CPUs.
//! - TWI/TWE: WFI and WFE trap, so a waiting vCPU yields its physical CPU.
//! - TSC: SMC traps to EL2 (otherwise a guest would reach the real firmware's PSCI and could power
//!   off the machine); it is handled like HVC.
//! - TIDCP: implementation-defined system registers trap (and get an undefined instruction).
//! - PTW is not set: a guest whose page tables sit in device memory gets what it asked for.
//! - TID* are not set: the guest sees the real ID registers (cortex-a72 features).

use core::arch::asm;

/// Named HCR_EL2 bits (Arm ARM D19.2.48).
pub mod hcr {
    pub const VM: u64 = 1 << 0;
    pub const SWIO: u64 = 1 << 1;
    pub const FMO: u64 = 1 << 3;
    pub const IMO: u64 = 1 << 4;
    pub const AMO: u64 = 1 << 5;
    pub const FB: u64 = 1 << 9;
    pub const BSU_INNER: u64 = 0b01 << 10;
    pub const TWI: u64 = 1 << 13;
    pub const TWE: u64 = 1 << 14;
    pub const TSC: u64 = 1 << 19;
    pub const TIDCP: u64 = 1 << 20;
    pub const RW: u64 = 1 << 31;
}

/// HCR_EL2 while a guest runs (see the module comment for each bit).
pub const HCR_GUEST: u64 = hcr::VM
    | hcr::SWIO
    | hcr::FMO
    | hcr::IMO
    | hcr::AMO
    | hcr::FB
    | hcr::BSU_INNER
    | hcr::TWI
    | hcr::TWE
    | hcr::TSC
    | hcr::TIDCP
    | hcr::RW;

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
}

/// SCTLR_EL1 reset value for a new vCPU: the RES1 bits of ARMv8.0, MMU and caches off.
pub const SCTLR_EL1_RESET: u64 = (1 << 29) | (1 << 28) | (1 << 23) | (1 << 22) | (1 << 20) | (1 << 11);
/// SCTLR_EL1.M: stage-1 MMU enabled.
pub const SCTLR_EL1_M: u64 = 1 << 0;
/// CPACR_EL1.FPEN = 0b11: FP/SIMD does not trap at EL1/EL0 (Rust guests use NEON from the start).
pub const CPACR_EL1_FPEN: u64 = 0b11 << 20;
/// CNTHCTL_EL2: EL1PCTEN (EL1/EL0 may read the physical counter); EL1PCEN clear (the physical timer
/// traps: guests use the virtual timer).
pub const CNTHCTL_EL2_GUEST: u64 = 1 << 0;

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
    afsr0_el1, afsr1_el1, par_el1, cpacr_el1, cntkctl_el1, csselr_el1, mdscr_el1,
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

/// Per-VM and per-vCPU EL2 controls loaded with a vCPU.
#[derive(Clone, Copy, Debug)]
pub struct El2Controls {
    pub vttbr_el2: u64,
    pub vtcr_el2: u64,
    pub vmpidr_el2: u64,
    pub cntvoff_el2: u64,
}

impl El2Controls {
    /// Load them, with HCR_EL2 = [`HCR_GUEST`], and drop this CPU's EL1&0 TLB entries of the VM
    /// (a different vCPU of the same VM may have run here with other stage-1 tables; the guest's
    /// own TLBIs are broadcast by HCR_EL2.FB but entries left from an earlier vCPU are not covered).
    pub fn load(&self) {
        // SAFETY: these registers configure EL1&0 translation and identification only; no EL1&0
        // code runs on this CPU until the next ERET, and EL2's own regime does not use them.
        unsafe {
            asm!(
                "msr vtcr_el2, {vtcr}",
                "msr vttbr_el2, {vttbr}",
                "msr vmpidr_el2, {vmpidr}",
                "msr cntvoff_el2, {cntvoff}",
                "msr hcr_el2, {hcr}",
                "msr cnthctl_el2, {cnthctl}",
                "isb",
                "tlbi vmalle1",
                "dsb nsh",
                "isb",
                vtcr = in(reg) self.vtcr_el2,
                vttbr = in(reg) self.vttbr_el2,
                vmpidr = in(reg) self.vmpidr_el2,
                cntvoff = in(reg) self.cntvoff_el2,
                hcr = in(reg) HCR_GUEST,
                cnthctl = in(reg) CNTHCTL_EL2_GUEST,
                options(nostack, preserves_flags),
            )
        };
    }
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

/// PAR_EL1.F: the translation failed.
const PAR_F: u64 = 1 << 0;
/// PAR_EL1.PA, bits [47:12].
const PAR_PA_MASK: u64 = ((1 << 48) - 1) & !0xfff;

/// Translate a guest VA with the loaded vCPU's stage-1 tables (`AT S1E1R`), as needed when
/// HPFAR_EL2 is not valid (stage-2 permission faults). Returns the IPA, or `None` if stage 1
/// no longer maps the VA (the guest changed its tables: re-executing the access will tell).
/// The guest's PAR_EL1 is preserved.
pub fn translate_s1e1r(va: u64) -> Option<u64> {
    let (saved, par): (u64, u64);
    // SAFETY: AT only writes PAR_EL1, which is saved before and restored after; the walk reads
    // guest tables through stage 2, which at worst reports a fault in PAR_EL1 (HCR_EL2 is the
    // guest's, so no exception is taken to EL2 for it at EL2).
    unsafe {
        asm!(
            "mrs {saved}, par_el1",
            "at s1e1r, {va}",
            "isb",
            "mrs {par}, par_el1",
            "msr par_el1, {saved}",
            saved = out(reg) saved,
            par = out(reg) par,
            va = in(reg) va,
            options(nostack, preserves_flags),
        )
    };
    let _ = saved;
    if par & PAR_F != 0 {
        None
    } else {
        Some((par & PAR_PA_MASK) | (va & 0xfff))
    }
}

/// Per-CPU setup before the first guest: HCR_EL2 = [`HCR_GUEST`] so that physical IRQs are
/// routed to EL2 (and wake an idle `WFI`) even before any vCPU was loaded on this CPU.
pub fn init_cpu() {
    // SAFETY: HCR_EL2 controls EL1&0 only (no E2H/TGE), and no EL1&0 code runs until a vCPU is
    // loaded with `El2Controls::load`.
    unsafe { asm!("msr hcr_el2, {}", "isb", in(reg) HCR_GUEST, options(nomem, nostack, preserves_flags)) };
}
