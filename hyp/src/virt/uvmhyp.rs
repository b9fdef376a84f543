//! The UVMHYP vendor hypervisor calls (SMCCC owner 6; README, "Hypercall ABI"): exit, print a
//! guest buffer, read a counter, yield, describe the VM, clone it (`clone.rs`), read its memory
//! accounting (a pass of `account.rs`), set the paging advice of a range of its RAM, meet the
//! other VMs at a phase (`hyp::phase`).

use alloc::format;

use super::device::VmView;
use super::guestmem::GuestRange;
use super::machine::Vcpu;
use super::next::Next;
use super::callret::{answer, set_ret};
use super::clone;
use super::state::Hyp;
use hyp::calls::{AccountGroup, GuestAdvice, Uvmhyp, SUCCESS};
use hyp::phase::least;
use hyp::stop::{Cause, Stop};
use smccc::psci::error::INVALID_PARAMETERS;
use vm::fault::FaultError;
use vm::map::Advice;
use vm::Ipa;

/// Longest UVMHYP_PRINT.
const PRINT_MAX: u64 = 1024;

/// UVMHYP_COUNTER ids → uvmexp counter names (8.. are the VM's dedup counters, `vm::stats`).
const COUNTERS: &[&str] = &[
    "faults",
    "flt_anon",
    "flt_acow",
    "flt_obj",
    "flt_prcopy",
    "flt_przero",
    "fltnamap",
    "fltnomap",
    "dedup_merged",
    "dedup_zero",
    "dedup_unmerged",
];
/// The UVMHYP_COUNTER ids after [`COUNTERS`]: frames dedup saves now, over every VM; the dedup
/// scanner's completed passes.
const DEDUP_SAVED_ALL: usize = COUNTERS.len();
const DEDUP_PASSES: usize = COUNTERS.len() + 1;

/// INVALID_PARAMETERS as an x0 value.
const INVALID: i64 = INVALID_PARAMETERS as i64;

pub fn handle(h: &Hyp, v: &mut Vcpu, call: Uvmhyp) -> Next {
    match call {
        Uvmhyp::Exit { status } => {
            let vm = v.vm.clone();
            h.stop_vm(&vm, Stop::Exited(status))
        }
        Uvmhyp::Print { ipa, len } => print(h, v, ipa, len),
        Uvmhyp::Counter { id } => {
            let r = counter(h, v, id);
            answer(v, r)
        }
        Uvmhyp::Yield => {
            set_ret(v, SUCCESS);
            Next::Yield
        }
        Uvmhyp::Clone { count } => clone::handle(h, v, count),
        Uvmhyp::Account { group: None } => answer(v, INVALID),
        Uvmhyp::Account { group: Some(group) } => {
            account(h, v, group);
            Next::Resume
        }
        Uvmhyp::Advise { ipa, len, advice } => {
            let r = advise(v, ipa, len, advice);
            answer(v, r)
        }
        Uvmhyp::Phase { n } => {
            let r = phase(h, v, n);
            answer(v, r)
        }
        Uvmhyp::Info => {
            v.regs.x[0] = u64::from(v.vm.number);
            v.regs.x[1] = u64::from(v.index);
            v.regs.x[2] = v.vm.ram_bytes;
            v.regs.x[3] = v.vm.image_bytes;
            Next::Resume
        }
    }
}

/// UVMHYP_PRINT of `len` bytes at IPA `ipa`.
///
/// A page the engine reports busy (`Restart`: another vCPU is faulting it) makes the HVC
/// re-execute, like any refault: ELR is moved back onto the HVC/SMC and the vCPU yields. Pages
/// faulted in here are traced as reads ([`GuestRange::read`]).
fn print(h: &Hyp, v: &mut Vcpu, ipa: u64, len: u64) -> Next {
    if len == 0 {
        v.vm.print_line(&[]);
        return answer(v, SUCCESS);
    }
    let Some(range) = GuestRange::check(v.map(), ipa, len, PRINT_MAX) else {
        return answer(v, INVALID);
    };
    match range.read(&h.trace, v) {
        Ok(bytes) => {
            v.vm.print_line(&bytes);
            answer(v, SUCCESS)
        }
        Err(FaultError::Restart) => {
            v.regs.elr_el2 = v.regs.elr_el2.wrapping_sub(4);
            Next::Yield
        }
        Err(FaultError::NoMapping | FaultError::Protection) => answer(v, INVALID),
        Err(e @ (FaultError::NoMemory | FaultError::Io | FaultError::NoBacking)) => {
            let vm = v.vm.clone();
            h.stop_vm(&vm, Stop::crash(Cause::of_fault(e), format!("UVMHYP_PRINT at IPA {ipa:#x}: fault failed: {e:?}")))
        }
    }
}

