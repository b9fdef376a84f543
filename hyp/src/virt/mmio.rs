//! MMIO emulation: a range table of emulated devices in the guest's IPA space.
//!
//! A stage-2 abort on an IPA outside guest RAM is looked up in [`WINDOWS`]; the access is decoded
//! from the ISS (ISV = 1: size, register, sign extension) and the guest's endianness
//! (SCTLR_EL1.EE/E0E: a big-endian access is byte-reversed), performed on the device, and the guest
//! resumes after the instruction. An access with ISV = 0 (load/store pair, writeback, …) cannot be
//! emulated from the syndrome and gets a synchronous external abort. An offset the device does not
//! implement reads as zero and ignores writes; it is counted and logged once per VM.

use hyp::esr::AccessSyndrome;
use hyp::mmio::{self, Endian};
use vm::Ipa;
use super::pl011::Pl011;
use super::vm::Vm;
use core::sync::atomic::Ordering;

/// A device register file emulated for a guest.
pub trait MmioDevice: Sync {
    /// Device name for logs.
    fn name(&self) -> &'static str;
    /// Read `size` bytes at `offset`; `None` if the register does not exist.
    fn read(&self, vm: &Vm, offset: u64, size: u8) -> Option<u64>;
    /// Write `value` (`size` bytes) at `offset`; false if the register does not exist.
    fn write(&self, vm: &Vm, offset: u64, size: u8, value: u64) -> bool;
}

/// One device window: `[base, base + size)` of the IPA space.
pub struct Window {
    pub base: Ipa,
    pub size: u64,
    pub device: &'static dyn MmioDevice,
}

/// Every emulated device (QEMU virt's layout).
pub static WINDOWS: &[Window] = &[Window { base: Ipa(0x0900_0000), size: 0x1000, device: &Pl011 }];

/// The window covering `ipa`.
pub fn find(ipa: Ipa) -> Option<&'static Window> {
    WINDOWS.iter().find(|w| ipa >= w.base && ipa.0 - w.base.0 < w.size)
}

/// Perform a decoded access on `w`, in the guest's byte order `endian`. For a write `value` is
/// the register's content; for a read the return value is what to put in the register
/// (reordered and extended per the syndrome, [`hyp::mmio`]).
pub fn access(vm: &Vm, w: &Window, ipa: Ipa, acc: &AccessSyndrome, endian: Endian, write: bool, value: u64) -> u64 {
    let offset = ipa.0 - w.base.0;
    let known = if write {
        w.device.write(vm, offset, acc.size, mmio::store_value(value, acc, endian))
    } else {
        match w.device.read(vm, offset, acc.size) {
            Some(v) => return mmio::load_value(v, acc, endian),
            None => false,
        }
    };
    if !known {
        vm.mmio_unknown.fetch_add(1, Ordering::Relaxed);
        if !vm.mmio_logged.swap(true, Ordering::Relaxed) {
            log::warn!(
                "vm{}: {} {} of unknown {} register at offset {offset:#x} (reads 0, writes ignored; logged once)",
                vm.id,
                if write { "write" } else { "read" },
                acc.size,
                w.device.name()
            );
        }
    }
    0
}
