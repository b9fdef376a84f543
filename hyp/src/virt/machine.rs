//! Virtual machines and virtual CPUs (the types; their life cycle is `state.rs`).
//!
//! A [`Vm`] is its [`Memory`] (a `vm::map::Map`, whose stage-2 table carries the VM's VMID), its
//! device bus, a console budget, and its vCPUs. Each vCPU holds the memory too (its fault path
//! needs no VM lock), so when the VM stops and drops its own reference ([`Vm::release_memory`]),
//! the map — entries, pages, stage-2 tables and root — goes back to the pool as the last vCPU is
//! dropped, and the VMID after it. What is left of a stopped VM is report data: its name, how it
//! stopped, its final counters.
//!
//! A [`Vcpu`] is plain data owned by whoever runs it: it moves by `Box` between the run queue,
//! a physical CPU, and its VM's `parked` slots (powered off), so no lock protects a vCPU's
//! registers and none is held while a guest runs.
//!
//! # Locks
//! Every lock here is a leaf: taken alone, for a copy, a swap or a push.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::Deref;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use spin::Mutex;

use super::device::{Device, VmView};
use super::out;
use crate::arch::hcr::El2Controls;
use crate::arch::timer;
use crate::arch::vcpu::El1Sysregs;
use crate::arch::vectors::GuestRegs;
use hyp::budget::LineBudget;
use hyp::bus::Bus;
use hyp::config::ClonePoint;
use hyp::console_in::InputQueue;
use hyp::exception::pstate;
use hyp::identity::{Identity, Lineage};
use hyp::pause::Pause;
use hyp::phase::Phase;
use hyp::inject::LoopDetector;
use hyp::platform::{MAX_VCPUS, RAM_BASE};
use hyp::ptimer::PhysTimer;
use hyp::vgic::Vgic;
use hyp::runq::{Queued, VcpuId};
use hyp::stop::Stop;
use hyp::vmid::VmidPool;
use vm::map::Map;
use vm::pmap::Stage2;
use vm::stats::StatsSnapshot;

/// A VM's memory: its map, and the VMID its stage 2 is tagged with, given back to the pool only
/// after the map (and with it the stage 2, whose drop invalidates the VMID's TLB entries) is
/// gone: fields drop in declaration order, `map` before `vmid`. Only `Arc<Memory>` is shared,
/// never the map's own `Arc`, so the map cannot outlive it.
pub struct Memory {
    map: Arc<Map>,
    vmid: VmidLease,
}

/// A VMID taken from the pool, freed when dropped.
pub struct VmidLease {
    pub vmid: u16,
    pool: &'static Mutex<VmidPool>,
}

impl VmidLease {
    /// The lowest free VMID, or `None` when every one is in use.
    ///
    /// # Locks
    /// Takes the pool's lock alone.
    pub fn take(pool: &'static Mutex<VmidPool>) -> Option<VmidLease> {
        let vmid = pool.lock().alloc()?;
        Some(VmidLease { vmid, pool })
    }
}

impl Drop for VmidLease {
    /// # Locks
    /// Takes the pool's lock alone.
    fn drop(&mut self) {
        self.pool.lock().free(self.vmid);
    }
}

impl Memory {
    pub fn new(map: Arc<Map>, vmid: VmidLease) -> Memory {
        Memory { map, vmid }
    }

    pub fn vmid(&self) -> u16 {
        self.vmid.vmid
    }

    /// The map's own `Arc`, for registrations that hold it weakly (the dedup scanner): only
    /// `Arc<Memory>` is ever kept strongly.
    pub fn map_arc(&self) -> &Arc<Map> {
        &self.map
    }
}

impl Deref for Memory {
    type Target = Map;
    fn deref(&self) -> &Map {
        &self.map
    }
}

/// What a VM is made of, besides its memory and devices.
pub struct Shape {
    pub name: String,
    pub ram_bytes: u64,
    pub image_bytes: u64,
    pub nr_vcpus: u16,
    /// Its time base: CNTVOFF_EL2, the physical counter value its virtual counter reads 0 at
    /// (when it was built; a clone keeps its parent's, so time goes on across the clone).
    pub time_base: u64,
    /// What it was cloned from (default: a VM of the scenario).
    pub lineage: Lineage,
    /// The scenario's clone point of a template (`hyp::pause`).
    pub clone_at: Option<ClonePoint>,
    /// The UVMHYP_PHASE it starts at (0; a clone its parent's: `hyp::phase`).
    pub phase: u64,
}

