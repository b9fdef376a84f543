//! The engine's swap device (`vm::swap::SwapDevice`) over the virtio-blk disk (`arch::virtio`).
//!
//! Slot `s` (1-based, as the engine numbers them) is the 4 KiB block at sector `(s - 1) × 8`; the
//! disk's size fixes the slot count. Data moves through one DMA buffer (a bounce buffer) of
//! [`CLUSTER_BLOCKS`] blocks: the device never writes a pool frame directly, so every
//! guest-visible byte still goes through `PhysMem` and its cache maintenance. A page-out cluster
//! (`SwapDevice::write_cluster`, contiguous slots) is one virtio request of `8 × n` sectors. The
//! engine calls `read`/`write`/`write_cluster` with none of its locks held (the pages are BUSY
//! instead).
//!
//! Swap-in reads are asynchronous (`SwapDevice::submit_read`; a readahead's consecutive slots as
//! one request, `SwapDevice::submit_read_cluster`): up to `virtio::MAX_IN_FLIGHT` requests are
//! left in flight, each with its own buffer, and the faulting vCPU parks on its BUSY page; the run
//! loop calls [`poll`] before every guest entry and on every idle tick, which copies the finished
//! reads into their frames and hands them to the engine (`Uvm::swap_poll`), waking the parked
//! vCPUs. With the queue full a read waits synchronously, as writes always do.
//!
//! The disk's interrupt is routed to CPU 0 ([`attach`]): a completion wakes it from an idle WFI,
//! or makes its guest exit, so the next [`poll`] comes at once instead of at the next idle tick
//! (up to 1 ms) or guest exit. [`on_irq`] only quietens the device (and notes it,
//! [`take_interrupted`]); [`poll`] does the work — on an idle CPU when there is one: a guest's
//! CPU that took the interrupt kicks that CPU rather than copy the reads itself (`run.rs`).
//!
//! [`attach`] runs a self-test first — write two patterns to the last slot, read them back — and
//! leaves swap off (with a console line saying why) when there is no disk or it fails.
//!
//! # Locks
//! The disk's lock is a leaf: held for one request, with nothing else taken under it.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;

use core::sync::atomic::{AtomicBool, Ordering};
use spin::{Mutex, Once};
use vm::physmem::PhysMem;
use vm::swap::{Submit, SwapDevice, SwapIoError};
use vm::{Pa, PageIdx};

use crate::arch::gic;
use crate::arch::virtio::{self, Dir, Disk, DiskError, IoBuf, Submitted, BLOCK_BYTES, BLOCK_SECTORS};

/// Blocks of the bounce buffer, and so most slots of one write request: the engine's page-out
/// cluster (64 KiB).
const CLUSTER_BLOCKS: usize = vm::pdaemon::CLUSTER_PAGES;

/// Read buffers kept for reuse: as many as can be in flight and as many again finished whose
/// data `poll` is still copying out, after it dropped the disk's lock — during those copies new
/// reads start (with half as many, 106 buffers were allocated in swapbench's ascending pass).
const SPARE_BUFFERS: usize = 2 * virtio::MAX_IN_FLIGHT;

/// The disk, its bounce buffer, and the frames of the reads in flight.
struct Locked {
    disk: Disk,
    buf: Box<IoBuf>,
    targets: Vec<Target>,
}

/// Where one read request in flight lands: block `k` in `frames[k]`, named by the engine's tag
/// beside it. The disk names the request by its first page's tag.
struct Target {
    tag: u64,
    frames: Vec<(PageIdx, Pa)>,
}

/// Swap slots on the virtio-blk disk.
pub struct SwapDisk {
    inner: Mutex<Locked>,
    /// Buffers of finished reads (of [`CLUSTER_BLOCKS`], so any serves any read), kept for the
    /// next ones: allocating and zeroing 64 KiB for each read cost under TCG about as much as
    /// submitting it (36 µs of ~80). A leaf lock of its own, so that no one waits for the
    /// disk's to give a buffer back.
    #[allow(clippy::vec_box, reason = "the disk takes and gives back a Box (a request's header and status must not move while in flight): unboxed here, each read would allocate one again")]
    spare: Mutex<Vec<Box<IoBuf>>>,
    slots: u32,
}

