//! `polite`: gives the CPU away for its first second (UVMHYP_YIELD in a loop), then writes and
//! verifies 256 pages and exits 0. Beside guests that spin without ever trapping (`spin`), on
//! fewer physical CPUs than spinners, its last yield puts it behind them: it only runs again if
//! the hypervisor takes the CPU back from a spinner (scenario `preempt`).
#![no_std]
#![no_main]

use guest::hvc;
use guest::layout::{self, PAGE_SIZE};
use guest::{check, println};

guest::entry!(main);

const PAGES: u64 = 256;

fn main(_cpu: usize, _arg: u64) -> u32 {
    let info = hvc::info();
    let end = guest::timer::now() + guest::timer::frequency();
    let mut yields = 0u64;
    while guest::timer::now() < end {
        hvc::yield_now();
        yields += 1;
    }
    let base = layout::free_start();
    for p in 0..PAGES {
        // SAFETY: free RAM beyond image, .bss and stacks.
        unsafe { guest::poke(base + p * PAGE_SIZE, guest::pattern(info.vm, p, 0)) };
    }
    for p in 0..PAGES {
        // SAFETY: as above.
        let v = unsafe { guest::peek(base + p * PAGE_SIZE) };
        check!(v == guest::pattern(info.vm, p, 0), 2, "page {} reads {:#x}", p, v);
    }
    println!("polite: yielded {} times, then wrote and verified {} pages", yields, PAGES);
    0
}
