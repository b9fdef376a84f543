//! `hog`: grabs all the memory it can — writes a signature to every page of its RAM beyond its
//! image (demand-zero faults, one page after another) — says so (`hog: holding N pages`), then
//! keeps reading all of it back and checking it for `HOLD_S` seconds of its counter, and exits 0.
//! Scenario `fairmem` starts it with a latecomer that needs memory only once the hog holds
//! nearly all of the pool: with memory claims the hog is the VM stopped, not the latecomer.
#![no_std]
#![no_main]

use guest::hvc;
use guest::layout::{self, PAGE_SIZE};
use guest::{check, pages, println, timer};

guest::entry!(main);

/// How long it holds its memory, reading it, before it exits (seconds of CNTVCT).
const HOLD_S: u64 = 20;

fn main(_cpu: usize, _arg: u64) -> u32 {
    guest::mmu::enable();
    let info = hvc::info();
    let start = layout::free_start();
    let end = layout::RAM_BASE + info.ram_bytes;
    check!(end > start, 2, "RAM of {} bytes is too small", info.ram_bytes);
    let count = (end - start) / PAGE_SIZE;
    // SAFETY: [start, end) is RAM beyond image, .bss and stacks.
    unsafe { pages::fill(start, 0..count, info.vm) };
    println!("hog: holding {} pages", count);
    let until = timer::now() + HOLD_S * timer::frequency();
    let mut rounds = 0u64;
    while timer::now() < until {
        // SAFETY: as above.
        let bad = unsafe { pages::mismatches(start, 0..count, info.vm, "hold") };
        check!(bad == 0, 3, "{} words wrong in round {}", bad, rounds);
        rounds += 1;
    }
    println!("hog: held {} pages for {} s, {} rounds verified: ok", count, HOLD_S, rounds);
    0
}
