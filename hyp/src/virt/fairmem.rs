//! Fair memory under pressure, the hypervisor's side; the policy is the engine's (`vm::share`):
//!
//! - at build, every VM joins with its claim (`min=`, `max=`, `shares=`) when any VM of the
//!   scenario has one ([`join`]); without any, nothing changes: first come, first served;
//! - a fault that ends `NoMemory` after the pagedaemon could not help: when its VM is under its
//!   entitlement, the VM most over its own is stopped instead and the fault is retried
//!   ([`stop_hog`]); otherwise the faulting VM is stopped, as before, saying so when it is over
//!   its own entitlement ([`over_entitlement`]);
//! - after a fault mapped a page, a VM over its limit gives back its own pages when there is
//!   swap; when it stays over, it is stopped ([`over_limit`]).
//!
//! A VM's claim leaves the policy when it stops (`Hyp::stop_vm`), which prints what it held
//! against its entitlement (`report::share_at_stop`).
//!
//! # Locks
//! Nothing is held on entry; the engine's SHARES and PMAP locks are taken and released inside.

use alloc::format;

use super::machine::Vcpu;
use super::state::Hyp;
use hyp::config::{Config, VmConfig};
use hyp::stop::{Cause, Stop};
use vm::map::Map;
use vm::share::{most_over, MemShare, Spare};
use vm::PAGE_SIZE;

/// Claims are on when any VM of the scenario has one.
pub fn claims_on(config: &Config) -> bool {
    config.vms.iter().any(|v| v.share.is_some())
}

/// `map`'s VM (of `vc`) joins the policy when claims are `on`: with its claim, or ESX's normal
/// one.
pub fn join(h: &Hyp, map: &Map, vc: &VmConfig, on: bool) {
    if on {
        let ram = (vc.ram_bytes / PAGE_SIZE) as usize;
        h.uvm.shares().join(map, vc.share.unwrap_or(MemShare::normal(ram)), ram);
    }
}

/// A fault of `v` ended `NoMemory` and the pagedaemon cannot help. When `v`'s VM is under its
/// entitlement and another VM is over its own, the one most over is stopped (its frames go back
/// to the pool) and the answer is true: `v` refaults. False otherwise (policy off, `v`'s VM at
/// or over its entitlement, nobody else over): the caller stops `v`'s VM.
pub fn stop_hog(h: &Hyp, v: &Vcpu) -> bool {
    let me = v.map().vmid();
    let standings = h.uvm.shares().standings(h.uvm.total_pages());
    let Some(mine) = standings.iter().find(|s| s.vmid == me) else { return false };
    if mine.resident >= mine.entitlement {
        return false;
    }
    let Some(hog) = most_over(&standings, me).and_then(|id| standings.iter().find(|s| s.vmid == id)) else { return false };
    let Some(vm) = h.vms().into_iter().find(|vm| !vm.is_stopped() && vm.memory().is_some_and(|m| m.vmid() == hog.vmid.0)) else {
        return false;
    };
    let why = format!(
        "over its memory entitlement ({} of {} pages) when vm{} ({} of {}) found the pool empty",
        hog.resident, hog.entitlement, v.vm.number, mine.resident, mine.entitlement
    );
    log::warn!("share: vm{} ({}) stopped so that vm{} ({}) can fault: {why}", vm.number, vm.name, v.vm.number, v.vm.name);
    h.stop_vm(&vm, Stop::crash(Cause::OutOfMemory, why));
    true
}

/// A fault of `v` ended `NoMemory`, the pagedaemon cannot help, and no other VM was stopped for
/// it ([`stop_hog`]): when `v`'s VM is itself at or over its entitlement, why it is stopped (said
/// on the console as a `share:` warning, as [`stop_hog`]'s stop is). `None`: policy off, or the
/// VM under its entitlement (nobody over theirs either).
pub fn over_entitlement(h: &Hyp, v: &Vcpu) -> Option<alloc::string::String> {
    let standings = h.uvm.shares().standings(h.uvm.total_pages());
    let mine = standings.iter().find(|s| s.vmid == v.map().vmid()).filter(|s| s.resident >= s.entitlement)?;
    let why = format!("over its memory entitlement ({} of {} pages) when it found the pool empty", mine.resident, mine.entitlement);
    log::warn!("share: vm{} ({}) stopped: {why}", v.vm.number, v.vm.name);
    Some(why)
}

/// Frames below its limit a VM over it is brought back to (with swap), so that a VM at its limit
/// pages out a batch now and then instead of one page on every fault.
const LIMIT_SLACK: usize = 32;

/// Rounds of reclaim for a VM over its limit: a round may free frames no VM maps (an object
/// page a copy-on-write fault copied from) and leave the VM as far over as before.
const LIMIT_ROUNDS: usize = 4;

/// After a fault of `v` mapped a page: when its VM holds more than its limit, its own pages are
/// reclaimed (with swap) to [`LIMIT_SLACK`] below the limit; if it still holds more (no swap,
/// nothing pageable), the reason to stop it.
pub fn over_limit(h: &Hyp, v: &Vcpu) -> Option<alloc::string::String> {
    let map = v.map();
    let max = h.uvm.shares().limit(map.vmid())?;
    for _ in 0..LIMIT_ROUNDS {
        let resident = map.stage2().resident();
        if resident <= max {
            return None;
        }
        let target = resident - max.saturating_sub(LIMIT_SLACK);
        if h.uvm.swap().is_none() || h.uvm.reclaim_sparing(target, Spare::only_from(map.vmid())) == 0 {
            break;
        }
    }
    let resident = map.stage2().resident();
    (resident > max).then(|| format!("over its memory limit ({resident} pages mapped, max {max})"))
}
