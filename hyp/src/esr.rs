//! Decoding of ESR_EL2, HPFAR_EL2 and PAR_EL1 by named fields (Arm ARM D19.2.41 ESR_EL2,
//! D19.2.53 HPFAR_EL2, D19.2.106 PAR_EL1), and the ESR_EL1 encodings used to inject exceptions.
//! The one place where syndrome bits are named; pure functions, unit-tested on the host.
//!
//! The register-level fields (EC, IL, ISS, HPFAR_EL2.FIPA, PAR_EL1.F/PA) are `aarch64-cpu`'s; the
//! ISS encodings of each exception class, which it does not define, are declared here with the
//! same `tock-registers` macro (one "register" per ISS encoding, as the Arm ARM lays them out).

use aarch64_cpu::registers::{ESR_EL1, ESR_EL2, HPFAR_EL2, PAR_EL1};
use tock_registers::{register_bitfields, LocalRegisterCopy};
use vm::{Ipa, PAGE_SHIFT};

register_bitfields! {u64,
    /// ISS of a data or instruction abort (EC 0x20/0x21/0x24/0x25, Arm ARM D19.2.41 "ISS
    /// encoding for an exception from a Data Abort").
    pub ABORT_ISS [
        /// Instruction syndrome valid (SAS, SSE, SRT, SF hold).
        ISV OFFSET(24) NUMBITS(1) [],
        /// Syndrome access size.
        SAS OFFSET(22) NUMBITS(2) [Byte = 0, Halfword = 1, Word = 2, Doubleword = 3],
        /// Syndrome sign extend.
        SSE OFFSET(21) NUMBITS(1) [],
        /// Syndrome register transfer (Xt/Wt; 31 = XZR).
        SRT OFFSET(16) NUMBITS(5) [],
        /// Sixty-four bit register (Xt rather than Wt).
        SF OFFSET(15) NUMBITS(1) [],
        /// FAR not valid.
        FnV OFFSET(10) NUMBITS(1) [],
        /// Cache maintenance or address translation instruction.
        CM OFFSET(8) NUMBITS(1) [],
        /// Stage-2 fault on a stage-1 translation table walk.
        S1PTW OFFSET(7) NUMBITS(1) [],
        /// Write, not read.
        WnR OFFSET(6) NUMBITS(1) [],
        /// Data/instruction fault status code.
        FSC OFFSET(0) NUMBITS(6) [
            /// Synchronous external abort, not on a translation table walk.
            SyncExternal = 0b01_0000,
            /// Synchronous external abort on a translation table walk, level 0 (+ level).
            SyncExternalWalkL0 = 0b01_0100
        ],
        /// FSC[5:2]: the fault type.
        FSC_TYPE OFFSET(2) NUMBITS(4) [Translation = 0b0001, AccessFlag = 0b0010, Permission = 0b0011],
        /// FSC[1:0]: the level.
        FSC_LEVEL OFFSET(0) NUMBITS(2) []
    ],

    /// ISS of a trapped MSR/MRS or system instruction (EC 0x18, Arm ARM D19.2.41 "ISS encoding
    /// for an exception from MSR, MRS, or System instruction execution in AArch64 state").
    pub SYSREG_ISS [
        Op0 OFFSET(20) NUMBITS(2) [],
        Op2 OFFSET(17) NUMBITS(3) [],
        Op1 OFFSET(14) NUMBITS(3) [],
        CRn OFFSET(10) NUMBITS(4) [],
        Rt OFFSET(5) NUMBITS(5) [],
        CRm OFFSET(1) NUMBITS(4) [],
        /// Direction: 1 = read (MRS), 0 = write (MSR).
        Direction OFFSET(0) NUMBITS(1) [Write = 0, Read = 1]
    ],

    /// ISS of a trapped WFI/WFE (EC 0x01).
    pub WFX_ISS [
        /// TI: which instruction (the 0b1x forms are FEAT_WFxT's, with a timeout).
        TI OFFSET(0) NUMBITS(2) [WFI = 0b00, WFE = 0b01, WFIT = 0b10, WFET = 0b11]
    ],

    /// ISS of an HVC or SMC (EC 0x16/0x17).
    pub HVC_ISS [
        /// The instruction's immediate.
        imm16 OFFSET(0) NUMBITS(16) []
    ],

    /// PAR_EL1 after a failed AT (F = 1), the field `aarch64-cpu` does not name.
    pub PAR_EL1_FAULT [
        /// S: the fault was at stage 2 (on the stage-1 walk, for AT S1E*).
        S OFFSET(9) NUMBITS(1) []
    ]
}

