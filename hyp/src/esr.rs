//! Decoding of ESR_EL2, HPFAR_EL2 and PAR_EL1 by named fields (Arm ARM D19.2.41 ESR_EL2,
//! D19.2.53 HPFAR_EL2, D19.2.106 PAR_EL1), and the ESR_EL1 encodings used to inject exceptions.
//! The one place where syndrome bits are named; pure functions, unit-tested on the host.

pub use crate::bits::Field;
use vm::{Ipa, PAGE_SHIFT};

/// ESR_ELx.EC [31:26].
pub const EC: Field = Field::new(31, 26);
/// ESR_ELx.IL [25]: the trapped instruction is 32 bits (0: a 16-bit T32 instruction).
pub const IL: Field = Field::bit(25);
/// ESR_ELx.ISS [24:0].
pub const ISS: Field = Field::new(24, 0);
/// ISS of an HVC/SMC trap (EC 0x16/0x17): imm16 [15:0], the instruction's immediate.
pub const IMM16: Field = Field::new(15, 0);

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
    /// The table of ESR EC encodings.
    const TABLE: &'static [(u8, ExceptionClass)] = &[
        (0x00, ExceptionClass::Unknown),
        (0x01, ExceptionClass::WfiWfe),
        (0x07, ExceptionClass::FpSimd),
        (0x16, ExceptionClass::Hvc64),
        (0x17, ExceptionClass::Smc64),
        (0x18, ExceptionClass::SysReg),
        (0x20, ExceptionClass::InstrAbortLower),
        (0x24, ExceptionClass::DataAbortLower),
    ];

    /// The class of EC value `ec`.
    pub fn decode(ec: u8) -> ExceptionClass {
        Self::TABLE.iter().find(|(v, _)| *v == ec).map_or(ExceptionClass::Other(ec), |(_, c)| *c)
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

/// ESR_ELx.EC values used when injecting.
mod inject_ec {
    pub const UNKNOWN: u64 = 0x00;
    pub const INSTR_ABORT_LOWER_EL: u64 = 0x20;
    pub const INSTR_ABORT_SAME_EL: u64 = 0x21;
    pub const DATA_ABORT_LOWER_EL: u64 = 0x24;
    pub const DATA_ABORT_SAME_EL: u64 = 0x25;
}

/// FSC = 0b010000: synchronous external abort, not on a translation table walk.
const FSC_SEA: u64 = 0b01_0000;
/// FSC = 0b0101LL: synchronous external abort on a translation table walk at level LL.
const FSC_SEA_WALK: u64 = 0b01_0100;

impl ExternalAbort {
    /// ESR_EL1 for this abort.
    pub fn esr(self) -> u64 {
        use abort_iss::*;
        let ec = match (self.fetch, self.same_el) {
            (true, true) => inject_ec::INSTR_ABORT_SAME_EL,
            (true, false) => inject_ec::INSTR_ABORT_LOWER_EL,
            (false, true) => inject_ec::DATA_ABORT_SAME_EL,
            (false, false) => inject_ec::DATA_ABORT_LOWER_EL,
        };
        let fsc = match self.walk_level {
            Some(level) => FSC_SEA_WALK | FSC_LEVEL.place(u64::from(level)),
            None => FSC_SEA,
        };
        EC.place(ec)
            | IL.place(u64::from(self.il32))
            | FSC.place(fsc)
            | FNV.place(u64::from(self.far_unknown))
            | WNR.place(u64::from(self.write && !self.fetch))
    }
}

/// ESR_EL1 of an undefined instruction (EC 0x00, IL = 1).
pub const ESR_UNDEFINED: u64 = EC.place(inject_ec::UNKNOWN) | IL.place(1);

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
            class: ExceptionClass::decode(EC.get(esr) as u8),
            iss: ISS.get(esr),
            il32: IL.is_set(esr),
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
        IMM16.get(self.iss)
    }
}

/// ISS of a trapped WFI/WFE (EC 0x01): TI [1:0], 0b00 = WFI, 0b01 = WFE (0b1x: the FEAT_WFxT
/// forms with a timeout, WFIT/WFET).
const WFX_TI: Field = Field::new(1, 0);

/// True when a trapped WFx (EC 0x01) is a WFE or WFET rather than a WFI or WFIT.
pub fn is_wfe(iss: u64) -> bool {
    WFX_TI.get(iss) & 1 != 0
}

/// ISS fields of a data or instruction abort (ISS encoding for EC 0x20/0x24).
mod abort_iss {
    use super::Field;
    /// Instruction syndrome valid.
    pub const ISV: Field = Field::bit(24);
    /// Syndrome access size: 0 byte, 1 halfword, 2 word, 3 doubleword.
    pub const SAS: Field = Field::new(23, 22);
    /// Syndrome sign extend.
    pub const SSE: Field = Field::bit(21);
    /// Syndrome register transfer (Xt/Wt; 31 = XZR).
    pub const SRT: Field = Field::new(20, 16);
    /// Sixty-four bit register (Xt rather than Wt).
    pub const SF: Field = Field::bit(15);
    /// FAR not valid.
    pub const FNV: Field = Field::bit(10);
    /// Cache maintenance or address translation instruction.
    pub const CM: Field = Field::bit(8);
    /// Stage-2 fault on a stage-1 translation table walk.
    pub const S1PTW: Field = Field::bit(7);
    /// Write, not read.
    pub const WNR: Field = Field::bit(6);
    /// Data/instruction fault status code.
    pub const FSC: Field = Field::new(5, 0);
    /// FSC[5:2]: the fault type; FSC[1:0]: the level.
    pub const FSC_TYPE: Field = Field::new(5, 2);
    pub const FSC_LEVEL: Field = Field::new(1, 0);
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
    /// FSC[5:2] encodings.
    const TRANSLATION: u64 = 0b0001;
    const ACCESS_FLAG: u64 = 0b0010;
    const PERMISSION: u64 = 0b0011;

