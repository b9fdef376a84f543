//! Trace files: written by the hypervisor (buffered per physical CPU, through semihosting), read
//! by `tools`.
//!
//! Reading: [`decode`] takes a whole file of either version and gives a [`Trace`]: its
//! [`Version`], the counter frequency (`freq`, v2) and every record as an [`Entry`] in file order;
//! [`Trace::faults`] yields the fault [`Record`]s, [`Trace::ticks_to_us`] converts counter ticks.
//! A bad file is a [`DecodeError`] naming the record (index and byte offset) and the field; no
//! input panics. Writing: [`header`], then each record's `words()` (a record is whole
//! little-endian 64-bit words, so a writer appends them with plain stores); [`encode`] builds a
//! whole file (tests, tools).
//!
//! # Version 2 (written today)
//!
//! A 24-byte header, then records tagged by their first byte (the [`Kind`]); each kind has a fixed
//! size, a multiple of 8 (the writer appends whole words). Records of one physical CPU are in the
//! order it wrote them; CPUs' buffers are interleaved in flush order, so `seq` (faults) and `time`
//! (every record) order them globally. All integers little endian; reserved bytes are zero (a
//! reader rejects anything else, so a later version can use them).
//!
//! Header (24 bytes):
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | [`TRACE_MAGIC`] `UVMHYPTR` |
//! | 8..12 | version: 2 |
//! | 12..16 | reserved |
//! | 16..24 | `freq`: counter frequency in Hz (CNTFRQ_EL0), to turn ticks into time; never 0 |
//!
//! Every `time` is the physical counter (CNTPCT_EL0) in ticks of `freq`, on one clock for all CPUs.
//!
//! Kind 1, **fault** (40 bytes, [`Record`]): a stage-2 abort, or a page a hypercall faulted in.
//!
//! | bytes | field |
//! |---|---|
//! | 0 | kind 1 |
//! | 1 | access: 0 read, 1 write, 2 exec |
//! | 2 | case (`FaultCase` as u8), 0xff when the fault failed before a case was chosen |
//! | 3 | outcome: 0 resolved, otherwise `FaultError` as u8; 0x80 = MMIO emulated, 0x81 = abort injected |
//! | 4 | neighbours mapped |
//! | 5 | refaults |
//! | 6 | refault reason: reserved, 0 (the engine counts its refaults but does not say why yet) |
//! | 7 | `cpu`: physical CPU that handled it |
//! | 8..16 | `seq`: global sequence number of fault records |
//! | 16..24 | `ipa`: faulting IPA (page offset kept) |
//! | 24..32 | `time`: counter at trap entry (the guest's exit) |
//! | 32..34 | `vm` id |
//! | 34..36 | `vcpu` index in its VM |
//! | 36..40 | `cost`: ticks from trap entry to the record being written, just before the guest is re-entered (saturating) |
//!
//! Kind 2, **accounting** (40 bytes, [`Accounting`]): one per running VM every accounting
//! period (`account=MS` on the hypervisor's command line), at each VM's stop (before its RAM is
//! released) and at the end of the run, from one pass of `vm::account` over every VM (the
//! figures are defined there). Counts are 4 KiB pages.
//!
//! | bytes | field |
//! |---|---|
//! | 0 | kind 2 |
//! | 1 | `cpu` that sampled |
//! | 2..4 | `vm` id |
//! | 4..8 | `pool_free`: free frames of the global page pool (`Uvm::free_pages`) |
//! | 8..16 | `time` |
//! | 16..20 | `resident`: pages backed by a resident frame (before page sharing: pages mapped at stage 2) |
//! | 20..24 | `private`: resident pages on frames no other VM reaches |
//! | 24..28 | `shared`: resident pages on frames another VM reaches too |
//! | 28..32 | `zero`: resident pages on the dedup scanner's zero anon |
//! | 32..36 | `swapped`: pages in swap and not resident |
//! | 36..40 | reserved |
//!
//! Kind 6, **savings** (40 bytes, [`Savings`]): the global figures of the same pass, once per
//! pass, after its accounting records (new in this version's second revision: a file without
//! them is still version 2, and an older reader stops at the first with `BadKind`).
//!
//! | bytes | field |
//! |---|---|
//! | 0 | kind 6 |
//! | 1 | `cpu` that sampled |
//! | 2..4 | `max_sharers`: most VMs reaching one frame (saturating) |
//! | 4..8 | `pool_free` |
//! | 8..16 | `time` |
//! | 16..20 | `distinct`: frames reached by at least one VM |
//! | 20..24 | `shared_frames`: frames reached by two VMs or more |
//! | 24..28 | `saved_clone`: frames saved by clone sharing |
//! | 28..32 | `saved_image`: frames saved by image (object) sharing |
//! | 32..36 | `saved_dedup`: frames saved by dedup merges |
//! | 36..40 | `pool_used`: frames of the pool in use |
//!
//! Kind 3, **event** (24 bytes, [`Event`]):
//!
//! | bytes | field |
//! |---|---|
//! | 0 | kind 3 |
//! | 1 | event: 1 VM start, 2 VM exited, 3 VM crashed, 4 cloned from VM `arg`, 5 dedup pass, 8 VM reset; 6 and 7 unused (swap has its own kinds, 7 and 8) |
//! | 2..4 | `vm` id |
//! | 4 | `cpu` |
//! | 5..8 | reserved |
//! | 8..16 | `time` |
//! | 16..24 | argument: exit status (2), source VM id (4), pages merged (5); 0 otherwise |
//!
//! Kind 4, **MMIO aggregate** (40 bytes, [`MmioCount`]): the accesses of one VM to one device
//! register in one direction since the CPU's previous aggregates (one interval: at most an
//! accounting period, or less when the CPU's table of counters fills).
//!
//! | bytes | field |
//! |---|---|
//! | 0 | kind 4 |
//! | 1 | `cpu` that counted them |
//! | 2..4 | `vm` id |
//! | 4..8 | `offset` of the register in the device window |
//! | 8..16 | `time`: end of the interval |
//! | 16..24 | `base`: IPA of the device window |
//! | 24..32 | `count` of accesses |
//! | 32 | direction: 0 read, 1 write |
//! | 33..40 | reserved |
//!
//! Kind 5, **capped** (24 bytes, [`Capped`]): the file reached the run's size cap; it is the last
//! record, and nothing after `time` was traced. The file, this record included, is at most the cap.
//!
//! | bytes | field |
//! |---|---|
//! | 0 | kind 5 |
//! | 1 | `cpu` whose flush did not fit |
//! | 2..4 | reserved |
//! | 4..8 | `unwritten`: records of that flush that were not written |
//! | 8..16 | `time` |
//! | 16..24 | `cap`: the cap in bytes |
//!
//! Kind 7, **swap** (32 bytes, [`SwapRecord`]): one page written to swap (one per `pageouts`
//! whose write succeeded), one page-in started by a fault or read ahead for it (one per
//! `pageins` plus one per `readaheads`), or one slot marked bad (one per `swpgbad`). Kinds 7 and 8 are new in this
//! version's third revision: a file without them is still version 2, and an older reader stops
//! at the first with `BadKind`.
//!
//! | bytes | field |
//! |---|---|
//! | 0 | kind 7 |
//! | 1 | what: 1 page-out, 2 page-in, 3 bad slot (a read failed), 4 bad slot (a write failed) |
//! | 2..4 | `vm` id; 0 for a bad slot, and for a page-out of a page no VM mapped |
//! | 4..8 | `slot`: swap slot (4 KiB pages from the start of the swap disk) |
//! | 8..16 | `time` |
//! | 16..24 | `ipa`: the page's IPA in `vm` (page aligned); 0 when `vm` is 0 |
//! | 24 | `cpu` |
//! | 25..32 | reserved |
//!
//! Kind 8, **pagedaemon scan** (24 bytes, [`PdScan`]): one pass of `Uvm::reclaim` that examined
//! or deactivated a page.
//!
//! | bytes | field |
//! |---|---|
//! | 0 | kind 8 |
//! | 1 | `cpu` |
//! | 2..4 | reserved |
//! | 4..8 | `scanned`: inactive pages examined (this pass's `pdscans`) |
//! | 8..16 | `time`: the pass's end |
//! | 16..20 | `freed`: frames freed |
//! | 20..24 | `deactivated`: active pages moved to the inactive queue (this pass's `pddeact`) |
//!
//! # Version 1 (still read)
//!
//! A 16-byte header (magic, version 1, record size 32), then 32-byte fault records: `seq` 0..8,
//! `ipa` 8..16, `vm` 16..18, `vcpu` 18..20, access 20, case 21, outcome 22, neighbours 23,
//! refaults 24, reserved 25..32 (codes as in version 2). They decode as [`Entry::Fault`] with no
//! [`Timing`], in a [`Trace`] without `freq`.