impl SwapDisk {
    /// Move the `blocks` slots from `slot` (at most [`CLUSTER_BLOCKS`]) between the disk and
    /// the bounce buffer as one request, after `before` and before `after` ran on the buffer's
    /// first `blocks` blocks.
    ///
    /// # Locks
    /// Takes and releases the disk's lock (a leaf).
    fn io(&self, dir: Dir, slot: u32, blocks: usize, before: impl FnOnce(&mut [u8]), after: impl FnOnce(&[u8])) -> Result<(), SwapIoError> {
        let sector = self.sector(slot)?;
        let len = blocks.checked_mul(BLOCK_BYTES).filter(|_| (1..=CLUSTER_BLOCKS).contains(&blocks)).ok_or(SwapIoError)?;
        let mut l = self.lock();
        let Locked { disk, buf, .. } = &mut *l;
        before(&mut buf.data[..len]);
        disk.transfer(dir, sector, blocks, buf).map_err(|_| SwapIoError)?;
        after(&buf.data[..len]);
        Ok(())
    }

    /// The disk's lock, napping between tries: its holder waits on QEMU's I/O thread, which a
    /// spinning waiter would keep off a host CPU (`virtio::NAP_US`).
    fn lock(&self) -> spin::MutexGuard<'_, Locked> {
        loop {
            if let Some(l) = self.inner.try_lock() {
                return l;
            }
            crate::arch::timer::nap(virtio::NAP_US);
        }
    }

    /// Start reading the slots from `first` into the frames of `reads` as one request of
    /// `8 × n` sectors, named by the first read's tag. `Ok(false)`: the disk's queue is full;
    /// `Err`: out of range (more than [`CLUSTER_BLOCKS`] slots, or past the disk) or the device
    /// failed it.
    ///
    /// # Locks
    /// Takes and releases the disk's lock (a leaf).
    fn submit(&self, first: u32, reads: &[(Pa, PageIdx)]) -> Result<bool, SwapIoError> {
        let sector = self.sector(first)?;
        let Some(&(_, head)) = reads.first().filter(|_| reads.len() <= CLUSTER_BLOCKS) else { return Err(SwapIoError) };
        let tag = u64::from(head.0);
        // Popped in a statement of its own: a `lock()` temporary in the `let` below would keep
        // the spare lock held across `IoBuf::new` (64 KiB allocated and zeroed), where `poll`
        // on another CPU spins on it.
        let spare = self.spare.lock().pop();
        let buf = spare.unwrap_or_else(|| IoBuf::new(CLUSTER_BLOCKS));
        let mut l = self.lock();
        match l.disk.submit_read(sector, reads.len(), tag, buf).map_err(|_| SwapIoError)? {
            Submitted::InFlight => {}
            Submitted::Declined(buf) => {
                drop(l);
                // Kept, not freed: the readahead that was declined asks again soon, and each
                // buffer allocated anew is 64 KiB zeroed (with the spare list's overflow, 3.7 %
                // of swapbench's ascending pass went into zeroing them).
                self.keep_spare(buf);
                return Ok(false);
            }
        }
        l.targets.push(Target { tag, frames: reads.iter().map(|&(frame, pg)| (pg, frame)).collect() });
        Ok(true)
    }

    /// Keep `buf` for a later read, unless [`SPARE_BUFFERS`] are kept already.
    ///
    /// # Locks
    /// Takes and releases the spare buffers' lock (a leaf); a buffer not kept is freed after it.
    fn keep_spare(&self, buf: Box<IoBuf>) {
        let _unkept = {
            let mut spare = self.spare.lock();
            if spare.len() < SPARE_BUFFERS {
                spare.push(buf);
                None
            } else {
                Some(buf)
            }
        };
    }

    /// The first sector of slot `slot`.
    fn sector(&self, slot: u32) -> Result<u64, SwapIoError> {
        if slot == 0 || slot > self.slots {
            return Err(SwapIoError);
        }
        Ok(u64::from(slot - 1) * BLOCK_SECTORS)
    }
}

impl SwapDevice for SwapDisk {
    fn slots(&self) -> u32 {
        self.slots
    }

    fn read(&self, slot: u32, mem: &dyn PhysMem, frame: Pa) -> Result<(), SwapIoError> {
        self.io(Dir::Read, slot, 1, |_| {}, |data| mem.write(frame, data))
    }

    fn write(&self, slot: u32, mem: &dyn PhysMem, frame: Pa) -> Result<(), SwapIoError> {
        self.io(Dir::Write, slot, 1, |data| mem.read(frame, data), |_| {})
    }

