//! `clonebench` (`make bench`): what a VM clone costs against the memory it shares. The guest
//! makes 16 MiB beyond its image resident (one write a page), forks (UVMHYP_CLONE of one, timed by
//! `hvc::clone_timed`), and the child prints how many virtual-counter ticks passed from the
//! request to its first instruction — both reads under the same CNTVOFF, the parent's — and
//! exits; the parent yields at once (so on one CPU the child runs next), prints its own resume
//! time, makes 256 MiB resident and does it again. The first clone, at 16 MiB too, is a warm-up:
//! in host time (no -icount) QEMU translates the hypervisor's clone path on its first run, which
//! costs milliseconds and is no part of a clone. A clone copies no page (`Map::fork` shares
//! every amap `needs_copy`), so the two should cost alike; the hypervisor's log gives the clone's
//! own time on the physical counter (`virt: vmN cloned ... in T us`).
#![no_std]
#![no_main]

use guest::hvc::{self, Cloned};
use guest::layout::{self, PAGE_SIZE};
use guest::{check, println, timer};

guest::entry!(main);

/// Resident sizes at the clones, MiB, and what a clone's lines are called.
const CLONES: [(u64, &str); 3] = [(16, " (warm-up)"), (16, ""), (256, "")];

fn main(_cpu: usize, _arg: u64) -> u32 {
    guest::mmu::enable();
    let info = hvc::info();
    let start = layout::free_start();
    let most = CLONES[CLONES.len() - 1].0 << 20;
    check!(layout::RAM_BASE + info.ram_bytes >= start + most, 2, "RAM of {} bytes is too small for {} MiB", info.ram_bytes, most >> 20);
    let freq = timer::frequency();
    let ns = |ticks: u64| ticks.saturating_mul(1_000_000_000) / freq;
    let mut resident = 0;
    for (mib, label) in CLONES {
        let pages = (mib << 20) / PAGE_SIZE;
        for p in resident..pages {
            // SAFETY: [start, start + most) is free RAM beyond image, .bss and stacks (checked).
            unsafe { guest::poke(start + p * PAGE_SIZE, p) };
        }
        resident = pages;
        let (cloned, before, after) = hvc::clone_timed(1);
        match cloned {
            Cloned::Child { .. } => {
                let t = after.wrapping_sub(before);
                println!("clonebench: {} MiB resident{}: request to the child's first instruction {} ticks, {} ns", mib, label, t, ns(t));
                return 0;
            }
            Cloned::Parent { count: 1, .. } => {
                hvc::yield_now();
                let t = after.wrapping_sub(before);
                println!("clonebench: {} MiB resident{}: request to the parent's resume {} ticks, {} ns", mib, label, t, ns(t));
            }
            Cloned::Parent { count, .. } => guest::fail!(3, "asked for one child, got {}", count),
            Cloned::Failed(e) => guest::fail!(4, "UVMHYP_CLONE failed: {}", e),
        }
    }
    0
}
