//! Shared set-up of the `vm` integration tests: an engine over simulated memory, guest images
//! with a recognisable byte pattern, and a simulated CPU access that honours stage-2 permissions.
#![allow(dead_code, reason = "each test binary uses a different part")]

use std::sync::Arc;

use vm::addr::{Access, Ipa, Pa, Prot, PAGE_SIZE};
use vm::map::{EntrySpec, Map};
use vm::object::ImageObject;
use vm::physmem::PhysMem;
use vm::pmap::{Entry, Level, Stage2Attributes};
use vm::sim::{RecordingTlb, SimMem};
use vm::swap::MemSwap;
use vm::uvm::Uvm;

/// Guest RAM base, as in QEMU virt.
pub const RAM: u64 = 0x4000_0000;
/// Bytes in a page.
pub const PAGE: usize = PAGE_SIZE as usize;

/// An engine over `frames` simulated frames, with a swap device of `slots` slots.
pub struct Env {
    pub mem: Arc<SimMem>,
    pub tlb: Arc<RecordingTlb>,
    pub uvm: Arc<Uvm>,
    pub swap: Arc<MemSwap>,
}

impl Env {
    pub fn new(frames: usize, slots: u32) -> Env {
        let mem = Arc::new(SimMem::new(Pa(0x8000_0000), frames));
        let tlb = Arc::new(RecordingTlb::counting());
        let uvm = Uvm::new(mem.clone(), tlb.clone(), mem.range());
        let swap = MemSwap::new(slots);
        uvm.set_swap(swap.clone());
        Env {
            mem,
            tlb,
            uvm,
            swap,
        }
    }
}

/// IPA of guest page `n`.
pub fn ipa(n: u64) -> Ipa {
    Ipa(RAM + n * PAGE_SIZE)
}

/// Byte `o` of image `j`: a pseudo-random pattern, so that every page and every word differ.
pub fn image_byte(j: usize, o: usize) -> u8 {
    let x = (o as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((j as u64 + 1) << 40);
    (x >> 29) as u8 ^ (o >> 12) as u8
}

/// The bytes of image `j`, `len` long.
pub fn image_bytes(j: usize, len: usize) -> Arc<[u8]> {
    (0..len)
        .map(|o| image_byte(j, o))
        .collect::<Vec<u8>>()
        .into()
}

/// An anonymous (zero-fill) entry spec.
pub fn anon_spec(first: u64, pages: u64, prot: Prot) -> EntrySpec {
    EntrySpec::anon(ipa(first), ipa(first + pages), prot)
}

/// A copy-on-write image entry spec (as hyp's entry 1).
pub fn image_spec(obj: &Arc<ImageObject>, off_pages: u64, first: u64, pages: u64) -> EntrySpec {
    EntrySpec::image(
        obj.clone(),
        off_pages * PAGE_SIZE,
        ipa(first),
        ipa(first + pages),
    )
}

/// The frame a CPU would use for `access` at `ipa`: the stage-2 descriptor must be valid, have
/// its access flag set and permit the access. `None` means the access takes a stage-2 abort.
pub fn cpu_frame(map: &Map, at: Ipa, access: Access) -> Option<Pa> {
    let d = map.stage2().descriptor(at.page_base());
    match d.decode(Level::L3) {
        Entry::Leaf { oa, attrs, .. } => {
            let ok = attrs.contains(Stage2Attributes::AF) && attrs.prot().contains(access.prot());
            ok.then_some(Pa(oa.0 + at.page_offset()))
        }
        _ => None,
    }
}

/// Read a little-endian u64 from a frame.
pub fn read_u64(mem: &dyn PhysMem, pa: Pa) -> u64 {
    let mut b = [0u8; 8];
    mem.read(pa, &mut b);
    u64::from_le_bytes(b)
}

/// Write a little-endian u64 into a frame.
pub fn write_u64(mem: &dyn PhysMem, pa: Pa, v: u64) {
    mem.write(pa, &v.to_le_bytes());
}

/// Protections the model uses (stage 2 cannot express write-only: WRITE always comes with READ).
pub const PROTS: [Prot; 6] = [
    Prot::NONE,
    Prot::READ,
    Prot::READ.union(Prot::WRITE),
    Prot::READ.union(Prot::EXEC),
    Prot::ALL,
    Prot::EXEC,
];

/// Guest write of `v` at page `n` through the simulated CPU (fault until stage 2 allows it).
pub fn guest_write(map: &Map, n: u64, v: u64) {
    for _ in 0..4 {
        if let Some(pa) = cpu_frame(map, ipa(n), Access::Write) {
            write_u64(map.uvm().mem().as_ref(), pa, v);
            return;
        }
        vm::fault::fault(map, ipa(n), Access::Write, vm::fault::FaultFlags::empty())
            .expect("write fault");
    }
    panic!("write never allowed");
}

/// Guest read of the first word of page `n` (fault until stage 2 allows it).
pub fn guest_read(map: &Map, n: u64) -> u64 {
    for _ in 0..4 {
        if let Some(pa) = cpu_frame(map, ipa(n), Access::Read) {
            return read_u64(map.uvm().mem().as_ref(), pa);
        }
        vm::fault::fault(map, ipa(n), Access::Read, vm::fault::FaultFlags::empty())
            .expect("read fault");
    }
    panic!("read never allowed");
}

/// The first word of page `n` of image 0.
pub fn image_word(n: u64) -> u64 {
    let o = n as usize * PAGE;
    u64::from_le_bytes(core::array::from_fn(|i| image_byte(0, o + i)))
}
