//! The scheduler: one global FIFO run queue of vCPUs (of every VM) shared by all physical CPUs.
//!
//! A physical CPU takes the vCPU at the head, runs it until it yields (WFI/WFE, UVMHYP_YIELD),
//! its time slice ends (the EL2 hypervisor timer, [`SLICE_US`]), it powers off, or its VM stops,
//! then puts it at the tail (or parks/drops it). A vCPU is owned (by `Box`) by exactly one of: the
//! queue, the CPU running it, its VM's `parked` slots.
//!
//! # Locks
//! The run-queue lock is a leaf: held only to push or pop.

use alloc::boxed::Box;
use core::sync::atomic::Ordering;

use super::vm::{Stopped, Vcpu};
use super::{trap, Hyp, Next};
use crate::arch::{cpu, gic, timer, vectors};

/// Time slice of a vCPU.
pub const SLICE_US: u64 = 10_000;
/// How long an idle CPU sleeps before looking at the queue again.
const IDLE_POLL_US: u64 = 1_000;

/// Make `v` runnable (at the tail).
pub fn push(h: &Hyp, v: Box<Vcpu>) {
    h.runq.lock().push_back(v);
}

/// Take the head of the queue, counting it as busy until [`put_back`].
fn take(h: &Hyp) -> Option<Box<Vcpu>> {
    let mut q = h.runq.lock();
    let v = q.pop_front()?;
    h.busy.fetch_add(1, Ordering::AcqRel);
    Some(v)
}

/// Return a vCPU that stopped running, as `next` says.
fn put_back(h: &Hyp, v: Box<Vcpu>, next: Next) {
    match next {
        Next::Resume | Next::Yield => push(h, v),
        Next::Off => {
            let vm = v.vm.clone();
            let index = usize::from(v.index);
            if let Some(slot) = vm.parked.lock().get_mut(index) {
                *slot = Some(v);
            }
            if vm.online.fetch_sub(1, Ordering::AcqRel) == 1 {
                h.stop_vm(&vm, Stopped::Crashed("every vCPU is powered off".into()));
            }
        }
        Next::Drop => drop(v),
    }
    h.busy.fetch_sub(1, Ordering::AcqRel);
}

/// Every physical CPU's loop; never returns (the last CPU to see every VM stopped ends the run).
pub fn run_cpu(h: &Hyp) -> ! {
    loop {
        match take(h) {
            Some(mut v) => {
                let next = run(h, &mut v);
                put_back(h, v, next);
            }
            None => {
                if h.all_stopped() && h.busy.load(Ordering::Acquire) == 0 {
                    h.finish();
                }
                idle();
            }
        }
    }
}

/// Run `v` for one time slice (or until it yields, powers off or its VM stops).
fn run(h: &Hyp, v: &mut Vcpu) -> Next {
    if v.vm.is_stopped() {
        return Next::Drop;
    }
    v.el1.restore();
    v.vm.controls(v.index).load();
    timer::arm_in(timer::us_to_ticks(SLICE_US));
    let next = loop {
        let exit = vectors::enter_guest(&mut v.regs);
        let next = trap::handle(h, v, exit);
        if v.vm.is_stopped() {
            break Next::Drop;
        }
        if next != Next::Resume {
            break next;
        }
    };
    timer::disarm();
    v.el1.save();
    next
}

/// Nothing to run: sleep until the idle poll timer (or any interrupt) wakes this CPU.
fn idle() {
    timer::arm_in(timer::us_to_ticks(IDLE_POLL_US));
    cpu::wfi();
    while let Some(intid) = gic::ack() {
        if intid == gic::HYP_TIMER_INTID {
            timer::disarm();
        }
        gic::eoi(intid);
    }
    timer::disarm();
}
