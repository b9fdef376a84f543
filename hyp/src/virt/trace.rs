//! Fault trace: one `vm::trace::Record` per stage-2 abort, and one per page a hypercall faults in
//! (UVMHYP_PRINT, access Read: `hvc.rs`), buffered per physical CPU and written in bulk to the
//! host file through semihosting, because a semihosting call costs milliseconds.
//!
//! # Locks
//! A CPU's buffer lock is only contended at the final flush; the file lock is taken inside a
//! buffer lock (buffer → file), never the other way round.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;

use crate::arch::cpu::MAX_CPUS;
use crate::arch::semihosting::{self, Handle, Mode};
use super::vm::Vcpu;
use super::Hyp;
use vm::fault::{FaultError, Resolved};
use vm::trace::{header, Outcome, Record, RECORD_BYTES};
use vm::{Access, Ipa};

/// Trace the engine's answer `r` to a fault of `v` at `ipa` that the hypervisor raised itself
/// (not a stage-2 abort: those are traced by `abort.rs` with their decoding).
pub fn fault(h: &Hyp, v: &Vcpu, ipa: Ipa, access: Access, r: &Result<Resolved, FaultError>) {
    let (case, outcome, neighbours, refaults) = match r {
        Ok(r) => (Some(r.case), Outcome::Resolved, r.neighbours, r.refaults),
        Err(e) => (None, Outcome::Failed(*e), 0, 0),
    };
    let rec = Record { seq: h.trace.next_seq(), ipa, vm: v.vm.id, vcpu: v.index, access, case, outcome, neighbours, refaults };
    h.trace.record(crate::arch::cpu::index(), &rec);
}

/// Bytes buffered per CPU before a flush.
const BUFFER_BYTES: usize = 64 * 1024;

pub struct Trace {
    file: Mutex<Option<Handle>>,
    bufs: [Mutex<Vec<u8>>; MAX_CPUS],
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
            bufs: core::array::from_fn(|_| Mutex::new(Vec::with_capacity(BUFFER_BYTES))),
            seq: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// The next global sequence number.
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Append a record to CPU `cpu`'s buffer, flushing it when full.
    pub fn record(&self, cpu: usize, rec: &Record) {
        let Some(buf) = self.bufs.get(cpu) else { return };
        let mut buf = buf.lock();
        buf.extend_from_slice(&rec.encode());
        if buf.len() + RECORD_BYTES > BUFFER_BYTES {
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

    fn write_out(&self, buf: &mut Vec<u8>) {
        if buf.is_empty() {
            return;
        }
        let file = self.file.lock();
        match *file {
            Some(h) if semihosting::write(h, buf).is_ok() => {}
            _ => {
                self.dropped.fetch_add(buf.len() as u64, Ordering::Relaxed);
            }
        }
        buf.clear();
    }
}
