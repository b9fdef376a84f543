//! `crash`: jumps to an IPA with no RAM and no device (MMU off). The instruction abort must make
//! the hypervisor stop this VM as crashed; its scenario checks that the other VM still exits 0.
//! Reaching our own vectors instead (or returning) exits with a nonzero status.
#![no_std]
#![no_main]

use guest::println;

guest::entry!(main);

const NOWHERE: u64 = 0x2000_0000;

fn main(_cpu: usize, _arg: u64) -> u32 {
    println!("crash: jumping to {:#x}", NOWHERE);
    // SAFETY: deliberately executes from an address with nothing behind it; the hypervisor stops
    // the VM, and if it does not our vectors report the abort and exit. Nothing returns here.
    unsafe { core::arch::asm!("br {}", in(reg) NOWHERE, options(noreturn)) }
}
