//! `xonly`: runs code at EL0 from an EL0 *execute-only* page (stage-1 AP = 0b00, UXN = 0: EL1
//! may read and write it, EL0 may only fetch), after a control run from an ordinary EL0
//! read-and-execute page.
//!
//! Each page is written by EL1 first (a data fault maps it at stage 2), so under the scenario's
//! `selftest=data-pages-nx` hook the EL0 fetch takes a stage-2 *permission* fault, for which
//! HPFAR_EL2 is not valid: EL2 finds the IPA by re-walking FAR with an AT instruction. An
//! `AT S1E0R` (EL0 read permission) fails on an execute-only page; if EL2 then re-enters the guest
//! the fetch faults again, forever, and the scenario times out. `AT S1E1R` (as KVM uses) finds
//! the IPA for any EL0 permission, and the fetch runs.
//!
//! Stage 1: RAM identity-mapped by 2 MiB blocks (EL1 only), except the 2 MiB holding the two
//! test pages, mapped by 4 KiB pages. Each test page holds `MOVZ x0, #imm; SVC #0`.
#![no_std]
#![no_main]

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use guest::exceptions::{run_el0, EC_SVC64};
use guest::layout::{self, PAGE_SIZE, RAM_BASE};
use guest::mmu::{AF, PXN, RAM_BLOCK_NO_AF, UXN};
use guest::{check, println};

guest::entry!(main);

#[repr(C, align(4096))]
struct Table([AtomicU64; 512]);

static L1: Table = Table([const { AtomicU64::new(0) }; 512]);
static L2: Table = Table([const { AtomicU64::new(0) }; 512]);
static L3: Table = Table([const { AtomicU64::new(0) }; 512]);

const BLOCK_2M: u64 = 2 << 20;
/// Descriptor type bits [1:0]: a table (levels 1-2) or a page (level 3); 0b01 is a block.
const TABLE_OR_PAGE: u64 = 0b11;
/// Stage-1 AP[2:1] [7:6]: 0b00 EL1 read/write, EL0 none; 0b11 read-only at EL1 and EL0.
const AP_EL1_RW: u64 = 0b00 << 6;
const AP_RO_ALL: u64 = 0b11 << 6;
/// The attributes of a RAM mapping but its output address and descriptor type: Normal WB,
/// inner shareable, AF, EL1 read/write.
const RAM_ATTRS: u64 = (RAM_BLOCK_NO_AF & !RAM_BASE & !0b11) | AF;
/// Device block for [0, 1 GiB): attr index 0, never executable.
const DEVICE_BLOCK: u64 = 0b01 | AF | PXN | UXN;

/// `MOVZ x0, #imm16`.
const fn movz_x0(imm: u16) -> u32 {
    0xd280_0000 | ((imm as u32) << 5)
}
/// `SVC #0`.
const SVC_0: u32 = 0xd400_0001;

/// Write `MOVZ x0, #imm; SVC #0` at `page` (MMU off: straight to memory).
fn write_code(page: u64, imm: u16) {
    // SAFETY: `page` is free RAM beyond the image (nothing lives there), 4-byte aligned.
    unsafe {
        core::ptr::write_volatile(page as *mut u32, movz_x0(imm));
        core::ptr::write_volatile((page + 4) as *mut u32, SVC_0);
    }
}

/// The tables: identity RAM, the 2 MiB block holding `readable` and `exec_only` split into pages.
fn build(readable: u64, exec_only: u64) -> u64 {
    let region = readable & !(BLOCK_2M - 1);
    L1.0[0].store(DEVICE_BLOCK, Ordering::Relaxed);
    L1.0[1].store(L2.0.as_ptr() as u64 | TABLE_OR_PAGE, Ordering::Relaxed);
    for (i, e) in L2.0.iter().enumerate() {
        let base = RAM_BASE + i as u64 * BLOCK_2M;
        let d = if base == region { L3.0.as_ptr() as u64 | TABLE_OR_PAGE } else { base | RAM_ATTRS | 0b01 | UXN };
        e.store(d, Ordering::Relaxed);
    }
    for (i, e) in L3.0.iter().enumerate() {
        let page = region + i as u64 * PAGE_SIZE;
        let d = if page == readable {
            page | RAM_ATTRS | AP_RO_ALL | TABLE_OR_PAGE | PXN
        } else if page == exec_only {
            page | RAM_ATTRS | AP_EL1_RW | TABLE_OR_PAGE | PXN
        } else {
            page | RAM_ATTRS | AP_EL1_RW | TABLE_OR_PAGE | UXN
        };
        e.store(d, Ordering::Relaxed);
    }
    // Written with the MMU off (non-cacheable); the walker reads cacheable: clean and invalidate.
    for t in [&L1, &L2, &L3] {
        let base = t.0.as_ptr() as u64;
        for line in (base..base + PAGE_SIZE).step_by(64) {
            // SAFETY: cache maintenance by VA on our own table page has no effect on program state.
            unsafe { asm!("dc civac, {}", in(reg) line, options(nostack)) };
        }
    }
    // SAFETY: barriers and I-cache invalidation only (the code pages were just written).
    unsafe { asm!("dsb ish", "ic iallu", "dsb ish", "isb", options(nostack)) };
    L1.0.as_ptr() as u64
}

/// Run the test page at `page` at EL0 and check it came back through its SVC with `imm` in x0.
fn run(what: &str, page: u64, imm: u16) {
    // SAFETY: the page holds `MOVZ x0; SVC #0` (written above): x0 only, no stack.
    let exit = unsafe { run_el0(page) };
    let e = exit.exception;
    check!(
        e.ec() == EC_SVC64 && exit.x0 == u64::from(imm),
        3,
        "{what}: EL0 ended with ESR_EL1 {:#x} (EC {:#x}) FAR {:#x} ELR {:#x}, x0 {:#x}",
        e.esr,
        e.ec(),
        e.far,
        e.elr,
        exit.x0
    );
    println!("xonly: {what}: ok");
}

fn main(_cpu: usize, _arg: u64) -> u32 {
    let start = layout::free_start().next_multiple_of(PAGE_SIZE);
    let (readable, exec_only) = (start, start + PAGE_SIZE);
    check!(readable & !(BLOCK_2M - 1) == exec_only & !(BLOCK_2M - 1), 2, "test pages straddle a 2 MiB block");
    write_code(readable, 0x1234);
    write_code(exec_only, 0x5678);
    let ttbr = build(readable, exec_only);
    // SAFETY: the tables map all of RAM (code, data, stacks) at VA == IPA, Normal memory, cleaned.
    unsafe { guest::mmu::enable_table(ttbr) };
    run("EL0 read+execute page", readable, 0x1234);
    run("EL0 execute-only page", exec_only, 0x5678);
    0
}
