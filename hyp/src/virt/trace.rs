//! The trace (format: `vm::trace`, version 2): one fault record per stage-2 abort on RAM or
//! outside RAM and devices, and per page a hypercall faults in (UVMHYP_PRINT, access Read:
//! `guestmem.rs`); counts of MMIO accesses per VM, device register and direction instead of a record
//! each; a VM start and stop event; the accounting and savings records of each accounting pass
//! (`account.rs` runs them and hands the records over: [`Trace::accounting`]); the engine's
//! page-outs, page-ins, bad swap slots and pagedaemon passes ([`SwapListener`], installed in the
//! engine only while tracing: without it the engine skips naming pages).
//! Records are buffered per physical CPU and written in bulk to the host file through
//! semihosting, because a semihosting call costs milliseconds.
//!
//! Cheap on the fault path: a record is encoded into a fixed-size slot in the CPU's buffer. The
//! only other work there is one relaxed load of the last interval's end; the record that finds
//! [`PERIOD_US`] elapsed closes every CPU's MMIO interval (once per period, not per record).
//!
//! The file is capped ([`hyp::config::Config::trace_max_bytes`]): a flush that would pass the cap
//! writes a capped record instead (the file stays within the cap), tracing stops, and the
//! console says so once. `trace=off` records nothing at all (the benchmark's baseline).
//!
//! The trace needs nothing of the hypervisor's state but the vCPU a record is about.
//!
//! # Locks
//! A CPU's buffer lock is only contended at a period's end (another CPU closing its MMIO
//! interval) and at the final flush; the file lock is taken inside a buffer lock (buffer → file),
//! never the other way round, and no two buffer locks are held at once.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use spin::Mutex;

use super::machine::Vcpu;
use super::out::outln;
use hyp::platform::MAX_CPUS;
use crate::arch::semihosting::{self, Handle, Mode};
use crate::arch::{cpu, timer};
use hyp::config::Config;
use vm::fault::{FaultError, Resolved};
use vm::trace::{header, Accounting, Capped, Direction, Event, EventKind, MmioCount, Outcome, Record, Savings, StopStatus, Timing};
use vm::trace::{PdScan, SwapOp, SwapRecord, CAPPED_BYTES, HEADER_BYTES};
use vm::swapevents::{SlotIo, SwapEvent, SwapEvents};
use vm::pmap::Stage2;
use vm::{Access, Ipa};

/// Longest MMIO counting interval.
pub const PERIOD_US: u64 = 10_000;

/// Words buffered per CPU before a flush (64 KiB).
const BUFFER_WORDS: usize = 64 * 1024 / 8;

/// Device registers counted per CPU in one interval; one more closes the interval early.
const MMIO_SLOTS: usize = 16;

/// The fault record of `v` at `ipa` numbered `seq`, on CPU `cpu`, with no case, neighbours or
/// refaults; its cost ends at `now`.
fn record(seq: u64, v: &Vcpu, cpu: usize, now: u64, ipa: Ipa, access: Access, outcome: Outcome) -> Record {
    let cost = u32::try_from(now.saturating_sub(v.exit_time)).unwrap_or(u32::MAX);
    let timing = Some(Timing { time: v.exit_time, cpu: cpu as u8, cost });
    Record { seq, ipa, vm: v.vm.number, vcpu: v.index, access, case: None, outcome, neighbours: 0, refaults: 0, timing }
}

/// What an MMIO count is kept by: the device window and offset, or for an access skipped without
/// a device (cache maintenance outside RAM) the page and its offset.
#[derive(Clone, Copy, PartialEq, Eq)]
struct MmioKey {
    vm: u16,
    base: Ipa,
    offset: u32,
    direction: Direction,
}

fn mmio_key(v: &Vcpu, ipa: Ipa, access: Access) -> MmioKey {
    let base = v.vm.bus.find(ipa.0).map_or(ipa.page_base(), |(w, _)| Ipa(w.base));
    let offset = u32::try_from(ipa.0 - base.0).unwrap_or(u32::MAX);
    let direction = if access == Access::Write { Direction::Write } else { Direction::Read };
    MmioKey { vm: v.vm.number, base, offset, direction }
}

/// One CPU's buffer: encoded records as words (memory order), and its MMIO counts of the
/// current interval.
struct CpuBuf {
    words: Vec<u64>,
    /// Records in `words`.
    records: u32,
    mmio: Vec<(MmioKey, u64)>,
}

/// The trace file and how much of the cap it has used.
struct File {
    handle: Option<Handle>,
    written: u64,
    capped: bool,
}

