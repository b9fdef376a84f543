//! The hypervisor's global state ([`Hyp`]): the VM table, the engine, the trace, the run queue;
//! and the VM life cycle — a VM is added when built (at boot, later by clone), and stopped once
//! ([`Hyp::stop_vm`]), after which it is report data. The table grows while the hypervisor runs;
//! the run ends when no VM is live, however many there were.
//!
//! # Locks
//! **No hypervisor lock is held while calling into the engine (`vm::`)**, and no lock at all
//! across guest entry. The hypervisor's own locks — the VM table, the run queue, the VMID pool,
//! a VM's `state`, `parked`, `memory`, `budget`, a device's own state — are leaves: each is
//! taken alone (one pair nests: a PL011's state, then its VM's `input` queue, `virt::pl011`), for a push, a pop or a copy, and dropped before anything else is locked
//! (`stop_vm` takes them one after the other, then calls `Map::remove` with none held). The
//! trace takes a CPU's buffer, then the file (buffer → file). The engine's order (MAPS → AMAP →
//! OBJECT → ANON → PMAP → PAGE → PAGE QUEUES) is documented in `vm`.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use spin::Mutex;

use super::device::{Ctx, HypView};
use super::device::Device;
use super::machine::{Memory, Shape, Vcpu, Vm};
use super::next::Next;
use super::parking::Waiters;
use super::account::Accountant;
use super::report;
use super::trace::Trace;
use crate::arch::{cpu, gic, semihosting, timer};
use ::vm::dedup::Dedup;
use ::vm::uvm::Uvm;
use ::vm::Ipa;
use hyp::bus::Bus;
use hyp::console_in::Focus;
use hyp::platform::RAM_BASE;
use hyp::runq::{RunQueue, VcpuId};
use hyp::stop::Stop;
use hyp::vgic::Vgic;
use hyp::vmid::VmidPool;
use vm::trace::StopStatus;

/// VMIDs of live VMs (`hyp::vmid`; a VM's `Memory` gives its id back).
pub static VMIDS: Mutex<VmidPool> = Mutex::new(VmidPool::new());

/// Global hypervisor state (built once by `build.rs`).
pub struct Hyp {
    /// Every VM of the run, in creation order; a stopped one only as report data.
    vms: Mutex<Vec<Arc<Vm>>>,
    pub uvm: Arc<Uvm>,
    pub trace: Trace,
    /// Runnable and sleeping vCPUs (`hyp::runq`).
    pub queue: Mutex<RunQueue<Box<Vcpu>>>,
    /// vCPUs parked on BUSY pages (`parking.rs`).
    pub waiters: Waiters,
    /// The content-dedup scanner and its pages per tick, if the scenario runs it (`dedup.rs`).
    pub dedup: Option<(Dedup, usize)>,
    /// A CPU is scanning (one at a time: the scanner holds its lock for the whole call).
    pub scanning: AtomicBool,
    /// Pages merged in the scanner's current pass (for its trace event).
    pub merged_this_pass: AtomicU64,
    /// Bit i: physical CPU i is in its idle loop, working (readahead, scanner, pagedaemon) or
    /// asleep: it will look for queued work soon.
    pub idle_cpus: AtomicUsize,
    /// Bit i: physical CPU i is asleep in WFI (a subset of `idle_cpus`).
    pub asleep_cpus: AtomicUsize,
    /// vCPUs taken from the queue and not yet returned.
    pub busy: AtomicUsize,
    /// VMs added and not yet stopped.
    live: AtomicUsize,
    /// The next VM number.
    numbers: AtomicU16,
    /// Memory accounting passes and what the report keeps of them (`account.rs`).
    pub account: Accountant,
    finished: AtomicBool,
    /// Which VM host console input goes to (`virt::input`).
    pub focus: Mutex<Focus>,
}

impl Hyp {
    /// Send the kick SGI to one idle CPU other than this one, if there is one: an asleep one
    /// first (a working one may be busy for a scanner tick); it announces itself in
    /// `idle_cpus` and `asleep_cpus` (`run.rs`).
    pub fn kick_idle(&self) {
        if !self.kick_asleep() {
            let idle = self.idle_others();
            if idle != 0 {
                gic::kick(idle.trailing_zeros() as usize);
            }
        }
    }

