//! Building the VMs of a scenario (CPU 0, once, before any vCPU runs): the shared `vm::uvm::Uvm`
//! over the page pool with the real `PhysMem`/`Tlb`, one `ImageObject` per distinct guest image,
//! one `Map` per VM with its RAM entries (README, "Guest memory"), the vCPUs, and the trace.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use spin::Mutex;

use super::trace;
use super::vm::{Vcpu, Vm};
use super::Hyp;
use crate::arch::physmem::IdentityMem;
use crate::arch::tlb::HwTlb;
use ::vm::map::{EntrySpec, Map};
use ::vm::object::{ImageObject, Object};
use ::vm::pmap::Vmid;
use ::vm::uvm::Uvm;
use ::vm::{Ipa, Pa, Prot, PAGE_SIZE};
use hyp::config::Config;
use hyp::loader::RAM_BASE;

/// Why a VM could not be built (a hypervisor configuration error: the run cannot start).
#[derive(Debug)]
pub enum BuildError {
    /// The engine refused a map or one of its entries.
    Map { vm: usize, error: ::vm::map::MapError },
}

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BuildError::Map { vm, error } => write!(f, "vm{vm}: map: {error:?}"),
        }
    }
}

/// The hypervisor state for `config`: the engine over `pool`, one map per VM with its RAM
/// entries (README, "Guest memory"), vCPU 0 of each VM queued, the others parked.
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

    let mut images: Vec<(Arc<[u8]>, Arc<ImageObject>)> = Vec::new();
    let mut vms = Vec::new();
    let mut runq = VecDeque::new();
    for (i, vc) in config.vms.iter().enumerate() {
        let id = (i + 1) as u16;
        let object = match images.iter().find(|(b, _)| Arc::ptr_eq(b, &vc.image)) {
            Some((_, o)) => o.clone(),
            None => {
                let o = ImageObject::new(&uvm, vc.image.clone());
                images.push((vc.image.clone(), o.clone()));
                o
            }
        };
        let map_err = |error| BuildError::Map { vm: usize::from(id), error };
        let map = Map::new(&uvm, Vmid(id)).map_err(map_err)?;
        let image_len = vc.image.len() as u64;
        let image_end = RAM_BASE + image_len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let ram_end = RAM_BASE + vc.ram_bytes;
        let object: Arc<dyn Object> = object;
        map.insert(EntrySpec::image(object, 0, Ipa(RAM_BASE), Ipa(image_end))).map_err(map_err)?;
        if image_end < ram_end {
            map.insert(EntrySpec::anon(Ipa(image_end), Ipa(ram_end), Prot::ALL)).map_err(map_err)?;
        }
        let nr = vc.cpus as u16;
        let vm = Vm::new(id, vc.name.clone(), map.clone(), vc.ram_bytes, image_len, nr);
        trace.vm_started(id, &map);
        {
            let mut parked = vm.parked.lock();
            for idx in 0..nr {
                parked.push(if idx == 0 { None } else { Some(Vcpu::new(vm.clone(), map.clone(), idx)) });
            }
        }
        let mut boot = Vcpu::new(vm.clone(), map, 0);
        boot.power_on(vc.entry.0, 0);
        vm.online.store(1, Ordering::Release);
        runq.push_back(boot);
        log::info!(
            "virt: vm{id} ({}) {} MiB RAM, image {} bytes, {} vCPU(s), entry {:#x}",
            vc.name,
            vc.ram_bytes >> 20,
            image_len,
            nr,
            vc.entry.0
        );
        vms.push(vm);
    }
    Ok(Hyp {
        vms,
        uvm,
        trace,
        runq: Mutex::new(runq),
        sleepers: Mutex::new(Vec::new()),
        idle_cpus: AtomicUsize::new(0),
        busy: AtomicUsize::new(0),
        stopped: AtomicUsize::new(0),
        finished: AtomicBool::new(false),
    })
}