pub struct Trace {
    /// False with `trace=off`, without a file, and once capped: nothing is recorded.
    on: AtomicBool,
    file: Mutex<File>,
    cpus: [Mutex<CpuBuf>; MAX_CPUS],
    seq: AtomicU64,
    /// The cap in bytes.
    cap: u64,
    /// [`PERIOD_US`] in counter ticks.
    period: u64,
    /// Counter time of the last MMIO interval's end.
    sampled: AtomicU64,
    /// Bytes lost to failed writes.
    dropped: AtomicU64,
    /// The VM number of each VMID, set at each VM's start (a VMID is reused only after its VM's
    /// map is gone, so a swap event never names a stale one): lock-free, because the engine
    /// tells of swap events where the VM table must not be taken.
    vm_of_vmid: [AtomicU16; Stage2::MAX_VMID as usize + 1],
}

/// Append one record's `words` to `buf`: a few stores (with strict alignment at EL2 a byte copy
/// would be a `memcpy` call; this is on every fault's path).
fn append(buf: &mut CpuBuf, words: &[u64]) {
    for &w in words {
        buf.words.push(w);
    }
    buf.records += 1;
}

impl Trace {
    /// Create/truncate the trace file `config` names and write the header, and say where it goes.
    /// Without one (`trace=off`), or if the host refuses, nothing is traced; the run goes on.
    pub fn open(config: &Config) -> Trace {
        let handle = match &config.trace_path {
            Some(path) => {
                outln!("uvmhyp: trace -> {path}");
                match semihosting::open(path, Mode::WriteBinary) {
                    Ok(h) => match semihosting::write(h, &header(timer::freq())) {
                        Ok(()) => Some(h),
                        Err(e) => {
                            log::warn!("trace: cannot write {path}: {e}");
                            None
                        }
                    },
                    Err(e) => {
                        log::warn!("trace: cannot open {path}: {e}");
                        None
                    }
                }
            }
            None => {
                outln!("uvmhyp: trace off");
                None
            }
        };
        Trace {
            on: AtomicBool::new(handle.is_some()),
            file: Mutex::new(File { handle, written: HEADER_BYTES as u64, capped: false }),
            cpus: core::array::from_fn(|_| {
                Mutex::new(CpuBuf { words: Vec::with_capacity(BUFFER_WORDS), records: 0, mmio: Vec::with_capacity(MMIO_SLOTS) })
            }),
            seq: AtomicU64::new(0),
            cap: config.trace_max_bytes,
            period: timer::us_to_ticks(PERIOD_US),
            sampled: AtomicU64::new(timer::now()),
            dropped: AtomicU64::new(0),
            vm_of_vmid: core::array::from_fn(|_| AtomicU16::new(0)),
        }
    }

    /// Whether records are being written (not `trace=off`, the file open, not capped).
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// The next global sequence number of fault records.
    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Trace the engine's answer `r` to a fault of `v` at `ipa`: a stage-2 abort on guest RAM
    /// (`abort.rs`), or a page a hypercall faulted in (`hvc.rs`).
    ///
    /// # Locks
    /// Call with no lock held (see the module's).
    pub fn fault(&self, v: &Vcpu, ipa: Ipa, access: Access, r: &Result<Resolved, FaultError>) {
        if !self.is_on() {
            return;
        }
        let (me, now, seq) = (cpu::index(), timer::now(), self.next_seq());
        let rec = match r {
            Ok(r) => Record { case: Some(r.case), neighbours: r.neighbours, refaults: r.refaults, ..record(seq, v, me, now, ipa, access, Outcome::Resolved) },
            Err(e) => record(seq, v, me, now, ipa, access, Outcome::Failed(*e)),
        };
        self.push(me, &rec.words());
        self.tick(now);
    }

    /// Trace a stage-2 abort the engine was not asked about: `outcome` is `Mmio` (emulated or
    /// skipped: counted, see [`Trace::count_mmio`]) or `AbortInjected` (a record).
    ///
    /// # Locks
    /// Call with no lock held (see the module's).
    pub fn abort(&self, v: &Vcpu, ipa: Ipa, access: Access, outcome: Outcome) {
        if !self.is_on() {
            return;
        }
        let (me, now) = (cpu::index(), timer::now());
        if outcome == Outcome::Mmio {
            self.count_mmio(me, mmio_key(v, ipa, access), now);
        } else {
            self.push(me, &record(self.next_seq(), v, me, now, ipa, access, outcome).words());
        }
        self.tick(now);
    }

