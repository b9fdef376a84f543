//! Host simulations of the hardware the engine reaches through traits: physical memory
//! ([`SimMem`]), the TLB ([`RecordingTlb`]) and a table-frame allocator ([`SimFrames`]).
//!
//! Used by the unit tests, `vm/tests` and `vm/benches`. Everything is `Send + Sync` and usable
//! from several threads. A shared [`EventLog`] can record descriptor writes and TLB
//! invalidations in one sequence, so tests can check the order break-before-make requires.
//!
//! Accesses outside a simulation's range are caller bugs; they never panic here: reads return
//! zeroes, writes are dropped, and a counter (`bad_accesses`, `bad_frees`) says how many there were.

use alloc::boxed::Box;
use alloc::collections::BTreeSet;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

use crate::addr::{Ipa, Pa, PAGE_SIZE};
use crate::physmem::{FrameHasher, PhysMem, FRAME_BYTES};
use crate::pmap::{RetiredTables, TableFrames, Tlb, Vmid};

/// One recorded hardware-visible event.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Event {
    /// `PhysMem::write_u64` (a descriptor write).
    Write { pa: Pa, value: u64 },
    /// `Tlb::invalidate_ipa`.
    InvalidateIpa { vmid: Vmid, ipa: Ipa },
    /// `Tlb::invalidate_vm`.
    InvalidateVm { vmid: Vmid },
}

/// A sequence of events shared by a [`SimMem`] and a [`RecordingTlb`].
#[derive(Default, Debug)]
pub struct EventLog {
    events: Mutex<Vec<Event>>,
}

impl EventLog {
    /// An empty log.
    pub fn new() -> Arc<EventLog> {
        Arc::new(EventLog::default())
    }
    /// Append an event.
    pub fn push(&self, e: Event) {
        self.events.lock().push(e);
    }
    /// The events so far, oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().clone()
    }
    /// Forget every event.
    pub fn clear(&self) {
        self.events.lock().clear();
    }
}

type Frame = Box<[u8; FRAME_BYTES]>;

/// Physical memory over a `Vec` of frames covering `[base, base + frames * 4 KiB)`.
///
/// Each frame has its own spin lock and is materialised on first write (an untouched frame reads
/// as zeroes), so a large simulated RAM costs host memory only for the frames used. `zero`
/// really clears 4 KiB, as the hypervisor must.
pub struct SimMem {
    base: Pa,
    frames: Vec<Mutex<Option<Frame>>>,
    bad: AtomicU64,
    log: Option<Arc<EventLog>>,
}

impl core::fmt::Debug for SimMem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SimMem")
            .field("range", &self.range())
            .finish()
    }
}

impl SimMem {
    /// `frames` frames of memory starting at `base` (rounded down to a page).
    pub fn new(base: Pa, frames: usize) -> SimMem {
        SimMem {
            base: base.page_base(),
            frames: (0..frames).map(|_| Mutex::new(None)).collect(),
            bad: AtomicU64::new(0),
            log: None,
        }
    }

    /// Like [`SimMem::new`], recording every `write_u64` in `log`.
    pub fn with_log(base: Pa, frames: usize, log: Arc<EventLog>) -> SimMem {
        SimMem {
            log: Some(log),
            ..SimMem::new(base, frames)
        }
    }

    /// The simulated physical range.
    pub fn range(&self) -> Range<Pa> {
        self.base..Pa(self.base.0 + self.frames.len() as u64 * PAGE_SIZE)
    }

    /// Number of accesses that fell outside the range (or were misaligned `u64` accesses).
    pub fn bad_accesses(&self) -> u64 {
        self.bad.load(Ordering::Relaxed)
    }

    /// Give every frame its host memory now (as if written once), so that later accesses cost
    /// what they would on a real machine, without a host allocation or page fault on first use
    /// (benchmarks compare like with like this way).
    pub fn materialise(&self) {
        for f in &self.frames {
            f.lock().get_or_insert_with(|| Box::new([0; FRAME_BYTES]));
        }
    }

    /// Number of frames that have been written at least once.
    pub fn materialised_frames(&self) -> usize {
        self.frames.iter().filter(|f| f.lock().is_some()).count()
    }

