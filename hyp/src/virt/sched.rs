//! The scheduler: one global FIFO run queue of vCPUs (of every VM) shared by all physical CPUs.
//!
//! A physical CPU takes the vCPU at the head, runs it until it yields (WFE, UVMHYP_YIELD), its
//! time slice ends (the EL2 hypervisor timer, [`SLICE_US`]), it waits (WFI), it powers off, or its
//! VM stops, then puts it at the tail (or parks/drops it). A vCPU is owned (by `Box`) by exactly
//! one of: the queue, the CPU running it, the sleepers, its VM's `parked` slots.
//!
//! WFI parks the vCPU among the sleepers until its virtual timer's deadline (CNTV_CVAL_EL0, when
//! the guest armed and unmasked it) or at most [`MAX_SLEEP_US`]; any CPU that looks at the queue
//! first moves due sleepers back to it, and idle CPUs arm their timer for the earliest deadline.
//! Nothing wakes a sleeper earlier yet: there is no virtual interrupt to deliver until the vGIC
//! exists (its injection is where a sleeping vCPU will be kicked). The guest sees its timer's
//! ISTATUS when it runs again; the timer interrupt itself is the vGIC's to deliver.
//!
//! Idle CPUs announce themselves in `Hyp::idle_cpus` and sleep in WFI; making a vCPU runnable
//! sends one of them the kick SGI, so a CPU_ON or a yield does not wait for the idle poll.
//!
//! # Locks
//! The run-queue lock and the sleepers lock are leaves: held only to push, pop or scan.

use alloc::boxed::Box;
use core::sync::atomic::Ordering;

use super::vm::{Stopped, Vcpu};
use super::{trap, Hyp, Next};
use crate::arch::gic::{self, Group};
use crate::arch::{cpu, hcr, timer, vcpu, vectors};
use hyp::esr::Syndrome;

/// Time slice of a vCPU.
pub const SLICE_US: u64 = 10_000;
/// How long an idle CPU sleeps before looking at the queue again (a kick wakes it earlier).
const IDLE_POLL_US: u64 = 1_000;
/// Longest WFI sleep of a vCPU whose virtual timer is not armed.
const MAX_SLEEP_US: u64 = 10_000;

/// Make `v` runnable (at the tail) and kick an idle CPU, if there is one.
pub fn push(h: &Hyp, v: Box<Vcpu>) {
    h.runq.lock().push_back(v);
    let me = cpu::index();
    let idle = h.idle_cpus.load(Ordering::Acquire) & !(1 << me);
    if idle != 0 {
        gic::kick(idle.trailing_zeros() as usize);
    }
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
        Next::Sleep { until } => h.sleepers.lock().push((until, v)),
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

/// Move every sleeper whose deadline has passed back to the run queue.
fn wake_due(h: &Hyp) {
    let now = timer::now();
    let mut due = alloc::vec::Vec::new();
    {
        let mut s = h.sleepers.lock();
        let mut i = 0;
        while i < s.len() {
            if s[i].0 <= now {
                due.push(s.swap_remove(i).1);
            } else {
                i += 1;
            }
        }
    }
    for v in due {
        push(h, v);
    }
}

/// Every physical CPU's loop; never returns (the last CPU to see every VM stopped ends the run).
pub fn run_cpu(h: &Hyp) -> ! {
    loop {
        wake_due(h);
        match take(h) {
            Some(mut v) => {
                let next = run(h, &mut v);
                put_back(h, v, next);
            }
            None => {
                if h.all_stopped() && h.busy.load(Ordering::Acquire) == 0 {
                    h.finish();
                }
                idle(h);
            }
        }
    }
}

/// Run `v` for one time slice (or until it yields, waits, powers off or its VM stops).
fn run(h: &Hyp, v: &mut Vcpu) -> Next {
    if v.vm.is_stopped() {
        return Next::Drop;
    }
    // Stage 2 first, then the EL1 context (see `El2Controls::load`).
    v.controls().load();
    v.el1.restore();
    timer::arm_in(timer::us_to_ticks(SLICE_US));
    let next = loop {
        let exit = vectors::enter_guest(&mut v.regs);
        v.exit_time = timer::now();
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
    hcr::unload();
    next
}

/// A trapped WFI or WFE of the loaded vCPU `v` (its preferred return address is the instruction
/// itself: step over it). WFE (a spin-wait on another vCPU) yields; WFI sleeps (module comment).
pub fn wait(v: &mut Vcpu, syn: &Syndrome) -> Next {
    v.regs.elr_el2 = v.regs.elr_el2.wrapping_add(syn.insn_len());
    if hyp::esr::is_wfe(syn.iss) {
        return Next::Yield;
    }
    let now = timer::now();
    let until = vcpu::live_vtimer_deadline().unwrap_or(u64::MAX).min(now + timer::us_to_ticks(MAX_SLEEP_US));
    if until <= now {
        Next::Yield
    } else {
        Next::Sleep { until }
    }
}

/// Acknowledge every pending IRQ; true if the hypervisor timer (end of a slice) was among them.
pub fn drain_irqs() -> bool {
    let mut tick = false;
    gic::drain(Group::One, |intid| {
        if intid == gic::HYP_TIMER_INTID {
            timer::disarm();
            tick = true;
        }
    });
    tick
}

/// Nothing to run: sleep until the idle poll, the earliest sleeper's deadline, or a kick.
fn idle(h: &Hyp) {
    let me = 1usize << cpu::index();
    h.idle_cpus.fetch_or(me, Ordering::AcqRel);
    // A vCPU pushed before this CPU announced itself sent no kick: look once more.
    if h.runq.lock().is_empty() {
        let poll = timer::now() + timer::us_to_ticks(IDLE_POLL_US);
        let earliest = h.sleepers.lock().iter().map(|(t, _)| *t).min().unwrap_or(u64::MAX);
        timer::arm_at(poll.min(earliest));
        cpu::wfi();
    }
    h.idle_cpus.fetch_and(!me, Ordering::AcqRel);
    drain_irqs();
    timer::disarm();
}