    /// Send the kick SGI to one CPU other than this one that is asleep in WFI, if there is one;
    /// true if one was kicked. For work an idle CPU looks for each time round (`run.rs`): one
    /// that is working through its idle work finds it without an SGI.
    pub fn kick_asleep(&self) -> bool {
        let asleep = self.asleep_cpus.load(Ordering::Acquire) & !(1 << cpu::index());
        if asleep != 0 {
            gic::kick(asleep.trailing_zeros() as usize);
        }
        asleep != 0
    }

    /// The idle CPUs other than this one, as a mask.
    pub fn idle_others(&self) -> usize {
        self.idle_cpus.load(Ordering::Acquire) & !(1 << cpu::index())
    }

    pub fn new(uvm: Arc<Uvm>, trace: Trace, dedup: Option<(Dedup, usize)>) -> Hyp {
        Hyp {
            dedup,
            scanning: AtomicBool::new(false),
            merged_this_pass: AtomicU64::new(0),
            vms: Mutex::new(Vec::new()),
            uvm,
            trace,
            queue: Mutex::new(RunQueue::default()),
            waiters: Waiters::default(),
            idle_cpus: AtomicUsize::new(0),
            asleep_cpus: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            numbers: AtomicU16::new(1),
            account: Accountant::new(),
            finished: AtomicBool::new(false),
            focus: Mutex::new(Focus::default()),
        }
    }

    /// Add a built VM to the table (it counts as live until it stops).
    ///
    /// # Locks
    /// Takes the VM table alone.
    fn add_vm(&self, vm: Arc<Vm>) {
        self.live.fetch_add(1, Ordering::AcqRel);
        self.vms.lock().push(vm);
    }

    /// Make a VM of `shape` over `memory` with `bus` and `gic` (a new VM at boot, or a clone):
    /// its number, its start in the trace, the dedup scanner's view of it (`scanned`), its
    /// vCPUs — all powered off in its `parked` slots but vCPU `running`, which is returned to be
    /// given its registers and made runnable — and its place in the VM table.
    ///
    /// # Locks
    /// Takes the dedup scanner's lock, the VM's `parked` and the VM table, each alone.
    pub fn create_vm(&self, shape: Shape, memory: Arc<Memory>, bus: Bus<Box<dyn Device>>, gic: Option<Vgic>, running: u16, scanned: bool) -> (Arc<Vm>, Box<Vcpu>) {
        let number = self.numbers.fetch_add(1, Ordering::Relaxed);
        let vm = Vm::new(number, shape, memory.clone(), bus, gic);
        self.trace.vm_started(number, memory.vmid());
        if let (true, Some((d, _))) = (scanned, &self.dedup) {
            d.enable_map(memory.map_arc());
        }
        {
            let mut parked = vm.parked.lock();
            for idx in 0..vm.nr_vcpus {
                parked.push((idx != running).then(|| Vcpu::new(vm.clone(), memory.clone(), idx)));
            }
        }
        let vcpu = Vcpu::new(vm.clone(), memory, running);
        vm.online.store(1, Ordering::Release);
        self.add_vm(vm.clone());
        (vm, vcpu)
    }

    /// A copy of the VM table.
    pub fn vms(&self) -> Vec<Arc<Vm>> {
        self.vms.lock().clone()
    }

