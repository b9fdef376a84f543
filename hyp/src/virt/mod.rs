//! Virtualization: VMs, vCPUs, traps, scheduling.
//!
//! - [`start`] (CPU 0, once): [`build`]s the engine, the VMs and the trace from the scenario.
//! - [`cpu_main`] (every CPU): installs the EL2 vectors and runs vCPUs from the global run queue
//!   ([`sched`]) until every VM has stopped; then one CPU prints the report and ends QEMU.
//! - [`Hyp`]: the global state, and the stop policy ([`Hyp::stop_vm`], [`Hyp::inject`]).
//!
//! Trap path: `arch::vectors::enter_guest` returns an exit → [`trap::handle`] → one module per
//! exception class: [`abort`] (stage-2 aborts → `vm::fault`, MMIO via [`mmio`], SEA injection),
//! [`hvc`] (+ [`psci`]), [`sysreg`] (trapped PMU/debug registers), WFI/WFE ([`sched::wait`]),
//! anything else → undefined instruction ([`inject`]).
//!
//! EL2 runs with every interrupt masked; physical IRQs only arrive as guest exits (HCR_EL2.IMO).
//!
//! # Locks
//! The rule is simple: **no VM lock is held while calling into the engine (`vm::`)**, and no
//! lock at all across guest entry. The hypervisor's own locks — a VM's `state`, `parked`,
//! `console` and `budget`, the run queue, the sleepers — are leaves: each is taken alone, for a
//! push, a pop or a copy, and dropped before anything else is locked (`stop_vm` takes `state`,
//! then `console`, `parked`, the sleepers, each alone, then calls `Map::remove` with none held,
//! then the VM's `map` and `final_stats` slots, each alone). The trace takes a CPU's buffer,
//! then the file (buffer → file). The engine's own order (MAPS → AMAP → … → PAGE QUEUES) is
//! documented in `vm`.

mod abort;
mod build;
mod hvc;
mod inject;
mod mmio;
pub mod out;
mod pl011;
mod psci;
mod report;
mod sched;
mod sysreg;
mod trace;
mod trap;
mod vm;

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use spin::{Mutex, Once};

use crate::arch::{cpu, semihosting, vectors};
use ::vm::uvm::Uvm;
use ::vm::{Ipa, Pa};
use hyp::config::Config;
use hyp::loader::RAM_BASE;
use inject::Injection;
use vm::{Stopped, Vcpu, Vm};

/// What a trap handler wants next for its vCPU.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Next {
    /// Re-enter the guest.
    Resume,
    /// Give up the physical CPU; back to the tail of the run queue.
    Yield,
    /// WFI: sleep until the system counter reaches `until` (see `sched`).
    Sleep { until: u64 },
    /// PSCI CPU_OFF: park the vCPU until a CPU_ON.
    Off,
    /// The VM stopped: drop the vCPU.
    Drop,
}

/// Global hypervisor state (built once by [`start`]).
pub struct Hyp {
    /// Every VM of the run; a stopped one only as report data (its map is released).
    pub vms: Vec<Arc<Vm>>,
    pub uvm: Arc<Uvm>,
    pub trace: trace::Trace,
    pub runq: Mutex<VecDeque<Box<Vcpu>>>,
    /// vCPUs waiting in WFI, with the counter value they wake at.
    pub sleepers: Mutex<Vec<(u64, Box<Vcpu>)>>,
    /// Bit i: physical CPU i is idle in WFI (kick it when there is work).
    pub idle_cpus: AtomicUsize,
    /// vCPUs taken from the queue and not yet returned.
    pub busy: AtomicUsize,
    stopped: AtomicUsize,
    finished: AtomicBool,
}

static HYP: Once<Hyp> = Once::new();

impl Hyp {
    /// Stop `vm` (first call wins), report it, release its RAM and its map (stage 2 included),
    /// and tell the caller to drop its vCPU.
    ///
    /// # Locks
    /// Call with no lock held (takes the VM's `state` and `console`, then the engine's map lock).
    pub fn stop_vm(&self, vm: &Arc<Vm>, why: Stopped) -> Next {
        if vm.stop(why.clone()) {
            let line = core::mem::take(&mut *vm.console.lock());
            if !line.is_empty() {
                vm.print_line(&line);
            }
            report::vm_stopped(vm, &why);
            trace::vm_stopped(self, vm, &why);
            // Powered-off vCPUs hold an `Arc<Vm>` inside `vm.parked` (a cycle) and sleepers
            // would wake only to be dropped: drop both now.
            let parked = core::mem::take(&mut *vm.parked.lock());
            drop(parked);
            let asleep: Vec<Box<Vcpu>> = {
                let mut s = self.sleepers.lock();
                let (mine, others) = core::mem::take(&mut *s).into_iter().partition(|(_, v)| Arc::ptr_eq(&v.vm, vm));
                *s = others;
                mine.into_iter().map(|(_, v)| v).collect()
            };
            drop(asleep);
            // Give the VM's pages back to the pool for the VMs still running. A vCPU of this VM
            // still in a guest elsewhere re-faults at worst, and is dropped at that exit.
            if let Some(map) = vm.map() {
                if let Err(e) = map.remove(Ipa(RAM_BASE), Ipa(RAM_BASE + vm.ram_bytes)) {
                    log::warn!("vm{}: cannot release its RAM: {e:?}", vm.id);
                }
            }
            // Then the map itself: its stage-2 tables, root and VMID go when the last vCPU
            // holding it is dropped (at once unless one is still in a guest elsewhere). TLB
            // maintenance never walks it (it loads the empty root, `hyp::vttbr`).
            vm.release_map();
            self.stopped.fetch_add(1, Ordering::AcqRel);
        }
        Next::Drop
    }

    /// Inject `what` into the loaded vCPU; if it cannot be delivered, the VM crashes.
    pub fn inject(&self, v: &mut Vcpu, what: Injection) -> Next {
        match inject::inject(v, what) {
            Ok(()) => Next::Resume,
            Err(reason) => {
                let vm = v.vm.clone();
                self.stop_vm(&vm, Stopped::Crashed(reason))
            }
        }
    }

    fn all_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire) == self.vms.len()
    }

    /// Print the report, flush the trace, and exit QEMU (once).
    fn finish(&self) {
        if self.finished.swap(true, Ordering::AcqRel) {
            return;
        }
        log::info!(
            "virt: {} of {} pool pages free at exit",
            self.uvm.free_pages(),
            self.uvm.total_pages()
        );
        for vm in &self.vms {
            let dropped = vm.dropped_lines();
            if dropped != 0 {
                log::warn!("vm{}: {dropped} console lines dropped (over the console budget)", vm.id);
            }
        }
        let failed = report::table(&self.vms);
        self.trace.finish();
        semihosting::exit(if failed == 0 { 0 } else { 1 });
    }
}

/// Build every VM of `config` over the page pool `pool`. Called once, on CPU 0, before any
/// `cpu_main`.
pub fn start(config: Config, pool: Range<Pa>) {
    HYP.call_once(|| build::build(&config, pool).unwrap_or_else(|e| panic!("cannot build the VMs: {e}")));
}

/// Every physical CPU, after boot: run vCPUs until the end of the run. Installs the EL2 vectors
/// and the per-CPU EL2 controls itself (boot only installs its boot vectors).
pub fn cpu_main(cpu: usize) -> ! {
    vectors::install();
    cpu::mask_interrupts();
    crate::arch::hcr::init_cpu();
    let h = HYP.wait();
    log::debug!("virt: cpu{cpu} scheduling");
    if h.vms.is_empty() {
        h.finish();
    }
    sched::run_cpu(h)
}