    /// Trace that VM `vm`, its stage 2 tagged `vmid`, was started (`build.rs`).
    ///
    /// # Locks
    /// Takes this CPU's buffer alone.
    pub fn vm_started(&self, vm: u16, vmid: u16) {
        if let Some(slot) = self.vm_of_vmid.get(usize::from(vmid)) {
            slot.store(vm, Ordering::Relaxed);
        }
        if self.is_on() {
            let me = cpu::index();
            self.push(me, &Event { time: timer::now(), cpu: me as u8, vm, what: EventKind::VmStart }.words());
        }
    }

    /// Trace the end of a dedup pass that merged `merged` pages.
    ///
    /// # Locks
    /// Takes this CPU's buffer alone.
    pub fn dedup_pass(&self, merged: u64) {
        if self.is_on() {
            let me = cpu::index();
            self.push(me, &Event { time: timer::now(), cpu: me as u8, vm: 0, what: EventKind::DedupPass { merged } }.words());
        }
    }

    /// Trace that VM `vm` (started just before) is a clone of VM `from`.
    ///
    /// # Locks
    /// Takes this CPU's buffer alone.
    pub fn vm_cloned(&self, vm: u16, from: u16) {
        if self.is_on() {
            let me = cpu::index();
            self.push(me, &Event { time: timer::now(), cpu: me as u8, vm, what: EventKind::Clone { from } }.words());
        }
    }

    /// Trace that VM `vm` stopped (`Hyp::stop_vm`, after the accounting pass of its stop).
    ///
    /// # Locks
    /// Takes this CPU's buffer alone.
    pub fn vm_stopped(&self, vm: u16, status: StopStatus) {
        if self.is_on() {
            let me = cpu::index();
            self.push(me, &Event { time: timer::now(), cpu: me as u8, vm, what: EventKind::VmStop(status) }.words());
        }
    }

    /// Trace one accounting pass (`account.rs`): a record per VM, then the global one.
    ///
    /// # Locks
    /// Takes this CPU's buffer alone (then the file, to flush).
    pub fn accounting(&self, vms: &[Accounting], savings: &Savings) {
        if self.is_on() {
            let me = cpu::index();
            for a in vms {
                self.push(me, &a.words());
            }
            self.push(me, &savings.words());
        }
    }

    /// Trace one of the engine's swap events (see [`SwapListener`]).
    ///
    /// # Locks
    /// Takes this CPU's buffer alone (then the file, to flush).
    fn swap(&self, event: SwapEvent) {
        if !self.is_on() {
            return;
        }
        let (me, time) = (cpu::index(), timer::now());
        let cpu = me as u8;
        let record = |op, slot, at: Option<(vm::pmap::Vmid, Ipa)>| {
            let vm = at.and_then(|(id, _)| self.vm_of_vmid.get(usize::from(id.0))).map_or(0, |v| v.load(Ordering::Relaxed));
            let ipa = if vm == 0 { Ipa(0) } else { at.map_or(Ipa(0), |(_, ipa)| ipa.page_base()) };
            SwapRecord { time, cpu, vm, op, slot, ipa }
        };
        match event {
            SwapEvent::PageOut { at, slot } => self.push(me, &record(SwapOp::PageOut, slot, at).words()),
            SwapEvent::PageIn { at, slot } => self.push(me, &record(SwapOp::PageIn, slot, at).words()),
            SwapEvent::BadSlot { slot, io } => {
                let op = if io == SlotIo::Read { SwapOp::BadRead } else { SwapOp::BadWrite };
                self.push(me, &record(op, slot, None).words());
            }
            SwapEvent::Scan { scanned, freed, deactivated } => {
                self.push(me, &PdScan { time, cpu, scanned, freed, deactivated }.words());
            }
        }
    }

    /// If [`PERIOD_US`] ended by `now` since the last interval's end, and this CPU is the first
    /// to see it: every CPU's MMIO interval closed.
    ///
    /// # Locks
    /// Call with no lock held; takes each CPU's buffer alone.
    fn tick(&self, now: u64) {
        let last = self.sampled.load(Ordering::Relaxed);
        // Saturating: another CPU may have moved `last` past this CPU's `now`.
        if now.saturating_sub(last) < self.period
            || self.sampled.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        for c in 0..MAX_CPUS {
            self.close_mmio(c, now);
        }
    }

    /// Append a record to CPU `cpu`'s buffer, flushing it when full.
    ///
    /// # Locks
    /// Takes `cpu`'s buffer (then the file, to flush).
    fn push(&self, cpu: usize, words: &[u64]) {
        let Some(buf) = self.cpus.get(cpu) else { return };
        let mut buf = buf.lock();
        append(&mut buf, words);
        if buf.words.len() >= BUFFER_WORDS {
            self.write_out(cpu, &mut buf);
        }
    }

