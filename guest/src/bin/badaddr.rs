//! `badaddr`: bad input from a guest never stops EL2 (runs with its MMU off).
//!
//! - Loads from IPAs with neither RAM nor a device (0x2000_0000, RAM end) must take a synchronous
//!   external abort at EL1: ESR_EL1.EC 0x25, DFSC 0b010000, FAR_EL1 == the address; we resume.
//! - A branch to such an IPA takes an instruction abort at EL1 (EC 0x21, IFSC 0b010000, FAR_EL1 and
//!   ELR_EL1 == the address); the VM is not stopped.
//! - A 32-bit read of the PL011's UARTPeriphID0 (0x11) gives 0x11 little-endian and 0x1100_0000
//!   with SCTLR_EL1.EE set: MMIO data follows the guest's endianness.
//! - Handling the same abort at the same PC four times in a row does not stop the VM either.
//! - An unknown HVC and an unknown SMC return NOT_SUPPORTED (-1).
//! - PRINT of bytes outside RAM returns INVALID_PARAMETERS (-2); so does an unknown counter id.
#![no_std]
#![no_main]

use guest::exceptions::{probe_exec, probe_read, DFSC_SEA, EC_DATA_ABORT_SAME_EL, EC_INSTR_ABORT_SAME_EL};
use guest::hvc::{self, Conduit, INVALID_PARAMETERS, NOT_SUPPORTED};
use guest::{check, println};

guest::entry!(main);

const UNKNOWN_ID: u32 = 0xC600_00FF;
/// UARTPeriphID0 of the emulated PL011; it reads 0x11.
const UARTPERIPHID0: u64 = guest::layout::PL011_BASE + 0xfe0;
/// SCTLR_EL1.EE: EL1 data accesses are big-endian.
const SCTLR_EL1_EE: u64 = 1 << 25;

/// A 32-bit load from `addr` with SCTLR_EL1.EE = `big_endian` for that one instruction.
fn read32(addr: u64, big_endian: bool) -> u32 {
    let ee = if big_endian { SCTLR_EL1_EE } else { 0 };
    let v: u32;
    // SAFETY: with the MMU off, `addr` is the emulated device (no Rust object); EE only changes
    // the byte order of the one load between the two SCTLR_EL1 writes, which touch no memory
    // (no stack, no table walk) and run with interrupts masked.
    unsafe {
        core::arch::asm!(
            "mrs {saved}, sctlr_el1",
            "orr {set}, {saved}, {ee}",
            "msr sctlr_el1, {set}",
            "isb",
            "ldr {v:w}, [{a}]",
            "msr sctlr_el1, {saved}",
            "isb",
            saved = out(reg) _,
            set = out(reg) _,
            v = out(reg) v,
            ee = in(reg) ee,
            a = in(reg) addr,
            options(nostack),
        );
    }
    v
}

fn expect_sea(addr: u64, status: u32) {
    match probe_read(addr) {
        Ok(v) => guest::fail!(status, "load from {:#x} returned {:#x}, expected an abort", addr, v),
        Err(a) => {
            println!("badaddr: {:#x}: ESR_EL1 {:#010x} FAR_EL1 {:#x} ELR_EL1 {:#x}", addr, a.esr, a.far, a.elr);
            check!(a.ec() == EC_DATA_ABORT_SAME_EL, status, "EC {:#x}, expected {:#x}", a.ec(), EC_DATA_ABORT_SAME_EL);
            check!(a.fsc() == DFSC_SEA, status, "DFSC {:#x}, expected {:#x}", a.fsc(), DFSC_SEA);
            check!(a.far == addr, status, "FAR_EL1 {:#x}, expected {:#x}", a.far, addr);
        }
    }
}

fn expect_instruction_abort(addr: u64, status: u32) {
    match probe_exec(addr) {
        Ok(()) => guest::fail!(status, "branch to {:#x} came back, expected an instruction abort", addr),
        Err(a) => {
            println!("badaddr: fetch {:#x}: ESR_EL1 {:#010x} FAR_EL1 {:#x} ELR_EL1 {:#x}", addr, a.esr, a.far, a.elr);
            check!(a.ec() == EC_INSTR_ABORT_SAME_EL, status, "EC {:#x}, expected {:#x}", a.ec(), EC_INSTR_ABORT_SAME_EL);
            check!(a.fsc() == DFSC_SEA, status, "IFSC {:#x}, expected {:#x}", a.fsc(), DFSC_SEA);
            check!(a.far == addr && a.elr == addr, status, "FAR_EL1 {:#x} ELR_EL1 {:#x}, expected {:#x}", a.far, a.elr, addr);
        }
    }
}

