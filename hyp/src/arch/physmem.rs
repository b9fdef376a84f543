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
//! I-cache invalidation; every read of bytes a guest may have written (`copy`'s source, `read`,
//! `same`, `hash`) starts with [`cache::sync_from_guest`](super::cache::sync_from_guest): clean
//! and invalidate to the point of coherency, so a guest running with its caches off is seen as it
//! wrote. See `cache.rs` for the architecture's rule and why it is done here. (Descriptor words,
//! `read_u64`/`write_u64`, are only ever written by the hypervisor and read by its own and the
//! hardware's cacheable table walks: VTCR_EL2 walks are inner/outer Write-Back.)
//!
//! Cost: these run inside every fault that fills a page, so bulk moves are assembly loops the
//! compiler can neither split nor merge (which is what volatile asks for): `DC ZVA` for zeroing,
//! 128 bytes a loop of `LDP`/`STP` of general registers for copies (general registers are all a
//! copy needs; the guest's FP/SIMD registers are saved on every exit anyway, `vectors.rs`). Strict alignment is on at EL2, so the bulk path
//! needs 8-byte aligned source and destination; other byte runs go a byte at a time.

use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};
use vm::physmem::{FrameHasher, PhysMem, FRAME_BYTES};
use vm::Pa;

use super::cache::{sync_for_guest, sync_from_guest, zero_frame_for_guest};

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
        sync_from_guest(pa.0, FRAME_BYTES);
        (0..FRAME_WORDS).fold(init, |acc, i| f(acc, Self::load(p, i)))
    }
}

impl PhysMem for IdentityMem {
    fn zero(&self, frame: Pa) {
        let p = self.frame(frame);
        zero_frame_for_guest(p as u64);
    }

    fn copy(&self, dst: Pa, src: Pa) {
        assert!(dst != src, "bad copy {dst} <- {src}");
        let (d, s) = (self.frame(dst), self.frame(src));
        sync_from_guest(src.0, FRAME_BYTES);
        // SAFETY: two distinct whole frames inside the pool (checked), page aligned; the engine
        // owns `dst` exclusively, `src` may be written by guests meanwhile (old or new bytes).
        unsafe { copy_words(d, s, FRAME_WORDS) };
        sync_for_guest(dst.0, FRAME_BYTES);
    }

    fn read(&self, pa: Pa, buf: &mut [u8]) {
        let s = self.check(pa, buf.len());
        sync_from_guest(pa.0, buf.len());
        let d = buf.as_mut_ptr();
        // SAFETY: `s` is `buf.len()` checked pool bytes (guests may write them: the copy is
        // volatile), `d` is `buf`, exclusively borrowed; they do not overlap (the pool is not
        // the heap or a stack).
        unsafe { copy_bytes(d, s, buf.len()) };
    }

    fn write(&self, pa: Pa, buf: &[u8]) {
        let d = self.check(pa, buf.len());
        // SAFETY: `d` is `buf.len()` checked pool bytes the engine owns for this write (guests may
        // read them concurrently: volatile), `buf` is a shared borrow; no overlap (as in `read`).
        unsafe { copy_bytes(d, buf.as_ptr(), buf.len()) };
        sync_for_guest(pa.0, buf.len());
    }

    fn same(&self, a: Pa, b: Pa) -> bool {
        let (pa, pb) = (self.frame(a), self.frame(b));
        sync_from_guest(a.0, FRAME_BYTES);
        sync_from_guest(b.0, FRAME_BYTES);
        (0..FRAME_WORDS).all(|i| Self::load(pa, i) == Self::load(pb, i))
    }

    fn hash(&self, frame: Pa) -> u64 {
        self.fold_words(frame, FrameHasher::new(), |mut h, w| {
            h.word(u64::from_le(w));
            h
        })
        .finish()
    }

    fn read_u64(&self, pa: Pa) -> u64 {
        self.word(pa).load(Ordering::Acquire)
    }

    fn write_u64(&self, pa: Pa, value: u64) {
        self.word(pa).store(value, Ordering::Release);
    }
}

