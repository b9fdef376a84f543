//! A fixed workload for instruction counting (`valgrind --tool=callgrind`): `N` zero-fill faults
//! (Zero2B) and `N` copy-on-write faults (1B), each in its own function so that
//! `--toggle-collect` can count one path alone, plus the baselines (zero, copy 4 KiB).
//!
//! ```text
//! cargo build -p vm --release --example fault_profile
//! valgrind --tool=callgrind --toggle-collect='fault_profile::zero_fill' \
//!     target/release/examples/fault_profile zero
//! ```
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::sync::Arc;

use vm::addr::{Access, Ipa, Pa, Prot, PAGE_SIZE};
use vm::fault::{fault, FaultFlags};
use vm::map::{Advice, EntrySpec, Map};
use vm::physmem::PhysMem;
use vm::pmap::Vmid;
use vm::sim::{RecordingTlb, SimMem};
use vm::uvm::Uvm;

const N: u64 = 4096;
const RAM: u64 = 0x4000_0000;

fn ipa(n: u64) -> Ipa {
    Ipa(RAM + n * PAGE_SIZE)
}

fn setup(frames: usize) -> (Arc<SimMem>, Arc<Uvm>, Arc<Map>) {
    let mem = Arc::new(SimMem::new(Pa(0x1_0000_0000), frames));
    let uvm = Uvm::new(mem.clone(), Arc::new(RecordingTlb::counting()), mem.range());
    let map = Map::new(&uvm, Vmid(1)).unwrap();
    map.insert(EntrySpec {
        advice: Advice::Random,
        ..EntrySpec::anon(ipa(0), ipa(N), Prot::READ | Prot::WRITE)
    })
    .unwrap();
    (mem, uvm, map)
}

#[inline(never)]
fn zero_fill(map: &Map) {
    for i in 0..N {
        black_box(fault(map, ipa(i), Access::Write, FaultFlags::empty()).unwrap());
    }
}

#[inline(never)]
fn cow_1b(map: &Map) {
    for i in 0..N - 1 {
        black_box(fault(map, ipa(i), Access::Write, FaultFlags::empty()).unwrap());
    }
}

#[inline(never)]
fn baseline_zero(mem: &SimMem, pa: Pa) {
    for _ in 0..N {
        mem.zero(black_box(pa));
    }
}

#[inline(never)]
fn baseline_copy(mem: &SimMem, dst: Pa, src: Pa) {
    for _ in 0..N {
        mem.copy(black_box(dst), black_box(src));
    }
}

fn main() {
    let what = std::env::args().nth(1).unwrap_or_default();
    let (mem, _uvm, map) = setup(2 * N as usize + 256);
    mem.materialise();
    match what.as_str() {
        "zero" => zero_fill(&map),
        "cow" => {
            zero_fill(&map);
            let child = map.fork(Vmid(2)).unwrap();
            fault(&map, ipa(N - 1), Access::Write, FaultFlags::empty()).unwrap();
            cow_1b(&map);
            drop(child);
        }
        _ => {
            let pa = mem.range().start;
            baseline_zero(&mem, pa);
            baseline_copy(&mem, pa, Pa(pa.0 + PAGE_SIZE));
        }
    }
}
