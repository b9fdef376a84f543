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
//! The scenario's clone point (`pause.rs`) clones a paused VM with every powered-on vCPU: each
//! child's vCPUs are copies of all of them ([`children_of_paused`]); powered-off ones stay off.
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
use crate::arch::timer;
use crate::arch::vcpu::El1Sysregs;
use crate::arch::vectors::GuestRegs;
use hyp::bus::Bus;
use hyp::calls::{DENIED, MAX_CLONES};
use hyp::identity::Lineage;
use hyp::ptimer::PhysTimer;
use smccc::psci::error::INVALID_PARAMETERS;
use vm::map::{Map, MapError};
use vm::pmap::Vmid;

/// Why one child could not be made.
#[derive(Debug)]
enum CloneError {
    NoVmid,
    Map(MapError),
}

/// One vCPU's state as a child's copy of it starts: registers, EL1 state, physical timer.
struct Source<'a> {
    index: u16,
    regs: &'a GuestRegs,
    el1: &'a El1Sysregs,
    ptimer: PhysTimer,
}

impl<'a> Source<'a> {
    /// A vCPU that is not loaded (its EL1 state saved in it).
    fn saved(v: &'a Vcpu) -> Source<'a> {
        Source { index: v.index, regs: &v.regs, el1: &v.el1, ptimer: v.ptimer }
    }
}

/// UVMHYP_CLONE of `count` children by the loaded vCPU `v`.
pub fn handle(h: &Hyp, v: &mut Vcpu, count: u64) -> Next {
    if count == 0 || count > MAX_CLONES {
        return answer(v, i64::from(INVALID_PARAMETERS));
    }
    let start = timer::now();
    let el1 = v.el1.snapshot();
    let mut children: Vec<Box<Vcpu>> = Vec::new();
    let mut first = None;
    for k in 1..=count {
        let source = Source { index: v.index, regs: &v.regs, el1: &el1, ptimer: v.ptimer };
        match child(h, &v.vm, v.map(), &[source]) {
            Ok(mut vcpus) => {
                let Some(mut c) = vcpus.pop() else { break };
                first.get_or_insert(c.vm.number);
                c.regs.x[0] = 0;
                c.regs.x[1] = k;
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
    let ticks = timer::now() - start;
    let last = first + children.len() as u16 - 1;
    log::info!("virt: vm{} cloned into vm{first}..=vm{last} at {:#x} in {} us ({ticks} ticks)", v.vm.number, v.regs.elr_el2, us(ticks));
    v.regs.x[0] = u64::from(first);
    v.regs.x[1] = children.len() as u64;
    Next::Start(children)
}

/// Physical-counter `ticks` in microseconds (the clone's log lines).
pub fn us(ticks: u64) -> u64 {
    ticks.saturating_mul(1_000_000) / timer::freq().max(1)
}

/// How often a clone of a paused VM is tried again when `Map::fork` meets a BUSY page (another
/// VM filling or merging a page under a wired entry: it is done within microseconds).
const BUSY_RETRIES: u32 = 1000;

/// `count` children of the paused VM `parent` whose powered-on vCPUs are `vcpus` (set aside, EL1
/// state saved): each child's vCPUs are copies of them all, continuing from the pause point.
/// Returns the children's vCPUs, to be made runnable (fewer children than asked only when VMIDs
/// or memory ran out: logged).
///
/// # Locks
/// None held on entry or exit (see [`child`]).
#[allow(clippy::vec_box)]
pub fn children_of_paused(h: &Hyp, parent: &Vm, vcpus: &[Box<Vcpu>], count: u32) -> Vec<Box<Vcpu>> {
    let Some(map) = vcpus.first().map(|v| v.memory.clone()) else { return Vec::new() };
    let sources: Vec<Source<'_>> = vcpus.iter().map(|v| Source::saved(v)).collect();
    let mut out = Vec::new();
    let mut busy = 0;
    let mut made = 0;
    while made < count {
        match child(h, parent, &map, &sources) {
            Ok(c) => {
                out.extend(c);
                made += 1;
            }
            Err(CloneError::Map(MapError::Busy)) if busy < BUSY_RETRIES => {
                busy += 1;
                core::hint::spin_loop();
            }
            Err(e) => {
                log::warn!("vm{}: clone {} of {count} failed: {e:?}", parent.number, made + 1);
                break;
            }
        }
    }
    out
}

/// The next child of `parent` (whose map is `map`; named and numbered `<name>.k`, its k-th
/// child over all its clones: `hyp::identity`), its vCPUs copies of `sources` — the first is
/// made by `create_vm`, the others taken from the child's powered-off slots: built, added to the
/// VM table, its vCPUs returned to be made runnable.
///
/// # Locks
/// None held on entry; `Map::fork` write-locks the parent's map (and the engine's locks under
/// it); the VMID pool, the VM table and the new VM's slots are taken alone.
#[allow(clippy::vec_box)]
fn child(h: &Hyp, parent: &Vm, map: &Map, sources: &[Source<'_>]) -> Result<Vec<Box<Vcpu>>, CloneError> {
    let Some(first) = sources.first() else { return Ok(Vec::new()) };
    let lease = VmidLease::take(&VMIDS).ok_or(CloneError::NoVmid)?;
    let map_copy = map.fork(Vmid(lease.vmid)).map_err(CloneError::Map)?;
    let memory = Arc::new(Memory::new(map_copy, lease));
    let mut bus: Bus<Box<dyn Device>> = Bus::default();
    for (w, d) in parent.bus.iter() {
        // The parent's windows never overlap, so neither do the copies.
        if let Err(e) = bus.attach(w, d.fork()) {
            log::warn!("vm{}: clone: {e}", parent.number);
        }
    }
    let k = parent.identity.add_child();
    let name = format!("{}.{k}", parent.name);
    let lineage = Lineage { parent: parent.number, index: k };
    let shape = Shape { name, ram_bytes: parent.ram_bytes, image_bytes: parent.image_bytes, nr_vcpus: parent.nr_vcpus, time_base: parent.time_base, lineage, clone_at: None, phase: parent.phase.get() };
    // The interrupt controller's state as the parent's exits left it (its list registers were
    // folded back at each exit: `vgic::save`), every vCPU's redistributor and pending state in it.
    let gic = parent.gic.as_ref().map(|g| g.lock().clone());
    let scanned = h.dedup.as_ref().is_some_and(|(d, _)| d.is_enabled(map));
    let (vm, mut c) = h.create_vm(shape, memory, bus, gic, first.index, scanned);
    h.trace.vm_cloned(vm.number, parent.number);
    let copy = |c: &mut Vcpu, s: &Source<'_>| {
        c.regs = s.regs.clone();
        c.el1 = s.el1.clone();
        c.ptimer = s.ptimer;
    };
    copy(&mut c, first);
    let mut vcpus = alloc::vec![c];
    for s in &sources[1..] {
        // Powered on in the parent, so on in the child: out of its powered-off slot.
        let slot = vm.parked.lock().get_mut(usize::from(s.index)).and_then(Option::take);
        if let Some(mut c) = slot {
            copy(&mut c, s);
            vm.online.fetch_add(1, core::sync::atomic::Ordering::AcqRel);
            vcpus.push(c);
        }
    }
    log::debug!("virt: vm{} ({}) cloned from vm{} at {:#x} ({} vCPUs)", vm.number, vm.name, parent.number, first.regs.elr_el2, vcpus.len());
    Ok(vcpus)
}
