//! PSCI 1.1 for guests (README, "Hypercall ABI"), reached through HVC or SMC; decoding and
//! argument checks are `hyp::calls` (host-tested). CPU_SUSPEND is a WFI (every power state
//! keeps its context); SYSTEM_RESET stops the VM as `reset` (`hyp::stop`).

use core::sync::atomic::Ordering;

use super::machine::Vcpu;
use super::next::Next;
use super::callret::{answer, set_ret};
use super::state::Hyp;
use super::wait;
use hyp::calls::{self, Psci, AFFINITY_OFF, AFFINITY_ON, ALREADY_ON, MIGRATE_NONE, PSCI_1_1, SUCCESS};
use smccc::psci::error::INVALID_PARAMETERS;
use hyp::stop::Stop;
use vm::Ipa;

pub fn handle(h: &Hyp, v: &mut Vcpu, call: Psci) -> Next {
    match call {
        Psci::Version => answer(v, PSCI_1_1),
        Psci::Features(fid) => answer(v, calls::psci_features(fid)),
        Psci::CpuSuspend => {
            set_ret(v, SUCCESS);
            wait::until_interrupt(v)
        }
        Psci::CpuOn { mpidr, entry, context } => cpu_on(v, mpidr, entry, context),
        Psci::CpuOff => Next::Off,
        Psci::AffinityInfo { mpidr, lowest_level } => {
            let r = affinity_info(v, mpidr, lowest_level);
            answer(v, r)
        }
        Psci::MigrateInfoType => answer(v, MIGRATE_NONE),
        Psci::SystemOff => {
            let vm = v.vm.clone();
            h.stop_vm(&vm, Stop::Exited(0))
        }
        Psci::SystemReset => {
            let vm = v.vm.clone();
            h.stop_vm(&vm, Stop::Reset)
        }
    }
}

/// AFFINITY_INFO of one vCPU (level 0 only: the VM's vCPUs are one cluster's cores): OFF while
/// it waits in the VM's powered-off slots, ON otherwise.
///
/// # Locks
/// Takes the VM's `parked` alone.
fn affinity_info(v: &Vcpu, mpidr: u64, lowest_level: u64) -> i64 {
    let Some(index) = calls::vcpu_of(mpidr, v.vm.nr_vcpus).filter(|_| lowest_level == 0) else {
        return i64::from(INVALID_PARAMETERS);
    };
    let off = v.vm.parked.lock().get(usize::from(index)).is_some_and(Option::is_some);
    if off {
        AFFINITY_OFF
    } else {
        AFFINITY_ON
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