    fn decode(iss: u64) -> FaultKind {
        let level = abort_iss::FSC_LEVEL.get(iss) as u8;
        match abort_iss::FSC_TYPE.get(iss) {
            Self::TRANSLATION => FaultKind::Translation(level),
            Self::ACCESS_FLAG => FaultKind::AccessFlag(level),
            Self::PERMISSION => FaultKind::Permission(level),
            _ => FaultKind::Other(abort_iss::FSC.get(iss) as u8),
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
        use abort_iss::*;
        let access = ISV.is_set(iss).then(|| AccessSyndrome {
            size: 1 << SAS.get(iss),
            sign_extend: SSE.is_set(iss),
            reg: SRT.get(iss) as u8,
            sixty_four: SF.is_set(iss),
        });
        AbortIss {
            kind: FaultKind::decode(iss),
            write: WNR.is_set(iss),
            s1ptw: S1PTW.is_set(iss),
            cache_maintenance: CM.is_set(iss),
            far_valid: !FNV.is_set(iss),
            access,
        }
    }
}

/// ISS fields of a trapped MSR/MRS (EC 0x18, Arm ARM D19.2.41 "ISS encoding for an exception
/// from MSR, MRS, or System instruction execution in AArch64 state").
mod sysreg_iss {
    use super::Field;
    pub const OP0: Field = Field::new(21, 20);
    pub const OP2: Field = Field::new(19, 17);
    pub const OP1: Field = Field::new(16, 14);
    pub const CRN: Field = Field::new(13, 10);
    pub const RT: Field = Field::new(9, 5);
    pub const CRM: Field = Field::new(4, 1);
    /// Direction [0]: 1 = read (MRS), 0 = write (MSR).
    pub const DIRECTION: Field = Field::bit(0);
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
        use sysreg_iss::*;
        SysRegIss {
            op0: OP0.get(iss) as u8,
            op1: OP1.get(iss) as u8,
            crn: CRN.get(iss) as u8,
            crm: CRM.get(iss) as u8,
            op2: OP2.get(iss) as u8,
            rt: RT.get(iss) as u8,
            read: DIRECTION.is_set(iss),
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

/// HPFAR_EL2.FIPA [43:4]: IPA[51:12] of the faulting access.
const HPFAR_FIPA: Field = Field::new(43, 4);

/// The faulting IPA's page base from HPFAR_EL2.
pub fn hpfar_page(hpfar: u64) -> Ipa {
    Ipa(HPFAR_FIPA.get(hpfar) << PAGE_SHIFT)
}

/// PAR_EL1 after an address-translation (AT) instruction.
mod par {
    use super::Field;
    /// F [0]: the translation failed.
    pub const F: Field = Field::bit(0);
    /// S [9] (F = 1): the fault was at stage 2 (on the stage-1 walk, for AT S1E*).
    pub const S: Field = Field::bit(9);
    /// PA [51:12] (F = 0): the output address (an IPA for AT S1E*).
    pub const PA: Field = Field::new(51, 12);
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
    if par::F.is_set(par_el1) {
        Err(if par::S.is_set(par_el1) { AtFault::Stage2Walk } else { AtFault::Stage1 })
    } else {
        Ok(Ipa((par::PA.get(par_el1) << PAGE_SHIFT) | Ipa(va).page_offset()))
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

    #[test]
    fn trapped_system_registers() {
        // MRS x3, PMCCNTR_EL0 (S3_3_C9_C13_0).
        let s = SysRegIss::decode((3 << 20) | (3 << 14) | (9 << 10) | (3 << 5) | (13 << 1) | 1);
        assert_eq!((s.op0, s.op1, s.crn, s.crm, s.op2, s.rt, s.read), (3, 3, 9, 13, 0, 3, true));
        assert!(s.is_pmu() && !s.is_debug());
        // MSR MDSCR_EL1, x0 (S2_0_C0_C2_2).
        let s = SysRegIss::decode((2 << 20) | (2 << 17) | (2 << 1));
        assert!(s.is_debug() && !s.read);
        // MRS x0, MIDR_EL1 (S3_0_C0_C0_0) is neither.
        let s = SysRegIss::decode((3 << 20) | 1);
        assert!(!s.is_pmu() && !s.is_debug());
        // MRS x1, ID_AA64PFR0_EL1 (S3_0_C0_C4_0); MSR ACTLR_EL1, x0; DC CISW, x2.
        assert!(SysRegIss::decode((3 << 20) | (4 << 1) | (1 << 5) | 1).is_id_register());
        assert!(SysRegIss::decode((3 << 20) | (1 << 17) | (1 << 10)).is_actlr_el1());
        assert!(SysRegIss::decode((1 << 20) | (2 << 17) | (7 << 10) | (14 << 1) | (2 << 5)).is_dc_set_way());
        // PMEVTYPER3_EL0 (S3_3_C14_C12_3).
        assert!(SysRegIss::decode((3 << 20) | (3 << 17) | (3 << 14) | (14 << 10) | (12 << 1)).is_pmu());
    }

    #[test]
    fn par_decoding() {
        assert_eq!(par_to_ipa(0x0000_0000_4012_3f00, 0xffff_0000_0000_0abc), Ok(Ipa(0x4012_3abc)));
        assert_eq!(par_to_ipa(0x201, 0), Err(AtFault::Stage2Walk));
        assert_eq!(par_to_ipa(0x9, 0), Err(AtFault::Stage1));
        assert_eq!(Syndrome::decode(0x5a00_1234).imm16(), 0x1234);
    }
}
