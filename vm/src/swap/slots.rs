//! The swap slot allocator: a bitmap with clustering (the seed's swap map, `uvm_swap.c`'s
//! extent/blist, reduced to what one device needs).
//!
//! One bit a slot says whether it is taken (used or bad); a second bitmap says which taken slots
//! are bad. [`SlotMap::alloc_cluster`] hands out `n` *contiguous* slots, next-fit from a cursor
//! just past the last allocation: the page-outs of one pagedaemon sweep land one after the other
//! on the disk, so a cluster is one request and a later sequential swap-in reads neighbouring
//! sectors. A run never wraps from the last slot to the first (they are not neighbours on the
//! disk); when no run is found between the cursor and the end, the search starts again at slot 1.
//! Bad slots stay taken forever, so no allocation returns one.
//!
//! Slots are 1-based, as the seed's `an_swslot` (0 is "no slot"); bit `i` is slot `i + 1`.

use alloc::vec::Vec;

/// Slots per bitmap word.
const WORD: usize = u64::BITS as usize;

/// State of one slot.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SlotState {
    Free,
    Used,
    /// An I/O error happened on it: never used again.
    Bad,
}

/// Slot allocator: a bitmap of taken slots, a bitmap of bad ones, a next-fit cursor.
#[derive(Debug)]
pub struct SlotMap {
    /// Bit set: the slot is used or bad.
    taken: Vec<u64>,
    /// Bit set: the slot is bad (always also taken).
    bad_bits: Vec<u64>,
    /// Number of slots (the bitmaps' last word may be partly beyond it).
    len: usize,
    /// Where the next search starts (a bit index, `0..len`).
    cursor: usize,
    used: u32,
    bad: u32,
}

impl SlotMap {
    /// `n` free slots, numbered `1..=n`.
    ///
    /// # Locks
    /// None: the map is unreachable by anyone else until the caller stores it.
    pub fn new(n: u32) -> SlotMap {
        let len = n as usize;
        let words = len.div_ceil(WORD);
        SlotMap {
            taken: alloc::vec![0; words],
            bad_bits: alloc::vec![0; words],
            len,
            cursor: 0,
            used: 0,
            bad: 0,
        }
    }

    /// A free slot, now used; `None` when the device is full.
    ///
    /// # Locks
    /// Entry and exit: the slot map's lock held (`self` is the locked map, a leaf); takes nothing.
    pub fn alloc(&mut self) -> Option<u32> {
        self.alloc_cluster(1)
    }

    /// `n` contiguous free slots, now used: the first is returned, the others follow it. Next-fit
    /// from the cursor, then from slot 1 (see the module documentation). `None`, with nothing
    /// allocated, when no run of `n` free slots exists (or `n` is 0).
    ///
    /// # Locks
    /// Entry and exit: the slot map's lock held (`self` is the locked map, a leaf); takes nothing.
    pub fn alloc_cluster(&mut self, n: usize) -> Option<u32> {
        if n == 0 || n > self.len {
            return None;
        }
        let start = self
            .find_run(self.cursor, n)
            .or_else(|| self.find_run(0, n))?;
        for i in start..start + n {
            self.taken[i / WORD] |= 1 << (i % WORD);
        }
        self.used += u32::try_from(n).ok()?;
        self.cursor = (start + n) % self.len;
        u32::try_from(start + 1).ok()
    }

    /// Return a used slot (a free or bad slot is left as it is).
    ///
    /// # Locks
    /// Entry and exit: the slot map's lock held (`self` is the locked map, a leaf); takes nothing.
    pub fn free(&mut self, slot: u32) {
        if self.state(slot) == Some(SlotState::Used) {
            let i = slot as usize - 1;
            self.taken[i / WORD] &= !(1 << (i % WORD));
            self.used -= 1;
        }
    }

    /// Give back the `n` slots from `first`, the unused tail of a run [`SlotMap::alloc_cluster`]
    /// handed out: freed, and when nothing was allocated after the run, the cursor goes back to
    /// them, so the next run continues where the used part ended. Otherwise the tail of every
    /// part-filled page-out cluster stayed a hole behind the cursor until it wrapped, and the
    /// pages written after it were no longer the neighbours of those before.
    ///
    /// # Locks
    /// Entry and exit: the slot map's lock held (`self` is the locked map, a leaf); takes nothing.
    pub fn unreserve(&mut self, first: u32, n: usize) {
        let Some(start) = (first as usize).checked_sub(1) else { return };
        for slot in (first..).take(n) {
            self.free(slot);
        }
        if n > 0 && (start + n) % self.len.max(1) == self.cursor {
            self.cursor = start;
        }
    }

