//! VM clone (UVMHYP_CLONE, and fork as a clone of one): the seed's `uvmspace_fork` at VM scale.
//!
//! Each child gets a VMID of its own and `Map::fork` of the parent's map — every entry shares the
//! parent's amap with `needs_copy`, the parent's stage 2 loses write permission, so the first
//! write on either side is a case-1B copy-on-write, and nothing resident is copied: a clone costs
//! O(map entries + devices), never O(resident pages). Its devices are copies of the parent's
//! (`Device::fork`), its interrupt controller a copy of the parent's, its time base the parent's
//! (`CNTVOFF_EL2`: the child's counters and timers go on from where the parent's were), and its
//! vCPU 0 is a copy of the calling vCPU — registers, live EL1 state, physical timer — continuing
//! after the same HVC. As with `fork(2)`, only the calling vCPU goes on in the
//! child; its other vCPUs start powered off (PSCI CPU_ON brings them up).
//!
//! Return values: in the parent x0 = the first child's VM number, x1 = children made (fewer than
//! asked only when VMIDs or memory ran out); in child `k` (1-based) x0 = 0, x1 = k. When no
//! child can be made x0 = DENIED (-3); a count of 0 or over `MAX_CLONES` is INVALID_PARAMETERS.

use alloc::boxed::Box;
use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;

use super::callret::answer;
use super::device::Device;
use super::machine::{Memory, Shape, Vcpu, Vm, VmidLease};
use super::next::Next;
use super::state::{Hyp, VMIDS};
use hyp::bus::Bus;
use hyp::calls::{DENIED, MAX_CLONES};
use smccc::psci::error::INVALID_PARAMETERS;
use vm::map::MapError;
use vm::pmap::Vmid;

/// Why one child could not be made.
#[derive(Debug)]
enum CloneError {
    NoVmid,
    Map(MapError),
}

/// UVMHYP_CLONE of `count` children by the loaded vCPU `v`.
pub fn handle(h: &Hyp, v: &mut Vcpu, count: u64) -> Next {
    if count == 0 || count > MAX_CLONES {
        return answer(v, i64::from(INVALID_PARAMETERS));
    }
    let el1 = v.el1.snapshot();
    let mut children: Vec<Box<Vcpu>> = Vec::new();
    let mut first = None;
    for k in 1..=count {
        match child(h, v, &el1, k) {
            Ok(c) => {
                first.get_or_insert(c.vm.number);
                children.push(c);
            }
            // A BUSY page under a wired entry: transient, re-execute the HVC once the holder ran.
            Err(CloneError::Map(MapError::Busy)) if children.is_empty() => {
                v.regs.elr_el2 = v.regs.elr_el2.wrapping_sub(4);
                return Next::Yield;
            }
            Err(e) => {
                log::warn!("vm{}: clone {k} of {count} failed: {e:?}", v.vm.number);
                break;
            }
        }
    }
    let Some(first) = first else { return answer(v, DENIED) };
    v.regs.x[0] = u64::from(first);
    v.regs.x[1] = children.len() as u64;
    Next::Start(children)
}

/// Child `k` of the VM of `v`, whose live EL1 state is `el1`: built, added to the VM table, its
/// vCPU 0 returned to be made runnable.
///
/// # Locks
/// None held on entry; `Map::fork` write-locks the parent's map (and the engine's locks under
/// it); the VMID pool, the VM table and the new VM's slots are taken alone.
fn child(h: &Hyp, v: &Vcpu, el1: &crate::arch::vcpu::El1Sysregs, k: u64) -> Result<Box<Vcpu>, CloneError> {
    let parent: &Vm = &v.vm;
    let lease = VmidLease::take(&VMIDS).ok_or(CloneError::NoVmid)?;
    let map = v.map().fork(Vmid(lease.vmid)).map_err(CloneError::Map)?;
    let memory = Arc::new(Memory::new(map, lease));
    let mut bus: Bus<Box<dyn Device>> = Bus::default();
    for (w, d) in parent.bus.iter() {
        // The parent's windows never overlap, so neither do the copies.
        if let Err(e) = bus.attach(w, d.fork()) {
            log::warn!("vm{}: clone: {e}", parent.number);
        }
    }
    let name = format!("{}.{k}", parent.name);
    let shape = Shape { name, ram_bytes: parent.ram_bytes, image_bytes: parent.image_bytes, nr_vcpus: parent.nr_vcpus, time_base: parent.time_base };
    // The interrupt controller's state as the parent's exit left it (its list registers were
    // folded back at the exit: `vgic::save`).
    let gic = parent.gic.as_ref().map(|g| g.lock().clone());
    let scanned = h.dedup.as_ref().is_some_and(|(d, _)| d.is_enabled(v.map()));
    let (vm, mut c) = h.create_vm(shape, memory, bus, gic, v.index, scanned);
    h.trace.vm_cloned(vm.number, parent.number);
    c.regs = v.regs.clone();
    c.el1 = el1.clone();
    c.ptimer = v.ptimer;
    c.regs.x[0] = 0;
    c.regs.x[1] = k;
    log::info!("virt: vm{} ({}) cloned from vm{} at {:#x}", vm.number, vm.name, parent.number, v.regs.elr_el2);
    Ok(c)
}