mod decode;
#[cfg(test)]
mod tests;

pub use decode::decode;

use alloc::vec::Vec;
use core::fmt;

use crate::addr::{Access, Ipa};
use crate::fault::{FaultCase, FaultError};

/// First 8 bytes of a trace file (both versions).
pub const TRACE_MAGIC: [u8; 8] = *b"UVMHYPTR";
/// Size of the version 2 file header.
pub const HEADER_BYTES: usize = 24;
/// Size of a version 1 file header.
pub const V1_HEADER_BYTES: usize = 16;
/// Size of a version 1 record.
pub const V1_RECORD_BYTES: usize = 32;

/// Which format a trace file is in.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Version {
    /// Fault records only, no time.
    V1,
    /// Tagged records with time, CPU and cost.
    V2,
}

impl Version {
    /// The number in the header.
    pub const fn number(self) -> u32 {
        match self {
            Version::V1 => 1,
            Version::V2 => 2,
        }
    }
}

/// The tag in a version 2 record's first byte.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Kind {
    Fault = 1,
    Accounting = 2,
    Event = 3,
    Mmio = 4,
    Capped = 5,
    Savings = 6,
    Swap = 7,
    Scan = 8,
}

impl Kind {
    /// Every kind, in tag order.
    pub const ALL: [Kind; 8] = [
        Kind::Fault,
        Kind::Accounting,
        Kind::Event,
        Kind::Mmio,
        Kind::Capped,
        Kind::Savings,
        Kind::Swap,
        Kind::Scan,
    ];

