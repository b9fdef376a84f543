//! A vCPU's EL1 system-register context.
//!
//! While a vCPU is loaded on a physical CPU its EL1 registers live in the hardware; they are
//! copied out ([`El1Sysregs::save`]) only when another vCPU takes the CPU. Exception injection
//! therefore writes the *live* registers ([`inject`]), and must only be used on the loaded vCPU.
//! The EL2 controls that run a vCPU (HCR_EL2, stage 2) are in `hcr.rs`; address translation of
//! guest VAs in `at.rs`.
//!
//! # Every register a guest can write and another guest can read
//! (EL1/EL0-writable state of QEMU's `-cpu max`, checked against KVM's `sysreg-sr.h`.) Each is
//! switched with the vCPU, trapped, or hidden; nothing else survives into another VM.
//!
//! | Registers | Handling | Why / where |
//! |---|---|---|
//! | x0–x30, PC, PSTATE, q0–q31, FPCR, FPSR | switched | `GuestRegs`, saved on every exit (`vectors.rs`) |
//! | SCTLR, TTBR0/1, TCR, MAIR, AMAIR, VBAR, CONTEXTIDR, TPIDR_EL1, SP_EL1, ELR, SPSR, ESR, FAR, AFSR0/1, PAR, CPACR, CNTKCTL, CSSELR (all `_EL1`) | switched | [`El1Sysregs`] |
//! | TPIDR_EL0, TPIDRRO_EL0, SP_EL0 | switched | [`El1Sysregs`] |
//! | CNTV_CVAL_EL0, CNTV_CTL_EL0 | switched | [`El1Sysregs`]; CNTVOFF_EL2 per VM (`hcr.rs`) |
//! | ICC_PMR/BPR0/BPR1/IGRPEN0/IGRPEN1/CTLR_EL1 (→ ICH_VMCR_EL2), ICC_AP0R*/AP1R*_EL1 and acknowledge/EOI (→ ICH_AP0R*/AP1R*_EL2) | switched | [`GicCpuIf`]: HCR_EL2.IMO/FMO send these to the virtual CPU interface |
//! | ICH_HCR_EL2, ICH_LR*_EL2 | not guest-writable | the hypervisor injects no virtual interrupt through the GIC yet; when it does they join [`GicCpuIf`] |
//! | CNTP_CTL/CVAL/TVAL_EL0 | trapped, emulated | CNTHCTL_EL2.EL1PCEN = 0; per-vCPU state in `hyp::ptimer`, switched with the vCPU |
//! | ACTLR_EL1 | trapped | HCR_EL2.TACR, RAZ/WI |
//! | MDSCR_EL1, DBGB*/DBGW*, OSLAR/OSDLR, DBGCLAIM | trapped | MDCR_EL2.TDA/TDOSA/TDRA, RAZ/WI |
//! | PMU (PMCR_EL0, PMCNTEN*, PMEV*, PMUSERENR_EL0, …) | trapped | MDCR_EL2.TPM/TPMCR, RAZ/WI |
//! | LORSA/LOREA/LORN/LORC_EL1 | trapped | HCR_EL2.TLOR (undefined instruction); LO hidden |
//! | SCXTNUM_EL0/EL1 | trapped | HCR_EL2.EnSCXT = 0 |
//! | APIA/APIB/APDA/APDB/APGA keys | trapped | HCR_EL2.API/APK = 0; hidden |
//! | TFSR/TFSRE0/RGSR/GCR_EL1 (MTE) | trapped | HCR_EL2.ATA = 0; hidden |
//! | ZCR_EL1, SMCR_EL1, SVCR, TPIDR2_EL0 (SVE/SME) | trapped | CPTR_EL2.TZ/TSM; hidden |
//! | DISR_EL1 (→ VDISR_EL2 under HCR_EL2.AMO) | NOT switched | RAS is hidden from the ID registers, but `-cpu max` implements it: a guest that writes DISR_EL1 anyway leaves VDISR_EL2 behind (left for a follow-up: it needs a feature check before touching VDISR_EL2) |

use core::arch::asm;