    /// One request for each [`CLUSTER_BLOCKS`] frames (the engine never asks for more).
    fn write_cluster(&self, first: u32, mem: &dyn PhysMem, frames: &[Pa]) -> Result<(), SwapIoError> {
        for (k, chunk) in frames.chunks(CLUSTER_BLOCKS).enumerate() {
            let slot = u32::try_from(k * CLUSTER_BLOCKS).ok().and_then(|d| first.checked_add(d)).ok_or(SwapIoError)?;
            let last = u32::try_from(chunk.len() - 1).ok().and_then(|d| slot.checked_add(d)).ok_or(SwapIoError)?;
            self.sector(last)?;
            let fill = |data: &mut [u8]| {
                for (block, &frame) in data.chunks_exact_mut(BLOCK_BYTES).zip(chunk) {
                    mem.read(frame, block);
                }
            };
            self.io(Dir::Write, slot, chunk.len(), fill, |_| {})?;
        }
        Ok(())
    }

    fn submit_read(&self, slot: u32, _mem: &dyn PhysMem, frame: Pa, tag: PageIdx) -> Result<Submit, SwapIoError> {
        match self.submit(slot, &[(frame, tag)])? {
            true => Ok(Submit::InFlight),
            false => Ok(Submit::Declined),
        }
    }

    fn submit_read_cluster(&self, first: u32, _mem: &dyn PhysMem, reads: &[(Pa, PageIdx)]) -> usize {
        match self.submit(first, reads) {
            Ok(true) => reads.len(),
            Ok(false) | Err(_) => 0,
        }
    }

    fn poll(&self, mem: &dyn PhysMem) -> Vec<(PageIdx, Result<(), SwapIoError>)> {
        // The finished reads and their targets are taken under the disk's lock, their data
        // copied into the frames after it: a submit on another CPU (a readahead) must not wait
        // for these copies.
        let finished: Vec<(Target, Result<Box<IoBuf>, DiskError>)> = {
            // Another CPU holding the disk polls (or waits in a transfer, which collects): skip.
            let Some(mut l) = self.inner.try_lock() else { return Vec::new() };
            let done = l.disk.poll();
            done.into_iter()
                .filter_map(|(tag, result)| {
                    let i = l.targets.iter().position(|t| t.tag == tag)?;
                    Some((l.targets.swap_remove(i), result))
                })
                .collect()
        };
        let mut out = Vec::with_capacity(finished.iter().map(|(t, _)| t.frames.len()).sum());
        for (target, result) in finished {
            for (k, (pg, frame)) in target.frames.into_iter().enumerate() {
                let block = result.as_ref().ok().and_then(|buf| buf.data.chunks_exact(BLOCK_BYTES).nth(k));
                out.push((pg, block.map(|data| mem.write(frame, data)).ok_or(SwapIoError)));
            }
            if let Ok(buf) = result {
                self.keep_spare(buf);
            }
        }
        out
    }
}

/// Finish the swap-ins whose reads completed (see the module documentation). Called by the run
/// loop before entering a guest and when idle; cheap when nothing is in flight.
///
/// # Locks
/// Entry and exit: nothing held. Takes what `Uvm::swap_poll` takes, the disk's lock with `try_lock`.
pub fn poll(uvm: &vm::uvm::Uvm) {
    uvm.swap_poll();
}

/// The swap disk's INTID and its transport's registers, once its interrupt is enabled.
static DISK_IRQ: Once<(u32, u64)> = Once::new();

/// A physical IRQ `intid` arrived: if it is the swap disk's, quieten the device (the run loop's
/// next [`poll`] collects what completed).
///
/// # Locks
/// Takes none (the disk's lock may be held elsewhere: `virtio::ack_interrupt`).
pub fn on_irq(intid: u32) {
    if let Some(&(_, base)) = DISK_IRQ.get().filter(|&&(id, _)| id == intid) {
        virtio::ack_interrupt(base);
        INTERRUPTED.store(true, Ordering::Release);
    }
}

/// The disk interrupted since the last [`take_interrupted`].
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether the disk interrupted (requests completed) since the last call.
pub fn take_interrupted() -> bool {
    INTERRUPTED.swap(false, Ordering::AcqRel)
}

/// Why swap is off (the doc comments are the console's words).
#[derive(Clone, Copy, Debug)]
enum Off {
    /// No virtio-blk device on the virtio-mmio bus.
    NoDisk,
    /// The disk is smaller than one slot.
    TooSmall,
    /// The self-test's write or read failed.
    Io(DiskError),
    /// The self-test read back other bytes than it wrote.
    Mismatch,
}

impl core::fmt::Display for Off {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Off::NoDisk => f.write_str("no virtio-blk disk on the virtio-mmio bus"),
            Off::TooSmall => f.write_str("the virtio-blk disk is smaller than 4 KiB"),
            Off::Io(e) => write!(f, "the disk's self-test failed: {e:?}"),
            Off::Mismatch => f.write_str("the disk's self-test read back other bytes than it wrote"),
        }
    }
}