    /// Mark a slot bad: it stays allocated forever.
    ///
    /// # Locks
    /// Entry and exit: the slot map's lock held (`self` is the locked map, a leaf); takes nothing.
    pub fn mark_bad(&mut self, slot: u32) {
        let was = self.state(slot);
        if matches!(was, None | Some(SlotState::Bad)) {
            return;
        }
        if was == Some(SlotState::Used) {
            self.used -= 1;
        }
        let i = slot as usize - 1;
        self.taken[i / WORD] |= 1 << (i % WORD);
        self.bad_bits[i / WORD] |= 1 << (i % WORD);
        self.bad += 1;
    }

    /// State of a slot (`None` when out of range).
    ///
    /// # Locks
    /// Entry and exit: the slot map's lock held (`self` is the locked map, a leaf); takes nothing.
    pub fn state(&self, slot: u32) -> Option<SlotState> {
        let i = (slot as usize).checked_sub(1).filter(|&i| i < self.len)?;
        let bit = 1 << (i % WORD);
        Some(if self.bad_bits[i / WORD] & bit != 0 {
            SlotState::Bad
        } else if self.taken[i / WORD] & bit != 0 {
            SlotState::Used
        } else {
            SlotState::Free
        })
    }

    /// (free, used, bad) slot counts.
    ///
    /// # Locks
    /// Entry and exit: the slot map's lock held (`self` is the locked map, a leaf); takes nothing.
    pub fn counts(&self) -> (u32, u32, u32) {
        let total = u32::try_from(self.len).unwrap_or(u32::MAX);
        (total - self.used - self.bad, self.used, self.bad)
    }