/// One guest.
pub struct Vm {
    /// Run-unique number (`vm<N>` in output and the trace; 1, 2, … in creation order).
    pub number: u16,
    pub name: String,
    /// The VM's memory, until it stops ([`Vm::release_memory`]).
    memory: Mutex<Option<Arc<Memory>>>,
    /// The map's counters when it was released.
    final_stats: Mutex<Option<StatsSnapshot>>,
    /// Guest RAM size in bytes (from [`RAM_BASE`]).
    pub ram_bytes: u64,
    /// Size of the guest image in bytes.
    pub image_bytes: u64,
    /// Number of vCPUs.
    pub nr_vcpus: u16,
    /// CNTVOFF_EL2 of its vCPUs ([`Shape::time_base`]).
    pub time_base: u64,
    /// The VM's devices.
    pub bus: Bus<Box<dyn Device>>,
    /// Its interrupt controller (VMs that boot Linux; `virt::vgic`).
    pub gic: Option<Mutex<Vgic>>,
    /// Physical CPU + 1 each vCPU is running on, 0 when it is not in a guest (who to kick).
    pub running: [AtomicUsize; MAX_VCPUS as usize],
    stopped: AtomicBool,
    state: Mutex<Option<Stop>>,
    /// Powered-off vCPUs, by index (`Some` = off and available to PSCI CPU_ON).
    pub parked: Mutex<Vec<Option<Box<Vcpu>>>>,
    /// vCPUs powered on (running, queued or being handled).
    pub online: AtomicU32,
    /// Rate limit of the VM's console lines (PRINT and PL011).
    budget: Mutex<LineBudget>,
    /// Host console input its UART has no room for yet (`virt::input`).
    pub input: Mutex<InputQueue>,
    /// MMIO accesses to unknown device registers (read 0 / write ignored).
    pub mmio_unknown: AtomicU64,
    /// Set once the first unknown MMIO access has been logged.
    pub mmio_logged: AtomicBool,
    /// Its identity registers' values (`virt::identity`).
    pub identity: Identity,
    /// The scenario's clone point and the rendezvous of its vCPUs there (`virt::pause`).
    pub pause: Pause<Box<Vcpu>>,
    /// How far its guest has got in the run's rendezvous (UVMHYP_PHASE, `hyp::phase`).
    pub phase: Phase,
}

impl Vm {
    pub fn new(number: u16, shape: Shape, memory: Arc<Memory>, bus: Bus<Box<dyn Device>>, gic: Option<Vgic>) -> Arc<Vm> {
        let pause = match shape.clone_at {
            Some(c) => Pause::new(Some(c.at), c.children),
            None => Pause::new(None, 0),
        };
        Arc::new(Vm {
            identity: Identity::new(shape.lineage),
            pause,
            number,
            name: shape.name,
            memory: Mutex::new(Some(memory)),
            final_stats: Mutex::new(None),
            ram_bytes: shape.ram_bytes,
            image_bytes: shape.image_bytes,
            nr_vcpus: shape.nr_vcpus,
            time_base: shape.time_base,
            bus,
            gic: gic.map(Mutex::new),
            running: [const { AtomicUsize::new(0) }; MAX_VCPUS as usize],
            stopped: AtomicBool::new(false),
            state: Mutex::new(None),
            parked: Mutex::new(Vec::new()),
            online: AtomicU32::new(0),
            budget: Mutex::new(LineBudget::new()),
            input: Mutex::new(InputQueue::default()),
            mmio_unknown: AtomicU64::new(0),
            mmio_logged: AtomicBool::new(false),
            phase: Phase::new(shape.phase),
        })
    }

    /// The VM's memory, or `None` once it stopped and released it.
    ///
    /// # Locks
    /// Takes the `memory` slot's lock alone, for the clone.
    pub fn memory(&self) -> Option<Arc<Memory>> {
        self.memory.lock().clone()
    }

    /// The map's counters: live while the VM runs, as they were at release after.
    pub fn stats(&self) -> StatsSnapshot {
        match self.memory() {
            Some(m) => m.stats().snapshot(),
            None => (*self.final_stats.lock()).unwrap_or_default(),
        }
    }

    /// Drop the VM's own reference to its memory after keeping its counters (the VM stopped:
    /// the map is freed once its vCPUs are dropped too).
    ///
    /// # Locks
    /// Takes `memory`, then `final_stats`, each alone.
    pub fn release_memory(&self) {
        let memory = self.memory.lock().take();
        if let Some(m) = memory {
            *self.final_stats.lock() = Some(m.stats().snapshot());
        }
    }

    /// True when `ipa` is in the VM's RAM window `[RAM_BASE, RAM_BASE + ram_bytes)`.
    pub fn in_ram(&self, ipa: vm::Ipa) -> bool {
        ipa.0.checked_sub(RAM_BASE).is_some_and(|off| off < self.ram_bytes)
    }

