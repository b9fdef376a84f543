//! MMIO emulation: a stage-2 data abort on an IPA of the VM's device bus.
//!
//! The access is decoded from the ISS (ISV = 1: size, register, sign extension) and the guest's
//! endianness (SCTLR_EL1.EE/E0E: a big-endian access is byte-reversed, `hyp::mmio`), performed on
//! the device the VM's bus finds (`hyp::bus`, O(log n)), and the device's [`Reply`] says what
//! next. An offset the device does not implement reads as zero and ignores writes; it is counted
//! and logged once per VM.

use core::sync::atomic::Ordering;

use super::device::{Access, Ctx, Device, Reply};
use super::machine::{Vcpu, Vm};
use super::state::Hyp;
use hyp::esr::AccessSyndrome;
use hyp::mmio::{self, Endian};
use hyp::platform::Window;

/// A data abort decoded as an MMIO access.
pub struct Decoded {
    pub ipa: u64,
    pub syndrome: AccessSyndrome,
    /// The guest's data byte order.
    pub endian: Endian,
    /// For a write, the register's content.
    pub write: Option<u64>,
}

/// Perform `d` on `device` (at `window`) for vCPU `v`. The reply's value is what to put in the
/// register (reordered and extended per the syndrome, `hyp::mmio`); an unknown register has been
/// counted and answers 0.
pub fn access(h: &Hyp, v: &Vcpu, window: Window, device: &dyn Device, d: &Decoded) -> Reply {
    let vm: &Vm = &v.vm;
    let cx = Ctx { hyp: h, vm, vcpu: v.id() };
    let offset = d.ipa - window.base;
    let acc = &d.syndrome;
    let a = Access { offset, size: acc.size, write: d.write.map(|x| mmio::store_value(x, acc, d.endian)) };
    let write = d.write.is_some();
    let loaded = |x: u64| if write { 0 } else { mmio::load_value(x, acc, d.endian) };
    match device.access(&cx, a) {
        Reply::Value(x) => Reply::Value(loaded(x)),
        Reply::Wake(x, ids) => Reply::Wake(loaded(x), ids),
        r @ (Reply::Abort | Reply::Park) => r,
        Reply::Unknown => {
            vm.mmio_unknown.fetch_add(1, Ordering::Relaxed);
            if !vm.mmio_logged.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "vm{}: {} {} of unknown {} register at offset {offset:#x} (reads 0, writes ignored; logged once)",
                    vm.number,
                    if write { "write" } else { "read" },
                    acc.size,
                    device.name()
                );
            }
            Reply::Value(0)
        }
    }
}