    /// Size of a record of this kind.
    pub const fn bytes(self) -> usize {
        match self {
            Kind::Fault | Kind::Accounting | Kind::Mmio | Kind::Savings => 40,
            Kind::Swap => 32,
            Kind::Event | Kind::Capped | Kind::Scan => 24,
        }
    }

    /// The kind tagged `tag`.
    pub fn from_tag(tag: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u8 == tag)
    }
}

/// Size of a fault record.
pub const FAULT_BYTES: usize = Kind::Fault.bytes();
/// Size of an accounting record.
pub const ACCOUNTING_BYTES: usize = Kind::Accounting.bytes();
/// Size of an event record.
pub const EVENT_BYTES: usize = Kind::Event.bytes();
/// Size of an MMIO aggregate record.
pub const MMIO_BYTES: usize = Kind::Mmio.bytes();
/// Size of a capped record.
pub const CAPPED_BYTES: usize = Kind::Capped.bytes();
/// Size of a savings record.
pub const SAVINGS_BYTES: usize = Kind::Savings.bytes();
/// Size of a swap record.
pub const SWAP_BYTES: usize = Kind::Swap.bytes();
/// Size of a pagedaemon scan record.
pub const SCAN_BYTES: usize = Kind::Scan.bytes();

/// How a trapped access ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// The engine mapped the page.
    Resolved,
    /// The engine refused the fault.
    Failed(FaultError),
    /// The IPA was a device window; the access was emulated.
    Mmio,
    /// No RAM or device: a synchronous external abort was injected into the guest.
    AbortInjected,
}