/// Find the disk, test it, and give it to `uvm` as its swap device. Prints one console line either
/// way. CPU 0 at boot, before any vCPU runs.
///
/// # Locks
/// Takes the engine's swap configuration lock (`Uvm::set_swap`); nothing held.
pub fn attach(uvm: &vm::uvm::Uvm) {
    match open() {
        Ok((dev, raw)) => {
            let (slot, base, sectors, intid) = {
                let l = dev.inner.lock();
                (l.disk.slot, l.disk.base(), l.disk.sectors, l.disk.intid())
            };
            // Known to `on_irq` before it can fire: an interrupt nobody quietens would be
            // pending again the moment it is ended.
            DISK_IRQ.call_once(|| (intid, base));
            if let Err(e) = gic::enable_spi(intid, 0) {
                log::warn!("swap: the disk's interrupt {intid} cannot be enabled ({e:?}); completions wait for the idle tick");
            }
            log::info!(
                "swap: virtio-blk in virtio-mmio slot {slot} ({base:#x}), {} MiB, {} slots of 4 KiB, self-test passed",
                sectors >> 11,
                dev.slots
            );
            if let Some(raw) = raw {
                let rate = |us: u64| raw.bytes() * 1_000_000 / us.max(1) / 1024;
                log::info!(
                    "swap: raw sequential 4 KiB requests: {} KiB written in {} us ({} KiB/s), read in {} us ({} KiB/s)",
                    raw.bytes() / 1024,
                    raw.write_us,
                    rate(raw.write_us),
                    raw.read_us,
                    rate(raw.read_us)
                );
                let (w, r) = (&raw.big_write_us, &raw.big_read_us);
                log::info!(
                    "swap: raw sequential {} KiB requests: {} KiB written in {} us ({} KiB/s), read in {} us ({} KiB/s); medians of {} passes, reads {}-{} KiB/s, writes {}-{} KiB/s",
                    raw.blocks * BLOCK_BYTES / 1024,
                    raw.bytes() / 1024,
                    raw.big_write_median_us(),
                    rate(raw.big_write_median_us()),
                    raw.big_read_median_us(),
                    rate(raw.big_read_median_us()),
                    r.len(),
                    rate(r[r.len() - 1]),
                    rate(r[0]),
                    rate(w[w.len() - 1]),
                    rate(w[0]),
                );
            }
            uvm.set_swap(dev);
        }
        Err(why @ Off::NoDisk) => log::info!("swap: off ({why})"),
        // A disk is there but cannot be trusted with guest memory: say so loudly, run without.
        Err(why) => log::warn!("swap: off ({why})"),
    }
}

/// The disk, self-tested, and its raw speed (`swapbench`).
fn open() -> Result<(Arc<SwapDisk>, Option<super::swapbench::Raw>), Off> {
    let disk = virtio::probe().ok_or(Off::NoDisk)?;
    let slots = u32::try_from(disk.sectors / BLOCK_SECTORS).unwrap_or(u32::MAX);
    if slots == 0 {
        return Err(Off::TooSmall);
    }
    let mut l = Locked { disk, buf: IoBuf::new(CLUSTER_BLOCKS), targets: Vec::new() };
    let sector = u64::from(slots - 1) * BLOCK_SECTORS;
    for seed in [0x5a_u8, 0xa5] {
        let pattern = |i: usize| (i as u8).wrapping_mul(31) ^ seed;
        let block = ..BLOCK_BYTES;
        l.buf.data[block].iter_mut().enumerate().for_each(|(i, b)| *b = pattern(i));
        l.disk.transfer(Dir::Write, sector, 1, &mut l.buf).map_err(Off::Io)?;
        l.buf.data[block].fill(0);
        l.disk.transfer(Dir::Read, sector, 1, &mut l.buf).map_err(Off::Io)?;
        if l.buf.data[block].iter().enumerate().any(|(i, &b)| b != pattern(i)) {
            return Err(Off::Mismatch);
        }
    }
    // A block that fails a read (blkdebug's injected faults, scenario swapfail-read) costs only
    // the benchmark's numbers; a disk that stopped answering is no swap disk.
    let raw = match super::swapbench::measure(&mut l.disk, &mut l.buf, CLUSTER_BLOCKS) {
        Ok(raw) => raw,
        Err(DiskError::Dead) => return Err(Off::Io(DiskError::Dead)),
        Err(e) => {
            log::info!("swap: raw sequential speed not measured: a request failed ({e:?})");
            None
        }
    };
    Ok((Arc::new(SwapDisk { inner: Mutex::new(l), spare: Mutex::new(Vec::new()), slots }), raw))
}
