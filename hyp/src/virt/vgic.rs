//! The VM's virtual GICv3 at work (`hyp::vgic` is its state): its two MMIO frames on the VM's
//! bus (the distributor, and the redistributors of every vCPU), the list registers around each
//! guest entry, the virtual timer's interrupt, and SGIs from trapped `ICC_SGI1R_EL1` writes.
//!
//! The controller is the VM's (`Vm::gic`), not a bus device's: the frames, the PL011's interrupt
//! line, the run loop and WFI all reach it — through `VmView::gic` for devices.
//!
//! Around each entry of a vCPU (`run.rs` hooks): [`load`] sets the virtual timer's line from the
//! live CNTV_CTL_EL0 (enabled, condition met, not masked: level-sensitive PPI 27), fills the list
//! registers with the vCPU's active and highest-priority deliverable interrupts and enables the
//! virtual CPU interface (asking for the underflow maintenance interrupt when more wait), and
//! says when the virtual timer will fire (the run loop arms the EL2 timer for it, so a guest
//! waiting for its tick gets an exit). [`save`] reads the list registers back. The
//! guest's acknowledge, priority drop and deactivate happen in hardware on the list registers.
//!
//! # Locks
//! `Vm::gic` is a leaf: taken alone around a register access, a fill or a sync.

use alloc::vec::Vec;
use spin::Mutex;

use super::device::{wake_ids, Access, Ctx, Device, Reply};
use super::machine::Vcpu;
use crate::arch::{ich, vcpu};
use hyp::platform::GICR_STRIDE;
use hyp::ptimer;
use hyp::vgic::{self, Lr, Notify, Vgic};

/// A register access's reply, waking whoever it made an interrupt deliverable to.
fn reply(cx: &Ctx<'_>, (a, n): (vgic::Access, Notify)) -> Reply {
    match a {
        vgic::Access::Unknown => Reply::Unknown,
        vgic::Access::Value(v) if n.0 == 0 => Reply::Value(v),
        vgic::Access::Value(v) => Reply::Wake(v, wake_ids(cx.vm.number(), n)),
    }
}

/// The distributor frame.
pub struct Distributor;

impl Device for Distributor {
    fn name(&self) -> &'static str {
        "gicd"
    }

    fn access(&self, cx: &Ctx<'_>, a: Access) -> Reply {
        match cx.vm.gic() {
            Some(gic) => reply(cx, gic.lock().gicd(a.offset, a.size, a.write)),
            None => Reply::Unknown,
        }
    }

    fn fork(&self) -> alloc::boxed::Box<dyn Device> {
        alloc::boxed::Box::new(Distributor)
    }
}

/// The redistributor frames, [`GICR_STRIDE`] bytes per vCPU.
pub struct Redistributors;

impl Device for Redistributors {
    fn name(&self) -> &'static str {
        "gicr"
    }

    fn access(&self, cx: &Ctx<'_>, a: Access) -> Reply {
        let cpu = (a.offset / GICR_STRIDE) as usize;
        match cx.vm.gic() {
            Some(gic) => reply(cx, gic.lock().gicr(cpu, a.offset % GICR_STRIDE, a.size, a.write)),
            None => Reply::Unknown,
        }
    }

    fn fork(&self) -> alloc::boxed::Box<dyn Device> {
        alloc::boxed::Box::new(Redistributors)
    }
}

/// Before entering the guest on vCPU `v`: the timers' lines (virtual: PPI 27 from the live
/// registers; physical: PPI 30 from the emulated one), the list registers, the virtual CPU
/// interface. Returns the physical counter value at which the next of its timers fires, if one
/// is armed and not already firing.
///
/// # Locks
/// Takes `gic` alone.
pub fn load(gic: &Mutex<Vgic>, v: &mut Vcpu) -> Option<u64> {
    let cpu = usize::from(v.index);
    let timer = vcpu::live_vtimer();
    let now = crate::arch::timer::now();
    let nr = ich::nr_lrs();
    let (lrs, more) = {
        let mut g = gic.lock();
        g.set_level(cpu, vgic::VTIMER_INTID, timer.firing);
        g.set_level(cpu, ptimer::INTID, v.ptimer.firing(now));
        g.fill_lrs(cpu, nr)
    };
    for i in 0..nr {
        ich::write_lr(i, lrs.get(i).map_or(0, |lr| lr.encode()));
    }
    ich::write_hcr(ich::HCR_EN | if more { ich::HCR_UIE } else { 0 });
    v.lrs_loaded = lrs.len();
    let vtimer = (!timer.firing).then_some(timer.deadline).flatten();
    [vtimer, v.ptimer.deadline(now)].into_iter().flatten().min()
}

/// After an exit of vCPU `v`: fold its list registers back into the state.
///
/// # Locks
/// Takes `gic` alone.
pub fn save(gic: &Mutex<Vgic>, v: &mut Vcpu) {
    let lrs: Vec<Lr> = (0..v.lrs_loaded).map(|i| Lr::decode(ich::read_lr(i))).collect();
    ich::write_hcr(0);
    v.lrs_loaded = 0;
    gic.lock().sync_lrs(usize::from(v.index), &lrs);
}