/// SCTLR_EL1 reset value for a new vCPU: the RES1 bits of ARMv8.0, MMU and caches off.
pub const SCTLR_EL1_RESET: u64 = (1 << 29) | (1 << 28) | (1 << 23) | (1 << 22) | (1 << 20) | (1 << 11);
/// CPACR_EL1.FPEN = 0b11: FP/SIMD does not trap at EL1/EL0 (Rust guests use NEON from the start).
pub const CPACR_EL1_FPEN: u64 = 0b11 << 20;
macro_rules! el1_sysregs {
    ($($field:ident),* $(,)?) => {
        /// Every EL1/EL0 system register a guest owns, named as the Arm ARM names them.
        #[derive(Clone, Default, Debug)]
        pub struct El1Sysregs {
            $(pub $field: u64,)*
            /// The GIC virtual CPU interface (not a plain MRS/MSR pair per field).
            pub gic: GicCpuIf,
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
        self.gic.save();
        write_cntv_ctl(0);
    }

    /// A copy of the live EL1 context, which stays live and untouched (the vCPU of a clone).
    pub fn snapshot(&self) -> Self {
        let mut copy = self.clone();
        copy.save_plain();
        copy.gic.save();
        copy
    }

    /// Load this context (the timer's CVAL is restored before its CTL by field order).
    pub fn restore(&self) {
        self.restore_plain();
        self.gic.restore();
        isb();
    }
}

/// The guest-writable state of the GIC's virtual CPU interface. With HCR_EL2.IMO/FMO set, a
/// guest's `ICC_*_EL1` accesses reach the virtual interface: PMR, BPR0/1, IGRPEN0/1 and
/// CTLR.{EOImode, CBPR} land in ICH_VMCR_EL2, active priorities in ICH_AP0R<n>/AP1R<n>_EL2.
/// All of it is per physical CPU, so it moves with the vCPU. Out of reset everything is 0:
/// groups disabled, priority mask 0, no active priority.
#[derive(Clone, Copy, Default, Debug)]
pub struct GicCpuIf {
    pub vmcr: u64,
    pub ap0r: [u64; 4],
    pub ap1r: [u64; 4],
}

/// ICH_VTR_EL2.PREbits [31:29]: priority bits implemented, minus one.
const ICH_VTR_PREBITS_SHIFT: u32 = 29;

/// How many ICH_AP0R<n>_EL2 (and AP1R) this CPU implements: 1 for 5 priority bits, 2 for 6,
/// 4 for 7 (Arm GICv3 spec, ICH_AP0R<n>_EL2).
fn apr_count() -> usize {
    let vtr: u64;
    // SAFETY: reading ICH_VTR_EL2 (an ID register of the GIC CPU interface) has no side effect.
    unsafe { asm!("mrs {}, ich_vtr_el2", out(reg) vtr, options(nomem, nostack, preserves_flags)) };
    match (vtr >> ICH_VTR_PREBITS_SHIFT) & 0b111 {
        6 => 4,
        5 => 2,
        _ => 1,
    }
}

macro_rules! ich_apr {
    ($dir:ident, $n:expr, $val:expr; $($i:literal),*) => {
        match $n {
            $($i => ich_apr!(@$dir $i, $val),)*
            _ => {}
        }
    };
    (@save $i:literal, $val:expr) => {{
        let (a0, a1): (u64, u64);
        // SAFETY: reading the active-priority registers has no side effect.
        unsafe {
            asm!(concat!("mrs {}, ich_ap0r", $i, "_el2"), concat!("mrs {}, ich_ap1r", $i, "_el2"),
                 out(reg) a0, out(reg) a1, options(nomem, nostack, preserves_flags))
        };
        $val.ap0r[$i] = a0;
        $val.ap1r[$i] = a1;
    }};
    (@restore $i:literal, $val:expr) => {{
        // SAFETY: the virtual CPU interface only affects EL1&0, which does not run on this CPU
        // until the next ERET.
        unsafe {
            asm!(concat!("msr ich_ap0r", $i, "_el2, {}"), concat!("msr ich_ap1r", $i, "_el2, {}"),
                 in(reg) $val.ap0r[$i], in(reg) $val.ap1r[$i], options(nomem, nostack, preserves_flags))
        };
    }};
}

impl GicCpuIf {
    fn save(&mut self) {
        let vmcr: u64;
        // SAFETY: reading ICH_VMCR_EL2 has no side effect.
        unsafe { asm!("mrs {}, ich_vmcr_el2", out(reg) vmcr, options(nomem, nostack, preserves_flags)) };
        self.vmcr = vmcr;
        for n in 0..apr_count() {
            ich_apr!(save, n, self; 0, 1, 2, 3);
        }
    }

    fn restore(&self) {
        // SAFETY: as in `ich_apr!`: only EL1&0 reads the virtual CPU interface.
        unsafe { asm!("msr ich_vmcr_el2, {}", in(reg) self.vmcr, options(nomem, nostack, preserves_flags)) };
        for n in 0..apr_count() {
            ich_apr!(restore, n, self; 0, 1, 2, 3);
        }
    }
}

/// CNTV_CTL_EL0.ENABLE [0] and IMASK [1].
const CNTV_CTL_ENABLE: u64 = 1 << 0;
const CNTV_CTL_IMASK: u64 = 1 << 1;
/// CNTV_CTL_EL0.ISTATUS: the timer condition is met.
const CNTV_CTL_ISTATUS: u64 = 1 << 2;

/// The loaded vCPU's virtual timer, as its interrupt line sees it.
#[derive(Clone, Copy, Debug)]
pub struct Vtimer {
    /// Enabled, unmasked, and its condition met (ISTATUS): the interrupt line is high.
    pub firing: bool,
    /// When it fires, as a physical counter value (CNTVOFF_EL2 added back); `None` when it is
    /// disabled or masked.
    pub deadline: Option<u64>,
}

/// The loaded vCPU's virtual timer.
pub fn live_vtimer() -> Vtimer {
    let (ctl, cval, off): (u64, u64, u64);
    // SAFETY: reading the virtual timer's registers and CNTVOFF_EL2 has no side effect.
    unsafe {
        asm!("mrs {}, cntv_ctl_el0", "mrs {}, cntv_cval_el0", "mrs {}, cntvoff_el2",
             out(reg) ctl, out(reg) cval, out(reg) off, options(nomem, nostack, preserves_flags))
    };
    let armed = ctl & CNTV_CTL_ENABLE != 0 && ctl & CNTV_CTL_IMASK == 0;
    Vtimer { firing: armed && ctl & CNTV_CTL_ISTATUS != 0, deadline: armed.then(|| cval.saturating_add(off)) }
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