    /// Count one MMIO access in CPU `cpu`'s interval (closing it at `now` first if its table is
    /// full).
    ///
    /// # Locks
    /// Takes `cpu`'s buffer (then the file, to flush).
    fn count_mmio(&self, cpu: usize, key: MmioKey, now: u64) {
        let Some(buf) = self.cpus.get(cpu) else { return };
        let mut buf = buf.lock();
        if let Some((_, n)) = buf.mmio.iter_mut().find(|(k, _)| *k == key) {
            *n += 1;
            return;
        }
        if buf.mmio.len() >= MMIO_SLOTS {
            self.drain_mmio(cpu, &mut buf, now);
        }
        buf.mmio.push((key, 1));
    }

    /// End CPU `cpu`'s MMIO interval at `now`: one aggregate record per register counted.
    ///
    /// # Locks
    /// Takes `cpu`'s buffer (then the file, to flush).
    fn close_mmio(&self, cpu: usize, now: u64) {
        if let Some(buf) = self.cpus.get(cpu) {
            self.drain_mmio(cpu, &mut buf.lock(), now);
        }
    }

    /// Turn `buf`'s MMIO counts into records (the buffer's lock is held by the caller).
    fn drain_mmio(&self, cpu: usize, buf: &mut CpuBuf, now: u64) {
        let counts = core::mem::take(&mut buf.mmio);
        for (k, count) in &counts {
            let m = MmioCount { time: now, cpu: cpu as u8, vm: k.vm, base: k.base, offset: k.offset, direction: k.direction, count: *count };
            append(buf, &m.words());
        }
        // Keep the table's allocation: counting never allocates.
        buf.mmio = counts;
        buf.mmio.clear();
        if buf.words.len() >= BUFFER_WORDS {
            self.write_out(cpu, buf);
        }
    }

    /// Write every CPU's buffer (MMIO counts included) and close the file (end of run).
    ///
    /// # Locks
    /// Takes each CPU's buffer alone, then the file.
    pub fn finish(&self) {
        let now = timer::now();
        for (c, b) in self.cpus.iter().enumerate() {
            let mut b = b.lock();
            self.drain_mmio(c, &mut b, now);
            self.write_out(c, &mut b);
        }
        if let Some(h) = self.file.lock().handle.take() {
            semihosting::close(h);
        }
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped != 0 {
            log::warn!("trace: {dropped} bytes could not be written");
        }
    }

    /// Write CPU `cpu`'s buffered records, or — if they would pass the cap — a capped record
    /// instead, and stop tracing.
    ///
    /// # Locks
    /// Called with `cpu`'s buffer held; takes the file.
    fn write_out(&self, cpu: usize, buf: &mut CpuBuf) {
        if buf.words.is_empty() {
            return;
        }
        let bytes = (buf.words.len() * 8) as u64;
        let mut file = self.file.lock();
        let written = file.written;
        match file.handle {
            Some(h) if !file.capped && written + bytes + CAPPED_BYTES as u64 > self.cap => {
                file.capped = true;
                self.on.store(false, Ordering::Relaxed);
                let c = Capped { time: timer::now(), cpu: cpu as u8, unwritten: buf.records, cap: self.cap };
                if semihosting::write_words(h, &c.words()).is_ok() {
                    file.written += CAPPED_BYTES as u64;
                }
                log::warn!(
                    "trace: reached its cap of {} MiB (trace_max=); tracing stopped, {} records of cpu{cpu} and everything later not written",
                    self.cap >> 20,
                    buf.records
                );
            }
            Some(h) if !file.capped && semihosting::write_words(h, &buf.words).is_ok() => file.written += bytes,
            // Capped: what follows is knowingly not written (the capped record says so).
            Some(_) if file.capped => {}
            _ => {
                self.dropped.fetch_add(bytes, Ordering::Relaxed);
            }
        }
        buf.words.clear();
        buf.records = 0;
    }
}

/// The engine's swap listener (`Uvm::set_swap_events`): each event becomes a swap or scan record
/// on the CPU that saw it, the VMID turned into the VM's number through the trace's own table.
///
/// # Locks
/// Called with no engine lock held (possibly inside a fault); takes this CPU's buffer (then the
/// file), never the VM table.
pub struct SwapListener(pub &'static Trace);

impl SwapEvents for SwapListener {
    fn swap_event(&self, event: SwapEvent) {
        self.0.swap(event);
    }
}
