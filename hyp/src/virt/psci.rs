//! PSCI 1.0 for guests (the subset of README, "Hypercall ABI"), reached through HVC or SMC;
//! argument checks are `hyp::calls` (host-tested).

use core::sync::atomic::Ordering;

use super::machine::Vcpu;
use super::next::Next;
use super::callret::{answer, set_ret};
use super::state::Hyp;
use hyp::calls::{self, Psci, ALREADY_ON, PSCI_1_0, SUCCESS};
use hyp::stop::Stop;
use vm::Ipa;

pub fn handle(h: &Hyp, v: &mut Vcpu, call: Psci) -> Next {
    match call {
        Psci::Version => answer(v, PSCI_1_0),
        Psci::Features(fid) => answer(v, calls::psci_features(fid)),
        Psci::CpuOn { mpidr, entry, context } => cpu_on(v, mpidr, entry, context),
        Psci::CpuOff => Next::Off,
        Psci::SystemOff => {
            let vm = v.vm.clone();
            h.stop_vm(&vm, Stop::Exited(0))
        }
    }
}

/// Power on vCPU `mpidr` of the caller's VM at `entry` with x0 = `context`: the run loop makes
/// it runnable (`Next::Start`).
///
/// # Locks
/// Takes the VM's `parked` alone.
fn cpu_on(v: &mut Vcpu, mpidr: u64, entry: u64, context: u64) -> Next {
    let map = v.map();
    let index = match calls::check_cpu_on(mpidr, entry, v.vm.nr_vcpus, |ipa| map.contains(Ipa(ipa))) {
        Ok(i) => usize::from(i),
        Err(e) => return answer(v, e.code()),
    };
    let target = v.vm.parked.lock().get_mut(index).and_then(Option::take);
    let Some(mut target) = target else { return answer(v, ALREADY_ON) };
    target.power_on(entry, context);
    v.vm.online.fetch_add(1, Ordering::AcqRel);
    set_ret(v, SUCCESS);
    Next::Start(alloc::vec![target])
}
