//! The swap disk's raw speed, measured once at attach (before any VM runs) so that a run's
//! swap throughput can be set beside what the device does alone: [`RAW_BLOCKS`] written
//! sequentially from slot 1 on, then the same blocks read back, each request synchronous
//! (`Disk::transfer`); once in 4 KiB requests (one page, swap's smallest request) and once in
//! requests of `blocks` blocks (the largest the driver issues: a page-out cluster, a readahead
//! run). `make bench` divides the guests' swap-in and page-out throughput by both (README,
//! "Benchmarks").
//!
//! The large requests' passes are repeated [`BIG_PASSES`] times and the median taken: one of
//! them lasts 6-15 ms, so a single host scheduling hiccup on the 2-core CI box moved it (and the
//! benchmark's ratio) by up to 4x; a 4 KiB pass lasts about 100 ms and is timed once.
//!
//! # Locks
//! None: the caller owns the disk (attach, CPU 0, before the engine has it).

use alloc::boxed::Box;

use crate::arch::timer;
use crate::arch::virtio::{Dir, Disk, DiskError, IoBuf, BLOCK_BYTES, BLOCK_SECTORS};

/// Blocks each direction moves: 4 MiB.
pub const RAW_BLOCKS: u64 = 1024;

/// Passes of the large requests, each direction: odd, for a median.
pub const BIG_PASSES: usize = 5;

/// Microseconds a sequential write and a sequential read of [`RAW_BLOCKS`] took, in 4 KiB
/// requests and in requests of [`Raw::blocks`] blocks (each of the [`BIG_PASSES`] passes,
/// sorted).
pub struct Raw {
    pub write_us: u64,
    pub read_us: u64,
    pub blocks: usize,
    pub big_write_us: [u64; BIG_PASSES],
    pub big_read_us: [u64; BIG_PASSES],
}

impl Raw {
    /// The bytes each direction moved.
    pub fn bytes(&self) -> u64 {
        RAW_BLOCKS * BLOCK_BYTES as u64
    }

    /// The median pass of the large writes.
    pub fn big_write_median_us(&self) -> u64 {
        self.big_write_us[BIG_PASSES / 2]
    }

    /// The median pass of the large reads.
    pub fn big_read_median_us(&self) -> u64 {
        self.big_read_us[BIG_PASSES / 2]
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
    let (mut big_write_us, mut big_read_us) = ([0; BIG_PASSES], [0; BIG_PASSES]);
    // Interleaved, so that a slow stretch of the host slows one pass of each, not all of one.
    for k in 0..BIG_PASSES {
        big_write_us[k] = pass(Dir::Write, blocks)?;
        big_read_us[k] = pass(Dir::Read, blocks)?;
    }
    big_write_us.sort_unstable();
    big_read_us.sort_unstable();
    Ok(Some(Raw { write_us, read_us, blocks, big_write_us, big_read_us }))
}
