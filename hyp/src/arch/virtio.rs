//! The swap disk's hardware edge: a virtio-blk device on QEMU virt's virtio-mmio bus, driven by
//! the `virtio-drivers` crate.
//!
//! QEMU's `-device virtio-blk-device` plugs into one of the board's 32 virtio-mmio transports
//! (`platform::VIRTIO_BASE + n × VIRTIO_STRIDE`; QEMU fills them from the top, so the first device
//! is usually in slot 31). [`probe`] looks at all 32 and takes the first block device. The
//! transports are inside EL2's device window (`mmu.rs`) and on no VM's bus: a guest touching them
//! gets an external abort like for any unassigned IPA.
//!
//! The crate's [`Hal`] is over the hypervisor's own memory: DMA buffers come from the heap, and
//! EL2's identity map (VA == PA, `mmu.rs`) makes every RAM address its own bus address, so sharing
//! a buffer is naming it. QEMU's virtio devices are cache-coherent with the CPUs (they access
//! guest RAM through the same memory model TCG uses), so no cache maintenance is done here; the
//! bytes reach pool frames through `PhysMem`, which does what the guest needs (`physmem.rs`).
//!
//! A request never waits forever: [`Disk::transfer`] polls the used ring until a deadline, and a
//! device that misses it is dead from then on ([`DiskError::Dead`]). Its request buffers are then
//! leaked, never freed, because the device may still write them.
//!
//! Reads may also be left in flight ([`Disk::submit_read`], at most [`MAX_IN_FLIGHT`], each with
//! its own buffer) and collected later ([`Disk::poll`]), which the run loop does before every
//! guest entry and on every idle tick. The device's interrupt (its virtio-mmio slot's SPI,
//! routed to EL2 on CPU 0 by `virt::swapdisk`) only makes that happen at once: it wakes CPU 0
//! from an idle WFI (or makes its guest exit), [`ack_interrupt`] quietens it, and the run loop's
//! next poll collects. An in-flight read past its deadline kills the disk like a synchronous
//! one, and every read in flight then fails.
//!
//! # Locks
//! None here: the caller serialises access to a [`Disk`] (`&mut self`).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::ptr::NonNull;

use hyp::platform::{VIRTIO_BASE, VIRTIO_SLOTS, VIRTIO_STRIDE};
use virtio_drivers::device::blk::{BlkReq, BlkResp, RespStatus, VirtIOBlk, SECTOR_SIZE};
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

use super::timer;

/// Bytes of one block: one frame.
pub const BLOCK_BYTES: usize = 4096;
/// Sectors of one block.
pub const BLOCK_SECTORS: u64 = (BLOCK_BYTES / SECTOR_SIZE) as u64;
/// How long a request may take before the device is declared dead.
const REQUEST_TIMEOUT_US: u64 = 5_000_000;
/// How long a waiter sleeps between two looks at the used ring ([`timer::nap`]).
pub const NAP_US: u64 = 50;
/// Most reads in flight at once: with a synchronous request's three descriptors they still fit
/// the crate's 16-descriptor queue even when the device offers no indirect descriptors.
pub const MAX_IN_FLIGHT: usize = 4;

/// The `virtio-drivers` HAL over the heap and EL2's identity map.
pub struct HypHal;

