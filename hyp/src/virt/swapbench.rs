//! The swap disk's raw speed, measured once at attach (before any VM runs) so that a run's
//! swap throughput can be set beside what the device does alone: [`RAW_BLOCKS`] written
//! sequentially from slot 1 on, then the same blocks read back, each request synchronous
//! (`Disk::transfer`); once in 4 KiB requests (one page, swap's smallest request) and once in
//! requests of `blocks` blocks (the largest the driver issues: a page-out cluster, a readahead
//! run). `make bench` divides the guests' swap-in and page-out throughput by both (README,
//! "Benchmarks").
//!
//! # Locks
//! None: the caller owns the disk (attach, CPU 0, before the engine has it).

use alloc::boxed::Box;

use crate::arch::timer;
use crate::arch::virtio::{Dir, Disk, DiskError, IoBuf, BLOCK_BYTES, BLOCK_SECTORS};

/// Blocks each direction moves: 4 MiB.
pub const RAW_BLOCKS: u64 = 1024;

/// Microseconds a sequential write and a sequential read of [`RAW_BLOCKS`] took, in 4 KiB
/// requests and in requests of [`Raw::blocks`] blocks.
pub struct Raw {
    pub write_us: u64,
    pub read_us: u64,
    pub blocks: usize,
    pub big_write_us: u64,
    pub big_read_us: u64,
}

impl Raw {
    /// The bytes each direction moved.
    pub fn bytes(&self) -> u64 {
        RAW_BLOCKS * BLOCK_BYTES as u64
    }
}

/// Time the raw writes and reads (see the module documentation), the large requests of
/// `blocks` blocks (at most `buf`'s, a divisor of [`RAW_BLOCKS`]); `None` on a disk smaller
/// than [`RAW_BLOCKS`] + 1 blocks (the last is the self-test's).
pub fn measure(disk: &mut Disk, buf: &mut Box<IoBuf>, blocks: usize) -> Result<Option<Raw>, DiskError> {
    if disk.sectors / BLOCK_SECTORS <= RAW_BLOCKS {
        return Ok(None);
    }
    let mut pass = |dir: Dir, blocks: usize| -> Result<u64, DiskError> {
        let t = timer::now();
        for block in (0..RAW_BLOCKS).step_by(blocks.max(1)) {
            disk.transfer(dir, block * BLOCK_SECTORS, blocks, buf)?;
        }
        Ok((timer::now() - t) * 1_000_000 / timer::freq().max(1))
    };
    let write_us = pass(Dir::Write, 1)?;
    let read_us = pass(Dir::Read, 1)?;
    let big_write_us = pass(Dir::Write, blocks)?;
    let big_read_us = pass(Dir::Read, blocks)?;
    Ok(Some(Raw { write_us, read_us, blocks, big_write_us, big_read_us }))
}
