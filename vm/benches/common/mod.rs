//! What the engine's benchmarks share: guest RAM at 1 GiB and a host-simulated engine.

use std::sync::Arc;

use vm::addr::{Ipa, Pa, PAGE_SIZE};
use vm::sim::{RecordingTlb, SimMem};
use vm::uvm::Uvm;

/// Guest RAM base of the benchmarks' maps.
pub const RAM: u64 = 0x4000_0000;

/// Page `n` of guest RAM.
pub fn ipa(n: u64) -> Ipa {
    Ipa(RAM + n * PAGE_SIZE)
}

pub struct Env {
    pub mem: Arc<SimMem>,
    pub uvm: Arc<Uvm>,
}

/// An engine over `frames` simulated frames (touched first when `materialise`, so page faults
/// of the host are not timed), its TLB a counter.
pub fn env(frames: usize, materialise: bool) -> Env {
    let mem = Arc::new(SimMem::new(Pa(0x1_0000_0000), frames));
    if materialise {
        mem.materialise();
    }
    let uvm = Uvm::new(mem.clone(), Arc::new(RecordingTlb::counting()), mem.range());
    Env { mem, uvm }
}