/// Exception classes the hypervisor distinguishes (ESR_ELx.EC).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ExceptionClass {
    /// 0x00: unknown reason.
    Unknown,
    /// 0x01: trapped WFI or WFE.
    WfiWfe,
    /// 0x07: trapped FP/SIMD access.
    FpSimd,
    /// 0x16: HVC from AArch64.
    Hvc64,
    /// 0x17: SMC from AArch64 (trapped by HCR_EL2.TSC).
    Smc64,
    /// 0x18: trapped MSR/MRS/system instruction.
    SysReg,
    /// 0x20: instruction abort from a lower EL.
    InstrAbortLower,
    /// 0x24: data abort from a lower EL.
    DataAbortLower,
    /// Anything else (raw EC value).
    Other(u8),
}

impl ExceptionClass {
    /// The class of ESR_EL2 value `esr`.
    pub fn of(esr: u64) -> ExceptionClass {
        use ESR_EL2::EC::Value as Ec;
        match ESR_EL2::EC.read_as_enum(esr) {
            Some(Ec::Unknown) => ExceptionClass::Unknown,
            Some(Ec::TrappedWFIorWFE) => ExceptionClass::WfiWfe,
            Some(Ec::TrappedFP) => ExceptionClass::FpSimd,
            Some(Ec::HVC64) => ExceptionClass::Hvc64,
            Some(Ec::SMC64) => ExceptionClass::Smc64,
            Some(Ec::TrappedMsrMrs) => ExceptionClass::SysReg,
            Some(Ec::InstrAbortLowerEL) => ExceptionClass::InstrAbortLower,
            Some(Ec::DataAbortLowerEL) => ExceptionClass::DataAbortLower,
            _ => ExceptionClass::Other(ESR_EL2::EC.read(esr) as u8),
        }
    }
}

/// A synchronous external abort as injected into a guest's EL1 (ESR_EL1 encodings, Arm ARM
/// D19.2.40 "ISS encoding for an exception from a Data/Instruction Abort").
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ExternalAbort {
    /// An instruction fetch (EC 0x20/0x21) rather than a data access (EC 0x24/0x25).
    pub fetch: bool,
    /// The exception is taken from EL1 to EL1 ("same EL") rather than from EL0.
    pub same_el: bool,
    /// A data access that was a write (ISS.WnR).
    pub write: bool,
    /// The abort happened on the guest's stage-1 table walk, at this stage-1 level.
    pub walk_level: Option<u8>,
    /// FAR_EL1 is not valid (ISS.FnV).
    pub far_unknown: bool,
    /// The trapped instruction was 32 bits (ESR.IL).
    pub il32: bool,
}

impl ExternalAbort {
    /// ESR_EL1 for this abort.
    pub fn esr(self) -> u64 {
        use ESR_EL1::EC::Value as Ec;
        let ec = match (self.fetch, self.same_el) {
            (true, true) => Ec::InstrAbortCurrentEL,
            (true, false) => Ec::InstrAbortLowerEL,
            (false, true) => Ec::DataAbortCurrentEL,
            (false, false) => Ec::DataAbortLowerEL,
        };
        let fsc = match self.walk_level {
            Some(level) => ABORT_ISS::FSC::SyncExternalWalkL0.value + u64::from(level),
            None => ABORT_ISS::FSC::SyncExternal.value,
        };
        let mut iss = LocalRegisterCopy::<u64, ABORT_ISS::Register>::new(fsc);
        iss.modify(ABORT_ISS::FnV.val(u64::from(self.far_unknown)) + ABORT_ISS::WnR.val(u64::from(self.write && !self.fetch)));
        (ESR_EL1::EC.val(ec as u64) + ESR_EL1::IL.val(u64::from(self.il32)) + ESR_EL1::ISS.val(iss.get())).value
    }
}

/// ESR_EL1 of an undefined instruction (EC 0x00, IL = 1).
pub const ESR_UNDEFINED: u64 = ESR_EL1::EC::Unknown.value | ESR_EL1::IL::SET.value;

