//! Virtualization: VMs, vCPUs, traps, scheduling. (VIRT HELPER owns this directory.)
//!
//! - [`start`] (CPU 0, once): builds the shared `vm::uvm::Uvm` over the page pool with the real
//!   `PhysMem`/`Tlb`, one `ImageObject` per distinct guest image, one `Map` per VM with its RAM
//!   entries (contracts §A), the vCPUs, and opens the trace.
//! - [`cpu_main`] (every CPU): installs the EL2 vectors and runs vCPUs from the global run queue
//!   ([`sched`]) until every VM has stopped; then one CPU prints the report and ends QEMU.
//!
//! Trap path: `arch::vectors::enter_guest` returns an exit → [`trap::handle`] → one module per
//! exception class: [`abort`] (stage-2 aborts → `vm::fault`, MMIO via [`mmio`], SEA injection),
//! [`hvc`] (+ [`psci`]), WFI/WFE (yield), anything else → undefined instruction ([`inject`]).
//!
//! EL2 runs with every interrupt masked; physical IRQs only arrive as guest exits (HCR_EL2.IMO).
//!
//! # Lock order
//! MAP (engine locks, inside `vm::fault`) → VM `state`/`parked`/`console` → run queue → trace
//! buffer → trace file. No lock is held across guest entry.

mod abort;
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

use crate::arch::physmem::IdentityMem;
use crate::arch::tlb::HwTlb;
use crate::arch::{cpu, semihosting, vectors};
use hyp::config::Config;
use ::vm::map::{Advice, EntrySpec, Inherit, Map};
use ::vm::object::{ImageObject, Object};
use ::vm::pmap::Vmid;
use ::vm::uvm::Uvm;
use ::vm::{Ipa, Pa, Prot, PAGE_SIZE};
use inject::Injection;
use out::outln;
use vm::{Stopped, Vcpu, Vm};

/// Guest RAM starts here in every VM (QEMU virt's layout).
pub const RAM_BASE: u64 = 0x4000_0000;

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
    /// Stop `vm` (first call wins), report it, release its RAM, and tell the caller to drop its
    /// vCPU.
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
            // Give the VM's pages back to the pool for the VMs still running. A vCPU of this VM
            // still in a guest elsewhere re-faults at worst, and is dropped at that exit.
            if let Err(e) = vm.map.remove(Ipa(RAM_BASE), Ipa(RAM_BASE + vm.ram_bytes)) {
                log::warn!("vm{}: cannot release its RAM: {e:?}", vm.id);
            }
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

/// Why a VM could not be built (a hypervisor configuration error: the run cannot start).
#[derive(Debug)]
enum BuildError {
    /// The engine refused a map or one of its entries.
    Map { vm: usize, error: ::vm::map::MapError },
}

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BuildError::Map { vm, error } => write!(f, "vm{vm}: map: {error:?}"),
        }
    }
}

/// Build every VM of `config` over the page pool `pool`. Called once, on CPU 0, before any
/// `cpu_main`.
pub fn start(config: Config, pool: Range<Pa>) {
    HYP.call_once(|| build(&config, pool).unwrap_or_else(|e| panic!("cannot build the VMs: {e}")));
}

fn build(config: &Config, pool: Range<Pa>) -> Result<Hyp, BuildError> {
    outln!("uvmhyp: trace -> {}", config.trace_path);
    let trace = trace::Trace::open(&config.trace_path);
    let mem = Arc::new(IdentityMem::new(pool.clone()));
    let tlb = Arc::new(HwTlb::new());
    let uvm = Uvm::new(mem, tlb.clone(), pool.clone());
    log::info!(
        "virt: page pool {}..{} ({} MiB), {} VM(s)",
        pool.start,
        pool.end,
        (pool.end.0 - pool.start.0) >> 20,
        config.vms.len()
    );

    let mut images: Vec<(Arc<[u8]>, Arc<ImageObject>)> = Vec::new();
    let mut vms = Vec::new();
    let mut runq = VecDeque::new();
    for (i, vc) in config.vms.iter().enumerate() {
        let id = (i + 1) as u16;
        let object = match images.iter().find(|(b, _)| Arc::ptr_eq(b, &vc.image)) {
            Some((_, o)) => o.clone(),
            None => {
                let o = ImageObject::new(&uvm, vc.image.clone());
                images.push((vc.image.clone(), o.clone()));
                o
            }
        };
        let map_err = |error| BuildError::Map { vm: usize::from(id), error };
        let map = Map::new(&uvm, Vmid(id)).map_err(map_err)?;
        tlb.register(map.stage2());
        let image_len = vc.image.len() as u64;
        let image_end = RAM_BASE + image_len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let ram_end = RAM_BASE + vc.ram_bytes;
        let object: Arc<dyn Object> = object;
        map.insert(EntrySpec {
            start: Ipa(RAM_BASE),
            end: Ipa(image_end),
            prot: Prot::ALL,
            max_prot: Prot::ALL,
            inherit: Inherit::Copy,
            advice: Advice::Normal,
            object: Some((object, 0)),
            anon: true,
            copy_on_write: true,
        })
        .map_err(map_err)?;
        if image_end < ram_end {
            map.insert(EntrySpec {
                start: Ipa(image_end),
                end: Ipa(ram_end),
                prot: Prot::ALL,
                max_prot: Prot::ALL,
                inherit: Inherit::Copy,
                advice: Advice::Normal,
                object: None,
                anon: true,
                copy_on_write: false,
            })
            .map_err(map_err)?;
        }
        let nr = vc.cpus as u16;
        let vm = Vm::new(id, vc.name.clone(), map, vc.ram_bytes, image_len, nr);
        {
            let mut parked = vm.parked.lock();
            for idx in 0..nr {
                parked.push(if idx == 0 { None } else { Some(Vcpu::new(vm.clone(), idx)) });
            }
        }
        let mut boot = Vcpu::new(vm.clone(), 0);
        boot.power_on(vc.entry.0, 0);
        vm.online.store(1, Ordering::Release);
        runq.push_back(boot);
        log::info!(
            "virt: vm{id} ({}) {} MiB RAM, image {} bytes, {} vCPU(s), entry {:#x}",
            vc.name,
            vc.ram_bytes >> 20,
            image_len,
            nr,
            vc.entry.0
        );
        vms.push(vm);
    }
    Ok(Hyp {
        vms,
        uvm,
        trace,
        runq: Mutex::new(runq),
        sleepers: Mutex::new(Vec::new()),
        idle_cpus: AtomicUsize::new(0),
        busy: AtomicUsize::new(0),
        stopped: AtomicUsize::new(0),
        finished: AtomicBool::new(false),
    })
}

/// Every physical CPU, after boot: run vCPUs until the end of the run. Installs the EL2 vectors
/// itself (BOOT need not).
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
