//! Swap: the device trait, the slot allocator (`slots.rs`), and an in-memory device for host tests.
//!
//! A swap device stores whole frames in numbered slots (1-based, as the seed's `an_swslot`; 0 is
//! "no slot"). The hypervisor implements [`SwapDevice`] over virtio-blk; the host tests use
//! [`MemSwap`], which can be told to fail, and can run a test's hook in the middle of an I/O
//! ([`MemSwap::set_hook`]): the engine's locks are dropped and the page is BUSY then, which is
//! exactly the window a real, slow device leaves open. A read that fails marks the slot BAD (the seed's
//! `uvm_swap_markbad` + `SWSLOT_BAD`): it is never allocated again and the anon's data is lost.
//!
//! # Asynchronous reads
//! A device may also start a read and finish it later ([`SwapDevice::submit_read`], then
//! [`SwapDevice::poll`]): a swap-in then leaves its page BUSY and WANTED, and the fault returns
//! `Restart` naming the page, so that the hypervisor parks the vCPU instead of spinning on the
//! read. Whoever polls hands the finished reads to `Uvm::swap_poll`, which ends each swap-in as
//! the synchronous path would (unbusy, waking the waiters; or mark the slot bad and free the
//! page). The engine names each read by its page ([`PageIdx`]): a page is BUSY for one I/O at a
//! time, so the name is unique while the read is in flight. A device that declines
//! (the default, and [`MemSwap`] unless [`MemSwap::set_async`]) is read synchronously.
//!
//! # Locks
//! The slot map's lock is a leaf: nothing is locked while it is held. Device I/O is done with no
//! engine lock held (the page being read or written is BUSY instead).

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::addr::{Pa, PageIdx};
use crate::page::Busy;
use crate::physmem::{PhysMem, FRAME_BYTES};

mod slots;
pub use slots::{SlotMap, SlotState};

/// A swap I/O failed (device error, or the slot is out of the device's range).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SwapIoError;

/// A block device holding swapped pages.
pub trait SwapDevice: Send + Sync {
    /// Number of slots: valid slots are `1..=slots()`.
    fn slots(&self) -> u32;
    /// Read slot `slot` into `frame`.
    fn read(&self, slot: u32, mem: &dyn PhysMem, frame: Pa) -> Result<(), SwapIoError>;
    /// Write `frame` to slot `slot`.
    fn write(&self, slot: u32, mem: &dyn PhysMem, frame: Pa) -> Result<(), SwapIoError>;
    /// Write `frames` to the contiguous slots `first..first + frames.len()`, as one request
    /// where the device can (a page-out cluster, `pdaemon/cluster.rs`). `Err`: the request
    /// failed, and which of its slots hold their frame is not known. The default writes one
    /// frame at a time with [`SwapDevice::write`], stopping at the first error.
    fn write_cluster(
        &self,
        first: u32,
        mem: &dyn PhysMem,
        frames: &[Pa],
    ) -> Result<(), SwapIoError> {
        for (k, &frame) in frames.iter().enumerate() {
            let slot = u32::try_from(k)
                .ok()
                .and_then(|k| first.checked_add(k))
                .ok_or(SwapIoError)?;
            self.write(slot, mem, frame)?;
        }
        Ok(())
    }
    /// Start reading slot `slot` into `frame` without waiting for it. [`Submit::InFlight`]: its
    /// result comes later from [`SwapDevice::poll`], named `tag`; [`Submit::Declined`]: nothing
    /// was started (a synchronous device, or its queue is full) and the caller uses
    /// [`SwapDevice::read`]; `Err`: it failed at once, as `read` would have. The default
    /// declines.
    fn submit_read(
        &self,
        slot: u32,
        mem: &dyn PhysMem,
        frame: Pa,
        tag: PageIdx,
    ) -> Result<Submit, SwapIoError> {
        let _ = (slot, mem, frame, tag);
        Ok(Submit::Declined)
    }
    /// Start reading the contiguous slots `first..first + reads.len()` into the frames of
    /// `reads`, the read of slot `first + k` named by `reads[k]`'s tag, as one request where
    /// the device can (a readahead, `fault/readahead.rs`). Returns how many of the reads, from
    /// the first, are in flight, each reported by [`SwapDevice::poll`] under its own tag; the
    /// others were not started (declined, or failed at once: a readahead drops them alike).
    /// The default submits one [`SwapDevice::submit_read`] a slot, stopping at the first not
    /// in flight.
    fn submit_read_cluster(&self, first: u32, mem: &dyn PhysMem, reads: &[(Pa, PageIdx)]) -> usize {
        for (k, &(frame, tag)) in reads.iter().enumerate() {
            let slot = u32::try_from(k).ok().and_then(|k| first.checked_add(k));
            let started = slot.map(|slot| self.submit_read(slot, mem, frame, tag));
            if started != Some(Ok(Submit::InFlight)) {
                return k;
            }
        }
        reads.len()
    }
    /// The reads started by [`SwapDevice::submit_read`] that finished since the last call, by
    /// tag, with their results (on `Ok` the data is in the frame), in any order. The default
    /// (no read is ever in flight) has none.
    fn poll(&self, mem: &dyn PhysMem) -> Vec<(PageIdx, Result<(), SwapIoError>)> {
        let _ = mem;
        Vec::new()
    }
}