/// A decoded ESR_EL2.
#[derive(Clone, Copy, Debug)]
pub struct Syndrome {
    pub raw: u64,
    pub class: ExceptionClass,
    pub iss: u64,
    /// ESR.IL: the trapped instruction is 32 bits.
    pub il32: bool,
}

impl Syndrome {
    pub fn decode(esr: u64) -> Syndrome {
        Syndrome {
            raw: esr,
            class: ExceptionClass::of(esr),
            iss: ESR_EL2::ISS.read(esr),
            il32: ESR_EL2::IL.is_set(esr),
        }
    }

    /// Length in bytes of the trapped instruction (to step over it).
    pub fn insn_len(&self) -> u64 {
        if self.il32 {
            4
        } else {
            2
        }
    }

    /// The immediate of a trapped `HVC #imm16` / `SMC #imm16`.
    pub fn imm16(&self) -> u64 {
        HVC_ISS::imm16.read(self.iss)
    }
}

/// True when a trapped WFx (EC 0x01) is a WFE or WFET rather than a WFI or WFIT.
pub fn is_wfe(iss: u64) -> bool {
    matches!(WFX_ISS::TI.read_as_enum(iss), Some(WFX_ISS::TI::Value::WFE | WFX_ISS::TI::Value::WFET))
}

/// The fault-status classes a stage-2 abort can report.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FaultKind {
    /// 0b0001LL: translation fault at level LL.
    Translation(u8),
    /// 0b0010LL: access flag fault.
    AccessFlag(u8),
    /// 0b0011LL: permission fault.
    Permission(u8),
    /// Anything else (external abort, alignment, TLB conflict, …): raw FSC.
    Other(u8),
}

impl FaultKind {
    fn decode(iss: u64) -> FaultKind {
        use ABORT_ISS::FSC_TYPE::Value as Type;
        let level = ABORT_ISS::FSC_LEVEL.read(iss) as u8;
        match ABORT_ISS::FSC_TYPE.read_as_enum(iss) {
            Some(Type::Translation) => FaultKind::Translation(level),
            Some(Type::AccessFlag) => FaultKind::AccessFlag(level),
            Some(Type::Permission) => FaultKind::Permission(level),
            None => FaultKind::Other(ABORT_ISS::FSC.read(iss) as u8),
        }
    }
}

/// What an instruction-syndrome-valid data abort says about the faulting load/store.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AccessSyndrome {
    /// Access size in bytes (1, 2, 4, 8).
    pub size: u8,
    /// Sign-extend a load.
    pub sign_extend: bool,
    /// Register number (31 = XZR).
    pub reg: u8,
    /// 64-bit register (else the upper 32 bits of Xt are zeroed on a load).
    pub sixty_four: bool,
}

/// A decoded data or instruction abort ISS.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AbortIss {
    pub kind: FaultKind,
    pub write: bool,
    pub s1ptw: bool,
    pub cache_maintenance: bool,
    pub far_valid: bool,
    /// `Some` when ISV = 1 (single-register load/store without writeback).
    pub access: Option<AccessSyndrome>,
}

impl AbortIss {
    pub fn decode(iss: u64) -> AbortIss {
        use ABORT_ISS::*;
        let r = LocalRegisterCopy::<u64, Register>::new(iss);
        let access = r.is_set(ISV).then(|| AccessSyndrome {
            size: 1 << r.read(SAS),
            sign_extend: r.is_set(SSE),
            reg: r.read(SRT) as u8,
            sixty_four: r.is_set(SF),
        });
        AbortIss {
            kind: FaultKind::decode(iss),
            write: r.is_set(WnR),
            s1ptw: r.is_set(S1PTW),
            cache_maintenance: r.is_set(CM),
            far_valid: !r.is_set(FnV),
            access,
        }
    }
}

/// A decoded trapped system-register access.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SysRegIss {
    pub op0: u8,
    pub op1: u8,
    pub crn: u8,
    pub crm: u8,
    pub op2: u8,
    /// Register transferred (31 = XZR).
    pub rt: u8,
    /// MRS (the guest reads the register).
    pub read: bool,
}

impl SysRegIss {
    pub fn decode(iss: u64) -> SysRegIss {
        use SYSREG_ISS::*;
        let r = LocalRegisterCopy::<u64, Register>::new(iss);
        SysRegIss {
            op0: r.read(Op0) as u8,
            op1: r.read(Op1) as u8,
            crn: r.read(CRn) as u8,
            crm: r.read(CRm) as u8,
            op2: r.read(Op2) as u8,
            rt: r.read(Rt) as u8,
            read: r.matches_all(Direction::Read),
        }
    }

