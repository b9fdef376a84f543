//! Virtual machines and virtual CPUs.
//!
//! A [`Vm`] is a `vm::map::Map` (whose stage-2 table carries the VM's VMID = its id), a console
//! line buffer, and its vCPUs. Each vCPU holds the map too (its fault path needs no VM lock), so
//! when the VM stops and drops its own reference ([`Vm::release_map`]), the map — its entries,
//! pages, stage-2 tables and root — goes back to the pool as the last vCPU is dropped. What is
//! left of a stopped VM is report data: its name, how it stopped, its final counters. A [`Vcpu`] is plain data owned by whoever runs it: it moves by
//! `Box` between the run queue, a physical CPU, and its VM's `parked` slots (powered off), so no
//! lock protects a vCPU's registers and none is held while a guest runs.
//!
//! # Locks
//! `Vm::state` and `Vm::parked` are leaves (never held while taking another lock, except that
//! `stop` takes `state` alone). The run queue lock is never held with a VM lock.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use spin::Mutex;

use super::out;
use crate::arch::timer;
use crate::arch::hcr::El2Controls;
use crate::arch::vcpu::{pstate, El1Sysregs};
use hyp::budget::LineBudget;
use hyp::inject::LoopDetector;
use hyp::loader::RAM_BASE;
use crate::arch::vectors::GuestRegs;
use vm::map::Map;
use vm::pmap::Stage2;
use vm::stats::StatsSnapshot;

/// Why a VM is no longer running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// UVMHYP_EXIT or PSCI SYSTEM_OFF with this status.
    Exited(u32),
    /// The hypervisor stopped it (guest bug or resource failure); the reason is reported.
    Crashed(String),
}

/// One guest.
pub struct Vm {
    /// VM id (1, 2, …); also its VMID.
    pub id: u16,
    pub name: String,
    /// The VM's memory, until it stops ([`Vm::release_map`]).
    map: Mutex<Option<Arc<Map>>>,
    /// The map's counters when it was released.
    final_stats: Mutex<Option<StatsSnapshot>>,
    /// Guest RAM size in bytes (from 0x4000_0000).
    pub ram_bytes: u64,
    /// Size of the guest image in bytes.
    pub image_bytes: u64,
    /// Number of vCPUs.
    pub nr_vcpus: u16,
    stopped: AtomicBool,
    state: Mutex<Option<Stopped>>,
    /// Powered-off vCPUs, by index (`Some` = off and available to PSCI CPU_ON).
    pub parked: Mutex<Vec<Option<Box<Vcpu>>>>,
    /// vCPUs powered on (running, queued or being handled).
    pub online: AtomicU32,
    /// Partial console line (PL011 writes).
    pub console: Mutex<Vec<u8>>,
    /// Rate limit of the VM's console lines (PRINT and PL011).
    budget: Mutex<LineBudget>,
    /// MMIO accesses to unknown device registers (read 0 / write ignored).
    pub mmio_unknown: AtomicU64,
    /// Set once the first unknown MMIO access has been logged.
    pub mmio_logged: AtomicBool,
}

impl Vm {
    pub fn new(id: u16, name: String, map: Arc<Map>, ram_bytes: u64, image_bytes: u64, nr_vcpus: u16) -> Arc<Vm> {
        Arc::new(Vm {
            id,
            name,
            map: Mutex::new(Some(map)),
            final_stats: Mutex::new(None),
            ram_bytes,
            image_bytes,
            nr_vcpus,
            stopped: AtomicBool::new(false),
            state: Mutex::new(None),
            parked: Mutex::new(Vec::new()),
            online: AtomicU32::new(0),
            console: Mutex::new(Vec::new()),
            budget: Mutex::new(LineBudget::new()),
            mmio_unknown: AtomicU64::new(0),
            mmio_logged: AtomicBool::new(false),
        })
    }

    /// The VM's map, or `None` once it stopped and released it.
    ///
    /// # Locks
    /// Takes the `map` slot's lock alone, for the clone.
    pub fn map(&self) -> Option<Arc<Map>> {
        self.map.lock().clone()
    }

    /// The map's counters: live while the VM runs, as they were at release after.
    pub fn stats(&self) -> StatsSnapshot {
        match self.map() {
            Some(m) => m.stats().snapshot(),
            None => (*self.final_stats.lock()).unwrap_or_default(),
        }
    }

    /// Drop the VM's own reference to its map after keeping its counters (the VM stopped: the
    /// map is freed once its vCPUs are dropped too).
    ///
    /// # Locks
    /// Takes `map`, then `final_stats`, each alone.
    pub fn release_map(&self) {
        if let Some(map) = self.map.lock().take() {
            *self.final_stats.lock() = Some(map.stats().snapshot());
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

    /// Stop the VM. Returns true for the first caller (who reports it); later calls are ignored.
    ///
    /// # Locks
    /// Takes `state`; call with no VM lock held.
    pub fn stop(&self, why: Stopped) -> bool {
        let mut st = self.state.lock();
        if st.is_some() {
            return false;
        }
        *st = Some(why);
        self.stopped.store(true, Ordering::Release);
        true
    }

    /// Print one guest console line (`[vm<N>] text`), unless the VM is over its console budget
    /// (then the line is dropped and counted).
    ///
    /// # Locks
    /// Takes `budget` alone, and prints with no lock held (a semihosting call takes
    /// milliseconds).
    pub fn print_line(&self, text: &[u8]) {
        let ok = self.budget.lock().take(timer::now(), timer::freq());
        if ok {
            out::guest_line(self.id, text);
        }
    }

    /// Console lines dropped by the budget so far.
    pub fn dropped_lines(&self) -> u64 {
        self.budget.lock().dropped()
    }

    /// How the VM stopped, if it did.
    pub fn stopped_state(&self) -> Option<Stopped> {
        self.state.lock().clone()
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
    /// The VM's map (a reference of this vCPU's own: see the module comment).
    pub map: Arc<Map>,
    pub index: u16,
    pub regs: GuestRegs,
    pub el1: El1Sysregs,
    /// Nested-abort loop detection of injected exceptions.
    pub inject_loop: LoopDetector,
    /// The counter at the last guest exit (`sched::run`): trap entry, for the trace's time and cost.
    pub exit_time: u64,
}

impl Vcpu {
    /// A powered-off vCPU in its reset state.
    pub fn new(vm: Arc<Vm>, map: Arc<Map>, index: u16) -> Box<Vcpu> {
        Box::new(Vcpu {
            vm,
            map,
            index,
            regs: GuestRegs::zeroed(),
            el1: El1Sysregs::reset(),
            inject_loop: LoopDetector::new(),
            exit_time: 0,
        })
    }

    /// EL2 controls of this vCPU.
    pub fn controls(&self) -> El2Controls {
        El2Controls {
            vttbr_el2: self.map.stage2().vttbr(),
            vtcr_el2: Stage2::VTCR_EL2,
            vmpidr_el2: vmpidr(self.index),
            cntvoff_el2: 0,
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
    }
}
