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
//! | DISR_EL1 (→ VDISR_EL2 under HCR_EL2.AMO, FEAT_RAS) | switched | [`El1Sysregs::vdisr_el2`], only on a CPU with FEAT_RAS (`-cpu max`; the register does not exist otherwise). RAS is hidden from the ID registers, but a guest can write DISR_EL1 anyway |
//! | ERRSELR_EL1, ERX*_EL1 (FEAT_RAS error records) | trapped | HCR_EL2.TERR (with FEAT_RAS), undefined instruction |
//! | VSESR_EL2 (the syndrome of a virtual SError) | not guest-writable | an EL2 register, used only with HCR_EL2.VSE, which the hypervisor never sets |

use core::arch::asm;

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::*;

/// SCTLR_EL1 reset value for a new vCPU: the RES1 bits of ARMv8.0 ([29:28], [23:22], [20],
/// [11]), MMU and caches off.
pub const SCTLR_EL1_RESET: u64 = 0x30d0_0800;
/// CPACR_EL1.FPEN = 0b11: FP/SIMD does not trap at EL1/EL0 (Rust guests use NEON from the start).
pub const CPACR_EL1_FPEN: u64 = CPACR_EL1::FPEN::TrapNothing.value;

macro_rules! el1_sysregs {
    ($($field:ident: $reg:ident),* $(,)?) => {
        /// Every EL1/EL0 system register a guest owns, named as the Arm ARM names them.
        #[derive(Clone, Default, Debug)]
        pub struct El1Sysregs {
            $(pub $field: u64,)*
            /// What the guest's EL1 reads and writes as DISR_EL1 (HCR_EL2.AMO redirects it),
            /// switched only on a CPU with FEAT_RAS (0 otherwise).
            pub vdisr_el2: u64,
            /// The GIC virtual CPU interface (not a plain MRS/MSR pair per field).
            pub gic: GicCpuIf,
        }

        impl El1Sysregs {
            /// Copy the live registers out of this CPU.
            fn save_plain(&mut self) {
                $(self.$field = $reg.get();)*
            }

            /// Load the registers into this CPU. EL1/EL0 registers only affect EL1&0 execution,
            /// which does not run on this CPU until the next ERET; EL2's own translation regime
            /// is separate. A register that holds the value already is not written (the same
            /// state, architecturally): QEMU flushes the CPU's whole TLB and jump cache on every
            /// TCR_EL1 write, changed or not, which was one flush per park and resume (119 in
            /// `swapbench`'s ascending pass; its strided pass's median 4.64 → 4.33 s over 8
            /// interleaved runs).
            fn restore_plain(&self) {
                $(if $reg.get() != self.$field {
                    $reg.set(self.$field);
                })*
            }
        }
    };
}

