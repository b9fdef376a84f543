//! EL2 system-register values used at boot, spelled field by field with `aarch64-cpu`'s field
//! definitions (constants: the entry assembly takes them as `const` operands).
//!
//! Each field is checked against the Arm ARM (DDI 0487, D24.2 "AArch64 System Register
//! Descriptions"), for the layout that applies when HCR_EL2.E2H == 0 (we never set E2H).

use aarch64_cpu::registers::{MAIR_EL2, SCTLR_EL2, TCR_EL2};
use tock_registers::register_bitfields;

register_bitfields! {u64,
    /// CPTR_EL2 (E2H == 0), the fields `aarch64-cpu` 11 does not name.
    CPTR_EL2 [
        /// TSM: trap SME (RES1 when SME is not implemented).
        TSM OFFSET(12) NUMBITS(1) [],
        /// TFP: trap FP/SIMD.
        TFP OFFSET(10) NUMBITS(1) [],
        /// TZ: trap SVE (RES1 when SVE is not implemented).
        TZ OFFSET(8) NUMBITS(1) []
    ]
}

/// CPTR_EL2 (E2H == 0): bits [13], [9] and [7:0] are RES1.
const CPTR_EL2_RES1: u64 = 0x0000_22ff;
/// Boot value of CPTR_EL2: FP/SIMD untrapped (TFP = 0: the hypervisor itself uses NEON
/// registers), SVE/SME trapped, no trace/AMU/CPACR traps.
pub const CPTR_EL2_BOOT: u64 =
    CPTR_EL2_RES1 | CPTR_EL2::TSM::SET.value | CPTR_EL2::TZ::SET.value | CPTR_EL2::TFP::CLEAR.value;

/// SCTLR_EL2 (E2H == 0) RES1 bits: [29:28], [23:22], [18], [16], [11], [5:4].
const SCTLR_EL2_RES1: u64 = 0x30c5_0830;

/// SCTLR_EL2 before the MMU is on: MMU and caches off, strict alignment and SP alignment checks.
pub const SCTLR_EL2_MMU_OFF: u64 = SCTLR_EL2_RES1 | SCTLR_EL2::A::SET.value | SCTLR_EL2::SA::SET.value;
/// SCTLR_EL2 once the MMU is on: + M, C, I (WXN and EE stay 0: little endian; execute-never is
/// in the map itself, see `mmu.rs`).
pub const SCTLR_EL2_MMU_ON: u64 =
    SCTLR_EL2_MMU_OFF | SCTLR_EL2::M::SET.value | SCTLR_EL2::C::SET.value | SCTLR_EL2::I::SET.value;

/// TCR_EL2 (E2H == 0) RES1 bits: [31] and [23].
const TCR_EL2_RES1: u64 = 0x8080_0000;
/// TCR_EL2.T0SZ: 25 → 2^39-byte (512 GiB) VA range, walks start at level 1 (4 KiB).
pub const TCR_EL2_T0SZ: u64 = 25;
/// TCR_EL2 value for the hypervisor's identity map: walks Inner/Outer Write-Back Read/Write-
/// Allocate, Inner Shareable, 4 KiB granule, 40-bit (1 TiB) physical addresses (a57/a72/max all
/// have more).
pub const TCR_EL2_VALUE: u64 = TCR_EL2_RES1
    | TCR_EL2::T0SZ.val(TCR_EL2_T0SZ).value
    | TCR_EL2::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable.value
    | TCR_EL2::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable.value
    | TCR_EL2::SH0::Inner.value
    | TCR_EL2::TG0::KiB_4.value
    | TCR_EL2::PS::Bits_40.value;

/// MAIR_EL2 attribute index 0: Normal, Inner/Outer Write-Back Non-transient, Read+Write-Allocate.
pub const MAIR_IDX_NORMAL: u64 = 0;
/// MAIR_EL2 attribute index 1: Device-nGnRE.
pub const MAIR_IDX_DEVICE: u64 = 1;
/// MAIR_EL2: Attr0 = 0xFF (Normal WB RWA inner and outer), Attr1 = 0x04 (Device-nGnRE).
pub const MAIR_EL2_VALUE: u64 = MAIR_EL2::Attr0_Normal_Outer::WriteBack_NonTransient_ReadWriteAlloc.value
    | MAIR_EL2::Attr0_Normal_Inner::WriteBack_NonTransient_ReadWriteAlloc.value
    | MAIR_EL2::Attr1_Device::nonGathering_nonReordering_EarlyWriteAck.value;

const _: () = assert!(MAIR_EL2_VALUE == 0x04ff);
const _: () = assert!(SCTLR_EL2_MMU_ON == 0x30c5_183f);