/// UVMHYP_PHASE: raise the caller's phase to `n`; the lowest phase of the VMs not stopped.
///
/// # Locks
/// Takes the VM table alone (for its copy).
fn phase(h: &Hyp, v: &Vcpu, n: u64) -> i64 {
    v.vm.phase.reach(n);
    let running = h.vms().into_iter().filter(|vm| !vm.is_stopped()).map(|vm| vm.phase.get());
    // Phases a guest names are small; one above i64::MAX would read as an error code.
    least(v.vm.phase.get(), running).min(i64::MAX as u64) as i64
}

/// UVMHYP_COUNTER: one of this VM's uvmexp counters.
fn counter(h: &Hyp, v: &Vcpu, id: u64) -> i64 {
    let id = usize::try_from(id).unwrap_or(usize::MAX);
    if id == DEDUP_SAVED_ALL {
        return h.uvm.stats().dedup_saved() as i64;
    }
    if id == DEDUP_PASSES {
        return h.dedup.as_ref().map_or(0, |(d, _)| d.passes() as i64);
    }
    let Some(name) = COUNTERS.get(id) else {
        return INVALID;
    };
    v.map().stats().snapshot().fields().find(|(n, _)| n == name).map_or(INVALID, |(_, x)| x as i64)
}

/// UVMHYP_ACCOUNT: four figures of a fresh accounting pass in x0..x3 (`hyp::calls::AccountGroup`).
/// The pass walks every VM's memory on this CPU: a guest calling it in a loop slows itself most,
/// and the others only by the engine's per-page lock holds.
///
/// # Locks
/// Call with no lock held (see [`Hyp::account_now`]).
fn account(h: &Hyp, v: &mut Vcpu, group: AccountGroup) {
    let acc = h.account_now();
    let me = acc.vms.iter().find(|a| a.vm == v.vm.number).copied().unwrap_or_default();
    let g = &acc.global;
    let x = match group {
        AccountGroup::Pages => [me.resident, me.private, me.shared, me.zero],
        AccountGroup::SwapAndPool => [me.swapped, me.sharers, g.pool_used(), g.pool_free],
        AccountGroup::Saved => [g.saved.clone, g.saved.image, g.saved.dedup, g.distinct],
    };
    v.regs.x[..4].copy_from_slice(&x);
}

/// UVMHYP_ADVISE: set the advice of `[ipa, ipa + len)`, which must be page-aligned, non-empty
/// and covered by the VM's map entries; INVALID_PARAMETERS otherwise, or for an advice that does
/// not exist. SEQUENTIAL turns on swap readahead there (`vm::fault::readahead`).
///
/// # Locks
/// Call with no lock held; takes the VM's map for writing (`Map::advise`).
fn advise(v: &Vcpu, ipa: u64, len: u64, advice: Option<GuestAdvice>) -> i64 {
    let Some(advice) = advice else { return INVALID };
    let Some(end) = ipa.checked_add(len).filter(|_| len > 0) else { return INVALID };
    let map = v.map();
    // Entries in address order: walk them while they continue the range.
    let mut covered = ipa;
    for e in map.entries() {
        if e.start.0 <= covered && covered < e.end.0 {
            covered = e.end.0;
        }
    }
    if covered < end {
        return INVALID;
    }
    let advice = match advice {
        GuestAdvice::Normal => Advice::Normal,
        GuestAdvice::Random => Advice::Random,
        GuestAdvice::Sequential => Advice::Sequential,
    };
    match map.advise(Ipa(ipa), Ipa(end), advice) {
        Ok(()) => SUCCESS,
        Err(_) => INVALID,
    }
}
