//! `latecomer`: waits for a byte on its console (scenario `fairmem` types one once the hog
//! holds its memory), then writes a signature to `NEED_MIB` of RAM beyond its image (all of it
//! when the VM has less), verifies it twice, and exits 0 (`latecomer: ok`). With the pool
//! overcommitted and no swap, its faults find the pool empty: it lives only if the hypervisor
//! takes the frames from a VM over its share.
#![no_std]
#![no_main]

use guest::hvc;
use guest::layout::{self, PAGE_SIZE};
use guest::{check, pages, println};

guest::entry!(main);

/// The memory it needs once woken.
const NEED_MIB: u64 = 16;

fn main(_cpu: usize, _arg: u64) -> u32 {
    guest::mmu::enable();
    let info = hvc::info();
    let start = layout::free_start();
    let end = layout::RAM_BASE + info.ram_bytes;
    check!(end > start, 2, "RAM of {} bytes is too small", info.ram_bytes);
    let count = ((end - start) / PAGE_SIZE).min((NEED_MIB << 20) / PAGE_SIZE);
    println!("latecomer: waiting");
    let _ = guest::console::read_byte();
    // SAFETY: [start, start + count pages) is RAM beyond image, .bss and stacks.
    unsafe { pages::fill(start, 0..count, info.vm) };
    for pass in ["first", "second"] {
        // SAFETY: as above.
        let bad = unsafe { pages::mismatches(start, 0..count, info.vm, pass) };
        check!(bad == 0, 3, "{} words wrong in the {} pass", bad, pass);
    }
    println!("latecomer: {} pages written and verified twice: ok", count);
    0
}
