//! Fair memory under pressure: each VM's claim on the page pool — a reservation, a limit and
//! shares, as VMware ESX gives them (Waldspurger, "Memory Resource Management in VMware ESX
//! Server", OSDI 2002, §5) — and who gives frames back when the pool runs dry.
//!
//! Without a claim, the pool goes to whoever faults first, and the VM that finds it empty is the
//! one stopped: a VM that grabbed memory early keeps it and an innocent latecomer dies. With
//! claims ([`Shares::join`], the scenario's `mem_min_mib`, `mem_max_mib`, `shares`):
//!
//! - **entitlement** ([`entitlements`]): every VM is entitled to its `min` frames; what the pool
//!   has beyond the sum of the minimums is split in proportion to the shares, no VM getting more
//!   than its `max` or its RAM (its cap), the part a capped VM cannot take going to the others
//!   (water-filling). ESX allocates the same way; its *idle memory tax* (an idle page costs more
//!   shares than an active one) is not done: entitlement weighs every resident page alike.
//! - **reclaim** ([`Spare`], used by `Uvm::reclaim`): while some VM is over its entitlement, the
//!   pagedaemon's clock passes over the pages of VMs at or under theirs (it moves them back to
//!   the active queue as if referenced), so page-outs and dropped object pages come from the VMs
//!   over their share first.
//! - **an empty pool** ([`Standing`], [`most_over`]): when reclaim cannot help (no swap: anon
//!   pages cannot be freed), a VM under its entitlement that faults on the empty pool is not the
//!   one stopped; the VM most over its entitlement is (the hypervisor decides, `virt::fairmem`).
//! - **a limit** ([`Standing::over_max`]): a VM may not hold more than its `max` frames; past it,
//!   its own pages are reclaimed (with swap) or it is stopped (without).
//!
//! # What a VM holds
//!
//! A VM's *resident* count is its stage-2 table's valid leaf entries (`Stage2::resident`, kept
//! under its own lock as mappings are entered and removed): every frame it maps, so a frame
//! shared by several VMs (an image page, a clone's or a merge's anon) counts in each of them —
//! the resident-set view, where ESX charges a shared page to each sharer too. Frames a VM caused
//! but no longer maps (a page swapped in but not entered yet, stage-2 tables) count in none.
//! Reading it is O(1) and costs the table's lock, so the policy reads it per VM when it decides,
//! never per page.
//!
//! # Locks
//! SHARES (the member list) is a leaf: it is held only to copy the members out, and released
//! before any `Stage2` lock is taken to read a resident count.

use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;

use crate::addr::PageIdx;
use crate::map::Map;
use crate::pmap::{Stage2, Vmid};
use crate::uvm::Uvm;

/// Frames per MiB.
const FRAMES_PER_MIB: usize = 256;

/// ESX's "normal" shares: 10 per MiB of configured memory (a VM without a claim of its own,
/// in a scenario where others have one, gets this).
pub const NORMAL_SHARES_PER_MIB: u32 = 10;

/// A VM's claim on the pool, in frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemShare {
    /// Frames it is guaranteed (ESX's reservation): never taken from it for another VM.
    pub min: usize,
    /// Frames it may never exceed (ESX's limit); `None`: its RAM.
    pub max: Option<usize>,
    /// Its weight in the split of the pool beyond the minimums.
    pub shares: u32,
}

impl MemShare {
    /// ESX's default: no reservation, no limit, normal shares for `ram` frames of RAM.
    pub fn normal(ram: usize) -> MemShare {
        let mib = u32::try_from(ram / FRAMES_PER_MIB)
            .unwrap_or(u32::MAX)
            .max(1);
        MemShare {
            min: 0,
            max: None,
            shares: mib.saturating_mul(NORMAL_SHARES_PER_MIB),
        }
    }
}

/// A claim and the most the VM can ever hold (its RAM in frames).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    pub share: MemShare,
    pub ram: usize,
}

impl Claim {
    /// The most it may be entitled to: its limit, its RAM.
    fn cap(&self) -> usize {
        self.share.max.unwrap_or(self.ram).min(self.ram)
    }
}