impl IdentityMem {
    /// The descriptor word at `pa`. Called a few dozen times per fault (table walks), so the
    /// checks branch to a cold panic and the fast path needs no stack frame.
    #[inline]
    fn word(&self, pa: Pa) -> &AtomicU64 {
        if !pa.0.is_multiple_of(8) || pa.0 < self.pool.start || pa.0 >= self.pool.end {
            bad_word(pa);
        }
        let p = pa.0 as *mut u8;
        // SAFETY: 8-byte aligned, inside the identity-mapped pool (checked), and descriptor words
        // are only ever accessed atomically through this function.
        unsafe { AtomicU64::from_ptr(p.cast::<u64>()) }
    }
}

#[cold]
#[inline(never)]
fn bad_word(pa: Pa) -> ! {
    panic!("PhysMem descriptor access outside the pool or unaligned: {pa}")
}

/// Copy `words` 64-bit words from `src` to `dst`, 16 at a time with `LDP`/`STP`, as volatile
/// accesses (one asm block the compiler does not look into).
///
/// # Safety
/// `src` and `dst` are 8-byte aligned, valid for `words` words, and do not overlap.
unsafe fn copy_words(dst: *mut u64, src: *const u64, words: usize) {
    let blocks = words / 16;
    if blocks != 0 {
        // SAFETY: the caller's ranges; `blocks * 128` bytes of each are in bounds.
        unsafe {
            core::arch::asm!(
                "2:",
                "ldp {a}, {b}, [{s}]",
                "ldp {c}, {d}, [{s}, #16]",
                "ldp {e}, {f}, [{s}, #32]",
                "ldp {g}, {h}, [{s}, #48]",
                "stp {a}, {b}, [{t}]",
                "stp {c}, {d}, [{t}, #16]",
                "stp {e}, {f}, [{t}, #32]",
                "stp {g}, {h}, [{t}, #48]",
                "ldp {a}, {b}, [{s}, #64]",
                "ldp {c}, {d}, [{s}, #80]",
                "ldp {e}, {f}, [{s}, #96]",
                "ldp {g}, {h}, [{s}, #112]",
                "stp {a}, {b}, [{t}, #64]",
                "stp {c}, {d}, [{t}, #80]",
                "stp {e}, {f}, [{t}, #96]",
                "stp {g}, {h}, [{t}, #112]",
                "add {s}, {s}, #128",
                "add {t}, {t}, #128",
                "subs {n}, {n}, #1",
                "b.ne 2b",
                s = inout(reg) src => _,
                t = inout(reg) dst => _,
                n = inout(reg) blocks => _,
                a = out(reg) _, b = out(reg) _, c = out(reg) _, d = out(reg) _,
                e = out(reg) _, f = out(reg) _, g = out(reg) _, h = out(reg) _,
                options(nostack),
            )
        };
    }
    for i in blocks * 16..words {
        // SAFETY: word `i < words` of both ranges.
        unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
    }
}

/// Copy `len` bytes from `src` to `dst` with volatile accesses: [`copy_words`] for the part
/// where both are 8-byte aligned (when they agree modulo 8), bytes for the rest.
///
/// # Safety
/// `src` and `dst` are valid for `len` bytes and do not overlap.
unsafe fn copy_bytes(dst: *mut u8, src: *const u8, len: usize) {
    let mut i = 0;
    if (dst as usize) % 8 == (src as usize) % 8 {
        let head = (8 - (dst as usize) % 8) % 8;
        while i < head.min(len) {
            // SAFETY: byte `i < len` of both ranges.
            unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
            i += 1;
        }
        let words = (len - i) / 8;
        // SAFETY: from `i` both are 8-byte aligned and `words * 8 <= len - i` bytes remain.
        unsafe { copy_words(dst.add(i).cast::<u64>(), src.add(i).cast::<u64>(), words) };
        i += words * 8;
    }
    while i < len {
        // SAFETY: byte `i < len` of both ranges.
        unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
        i += 1;
    }
}