fn main(_cpu: usize, _arg: u64) -> u32 {
    check!(!guest::mmu::is_on(), 1, "expected to start with the MMU off");
    let info = hvc::info();
    let ram_end = guest::layout::RAM_BASE + info.ram_bytes;
    println!("badaddr: vm {} ram {} MiB, MMU off", info.vm, info.ram_bytes >> 20);

    expect_sea(0x2000_0000, 2);
    expect_sea(ram_end, 3);
    expect_sea(ram_end + 0x10_0008, 4);

    expect_instruction_abort(0x2000_0000, 15);
    // The same abort, handled, again and again at one PC is legal: the VM must run on.
    for _ in 0..4 {
        expect_sea(0x2000_0000, 16);
    }

    let le = read32(UARTPERIPHID0, false);
    let be = read32(UARTPERIPHID0, true);
    check!(le == 0x11 && be == 0x1100_0000, 17, "UARTPeriphID0 read {:#x} little-endian, {:#x} big-endian; expected 0x11, 0x11000000", le, be);

    // RAM still works after the aborts.
    let ok = probe_read(guest::layout::RAM_BASE);
    check!(ok.is_ok(), 5, "load from RAM base aborted: {:?}", ok);

    let r = hvc::call(Conduit::Hvc, UNKNOWN_ID, 1, 2, 3)[0] as i64;
    check!(r == NOT_SUPPORTED, 6, "unknown HVC {:#x} returned {}, expected -1", UNKNOWN_ID, r);
    let r = hvc::call(Conduit::Smc, UNKNOWN_ID, 1, 2, 3)[0] as i64;
    check!(r == NOT_SUPPORTED, 7, "unknown SMC {:#x} returned {}, expected -1", UNKNOWN_ID, r);
    let r = hvc::call(Conduit::Hvc, 0x8400_00FF, 0, 0, 0)[0] as i64;
    check!(r == NOT_SUPPORTED, 8, "unknown PSCI call returned {}, expected -1", r);

    let r = hvc::print_raw(0x2000_0000, 16);
    check!(r == INVALID_PARAMETERS, 9, "PRINT from {:#x} returned {}, expected -2", 0x2000_0000u64, r);
    let r = hvc::print_raw(ram_end - 8, 64);
    check!(r == INVALID_PARAMETERS, 10, "PRINT across RAM end returned {}, expected -2", r);
    let r = hvc::counter_raw(999);
    check!(r == INVALID_PARAMETERS, 11, "COUNTER(999) returned {}, expected -2", r);

    let v = hvc::hvc(hvc::PSCI_VERSION, 0, 0, 0);
    check!(v == 0x1_0001, 12, "PSCI_VERSION {:#x}, expected 0x10001 (1.1)", v);
    let f = hvc::hvc(hvc::PSCI_FEATURES, hvc::PSCI_CPU_ON as u64, 0, 0);
    check!(f == 0, 13, "PSCI_FEATURES(CPU_ON) {}, expected 0", f);
    let f = hvc::hvc(hvc::PSCI_FEATURES, UNKNOWN_ID as u64, 0, 0);
    check!(f == NOT_SUPPORTED, 14, "PSCI_FEATURES(unknown) {}, expected -1", f);

    // The EL1 physical timer the device tree of a Linux VM promises is there (emulated): armed
    // 1000 ticks ahead, masked, its condition comes true and TVAL goes negative.
    use guest::timer::phys;
    phys::arm(1000, 0b11);
    let t0 = guest::timer::now();
    while phys::ctl() & 0b100 == 0 && guest::timer::now() - t0 < 1_000_000 {}
    let (ctl, tval) = (phys::ctl(), phys::tval());
    check!(ctl == 0b111 && tval <= 0, 18, "CNTP_CTL {:#b} TVAL {} after the deadline, expected 0b111 and <= 0", ctl, tval);
    println!("badaddr: ok");
    0
}
