//! The hypervisor heap: `talc` over one carved RAM region, behind a spin lock, as the
//! `#[global_allocator]`.
//!
//! Why talc and not a buddy allocator: the engine allocates and frees small objects (anons,
//! amap chunks, run-queue nodes, dedup candidates) by the hundred thousand, and
//! `buddy_system_allocator` frees by walking the free list of the block's order to find its
//! buddy — O(free blocks). With dedup8's 130k pages, CPUs spent most of their time in that walk
//! or spinning on this lock behind it. Talc frees in O(1) (boundary tags, coalescing with its
//! neighbours) and allocates from size-binned free lists.
//!
//! Allocation failure is a broken hypervisor invariant (the heap is sized at boot for the engine's
//! per-frame metadata, and boot refuses a scenario whose VMs' metadata would not fit,
//! `hyp::limits`): `alloc` returns null and Rust's `handle_alloc_error` aborts through the panic
//! handler.
//!
//! # Locks
//! [`HEAP`]'s lock is a leaf: held only inside `alloc`/`dealloc`.

use core::alloc::{GlobalAlloc, Layout};
use core::ops::Range;
use core::ptr::{null_mut, NonNull};

use spin::Mutex;
use talc::{ErrOnOom, Span, Talc};

struct Allocator(Mutex<Talc<ErrOnOom>>);

#[global_allocator]
static HEAP: Allocator = Allocator(Mutex::new(Talc::new(ErrOnOom)));

// SAFETY: `Talc` hands out disjoint, suitably aligned blocks from the region given to `init`
// (memory owned by nobody else), and the mutex serialises all access to its free lists. A
// zero-sized layout (which `Talc::malloc` must not get) is never passed by `GlobalAlloc`'s
// callers: `GlobalAlloc::alloc` requires a non-zero size.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: layout.size() != 0 (the caller's contract, above).
        unsafe { self.0.lock().malloc(layout) }.map_or(null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: `ptr` came from `alloc` with `layout` (the caller's contract).
            unsafe { self.0.lock().free(p, layout) };
        }
    }
}

/// Bytes of the heap not allocated now (boot checks the scenario against it, `hyp::limits`).
pub fn free_bytes() -> u64 {
    HEAP.0.lock().get_counters().available_bytes as u64
}

/// Hands `region` (page-aligned RAM, identity-mapped cacheable, used by nothing else — the caller
/// carved it out of RAM) to the allocator. CPU 0, once, before the first allocation.
pub fn init(region: Range<u64>) {
    assert!(region.start < region.end && region.start.is_multiple_of(4096), "bad heap region");
    // SAFETY: `region` is RAM that boot carved for the heap alone (above the image and stacks,
    // below the page pool); it is mapped Normal cacheable by mmu.rs and never accessed otherwise.
    let span = Span::new(region.start as *mut u8, region.end as *mut u8);
    // SAFETY: as above; talc refuses only a span too small to hold its metadata.
    let claimed = unsafe { HEAP.0.lock().claim(span) };
    assert!(claimed.is_ok(), "heap region too small for the allocator");
}