    fn bad(&self) {
        self.bad.fetch_add(1, Ordering::Relaxed);
    }

    /// Index of the frame holding `pa`, and the offset in it.
    fn locate(&self, pa: Pa) -> Option<(usize, usize)> {
        let off = pa.0.checked_sub(self.base.0)?;
        let idx = usize::try_from(off / PAGE_SIZE).ok()?;
        (idx < self.frames.len()).then_some((idx, (off % PAGE_SIZE) as usize))
    }

    /// A copy of the whole frame at `frame` (page aligned, in range).
    fn snapshot(&self, frame: Pa) -> Option<Frame> {
        match self.locate(frame) {
            Some((idx, 0)) => {
                let g = self.frames[idx].lock();
                Some(g.clone().unwrap_or_else(|| Box::new([0; FRAME_BYTES])))
            }
            _ => {
                self.bad();
                None
            }
        }
    }

    /// Apply `f` to the bytes `[pa, pa + len)`, frame by frame; `f(frame_bytes_or_none, range in
    /// frame, range in buffer)`.
    fn for_chunks(
        &self,
        pa: Pa,
        len: usize,
        mut f: impl FnMut(Option<&mut Option<Frame>>, Range<usize>, Range<usize>),
    ) {
        let mut done = 0;
        while done < len {
            let cur = Pa(pa.0.wrapping_add(done as u64));
            let in_frame = (PAGE_SIZE - cur.page_offset()) as usize;
            let n = in_frame.min(len - done);
            match self.locate(cur) {
                Some((idx, off)) => {
                    let mut g = self.frames[idx].lock();
                    f(Some(&mut g), off..off + n, done..done + n);
                }
                None => {
                    self.bad();
                    f(None, 0..0, done..done + n);
                }
            }
            done += n;
        }
    }
}

/// The frame's words through the engine's [`FrameHasher`].
fn hash_frame(bytes: &[u8; FRAME_BYTES]) -> u64 {
    let mut h = FrameHasher::new();
    for w in bytes.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        h.word(u64::from_le_bytes(word));
    }
    h.finish()
}

impl PhysMem for SimMem {
    fn zero(&self, frame: Pa) {
        match self.locate(frame) {
            Some((idx, 0)) => {
                let mut g = self.frames[idx].lock();
                match g.as_mut() {
                    Some(b) => b.fill(0),
                    None => *g = Some(Box::new([0; FRAME_BYTES])),
                }
            }
            _ => self.bad(),
        }
    }

    fn copy(&self, dst: Pa, src: Pa) {
        let (Some((si, 0)), Some((di, 0))) = (self.locate(src), self.locate(dst)) else {
            self.bad();
            return;
        };
        if si == di {
            return;
        }
        // Two frame locks, always taken in index order (every other path takes one): no
        // deadlock, and no allocation once `dst` is materialised.
        let (mut lo, mut hi) = (
            self.frames[si.min(di)].lock(),
            self.frames[si.max(di)].lock(),
        );
        let (s, d) = if si < di {
            (&mut lo, &mut hi)
        } else {
            (&mut hi, &mut lo)
        };
        match (s.as_ref(), d.as_mut()) {
            (Some(sb), Some(db)) => db.copy_from_slice(&sb[..]),
            (Some(sb), None) => **d = Some(sb.clone()),
            (None, Some(db)) => db.fill(0),
            (None, None) => {}
        }
    }

    fn read(&self, pa: Pa, buf: &mut [u8]) {
        let len = buf.len();
        self.for_chunks(pa, len, |frame, fr, br| match frame {
            Some(Some(bytes)) => buf[br].copy_from_slice(&bytes[fr]),
            _ => buf[br].fill(0),
        });
    }

    fn write(&self, pa: Pa, buf: &[u8]) {
        self.for_chunks(pa, buf.len(), |frame, fr, br| {
            if let Some(slot) = frame {
                let bytes = slot.get_or_insert_with(|| Box::new([0; FRAME_BYTES]));
                bytes[fr].copy_from_slice(&buf[br]);
            }
        });
    }

