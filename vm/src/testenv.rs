//! Shared set-up for the engine's unit tests: a `Uvm` over simulated memory, maps, images.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::addr::{Access, Ipa, Pa, Prot, PAGE_SIZE};
use crate::fault::{fault, FaultError, FaultFlags, Resolved};
use crate::map::{EntrySpec, Map};
use crate::object::ImageObject;
use crate::physmem::PhysMem;
use crate::pmap::{Pmap, Vmid};
use crate::sim::{RecordingTlb, SimMem};
use crate::swap::{MemSwap, SwapDevice, SwapIoError};
use crate::uvm::Uvm;

/// Guest RAM base, as in QEMU virt.
pub const RAM: Ipa = Ipa(0x4000_0000);

#[allow(dead_code, reason = "kept for tests that inspect TLB operations")]
pub struct Env {
    pub mem: Arc<SimMem>,
    pub tlb: Arc<RecordingTlb>,
    pub uvm: Arc<Uvm>,
}

/// An engine with a pool of `frames` frames.
pub fn env(frames: usize) -> Env {
    let mem = Arc::new(SimMem::new(Pa(0x8000_0000), frames));
    let tlb = Arc::new(RecordingTlb::new());
    let uvm = Uvm::new(mem.clone(), tlb.clone(), mem.range());
    Env { mem, tlb, uvm }
}

/// IPA of page `n` of guest RAM.
pub fn page(n: u64) -> Ipa {
    RAM.add_pages(n)
}

/// An anonymous-memory spec of `pages` pages at `RAM + first` pages, read-write.
pub fn anon_spec(first: u64, pages: u64) -> EntrySpec {
    EntrySpec::anon(page(first), page(first + pages), Prot::READ | Prot::WRITE)
}

/// An image-object spec (copy-on-write, with an amap, as hyp's entry 1).
pub fn image_spec(obj: &Arc<ImageObject>, first: u64, pages: u64) -> EntrySpec {
    EntrySpec::image(obj.clone(), 0, page(first), page(first + pages))
}

impl Env {
    pub fn map(&self, vmid: u16) -> Arc<Map> {
        Map::new(&self.uvm, Vmid(vmid)).unwrap()
    }

    /// A map with one anon entry of `pages` pages.
    pub fn anon_map(&self, pages: u64) -> Arc<Map> {
        let m = self.map(1);
        m.insert(anon_spec(0, pages)).unwrap();
        m
    }

    /// An image of `len` bytes, byte i = (i / PAGE_SIZE + 1) as u8 (so each page is distinct).
    pub fn image(&self, len: usize) -> Arc<ImageObject> {
        let bytes: Vec<u8> = (0..len)
            .map(|i| (i / PAGE_SIZE as usize + 1) as u8)
            .collect();
        ImageObject::new(&self.uvm, bytes.into())
    }

    /// First byte of the frame mapped at `ipa` (panics if unmapped: test helper).
    pub fn byte(&self, map: &Map, ipa: Ipa) -> u8 {
        let (pa, _) = map.stage2().extract(ipa).expect("mapped");
        let mut b = [0u8];
        self.mem.read(pa, &mut b);
        b[0]
    }
}

pub fn rd(map: &Map, ipa: Ipa) -> Result<Resolved, FaultError> {
    fault(map, ipa, Access::Read, FaultFlags::empty())
}

pub fn wr(map: &Map, ipa: Ipa) -> Result<Resolved, FaultError> {
    fault(map, ipa, Access::Write, FaultFlags::empty())
}

/// Protection of the stage-2 mapping at `ipa`.
pub fn prot(map: &Map, ipa: Ipa) -> Option<Prot> {
    map.stage2().extract(ipa).map(|(_, p)| p)
}

/// A swap device that runs a hook once, in the middle of the next read (another CPU changing the
/// world while a fault is unlocked for I/O).
pub struct HookSwap {
    pub inner: Arc<MemSwap>,
    pub hook: spin::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl HookSwap {
    /// A device of `slots` slots with no hook set yet.
    pub fn new(slots: u32) -> Arc<HookSwap> {
        Arc::new(HookSwap {
            inner: MemSwap::new(slots),
            hook: spin::Mutex::new(None),
        })
    }
}

impl SwapDevice for HookSwap {
    fn slots(&self) -> u32 {
        self.inner.slots()
    }
    fn read(&self, slot: u32, mem: &dyn PhysMem, frame: Pa) -> Result<(), SwapIoError> {
        // Take the hook first: it may reach this device again.
        let hook = self.hook.lock().take();
        if let Some(h) = hook {
            h();
        }
        self.inner.read(slot, mem, frame)
    }
    fn write(&self, slot: u32, mem: &dyn PhysMem, frame: Pa) -> Result<(), SwapIoError> {
        self.inner.write(slot, mem, frame)
    }
}