/// What [`SwapDevice::submit_read`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Submit {
    /// The read is in flight; [`SwapDevice::poll`] reports it.
    InFlight,
    /// Nothing started: read synchronously.
    Declined,
}

/// How [`Swap::start_read`] left a read.
pub(crate) enum Started {
    /// In flight: the swap keeps the page's BUSY token until the read is polled.
    InFlight,
    /// Finished (synchronously, or failed at submission): the caller has the token back.
    Done(Busy, Result<(), SwapIoError>),
}

/// Why a read is in flight.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ReadKind {
    /// A fault needs the page (`anonget`): a failure marks the slot bad.
    Demand,
    /// Read ahead of the faults (SEQUENTIAL advice, `fault/readahead.rs`): a failure just
    /// drops the page; the slot and its data stay for the fault that needs them.
    Ahead,
}

/// A swap device with its slot map (what `Uvm` holds once swap is configured).
pub struct Swap {
    pub(crate) dev: Arc<dyn SwapDevice>,
    pub(crate) map: crate::sync::Mutex<SlotMap>,
    /// The BUSY tokens of the pages asynchronous reads are filling, and why (a leaf lock).
    in_flight: crate::sync::Mutex<Vec<(Busy, ReadKind)>>,
}

impl Swap {
    /// Wrap a device; every slot starts free.
    ///
    /// # Locks
    /// None: the swap is unreachable by anyone else until the caller stores it.
    pub fn new(dev: Arc<dyn SwapDevice>) -> Swap {
        let n = dev.slots();
        Swap {
            dev,
            map: crate::sync::Mutex::new(SlotMap::new(n)),
            in_flight: crate::sync::Mutex::new(Vec::new()),
        }
    }

    /// Read slot `slot` into the page `busy` holds: asynchronously when the device takes it
    /// (the token is kept until [`Swap::take_in_flight`] hands it to the poller), else at once.
    /// The token is stored before the device sees the read, so a completion polled on another
    /// CPU at once finds it.
    ///
    /// # Locks
    /// Entry and exit: no engine lock held (the page is BUSY instead). Takes the in-flight
    /// list's lock (a leaf) and the device's, one after the other.
    pub(crate) fn start_read(
        &self,
        busy: Busy,
        slot: u32,
        mem: &dyn PhysMem,
        frame: Pa,
    ) -> Started {
        let pg = busy.page();
        self.in_flight.lock().push((busy, ReadKind::Demand));
        let result = match self.dev.submit_read(slot, mem, frame, pg) {
            Ok(Submit::InFlight) => return Started::InFlight,
            Ok(Submit::Declined) => None,
            Err(e) => Some(Err(e)),
        };
        // Not in flight, so nobody polled it: the token is still ours. (Only a device that
        // reported a read it declined could have taken it; its poller then finishes it.)
        let Some((busy, _)) = self.take_in_flight(pg) else {
            return Started::InFlight;
        };
        let result = result.unwrap_or_else(|| self.dev.read(slot, mem, frame));
        Started::Done(busy, result)
    }

