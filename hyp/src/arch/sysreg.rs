//! EL2 system-register values used at boot, spelled field by field.
//!
//! Each field is checked against the Arm ARM (DDI 0487, D24.2 "AArch64 System Register
//! Descriptions"), for the layout that applies when HCR_EL2.E2H == 0 (we never set E2H).

/// CPTR_EL2 (E2H == 0): bits [13], [9] and [7:0] are RES1.
const CPTR_EL2_RES1: u64 = (1 << 13) | (1 << 9) | 0xff;
/// CPTR_EL2.TSM, bit [12]: trap SME (RES1 when SME is not implemented).
const CPTR_EL2_TSM: u64 = 1 << 12;
/// CPTR_EL2.TZ, bit [8]: trap SVE (RES1 when SVE is not implemented).
const CPTR_EL2_TZ: u64 = 1 << 8;
/// Boot value of CPTR_EL2: FP/SIMD untrapped (TFP, bit [10], = 0: the hypervisor itself uses NEON
/// registers), SVE/SME trapped, no trace/AMU/CPACR traps.
pub const CPTR_EL2_BOOT: u64 = CPTR_EL2_RES1 | CPTR_EL2_TSM | CPTR_EL2_TZ;

/// SCTLR_EL2 (E2H == 0) RES1 bits: [29:28], [23:22], [18], [16], [11], [5:4].
pub const SCTLR_EL2_RES1: u64 =
    (1 << 29) | (1 << 28) | (1 << 23) | (1 << 22) | (1 << 18) | (1 << 16) | (1 << 11) | (1 << 5) | (1 << 4);
/// SCTLR_EL2.M, bit [0]: stage 1 MMU enable.
pub const SCTLR_EL2_M: u64 = 1 << 0;
/// SCTLR_EL2.A, bit [1]: alignment fault checking.
pub const SCTLR_EL2_A: u64 = 1 << 1;
/// SCTLR_EL2.C, bit [2]: data cacheability.
pub const SCTLR_EL2_C: u64 = 1 << 2;
/// SCTLR_EL2.SA, bit [3]: SP alignment check.
pub const SCTLR_EL2_SA: u64 = 1 << 3;
/// SCTLR_EL2.I, bit [12]: instruction cacheability.
pub const SCTLR_EL2_I: u64 = 1 << 12;

/// SCTLR_EL2 before the MMU is on: MMU and caches off, strict alignment and SP alignment checks.
pub const SCTLR_EL2_MMU_OFF: u64 = SCTLR_EL2_RES1 | SCTLR_EL2_A | SCTLR_EL2_SA;
/// SCTLR_EL2 once the MMU is on: + M, C, I (WXN, bit [19], and EE, bit [25], stay 0: little
/// endian; execute-never is in the map itself, see `mmu.rs`).
pub const SCTLR_EL2_MMU_ON: u64 = SCTLR_EL2_MMU_OFF | SCTLR_EL2_M | SCTLR_EL2_C | SCTLR_EL2_I;

/// TCR_EL2 (E2H == 0) RES1 bits: [31] and [23].
const TCR_EL2_RES1: u64 = (1 << 31) | (1 << 23);
/// TCR_EL2.T0SZ, bits [5:0]: 25 → 2^39-byte (512 GiB) VA range, walks start at level 1 (4 KiB).
pub const TCR_EL2_T0SZ: u64 = 25;
/// TCR_EL2.IRGN0, bits [9:8] = 0b01: walks Inner Write-Back Read/Write-Allocate.
const TCR_EL2_IRGN0_WBWA: u64 = 0b01 << 8;
/// TCR_EL2.ORGN0, bits [11:10] = 0b01: walks Outer Write-Back Read/Write-Allocate.
const TCR_EL2_ORGN0_WBWA: u64 = 0b01 << 10;
/// TCR_EL2.SH0, bits [13:12] = 0b11: walks Inner Shareable.
const TCR_EL2_SH0_INNER: u64 = 0b11 << 12;
/// TCR_EL2.TG0, bits [15:14] = 0b00: 4 KiB granule.
const TCR_EL2_TG0_4K: u64 = 0b00 << 14;
/// TCR_EL2.PS, bits [18:16] = 0b010: 40-bit (1 TiB) physical addresses (a57/a72/max all have more).
const TCR_EL2_PS_40: u64 = 0b010 << 16;
/// TCR_EL2 value for the hypervisor's identity map.
pub const TCR_EL2_VALUE: u64 = TCR_EL2_RES1
    | TCR_EL2_T0SZ
    | TCR_EL2_IRGN0_WBWA
    | TCR_EL2_ORGN0_WBWA
    | TCR_EL2_SH0_INNER
    | TCR_EL2_TG0_4K
    | TCR_EL2_PS_40;

/// MAIR_EL2 attribute index 0: Normal, Inner/Outer Write-Back Non-transient, Read+Write-Allocate.
pub const MAIR_IDX_NORMAL: u64 = 0;
/// MAIR_EL2 attribute index 1: Device-nGnRE.
pub const MAIR_IDX_DEVICE: u64 = 1;
/// MAIR_EL2: Attr0 = 0xFF (Normal WB RWA inner and outer), Attr1 = 0x04 (Device-nGnRE).
pub const MAIR_EL2_VALUE: u64 = 0xff | (0x04 << 8);