    fn same(&self, a: Pa, b: Pa) -> bool {
        match (self.snapshot(a), self.snapshot(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        }
    }

    fn hash(&self, frame: Pa) -> u64 {
        self.snapshot(frame).map_or(0, |b| hash_frame(&b))
    }

    fn read_u64(&self, pa: Pa) -> u64 {
        match self.locate(pa) {
            Some((idx, off)) if off.is_multiple_of(8) => {
                let g = self.frames[idx].lock();
                g.as_ref().map_or(0, |b| {
                    let mut word = [0u8; 8];
                    word.copy_from_slice(&b[off..off + 8]);
                    u64::from_le_bytes(word)
                })
            }
            _ => {
                self.bad();
                0
            }
        }
    }

    fn write_u64(&self, pa: Pa, value: u64) {
        match self.locate(pa) {
            Some((idx, off)) if off.is_multiple_of(8) => {
                let mut g = self.frames[idx].lock();
                let b = g.get_or_insert_with(|| Box::new([0; FRAME_BYTES]));
                b[off..off + 8].copy_from_slice(&value.to_le_bytes());
                if let Some(log) = &self.log {
                    log.push(Event::Write { pa, value });
                }
            }
            _ => self.bad(),
        }
    }
}

/// One TLB maintenance operation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum TlbOp {
    /// `invalidate_ipa(vmid, ipa)`.
    Ipa(Vmid, Ipa),
    /// `invalidate_vm(vmid)`.
    Vm(Vmid),
}

/// A `Tlb` that records (or only counts) every invalidation.
#[derive(Debug, Default)]
pub struct RecordingTlb {
    ops: Mutex<Vec<TlbOp>>,
    count_only: bool,
    ipa_ops: AtomicU64,
    vm_ops: AtomicU64,
    log: Option<Arc<EventLog>>,
}

impl RecordingTlb {
    /// A recorder keeping every operation.
    pub fn new() -> RecordingTlb {
        RecordingTlb::default()
    }
    /// A recorder that only counts (for benchmarks and long runs).
    pub fn counting() -> RecordingTlb {
        RecordingTlb {
            count_only: true,
            ..RecordingTlb::default()
        }
    }
    /// A recorder that also appends each operation to `log`.
    pub fn with_log(log: Arc<EventLog>) -> RecordingTlb {
        RecordingTlb {
            log: Some(log),
            ..RecordingTlb::default()
        }
    }
    /// Every operation recorded since the last `clear`, oldest first.
    pub fn ops(&self) -> Vec<TlbOp> {
        self.ops.lock().clone()
    }
    /// The `invalidate_ipa` calls, oldest first.
    pub fn invalidations(&self) -> Vec<(Vmid, Ipa)> {
        let ops = self.ops.lock();
        ops.iter()
            .filter_map(|op| match *op {
                TlbOp::Ipa(v, i) => Some((v, i)),
                TlbOp::Vm(_) => None,
            })
            .collect()
    }
    /// The `invalidate_vm` calls, oldest first.
    pub fn vm_invalidations(&self) -> Vec<Vmid> {
        let ops = self.ops.lock();
        ops.iter()
            .filter_map(|op| match *op {
                TlbOp::Vm(v) => Some(v),
                TlbOp::Ipa(..) => None,
            })
            .collect()
    }
    /// Number of `invalidate_ipa` calls since the last `clear`.
    pub fn ipa_count(&self) -> u64 {
        self.ipa_ops.load(Ordering::Relaxed)
    }
    /// Number of `invalidate_vm` calls since the last `clear`.
    pub fn vm_count(&self) -> u64 {
        self.vm_ops.load(Ordering::Relaxed)
    }
    /// Forget everything recorded.
    pub fn clear(&self) {
        self.ops.lock().clear();
        self.ipa_ops.store(0, Ordering::Relaxed);
        self.vm_ops.store(0, Ordering::Relaxed);
    }
    fn record(&self, op: TlbOp, e: Event) {
        if !self.count_only {
            self.ops.lock().push(op);
        }
        if let Some(log) = &self.log {
            log.push(e);
        }
    }
}

impl Tlb for RecordingTlb {
    fn invalidate_ipa(&self, vmid: Vmid, ipa: Ipa) {
        self.ipa_ops.fetch_add(1, Ordering::Relaxed);
        self.record(TlbOp::Ipa(vmid, ipa), Event::InvalidateIpa { vmid, ipa });
    }
    fn invalidate_vm(&self, vmid: Vmid) {
        self.vm_ops.fetch_add(1, Ordering::Relaxed);
        self.record(TlbOp::Vm(vmid), Event::InvalidateVm { vmid });
    }
}