el1_sysregs!(
    sctlr_el1: SCTLR_EL1, ttbr0_el1: TTBR0_EL1, ttbr1_el1: TTBR1_EL1, tcr_el1: TCR_EL1,
    mair_el1: MAIR_EL1, amair_el1: AMAIR_EL1, vbar_el1: VBAR_EL1, contextidr_el1: CONTEXTIDR_EL1,
    tpidr_el0: TPIDR_EL0, tpidr_el1: TPIDR_EL1, tpidrro_el0: TPIDRRO_EL0, sp_el0: SP_EL0,
    sp_el1: SP_EL1, elr_el1: ELR_EL1, spsr_el1: SPSR_EL1, esr_el1: ESR_EL1, far_el1: FAR_EL1,
    afsr0_el1: AFSR0_EL1, afsr1_el1: AFSR1_EL1, par_el1: PAR_EL1, cpacr_el1: CPACR_EL1,
    cntkctl_el1: CNTKCTL_EL1, csselr_el1: CSSELR_EL1,
    cntv_cval_el0: CNTV_CVAL_EL0, cntv_ctl_el0: CNTV_CTL_EL0,
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
        if super::cpu::has_ras() {
            self.vdisr_el2 = read_vdisr_el2();
        }
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
        if super::cpu::has_ras() {
            write_vdisr_el2(self.vdisr_el2);
        }
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

/// How many ICH_AP0R<n>_EL2 (and AP1R) this CPU implements: 1 for 5 preemption bits, 2 for 6,
/// 4 for 7 (Arm GICv3 spec, ICH_AP0R<n>_EL2; ICH_VTR_EL2.PREbits holds the count minus one).
fn apr_count() -> usize {
    match ICH_VTR_EL2.read(ICH_VTR_EL2::PREbits) {
        6 => 4,
        5 => 2,
        _ => 1,
    }
}

impl GicCpuIf {
    /// Only the implemented active-priority registers are touched: the others are UNDEFINED.
    fn save(&mut self) {
        self.vmcr = ICH_VMCR_EL2.get();
        let n = apr_count();
        self.ap0r[0] = ICH_AP0R0_EL2.get();
        self.ap1r[0] = ICH_AP1R0_EL2.get();
        if n > 1 {
            self.ap0r[1] = ICH_AP0R1_EL2.get();
            self.ap1r[1] = ICH_AP1R1_EL2.get();
        }
        if n > 2 {
            self.ap0r[2] = ICH_AP0R2_EL2.get();
            self.ap1r[2] = ICH_AP1R2_EL2.get();
            self.ap0r[3] = ICH_AP0R3_EL2.get();
            self.ap1r[3] = ICH_AP1R3_EL2.get();
        }
    }

    /// Only EL1&0 reads the virtual CPU interface, which does not run on this CPU until the next
    /// ERET.
    fn restore(&self) {
        ICH_VMCR_EL2.set(self.vmcr);
        let n = apr_count();
        ICH_AP0R0_EL2.set(self.ap0r[0]);
        ICH_AP1R0_EL2.set(self.ap1r[0]);
        if n > 1 {
            ICH_AP0R1_EL2.set(self.ap0r[1]);
            ICH_AP1R1_EL2.set(self.ap1r[1]);
        }
        if n > 2 {
            ICH_AP0R2_EL2.set(self.ap0r[2]);
            ICH_AP1R2_EL2.set(self.ap1r[2]);
            ICH_AP0R3_EL2.set(self.ap0r[3]);
            ICH_AP1R3_EL2.set(self.ap1r[3]);
        }
    }
}

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
    let ctl = CNTV_CTL_EL0.extract();
    let armed = ctl.is_set(CNTV_CTL_EL0::ENABLE) && !ctl.is_set(CNTV_CTL_EL0::IMASK);
    Vtimer {
        firing: armed && ctl.is_set(CNTV_CTL_EL0::ISTATUS),
        deadline: armed.then(|| CNTV_CVAL_EL0.get().saturating_add(CNTVOFF_EL2.get())),
    }
}

fn isb() {
    barrier::isb(barrier::SY);
}

/// VDISR_EL2 (`S3_4_C12_C1_1`, FEAT_RAS only; not in `aarch64-cpu` 11).
fn read_vdisr_el2() -> u64 {
    let v: u64;
    // SAFETY: reading VDISR_EL2 has no side effect (the caller checked FEAT_RAS).
    unsafe { asm!("mrs {}, s3_4_c12_c1_1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

fn write_vdisr_el2(v: u64) {
    // SAFETY: VDISR_EL2 is only what EL1 reads as DISR_EL1 (the caller checked FEAT_RAS); no EL1
    // code runs on this CPU until the next ERET.
    unsafe { asm!("msr s3_4_c12_c1_1, {}", in(reg) v, options(nomem, nostack, preserves_flags)) };
}

fn write_cntv_ctl(v: u64) {
    // Writing the EL1 virtual timer control only affects the virtual timer interrupt.
    CNTV_CTL_EL0.set(v);
    isb();
}

/// The loaded vCPU's VBAR_EL1 and SCTLR_EL1.
pub fn live_vbar_sctlr() -> (u64, u64) {
    (VBAR_EL1.get(), SCTLR_EL1.get())
}

/// The loaded vCPU's TCR_EL1.
pub fn live_tcr_el1() -> u64 {
    TCR_EL1.get()
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
    // These EL1 registers are only consumed by guest code after the next ERET.
    ESR_EL1.set(e.esr_el1);
    FAR_EL1.set(e.far_el1);
    ELR_EL1.set(e.elr_el1);
    SPSR_EL1.set(e.spsr_el1);
}

