//! The hypervisor's `vm::physmem::PhysMem`: frames reached through EL2's identity map.
//!
//! EL2's stage-1 map covers all of RAM with VA == PA, normal write-back memory, so a frame's
//! address is directly a pointer. The engine only passes frames it owns (pool pages and stage-2
//! table frames, inside `pool`); every method checks that and treats anything else as a broken
//! hypervisor invariant (panic), never as something a guest could cause.
//!
//! Guests write the frames they map at any time, from other CPUs, outside the Rust abstract
//! machine. So no Rust reference (`&[u8]`) is ever formed over a frame: bytes move with volatile
//! loads and stores, a word at a time where aligned (memory shared with a foreign agent, as with
//! DMA), and a read racing a guest write yields old or new bytes, never undefined behaviour.
//! Descriptor words are read and written with 64-bit atomics (single-copy atomic `LDR`/`STR`), so
//! a concurrent stage-2 walker on another CPU sees the old or the new descriptor, never a mix.
//!
//! Every write of guest-visible bytes (`zero`, `copy`, `write`) ends with
//! [`cache::sync_for_guest`](super::cache::sync_for_guest): clean to the point of coherency and
//! I-cache invalidation, see `cache.rs` for why it is done here.

use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};
use vm::physmem::{PhysMem, FRAME_BYTES};
use vm::Pa;

use super::cache::sync_for_guest;

/// 64-bit words in a frame.
const FRAME_WORDS: usize = FRAME_BYTES / 8;

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

    /// The frame at `pa` as a pointer to its words.
    fn frame(&self, pa: Pa) -> *mut u64 {
        assert!(pa.is_page_aligned(), "unaligned frame {pa}");
        self.check(pa, FRAME_BYTES).cast::<u64>()
    }

    /// Word `i` of `frame` (a pointer from [`Self::frame`], `i < FRAME_WORDS`).
    fn load(frame: *mut u64, i: usize) -> u64 {
        debug_assert!(i < FRAME_WORDS);
        // SAFETY: `frame` is a checked, aligned pool frame and `i` is inside it; a volatile load
        // of memory a guest may write concurrently reads old or new bytes.
        unsafe { frame.add(i).read_volatile() }
    }

    /// Folds every word of the frame at `pa`.
    fn fold_words<T>(&self, pa: Pa, init: T, mut f: impl FnMut(T, u64) -> T) -> T {
        let p = self.frame(pa);
        (0..FRAME_WORDS).fold(init, |acc, i| f(acc, Self::load(p, i)))
    }
}

impl PhysMem for IdentityMem {
    fn zero(&self, frame: Pa) {
        let p = self.frame(frame);
        for i in 0..FRAME_WORDS {
            // SAFETY: a whole frame inside the pool (checked) that the engine owns exclusively.
            unsafe { p.add(i).write_volatile(0) };
        }
        sync_for_guest(frame.0, FRAME_BYTES);
    }

    fn copy(&self, dst: Pa, src: Pa) {
        assert!(dst != src, "bad copy {dst} <- {src}");
        let (d, s) = (self.frame(dst), self.frame(src));
        for i in 0..FRAME_WORDS {
            // SAFETY: two distinct frames inside the pool (checked); the engine owns `dst`
            // exclusively, `src` may be read by guests meanwhile (a volatile load, see above).
            unsafe { d.add(i).write_volatile(Self::load(s, i)) };
        }
        sync_for_guest(dst.0, FRAME_BYTES);
    }

    fn read(&self, pa: Pa, buf: &mut [u8]) {
        let s = self.check(pa, buf.len());
        let mut i = 0;
        while i < buf.len() {
            let at = s.wrapping_add(i);
            if at.cast::<u64>().is_aligned() && buf.len() - i >= 8 {
                // SAFETY: 8 aligned bytes inside the checked range; volatile (guests may write).
                let w = unsafe { at.cast::<u64>().read_volatile() };
                buf[i..i + 8].copy_from_slice(&w.to_ne_bytes());
                i += 8;
            } else {
                // SAFETY: one byte inside the checked range; volatile (guests may write).
                buf[i] = unsafe { at.read_volatile() };
                i += 1;
            }
        }
    }

    fn write(&self, pa: Pa, buf: &[u8]) {
        let d = self.check(pa, buf.len());
        let mut i = 0;
        while i < buf.len() {
            let at = d.wrapping_add(i);
            if at.cast::<u64>().is_aligned() && buf.len() - i >= 8 {
                let mut w = [0u8; 8];
                w.copy_from_slice(&buf[i..i + 8]);
                // SAFETY: 8 aligned bytes inside the checked range, which the engine owns for
                // this write; volatile (guests may read them concurrently).
                unsafe { at.cast::<u64>().write_volatile(u64::from_ne_bytes(w)) };
                i += 8;
            } else {
                // SAFETY: as above, one byte.
                unsafe { at.write_volatile(buf[i]) };
                i += 1;
            }
        }
        sync_for_guest(pa.0, buf.len());
    }

    fn same(&self, a: Pa, b: Pa) -> bool {
        let (pa, pb) = (self.frame(a), self.frame(b));
        (0..FRAME_WORDS).all(|i| Self::load(pa, i) == Self::load(pb, i))
    }

    fn hash(&self, frame: Pa) -> u64 {
        // FNV-1a over 64-bit (little-endian) words: cheap, and equal frames hash equal.
        self.fold_words(frame, 0xcbf2_9ce4_8422_2325u64, |h, w| {
            (h ^ u64::from_le(w)).wrapping_mul(0x0000_0100_0000_01b3)
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
