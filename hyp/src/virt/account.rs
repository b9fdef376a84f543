//! Memory accounting in the hypervisor: passes of `vm::account` over every VM that has memory,
//! written to the trace (an accounting record per VM and a savings record: `vm::trace`), kept
//! for the end-of-run report (each VM's figures at its stop; the pass that saved the most), and
//! answered to guests (UVMHYP_ACCOUNT, `uvmhyp.rs`).
//!
//! When: every `account=MS` of host counter time (`hyp::config::DEFAULT_ACCOUNT_MS`) from the end
//! of the last periodic pass, but never sooner than [`COST_SHARE`] times that pass's own
//! duration after it (so periodic passes take at most 1/[`COST_SHARE`] of one CPU's time however
//! large the VMs are: under QEMU TCG a pass costs about 2 µs per resident page); checked on
//! each idle tick and, when no other CPU is idle, after each guest exit (`run.rs`): the first
//! CPU to see it due runs the pass — an idle one if there is one, else between two exits of
//! the vCPU it runs (whose guest waits for it: a pass of ~4 ms took 15 ms of a 250 ms
//! `swapbench` swap-in pass when guest CPUs ran them);
//! at each VM's stop, before its RAM is released (`Hyp::stop_vm`); once at the end; and at
//! each UVMHYP_ACCOUNT, on the caller's CPU.
//!
//! Cost: one pass walks every page of every VM's entries (see `vm::account`), and each pass's
//! host time is measured (counter ticks around the walk): the end-of-run line gives the passes,
//! their mean and their longest, which is what the default period is chosen from (README,
//! "Memory accounting").
//!
//! # Locks
//! The book (what the report needs) is a leaf, taken after a pass, never during one. A pass
//! takes the engine's locks (`vm::account`) with no hypervisor lock held; the caller holds none.

use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;

use super::machine::{Memory, Vm};
use super::out::outln;
use super::trace::Trace;
use crate::arch::{cpu, timer};
use vm::account::{account, Account, Global, VmAccount, ZeroAnons};
use vm::map::Map;
use vm::uvm::Uvm;

/// A periodic pass waits at least this many times its predecessor's duration: 1/20 = 5 % of
/// one CPU at most.
pub const COST_SHARE: u64 = 20;

/// The accounting period, the last pass's time, and what the report needs.
pub struct Accountant {
    /// The period in counter ticks; 0: no periodic pass (`account=off`).
    period: AtomicU64,
    /// Counter time of the last periodic pass's end (or of `set_period`).
    last: AtomicU64,
    /// Counter ticks the last pass took.
    cost: AtomicU64,
    book: Mutex<Book>,
}

/// One figure of a VM's account, and of a pass's global figures (the report's rows).
type PerVm = fn(&VmAccount) -> u64;
type PerPass = fn(&Global) -> u64;

/// What the passes leave for the report.
#[derive(Default)]
struct Book {
    /// Each stopped VM's figures, from the pass at its stop.
    at_stop: Vec<(u16, VmAccount, Global)>,
    /// The pass that saved the most frames: its time, global figures and Σ resident.
    peak: Option<(u64, Global, u64)>,
    passes: u64,
    ticks: u64,
    max_ticks: u64,
}

impl Accountant {
    /// An accountant with no periodic pass until [`Accountant::set_period_ms`].
    pub const fn new() -> Accountant {
        Accountant { period: AtomicU64::new(0), last: AtomicU64::new(0), cost: AtomicU64::new(0), book: Mutex::new(Book { at_stop: Vec::new(), peak: None, passes: 0, ticks: 0, max_ticks: 0 }) }
    }

    /// Run a periodic pass every `ms` milliseconds from now (`None`: never).
    pub fn set_period_ms(&self, ms: Option<u64>) {
        self.last.store(timer::now(), Ordering::Relaxed);
        self.period.store(ms.map_or(0, |ms| timer::us_to_ticks(ms.saturating_mul(1000)).max(1)), Ordering::Relaxed);
    }

