//! Hypercalls: HVC #0 and (trapped by HCR_EL2.TSC) SMC #0 from a guest's EL1, SMCCC convention
//! (README, "Hypercall ABI"). Function id in w0, arguments x1..x3, result in x0.

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use hyp::esr::Syndrome;
use super::psci;
use super::vm::{Stopped, Vcpu};
use super::{Hyp, Next};
use super::trace;
use vm::fault::{FaultError, FaultFlags};
use vm::map::Map;
use vm::{Access, Ipa, PAGE_SIZE};

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

/// A hypercall trap. For a trapped SMC the preferred return address is the SMC itself, so the
/// guest's PC is moved past it first; for HVC ELR_EL2 already points at the next instruction.
pub fn handle(h: &Hyp, v: &mut Vcpu, syn: &Syndrome, smc: bool) -> Next {
    if smc {
        v.regs.elr_el2 = v.regs.elr_el2.wrapping_add(4);
    }
    if syn.imm16() != 0 {
        set_ret(v, ret::NOT_SUPPORTED);
        return Next::Resume;
    }
    let id = v.regs.x[0] as u32;
    let (a1, a2) = (v.regs.x[1], v.regs.x[2]);
    match id {
        fid::UVMHYP_EXIT => h.stop_vm(&v.vm, Stopped::Exited(a1 as u32)),
        fid::UVMHYP_PRINT => print(h, v, a1, a2),
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

/// A guest buffer that has been checked to lie inside the VM's RAM entries: the (IPA, length)
/// pair a guest passes is an allegation until [`GuestRange::check`] accepts it.
#[derive(Clone, Copy, Debug)]
pub struct GuestRange {
    start: Ipa,
    len: usize,
}

impl GuestRange {
    /// `[ipa, ipa + len)` if it is at most `max` bytes and both ends are in the VM's map.
    pub fn check(map: &Map, ipa: u64, len: u64, max: u64) -> Option<GuestRange> {
        if len > max {
            return None;
        }
        let start = Ipa(ipa);
        let last = start.checked_add(len.checked_sub(1)?)?;
        (map.contains(start) && map.contains(last)).then_some(GuestRange { start, len: len as usize })
    }

    /// Copy the bytes out of guest memory, faulting pages in for reading as the guest would.
    ///
    /// `Map::copy_in` faults what it needs itself but does not say which pages it faulted or
    /// how (that would take a change of its API in `vm`), so every page of the range that is not
    /// mapped readable is faulted here first, through the same `vm::fault::fault` call, and each
    /// such fault is traced as a Read by the vCPU `v` (`trace.rs`); `copy_in` then finds the
    /// pages mapped. (A page unmapped again in between, by another CPU, is refaulted by
    /// `copy_in` and not traced.)
    pub fn read(&self, h: &Hyp, v: &Vcpu) -> Result<Vec<u8>, FaultError> {
        let map = &*v.map;
        let end = self.start.0 + self.len as u64;
        let mut page = self.start.page_base();
        while page.0 < end {
            let readable = map.mapped_page(page).is_some_and(|(_, prot)| prot.contains(Access::Read.prot()));
            if !readable {
                let r = vm::fault::fault(map, page, Access::Read, FaultFlags::empty());
                trace::fault(h, v, page, Access::Read, &r);
                r?;
            }
            page = Ipa(page.0 + PAGE_SIZE);
        }
        let mut buf = vec![0u8; self.len];
        map.copy_in(self.start, &mut buf)?;
        Ok(buf)
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
        set_ret(v, ret::SUCCESS);
        return Next::Resume;
    }
    let Some(range) = GuestRange::check(&v.map, ipa, len, PRINT_MAX) else {
        set_ret(v, ret::INVALID_PARAMETERS);
        return Next::Resume;
    };
    match range.read(h, v) {
        Ok(bytes) => {
            v.vm.print_line(&bytes);
            set_ret(v, ret::SUCCESS);
            Next::Resume
        }
        Err(FaultError::Restart) => {
            v.regs.elr_el2 = v.regs.elr_el2.wrapping_sub(4);
            Next::Yield
        }
        Err(FaultError::NoMapping | FaultError::Protection) => {
            set_ret(v, ret::INVALID_PARAMETERS);
            Next::Resume
        }
        Err(e @ (FaultError::NoMemory | FaultError::Io | FaultError::NoBacking)) => {
            let vm = v.vm.clone();
            h.stop_vm(&vm, Stopped::Crashed(format!("UVMHYP_PRINT at IPA {ipa:#x}: fault failed: {e:?}")))
        }
    }
}

/// UVMHYP_COUNTER: one of this VM's uvmexp counters.
fn counter(v: &Vcpu, id: u64) -> i64 {
    let Some(name) = usize::try_from(id).ok().and_then(|i| COUNTERS.get(i)) else {
        return ret::INVALID_PARAMETERS;
    };
    v.map.stats().snapshot().fields().find(|(n, _)| n == name).map_or(ret::INVALID_PARAMETERS, |(_, x)| x as i64)
}