/// When, where and at what cost a fault was handled (version 2 only).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Timing {
    /// Counter at trap entry.
    pub time: u64,
    /// Physical CPU.
    pub cpu: u8,
    /// Counter ticks from trap entry to the record (saturating).
    pub cost: u32,
}

/// One fault record. `timing` is `None` only in a version 1 file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Record {
    pub seq: u64,
    pub ipa: Ipa,
    pub vm: u16,
    pub vcpu: u16,
    pub access: Access,
    pub case: Option<FaultCase>,
    pub outcome: Outcome,
    pub neighbours: u8,
    pub refaults: u8,
    pub timing: Option<Timing>,
}

/// One VM's memory at one moment (pages; see the module table).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Accounting {
    pub time: u64,
    pub cpu: u8,
    pub vm: u16,
    pub resident: u32,
    pub private: u32,
    pub shared: u32,
    pub zero: u32,
    pub swapped: u32,
    /// Free frames of the page pool (global: the same in every VM's record of one period).
    pub pool_free: u32,
}

/// The global memory figures of one accounting pass (frames; see the module table).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Savings {
    pub time: u64,
    pub cpu: u8,
    pub max_sharers: u16,
    pub distinct: u32,
    pub shared_frames: u32,
    pub saved_clone: u32,
    pub saved_image: u32,
    pub saved_dedup: u32,
    pub pool_used: u32,
    pub pool_free: u32,
}

impl Savings {
    /// Frames saved by every cause: `Σ resident − distinct` of the pass.
    pub fn saved(&self) -> u64 {
        u64::from(self.saved_clone) + u64::from(self.saved_image) + u64::from(self.saved_dedup)
    }
}

/// How a VM stopped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StopStatus {
    /// UVMHYP_EXIT or PSCI SYSTEM_OFF with this status.
    Exited(u32),
    /// The hypervisor stopped it (the console says why).
    Crashed,
    /// It asked for a reset (PSCI SYSTEM_RESET) and was stopped.
    Reset,
}

/// What happened to a VM.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EventKind {
    /// Its vCPU 0 was queued.
    VmStart,
    /// It stopped.
    VmStop(StopStatus),
    /// It was cloned from VM `from` (UVMHYP_CLONE), after its start event.
    Clone { from: u16 },
    /// A dedup pass merged `merged` pages.
    DedupPass { merged: u64 },
}

/// One event record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Event {
    pub time: u64,
    pub cpu: u8,
    pub vm: u16,
    pub what: EventKind,
}

/// What a swap record is about.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum SwapOp {
    /// The page was written to its slot and its frame freed.
    PageOut,
    /// A read of the page from its slot started: a fault's own, or one read ahead.
    PageIn,
    /// The slot was marked bad: reading it failed.
    BadRead,
    /// The slot was marked bad: writing it failed.
    BadWrite,
}

impl SwapOp {
    /// Every op, in code order.
    pub const ALL: [SwapOp; 4] = [
        SwapOp::PageOut,
        SwapOp::PageIn,
        SwapOp::BadRead,
        SwapOp::BadWrite,
    ];

    /// The code in the record.
    pub const fn code(self) -> u8 {
        match self {
            SwapOp::PageOut => 1,
            SwapOp::PageIn => 2,
            SwapOp::BadRead => 3,
            SwapOp::BadWrite => 4,
        }
    }
}

/// One page-out, page-in or bad slot (see the module table). `vm` 0: no VM (a bad slot, or a
/// page-out of a page no VM mapped).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SwapRecord {
    pub time: u64,
    pub cpu: u8,
    pub vm: u16,
    pub op: SwapOp,
    pub slot: u32,
    pub ipa: Ipa,
}

/// One pass of the pagedaemon (see the module table).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PdScan {
    pub time: u64,
    pub cpu: u8,
    pub scanned: u32,
    pub freed: u32,
    pub deactivated: u32,
}

