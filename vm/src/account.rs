//! Memory accounting across VMs: which frames each VM reaches, which of them it shares with
//! other VMs, and how many frames the sharing saves, by cause (beyond the seed; its `uvmexp`
//! counts pages globally, not who shares them).
//!
//! # Definitions
//!
//! [`account`] walks the maps it is given (the *VMs*) and, for every page of every entry, finds
//! the frame that backs it now, if any: the page is *resident* when
//! - its amap slot holds an anon whose page is resident (the anon's page, which may be an object
//!   page lent to it), or
//! - its slot is empty (or the entry has no amap) and the entry's object has the page resident
//!   (`Object::resident` at the entry's offset): the page a read would map (2A).
//!
//! An anon in the slot hides the object page below it, resident or not. A page is *swapped*
//! when its anon has a swap slot and no resident page (0 until the hypervisor has a swap device,
//! but computed). Counts are 4 KiB pages, per VM:
//!
//! - `resident`: the VM's resident pages, a frame counted once per IPA page that reaches it (what
//!   the VM would use with no sharing at all);
//! - `private`: those whose frame no other VM reaches (a frame reached twice inside one VM, a
//!   merge of two of its own pages, is private);
//! - `shared`: those whose frame at least one other VM reaches; `private + shared = resident`.
//!   `sharers` sums, over those pages, the number of VMs reaching the frame (this one included):
//!   `sharers / shared` is the mean;
//! - `zero`: resident pages on the zero anon of the dedup scanner (the anon its stable tree
//!   marks all-zero: see `dedup.rs`, "All-zero pages"), given by [`ZeroAnons`];
//! - `swapped`: as above.
//!
//! Global ([`Global`]): `distinct` frames reached by the VMs; `shared_frames`, those reached by
//! two VMs or more, each counted once, with `max_sharers` the most VMs reaching one frame; the
//! pool's `total`, `free` (`Uvm::free_pages`) and `used = total - free` (which also counts the
//! stage-2 tables, object pages no VM reaches and the frames of VMs not given);
//! and the frames saved:
//!
//! ```text
//!   saved = sum over VMs of resident - distinct = sum over frames f of (refs(f) - 1)
//! ```
//!
//! where `refs(f)` is the number of (VM, IPA page) pairs that reach `f`. Each frame's saving is
//! split by cause, in this order:
//! 1. **dedup**: up to the `merged` count of the frame's anon (`AnonState::merged`: its
//!    references a merge made), so a merged anon a fork also shares is counted as dedup's only
//!    for the references dedup made, as `dedup_saved` does;
//! 2. **image**: the rest, when some page reaches the frame through an object (an image page
//!    mapped by several VMs, or several IPAs);
//! 3. **clone**: the rest otherwise: an anon several VMs reach through one amap (a clone before
//!    its first write: `needs_copy`, or SHARE inheritance) or through amaps a fork copied
//!    (`an_ref > 1`).
//!
//! So `saved.clone + saved.image + saved.dedup = saved = Σ resident - distinct`. A frame is on
//! one anon, except an object page lent to anons (a loan: never merged); its `merged` is the
//! most of those anons'.
//!
//! # Concurrency
//!
//! The walk runs while other CPUs fault: each page's answer is what its locks said at that
//! moment, and faults, merges and frees go on between pages, so a pass under load is a sample,
//! not an atomic snapshot (a page promoted during the walk can be missed or counted on either
//! frame). Each map's entries cannot change during its walk (MAPS read).
//!
//! # Cost
//!
//! O(pages of the entries) lock round trips (an AMAP per [`CHUNK`] slots, an ANON per anon, an
//! OBJECT per object page looked up), and a sort of 16 bytes per resident page (by frame: the
//! references of one frame end up side by side). Nothing is proportional to the pool's size (a
//! table per pool frame cost 15 ms a pass under QEMU TCG with a 900 MiB pool and 26 pages
//! resident). For reports and a periodic trace record, not per fault.
//!
//! # Locks
//!
//! Per VM, in the order given: MAPS (read) for the walk of that map; under it, per [`CHUNK`]
//! slots of an entry, its AMAP; under that, per slot, the anon's ANON (copying its page, swap
//! slot and merged count, then dropped), or with no anon the object's OBJECT
//! (`Object::resident`). Then PAGE QUEUES alone (`Uvm::free_pages`). Nothing is held on return.
//! The dedup scanner's DEDUP lock is not taken here: [`ZeroAnons`] comes from
//! `Dedup::zero_anons`, called before (DEDUP before MAPS).

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::addr::{PageIdx, PAGE_SIZE};
use crate::anon::{Anon, SwapSlot};
use crate::map::{Entry, Map};
use crate::trace;
use crate::uvm::Uvm;

