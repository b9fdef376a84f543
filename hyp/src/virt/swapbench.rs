//! The swap disk's raw speed, measured once at attach (before any VM runs) so that a run's
//! swap throughput can be set beside what the device does alone: [`RAW_BLOCKS`] sequential
//! 4 KiB writes, then the same blocks read back, each one synchronous request (`Disk::transfer`,
//! the request shape swap uses), from slot 1 on. `make bench` divides the guests' swap-in and
//! page-out throughput by these (README, "Benchmarks").
//!
//! # Locks
//! None: the caller owns the disk (attach, CPU 0, before the engine has it).

use alloc::boxed::Box;

use crate::arch::timer;
use crate::arch::virtio::{Dir, Disk, DiskError, IoBuf, BLOCK_BYTES, BLOCK_SECTORS};

/// Blocks each direction moves: 4 MiB.
pub const RAW_BLOCKS: u64 = 1024;

/// Microseconds a sequential write and a sequential read of [`RAW_BLOCKS`] took.
pub struct Raw {
    pub write_us: u64,
    pub read_us: u64,
}

impl Raw {
    /// The bytes each direction moved.
    pub fn bytes(&self) -> u64 {
        RAW_BLOCKS * BLOCK_BYTES as u64
    }
}

/// Time the raw write and read (see the module documentation); `None` on a disk smaller than
/// [`RAW_BLOCKS`] + 1 blocks (the last is the self-test's).
pub fn measure(disk: &mut Disk, buf: &mut Box<IoBuf>) -> Result<Option<Raw>, DiskError> {
    if disk.sectors / BLOCK_SECTORS <= RAW_BLOCKS {
        return Ok(None);
    }
    let mut pass = |dir: Dir| -> Result<u64, DiskError> {
        let t = timer::now();
        for block in 0..RAW_BLOCKS {
            disk.transfer(dir, block * BLOCK_SECTORS, 1, buf)?;
        }
        Ok((timer::now() - t) * 1_000_000 / timer::freq().max(1))
    };
    let write_us = pass(Dir::Write)?;
    let read_us = pass(Dir::Read)?;
    Ok(Some(Raw { write_us, read_us }))
}
