//! The hypervisor's carving of RAM: its own image, the heap, and the guest page pool.
//!
//! RAM below the end of our image (QEMU's DTB, the image, the stacks) is never handed out. The heap
//! holds the engine's per-frame metadata, so it grows with RAM: up to RAM base +
//! max(128 MiB, RAM / 8) (about 125 MiB for `-m 1G`, room for ~500 bytes per pool frame), or RAM / 8
//! above the image on machines under 512 MiB. Its end is 2 MiB aligned, which also lets the buddy
//! allocator form large blocks. Every remaining 4 KiB frame is the guest page pool.

use core::ops::Range;

use vm::{Pa, PAGE_SIZE};

/// The heap ends at least this far above RAM base when RAM is large enough.
const HEAP_END_OFFSET: u64 = 128 << 20;
const HEAP_ALIGN: u64 = 2 << 20;

/// The hypervisor's RAM layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Carving {
    /// Heap (physical = virtual under the EL2 identity map).
    pub heap: Range<u64>,
    /// Frames handed to the engine for guest pages and stage-2 tables.
    pub pool: Range<Pa>,
}

/// Splits RAM above `image` into heap and pool; `None` when RAM is too small for both.
pub fn carve(ram: &Range<u64>, image: &Range<u64>) -> Option<Carving> {
    let ram_size = ram.end.checked_sub(ram.start)?;
    let heap_start = image.end.next_multiple_of(PAGE_SIZE);
    let heap_end = if ram_size >= 4 * HEAP_END_OFFSET {
        ram.start + HEAP_END_OFFSET.max((ram_size / 8).next_multiple_of(HEAP_ALIGN))
    } else {
        (heap_start + ram_size / 8).next_multiple_of(HEAP_ALIGN)
    };
    let pool_end = ram.end & !(PAGE_SIZE - 1);
    if image.start < ram.start || heap_start >= heap_end || heap_end >= pool_end {
        return None;
    }
    Some(Carving { heap: heap_start..heap_end, pool: Pa(heap_end)..Pa(pool_end) })
}

/// Applies `pool=` (rounded down to whole frames). Returns the pool and whether the limit was
/// larger than the free RAM (then the whole pool is used).
pub fn limit_pool(pool: Range<Pa>, limit: Option<u64>) -> (Range<Pa>, bool) {
    let Some(limit) = limit else { return (pool, false) };
    if limit > pool.end.0 - pool.start.0 {
        return (pool, true);
    }
    let end = Pa(pool.start.0 + (limit & !(PAGE_SIZE - 1)));
    (pool.start..end, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    #[test]
    fn one_gib_machine_gives_a_125_mib_heap_and_the_rest_to_the_pool() {
        let ram = GIB..2 * GIB;
        let image = GIB + 2 * MIB..GIB + 2 * MIB + 0x72000;
        let c = carve(&ram, &image).unwrap();
        assert_eq!(c.heap, image.end..GIB + 128 * MIB);
        assert_eq!(c.pool, Pa(GIB + 128 * MIB)..Pa(2 * GIB));
        assert_eq!((c.pool.end.0 - c.pool.start.0) / PAGE_SIZE, 229_376);
    }

    #[test]
    fn large_machines_grow_the_heap_with_ram() {
        let c = carve(&(GIB..5 * GIB), &(GIB + 2 * MIB..GIB + 3 * MIB)).unwrap();
        assert_eq!(c.heap.end, GIB + 512 * MIB);
    }

    #[test]
    fn small_machines_and_bad_ranges_are_refused() {
        assert_eq!(carve(&(GIB..GIB + 4 * MIB), &(GIB + 2 * MIB..GIB + 4 * MIB)), None);
        let reversed = Range { start: 2 * GIB, end: GIB };
        assert_eq!(carve(&reversed, &(GIB..GIB + MIB)), None);
        assert!(carve(&(GIB..GIB + 128 * MIB), &(GIB + 2 * MIB..GIB + 3 * MIB)).is_some());
    }

    #[test]
    fn pool_limit_rounds_down_and_clamps() {
        let pool = Pa(GIB)..Pa(GIB + 64 * MIB);
        assert_eq!(limit_pool(pool.clone(), None), (pool.clone(), false));
        assert_eq!(limit_pool(pool.clone(), Some(16 * MIB + 100)), (Pa(GIB)..Pa(GIB + 16 * MIB), false));
        assert_eq!(limit_pool(pool.clone(), Some(65 * MIB)), (pool, true));
    }
}
