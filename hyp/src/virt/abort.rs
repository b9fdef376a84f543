//! Stage-2 aborts (ESR_EL2.EC 0x24 data, 0x20 instruction): the guest touched an IPA its stage-2
//! table does not map (or maps with too little permission).
//!
//! ```text
//! IPA = HPFAR_EL2.FIPA | FAR_EL2[11:0]   (permission fault, not on a walk: AT S1E1R of FAR)
//!   ├─ guest RAM (a map entry covers it) ─► vm::fault ─► Resolved: re-enter
//!   │                                                    Restart: yield, then retry
//!   │                                                    Io (swap-in failed): inject SEA
//!   │                                                    NoMemory: a VM over its share, else this one, crashed
//!   │                                                    NoBacking: VM crashed
//!   │                                                    NoMapping / Protection: as "nothing"
//!   ├─ a device on the VM's bus, data access, ISV=1 ─► mmio::access: the device's reply
//!   │        (value: skip the instruction; park: sleep, re-execute when woken; abort: inject)
//!   └─ nothing (or ISV=0) ─► inject SEA into the guest (data abort, instruction abort, or on the
//!                            stage-1 walk); the VM crashes only if it cannot be delivered
//! ```
//! Access kind ([`hyp::abort::access_needed`], host-tested): exec for a fetch, a read for a
//! cache-maintenance instruction (CM = 1; DC ZVA is a write), WnR otherwise; a fault on the
//! guest's stage-1 table walk (S1PTW) is a read of the *table page*, or a write for a permission
//! fault when TCR_EL1.HA/HD let the walker update descriptors; its IPA is HPFAR's page alone
//! (FAR is the VA being translated, its offset says nothing about the table). A cache-maintenance
//! instruction on an IPA that is not RAM is skipped (as KVM does): there is nothing to maintain
//! ([`hyp::abort::unbacked`]).
//!
//! The same ISS describes aborts from AArch32 EL0; the only difference handled here is the
//! instruction length (ESR.IL) when stepping over an emulated access.

use alloc::format;
use alloc::string::String;

use super::device::{Device, Reply};
use super::fairmem;
use super::inject;
use super::machine::Vcpu;
use super::mmio;
use super::next::Next;
use super::pdaemon;
use super::state::Hyp;
use crate::arch::{at, vcpu};
use hyp::abort::{access_needed, unbacked, walker_updates_descriptors, Unbacked};
use hyp::esr::{hpfar_page, AbortIss, FaultKind, Syndrome};
use hyp::exception::Injection;
use hyp::platform::Window;
use hyp::stop::{Cause, Stop};
use hyp::mmio::data_endian;
use vm::fault::{FaultError, FaultFlags};
use vm::trace::Outcome;
use vm::{Access, Ipa};

/// One decoded stage-2 abort.
struct Abort {
    /// The faulting IPA (page and, except on a walk, offset).
    ipa: Ipa,
    access: Access,
    /// An instruction fetch (EC 0x20), not a data access.
    fetch: bool,
    /// On the guest's stage-1 table walk (S1PTW).
    walk: bool,
    write: bool,
    /// FAR_EL2 (the guest VA), when valid (ISS.FnV = 0).
    far: Option<u64>,
    iss: AbortIss,
    il32: bool,
}