    /// Read the contiguous slots from `first` ahead into the pages `busies` hold (`frames`
    /// their frames), asynchronously only, as one request where the device can
    /// ([`SwapDevice::submit_read_cluster`]). Returns the tokens of the reads not started (the
    /// caller drops their pages), in order. As [`Swap::start_read`], the tokens are stored
    /// before the device sees the reads.
    ///
    /// # Locks
    /// As [`Swap::start_read`].
    pub(crate) fn start_readahead_cluster(
        &self,
        busies: Vec<Busy>,
        first: u32,
        mem: &dyn PhysMem,
        frames: &[Pa],
    ) -> Vec<Busy> {
        let reads: Vec<(Pa, PageIdx)> = frames
            .iter()
            .zip(&busies)
            .map(|(&frame, b)| (frame, b.page()))
            .collect();
        self.in_flight
            .lock()
            .extend(busies.into_iter().map(|b| (b, ReadKind::Ahead)));
        let started = self.dev.submit_read_cluster(first, mem, &reads);
        // Only a device that reported a read it did not start could have taken its token (see
        // `start_read`): such a read is the poller's.
        reads[started.min(reads.len())..]
            .iter()
            .filter_map(|&(_, tag)| self.take_in_flight(tag).map(|(b, _)| b))
            .collect()
    }

    /// True when an asynchronous read may be in flight (the poller's fast path: nothing to ask
    /// the device otherwise).
    ///
    /// # Locks
    /// Takes the in-flight list's lock (a leaf).
    pub(crate) fn reading(&self) -> bool {
        !self.in_flight.lock().is_empty()
    }

    /// The token of the in-flight read named `tag` (`None`: no such read).
    ///
    /// # Locks
    /// Takes the in-flight list's lock (a leaf).
    pub(crate) fn take_in_flight(&self, tag: PageIdx) -> Option<(Busy, ReadKind)> {
        let mut l = self.in_flight.lock();
        let i = l.iter().position(|(b, _)| b.page() == tag)?;
        Some(l.swap_remove(i))
    }

    /// (free, used, bad) slot counts.
    ///
    /// # Locks
    /// Takes the slot map's lock (a leaf); anything above it may be held.
    pub fn counts(&self) -> (u32, u32, u32) {
        self.map.lock().counts()
    }
}

/// Which way a swap I/O goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SwapOp {
    Read,
    Write,
}

/// What [`MemSwap`] runs in the middle of each I/O, given its direction and slot: other engine
/// operations, typically. An `Err` fails the I/O (failing chosen slots is a hook that returns
/// `Err` for them).
pub type SwapHook = dyn Fn(SwapOp, u32) -> Result<(), SwapIoError> + Send + Sync;

/// An asynchronous read [`MemSwap`] holds: its tag, slot and frame, and whether the test let it
/// finish.
#[derive(Clone, Copy)]
struct Queued {
    tag: PageIdx,
    slot: u32,
    frame: Pa,
    finished: bool,
}

/// An in-memory swap device for host tests and benches; reads and writes can be made to fail, and
/// a hook can act while an I/O is in flight. Made asynchronous ([`MemSwap::set_async`]), it
/// takes reads and finishes each only when the test says so ([`MemSwap::finish`]), in whatever
/// order the test picks.
pub struct MemSwap {
    slots: crate::sync::Mutex<Vec<Option<Box<[u8]>>>>,
    hook: crate::sync::Mutex<Option<Arc<SwapHook>>>,
    asynchronous: core::sync::atomic::AtomicBool,
    queued: crate::sync::Mutex<Vec<Queued>>,
    fail_reads: AtomicU32,
    fail_writes: AtomicU32,
    /// Completed reads.
    pub reads: AtomicU64,
    /// Read requests that [`SwapDevice::submit_read_cluster`] queued (one a call, of any
    /// length; the reads still finish one by one, as the test picks).
    pub read_clusters: AtomicU64,
    /// Completed writes (pages).
    pub writes: AtomicU64,
    /// Completed write requests: one a [`SwapDevice::write`], one a
    /// [`SwapDevice::write_cluster`] of any length.
    pub write_requests: AtomicU64,
}