/// Direction of an MMIO access.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Direction {
    Read,
    Write,
}

/// `count` accesses of VM `vm` to the register at `offset` of the device window at `base`,
/// counted by CPU `cpu` in the interval that ended at `time`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MmioCount {
    pub time: u64,
    pub cpu: u8,
    pub vm: u16,
    pub base: Ipa,
    pub offset: u32,
    pub direction: Direction,
    pub count: u64,
}

/// The file reached its size cap at `time`: nothing later was traced.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Capped {
    pub time: u64,
    pub cpu: u8,
    /// Records of `cpu`'s last flush that did not fit.
    pub unwritten: u32,
    /// The cap in bytes.
    pub cap: u64,
}

/// One record of any kind.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Entry {
    Fault(Record),
    Accounting(Accounting),
    Event(Event),
    Mmio(MmioCount),
    Capped(Capped),
    Savings(Savings),
    Swap(SwapRecord),
    Scan(PdScan),
}

/// A decoded trace file.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Trace {
    pub version: Version,
    /// Counter frequency in Hz; `None` in version 1.
    pub freq: Option<u64>,
    /// Every record, in file order.
    pub entries: Vec<Entry>,
}

impl Trace {
    /// The fault records, in file order.
    pub fn faults(&self) -> impl Iterator<Item = &Record> + '_ {
        self.entries.iter().filter_map(|e| match e {
            Entry::Fault(r) => Some(r),
            _ => None,
        })
    }

    /// The capped record, if the file reached its cap.
    pub fn capped(&self) -> Option<&Capped> {
        self.entries.iter().find_map(|e| match e {
            Entry::Capped(c) => Some(c),
            _ => None,
        })
    }

    /// `ticks` of the counter in microseconds (rounded down); `None` without a frequency (v1).
    pub fn ticks_to_us(&self, ticks: u64) -> Option<u64> {
        let f = self.freq?;
        Some((u128::from(ticks) * 1_000_000 / u128::from(f)) as u64)
    }
}

/// Why bytes could not be decoded as a trace. `record` counts records from 0, `offset` is the
/// record's byte offset in the file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DecodeError {
    /// Shorter than a header, or the magic is wrong.
    BadHeader,
    /// A version no reader knows.
    UnknownVersion(u32),
    /// A header field other than the version is wrong (v1 record size, v2 reserved bytes or a
    /// zero frequency).
    BadHeaderField(&'static str),
    /// The file ends inside this record.
    Truncated { record: usize, offset: usize },
    /// The record's kind byte is not a [`Kind`].
    BadKind {
        record: usize,
        offset: usize,
        tag: u8,
    },
    /// A field holds a value no writer produces.
    BadField {
        record: usize,
        offset: usize,
        field: &'static str,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DecodeError::BadHeader => write!(f, "not a trace (no UVMHYPTR header)"),
            DecodeError::UnknownVersion(v) => {
                write!(f, "trace version {v} (this reader knows 1 and 2)")
            }
            DecodeError::BadHeaderField(field) => write!(f, "bad header field `{field}`"),
            DecodeError::Truncated { record, offset } => {
                write!(
                    f,
                    "record {record} (byte {offset}): the file ends inside it"
                )
            }
            DecodeError::BadKind {
                record,
                offset,
                tag,
            } => {
                write!(f, "record {record} (byte {offset}): unknown kind {tag}")
            }
            DecodeError::BadField {
                record,
                offset,
                field,
            } => {
                write!(f, "record {record} (byte {offset}): bad field `{field}`")
            }
        }
    }
}

/// The version 2 file header for a counter at `freq` Hz.
pub fn header(freq: u64) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[..8].copy_from_slice(&TRACE_MAGIC);
    h[8..12].copy_from_slice(&Version::V2.number().to_le_bytes());
    h[16..24].copy_from_slice(&freq.to_le_bytes());
    h
}

/// Access code (both versions).
const fn access_code(a: Access) -> u8 {
    match a {
        Access::Read => 0,
        Access::Write => 1,
        Access::Exec => 2,
    }
}