// SAFETY: `dma_alloc` returns zeroed, page-aligned heap blocks owned by nobody else until
// `dma_dealloc`; addresses are identity-mapped (mmu.rs), so a buffer's address is what the device
// must use, for the heap, the stacks and the image alike (all RAM).
unsafe impl Hal for HypHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let Some(layout) = dma_layout(pages) else { return (0, NonNull::dangling()) };
        // SAFETY: `layout` has a non-zero size (pages ≥ 1, checked by `dma_layout`).
        let p = unsafe { alloc::alloc::alloc_zeroed(layout) };
        match NonNull::new(p) {
            Some(p) => (p.as_ptr() as PhysAddr, p),
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let Some(layout) = dma_layout(pages) else { return -1 };
        // SAFETY: the crate passes back a block `dma_alloc` returned for the same page count.
        unsafe { alloc::alloc::dealloc(vaddr.as_ptr(), layout) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        // Identity map; only the PCI transport calls this.
        NonNull::new(paddr as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr().cast::<u8>() as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

fn dma_layout(pages: usize) -> Option<Layout> {
    if pages == 0 {
        return None;
    }
    Layout::from_size_align(pages.checked_mul(PAGE_SIZE)?, PAGE_SIZE).ok()
}

/// Which way a request moves data.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dir {
    /// Disk to memory.
    Read,
    /// Memory to disk.
    Write,
}

/// Why a request failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DiskError {
    /// The sector range is beyond the disk.
    OutOfRange,
    /// The device answered with an error status (or the driver refused the request).
    Device,
    /// The device missed a deadline earlier or now: it is never used again.
    Dead,
}

/// One request's memory (header, data, status), in the heap so that it can outlive a dead
/// device's request (leaked then, data and all).
pub struct IoBuf {
    /// The data, whole blocks: what a write sends, where a read lands. A request moves a
    /// prefix of it (one virtio descriptor: the heap block is contiguous in the identity map).
    pub data: Box<[u8]>,
    req: BlkReq,
    resp: BlkResp,
}

impl IoBuf {
    /// A zeroed buffer of `blocks` blocks (at least one).
    pub fn new(blocks: usize) -> Box<IoBuf> {
        let data = alloc::vec![0; blocks.max(1) * BLOCK_BYTES].into_boxed_slice();
        Box::new(IoBuf { data, req: BlkReq::default(), resp: BlkResp::default() })
    }

    /// A fresh buffer as big as this one (to replace one leaked to a dead device).
    fn like(&self) -> Box<IoBuf> {
        IoBuf::new(self.data.len() / BLOCK_BYTES)
    }
}

/// A read left in flight by [`Disk::submit_read`]: into the first `len` bytes of `buf`.
struct Pending {
    tag: u64,
    token: u16,
    buf: Box<IoBuf>,
    len: usize,
    deadline: u64,
}

/// What [`Disk::submit_read`] did with a read.
pub enum Submitted {
    /// Started; [`Disk::poll`] reports it.
    InFlight,
    /// Not started (too many in flight, or the queue is full): the buffer, unused.
    Declined(Box<IoBuf>),
}

/// A read [`Disk::poll`] collected: its tag, and its buffer holding the data or why it failed.
pub type Finished = (u64, Result<Box<IoBuf>, DiskError>);

/// A virtio-blk disk on the virtio-mmio bus.
pub struct Disk {
    blk: Option<VirtIOBlk<HypHal, MmioTransport<'static>>>,
    /// The transport's slot (0..32) on the bus.
    pub slot: u64,
    /// Capacity in sectors.
    pub sectors: u64,
    pending: Vec<Pending>,
    finished: Vec<Finished>,
}

// SAFETY: the transport's registers and the queue's DMA memory belong to this `Disk` alone (probe
// hands each transport out once); moving it to another CPU moves that ownership, and every use
// goes through `&mut self`.
unsafe impl Send for Disk {}

/// The first virtio-blk device on the bus, initialised (features negotiated, queue set up, its
/// used-ring interrupts on). `None` when there is none or it cannot be set up.
pub fn probe() -> Option<Disk> {
    for slot in 0..VIRTIO_SLOTS {
        let base = VIRTIO_BASE + slot * VIRTIO_STRIDE;
        let Some(header) = NonNull::new(base as *mut VirtIOHeader) else { continue };
        // SAFETY: `base` is a virtio-mmio transport of QEMU virt (`VIRTIO_STRIDE` bytes of
        // registers, mapped Device-nGnRE by mmu.rs), used by nothing else: only `probe` touches
        // the bus, once, on CPU 0 at boot. An empty slot answers device id 0 (an `Err`).
        let Ok(transport) = (unsafe { MmioTransport::new(header, VIRTIO_STRIDE as usize) }) else { continue };
        if transport.device_type() != DeviceType::Block {
            continue;
        }
        match VirtIOBlk::<HypHal, _>::new(transport) {
            Ok(mut blk) => {
                blk.enable_interrupts();
                let sectors = blk.capacity();
                return Some(Disk { blk: Some(blk), slot, sectors, pending: Vec::new(), finished: Vec::new() });
            }
            Err(e) => log::warn!("swap: virtio-blk in virtio-mmio slot {slot} cannot be set up: {e}"),
        }
    }
    None
}

/// Offsets of virtio-mmio's InterruptStatus and InterruptACK registers (virtio 1.2 §4.2.2).
const INTERRUPT_STATUS: u64 = 0x60;
const INTERRUPT_ACK: u64 = 0x64;

/// Quieten the level interrupt of the transport at `base`: acknowledge every cause
/// InterruptStatus shows. Two registers by hand, not the crate's `Transport::ack_interrupt`:
/// that needs `&mut` of the transport, which the [`Disk`] owns behind the swap disk's lock, and
/// the IRQ path must not wait for that lock (its holder may be polling for a long request) — an
/// unacknowledged level interrupt would be pending again the moment it is ended. The two
/// registers have nothing to do with the queue the lock protects.
pub fn ack_interrupt(base: u64) {
    let status = (base + INTERRUPT_STATUS) as *const u32;
    let ack = (base + INTERRUPT_ACK) as *mut u32;
    // SAFETY: `base` is the swap disk's virtio-mmio transport (`Disk::base`, inside EL2's
    // Device-nGnRE window, mmu.rs); reading InterruptStatus and writing InterruptACK have no
    // effect but clearing the interrupt causes written.
    unsafe {
        let causes = status.read_volatile();
        if causes != 0 {
            ack.write_volatile(causes);
        }
    }
}

impl Disk {
    /// The INTID of the transport's interrupt.
    pub fn intid(&self) -> u32 {
        hyp::platform::VIRTIO_INTID_BASE + self.slot as u32
    }

    /// The transport's registers' address.
    pub fn base(&self) -> u64 {
        VIRTIO_BASE + self.slot * VIRTIO_STRIDE
    }

    /// Move `blocks` blocks at `sector` between the disk and the start of `buf.data`, as one
    /// request, waiting (polling) for the device at most [`REQUEST_TIMEOUT_US`]; reads in flight
    /// that finish meanwhile are collected for [`Disk::poll`]. On [`DiskError::Dead`] `buf` was
    /// leaked to the device (the caller gets a fresh one back).
    pub fn transfer(&mut self, dir: Dir, sector: u64, blocks: usize, buf: &mut Box<IoBuf>) -> Result<(), DiskError> {
        let sector = self.check(sector, blocks)?;
        let len = blocks.checked_mul(BLOCK_BYTES).filter(|&n| n > 0 && n <= buf.data.len()).ok_or(DiskError::OutOfRange)?;
        let blk = self.blk.as_mut().ok_or(DiskError::Dead)?;
        let b: &mut IoBuf = buf;
        // SAFETY: `req`, `data` and `resp` are this heap buffer's, not touched again before the
        // `complete_*` call below with the same three, or ever (leaked) if the device dies.
        let token = unsafe {
            match dir {
                Dir::Read => blk.read_blocks_nb(sector, &mut b.req, &mut b.data[..len], &mut b.resp),
                Dir::Write => blk.write_blocks_nb(sector, &mut b.req, &b.data[..len], &mut b.resp),
            }
        }
        .map_err(|_| DiskError::Device)?;
        let deadline = timer::now().saturating_add(timer::us_to_ticks(REQUEST_TIMEOUT_US));
        loop {
            self.reap();
            let blk = self.blk.as_mut().ok_or(DiskError::Dead)?;
            if blk.peek_used() == Some(token) {
                break;
            }
            if timer::now() > deadline {
                self.die();
                let fresh = buf.like();
                Box::leak(core::mem::replace(buf, fresh));
                return Err(DiskError::Dead);
            }
            timer::nap(NAP_US);
        }
        let blk = self.blk.as_mut().ok_or(DiskError::Dead)?;
        let b: &mut IoBuf = buf;
        // SAFETY: the same buffers as the `*_nb` call that returned `token`, which is now used.
        let done = unsafe {
            match dir {
                Dir::Read => blk.complete_read_blocks(token, &b.req, &mut b.data[..len], &mut b.resp),
                Dir::Write => blk.complete_write_blocks(token, &b.req, &b.data[..len], &mut b.resp),
            }
        };
        match (done, b.resp.status()) {
            (Ok(()), RespStatus::OK) => Ok(()),
            _ => Err(DiskError::Device),
        }
    }

    /// Start reading the `blocks` blocks at `sector` into the start of `buf` (the request's
    /// own, handed back by [`Disk::poll`]), as one request, named `tag` for [`Disk::poll`].
    /// [`Submitted::Declined`]: [`MAX_IN_FLIGHT`] reads are in flight already, or the queue is
    /// full (the caller reads synchronously), and `buf` comes back; on an error it is dropped.
    pub fn submit_read(&mut self, sector: u64, blocks: usize, tag: u64, mut buf: Box<IoBuf>) -> Result<Submitted, DiskError> {
        let sector = self.check(sector, blocks)?;
        if blocks == 0 {
            return Err(DiskError::OutOfRange);
        }
        if self.pending.len() >= MAX_IN_FLIGHT {
            return Ok(Submitted::Declined(buf));
        }
        let blk = self.blk.as_mut().ok_or(DiskError::Dead)?;
        let len = blocks.checked_mul(BLOCK_BYTES).filter(|&n| n <= buf.data.len()).ok_or(DiskError::OutOfRange)?;
        let b: &mut IoBuf = &mut buf;
        // SAFETY: the buffer is this request's alone, in the heap (moving the `Box` into
        // `pending` does not move it), and not touched before `reap` completes the request with
        // the same three, or ever (leaked) if the device dies.
        let token = match unsafe { blk.read_blocks_nb(sector, &mut b.req, &mut b.data[..len], &mut b.resp) } {
            Ok(t) => t,
            Err(virtio_drivers::Error::QueueFull) => return Ok(Submitted::Declined(buf)),
            Err(_) => return Err(DiskError::Device),
        };
        let deadline = timer::now().saturating_add(timer::us_to_ticks(REQUEST_TIMEOUT_US));
        self.pending.push(Pending { tag, token, buf, len, deadline });
        Ok(Submitted::InFlight)
    }

    /// The reads in flight that finished since the last call; when one is past its deadline the
    /// disk dies and every read in flight is among them, failed ([`DiskError::Dead`]).
    pub fn poll(&mut self) -> Vec<Finished> {
        self.reap();
        let now = timer::now();
        if self.pending.iter().any(|p| now > p.deadline) {
            self.die();
        }
        core::mem::take(&mut self.finished)
    }

    /// Complete every read in flight at the head of the used ring, into `finished`; stop at a
    /// token that is none of theirs (a synchronous request's: its waiter takes it).
    fn reap(&mut self) {
        let Some(blk) = self.blk.as_mut() else { return };
        while let Some(token) = blk.peek_used() {
            let Some(i) = self.pending.iter().position(|p| p.token == token) else { break };
            let mut p = self.pending.swap_remove(i);
            let b: &mut IoBuf = &mut p.buf;
            // SAFETY: the same buffers as the `read_blocks_nb` call that returned `token`, which
            // is now used.
            let done = unsafe { blk.complete_read_blocks(token, &b.req, &mut b.data[..p.len], &mut b.resp) };
            let result = match (done, b.resp.status()) {
                (Ok(()), RespStatus::OK) => Ok(p.buf),
                _ => Err(DiskError::Device),
            };
            self.finished.push((p.tag, result));
        }
    }

    /// A deadline was missed: never use the device again, leak its queue and every buffer it may
    /// still write, and fail the reads in flight.
    fn die(&mut self) {
        core::mem::forget(self.blk.take());
        for p in self.pending.drain(..) {
            Box::leak(p.buf);
            self.finished.push((p.tag, Err(DiskError::Dead)));
        }
        log::warn!("swap: the virtio-blk disk did not answer within {} ms; swap I/O is off", REQUEST_TIMEOUT_US / 1000);
    }

    /// `sector` as the crate's block number, when `blocks` blocks from it fit the disk.
    fn check(&self, sector: u64, blocks: usize) -> Result<usize, DiskError> {
        let len = u64::try_from(blocks).ok().and_then(|n| n.checked_mul(BLOCK_SECTORS));
        if len.and_then(|len| sector.checked_add(len)).is_none_or(|end| end > self.sectors) {
            return Err(DiskError::OutOfRange);
        }
        usize::try_from(sector).map_err(|_| DiskError::OutOfRange)
    }
}