/// Each claim's entitlement out of `pool` frames, in the order given: its `min` (up to its cap),
/// then the rest of the pool split in proportion to the shares, none above its cap; what a
/// capped VM cannot take is split again among the others. When the minimums exceed the pool
/// each VM is still entitled to its minimum (the pool is overcommitted; nobody is over).
pub fn entitlements(claims: &[Claim], pool: usize) -> Vec<usize> {
    let mut got: Vec<usize> = claims.iter().map(|c| c.share.min.min(c.cap())).collect();
    let mut left = pool.saturating_sub(got.iter().sum());
    // Each round either gives out all that is left (but a rounding remainder smaller than the
    // number of VMs) or fills some VM to its cap, which then leaves the round: at most one round
    // per VM, plus one.
    for _ in 0..=claims.len() {
        let open: Vec<usize> = (0..claims.len())
            .filter(|&i| got[i] < claims[i].cap() && claims[i].share.shares > 0)
            .collect();
        let weight: u128 = open
            .iter()
            .map(|&i| u128::from(claims[i].share.shares))
            .sum();
        if left == 0 || weight == 0 {
            break;
        }
        let mut given = 0;
        for &i in &open {
            let fair = (left as u128 * u128::from(claims[i].share.shares) / weight) as usize;
            let take = fair.min(claims[i].cap() - got[i]);
            got[i] += take;
            given += take;
        }
        left -= given;
        if given == 0 {
            // Only a remainder smaller than one frame a VM is left.
            break;
        }
    }
    got
}

/// One VM's place at one moment: what it holds against what it is entitled to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standing {
    pub vmid: Vmid,
    pub claim: Claim,
    /// Frames it maps now (see the module documentation).
    pub resident: usize,
    pub entitlement: usize,
}

impl Standing {
    /// Frames it holds beyond its entitlement (0 at or under it).
    pub fn excess(&self) -> usize {
        self.resident.saturating_sub(self.entitlement)
    }

    /// It holds more than its limit.
    pub fn over_max(&self) -> bool {
        self.claim.share.max.is_some_and(|max| self.resident > max)
    }
}

/// The VM most over its entitlement other than `except` (the one asking), if any VM is over.
/// Ties go to the lower VMID, so the choice is deterministic.
pub fn most_over(standings: &[Standing], except: Vmid) -> Option<Vmid> {
    standings
        .iter()
        .filter(|s| s.vmid != except && s.excess() > 0)
        .max_by(|a, b| a.excess().cmp(&b.excess()).then(b.vmid.cmp(&a.vmid)))
        .map(|s| s.vmid)
}

/// A set of VMIDs (the stage-2 VMID is 8 bits: `Stage2::MAX_VMID`).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct VmSet([u64; 4]);

impl VmSet {
    pub fn insert(&mut self, v: Vmid) {
        if let Some(w) = self.0.get_mut(usize::from(v.0 / 64)) {
            *w |= 1 << (v.0 % 64);
        }
    }

    pub fn contains(&self, v: Vmid) -> bool {
        self.0
            .get(usize::from(v.0 / 64))
            .is_some_and(|w| w & (1 << (v.0 % 64)) != 0)
    }

    /// Word by word: `== [0; 4]` compiles to a call of the byte-wise `memcmp` of
    /// `compiler_builtins` at EL2, 3 % of the instructions of a swap-in pass (the pagedaemon's
    /// clock asks once a page).
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }
}

/// Which pages one run of the pagedaemon's clock passes over: those no VM of `take_from` maps,
/// when `take_from` is not empty (an empty set spares nothing: the plain clock).
#[derive(Clone, Copy, Default, Debug)]
pub struct Spare {
    take_from: VmSet,
}

impl Spare {
    /// The clock's rule while claims are set: take from the VMs over their entitlement (when
    /// none is, from anyone).
    ///
    /// # Locks
    /// As [`Shares::standings`].
    pub fn for_reclaim(uvm: &Uvm) -> Spare {
        let mut take_from = VmSet::default();
        for s in uvm.shares().standings(uvm.total_pages()) {
            if s.excess() > 0 {
                take_from.insert(s.vmid);
            }
        }
        Spare { take_from }
    }

