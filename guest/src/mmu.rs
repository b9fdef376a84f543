//! Optional identity stage-1 translation for EL1: one level-1 table of 1 GiB blocks.
//!
//! | VA = IPA | block | attributes |
//! |---|---|---|
//! | 0x0000_0000..0x4000_0000 | device | MAIR attr 0 (Device-nGnRnE), PXN/UXN |
//! | 0x4000_0000..0x8000_0000 | RAM | MAIR attr 1 (Normal WB RA WA), inner shareable |
//! | above | none | translation fault |
//!
//! With the MMU off every data access is Device-nGnRnE, where exclusives and atomics are not
//! architecturally guaranteed; programs that share memory between vCPUs turn this on first.
//! vCPU 0 builds the table once ([`enable`]); secondaries call [`enable`] too and only load it.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[repr(C, align(4096))]
struct Table([AtomicU64; 512]);

// In .bss: a zeroed page, beyond the image.
static L1: Table = Table([const { AtomicU64::new(0) }; 512]);
static BUILT: AtomicBool = AtomicBool::new(false);

const DESC_BLOCK: u64 = 0b01;
const ATTR_INDX_SHIFT: u64 = 2;
/// A descriptor's Access flag.
pub const AF: u64 = 1 << 10;
const SH_INNER: u64 = 0b11 << 8;
/// A descriptor's PXN (not executable at EL1).
pub const PXN: u64 = 1 << 53;
/// A descriptor's UXN (not executable at EL0).
pub const UXN: u64 = 1 << 54;
/// MAIR_EL1: attr 0 = Device-nGnRnE (0x00), attr 1 = Normal, inner/outer WB non-transient RA WA (0xff).
const MAIR: u64 = 0xff << 8;
/// TCR_EL1: T0SZ = 32 (4 GiB, walk starts at level 1), IRGN0/ORGN0 = WB WA, SH0 inner, TG0 4 KiB,
/// EPD1 (no TTBR1 walks), IPS = 32 bits.
const TCR: u64 = 32 | (0b01 << 8) | (0b01 << 10) | (0b11 << 12) | (1 << 23);
/// TCR_EL1.HA: the walker sets Access flags itself (FEAT_HAFDBS).
pub const TCR_HA: u64 = 1 << 39;
/// The level-1 descriptor of the RAM block (index 1) but for its Access flag.
pub const RAM_BLOCK_NO_AF: u64 = 0x4000_0000 | DESC_BLOCK | SH_INNER | (1 << ATTR_INDX_SHIFT);
/// SCTLR_EL1 bits set: M (MMU), C (data cache), I (instruction cache), plus the RES1 bits of ARMv8.0
/// (11, 20, 22, 23, 28, 29).
const SCTLR_RES1: u64 = (1 << 11) | (1 << 20) | (1 << 22) | (1 << 23) | (1 << 28) | (1 << 29);
const SCTLR_ON: u64 = SCTLR_RES1 | 1 | (1 << 2) | (1 << 12);

fn build() {
    let device = DESC_BLOCK | AF | PXN | UXN; // attr index 0
    L1.0[0].store(device, Ordering::Relaxed);
    L1.0[1].store(RAM_BLOCK_NO_AF | AF, Ordering::Relaxed);
    // Written with the MMU off (non-cacheable); the walker reads with cacheable attributes: clean
    // and invalidate the lines so no stale copy hides the descriptors.
    let base = L1.0.as_ptr() as u64;
    for line in (base..base + 4096).step_by(64) {
        // SAFETY: cache maintenance by VA on our own table page has no effect on program state.
        unsafe { asm!("dc civac, {}", in(reg) line, options(nostack)) };
    }
    // SAFETY: a barrier only.
    unsafe { asm!("dsb ish", options(nostack)) };
}

/// Turn on the identity map on this vCPU (building the table on first use).
pub fn enable() {
    if !BUILT.load(Ordering::Acquire) {
        build();
        BUILT.store(true, Ordering::Release);
    }
    // SAFETY: the table maps all of RAM (where code, data and stacks live) at VA == IPA with
    // Normal memory.
    unsafe { enable_table(L1.0.as_ptr() as u64) };
}

/// Turn stage 1 on with `ttbr` as the level-1 table (this module's MAIR and TCR).
///
/// # Safety
/// The table maps the code, data and stacks in use at VA == IPA with Normal memory, so every
/// address keeps its meaning across the switch, and its lines are cleaned to memory.
pub unsafe fn enable_table(ttbr: u64) {
    // SAFETY: the caller's contract; the sequence is the architecture's: program
    // MAIR/TCR/TTBR0, invalidate the TLB, barriers, then SCTLR.M.
    unsafe {
        asm!(
            "msr mair_el1, {mair}",
            "msr tcr_el1, {tcr}",
            "msr ttbr0_el1, {ttbr}",
            "isb",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            "mrs {tmp}, sctlr_el1",
            "orr {tmp}, {tmp}, {on}",
            "msr sctlr_el1, {tmp}",
            "isb",
            mair = in(reg) MAIR,
            tcr = in(reg) TCR,
            ttbr = in(reg) ttbr,
            on = in(reg) SCTLR_ON,
            tmp = out(reg) _,
            options(nostack),
        );
    }
}

/// True when the walker can set Access flags (ID_AA64MMFR1_EL1.HAFDBS != 0).
pub fn has_hardware_access_flag() -> bool {
    let mmfr1: u64;
    // SAFETY: reading an ID register has no side effects.
    unsafe { asm!("mrs {}, id_aa64mmfr1_el1", out(reg) mmfr1, options(nomem, nostack)) };
    mmfr1 & 0xf != 0
}

/// Load 8 bytes from `addr` with `table` as TTBR0_EL1 and `tcr_set` or-ed into TCR_EL1, for that
/// load and the fetches around it only; the identity map is back on return.
///
/// # Safety
/// `table` must be a level-1 table laid out as this module's (RAM at VA == IPA, the same
/// attributes) except for the Access flags, and `addr` RAM.
pub unsafe fn load_with_table(table: u64, tcr_set: u64, addr: u64) -> u64 {
    let v: u64;
    // SAFETY: by the caller's contract the code, the stack and `addr` keep their meaning under
    // `table`; no memory is touched but the load, and the TLB is invalidated after each switch.
    unsafe {
        asm!(
            "mrs {ttbr}, ttbr0_el1",
            "mrs {tcr}, tcr_el1",
            "orr {tmp}, {tcr}, {set}",
            "msr tcr_el1, {tmp}",
            "msr ttbr0_el1, {table}",
            "isb",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            "ldr {v}, [{addr}]",
            "msr tcr_el1, {tcr}",
            "msr ttbr0_el1, {ttbr}",
            "isb",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            ttbr = out(reg) _,
            tcr = out(reg) _,
            tmp = out(reg) _,
            v = out(reg) v,
            set = in(reg) tcr_set,
            table = in(reg) table,
            addr = in(reg) addr,
            options(nostack),
        );
    }
    v
}

/// True when this vCPU runs with stage-1 translation on.
pub fn is_on() -> bool {
    let sctlr: u64;
    // SAFETY: reading SCTLR_EL1 has no side effects.
    unsafe { asm!("mrs {}, sctlr_el1", out(reg) sctlr, options(nomem, nostack)) };
    sctlr & 1 == 1
}
