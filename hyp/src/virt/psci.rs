//! PSCI 1.0 for guests (the subset of README, "Hypercall ABI"), reached through HVC or SMC.

use super::hvc::{ret, set_ret};
use super::sched;
use super::vm::{Stopped, Vcpu};
use super::{Hyp, Next};
use hyp::bits::mpidr;
use smccc::psci::{PSCI_CPU_OFF, PSCI_CPU_ON_64, PSCI_FEATURES, PSCI_SYSTEM_OFF, PSCI_VERSION};
use vm::Ipa;

/// PSCI 1.0.
const VERSION_1_0: i64 = 0x0001_0000;
/// PSCI ALREADY_ON.
const ALREADY_ON: i64 = -4;
/// PSCI INVALID_ADDRESS: the entry point is not a valid physical address for the caller.
const INVALID_ADDRESS: i64 = -9;
/// A64 instructions are 4 bytes, 4-byte aligned.
const INSN_ALIGN: u64 = 4;
/// Every function implemented here (PSCI_FEATURES answers 0 for these).
const IMPLEMENTED: &[u32] = &[PSCI_VERSION, PSCI_CPU_OFF, PSCI_CPU_ON_64, PSCI_SYSTEM_OFF, PSCI_FEATURES];

pub fn handle(h: &Hyp, v: &mut Vcpu, id: u32) -> Next {
    match id {
        PSCI_VERSION => set_ret(v, VERSION_1_0),
        PSCI_FEATURES => {
            let f = v.regs.x[1] as u32;
            set_ret(v, if IMPLEMENTED.contains(&f) { ret::SUCCESS } else { ret::NOT_SUPPORTED });
        }
        PSCI_CPU_ON_64 => {
            let r = cpu_on(h, v, v.regs.x[1], v.regs.x[2], v.regs.x[3]);
            set_ret(v, r);
        }
        PSCI_CPU_OFF => return Next::Off,
        PSCI_SYSTEM_OFF => return h.stop_vm(&v.vm, Stopped::Exited(0)),
        _ => set_ret(v, ret::NOT_SUPPORTED),
    }
    Next::Resume
}

/// Power on vCPU `mpidr` of the caller's VM at `entry` with x0 = `context`.
///
/// `entry` is an allegation: it must be 4-byte aligned and inside the VM's RAM, or the call
/// returns INVALID_ADDRESS and the target stays off (a vCPU started at garbage would crash the
/// whole VM on its first fetch).
fn cpu_on(h: &Hyp, v: &Vcpu, mpidr: u64, entry: u64, context: u64) -> i64 {
    // The vCPU index is Aff0; the higher affinity fields must be 0.
    if mpidr & (mpidr::AFFINITY_MASK & !mpidr::AFF0.mask()) != 0 {
        return ret::INVALID_PARAMETERS;
    }
    let index = mpidr::AFF0.get(mpidr) as usize;
    if index >= usize::from(v.vm.nr_vcpus) {
        return ret::INVALID_PARAMETERS;
    }
    if !entry.is_multiple_of(INSN_ALIGN) || !v.map.contains(Ipa(entry)) {
        return INVALID_ADDRESS;
    }
    let target = {
        let mut parked = v.vm.parked.lock();
        match parked.get_mut(index) {
            Some(slot) => slot.take(),
            None => return ret::INVALID_PARAMETERS,
        }
    };
    let Some(mut target) = target else { return ALREADY_ON };
    target.power_on(entry, context);
    v.vm.online.fetch_add(1, core::sync::atomic::Ordering::AcqRel);
    sched::push(h, target);
    ret::SUCCESS
}