    /// True for the one caller that finds a pass due at `now` (it then runs the pass and calls
    /// [`Accountant::done`]). A few relaxed loads when not due: it is on every guest exit's path.
    pub fn due(&self, now: u64) -> bool {
        let period = self.period.load(Ordering::Relaxed);
        let last = self.last.load(Ordering::Relaxed);
        let gap = period.max(self.cost.load(Ordering::Relaxed).saturating_mul(COST_SHARE));
        period != 0
            && now.saturating_sub(last) >= gap
            && self.last.compare_exchange(last, u64::MAX, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// The periodic pass [`Accountant::due`] started has ended: the next one is timed from now.
    pub fn done(&self) {
        self.last.store(timer::now(), Ordering::Relaxed);
    }

    /// One pass over every VM of `vms` that still has memory, its cost and savings booked.
    ///
    /// # Locks
    /// Entry: nothing held. Takes each VM's memory slot alone, then the engine's locks
    /// (`vm::account`), then the book.
    pub fn pass(&self, uvm: &Uvm, zero: &ZeroAnons, vms: &[Arc<Vm>]) -> Account {
        let memories: Vec<(u16, Arc<Memory>)> = vms.iter().filter_map(|v| Some((v.number, v.memory()?))).collect();
        let maps: Vec<(u16, &Map)> = memories.iter().map(|(n, m)| (*n, m.map_arc().as_ref())).collect();
        let start = timer::now();
        let acc = account(uvm, &maps, zero);
        let now = timer::now();
        let ticks = now.saturating_sub(start);
        self.cost.store(ticks, Ordering::Relaxed);
        let mut b = self.book.lock();
        b.passes += 1;
        b.ticks = b.ticks.saturating_add(ticks);
        b.max_ticks = b.max_ticks.max(ticks);
        if b.peak.is_none_or(|(_, g, _)| acc.global.saved.total() > g.saved.total()) {
            b.peak = Some((now, acc.global, acc.resident_sum()));
        }
        acc
    }

    /// Remember VM `vm`'s figures of `acc` (the pass at its stop) for the report.
    ///
    /// # Locks
    /// Takes the book alone.
    pub fn stopped(&self, vm: u16, acc: &Account) {
        if let Some(v) = acc.vms.iter().find(|v| v.vm == vm) {
            self.book.lock().at_stop.push((vm, *v, acc.global));
        }
    }

    /// Write `acc` into the trace (this CPU's buffer): its records at the counter's now.
    ///
    /// # Locks
    /// Takes this CPU's trace buffer (`Trace::accounting`).
    pub fn record(&self, trace: &Trace, acc: &Account) {
        let (vms, savings) = acc.records(timer::now(), cpu::index() as u8);
        trace.accounting(&vms, &savings);
    }

    /// The counters table's memory rows (README, "Memory accounting"): per VM of `vms` its figures
    /// at its stop (total: the sum), and the global savings at each VM's stop (total: the pass
    /// that saved the most).
    ///
    /// # Locks
    /// Takes the book alone.
    pub fn rows(&self, vms: &[Arc<Vm>]) -> Vec<(String, Vec<u64>, u64)> {
        let b = self.book.lock();
        let at = |vm: u16| b.at_stop.iter().find(|(id, _, _)| *id == vm);
        let peak = b.peak.map(|(_, g, _)| g).unwrap_or_default();
        let per_vm: [(&str, PerVm); 5] = [
            ("resident", |v| v.resident),
            ("private", |v| v.private),
            ("shared", |v| v.shared),
            ("zero", |v| v.zero),
            ("swapped", |v| v.swapped),
        ];
        let global: [(&str, PerPass); 4] = [
            ("saved_clone", |g| g.saved.clone),
            ("saved_image", |g| g.saved.image),
            ("saved_dedup", |g| g.saved.dedup),
            ("distinct", |g| g.distinct),
        ];
        let mut rows = Vec::new();
        for (name, f) in per_vm {
            let cols: Vec<u64> = vms.iter().map(|v| at(v.number).map_or(0, |(_, a, _)| f(a))).collect();
            let total = cols.iter().sum();
            rows.push((name.to_string(), cols, total));
        }
        for (name, f) in global {
            let cols: Vec<u64> = vms.iter().map(|v| at(v.number).map_or(0, |(_, _, g)| f(g))).collect();
            rows.push((name.to_string(), cols, f(&peak)));
        }
        rows
    }

    /// The end-of-run line: the pass that saved the most (distinct frames against the sum of the
    /// VMs' resident pages, by cause), and what the passes cost.
    ///
    /// # Locks
    /// Takes the book alone.
    pub fn print_summary(&self) {
        let b = self.book.lock();
        let us = |ticks: u64| ticks.saturating_mul(1_000_000) / timer::freq().max(1);
        if let Some((_, g, resident)) = b.peak {
            outln!(
                "uvmhyp: memory: most saved {} frames (clone {}, image {}, dedup {}): {} distinct frames for {} resident pages of the VMs, {} shared by up to {} VMs; pool {} used, {} free",
                g.saved.total(),
                g.saved.clone,
                g.saved.image,
                g.saved.dedup,
                g.distinct,
                resident,
                g.shared_frames,
                g.max_sharers,
                g.pool_used(),
                g.pool_free
            );
        }
        let mean = b.ticks.checked_div(b.passes).unwrap_or(0);
        outln!("uvmhyp: accounting: {} passes, {} us mean, {} us longest (host time)", b.passes, us(mean), us(b.max_ticks));
    }
}