/// Handle one stage-2 abort of the loaded vCPU `v`.
pub fn handle(h: &Hyp, v: &mut Vcpu, syn: &Syndrome, fetch: bool) -> Next {
    if v.vm.is_stopped() {
        // Its RAM may already be gone; the vCPU is dropped.
        return Next::Drop;
    }
    let iss = AbortIss::decode(syn.iss);
    let far = iss.far_valid.then_some(v.regs.far_el2);
    let walk = iss.s1ptw;
    let page = match iss.kind {
        FaultKind::Translation(_) | FaultKind::AccessFlag(_) => hpfar_page(v.regs.hpfar_el2),
        // HPFAR_EL2 may be invalid for a permission fault that is not on a stage-1 walk.
        FaultKind::Permission(_) if walk => hpfar_page(v.regs.hpfar_el2),
        FaultKind::Permission(_) => match far.map(at::translate) {
            Some(Ok(ipa)) => ipa.page_base(),
            // The guest's stage 1 changed under us, or its walk is not mapped at stage 2:
            // re-execute; the access faults again with a syndrome that says more.
            Some(Err(_)) | None => return Next::Resume,
        },
        FaultKind::Other(fsc) => {
            let a = Abort { ipa: Ipa(0), access: Access::Read, fetch, walk, write: iss.write, far, iss, il32: syn.il32 };
            return bad_access(h, v, &a, &format!("unhandled stage-2 fault status {fsc:#x}"));
        }
    };
    let ipa = match far {
        Some(va) if !walk => Ipa(page.0 | Ipa(va).page_offset()),
        _ => page,
    };
    let access = access_needed(&iss, fetch, walk && walker_updates_descriptors(vcpu::live_tcr_el1()));
    let a = Abort { ipa, access, fetch, walk, write: iss.write, far, iss, il32: syn.il32 };

    // The map covers the RAM window with entries until the VM stops (`build.rs`, `stop_vm`), so
    // the window decides without the map's lock; a hole would fail the fault with NoMapping,
    // which ends where an access outside RAM ends (`bad_access`).
    if v.vm.in_ram(ipa) {
        return ram(h, v, &a);
    }
    if unbacked(&iss, fetch) == Unbacked::Skip {
        v.regs.elr_el2 = v.regs.elr_el2.wrapping_add(syn.insn_len());
        h.trace.abort(v, a.ipa, a.access, Outcome::Mmio);
        return Next::Resume;
    }
    if !fetch && !walk {
        let vm = v.vm.clone();
        if let Some((w, d)) = vm.bus.find(ipa.0) {
            return device(h, v, w, &**d, &a, syn.insn_len());
        }
    }
    h.trace.abort(v, a.ipa, a.access, Outcome::AbortInjected);
    bad_access(h, v, &a, &format!("{:?} at IPA {ipa} outside RAM and devices", a.access))
}

/// A fault on guest RAM: the engine decides.
fn ram(h: &Hyp, v: &mut Vcpu, a: &Abort) -> Next {
    let r = vm::fault::fault_or_wait(v.map(), a.ipa, a.access, FaultFlags::empty());
    let busy = r.as_ref().err().and_then(|f| f.busy);
    let r = r.map_err(|f| f.error);
    h.trace.fault(v, a.ipa, a.access, &r);
    match r {
        Ok(_) => {
            hyp::selftest::after_fault(v.map(), a.ipa, a.access);
            pdaemon::after_fault(h);
            match fairmem::over_limit(h, v) {
                Some(why) => {
                    let vm = v.vm.clone();
                    h.stop_vm(&vm, Stop::crash(Cause::OutOfMemory, why))
                }
                None => Next::Resume,
            }
        }
        // Where the seed sleeps on a busy page, the vCPU waits for it (`parking.rs`); for the
        // other restarts (too many refaults) whoever holds things runs first.
        Err(FaultError::Restart) => busy.map_or(Next::Yield, Next::WaitPage),
        Err(e @ (FaultError::NoMapping | FaultError::Protection)) => {
            bad_access(h, v, a, &format!("{:?} at IPA {} refused: {e:?}", a.access, a.ipa))
        }
        // The pool ran dry under the fault's feet but the daemon can free frames: refault.
        Err(FaultError::NoMemory) if pdaemon::retry_after_no_memory(h) => Next::Yield,
        // The page's swap copy could not be read (its slot is now bad, the data gone): this
        // page alone fails, as a machine check on a bad DIMM row would — the guest gets a
        // synchronous external abort on it, every later access too, and nothing else is lost.
        Err(FaultError::Io) => {
            log::warn!("vm{} ({}): swap-in of IPA {} failed: injecting SEA", v.vm.number, v.vm.name, a.ipa.page_base());
            h.trace.abort(v, a.ipa, a.access, Outcome::AbortInjected);
            bad_access(h, v, a, "its swap copy could not be read")
        }
        // Reclaim cannot help, but a VM over its share can give its frames back (`fairmem`).
        Err(FaultError::NoMemory) if fairmem::stop_hog(h, v) => Next::Yield,
        Err(FaultError::NoMemory) => {
            let why = fairmem::over_entitlement(h, v).unwrap_or_else(|| no_memory(h, a.ipa));
            let vm = v.vm.clone();
            h.stop_vm(&vm, Stop::crash(Cause::OutOfMemory, why))
        }
        Err(e @ FaultError::NoBacking) => {
            let vm = v.vm.clone();
            h.stop_vm(&vm, Stop::crash(Cause::of_fault(e), format!("fault at IPA {} failed: {e:?}", a.ipa)))
        }
    }
}