/// Amap slots looked at per AMAP lock hold: a fault in the same amap waits at most this many
/// slot look-ups.
pub const CHUNK: usize = 64;

/// One VM's figures (pages; see the module documentation).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct VmAccount {
    /// The id the caller gave the VM.
    pub vm: u16,
    pub resident: u64,
    pub private: u64,
    pub shared: u64,
    /// Sum over the shared pages of the VMs reaching their frame.
    pub sharers: u64,
    pub zero: u64,
    pub swapped: u64,
}

/// Frames saved by sharing, by cause (see the module documentation).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Saved {
    pub clone: u64,
    pub image: u64,
    pub dedup: u64,
}

impl Saved {
    /// Every cause together: `Σ resident - distinct`.
    pub fn total(&self) -> u64 {
        self.clone + self.image + self.dedup
    }
}

/// The figures over every VM given, and the pool's.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Global {
    /// Frames reached by at least one VM.
    pub distinct: u64,
    /// Frames reached by two VMs or more.
    pub shared_frames: u64,
    /// Most VMs reaching one frame.
    pub max_sharers: u32,
    pub saved: Saved,
    /// Frames of the pool.
    pub pool_total: u64,
    /// Free frames (`Uvm::free_pages`).
    pub pool_free: u64,
}

impl Global {
    /// Frames of the pool in use: `pool_total - pool_free`.
    pub fn pool_used(&self) -> u64 {
        self.pool_total.saturating_sub(self.pool_free)
    }
}

/// What [`account`] found.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Account {
    /// Per VM, in the order given.
    pub vms: Vec<VmAccount>,
    pub global: Global,
}

impl Account {
    /// Sum over the VMs of `resident`.
    pub fn resident_sum(&self) -> u64 {
        self.vms.iter().map(|v| v.resident).sum()
    }

    /// The trace records of this account taken at `time` on `cpu`: one accounting record per
    /// VM and the savings record (counts saturate at `u32::MAX`: 16 TiB of pages).
    pub fn records(&self, time: u64, cpu: u8) -> (Vec<trace::Accounting>, trace::Savings) {
        let n = |x: u64| u32::try_from(x).unwrap_or(u32::MAX);
        let g = &self.global;
        let vms = self
            .vms
            .iter()
            .map(|v| trace::Accounting {
                time,
                cpu,
                vm: v.vm,
                resident: n(v.resident),
                private: n(v.private),
                shared: n(v.shared),
                zero: n(v.zero),
                swapped: n(v.swapped),
                pool_free: n(g.pool_free),
            })
            .collect();
        let savings = trace::Savings {
            time,
            cpu,
            max_sharers: u16::try_from(g.max_sharers).unwrap_or(u16::MAX),
            distinct: n(g.distinct),
            shared_frames: n(g.shared_frames),
            saved_clone: n(g.saved.clone),
            saved_image: n(g.saved.image),
            saved_dedup: n(g.saved.dedup),
            pool_used: n(g.pool_used()),
            pool_free: n(g.pool_free),
        };
        (vms, savings)
    }
}

/// The dedup scanner's zero anons (`Dedup::zero_anons`); none without a scanner. Holding them
/// keeps their addresses from being reused while an account runs.
#[derive(Default)]
pub struct ZeroAnons(Vec<Arc<Anon>>);

impl ZeroAnons {
    /// The set of `anons`.
    pub fn new(mut anons: Vec<Arc<Anon>>) -> ZeroAnons {
        anons.sort_by_key(|a| Arc::as_ptr(a) as usize);
        anons.dedup_by_key(|a| Arc::as_ptr(a) as usize);
        ZeroAnons(anons)
    }

    /// True when `anon` is one of them.
    pub fn contains(&self, anon: &Arc<Anon>) -> bool {
        let key = Arc::as_ptr(anon) as usize;
        self.0
            .binary_search_by_key(&key, |a| Arc::as_ptr(a) as usize)
            .is_ok()
    }
}

/// One (VM, IPA page) reference to a frame, as the walk found it.
#[derive(Clone, Copy)]
struct Ref {
    frame: PageIdx,
    /// Index of the VM in the caller's list.
    vm: u32,
    /// The `merged` count of the anon it went through (0 through an object).
    merged: u32,
    /// Through an object.
    object: bool,
}