/// A `TableFrames` over a range of frames: a free set handing out the lowest frame first, with a
/// real contiguous `alloc_root`. For pmap-only tests; the engine's page pool is the real one.
pub struct SimFrames {
    mem: Arc<dyn PhysMem>,
    range: Range<Pa>,
    free: Mutex<BTreeSet<u64>>,
    /// Sets given back by `retire_tables`, drained lazily as `Uvm` does (see `uvm.rs`).
    retired: Mutex<Vec<RetiredTables>>,
    bad_frees: AtomicU64,
}

impl SimFrames {
    /// `frames` frames from `base` (page aligned), every one free; frames are zeroed through
    /// `mem` when handed out.
    pub fn new(mem: Arc<dyn PhysMem>, base: Pa, frames: usize) -> SimFrames {
        let base = base.page_base();
        let free = (0..frames as u64).map(|i| base.0 + i * PAGE_SIZE).collect();
        SimFrames {
            mem,
            range: base..Pa(base.0 + frames as u64 * PAGE_SIZE),
            free: Mutex::new(free),
            retired: Mutex::new(Vec::new()),
            bad_frees: AtomicU64::new(0),
        }
    }
    /// Frames currently free, the retired ones included (they are handed out before any
    /// allocation fails).
    pub fn free_frames(&self) -> usize {
        self.free.lock().len() + self.retired()
    }
    /// Retired table frames not yet reused or freed.
    pub fn retired(&self) -> usize {
        self.retired.lock().iter().map(RetiredTables::len).sum()
    }
    /// Take one retired frame.
    fn pop_retired(&self) -> Option<Pa> {
        let mut retired = self.retired.lock();
        loop {
            let set = retired.last_mut()?;
            match set.pop() {
                Some(f) => return Some(f),
                None => {
                    retired.pop();
                }
            }
        }
    }
    /// Frames currently handed out.
    pub fn in_use(&self) -> usize {
        ((self.range.end.0 - self.range.start.0) / PAGE_SIZE) as usize - self.free_frames()
    }
    /// Frees of frames outside the range, misaligned, or already free.
    pub fn bad_frees(&self) -> u64 {
        self.bad_frees.load(Ordering::Relaxed)
    }
}

impl TableFrames for SimFrames {
    /// A retired frame first (re-zeroed), else the lowest free one.
    fn alloc_table(&self) -> Option<Pa> {
        let frame = match self.pop_retired() {
            Some(f) => f,
            None => Pa(self.free.lock().pop_first()?),
        };
        self.mem.zero(frame);
        Some(frame)
    }