/// Why a fault found no frame: the pool is empty and reclaim freed nothing — with swap, usually
/// because the disk is full too (its slot counts say whether it is).
fn no_memory(h: &Hyp, ipa: Ipa) -> String {
    match h.uvm.swap() {
        None => format!("fault at IPA {ipa}: the page pool is empty and there is no swap disk"),
        Some(s) => {
            let (free, used, bad) = s.counts();
            let full = if free == 0 { "the swap disk is full" } else { "nothing could be paged out" };
            format!("fault at IPA {ipa}: the page pool is empty and {full} ({used} swap slots used, {bad} bad, {free} free)")
        }
    }
}

/// A data access to an emulated device on the VM's bus.
fn device(h: &Hyp, v: &mut Vcpu, w: Window, d: &dyn Device, a: &Abort, insn_len: u64) -> Next {
    let Some(acc) = a.iss.access else {
        h.trace.abort(v, a.ipa, a.access, Outcome::AbortInjected);
        return bad_access(h, v, a, "MMIO access without a valid syndrome (ISV=0)");
    };
    let value = v.regs.reg(acc.reg);
    let (_, sctlr) = vcpu::live_vbar_sctlr();
    let endian = data_endian(sctlr, v.regs.spsr_el2);
    let decoded = mmio::Decoded { ipa: a.ipa.0, syndrome: acc, endian, write: a.write.then_some(value) };
    let reply = mmio::access(h, v, w, d, &decoded);
    let (loaded, next) = match reply {
        Reply::Value(x) => (x, Next::Resume),
        Reply::Wake(x, ids) => (x, Next::Wake(ids)),
        // Not stepped over: the access re-executes when the vCPU is woken.
        Reply::Park => return Next::Park,
        Reply::Abort | Reply::Unknown => {
            h.trace.abort(v, a.ipa, a.access, Outcome::AbortInjected);
            return bad_access(h, v, a, &format!("{} refused the access", d.name()));
        }
    };
    if !a.write {
        v.regs.set_reg(acc.reg, loaded);
    }
    v.regs.elr_el2 = v.regs.elr_el2.wrapping_add(insn_len);
    h.trace.abort(v, a.ipa, a.access, Outcome::Mmio);
    next
}

/// The guest accessed something that is not there: it gets a synchronous external abort (data,
/// instruction, or on its stage-1 walk); an undeliverable one stops the VM (`inject::deliver`).
fn bad_access(h: &Hyp, v: &mut Vcpu, a: &Abort, what: &str) -> Next {
    log::debug!(
        "vm{}: abort at {:#x} (FAR {:x?}): {what}; injecting SEA{}",
        v.vm.number,
        v.regs.elr_el2,
        a.far,
        if a.walk { " on a table walk" } else { "" }
    );
    // The stage-1 level of the walk is not known at EL2 without walking the guest's tables
    // ourselves; level 0 (the start of any walk) is reported.
    let walk_level = a.walk.then_some(0);
    inject::deliver(h, v, Injection::Abort { far: a.far, fetch: a.fetch, write: a.write, walk_level, il32: a.il32 })
}

