//! `crash`: points its exception vectors at an IPA with no RAM and no device, then jumps there
//! (MMU off). The instruction abort cannot be delivered, so the hypervisor must stop this VM as
//! crashed (a deliverable one is `badaddr`'s check); its scenario checks that the other VM still
//! exits 0. Returning here exits with a nonzero status.
#![no_std]
#![no_main]

use guest::println;

guest::entry!(main);

const NOWHERE: u64 = 0x2000_0000;

fn main(_cpu: usize, _arg: u64) -> u32 {
    println!("crash: vectors and a jump to {:#x}", NOWHERE);
    // SAFETY: deliberately executes from an address with nothing behind it, with the vectors
    // there too; the hypervisor stops the VM. Nothing returns here.
    unsafe { core::arch::asm!("msr vbar_el1, {0}", "isb", "br {0}", in(reg) NOWHERE, options(noreturn)) }
}
