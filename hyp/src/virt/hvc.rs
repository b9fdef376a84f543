//! Hypercalls: HVC #0 and (trapped by HCR_EL2.TSC) SMC #0 from a guest's EL1, SMCCC convention
//! (contracts §B). Function id in w0, arguments x1..x3, result in x0.

use alloc::vec;

use super::esr::Syndrome;
use super::out;
use super::psci;
use super::vm::{Stopped, Vcpu};
use super::{Hyp, Next};
use vm::Ipa;

/// UVMHYP vendor-specific hypervisor service calls (SMCCC owner 6, fast, SMC64).
pub mod fid {
    pub const UVMHYP_EXIT: u32 = 0xC600_0000;
    pub const UVMHYP_PRINT: u32 = 0xC600_0001;
    pub const UVMHYP_COUNTER: u32 = 0xC600_0002;
    pub const UVMHYP_YIELD: u32 = 0xC600_0003;
    pub const UVMHYP_INFO: u32 = 0xC600_0004;
}

/// SMCCC return codes.
pub mod ret {
    pub const SUCCESS: i64 = 0;
    pub const NOT_SUPPORTED: i64 = -1;
    pub const INVALID_PARAMETERS: i64 = -2;
}

/// Longest UVMHYP_PRINT.
const PRINT_MAX: u64 = 1024;

/// UVMHYP_COUNTER ids → uvmexp counter names.
const COUNTERS: &[&str] =
    &["faults", "flt_anon", "flt_acow", "flt_obj", "flt_prcopy", "flt_przero", "fltnamap", "fltnomap"];

/// The immediate of `HVC #imm16` / `SMC #imm16` (ISS[15:0]).
fn imm16(syn: &Syndrome) -> u64 {
    syn.iss & 0xffff
}

/// A hypercall trap. For a trapped SMC the preferred return address is the SMC itself, so the
/// guest's PC is moved past it first; for HVC ELR_EL2 already points at the next instruction.
pub fn handle(h: &Hyp, v: &mut Vcpu, syn: &Syndrome, smc: bool) -> Next {
    if smc {
        v.regs.elr_el2 = v.regs.elr_el2.wrapping_add(4);
    }
    if imm16(syn) != 0 {
        set_ret(v, ret::NOT_SUPPORTED);
        return Next::Resume;
    }
    let id = v.regs.x[0] as u32;
    let (a1, a2) = (v.regs.x[1], v.regs.x[2]);
    match id {
        fid::UVMHYP_EXIT => h.stop_vm(&v.vm, Stopped::Exited(a1 as u32)),
        fid::UVMHYP_PRINT => {
            let r = print(v, a1, a2);
            set_ret(v, r);
            Next::Resume
        }
        fid::UVMHYP_COUNTER => {
            let r = counter(v, a1);
            set_ret(v, r);
            Next::Resume
        }
        fid::UVMHYP_YIELD => {
            set_ret(v, ret::SUCCESS);
            Next::Yield
        }
        fid::UVMHYP_INFO => {
            v.regs.x[0] = u64::from(v.vm.id);
            v.regs.x[1] = u64::from(v.index);
            v.regs.x[2] = v.vm.ram_bytes;
            v.regs.x[3] = v.vm.image_bytes;
            Next::Resume
        }
        _ => psci::handle(h, v, id),
    }
}

/// Write an SMCCC result to x0.
pub fn set_ret(v: &mut Vcpu, r: i64) {
    v.regs.x[0] = r as u64;
}

/// UVMHYP_PRINT: the guest's bytes at IPA `ipa`, `len` long, are an allegation until the engine
/// has translated every page of them as guest RAM (faulting pages in for reading).
fn print(v: &mut Vcpu, ipa: u64, len: u64) -> i64 {
    if len > PRINT_MAX {
        return ret::INVALID_PARAMETERS;
    }
    let Some(end) = ipa.checked_add(len) else { return ret::INVALID_PARAMETERS };
    if len != 0 && !(v.vm.map.contains(Ipa(ipa)) && v.vm.map.contains(Ipa(end - 1))) {
        return ret::INVALID_PARAMETERS;
    }
    let mut buf = vec![0u8; len as usize];
    // Pages faulted in here are counted by the engine but not traced (no stage-2 abort).
    match v.vm.map.copy_in(Ipa(ipa), &mut buf) {
        Ok(()) => {
            out::guest_line(v.vm.id, &buf);
            ret::SUCCESS
        }
        Err(_) => ret::INVALID_PARAMETERS,
    }
}

/// UVMHYP_COUNTER: one of this VM's uvmexp counters.
fn counter(v: &Vcpu, id: u64) -> i64 {
    let Some(name) = usize::try_from(id).ok().and_then(|i| COUNTERS.get(i)) else {
        return ret::INVALID_PARAMETERS;
    };
    v.vm.map.stats().snapshot().fields().find(|(n, _)| n == name).map_or(ret::INVALID_PARAMETERS, |(_, x)| x as i64)
}
