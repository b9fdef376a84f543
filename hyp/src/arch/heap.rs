//! The hypervisor heap: a buddy allocator (`buddy_system_allocator::Heap`) over one carved RAM
//! region, behind a spin lock, as the `#[global_allocator]`.
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

use buddy_system_allocator::Heap;
use spin::Mutex;

/// Buddy orders: blocks up to 2^31 bytes.
const ORDER: usize = 32;

struct Allocator(Mutex<Heap<ORDER>>);

#[global_allocator]
static HEAP: Allocator = Allocator(Mutex::new(Heap::empty()));

// SAFETY: `Heap` hands out disjoint, suitably aligned blocks from the region given to `init`
// (memory owned by nobody else), and the mutex serialises all access to its free lists.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0.lock().alloc(layout).map_or(null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            self.0.lock().dealloc(p, layout);
        }
    }
}

/// Bytes of the heap not allocated now (boot checks the scenario against it, `hyp::limits`).
pub fn free_bytes() -> u64 {
    let heap = HEAP.0.lock();
    (heap.stats_total_bytes() - heap.stats_alloc_actual()) as u64
}

/// Hands `region` (page-aligned RAM, identity-mapped cacheable, used by nothing else — the caller
/// carved it out of RAM) to the allocator. CPU 0, once, before the first allocation.
pub fn init(region: Range<u64>) {
    assert!(region.start < region.end && region.start.is_multiple_of(4096), "bad heap region");
    // SAFETY: `region` is RAM that boot carved for the heap alone (above the image and stacks,
    // below the page pool); it is mapped Normal cacheable by mmu.rs and never accessed otherwise.
    unsafe { HEAP.0.lock().add_to_heap(region.start as usize, region.end as usize) };
}
