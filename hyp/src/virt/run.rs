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
//! Each pass of the loop first polls the host console's input (`virt::input`).
//!
//! Idle CPUs announce themselves in `Hyp::idle_cpus` (and `Hyp::asleep_cpus` in WFI) and sleep
//! in WFI until the earliest sleeper's deadline or the idle poll; making a vCPU runnable sends
//! one of them the kick SGI, an asleep one first.

use alloc::boxed::Box;
use core::sync::atomic::Ordering;

use super::machine::{Vcpu, Vm};
use super::vgic;
use super::next::Next;
use super::parking;
use super::pause;
use super::state::Hyp;
use super::trap;
use super::irq;
use super::input;
use crate::arch::gic;
use crate::arch::vectors::{self, Exit};
use crate::arch::{cpu, hcr, timer, tlb};
use hyp::runq::VcpuId;
use hyp::stop::{Cause, Stop};

/// Time slice of a vCPU.
pub const SLICE_US: u64 = 10_000;
/// How long an idle CPU sleeps before looking at the queue again (a kick wakes it earlier).
const IDLE_POLL_US: u64 = 1_000;

/// Every physical CPU's loop; never returns (the last CPU to see every VM stopped ends the run).
pub fn run_cpu(h: &Hyp) -> ! {
    loop {
        input::poll(h, |vm, ids| wake(h, vm, ids));
        let due = h.queue.lock().wake_due(timer::now());
        if due != 0 {
            h.kick_idle();
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
    h.kick_idle();
}

/// Take the head of the queue, counting it as busy until [`put_back`]; a vCPU of a VM held at
/// its clone point is set aside instead (`pause.rs`).
fn take(h: &Hyp) -> Option<Box<Vcpu>> {
    loop {
        let v = h.queue.lock().pop()?;
        if !v.vm.pause.held() {
            h.busy.fetch_add(1, Ordering::AcqRel);
            return Some(v);
        }
        resume_all(h, pause::set_aside(h, v));
    }
}

/// Make every vCPU of a finished clone point runnable.
#[allow(clippy::vec_box)]
fn resume_all(h: &Hyp, vcpus: alloc::vec::Vec<Box<Vcpu>>) {
    for v in vcpus {
        make_runnable(h, v);
    }
}

/// Return a vCPU that stopped running, as `next` says.
fn put_back(h: &Hyp, v: Box<Vcpu>, next: Next) {
    match next {
        // Held at its VM's clone point: whatever it was to do next, it is set aside (`pause.rs`).
        Next::Resume | Next::Yield | Next::Start(_) | Next::Wake(_) | Next::Sleep { .. } | Next::Park | Next::WaitPage(_) if v.vm.pause.held() => {
            resume_all(h, pause::set_aside(h, v));
        }
        Next::Resume | Next::Yield | Next::Start(_) | Next::Wake(_) => make_runnable(h, v),
        Next::Sleep { until } => sleep(h, v, Some(until)),
        Next::Park => sleep(h, v, None),
        Next::WaitPage(page) => {
            let mut v = v;
            v.parked_on_page = true;
            h.waiters.add(page, v.id());
            let until = timer::now() + timer::us_to_ticks(parking::MAX_PARK_US);
            sleep(h, v, Some(until));
        }
        Next::Off => power_off(h, v),
        Next::Drop => drop(v),
    }
    h.busy.fetch_sub(1, Ordering::AcqRel);
}

/// Put `v` among the sleepers until `until` (or a wake-up). If its VM was held at a clone point
/// meanwhile, the round-up may have emptied the queue of its vCPUs before this one got there:
/// set the VM's queued vCPUs aside again (`pause.rs`), so none sleeps through the pause.
///
/// # Locks
/// Takes the run queue alone, then (after dropping it) what `pause::collect_queued` takes.
fn sleep(h: &Hyp, v: Box<Vcpu>, until: Option<u64>) {
    let vm = v.vm.clone();
    h.queue.lock().sleep(v, until);
    if vm.pause.held() {
        resume_all(h, pause::collect_queued(h, &vm));
    }
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
    } else if vm.pause.held() {
        resume_all(h, pause::powered_off(h, &vm));
    }
}

/// Run `v` for one time slice (or until it yields, sleeps, powers off or its VM stops).
fn run(h: &Hyp, v: &mut Vcpu) -> Next {
    if core::mem::take(&mut v.parked_on_page) {
        // Woken by the page or by its deadline: off the waiter list either way.
        h.waiters.forget(v.id());
    }
    if v.vm.is_stopped() {
        return Next::Drop;
    }
    // Stage 2 first, then the EL1 context (see `El2Controls::load`); this CPU may hold the
    // VM's TLB entries from here until `tlb::left`.
    let vmid = ::vm::pmap::Vmid(v.memory.vmid());
    tlb::entering(vmid);
    v.controls().load();
    v.el1.restore();
    v.slice_end = timer::now() + timer::us_to_ticks(SLICE_US);
    timer::arm_at(v.slice_end);
    let index = usize::from(v.index);
    // SeqCst, before the `held` check: a clone point's round-up either sees this vCPU running
    // (and kicks it) or this CPU sees the VM held (`pause.rs`).
    v.vm.running[index].store(cpu::index() + 1, Ordering::SeqCst);
    let next = loop {
        if v.vm.pause.held() {
            break Next::Resume;
        }
        // Reads the disk interrupted for are copied into their frames by an idle CPU when
        // there is one (kicked; `idle` polls): this one goes back to the guest at once.
        if super::swapdisk::take_interrupted() && h.idle_others() != 0 {
            h.kick_idle();
        } else {
            super::swapdisk::poll(&h.uvm);
        }
        before_entry(v);
        let exit = vectors::enter_guest(&mut v.regs);
        after_exit(v, &exit);
        // A periodic accounting pass is left to an idle CPU when there is one (it looks on
        // each pass, `idle`): here the guest would wait for it (`account.rs`).
        if h.idle_others() == 0 {
            h.account_tick();
        }
        let next = trap::handle(h, v, exit);
        if v.vm.is_stopped() {
            break Next::Drop;
        }
        let next = side_effects(h, v, next);
        if !next.resumes() {
            break next;
        }
    };
    v.vm.running[index].store(0, Ordering::Release);
    timer::disarm();
    v.el1.save();
    hcr::unload(vmid);
    tlb::left(vmid);
    next
}

/// Before each entry into the guest of a VM with a vGIC: its virtual interrupts into the list
/// registers (`vgic::load`), and the EL2 timer at the end of the slice or, earlier, when one of
/// the guest's timers fires (so its tick gets an exit to be delivered at). Without a vGIC the
/// timer armed for the slice in `run` stays as it is.
fn before_entry(v: &mut Vcpu) {
    if v.vm.gic.is_none() {
        return;
    }
    let vm = v.vm.clone();
    if let Some(gic) = &vm.gic {
        let deadline = vgic::load(gic, v);
        timer::arm_at(deadline.map_or(v.slice_end, |t| t.min(v.slice_end)));
    }
}

/// After each exit: the time of the exit (trace records' time and cost), and the list registers
/// folded back (`vgic::save`), so handlers see the whole interrupt state.
fn after_exit(v: &mut Vcpu, _exit: &Exit) {
    v.exit_time = timer::now();
    if v.vm.gic.is_none() {
        return;
    }
    let vm = v.vm.clone();
    if let Some(gic) = &vm.gic {
        vgic::save(gic, v);
    }
}

/// Do what a resuming handler of `v` asked for besides resuming: start or wake other vCPUs.
fn side_effects(h: &Hyp, v: &Vcpu, next: Next) -> Next {
    match next {
        Next::Start(vcpus) => {
            for v in vcpus {
                make_runnable(h, v);
            }
            Next::Resume
        }
        Next::Wake(ids) => {
            wake(h, &v.vm, &ids);
            Next::Resume
        }
        other => other,
    }
}

/// Make vCPUs `ids` of `vm` look at their interrupts now: a sleeping one is made runnable, one
/// running in a guest on another CPU is kicked out of it (its next entry loads them).
///
/// # Locks
/// Takes the run queue alone.
fn wake(h: &Hyp, vm: &Vm, ids: &[VcpuId]) {
    let asleep: alloc::vec::Vec<bool> = {
        let mut q = h.queue.lock();
        ids.iter().map(|id| q.wake(*id)).collect()
    };
    if asleep.contains(&true) {
        h.kick_idle();
    }
    let me = cpu::index();
    for (id, _) in ids.iter().zip(asleep).filter(|(_, woken)| !woken) {
        match vm.running.get(usize::from(id.index)).map(|r| r.load(Ordering::Acquire)) {
            Some(on) if on != 0 && on - 1 != me => gic::kick(on - 1),
            _ => {}
        }
    }
}

/// Nothing to run: start the readahead windows faults queued (`readahead.rs`), scan for
/// identical pages if the scenario runs the scanner and no other CPU is, free frames below the
/// high watermark (`pdaemon.rs`), else sleep until the idle poll, the earliest sleeper's deadline, or a kick.
fn idle(h: &Hyp) {
    // Announced for all of its idle work, not only the sleep: kicks (and the readahead windows
    // faults hand over, `readahead.rs`) then come here while it works.
    let me = 1usize << cpu::index();
    h.idle_cpus.fetch_or(me, Ordering::AcqRel);
    h.account_tick();
    super::swapdisk::poll(&h.uvm);
    if h.uvm.run_readaheads() != 0 || scan(h) || super::pdaemon::on_idle(h) {
        h.idle_cpus.fetch_and(!me, Ordering::AcqRel);
        return;
    }
    // A vCPU pushed before this CPU announced itself sent no kick: look once more.
    let (ready, earliest) = {
        let q = h.queue.lock();
        (q.has_ready(), q.earliest_deadline())
    };
    if !ready {
        let poll = timer::now() + timer::us_to_ticks(IDLE_POLL_US);
        timer::arm_at(poll.min(earliest.unwrap_or(u64::MAX)));
        h.asleep_cpus.fetch_or(me, Ordering::AcqRel);
        cpu::wfi();
        h.asleep_cpus.fetch_and(!me, Ordering::AcqRel);
    }
    h.idle_cpus.fetch_and(!me, Ordering::AcqRel);
    irq::drain();
    timer::disarm();
}

/// One tick of the dedup scanner on this idle CPU (`vm::dedup`, its pages-per-tick budget);
/// true if it looked at pages (then the CPU looks for vCPUs again instead of sleeping).
///
/// # Locks
/// Takes no hypervisor lock; the scanner takes the engine's (none is held here).
fn scan(h: &Hyp) -> bool {
    let Some((dedup, rate)) = &h.dedup else { return false };
    if h.scanning.swap(true, Ordering::Acquire) {
        return false;
    }
    let r = dedup.scan(*rate);
    h.scanning.store(false, Ordering::Release);
    let merged = h.merged_this_pass.fetch_add(r.merged as u64, Ordering::Relaxed) + r.merged as u64;
    if r.passes != 0 {
        h.merged_this_pass.store(0, Ordering::Relaxed);
        h.trace.dedup_pass(merged);
    }
    r.visited != 0
}