    fn free_table(&self, frame: Pa) {
        let retired = self.retired.lock().iter().any(|set| set.contains(frame));
        let ok = !retired
            && frame.is_page_aligned()
            && self.range.contains(&frame)
            && self.free.lock().insert(frame.0);
        if !ok {
            self.bad_frees.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn retire_tables(&self, tables: RetiredTables) {
        if !tables.is_empty() {
            self.retired.lock().push(tables);
        }
    }

    /// The lowest aligned free pair; when there is none, the retired frames are freed first and
    /// the search is made again.
    fn alloc_root(&self) -> Option<Pa> {
        if let Some(root) = self.take_root() {
            return Some(root);
        }
        while let Some(f) = self.pop_retired() {
            self.free_table(f);
        }
        self.take_root()
    }
}

impl SimFrames {
    fn take_root(&self) -> Option<Pa> {
        let lo = {
            let mut free = self.free.lock();
            let lo = free
                .iter()
                .copied()
                .find(|&f| f.is_multiple_of(2 * PAGE_SIZE) && free.contains(&(f + PAGE_SIZE)))?;
            free.remove(&lo);
            free.remove(&(lo + PAGE_SIZE));
            lo
        };
        self.mem.zero(Pa(lo));
        self.mem.zero(Pa(lo + PAGE_SIZE));
        Some(Pa(lo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simmem_reads_what_was_written_and_counts_bad_accesses() {
        let m = SimMem::new(Pa(0x4000_0000), 4);
        assert_eq!(m.read_u64(Pa(0x4000_0008)), 0);
        m.write_u64(Pa(0x4000_0008), 0x1122_3344_5566_7788);
        assert_eq!(m.read_u64(Pa(0x4000_0008)), 0x1122_3344_5566_7788);
        // A write crossing frames.
        m.write(Pa(0x4000_0ffe), &[1, 2, 3, 4]);
        let mut buf = [0u8; 4];
        m.read(Pa(0x4000_0ffe), &mut buf);
        assert_eq!(buf, [1, 2, 3, 4]);
        assert_eq!(m.bad_accesses(), 0);
        m.write_u64(Pa(0x4000_4000), 1); // one past the end
        m.write_u64(Pa(0x4000_0004), 1); // misaligned
        assert_eq!(m.read_u64(Pa(0x3fff_f000)), 0);
        m.read(Pa(0x4000_3ffe), &mut buf); // half outside
        assert_eq!(buf, [0, 0, 0, 0]);
        m.zero(Pa(0x4000_0010)); // not a frame base
        assert_eq!(m.bad_accesses(), 5);
    }

    #[test]
    fn simmem_frame_operations() {
        let m = SimMem::new(Pa(0x1000), 3);
        let (a, b, c) = (Pa(0x1000), Pa(0x2000), Pa(0x3000));
        m.write(a, b"hello");
        assert!(!m.same(a, b));
        m.copy(b, a);
        assert!(m.same(a, b));
        assert_eq!(m.hash(a), m.hash(b));
        assert_ne!(m.hash(a), m.hash(c));
        m.zero(a);
        assert!(m.same(a, c));
        assert_eq!(m.hash(a), m.hash(c));
        assert_eq!(m.bad_accesses(), 0);
    }

    #[test]
    fn recording_tlb_and_log() {
        let log = EventLog::new();
        let tlb = RecordingTlb::with_log(log.clone());
        let m = SimMem::with_log(Pa(0), 1, log.clone());
        m.write_u64(Pa(8), 3);
        tlb.invalidate_ipa(Vmid(1), Ipa(0x1000));
        tlb.invalidate_vm(Vmid(2));
        assert_eq!(tlb.invalidations(), [(Vmid(1), Ipa(0x1000))]);
        assert_eq!(tlb.vm_invalidations(), [Vmid(2)]);
        assert_eq!((tlb.ipa_count(), tlb.vm_count()), (1, 1));
        assert_eq!(
            log.events(),
            [
                Event::Write {
                    pa: Pa(8),
                    value: 3
                },
                Event::InvalidateIpa {
                    vmid: Vmid(1),
                    ipa: Ipa(0x1000)
                },
                Event::InvalidateVm { vmid: Vmid(2) },
            ]
        );
        tlb.clear();
        assert!(tlb.ops().is_empty());
        assert_eq!(tlb.ipa_count(), 0);
        let counting = RecordingTlb::counting();
        counting.invalidate_ipa(Vmid(1), Ipa(0));
        assert!(counting.ops().is_empty());
        assert_eq!(counting.ipa_count(), 1);
    }

    #[test]
    fn sim_frames_alloc_free_and_root() {
        let mem: Arc<dyn PhysMem> = Arc::new(SimMem::new(Pa(0x1000), 8));
        let f = SimFrames::new(mem, Pa(0x1000), 8);
        assert_eq!(f.alloc_table(), Some(Pa(0x1000)));
        // The lowest 8 KiB-aligned free pair is 0x2000/0x3000.
        assert_eq!(f.alloc_root(), Some(Pa(0x2000)));
        assert_eq!(f.in_use(), 3);
        f.free_table(Pa(0x1000));
        f.free_table(Pa(0x1000));
        f.free_table(Pa(0x9000));
        assert_eq!(f.bad_frees(), 2);
        f.free_root(Pa(0x2000));
        assert_eq!(f.free_frames(), 8);
        let all: Vec<_> = core::iter::from_fn(|| f.alloc_table()).collect();
        assert_eq!(all.len(), 8);
        assert_eq!(f.alloc_root(), None);
    }
}