    /// Stop `vm` (first call wins), report it, release its RAM and its memory (stage 2
    /// included), and tell the caller to drop its vCPU.
    ///
    /// # Locks
    /// Call with no lock held (takes the VM's `state`, each device's state, `parked`, the run
    /// queue, each alone, then the engine's map lock through `Map::remove`).
    pub fn stop_vm(&self, vm: &Arc<Vm>, why: Stop) -> Next {
        if !vm.stop(why.clone()) {
            return Next::Drop;
        }
        let cx = Ctx { hyp: self, vm: &**vm, vcpu: VcpuId { vm: vm.number, index: 0 } };
        for (_, d) in vm.bus.iter() {
            d.stop(&cx);
        }
        report::vm_stopped(vm, &why);
        let acc = self.account_now();
        self.account.stopped(vm.number, &acc);
        self.account.record(&self.trace, &acc);
        let status = match &why {
            Stop::Exited(s) => StopStatus::Exited(*s),
            Stop::Crashed(_) => StopStatus::Crashed,
            Stop::Reset => StopStatus::Reset,
        };
        self.trace.vm_stopped(vm.number, status);
        // Powered-off vCPUs hold an `Arc<Vm>` inside `vm.parked` (a cycle), and queued or
        // sleeping ones would run only to be dropped: drop them all now.
        drop(core::mem::take(&mut *vm.parked.lock()));
        // And vCPUs set aside at a clone point (later arrivals see the VM stopped: `hyp::pause`).
        drop(vm.pause.drain());
        let queued = self.queue.lock().take_vm(vm.number);
        drop(queued);
        // Its claim on the pool goes (reported with what it held), so the others' grow.
        if let Some(memory) = vm.memory() {
            let vmid = ::vm::pmap::Vmid(memory.vmid());
            if let Some(s) = self.uvm.shares().standings(self.uvm.total_pages()).iter().find(|s| s.vmid == vmid) {
                report::share_at_stop(vm, s);
            }
            self.uvm.shares().leave(vmid);
        }
        // Give the VM's pages back to the pool for the VMs still running. A vCPU of this VM still
        // in a guest elsewhere re-faults at worst, and is dropped at that exit.
        if let Some(memory) = vm.memory() {
            if let Err(e) = memory.remove(Ipa(RAM_BASE), Ipa(RAM_BASE + vm.ram_bytes)) {
                log::warn!("vm{}: cannot release its RAM: {e:?}", vm.number);
            }
        }
        // Then the memory itself: its stage-2 tables, root and VMID go when the last vCPU holding
        // it is dropped (at once unless one is still in a guest elsewhere). TLB maintenance
        // never walks it (it loads the empty root, `hyp::vttbr`).
        vm.release_memory();
        self.live.fetch_sub(1, Ordering::AcqRel);
        Next::Drop
    }

    /// A memory accounting pass over every VM that has memory (`account.rs`).
    ///
    /// # Locks
    /// Call with no lock held: takes the dedup scanner's lock alone (its zero anons), the VM
    /// table alone, then the engine's locks.
    pub fn account_now(&self) -> ::vm::account::Account {
        let zero = self.dedup.as_ref().map(|(d, _)| d.zero_anons()).unwrap_or_default();
        self.account.pass(&self.uvm, &zero, &self.vms())
    }

    /// The periodic accounting pass, if one is due (after each guest exit and idle tick).
    ///
    /// # Locks
    /// As [`Hyp::account_now`] when due; nothing otherwise.
    pub fn account_tick(&self) {
        if self.account.due(timer::now()) {
            let acc = self.account_now();
            self.account.record(&self.trace, &acc);
            self.account.done();
        }
    }

    /// No VM is live.
    pub fn all_stopped(&self) -> bool {
        self.live.load(Ordering::Acquire) == 0
    }

    /// Print the report, flush the trace, and exit QEMU (once).
    pub fn finish(&self) {
        if self.finished.swap(true, Ordering::AcqRel) {
            return;
        }
        log::info!("virt: {} of {} pool pages free at exit", self.uvm.free_pages(), self.uvm.total_pages());
        let vms = self.vms();
        for vm in &vms {
            let dropped = vm.dropped_lines();
            if dropped != 0 {
                log::warn!("vm{}: {dropped} console lines dropped (over the console budget)", vm.number);
            }
            let lost = vm.input.lock().dropped();
            if lost != 0 {
                log::warn!("vm{}: {lost} input bytes dropped (its input queue was full)", vm.number);
            }
        }
        let acc = self.account_now();
        self.account.record(&self.trace, &acc);
        self.account.print_summary();
        let failed = report::table(&vms, &self.account.rows(&vms), self.uvm.swap().map(|_| self.uvm.daemon_stats()));
        self.trace.finish();
        semihosting::exit(if failed == 0 { 0 } else { 1 });
    }
}

impl HypView for Hyp {
    fn now(&self) -> u64 {
        timer::now()
    }
}