/// The references of one walk.
struct Walk {
    refs: Vec<Ref>,
}

impl Walk {
    /// Count a reference of VM `vm` (an index) to `frame`.
    fn reach(&mut self, vm: usize, frame: PageIdx, merged: u32, object: bool) {
        let vm = u32::try_from(vm).unwrap_or(u32::MAX);
        self.refs.push(Ref {
            frame,
            vm,
            merged,
            object,
        });
    }
}

/// Account for `vms` (an id and a map each) now: see the module documentation for what each
/// figure means and what the walk costs.
///
/// # Locks
/// Entry: nothing held. Takes per map MAPS (read), under it AMAP per [`CHUNK`] slots, under that
/// ANON per anon or OBJECT per object page; then PAGE QUEUES. Exit: nothing.
pub fn account(uvm: &Uvm, vms: &[(u16, &Map)], zero: &ZeroAnons) -> Account {
    let mut walk = Walk { refs: Vec::new() };
    let mut out: Vec<VmAccount> = vms
        .iter()
        .map(|(vm, _)| VmAccount {
            vm: *vm,
            ..VmAccount::default()
        })
        .collect();
    for (i, ((_, map), acc)) in vms.iter().zip(out.iter_mut()).enumerate() {
        let g = map.read();
        for e in g.entries.values() {
            walk_entry(&mut walk, i, e, zero, acc);
        }
    }
    let mut global = Global {
        pool_total: uvm.total_pages() as u64,
        pool_free: uvm.free_pages() as u64,
        ..Global::default()
    };
    // By frame, and by VM within a frame: each frame's references are one run.
    walk.refs.sort_unstable_by_key(|r| (r.frame.0, r.vm));
    for run in walk.refs.chunk_by(|a, b| a.frame == b.frame) {
        let nvms = 1 + run.windows(2).filter(|w| w[0].vm != w[1].vm).count() as u32;
        let merged = run.iter().map(|r| r.merged).max().unwrap_or(0);
        global.distinct += 1;
        global.max_sharers = global.max_sharers.max(nvms);
        let saved = run.len() as u64 - 1;
        let dedup = saved.min(u64::from(merged));
        global.saved.dedup += dedup;
        if run.iter().any(|r| r.object) {
            global.saved.image += saved - dedup;
        } else {
            global.saved.clone += saved - dedup;
        }
        for r in run {
            let Some(acc) = out.get_mut(r.vm as usize) else {
                continue;
            };
            acc.resident += 1;
            if nvms >= 2 {
                acc.shared += 1;
                acc.sharers += u64::from(nvms);
            }
        }
        if nvms >= 2 {
            global.shared_frames += 1;
        }
    }
    for acc in &mut out {
        acc.private = acc.resident - acc.shared;
    }
    Account { vms: out, global }
}

/// Walk the pages of entry `e` of VM `vm` (an index into the walk's tables), counting its swapped
/// and zero pages into `acc`.
///
/// # Locks
/// Entry: the entry's map read-locked (MAPS). Takes AMAP per [`CHUNK`] slots and under it ANON
/// per anon or OBJECT per object page. Exit: as on entry.
fn walk_entry(walk: &mut Walk, vm: usize, e: &Entry, zero: &ZeroAnons, acc: &mut VmAccount) {
    let n = e.npages();
    let mut first = 0;
    while first < n {
        let last = first.saturating_add(CHUNK).min(n);
        let amap = e.aref.as_ref().map(|a| (a.slotoff, a.amap.lock()));
        for i in first..last {
            let anon = amap
                .as_ref()
                .and_then(|(off, st)| st.lookup(off.checked_add(i)?));
            if let Some(anon) = anon {
                let (page, swslot, merged) = {
                    let a = anon.lock();
                    (a.page, a.swslot, a.merged)
                };
                match page {
                    Some(pg) => {
                        walk.reach(vm, pg, merged, false);
                        if zero.contains(anon) {
                            acc.zero += 1;
                        }
                    }
                    None if matches!(swslot, SwapSlot::Slot(_)) => acc.swapped += 1,
                    None => {}
                }
                continue;
            }
            let Some((obj, off)) = &e.object else {
                continue;
            };
            let at = (i as u64)
                .checked_mul(PAGE_SIZE)
                .and_then(|b| off.checked_add(b));
            if let Some(pg) = at.and_then(|at| obj.resident(at)) {
                walk.reach(vm, pg, 0, true);
            }
        }
        first = last;
    }
}

#[cfg(test)]
mod tests;
