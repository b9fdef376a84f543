//! The hypervisor's own EL2 stage-1 translation: an identity map (VA == PA) of
//! - all RAM, Normal Write-Back cacheable, Inner Shareable, execute-never except the 2 MiB
//!   block(s) holding the hypervisor's code (`_start..__text_end`): the heap's first bytes share
//!   that block, but the guest page pool (which starts 2 MiB aligned, `layout.rs`) and the rest of
//!   the heap are never executable at EL2, so an EL2 bug cannot run guest-written bytes;
//! - the device window [`DEVICE_WINDOW`] (GIC, PL011, virtio-mmio), Device-nGnRE, execute-never;
//!
//! and nothing else: the guard page under each CPU's stack (`boot::stack_guards`) is a hole, so
//! a stack overflow takes a translation fault (reported on the emergency stack, `vectors.rs`)
//! instead of silently overwriting `.bss` or another CPU's stack. Built once by CPU 0 with the MMU still off ([`init`]), then switched on by
//! every CPU ([`enable`]). Uses 1 GiB level-1 blocks where RAM covers a whole GiB and 2 MiB level-2
//! blocks elsewhere, and 4 KiB level-3 pages in the 2 MiB block(s) holding a guard page; RAM is
//! rounded down to 2 MiB.
//!
//! The tables live in `.bss` (zeroed by the boot CPU before Rust runs) and are written only by
//! `init` before any CPU has its MMU on, so walks (cacheable, Inner Shareable: see TCR_EL2) read
//! exactly what was written to memory.

use core::arch::asm;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use aarch64_cpu::registers::{Readable, SCTLR_EL2};

use super::sysreg::{
    MAIR_EL2_VALUE, MAIR_IDX_DEVICE, MAIR_IDX_NORMAL, SCTLR_EL2_MMU_ON, TCR_EL2_VALUE,
};

pub use hyp::platform::host::DEVICE_WINDOW;

const ENTRIES: usize = 512;
const L1_BLOCK: u64 = 1 << 30;
const L2_BLOCK: u64 = 1 << 21;
const L3_PAGE: u64 = 1 << 12;
/// Highest address the 39-bit VA range (TCR_EL2.T0SZ = 25) can map.
pub(crate) const VA_LIMIT: u64 = 1 << 39;

/// Stage-1 descriptor bits (Arm ARM D8.3, VMSAv8-64 descriptor formats).
mod desc {
    /// bit[0]: valid.
    pub const VALID: u64 = 1 << 0;
    /// bit[1] at levels 0..2: 1 = table descriptor, 0 = block descriptor.
    pub const TABLE: u64 = 1 << 1;
    /// bit[1] at level 3: must be 1 for a page descriptor.
    pub const PAGE: u64 = 1 << 1;
    /// AttrIndx, bits [4:2]: index into MAIR_EL2.
    pub const fn attr_index(idx: u64) -> u64 {
        idx << 2
    }
    /// AP[1], bit [6]: RES1 in the EL2 (single privilege level) regime. AP[2] = 0: read/write.
    pub const AP1_RES1: u64 = 1 << 6;
    /// SH, bits [9:8] = 0b11: Inner Shareable.
    pub const SH_INNER: u64 = 0b11 << 8;
    /// AF, bit [10]: access flag (set, or the first access faults).
    pub const AF: u64 = 1 << 10;
    /// XN, bit [54]: execute-never (EL2 regime).
    pub const XN: u64 = 1 << 54;
    /// Output address bits [47:12].
    pub const OA_MASK: u64 = 0x0000_ffff_ffff_f000;
}

/// A 4 KiB translation table. Atomics so it can be a plain (non-`mut`) static in `.bss`.
#[repr(C, align(4096))]
struct Table([AtomicU64; ENTRIES]);

impl Table {
    const fn new() -> Self {
        Table([const { AtomicU64::new(0) }; ENTRIES])
    }
    fn addr(&self) -> u64 {
        self as *const Table as u64
    }
    fn set(&self, i: usize, v: u64) {
        self.0[i].store(v, Ordering::Relaxed);
    }
}

static L1: Table = Table::new();
/// Level-2 tables for GiB slots only partly covered by RAM or the device window.
static L2: [Table; 3] = [Table::new(), Table::new(), Table::new()];
/// Level-3 tables for the 2 MiB blocks holding stack guard pages (the stacks span 256 KiB, so
/// at most two blocks).
static L3: [Table; 2] = [Table::new(), Table::new()];
static READY: AtomicBool = AtomicBool::new(false);

/// Attribute bits of a block mapping RAM (executable; `init` adds XN outside the code).
const NORMAL: u64 = desc::VALID | desc::attr_index(MAIR_IDX_NORMAL) | desc::AP1_RES1 | desc::SH_INNER | desc::AF;
/// Attribute bits of a block mapping devices.
const DEVICE: u64 = desc::VALID | desc::attr_index(MAIR_IDX_DEVICE) | desc::AP1_RES1 | desc::AF | desc::XN;

/// Errors building the map (boot-time configuration problems, reported by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmuError {
    /// RAM overlaps the first GiB (where the device window is) or exceeds the 512 GiB VA range.
    RamLayout,
    /// More partly-covered GiB slots than level-2 tables, or guard pages in more 2 MiB blocks
    /// than level-3 tables.
    TooManyTables,
}

