//! Cache maintenance for guest memory the hypervisor writes.
//!
//! The hypervisor fills frames (zero fill, copy-on-write copies, image pages, hypercall writes)
//! with cacheable EL2 stores, but a guest does not necessarily look through the cache:
//! - with its stage 1 off (SCTLR_EL1.M = 0, and HCR_EL2.DC = 0) its data accesses are
//!   Device-nGnRnE and its fetches Non-cacheable (Arm ARM D8.2.10), so they read the point of
//!   coherency (DRAM) and would see what was there before the fill;
//! - the instruction cache is not coherent with data stores (B2.4.4): a frame that held other
//!   code may still be in the I-cache.
//!
//! So every frame the hypervisor writes is cleaned to the PoC and its lines invalidated from the
//! I-cache before the engine maps it ([`sync_for_guest`], called by `physmem.rs`). Doing it in
//! `PhysMem` catches every path, because the engine (safe, host-tested code) fills frames only
//! through that trait, and costs a few line operations per 4 KiB fill. Setting HCR_EL2.DC while
//! a vCPU's MMU is off was the alternative; it covers neither a guest that maps its memory
//! Non-cacheable itself nor the I-cache.

use core::arch::asm;

use hyp::bits::Field;

/// CTR_EL0.IminLine [3:0]: log2 of the smallest I-cache line, in 4-byte words.
const CTR_IMINLINE: Field = Field::new(3, 0);
/// CTR_EL0.L1Ip [15:14]: 0b11 = PIPT instruction cache.
const CTR_L1IP: Field = Field::new(15, 14);
const L1IP_PIPT: u64 = 0b11;
/// CTR_EL0.DminLine [19:16]: log2 of the smallest D-cache line, in 4-byte words.
const CTR_DMINLINE: Field = Field::new(19, 16);
/// CTR_EL0.DIC [29]: instruction cache invalidation to the PoU is not required.
const CTR_DIC: Field = Field::bit(29);

fn ctr_el0() -> u64 {
    let v: u64;
    // SAFETY: reading CTR_EL0 has no side effect.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// A guest's data-cache set/way operation (trapped by HCR_EL2.TSW), executed on this CPU as
/// clean and invalidate: `set_way` is the guest's operand (level, set and way of one line).
pub fn clean_invalidate_set_way(set_way: u64) {
    // SAFETY: DC CISW writes a line back before invalidating it: no data is lost, whatever line
    // the operand selects.
    unsafe { asm!("dc cisw, {}", "dsb ish", in(reg) set_way, options(nostack, preserves_flags)) };
}

/// Make `[start, start + len)` (identity-mapped RAM the hypervisor just wrote) visible to a
/// guest that reads it uncached or executes it: clean to the PoC, invalidate the I-cache.
pub fn sync_for_guest(start: u64, len: usize) {
    if len == 0 {
        return;
    }
    let ctr = ctr_el0();
    let end = start + len as u64;
    let dline = 4u64 << CTR_DMINLINE.get(ctr);
    let mut a = start & !(dline - 1);
    while a < end {
        // SAFETY: DC CVAC writes a line back to memory; it does not change its contents, and the
        // address is mapped (identity map of RAM).
        unsafe { asm!("dc cvac, {}", in(reg) a, options(nostack, preserves_flags)) };
        a += dline;
    }
    // SAFETY: a barrier has no memory-safety effect.
    unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
    if CTR_DIC.is_set(ctr) {
        return;
    }
    if CTR_L1IP.get(ctr) == L1IP_PIPT {
        let iline = 4u64 << CTR_IMINLINE.get(ctr);
        let mut a = start & !(iline - 1);
        while a < end {
            // SAFETY: IC IVAU only discards I-cache lines.
            unsafe { asm!("ic ivau, {}", in(reg) a, options(nostack, preserves_flags)) };
            a += iline;
        }
    } else {
        // A VIPT I-cache may hold the frame under other virtual indexes (the guest's VAs).
        // SAFETY: IC IALLUIS only discards I-cache lines.
        unsafe { asm!("ic ialluis", options(nostack, preserves_flags)) };
    }
    // SAFETY: barriers have no memory-safety effect.
    unsafe { asm!("dsb ish", "isb", options(nostack, preserves_flags)) };
}