    /// A debug (or trace) register: the op0 = 0b10 space (MDSCR_EL1, OSLAR_EL1, DBGB*, DBGW*, …),
    /// trapped by MDCR_EL2.{TDA, TDOSA, TDRA}.
    pub fn is_debug(&self) -> bool {
        self.op0 == 2
    }

    /// An ID register (`S3_0_C0_C1..C7_<op2>`), trapped by HCR_EL2.TID3.
    pub fn is_id_register(&self) -> bool {
        self.op0 == 3 && self.op1 == 0 && self.crn == 0 && (1..=7).contains(&self.crm)
    }

    /// ACTLR_EL1 (`S3_0_C1_C0_1`), trapped by HCR_EL2.TACR.
    pub fn is_actlr_el1(&self) -> bool {
        (self.op0, self.op1, self.crn, self.crm, self.op2) == (3, 0, 1, 0, 1)
    }

    /// DC ISW / CSW / CISW (`S1_0_C7_C6/C10/C14_2`), trapped by HCR_EL2.TSW.
    pub fn is_dc_set_way(&self) -> bool {
        self.op0 == 1 && self.op1 == 0 && self.crn == 7 && matches!(self.crm, 6 | 10 | 14) && self.op2 == 2
    }

    /// A PMU register, trapped by MDCR_EL2.{TPM, TPMCR}: `S3_<op1>_C9_C12..C14_<op2>` (PMCR_EL0,
    /// PMCNTEN*, PMCCNTR_EL0, PMINTEN*_EL1, …) and `S3_3_C14_C8..C15_<op2>` (PMEVCNTR<n>_EL0,
    /// PMEVTYPER<n>_EL0, PMCCFILTR_EL0).
    pub fn is_pmu(&self) -> bool {
        self.op0 == 3 && ((self.crn == 9 && (12..=14).contains(&self.crm)) || (self.op1 == 3 && self.crn == 14 && self.crm >= 8))
    }
}

/// The faulting IPA's page base from HPFAR_EL2 (FIPA holds IPA[51:12]).
pub fn hpfar_page(hpfar: u64) -> Ipa {
    Ipa(HPFAR_EL2::FIPA.read(hpfar) << PAGE_SHIFT)
}

/// Why an AT S1E* instruction did not translate.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AtFault {
    /// The guest's own stage-1 tables do not map the VA.
    Stage1,
    /// The stage-1 walk hit a stage-2 fault (a table page not mapped yet at stage 2).
    Stage2Walk,
}

