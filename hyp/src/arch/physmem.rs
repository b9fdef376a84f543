//! The hypervisor's `vm::physmem::PhysMem`: frames reached through EL2's identity map.
//!
//! BOOT's EL2 stage-1 map covers all of RAM with VA == PA, normal write-back memory, so a frame's
//! address is directly a pointer. The engine only passes frames it owns (pool pages and stage-2
//! table frames, inside `pool`); every method checks that and treats anything else as a broken
//! hypervisor invariant (panic), never as something a guest could cause.
//!
//! Descriptor words are read and written with 64-bit atomics (single-copy atomic `LDR`/`STR`), so
//! a concurrent stage-2 walker on another CPU sees the old or the new descriptor, never a mix.

use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};
use vm::physmem::{PhysMem, FRAME_BYTES};
use vm::Pa;

/// Physical memory of the page pool.
pub struct IdentityMem {
    pool: Range<u64>,
}

impl IdentityMem {
    /// Frames in `pool` (identity mapped, owned by the engine from now on).
    pub fn new(pool: Range<Pa>) -> Self {
        IdentityMem { pool: pool.start.0..pool.end.0 }
    }

    fn check(&self, pa: Pa, len: usize) -> *mut u8 {
        let end = pa.0.checked_add(len as u64);
        assert!(
            pa.0 >= self.pool.start && end.is_some_and(|e| e <= self.pool.end),
            "PhysMem access outside the pool: {pa} + {len:#x}"
        );
        pa.0 as *mut u8
    }

    fn frame(&self, pa: Pa) -> &[u8] {
        assert!(pa.is_page_aligned(), "unaligned frame {pa}");
        let p = self.check(pa, FRAME_BYTES);
        // SAFETY: `p` is inside the identity-mapped pool (checked), frame aligned, FRAME_BYTES
        // long; the engine serialises writers of a frame under its own locks, and guests only
        // write frames it maps to them — a read racing with a guest write yields stale bytes,
        // never undefined behaviour at the machine level (plain loads).
        unsafe { core::slice::from_raw_parts(p, FRAME_BYTES) }
    }
}

impl PhysMem for IdentityMem {
    fn zero(&self, frame: Pa) {
        assert!(frame.is_page_aligned(), "unaligned frame {frame}");
        let p = self.check(frame, FRAME_BYTES);
        // SAFETY: a whole frame inside the pool (checked) that the engine owns exclusively.
        unsafe { core::ptr::write_bytes(p, 0, FRAME_BYTES) };
    }

    fn copy(&self, dst: Pa, src: Pa) {
        assert!(dst.is_page_aligned() && src.is_page_aligned() && dst != src, "bad copy {dst} <- {src}");
        let d = self.check(dst, FRAME_BYTES);
        let s = self.check(src, FRAME_BYTES);
        // SAFETY: two distinct, frame-aligned frames inside the pool (checked), so they do not
        // overlap; the engine owns `dst` exclusively.
        unsafe { core::ptr::copy_nonoverlapping(s, d, FRAME_BYTES) };
    }

    fn read(&self, pa: Pa, buf: &mut [u8]) {
        let s = self.check(pa, buf.len());
        // SAFETY: the range is inside the pool (checked) and cannot overlap `buf` (hypervisor heap
        // or stack memory, outside the pool).
        unsafe { core::ptr::copy_nonoverlapping(s, buf.as_mut_ptr(), buf.len()) };
    }

    fn write(&self, pa: Pa, buf: &[u8]) {
        let d = self.check(pa, buf.len());
        // SAFETY: as `read`, in the other direction; the engine owns the target bytes.
        unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), d, buf.len()) };
    }

    fn same(&self, a: Pa, b: Pa) -> bool {
        self.frame(a) == self.frame(b)
    }

    fn hash(&self, frame: Pa) -> u64 {
        // FNV-1a over 64-bit words: cheap, and equal frames hash equal.
        self.frame(frame)
            .chunks_exact(8)
            .fold(0xcbf2_9ce4_8422_2325u64, |h, w| {
                let mut b = [0u8; 8];
                b.copy_from_slice(w);
                (h ^ u64::from_le_bytes(b)).wrapping_mul(0x0000_0100_0000_01b3)
            })
    }

    fn read_u64(&self, pa: Pa) -> u64 {
        self.word(pa).load(Ordering::Acquire)
    }

    fn write_u64(&self, pa: Pa, value: u64) {
        self.word(pa).store(value, Ordering::Release);
    }
}

impl IdentityMem {
    fn word(&self, pa: Pa) -> &AtomicU64 {
        assert!(pa.0.is_multiple_of(8), "unaligned descriptor {pa}");
        let p = self.check(pa, 8);
        // SAFETY: 8-byte aligned, inside the identity-mapped pool (checked), and descriptor words
        // are only ever accessed atomically through this function.
        unsafe { AtomicU64::from_ptr(p.cast::<u64>()) }
    }
}
