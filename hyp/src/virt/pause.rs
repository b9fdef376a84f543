//! The scenario's clone point in the run loop: a template VM's console line with its marker holds
//! the VM (`hyp::pause`, from `Vm::print_line`), its vCPUs are set aside as they come by, the last
//! one clones it, and the template and its children run on from that point.
//!
//! How every vCPU of the held VM gets here, wherever it is:
//! - running in a guest on another CPU (a long fault included): the first arrival kicks that CPU
//!   (the kick SGI), the exit comes back to the run loop, which sets it aside instead of entering
//!   it again (`run.rs` checks `held` before every entry, and a CPU that took a vCPU stores its
//!   `running` slot before that check, so the round-up either sees it running or it sees the
//!   pause);
//! - queued, asleep in WFI, parked on a BUSY page or in a device: the first arrival takes them
//!   from the run queue (`RunQueue::take_vm`); they run again as runnable — WFI may return early,
//!   a page fault or a device access is re-executed — so nothing is lost;
//! - powered off: not counted, stays off (in the children too); one powering off meanwhile leaves
//!   the count ([`powered_off`]), one powered on by a running vCPU is waited for.
//!
//! If the VM stops instead (the last vCPU off, a crash), `Hyp::stop_vm` drains the set and later
//! arrivals are dropped: nothing waits for it.
//!
//! The log line of the clone gives its latency: from the marker's request to the children being
//! runnable, and the clone alone (the physical counter, host time under QEMU).

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::clone;
use super::machine::{Vcpu, Vm};
use super::state::Hyp;
use crate::arch::{cpu, gic, timer};
use hyp::pause::Arrival;

/// The vCPU `v` (not loaded) of a held VM arrives: set aside — or, the last one, the clone is
/// made. Returns the vCPUs to make runnable: none while others are still to come; after the
/// clone, the template's and every child's.
#[allow(clippy::vec_box)]
pub fn set_aside(h: &Hyp, v: Box<Vcpu>) -> Vec<Box<Vcpu>> {
    let vm = v.vm.clone();
    arrive(h, &vm, Some(v))
}

/// A vCPU of the held VM `vm` powered off (it left the count): as [`set_aside`].
#[allow(clippy::vec_box)]
pub fn powered_off(h: &Hyp, vm: &Arc<Vm>) -> Vec<Box<Vcpu>> {
    arrive(h, vm, None)
}

/// # Locks
/// Takes the VM's set-aside list, then (after dropping it) the run queue, each alone.
#[allow(clippy::vec_box)]
fn arrive(h: &Hyp, vm: &Arc<Vm>, v: Option<Box<Vcpu>>) -> Vec<Box<Vcpu>> {
    match vm.pause.arrive(v, || vm.online.load(Ordering::Acquire), || vm.is_stopped()) {
        Arrival::Stopped(v) => {
            drop(v);
            Vec::new()
        }
        Arrival::Waiting { first: true } => round_up(h, vm),
        Arrival::Waiting { first: false } => Vec::new(),
        Arrival::Complete(vcpus) => clone_and_resume(h, vm, vcpus),
    }
}

/// The held VM's queued and sleeping vCPUs, taken from the run queue and set aside (by the round-up,
/// and by a CPU that put one to sleep as the VM was being held: `run.rs`). Returns what
/// [`set_aside`] does.
///
/// # Locks
/// Takes the run queue alone, then each arrival's set-aside list alone.
#[allow(clippy::vec_box)]
pub fn collect_queued(h: &Hyp, vm: &Arc<Vm>) -> Vec<Box<Vcpu>> {
    let queued = h.queue.lock().take_vm(vm.number);
    let mut out = Vec::new();
    for v in queued {
        out.extend(arrive(h, vm, Some(v)));
    }
    out
}

/// The first arrival: the VM's queued and sleeping vCPUs are set aside ([`collect_queued`]);
/// running ones are kicked out of their guests (they arrive at that exit).
///
/// # Locks
/// As [`collect_queued`].
#[allow(clippy::vec_box)]
fn round_up(h: &Hyp, vm: &Arc<Vm>) -> Vec<Box<Vcpu>> {
    let out = collect_queued(h, vm);
    let me = cpu::index();
    for slot in &vm.running {
        match slot.load(Ordering::SeqCst) {
            0 => {}
            on if on - 1 == me => {}
            on => gic::kick(on - 1),
        }
    }
    out
}

/// Every powered-on vCPU of `vm` is in `vcpus`: make its children, un-hold it, and hand back
/// every vCPU to run (the template's first).
#[allow(clippy::vec_box)]
fn clone_and_resume(h: &Hyp, vm: &Arc<Vm>, vcpus: Vec<Box<Vcpu>>) -> Vec<Box<Vcpu>> {
    let start = timer::now();
    let children = clone::children_of_paused(h, vm, &vcpus, vm.pause.children);
    let end = timer::now();
    vm.pause.finish();
    let n = children.len() / vcpus.len().max(1);
    let first = children.first().map_or(0, |c| c.vm.number);
    log::info!(
        "virt: vm{} cloned at its clone point into {n} children from vm{first} ({} vCPUs each): request to resumed {} us, clone {} us",
        vm.number,
        vcpus.len(),
        clone::us(end.saturating_sub(vm.pause.requested_at())),
        clone::us(end - start.min(end))
    );
    let mut out = vcpus;
    out.extend(children);
    out
}