/// The IPA an AT S1E* instruction reported in PAR_EL1 for `va`.
pub fn par_to_ipa(par_el1: u64, va: u64) -> Result<Ipa, AtFault> {
    if PAR_EL1::F.is_set(par_el1) {
        Err(if PAR_EL1_FAULT::S.is_set(par_el1) { AtFault::Stage2Walk } else { AtFault::Stage1 })
    } else {
        Ok(Ipa((PAR_EL1::PA.read(par_el1) << PAGE_SHIFT) | Ipa(va).page_offset()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_abort_seen_on_qemu() {
        // DESIGN §7: EC 0x24, WnR, level-2 translation fault.
        let s = Syndrome::decode(0x93c6_8046);
        assert_eq!(s.class, ExceptionClass::DataAbortLower);
        assert!(s.il32);
        let a = AbortIss::decode(s.iss);
        assert_eq!(a.kind, FaultKind::Translation(2));
        assert!(a.write && !a.s1ptw && a.far_valid);
        assert_eq!(a.access.map(|x| (x.size, x.reg)), Some((8, 6)));
        // HPFAR_EL2 = IPA >> 8.
        assert_eq!(hpfar_page(0x4012_3000 >> 8), Ipa(0x4012_3000));
    }

    #[test]
    fn injected_aborts() {
        let sea = ExternalAbort { fetch: false, same_el: true, write: true, walk_level: None, far_unknown: false, il32: true };
        assert_eq!(sea.esr(), 0x9600_0050);
        let walk = ExternalAbort { fetch: true, same_el: false, walk_level: Some(1), far_unknown: true, ..sea };
        assert_eq!(walk.esr(), 0x8200_0415);
        assert_eq!(ESR_UNDEFINED, 0x0200_0000);
    }

    /// The ISS of a trapped `S<op0>_<op1>_C<crn>_C<crm>_<op2>` access with Xt = `rt`.
    fn sysreg(op0: u64, op1: u64, crn: u64, crm: u64, op2: u64, rt: u64, read: bool) -> u64 {
        use SYSREG_ISS::*;
        let dir = if read { Direction::Read } else { Direction::Write };
        (Op0.val(op0) + Op1.val(op1) + CRn.val(crn) + CRm.val(crm) + Op2.val(op2) + Rt.val(rt) + dir).value
    }

    #[test]
    fn trapped_system_registers() {
        // MRS x3, PMCCNTR_EL0 (S3_3_C9_C13_0): the Arm ARM's bit positions, spelled out once.
        let iss = (3 << 20) | (3 << 14) | (9 << 10) | (3 << 5) | (13 << 1) | 1;
        assert_eq!(sysreg(3, 3, 9, 13, 0, 3, true), iss);
        let s = SysRegIss::decode(iss);
        assert_eq!((s.op0, s.op1, s.crn, s.crm, s.op2, s.rt, s.read), (3, 3, 9, 13, 0, 3, true));
        assert!(s.is_pmu() && !s.is_debug());
        // MSR MDSCR_EL1, x0 (S2_0_C0_C2_2).
        let s = SysRegIss::decode(sysreg(2, 0, 0, 2, 2, 0, false));
        assert!(s.is_debug() && !s.read);
        // MRS x0, MIDR_EL1 (S3_0_C0_C0_0) is neither.
        let s = SysRegIss::decode(sysreg(3, 0, 0, 0, 0, 0, true));
        assert!(!s.is_pmu() && !s.is_debug());
        // MRS x1, ID_AA64PFR0_EL1 (S3_0_C0_C4_0); MSR ACTLR_EL1, x0; DC CISW, x2.
        assert!(SysRegIss::decode(sysreg(3, 0, 0, 4, 0, 1, true)).is_id_register());
        assert!(SysRegIss::decode(sysreg(3, 0, 1, 0, 1, 0, false)).is_actlr_el1());
        assert!(SysRegIss::decode(sysreg(1, 0, 7, 14, 2, 2, false)).is_dc_set_way());
        // PMEVTYPER3_EL0 (S3_3_C14_C12_3).
        assert!(SysRegIss::decode(sysreg(3, 3, 14, 12, 3, 0, false)).is_pmu());
    }

    #[test]
    fn exception_classes_and_wfx() {
        assert_eq!(Syndrome::decode(0x93c6_8046).class, ExceptionClass::DataAbortLower);
        assert_eq!(Syndrome::decode(0x8200_0007).class, ExceptionClass::InstrAbortLower);
        assert_eq!(Syndrome::decode(0x5e00_0000).class, ExceptionClass::Smc64);
        assert_eq!(Syndrome::decode(0x6200_0001).class, ExceptionClass::SysReg);
        // EC 0x2f, an SError: not a class the trap path dispatches on.
        assert_eq!(Syndrome::decode(0xbe00_0000).class, ExceptionClass::Other(0x2f));
        assert_eq!(Syndrome::decode(0x0000_0000).class, ExceptionClass::Unknown);
        // TI: 0b00 WFI, 0b01 WFE, 0b10 WFIT, 0b11 WFET.
        assert_eq!([0, 1, 2, 3].map(is_wfe), [false, true, false, true]);
        // A 16-bit trapped instruction (IL = 0).
        assert_eq!(Syndrome::decode(0x0400_0000).insn_len(), 2);
        assert_eq!(Syndrome::decode(0x0600_0000).insn_len(), 4);
    }

    #[test]
    fn par_decoding() {
        assert_eq!(par_to_ipa(0x0000_0000_4012_3f00, 0xffff_0000_0000_0abc), Ok(Ipa(0x4012_3abc)));
        assert_eq!(par_to_ipa(0x201, 0), Err(AtFault::Stage2Walk));
        assert_eq!(par_to_ipa(0x9, 0), Err(AtFault::Stage1));
        assert_eq!(Syndrome::decode(0x5a00_1234).imm16(), 0x1234);
    }
}
