//! What an emulated device is: a stateful register file on a VM's bus (`hyp::bus::Bus`), called
//! with a context and answering with what should happen next. Devices keep their state inside
//! themselves (behind their own lock), never in `Vm` fields, so each VM has its own instances.
//!
//! This module names no other `virt` module: a device reaches its VM and vCPU through the
//! narrow views of [`Ctx`], and asks for scheduling (park, wake) by its [`Reply`] — the run loop
//! does the queue work (`virt::run`), so devices never touch the run queue.
//!
//! # Adding a device
//! Implement [`Device`] in its own file (`pl011.rs` is the model), give it its window in
//! `hyp::platform`, and attach it in `build.rs` when the VM's description asks for it.

use alloc::vec::Vec;
use hyp::runq::VcpuId;

/// A decoded MMIO access, as the device sees it: register offset, size, and the value in the
/// device's byte order (the guest's endianness is undone by `virt::mmio`).
#[derive(Clone, Copy, Debug)]
pub struct Access {
    pub offset: u64,
    /// 1, 2, 4 or 8 bytes.
    pub size: u8,
    /// `Some(value)` for a write.
    pub write: Option<u64>,
}

/// What the device wants after an access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Done: a read returns this value (ignored for a write); the guest resumes after the
    /// instruction.
    Value(u64),
    /// No such register: reads as zero, writes ignored; counted and logged once per VM.
    Unknown,
    /// The access is an error the device signals: a synchronous external abort for the guest.
    Abort,
    /// The access cannot complete yet: the vCPU sleeps, without stepping over the instruction,
    /// until a [`Reply::Wake`] (from another access) or the device's completion wakes it; it
    /// then re-executes the access.
    Park,
    /// Done as `Value`, and these vCPUs (asleep or parked) must run now.
    Wake(u64, Vec<VcpuId>),
}

/// The vCPUs of VM `vm` that a vGIC notification names (bit i = vCPU i).
pub fn wake_ids(vm: u16, n: hyp::vgic::Notify) -> Vec<VcpuId> {
    (0..64u16).filter(|i| n.0 >> i & 1 != 0).map(|index| VcpuId { vm, index }).collect()
}

/// The VM as a device sees it.
pub trait VmView {
    /// Run-unique VM number (`vm<N>` in output).
    fn number(&self) -> u16;
    /// Print one line of guest console output (rate-limited by the VM's console budget).
    fn print_line(&self, text: &[u8]);
    /// The VM's interrupt controller, if it has one (a device raises its line there).
    fn gic(&self) -> Option<&spin::Mutex<hyp::vgic::Vgic>>;
    /// The VM's identity (number, lineage, children: `hyp::identity`).
    fn identity(&self) -> &hyp::identity::Identity;
    /// Host console input for the VM that its UART had no room for yet (`hyp::console_in`).
    fn input(&self) -> &spin::Mutex<hyp::console_in::InputQueue>;
}

/// The hypervisor as a device sees it.
pub trait HypView {
    /// The system counter (for devices that keep time).
    fn now(&self) -> u64;
}

/// The context of one access.
pub struct Ctx<'a> {
    pub hyp: &'a dyn HypView,
    pub vm: &'a dyn VmView,
    /// The accessing vCPU.
    pub vcpu: VcpuId,
}

/// An emulated device.
pub trait Device: Send + Sync {
    /// Name for logs.
    fn name(&self) -> &'static str;
    /// Perform `access`.
    fn access(&self, cx: &Ctx<'_>, access: Access) -> Reply;
    /// Host console input waits in the VM's input queue ([`VmView::input`]): take what fits
    /// (the VM's console UART does; other devices have nothing to do with it).
    fn receive(&self, _cx: &Ctx<'_>) -> Reply {
        Reply::Value(0)
    }
    /// The VM stopped: emit what is buffered (a partial console line, …).
    fn stop(&self, _cx: &Ctx<'_>) {}
    /// A copy of this device, state included, for a clone of its VM.
    fn fork(&self) -> alloc::boxed::Box<dyn Device>;
}