    /// True once the VM exited or crashed: its vCPUs are dropped at their next exit.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Mark the VM stopped. Returns true for the first caller (who reports it and releases
    /// it); later calls are ignored.
    ///
    /// # Locks
    /// Takes `state` alone.
    pub fn stop(&self, why: Stop) -> bool {
        let mut st = self.state.lock();
        if st.is_some() {
            return false;
        }
        *st = Some(why);
        self.stopped.store(true, Ordering::Release);
        true
    }

    /// How the VM stopped, if it did.
    pub fn stopped_state(&self) -> Option<Stop> {
        self.state.lock().clone()
    }

    /// Console lines dropped by the budget so far.
    pub fn dropped_lines(&self) -> u64 {
        self.budget.lock().dropped()
    }
}

impl VmView for Vm {
    fn number(&self) -> u16 {
        self.number
    }

    /// Print one guest console line (`[vm<N>] text`), unless the VM is over its console budget
    /// (then the line is dropped and counted).
    ///
    /// # Locks
    /// Takes `budget` alone, and prints with no lock held (a semihosting call takes
    /// milliseconds).
    fn print_line(&self, text: &[u8]) {
        if self.pause.on_line(text, timer::now()) {
            log::info!("virt: vm{} reached its clone point: pausing it", self.number);
        }
        let ok = self.budget.lock().take(timer::now(), timer::freq());
        if ok {
            out::guest_line(self.number, text);
        }
    }

    fn gic(&self) -> Option<&Mutex<Vgic>> {
        self.gic.as_ref()
    }

    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn input(&self) -> &Mutex<InputQueue> {
        &self.input
    }
}

/// VMPIDR_EL2 for vCPU `index`: Aff0 = index, bit 31 RES1 (multiprocessor format).
fn vmpidr(index: u16) -> u64 {
    const MPIDR_RES1: u64 = 1 << 31;
    MPIDR_RES1 | u64::from(index & 0xff)
}

/// One virtual CPU of a VM.
pub struct Vcpu {
    pub vm: Arc<Vm>,
    /// The VM's memory (a reference of this vCPU's own: see the module comment).
    pub memory: Arc<Memory>,
    pub index: u16,
    pub regs: GuestRegs,
    pub el1: El1Sysregs,
    /// Nested-abort loop detection of injected exceptions.
    pub inject_loop: LoopDetector,
    /// The physical counter when the vCPU last exited the guest (trace records' time and cost).
    pub exit_time: u64,
    /// The physical counter value at which its time slice ends (`run.rs`).
    pub slice_end: u64,
    /// List registers `vgic::load` filled for this entry.
    pub lrs_loaded: usize,
    /// Its EL1 physical timer (emulated: `hyp::ptimer`).
    pub ptimer: PhysTimer,
    /// It parked on a BUSY page and may still be on the waiter list (`parking.rs`).
    pub parked_on_page: bool,
}

impl Queued for Box<Vcpu> {
    fn id(&self) -> VcpuId {
        Vcpu::id(self)
    }
}

impl Vcpu {
    /// A powered-off vCPU in its reset state.
    pub fn new(vm: Arc<Vm>, memory: Arc<Memory>, index: u16) -> Box<Vcpu> {
        Box::new(Vcpu { vm, memory, index, regs: GuestRegs::zeroed(), el1: El1Sysregs::reset(), inject_loop: LoopDetector::new(), exit_time: 0, slice_end: 0, lrs_loaded: 0, ptimer: PhysTimer::default(), parked_on_page: false })
    }

    /// The VM's map.
    pub fn map(&self) -> &Map {
        &self.memory
    }

    pub fn id(&self) -> VcpuId {
        VcpuId { vm: self.vm.number, index: self.index }
    }

    /// EL2 controls of this vCPU.
    pub fn controls(&self) -> El2Controls {
        El2Controls {
            vttbr_el2: self.memory.stage2().vttbr(),
            vtcr_el2: Stage2::VTCR_EL2,
            vmpidr_el2: vmpidr(self.index),
            cntvoff_el2: self.vm.time_base,
        }
    }

    /// Reset to power on at `entry` with x0 = `context`: EL1h, MMU off, DAIF masked.
    pub fn power_on(&mut self, entry: u64, context: u64) {
        self.regs = GuestRegs::zeroed();
        self.regs.x[0] = context;
        self.regs.elr_el2 = entry;
        self.regs.spsr_el2 = pstate::MODE_EL1H | pstate::DAIF;
        self.el1 = El1Sysregs::reset();
        self.inject_loop = LoopDetector::new();
        self.ptimer = PhysTimer::default();
    }
}