    /// The first bit of a run of `n` free bits at or after `from` that ends by `len`. Whole
    /// taken words are stepped over at once.
    fn find_run(&self, from: usize, n: usize) -> Option<usize> {
        let (mut i, mut run_start) = (from, from);
        while i < self.len {
            if i % WORD == 0 && self.taken[i / WORD] == u64::MAX {
                i += WORD;
                run_start = i;
                continue;
            }
            if self.taken[i / WORD] & (1 << (i % WORD)) != 0 {
                i += 1;
                run_start = i;
                continue;
            }
            i += 1;
            if i - run_start == n {
                return Some(run_start);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_free_bad() {
        let mut m = SlotMap::new(3);
        let a = m.alloc().unwrap();
        let b = m.alloc().unwrap();
        let c = m.alloc().unwrap();
        assert_eq!((a, b, c), (1, 2, 3));
        assert_eq!(m.alloc(), None);
        m.mark_bad(b);
        m.free(b); // a bad slot is never freed
        m.free(a);
        assert_eq!(m.counts(), (1, 1, 1));
        assert_eq!(m.alloc(), Some(1));
        assert_eq!(m.alloc(), None);
        assert_eq!(m.state(2), Some(SlotState::Bad));
        assert_eq!(m.state(0), None);
        assert_eq!(m.state(4), None);
    }

    /// Clusters are contiguous and follow each other (next-fit), across bitmap words.
    #[test]
    fn clusters_are_contiguous_and_follow_each_other() {
        let mut m = SlotMap::new(200);
        assert_eq!(m.alloc_cluster(16), Some(1));
        assert_eq!(m.alloc_cluster(16), Some(17));
        assert_eq!(m.alloc(), Some(33));
        assert_eq!(
            m.alloc_cluster(40),
            Some(34),
            "a run crossing a word boundary"
        );
        for s in 1..=73 {
            assert_eq!(m.state(s), Some(SlotState::Used), "slot {s}");
        }
        assert_eq!(m.state(74), Some(SlotState::Free));
        assert_eq!(m.counts(), (127, 73, 0));
    }

    /// Freed slots behind the cursor are taken only once the end is reached: then the search
    /// wraps to slot 1, and a run never spans the end and the start.
    #[test]
    fn next_fit_wraps_without_spanning_the_end() {
        let mut m = SlotMap::new(10);
        assert_eq!(m.alloc_cluster(8), Some(1));
        m.free(1);
        m.free(2);
        m.free(3);
        assert_eq!(m.alloc(), Some(9), "the cursor goes on past the freed ones");
        // Free: 1, 2, 3 and 10. A run of 3 is at 1 (not 10, 1, 2).
        assert_eq!(m.alloc_cluster(3), Some(1));
        assert_eq!(m.alloc_cluster(2), None, "only slot 10 is left");
        assert_eq!(m.alloc(), Some(10));
        assert_eq!(m.alloc(), None);
    }

    /// An unused tail given back right after its run is where the next run starts; one given
    /// back after something else was allocated is only freed.
    #[test]
    fn an_unreserved_tail_is_where_the_next_run_starts() {
        let mut m = SlotMap::new(64);
        assert_eq!(m.alloc_cluster(16), Some(1));
        m.unreserve(15, 2);
        assert_eq!(m.alloc_cluster(16), Some(15), "continues after slot 14");
        assert_eq!(m.alloc_cluster(16), Some(31));
        m.unreserve(20, 11);
        assert_eq!(m.state(20), Some(SlotState::Free));
        assert_eq!(m.alloc_cluster(4), Some(47), "the cursor stays past slot 46");
        m.unreserve(0, 4);
        m.unreserve(63, 0);
        assert_eq!(m.counts(), (25, 39, 0), "used: 1..=19, 31..=50");
    }

    /// Fragmented free space: a cluster takes the first hole big enough, skipping smaller ones.
    #[test]
    fn fragmentation_skips_small_holes() {
        let mut m = SlotMap::new(130);
        assert_eq!(m.alloc_cluster(130), Some(1));
        // Holes: 5..=6 (2), 20..=23 (4), 100..=107 (8).
        for s in [5, 6, 20, 21, 22, 23, 100, 101, 102, 103, 104, 105, 106, 107] {
            m.free(s);
        }
        assert_eq!(m.alloc_cluster(5), Some(100));
        assert_eq!(
            m.alloc_cluster(2),
            Some(105),
            "next fit: after the cursor, not the hole at 5"
        );
        assert_eq!(
            m.alloc_cluster(4),
            Some(20),
            "107 alone is too small: wrapped"
        );
        assert_eq!(m.alloc_cluster(2), Some(5));
        assert_eq!(m.alloc(), Some(107));
        assert_eq!(m.counts(), (0, 130, 0));
    }

    /// A bad slot splits a run and is never handed out, also not after it is freed.
    #[test]
    fn bad_slots_are_never_allocated() {
        let mut m = SlotMap::new(8);
        m.mark_bad(3);
        let c = m.alloc_cluster(2).unwrap();
        m.mark_bad(c); // used, then bad
        assert_eq!(m.alloc_cluster(3), Some(4));
        m.free(3);
        m.free(c);
        assert_eq!(m.counts(), (2, 4, 2));
        let mut got = Vec::new();
        while let Some(s) = m.alloc() {
            got.push(s);
        }
        got.sort_unstable();
        assert_eq!(got, [7, 8]);
        assert!(got.iter().all(|&s| s != 1 && s != 3));
        assert_eq!(m.state(1), Some(SlotState::Bad));
        assert_eq!(m.state(3), Some(SlotState::Bad));
    }

    /// A full, or too fragmented, map returns `None` and changes nothing.
    #[test]
    fn exhaustion_returns_none_and_changes_nothing() {
        let mut m = SlotMap::new(70);
        assert_eq!(m.alloc_cluster(0), None);
        assert_eq!(m.alloc_cluster(71), None);
        assert_eq!(m.alloc_cluster(64), Some(1));
        assert_eq!(m.alloc_cluster(7), None);
        assert_eq!(m.counts(), (6, 64, 0));
        assert_eq!(m.alloc_cluster(6), Some(65));
        assert_eq!(m.alloc(), None);
        assert_eq!(m.alloc_cluster(1), None);
        assert_eq!(m.counts(), (0, 70, 0));
        assert_eq!(SlotMap::new(0).alloc(), None);
    }
}