    /// Take only from `vmid` (a VM over its limit gives back its own pages).
    pub fn only_from(vmid: Vmid) -> Spare {
        let mut take_from = VmSet::default();
        take_from.insert(vmid);
        Spare { take_from }
    }

    /// True when the clock should pass over `pg`: some VMs are to give frames back and none of
    /// them maps it (a page no VM maps is never spared).
    ///
    /// # Locks
    /// Takes the frame's rmap lock (`Rmap::mappings_of`); the caller holds no PMAP-or-later lock.
    pub fn spares(&self, uvm: &Uvm, pg: PageIdx) -> bool {
        if self.take_from.is_empty() {
            return false;
        }
        let mappers = uvm.rmap().mappings_of(uvm.pa(pg));
        !mappers.is_empty() && !mappers.iter().any(|(v, _)| self.take_from.contains(*v))
    }
}

/// A VM taking part: its claim and its stage-2 table (for its resident count).
struct Member {
    vmid: Vmid,
    claim: Claim,
    stage2: Weak<Stage2>,
}

/// The VMs with claims on the pool (none: the policy is off, first come first served).
#[derive(Default)]
pub struct Shares {
    members: crate::sync::Mutex<Vec<Member>>,
    /// Some member has a limit: [`Shares::limit`], asked after every fault, takes SHARES only
    /// then (a global lock on every fault of every run would serialize the CPUs' faults).
    limited: core::sync::atomic::AtomicBool,
}

impl Shares {
    /// `map`'s VM takes part with `share` and `ram` frames of RAM.
    ///
    /// # Locks
    /// Takes SHARES (a leaf).
    pub fn join(&self, map: &Map, share: MemShare, ram: usize) {
        let member = Member {
            vmid: map.vmid(),
            claim: Claim { share, ram },
            stage2: Arc::downgrade(map.stage2()),
        };
        if share.max.is_some() {
            self.limited
                .store(true, core::sync::atomic::Ordering::Relaxed);
        }
        self.members.lock().push(member);
    }

    /// `vmid`'s VM stops taking part (it stopped: the others' entitlements grow).
    ///
    /// # Locks
    /// Takes SHARES (a leaf).
    pub fn leave(&self, vmid: Vmid) {
        self.members.lock().retain(|m| m.vmid != vmid);
    }

    /// The claim of `vmid`'s VM, if it takes part.
    ///
    /// # Locks
    /// Takes SHARES (a leaf).
    pub fn claim(&self, vmid: Vmid) -> Option<Claim> {
        self.members
            .lock()
            .iter()
            .find(|m| m.vmid == vmid)
            .map(|m| m.claim)
    }

    /// The limit of `vmid`'s VM in frames, if it takes part and has one.
    ///
    /// # Locks
    /// None when no member has a limit; otherwise takes SHARES (a leaf).
    pub fn limit(&self, vmid: Vmid) -> Option<usize> {
        if !self.limited.load(core::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        self.claim(vmid)?.share.max
    }

    /// Every member's standing now, entitlements out of `pool` frames (empty when the policy is
    /// off). A member whose table is gone holds nothing.
    ///
    /// # Locks
    /// Takes SHARES to copy the members, releases it, then each member's PMAP lock in turn.
    pub fn standings(&self, pool: usize) -> Vec<Standing> {
        let members: Vec<(Vmid, Claim, Weak<Stage2>)> = self
            .members
            .lock()
            .iter()
            .map(|m| (m.vmid, m.claim, m.stage2.clone()))
            .collect();
        let claims: Vec<Claim> = members.iter().map(|(_, c, _)| *c).collect();
        let entitled = entitlements(&claims, pool);
        members
            .into_iter()
            .zip(entitled)
            .map(|((vmid, claim, stage2), entitlement)| Standing {
                vmid,
                claim,
                resident: stage2.upgrade().map_or(0, |s| s.resident()),
                entitlement,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