impl MemSwap {
    /// A device of `n` slots.
    ///
    /// # Locks
    /// None.
    pub fn new(n: u32) -> Arc<MemSwap> {
        Arc::new(MemSwap {
            slots: crate::sync::Mutex::new((0..n).map(|_| None).collect()),
            hook: crate::sync::Mutex::new(None),
            asynchronous: core::sync::atomic::AtomicBool::new(false),
            queued: crate::sync::Mutex::new(Vec::new()),
            fail_reads: AtomicU32::new(0),
            fail_writes: AtomicU32::new(0),
            reads: AtomicU64::new(0),
            read_clusters: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            write_requests: AtomicU64::new(0),
        })
    }

    /// Take later reads asynchronously (`true`) or read at once (`false`, the default).
    ///
    /// # Locks
    /// None (an atomic).
    pub fn set_async(&self, on: bool) {
        self.asynchronous.store(on, Ordering::SeqCst);
    }

    /// Let the queued read of slot `slot` finish at the next [`SwapDevice::poll`]; false when
    /// no read of it is queued. (The read itself — data, hook, injected failure — happens in
    /// the poll.)
    ///
    /// # Locks
    /// Takes the queue's lock (a leaf).
    pub fn finish(&self, slot: u32) -> bool {
        let mut q = self.queued.lock();
        let hit = q.iter_mut().find(|r| r.slot == slot && !r.finished);
        hit.map(|r| r.finished = true).is_some()
    }

    /// Reads queued and not yet polled.
    ///
    /// # Locks
    /// Takes the queue's lock (a leaf).
    pub fn queued_reads(&self) -> usize {
        self.queued.lock().len()
    }

    /// Make the next `n` reads fail.
    ///
    /// # Locks
    /// None (an atomic).
    pub fn fail_next_reads(&self, n: u32) {
        self.fail_reads.store(n, Ordering::SeqCst);
    }

    /// Make the next `n` write requests fail (a cluster's is one).
    ///
    /// # Locks
    /// None (an atomic).
    pub fn fail_next_writes(&self, n: u32) {
        self.fail_writes.store(n, Ordering::SeqCst);
    }

    /// Run `hook` in the middle of every later I/O (`None`: no hook). The I/O has started (the
    /// engine is waiting for it, its page BUSY) and not completed: the hook runs before a read's
    /// data reaches the frame or a write's data reaches the slot, and before the result is
    /// decided. The hook runs with no lock of the device held, so it may start I/O itself (and is
    /// then called again, inside itself).
    ///
    /// # Locks
    /// Takes the hook's lock (a leaf).
    pub fn set_hook(&self, hook: Option<Arc<SwapHook>>) {
        *self.hook.lock() = hook;
    }

    /// The middle of an I/O: run the hook, if any, with its lock dropped.
    fn mid_io(&self, op: SwapOp, slot: u32) -> Result<(), SwapIoError> {
        let hook = self.hook.lock().clone();
        hook.map_or(Ok(()), |h| h(op, slot))
    }

    fn take_failure(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
            .is_ok()
    }
}

impl SwapDevice for MemSwap {
    fn slots(&self) -> u32 {
        u32::try_from(self.slots.lock().len()).unwrap_or(u32::MAX)
    }

