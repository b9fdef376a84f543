//! Decoding of ESR_EL2 and HPFAR_EL2 by named fields (Arm ARM D19.2.41 ESR_EL2, D19.2.53 HPFAR_EL2).

/// A bit field `[hi:lo]` of a system register.
#[derive(Clone, Copy)]
struct Field {
    lo: u32,
    width: u32,
}

impl Field {
    const fn new(hi: u32, lo: u32) -> Field {
        Field { lo, width: hi - lo + 1 }
    }
    const fn bit(n: u32) -> Field {
        Field { lo: n, width: 1 }
    }
    const fn get(self, v: u64) -> u64 {
        (v >> self.lo) & ((1u64 << self.width) - 1)
    }
    const fn is_set(self, v: u64) -> bool {
        self.get(v) != 0
    }
}

/// ESR_EL2.EC [31:26].
const EC: Field = Field::new(31, 26);
/// ESR_EL2.ISS [24:0].
const ISS: Field = Field::new(24, 0);

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
    /// 0x22: PC alignment fault.
    PcAlignment,
    /// 0x26: SP alignment fault.
    SpAlignment,
    /// 0x2F: SError.
    SError,
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
        (0x22, ExceptionClass::PcAlignment),
        (0x24, ExceptionClass::DataAbortLower),
        (0x26, ExceptionClass::SpAlignment),
        (0x2f, ExceptionClass::SError),
    ];

    fn decode(ec: u8) -> ExceptionClass {
        Self::TABLE.iter().find(|(v, _)| *v == ec).map_or(ExceptionClass::Other(ec), |(_, c)| *c)
    }
}

/// Encodings of ESR_EL1.EC used when injecting exceptions into a guest.
pub mod inject_ec {
    /// Unknown reason (undefined instruction).
    pub const UNKNOWN: u64 = 0x00;
    /// Data abort taken without a change in EL (from EL1).
    pub const DATA_ABORT_SAME_EL: u64 = 0x25;
    /// Data abort from a lower EL (from EL0).
    pub const DATA_ABORT_LOWER_EL: u64 = 0x24;
    /// ESR_ELx.EC position.
    pub const SHIFT: u32 = 26;
    /// ESR_ELx.IL: 32-bit instruction.
    pub const IL: u64 = 1 << 25;
    /// DFSC/IFSC = 0b010000: synchronous external abort, not on a translation table walk.
    pub const FSC_SEA: u64 = 0b01_0000;
}

/// A decoded ESR_EL2.
#[derive(Clone, Copy, Debug)]
pub struct Syndrome {
    pub raw: u64,
    pub class: ExceptionClass,
    pub iss: u64,
}

impl Syndrome {
    pub fn decode(esr: u64) -> Syndrome {
        Syndrome {
            raw: esr,
            class: ExceptionClass::decode(EC.get(esr) as u8),
            iss: ISS.get(esr),
        }
    }
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

/// HPFAR_EL2.FIPA [43:4]: IPA[51:12] of the faulting access.
const HPFAR_FIPA: Field = Field::new(43, 4);

/// The faulting IPA's page base from HPFAR_EL2.
pub fn hpfar_page(hpfar: u64) -> u64 {
    HPFAR_FIPA.get(hpfar) << 12
}
