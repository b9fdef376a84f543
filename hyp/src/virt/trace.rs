//! Fault trace: one `vm::trace::Record` per stage-2 abort, and one per page a hypercall faults in
//! (UVMHYP_PRINT, access Read: `guestmem.rs`), buffered per physical CPU and written in bulk to the
//! host file through semihosting, because a semihosting call costs milliseconds.
//!
//! # Locks
//! A CPU's buffer lock is only contended at the final flush; the file lock is taken inside a
//! buffer lock (buffer → file), never the other way round.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;

use hyp::platform::MAX_CPUS;
use crate::arch::semihosting::{self, Handle, Mode};
use super::machine::Vcpu;
use vm::fault::{FaultError, Resolved};
use vm::trace::{header, Outcome, Record, RECORD_BYTES};
use vm::{Access, Ipa};

/// Records buffered per CPU before a flush (64 KiB).
const BUFFER_RECORDS: usize = 64 * 1024 / RECORD_BYTES;

/// 64-bit words of one record.
const RECORD_WORDS: usize = RECORD_BYTES / 8;

/// One encoded record as the words of its bytes: with strict alignment at EL2 appending a byte
/// array goes through a `memcpy` call; words are a few loads and stores (on every fault's path).
type Slot = [u64; RECORD_WORDS];

/// `rec` encoded, as words in memory order.
fn slot(rec: &Record) -> Slot {
    #[repr(C, align(8))]
    struct Aligned([u8; RECORD_BYTES]);
    let b = Aligned(rec.encode());
    core::array::from_fn(|i| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b.0[i * 8..i * 8 + 8]);
        u64::from_ne_bytes(w)
    })
}

pub struct Trace {
    file: Mutex<Option<Handle>>,
    bufs: [Mutex<Vec<Slot>>; MAX_CPUS],
    seq: AtomicU64,
    dropped: AtomicU64,
}

impl Trace {
    /// Create/truncate the trace file at `path` and write the header. If the host refuses, the
    /// trace is disabled (and said so), the run goes on.
    pub fn open(path: &str) -> Trace {
        let file = match semihosting::open(path, Mode::WriteBinary) {
            Ok(h) => match semihosting::write(h, &header()) {
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
        };
        Trace {
            file: Mutex::new(file),
            bufs: core::array::from_fn(|_| Mutex::new(Vec::with_capacity(BUFFER_RECORDS))),
            seq: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// The next global sequence number.
    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Trace the engine's answer `r` to a fault of `v` at `ipa`: a stage-2 abort on guest RAM
    /// (`abort.rs`), or a page a hypercall faulted in (`guestmem.rs`).
    pub fn fault(&self, v: &Vcpu, ipa: Ipa, access: Access, r: &Result<Resolved, FaultError>) {
        let rec = match r {
            Ok(r) => Record { case: Some(r.case), neighbours: r.neighbours, refaults: r.refaults, ..self.plain(v, ipa, access, Outcome::Resolved) },
            Err(e) => self.plain(v, ipa, access, Outcome::Failed(*e)),
        };
        self.record(crate::arch::cpu::index(), &rec);
    }

    /// Trace a stage-2 abort the engine was not asked about: `outcome` is `Mmio` (emulated or
    /// skipped) or `AbortInjected`.
    pub fn abort(&self, v: &Vcpu, ipa: Ipa, access: Access, outcome: Outcome) {
        self.record(crate::arch::cpu::index(), &self.plain(v, ipa, access, outcome));
    }

    /// The next record of `v` at `ipa`, with no case, neighbours or refaults.
    fn plain(&self, v: &Vcpu, ipa: Ipa, access: Access, outcome: Outcome) -> Record {
        Record { seq: self.next_seq(), ipa, vm: v.vm.number, vcpu: v.index, access, case: None, outcome, neighbours: 0, refaults: 0 }
    }

    /// Append a record to CPU `cpu`'s buffer, flushing it when full.
    fn record(&self, cpu: usize, rec: &Record) {
        let Some(buf) = self.bufs.get(cpu) else { return };
        let mut buf = buf.lock();
        buf.push(slot(rec));
        if buf.len() >= BUFFER_RECORDS {
            self.write_out(&mut buf);
        }
    }

    /// Write every CPU's buffer and close the file (end of run).
    pub fn finish(&self) {
        for b in &self.bufs {
            self.write_out(&mut b.lock());
        }
        if let Some(h) = self.file.lock().take() {
            semihosting::close(h);
        }
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped != 0 {
            log::warn!("trace: {dropped} bytes could not be written");
        }
    }

    fn write_out(&self, buf: &mut Vec<Slot>) {
        if buf.is_empty() {
            return;
        }
        let words = buf.as_flattened();
        let file = self.file.lock();
        match *file {
            Some(h) if semihosting::write_words(h, words).is_ok() => {}
            _ => {
                self.dropped.fetch_add((words.len() * 8) as u64, Ordering::Relaxed);
            }
        }
        buf.clear();
    }
}