/// Builds the identity map for `ram` (CPU 0 only, MMU off, once), executable only around `text`,
/// with the 4 KiB pages at `guards` left unmapped. RAM is rounded to 2 MiB.
pub fn init(ram: Range<u64>, text: Range<u64>, guards: &[u64]) -> Result<(), MmuError> {
    let exec = text.start & !(L2_BLOCK - 1)..text.end.next_multiple_of(L2_BLOCK);
    let overlaps = |a: u64, size: u64| a < exec.end && exec.start < a + size;
    let guarded = |a: u64, size: u64| guards.iter().any(|&g| a <= g && g < a + size);
    let mut next_l3 = 0usize;
    let attrs = |a: u64, size: u64| if overlaps(a, size) { NORMAL } else { NORMAL | desc::XN };
    let start = ram.start.next_multiple_of(L2_BLOCK);
    let end = ram.end & !(L2_BLOCK - 1);
    if start < L1_BLOCK || end > VA_LIMIT || start >= end {
        return Err(MmuError::RamLayout);
    }
    let mut next_l2 = 0usize;
    let mut l2_for = |slot: usize| -> Result<&'static Table, MmuError> {
        let t = L2.get(next_l2).ok_or(MmuError::TooManyTables)?;
        next_l2 += 1;
        L1.set(slot, desc::VALID | desc::TABLE | (t.addr() & desc::OA_MASK));
        Ok(t)
    };

    // Device window: 2 MiB Device blocks inside GiB slot 0.
    let dev = l2_for(0)?;
    let mut a = DEVICE_WINDOW.start;
    while a < DEVICE_WINDOW.end {
        dev.set((a / L2_BLOCK) as usize % ENTRIES, (a & desc::OA_MASK) | DEVICE);
        a += L2_BLOCK;
    }

    // RAM: whole GiBs as level-1 blocks, partial GiBs through a level-2 table.
    let mut a = start;
    while a < end {
        let slot = (a / L1_BLOCK) as usize;
        let slot_end = (slot as u64 + 1) * L1_BLOCK;
        if a.is_multiple_of(L1_BLOCK) && end >= slot_end && !overlaps(a, L1_BLOCK) && !guarded(a, L1_BLOCK) {
            L1.set(slot, (a & desc::OA_MASK) | NORMAL | desc::XN);
            a = slot_end;
        } else {
            let t = l2_for(slot)?;
            let stop = end.min(slot_end);
            while a < stop {
                let i = (a / L2_BLOCK) as usize % ENTRIES;
                if guarded(a, L2_BLOCK) {
                    let l3 = L3.get(next_l3).ok_or(MmuError::TooManyTables)?;
                    next_l3 += 1;
                    for (j, p) in (a..a + L2_BLOCK).step_by(L3_PAGE as usize).enumerate() {
                        if !guarded(p, L3_PAGE) {
                            l3.set(j, (p & desc::OA_MASK) | desc::PAGE | attrs(a, L2_BLOCK));
                        }
                    }
                    t.set(i, desc::VALID | desc::TABLE | (l3.addr() & desc::OA_MASK));
                } else {
                    t.set(i, (a & desc::OA_MASK) | attrs(a, L2_BLOCK));
                }
                a += L2_BLOCK;
            }
        }
    }
    // SAFETY: DSB only orders memory accesses; it makes the table writes visible to the walker.
    unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
    READY.store(true, Ordering::Release);
    Ok(())
}

/// Turns the EL2 stage-1 MMU and caches on for the calling CPU (tables from [`init`]).
///
/// Every CPU calls this once, early, before relying on cacheable memory. Panics if `init` has
/// not run.
pub fn enable() {
    assert!(READY.load(Ordering::Acquire), "mmu::enable before mmu::init");
    let ttbr = L1.addr();
    // SAFETY: the tables map every byte the hypervisor uses (image, stacks, heap, pool: all RAM;
    // devices) at VA == PA with the attributes above, so the instruction stream and all live
    // pointers remain valid across the switch. The EL2 and EL1&0 (stage 1 and 2) TLBs and the
    // I-cache are invalidated first: their contents are UNKNOWN after reset, and nothing from
    // before may be used once SCTLR_EL2.{M, I} are on.
    unsafe {
        asm!(
            "msr mair_el2, {mair}",
            "msr tcr_el2, {tcr}",
            "msr ttbr0_el2, {ttbr}",
            "isb",
            "tlbi alle2",
            "tlbi alle1",
            "ic iallu",
            "dsb nsh",
            "isb",
            "msr sctlr_el2, {sctlr}",
            "isb",
            mair = in(reg) MAIR_EL2_VALUE,
            tcr = in(reg) TCR_EL2_VALUE,
            ttbr = in(reg) ttbr,
            sctlr = in(reg) SCTLR_EL2_MMU_ON,
            options(nostack),
        );
    }
}

/// True once the calling CPU runs with its MMU on.
pub fn is_enabled() -> bool {
    SCTLR_EL2.is_set(SCTLR_EL2::M)
}
