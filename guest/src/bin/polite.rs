//! `polite`: gives the CPU away for its first second (UVMHYP_YIELD in a loop), then writes and
//! verifies 256 pages and exits 0. Beside guests that spin without ever trapping (`spin`), on
//! fewer physical CPUs than spinners, its last yield puts it behind them: it only runs again if
//! the hypervisor takes the CPU back from a spinner (scenario `preempt`).
#![no_std]
#![no_main]

use core::arch::asm;
use guest::hvc;
use guest::layout::{self, PAGE_SIZE};
use guest::{check, println};

guest::entry!(main);

const PAGES: u64 = 256;

fn counter() -> (u64, u64) {
    let (now, freq): (u64, u64);
    // SAFETY: reading the virtual counter and its frequency has no side effect.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", "mrs {}, cntfrq_el0", out(reg) now, out(reg) freq, options(nomem, nostack)) };
    (now, freq)
}

fn main(_cpu: usize, _arg: u64) -> u32 {
    let info = hvc::info();
    let (start, freq) = counter();
    let mut yields = 0u64;
    while counter().0 < start + freq {
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