/// Case code (both versions).
fn case_code(c: Option<FaultCase>) -> u8 {
    c.map_or(0xff, |c| c as u8)
}

/// Outcome code (both versions).
const fn outcome_code(o: Outcome) -> u8 {
    match o {
        Outcome::Resolved => 0,
        Outcome::Failed(e) => e as u8,
        Outcome::Mmio => 0x80,
        Outcome::AbortInjected => 0x81,
    }
}

/// Words of a fault record.
pub const FAULT_WORDS: usize = FAULT_BYTES / 8;
/// Words of an accounting record.
pub const ACCOUNTING_WORDS: usize = ACCOUNTING_BYTES / 8;
/// Words of an event record.
pub const EVENT_WORDS: usize = EVENT_BYTES / 8;
/// Words of an MMIO aggregate record.
pub const MMIO_WORDS: usize = MMIO_BYTES / 8;
/// Words of a capped record.
pub const CAPPED_WORDS: usize = CAPPED_BYTES / 8;
/// Words of a savings record.
pub const SAVINGS_WORDS: usize = SAVINGS_BYTES / 8;
/// Words of a swap record.
pub const SWAP_WORDS: usize = SWAP_BYTES / 8;
/// Words of a pagedaemon scan record.
pub const SCAN_WORDS: usize = SCAN_BYTES / 8;

/// The word holding bytes `b[0..8]` of a record (byte 0 least significant: the file is little
/// endian).
const fn word(b: [u8; 8]) -> u64 {
    u64::from_le_bytes(b)
}

/// Two 32-bit fields as one word (`lo` in bytes 0..4).
const fn halves(lo: u32, hi: u32) -> u64 {
    lo as u64 | (hi as u64) << 32
}

// Encoding builds each record's words (the file is a sequence of little-endian 64-bit words):
// a writer appends them to its buffer with plain stores, no byte shuffling on the fault path.

impl Record {
    /// The version 2 fault record's words. A record without timing (read from a v1 file) is
    /// written with time, CPU and cost 0.
    pub fn words(&self) -> [u64; FAULT_WORDS] {
        let t = self.timing.unwrap_or(Timing {
            time: 0,
            cpu: 0,
            cost: 0,
        });
        let codes = [
            Kind::Fault as u8,
            access_code(self.access),
            case_code(self.case),
            outcome_code(self.outcome),
        ];
        let head = word([
            codes[0],
            codes[1],
            codes[2],
            codes[3],
            self.neighbours,
            self.refaults,
            0,
            t.cpu,
        ]);
        let ids = u32::from(self.vm) | u32::from(self.vcpu) << 16;
        [head, self.seq, self.ipa.0, t.time, halves(ids, t.cost)]
    }
}

impl Accounting {
    pub fn words(&self) -> [u64; ACCOUNTING_WORDS] {
        let [v0, v1] = self.vm.to_le_bytes();
        let head = halves(
            u32::from_le_bytes([Kind::Accounting as u8, self.cpu, v0, v1]),
            self.pool_free,
        );
        [
            head,
            self.time,
            halves(self.resident, self.private),
            halves(self.shared, self.zero),
            halves(self.swapped, 0),
        ]
    }
}

impl EventKind {
    /// (event code, argument).
    fn code(self) -> (u8, u64) {
        match self {
            EventKind::VmStart => (1, 0),
            EventKind::VmStop(StopStatus::Exited(s)) => (2, u64::from(s)),
            EventKind::VmStop(StopStatus::Crashed) => (3, 0),
            EventKind::Clone { from } => (4, u64::from(from)),
            EventKind::DedupPass { merged } => (5, merged),
            EventKind::VmStop(StopStatus::Reset) => (8, 0),
        }
    }
}

impl Event {
    pub fn words(&self) -> [u64; EVENT_WORDS] {
        let (code, arg) = self.what.code();
        let [v0, v1] = self.vm.to_le_bytes();
        [
            word([Kind::Event as u8, code, v0, v1, self.cpu, 0, 0, 0]),
            self.time,
            arg,
        ]
    }
}