    fn read(&self, slot: u32, mem: &dyn PhysMem, frame: Pa) -> Result<(), SwapIoError> {
        self.mid_io(SwapOp::Read, slot)?;
        if Self::take_failure(&self.fail_reads) {
            return Err(SwapIoError);
        }
        let slots = self.slots.lock();
        let i = (slot as usize).checked_sub(1).ok_or(SwapIoError)?;
        match slots.get(i) {
            Some(Some(data)) => mem.write(frame, data),
            Some(None) => mem.zero(frame),
            None => return Err(SwapIoError),
        }
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn write(&self, slot: u32, mem: &dyn PhysMem, frame: Pa) -> Result<(), SwapIoError> {
        self.write_cluster(slot, mem, &[frame])
    }

    /// One request: the hook runs for every slot before any data moves, and an injected
    /// failure or any slot out of range fails the whole request with nothing stored.
    fn write_cluster(
        &self,
        first: u32,
        mem: &dyn PhysMem,
        frames: &[Pa],
    ) -> Result<(), SwapIoError> {
        let n = u32::try_from(frames.len()).map_err(|_| SwapIoError)?;
        let last = first.checked_add(n).ok_or(SwapIoError)?;
        for slot in first..last {
            self.mid_io(SwapOp::Write, slot)?;
        }
        if Self::take_failure(&self.fail_writes) {
            return Err(SwapIoError);
        }
        let data: Vec<Box<[u8]>> = frames
            .iter()
            .map(|&frame| {
                let mut buf = alloc::vec![0u8; FRAME_BYTES].into_boxed_slice();
                mem.read(frame, &mut buf);
                buf
            })
            .collect();
        let mut slots = self.slots.lock();
        let range = (first as usize).checked_sub(1).ok_or(SwapIoError)?..(last as usize - 1);
        let dest = slots.get_mut(range).ok_or(SwapIoError)?;
        for (d, buf) in dest.iter_mut().zip(data) {
            *d = Some(buf);
        }
        self.writes.fetch_add(u64::from(n), Ordering::Relaxed);
        self.write_requests.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn submit_read(
        &self,
        slot: u32,
        _mem: &dyn PhysMem,
        frame: Pa,
        tag: PageIdx,
    ) -> Result<Submit, SwapIoError> {
        if !self.asynchronous.load(Ordering::SeqCst) {
            return Ok(Submit::Declined);
        }
        if slot == 0 || slot > self.slots() {
            return Err(SwapIoError);
        }
        self.queued.lock().push(Queued {
            tag,
            slot,
            frame,
            finished: false,
        });
        Ok(Submit::InFlight)
    }

    /// One request queued whole or not at all (declined when not asynchronous, or when a slot
    /// is out of range); each read then finishes on its own ([`MemSwap::finish`]).
    fn submit_read_cluster(
        &self,
        first: u32,
        _mem: &dyn PhysMem,
        reads: &[(Pa, PageIdx)],
    ) -> usize {
        let n = u32::try_from(reads.len()).ok();
        let last = n.and_then(|n| first.checked_add(n)).map(|end| end - 1);
        let in_range = first > 0 && last.is_some_and(|last| last <= self.slots());
        if !self.asynchronous.load(Ordering::SeqCst) || !in_range {
            return 0;
        }
        let mut q = self.queued.lock();
        for (slot, &(frame, tag)) in (first..).zip(reads) {
            q.push(Queued {
                tag,
                slot,
                frame,
                finished: false,
            });
        }
        self.read_clusters.fetch_add(1, Ordering::Relaxed);
        reads.len()
    }

    fn poll(&self, mem: &dyn PhysMem) -> Vec<(PageIdx, Result<(), SwapIoError>)> {
        let done: Vec<Queued> = {
            let mut q = self.queued.lock();
            let (done, rest) = q.iter().partition(|r| r.finished);
            *q = rest;
            done
        };
        done.into_iter()
            .map(|r| (r.tag, self.read(r.slot, mem, r.frame)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hook runs before the data moves (a write it starts lands first and is overwritten),
    /// sees the direction and slot, and fails the I/O it returns `Err` for.
    #[test]
    fn mem_swap_hook_runs_mid_io_and_can_fail_it() {
        use crate::sim::SimMem;
        use core::sync::atomic::AtomicBool;
        let mem = Arc::new(SimMem::new(Pa(0), 2));
        let dev = MemSwap::new(2);
        let (a, b) = (Pa(0), Pa(crate::addr::PAGE_SIZE));
        mem.write(a, b"first");
        mem.write(b, b"nested");
        let inner = AtomicBool::new(false);
        let (d, m) = (dev.clone(), mem.clone());
        dev.set_hook(Some(Arc::new(move |op, slot| {
            if op == SwapOp::Write && !inner.swap(true, Ordering::SeqCst) {
                assert_eq!(d.write(slot, m.as_ref(), b), Ok(()));
            }
            if op == SwapOp::Read && slot == 2 {
                return Err(SwapIoError);
            }
            Ok(())
        })));
        assert_eq!(dev.write(1, mem.as_ref(), a), Ok(()));
        assert_eq!(dev.read(1, mem.as_ref(), b), Ok(()));
        let mut buf = [0u8; 6];
        mem.read(b, &mut buf);
        assert_eq!(&buf[..5], b"first", "the outer write lands last");
        assert_eq!(dev.read(2, mem.as_ref(), b), Err(SwapIoError));
        dev.set_hook(None);
        assert_eq!(dev.read(2, mem.as_ref(), b), Ok(()));
        assert_eq!(dev.writes.load(Ordering::Relaxed), 2);
    }
}

#[cfg(test)]
mod cluster_default_tests {
    use super::*;
    use crate::sim::SimMem;

    /// A device with only the one-slot [`SwapDevice::submit_read`] (over a [`MemSwap`]): the
    /// trait's default `submit_read_cluster`.
    struct OneByOne(Arc<MemSwap>);

    impl SwapDevice for OneByOne {
        fn slots(&self) -> u32 {
            self.0.slots()
        }
        fn read(&self, slot: u32, mem: &dyn PhysMem, frame: Pa) -> Result<(), SwapIoError> {
            self.0.read(slot, mem, frame)
        }
        fn write(&self, slot: u32, mem: &dyn PhysMem, frame: Pa) -> Result<(), SwapIoError> {
            self.0.write(slot, mem, frame)
        }
        fn submit_read(
            &self,
            slot: u32,
            mem: &dyn PhysMem,
            frame: Pa,
            tag: PageIdx,
        ) -> Result<Submit, SwapIoError> {
            self.0.submit_read(slot, mem, frame, tag)
        }
        fn poll(&self, mem: &dyn PhysMem) -> Vec<(PageIdx, Result<(), SwapIoError>)> {
            self.0.poll(mem)
        }
    }

    /// The default submits one read a slot and stops at the first out of range: the reads
    /// before it are in flight, each under its own tag; nothing is one request.
    #[test]
    fn the_default_cluster_read_submits_slot_by_slot_up_to_the_first_refused() {
        let mem = SimMem::new(Pa(0), 4);
        let inner = MemSwap::new(3);
        inner.set_async(true);
        let dev = OneByOne(inner.clone());
        let reads: Vec<(Pa, PageIdx)> = (0..3u32)
            .map(|k| (Pa(u64::from(k) * 4096), PageIdx(k)))
            .collect();
        assert_eq!(
            dev.submit_read_cluster(2, &mem, &reads),
            2,
            "slots 2 and 3; 4 is out of range"
        );
        assert_eq!(inner.queued_reads(), 2);
        assert_eq!(inner.read_clusters.load(Ordering::Relaxed), 0);
        assert!(inner.finish(3) && inner.finish(2));
        let mut tags: Vec<u32> = dev
            .poll(&mem)
            .into_iter()
            .map(|(t, r)| {
                assert_eq!(r, Ok(()));
                t.0
            })
            .collect();
        tags.sort_unstable();
        assert_eq!(tags, [0, 1]);
        inner.set_async(false);
        assert_eq!(dev.submit_read_cluster(1, &mem, &reads[..1]), 0, "declined");
    }
}
