//! The run loop: every physical CPU takes the vCPU at the head of the one global FIFO queue (of
//! every VM, `hyp::runq`), runs it until it yields (WFE, UVMHYP_YIELD), its time slice ends (the
//! EL2 hypervisor timer, [`SLICE_US`]), it sleeps (WFI, a parking device), it powers off, or its
//! VM stops, then acts on the handler's [`Next`]: back to the tail, among the sleepers, into its
//! VM's `parked` slots, or dropped. A vCPU is owned (by `Box`) by exactly one of: the queue, the
//! CPU running it, its VM's `parked` slots.
//!
//! Around each guest entry, [`before_entry`] and [`after_exit`] are where per-entry state is
//! flushed and synced (virtual interrupts into list registers, timers, pending work).
//!
//! Idle CPUs announce themselves in `Hyp::idle_cpus` and sleep in WFI until the earliest
//! sleeper's deadline or the idle poll; making a vCPU runnable sends one of them the kick SGI.

use alloc::boxed::Box;
use core::sync::atomic::Ordering;

use super::machine::Vcpu;
use super::next::Next;
use super::state::Hyp;
use super::trap;
use super::irq;
use crate::arch::gic;
use crate::arch::vectors::{self, Exit};
use crate::arch::{cpu, hcr, timer};
use hyp::runq::VcpuId;
use hyp::stop::{Cause, Stop};

/// Time slice of a vCPU.
pub const SLICE_US: u64 = 10_000;
/// How long an idle CPU sleeps before looking at the queue again (a kick wakes it earlier).
const IDLE_POLL_US: u64 = 1_000;

/// Every physical CPU's loop; never returns (the last CPU to see every VM stopped ends the run).
pub fn run_cpu(h: &Hyp) -> ! {
    loop {
        let due = h.queue.lock().wake_due(timer::now());
        if due != 0 {
            kick_idle(h);
        }
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

/// Make `v` runnable (at the tail) and kick an idle CPU, if there is one.
///
/// # Locks
/// Takes the run queue alone.
pub fn make_runnable(h: &Hyp, v: Box<Vcpu>) {
    h.queue.lock().push(v);
    kick_idle(h);
}

/// Send the kick SGI to one idle CPU other than this one.
fn kick_idle(h: &Hyp) {
    let idle = h.idle_cpus.load(Ordering::Acquire) & !(1 << cpu::index());
    if idle != 0 {
        gic::kick(idle.trailing_zeros() as usize);
    }
}

/// Take the head of the queue, counting it as busy until [`put_back`].
fn take(h: &Hyp) -> Option<Box<Vcpu>> {
    let v = h.queue.lock().pop()?;
    h.busy.fetch_add(1, Ordering::AcqRel);
    Some(v)
}

/// Return a vCPU that stopped running, as `next` says.
fn put_back(h: &Hyp, v: Box<Vcpu>, next: Next) {
    match next {
        Next::Resume | Next::Yield | Next::Start(_) | Next::Wake(_) => make_runnable(h, v),
        Next::Sleep { until } => h.queue.lock().sleep(v, Some(until)),
        Next::Park => h.queue.lock().sleep(v, None),
        Next::Off => power_off(h, v),
        Next::Drop => drop(v),
    }
    h.busy.fetch_sub(1, Ordering::AcqRel);
}

/// PSCI CPU_OFF: into the VM's `parked` slot; the last vCPU off ends the VM.
fn power_off(h: &Hyp, v: Box<Vcpu>) {
    let vm = v.vm.clone();
    let index = usize::from(v.index);
    if let Some(slot) = vm.parked.lock().get_mut(index) {
        *slot = Some(v);
    }
    if vm.online.fetch_sub(1, Ordering::AcqRel) == 1 {
        h.stop_vm(&vm, Stop::crash(Cause::GuestCall, "every vCPU is powered off"));
    }
}

/// Run `v` for one time slice (or until it yields, sleeps, powers off or its VM stops).
fn run(h: &Hyp, v: &mut Vcpu) -> Next {
    if v.vm.is_stopped() {
        return Next::Drop;
    }
    // Stage 2 first, then the EL1 context (see `El2Controls::load`).
    v.controls().load();
    v.el1.restore();
    timer::arm_in(timer::us_to_ticks(SLICE_US));
    let next = loop {
        before_entry(v);
        let exit = vectors::enter_guest(&mut v.regs);
        after_exit(v, &exit);
        let next = trap::handle(h, v, exit);
        if v.vm.is_stopped() {
            break Next::Drop;
        }
        let next = side_effects(h, next);
        if !next.resumes() {
            break next;
        }
    };
    timer::disarm();
    v.el1.save();
    hcr::unload();
    next
}

/// Before each entry into the guest: nothing is pending yet (virtual interrupts go into the
/// list registers here once the vGIC exists).
fn before_entry(_v: &mut Vcpu) {}

/// After each exit: the time of the exit (trace records' time and cost); list-register state and
/// the timer are read back here once the vGIC exists.
fn after_exit(v: &mut Vcpu, _exit: &Exit) {
    v.exit_time = timer::now();
}

/// Do what a resuming handler asked for besides resuming: start or wake other vCPUs.
fn side_effects(h: &Hyp, next: Next) -> Next {
    match next {
        Next::Start(vcpus) => {
            for v in vcpus {
                make_runnable(h, v);
            }
            Next::Resume
        }
        Next::Wake(ids) => {
            wake(h, &ids);
            Next::Resume
        }
        other => other,
    }
}

/// Make the sleeping vCPUs `ids` runnable now.
///
/// # Locks
/// Takes the run queue alone.
pub fn wake(h: &Hyp, ids: &[VcpuId]) {
    let woken = {
        let mut q = h.queue.lock();
        ids.iter().filter(|id| q.wake(**id)).count()
    };
    if woken != 0 {
        kick_idle(h);
    }
}

/// Nothing to run: sleep until the idle poll, the earliest sleeper's deadline, or a kick.
fn idle(h: &Hyp) {
    let me = 1usize << cpu::index();
    h.idle_cpus.fetch_or(me, Ordering::AcqRel);
    // A vCPU pushed before this CPU announced itself sent no kick: look once more.
    let (ready, earliest) = {
        let q = h.queue.lock();
        (q.has_ready(), q.earliest_deadline())
    };
    if !ready {
        let poll = timer::now() + timer::us_to_ticks(IDLE_POLL_US);
        timer::arm_at(poll.min(earliest.unwrap_or(u64::MAX)));
        cpu::wfi();
    }
    h.idle_cpus.fetch_and(!me, Ordering::AcqRel);
    irq::drain();
    timer::disarm();
}