impl MmioCount {
    pub fn words(&self) -> [u64; MMIO_WORDS] {
        let [v0, v1] = self.vm.to_le_bytes();
        let head = halves(
            u32::from_le_bytes([Kind::Mmio as u8, self.cpu, v0, v1]),
            self.offset,
        );
        let direction = match self.direction {
            Direction::Read => 0,
            Direction::Write => 1,
        };
        [head, self.time, self.base.0, self.count, direction]
    }
}

impl Capped {
    pub fn words(&self) -> [u64; CAPPED_WORDS] {
        [
            halves(
                u32::from(Kind::Capped as u8) | u32::from(self.cpu) << 8,
                self.unwritten,
            ),
            self.time,
            self.cap,
        ]
    }
}

impl Savings {
    pub fn words(&self) -> [u64; SAVINGS_WORDS] {
        let [s0, s1] = self.max_sharers.to_le_bytes();
        let head = halves(
            u32::from_le_bytes([Kind::Savings as u8, self.cpu, s0, s1]),
            self.pool_free,
        );
        [
            head,
            self.time,
            halves(self.distinct, self.shared_frames),
            halves(self.saved_clone, self.saved_image),
            halves(self.saved_dedup, self.pool_used),
        ]
    }
}

impl SwapRecord {
    pub fn words(&self) -> [u64; SWAP_WORDS] {
        let [v0, v1] = self.vm.to_le_bytes();
        let head = halves(
            u32::from_le_bytes([Kind::Swap as u8, self.op.code(), v0, v1]),
            self.slot,
        );
        [head, self.time, self.ipa.0, u64::from(self.cpu)]
    }
}

impl PdScan {
    pub fn words(&self) -> [u64; SCAN_WORDS] {
        let head = halves(
            u32::from(Kind::Scan as u8) | u32::from(self.cpu) << 8,
            self.scanned,
        );
        [head, self.time, halves(self.freed, self.deactivated)]
    }
}

impl Entry {
    /// Append the record's version 2 bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut put = |words: &[u64]| {
            words
                .iter()
                .for_each(|w| out.extend_from_slice(&w.to_le_bytes()))
        };
        match self {
            Entry::Fault(r) => put(&r.words()),
            Entry::Accounting(a) => put(&a.words()),
            Entry::Event(e) => put(&e.words()),
            Entry::Mmio(m) => put(&m.words()),
            Entry::Capped(c) => put(&c.words()),
            Entry::Savings(g) => put(&g.words()),
            Entry::Swap(w) => put(&w.words()),
            Entry::Scan(p) => put(&p.words()),
        }
    }

    /// The record's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Entry::Fault(_) => Kind::Fault,
            Entry::Accounting(_) => Kind::Accounting,
            Entry::Event(_) => Kind::Event,
            Entry::Mmio(_) => Kind::Mmio,
            Entry::Capped(_) => Kind::Capped,
            Entry::Savings(_) => Kind::Savings,
            Entry::Swap(_) => Kind::Swap,
            Entry::Scan(_) => Kind::Scan,
        }
    }

    /// The record's counter time (`None` for a v1 fault record).
    pub fn time(&self) -> Option<u64> {
        match self {
            Entry::Fault(r) => r.timing.map(|t| t.time),
            Entry::Accounting(a) => Some(a.time),
            Entry::Event(e) => Some(e.time),
            Entry::Mmio(m) => Some(m.time),
            Entry::Capped(c) => Some(c.time),
            Entry::Savings(g) => Some(g.time),
            Entry::Swap(w) => Some(w.time),
            Entry::Scan(p) => Some(p.time),
        }
    }
}

/// A whole version 2 file: the header, then `entries`.
pub fn encode(freq: u64, entries: &[Entry]) -> Vec<u8> {
    let mut out = header(freq).to_vec();
    for e in entries {
        e.encode_into(&mut out);
    }
    out
}
