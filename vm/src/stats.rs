//! Fault and paging counters, named exactly as NetBSD's `uvmexp` fields.
//!
//! Every `Map` has its own [`Stats`] (per VM), which the fault routine bumps; the
//! [`crate::uvm::Uvm`] has one for the pagedaemon and sums them all (`Uvm::stats`). Counters are
//! relaxed atomics: they are statistics, not synchronisation, and a reader may see them
//! mid-update.

use core::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Live counters (relaxed atomics).
        #[derive(Default, Debug)]
        pub struct Stats {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        /// A copy of every counter at one moment.
        #[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
        pub struct StatsSnapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        /// The counter names, in table order.
        pub const COUNTER_NAMES: &[&str] = &[$(stringify!($name),)*];

        impl Stats {
            /// Read every counter.
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }

            /// Add every counter of `other` to ours.
            pub fn absorb(&self, other: &StatsSnapshot) {
                $(self.$name.fetch_add(other.$name, Ordering::Relaxed);)*
            }
        }

        impl StatsSnapshot {
            /// `(name, value)` of every counter, in table order.
            pub fn fields(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$((stringify!($name), self.$name),)*].into_iter()
            }

            /// Counter-wise sum (for a "total" column).
            pub fn add(&self, other: &StatsSnapshot) -> StatsSnapshot {
                StatsSnapshot { $($name: self.$name.wrapping_add(other.$name),)* }
            }

            /// Counter-wise difference `self - earlier` (saturating at zero).
            pub fn since(&self, earlier: &StatsSnapshot) -> StatsSnapshot {
                StatsSnapshot { $($name: self.$name.saturating_sub(earlier.$name),)* }
            }
        }
    };
}

counters! {
    /// Faults entered (every call of `fault`).
    faults,
    /// Calls of anonget (case 1 needed the anon's data).
    fltanget,
    /// anonget went round its loop again after relocking.
    fltanretry,
    /// needs_copy cleared by an amap copy before refaulting.
    fltamcopy,
    /// Neighbouring anon pages mapped.
    fltnamap,
    /// Neighbouring object pages mapped.
    fltnomap,
    /// Locked (non-blocking) object gets.
    fltlget,
    /// Synchronous object gets (I/O or fill).
    fltget,
    /// Case 1A.
    flt_anon,
    /// Case 1B.
    flt_acow,
    /// Case 2A.
    flt_obj,
    /// Case 2B from an object page.
    flt_prcopy,
    /// Case 2B zero fill.
    flt_przero,
    /// No free page when one was needed. Deliberately wider than the seed, which counts it in
    /// anonget (before its reclaimable test) and in promote only when it is about to wait: we
    /// count every failed allocation on the fault path (anonget, 1A loan break, 1B/2B promote,
    /// 2A loan break, a pager's `NoMemory`) before the reclaim decision, so a fault that ends
    /// `NoMemory` counts both this and `fltnoanon`.
    fltnoram,
    /// No anon/page and nothing reclaimable (ENOMEM). Deliberately wider than the seed (only a
    /// failed promote with `!uvm_reclaimable()`): counted for every fault that ends `NoMemory`
    /// (`Fault::reclaim_or_nomem`), whatever allocation failed, so it equals the number of
    /// `NoMemory` results.
    fltnoanon,
    /// A busy page was found (the seed sleeps; we restart). Also counted, unlike the seed, when
    /// the case-2 SYNC get finds the object page BUSY (`Again`, the seed's "fltagain2" sleep):
    /// both are a fault that waits on another's I/O. And a swap-in whose read the device took
    /// asynchronously: that fault waits on its own read.
    fltpgwait,
    /// A page was released while we had it busy. The seed counts it only in case 2 (the object
    /// page released during the SYNC get); we also count the anon page released during a
    /// swap-in in anonget, which the seed handles without a counter.
    fltpgrele,
    /// Relock attempts after unlocking for I/O.
    fltrelck,
    /// Relocks that found the map unchanged.
    fltrelckok,
    /// Pages read from swap.
    pageins,
    /// Swap reads started ahead of the faults, for the following anons of a SEQUENTIAL entry's
    /// amap (`fault/readahead.rs`; not in the seed). Each is a read request as a page-in is.
    readaheads,
    /// Pages written to swap.
    pageouts,
    /// Page-out requests: one for each cluster of `pageouts` written together (the seed's
    /// `uvmexp.pdpageouts`).
    pdpageouts,
    /// Loaned pages whose loan was broken by a write. Not in the seed (ours, as are the next
    /// three).
    fltloanbreak,
    /// The pmap could not enter a mapping (table frame shortage).
    fltpmapfail,
    /// Faults returned as `Restart` to the caller.
    fltrestart,
    /// Swap slots marked bad after an I/O error.
    swpgbad,
    /// Pages the pagedaemon scanned.
    pdscans,
    /// Pages the pagedaemon freed.
    pdfreed,
    /// Pages moved from the active to the inactive queue.
    pddeact,
    /// Dedup (`dedup.rs`, not in the seed; this and the next six): pages whose contents the
    /// scanner hashed.
    dedup_scanned,
    /// Pages the scanner found changed since its last look (kept out of its trees, and looked
    /// at less often while they keep changing).
    dedup_volatile,
    /// Pages merged: their amap slot now refers to an identical shared anon and their frame was
    /// freed (counted in the map of the slot).
    dedup_merged,
    /// Of `dedup_merged`, pages that were all zero.
    dedup_zero,
    /// Merged references that ended (a copy-on-write break, or the slot freed): each gives back
    /// one frame of dedup's saving. `dedup_merged - dedup_unmerged` is the saving now
    /// ([`StatsSnapshot::dedup_saved`]).
    dedup_unmerged,
    /// Hash twins whose bytes differed (never merged).
    dedup_collisions,
    /// Merges given up because a page was BUSY, wired or loaned when the merge looked.
    dedup_busy,
}

impl StatsSnapshot {
    /// Frames dedup saves now: merges whose reference still stands (meaningful in the global
    /// totals, [`crate::uvm::Uvm::stats`]; a map's own counters see only its side).
    pub fn dedup_saved(&self) -> u64 {
        self.dedup_merged.saturating_sub(self.dedup_unmerged)
    }
}

impl Stats {
    /// Increment one counter by one.
    #[inline]
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_and_fields_agree() {
        let s = Stats::default();
        Stats::bump(&s.faults);
        Stats::bump(&s.flt_przero);
        Stats::bump(&s.flt_przero);
        let snap = s.snapshot();
        assert_eq!(snap.faults, 1);
        let names: alloc::vec::Vec<_> = snap.fields().map(|(n, _)| n).collect();
        assert_eq!(names.as_slice(), COUNTER_NAMES);
        assert_eq!(
            snap.fields().find(|(n, _)| *n == "flt_przero"),
            Some(("flt_przero", 2))
        );
        assert_eq!(snap.add(&snap).faults, 2);
        assert_eq!(snap.since(&snap.add(&snap)).faults, 0);
    }
}
