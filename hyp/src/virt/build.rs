//! Building the VMs of a scenario (CPU 0, once, before any vCPU runs): the shared `vm::uvm::Uvm`
//! over the page pool with the real `PhysMem`/`Tlb`, one `ImageObject` per distinct boot segment
//! (a guest ELF's image, a kernel, an initrd, a device tree), and per VM: a VMID from the pool, a
//! `Map` with its RAM entries (README, "Guest memory"), its device bus (`hyp::platform` windows),
//! its vCPUs; then the trace.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::Range;

use super::device::Device;
use super::fairmem;
use super::identity::IdentityDevice;
use super::machine::{Memory, Shape, VmidLease};
use super::vgic::{Distributor, Redistributors};
use super::pl011::Pl011;
use super::state::{Hyp, VMIDS};
use super::trace;
use crate::arch::physmem::IdentityMem;
use crate::arch::tlb::HwTlb;
use ::vm::dedup::Dedup;
use ::vm::map::{EntrySpec, Map, MapError};
use ::vm::object::{ImageObject, Object};
use ::vm::pmap::Vmid;
use ::vm::uvm::Uvm;
use ::vm::{Ipa, Pa, Prot, PAGE_SIZE};
use hyp::bus::{AttachError, Bus};
use hyp::config::{Config, VmConfig};
use hyp::platform::{self, RAM_BASE};
use hyp::vgic::Vgic;

/// Why a VM could not be built (a hypervisor configuration error: the run cannot start).
#[derive(Debug)]
pub enum BuildError {
    /// The engine refused a map or one of its entries.
    Map { vm: String, error: MapError },
    /// Every VMID is in use.
    NoVmid { vm: String },
    /// A device window clashes with another.
    Bus { vm: String, error: AttachError },
}

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BuildError::Map { vm, error } => write!(f, "vm {vm}: map: {error:?}"),
            BuildError::NoVmid { vm } => write!(f, "vm {vm}: every VMID is in use ({} VMs)", platform::MAX_VMS),
            BuildError::Bus { vm, error } => write!(f, "vm {vm}: {error}"),
        }
    }
}

/// The hypervisor state for `config`: the engine over `pool`, every VM built and added, vCPU 0
/// of each queued, the others parked.
pub fn build(config: &Config, pool: Range<Pa>) -> Result<Hyp, BuildError> {
    let trace = trace::Trace::open(config);
    let mem = Arc::new(IdentityMem::new(pool.clone()));
    let uvm = Uvm::new(mem, Arc::new(HwTlb::new()), pool.clone());
    log::info!(
        "virt: page pool {}..{} ({} MiB), {} VM(s)",
        pool.start,
        pool.end,
        (pool.end.0 - pool.start.0) >> 20,
        config.vms.len()
    );
    let dedup = config.dedup_rate.map(|rate| (Dedup::new(&uvm), rate as usize));
    let h = Hyp::new(uvm, trace, dedup);
    h.account.set_period_ms(config.account_ms);
    let mut images: Vec<(Arc<[u8]>, Arc<ImageObject>)> = Vec::new();
    for vc in &config.vms {
        let objects = vc
            .boot
            .segments
            .iter()
            .map(|seg| match images.iter().find(|(b, _)| Arc::ptr_eq(b, &seg.bytes)) {
                Some((_, o)) => o.clone(),
                None => {
                    let o = ImageObject::new(&h.uvm, seg.bytes.clone());
                    images.push((seg.bytes.clone(), o.clone()));
                    o
                }
            })
            .collect();
        add_vm(&h, vc, objects, fairmem::claims_on(config))?;
    }
    Ok(h)
}

/// The entries of a VM's RAM: each boot segment (page-aligned, rounded up to whole pages)
/// copy-on-write from its object, zero-fill anonymous memory around them.
fn insert_ram(map: &Map, vc: &VmConfig, objects: Vec<Arc<ImageObject>>) -> Result<(), MapError> {
    let ram_end = RAM_BASE + vc.ram_bytes;
    let mut at = RAM_BASE;
    for (seg, object) in vc.boot.segments.iter().zip(objects) {
        let start = seg.at.0;
        let end = start + (seg.bytes.len() as u64).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        if at < start {
            map.insert(EntrySpec::anon(Ipa(at), Ipa(start), Prot::ALL))?;
        }
        let object: Arc<dyn Object> = object;
        map.insert(EntrySpec::image(object, 0, Ipa(start), Ipa(end)))?;
        at = end;
    }
    if at < ram_end {
        map.insert(EntrySpec::anon(Ipa(at), Ipa(ram_end), Prot::ALL))?;
    }
    Ok(())
}

/// Build one VM of `vc` whose boot segments are `objects` (joining the memory claims when
/// `claims`: `fairmem`), add it to the table and queue its
/// vCPU 0.
fn add_vm(h: &Hyp, vc: &VmConfig, objects: Vec<Arc<ImageObject>>, claims: bool) -> Result<(), BuildError> {
    let name = || vc.name.clone();
    let map_err = |error| BuildError::Map { vm: name(), error };
    let lease = VmidLease::take(&VMIDS).ok_or_else(|| BuildError::NoVmid { vm: name() })?;
    let map = Map::new(&h.uvm, Vmid(lease.vmid)).map_err(map_err)?;
    insert_ram(&map, vc, objects).map_err(map_err)?;
    fairmem::join(h, &map, vc, claims);
    let image_len = vc.boot.bytes();
    let memory = Arc::new(Memory::new(map, lease));
    let nr = vc.cpus as u16;
    let time_base = crate::arch::timer::now();
    let shape = Shape { name: vc.name.clone(), ram_bytes: vc.ram_bytes, image_bytes: image_len, nr_vcpus: nr, time_base, lineage: Default::default(), clone_at: vc.clone.clone(), phase: 0 };
    let gic = vc.irqchip.then(|| Vgic::new(usize::from(nr)));
    let (vm, mut boot) = h.create_vm(shape, memory, devices(vc)?, gic, 0, vc.dedup);
    boot.power_on(vc.boot.entry.0, vc.boot.x0);
    log::info!(
        "virt: vm{} ({}) {} MiB RAM, image {} bytes, {} vCPU(s), entry {:#x}, time base {time_base}",
        vm.number,
        vc.name,
        vc.ram_bytes >> 20,
        image_len,
        nr,
        vc.boot.entry.0
    );
    h.queue.lock().push(boot);
    Ok(())
}

/// The device bus of a VM described by `vc`: every VM has a PL011 and its identity registers; a VM with an interrupt
/// controller has its distributor and one redistributor per vCPU.
fn devices(vc: &VmConfig) -> Result<Bus<Box<dyn Device>>, BuildError> {
    let err = |error| BuildError::Bus { vm: vc.name.clone(), error };
    let mut bus: Bus<Box<dyn Device>> = Bus::default();
    bus.attach(platform::PL011, Box::new(Pl011::default())).map_err(err)?;
    bus.attach(platform::IDENTITY, Box::new(IdentityDevice)).map_err(err)?;
    if vc.irqchip {
        bus.attach(platform::GICD, Box::new(Distributor)).map_err(err)?;
        bus.attach(platform::gicr(vc.cpus), Box::new(Redistributors)).map_err(err)?;
    }
    Ok(bus)
}
