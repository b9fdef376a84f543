//! Runtime for uvmhyp's bare-metal EL1 test guests.
//!
//! A test guest is a small `no_std` program linked at guest RAM base (see `link.ld`) that exercises
//! the hypervisor's demand-faulted memory and reports through the hypercall ABI (README, "Hypercall ABI"):
//! `exit`, `print`, `counter`, `yield_now`, `info`, PSCI `cpu_on`/`cpu_off`. This crate gives each
//! program:
//!
//! - `_start` (in [`rt`]): per-vCPU stack from MPIDR_EL1.Aff0, `.bss` zeroed by vCPU 0, FP/SIMD
//!   enabled, our own EL1 vectors installed, then the program's `main(cpu, arg)` (see [`entry!`]);
//!   vCPU 0's return value becomes the VM's exit status, other vCPUs turn themselves off.
//! - [`exceptions`]: EL1 vectors that record ESR_EL1/FAR_EL1/ELR_EL1; an abort the program said it
//!   expects ([`exceptions::probe_read`], [`exceptions::probe_exec`]) resumes after the faulting access, anything else reports and
//!   exits with [`EXIT_UNEXPECTED_EXCEPTION`].
//! - [`hvc`]: the hypercall wrappers; [`console`]: `println!` over PRINT; [`timer`]: the virtual
//!   counter.
//! - [`idregs`]: the CPU features the hypervisor must hide from guests.
//! - [`mmu`]: an optional identity stage-1 map (1 GiB blocks, Device below RAM, Normal WB for RAM)
//!   so exclusives and atomics have Normal-memory semantics.
//!
//! Principle: a guest checks, it does not trust. Everything it expects of the hypervisor is an
//! assertion that ends in a nonzero exit status with a line saying what did not hold.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod console;
pub mod exceptions;
pub mod hvc;
pub mod identity;
pub mod idregs;
pub mod layout;
pub mod mmu;
pub mod pages;
pub mod rt;
pub mod timer;

/// Exit status when an exception nobody expected reached our vectors.
pub const EXIT_UNEXPECTED_EXCEPTION: u32 = 0xE0;
/// Exit status after a Rust panic.
pub const EXIT_PANIC: u32 = 0xE1;

/// Fail the program: print `FAIL: <message>` and exit with `status` (never 0).
#[macro_export]
macro_rules! fail {
    ($status:expr, $($arg:tt)*) => {{
        $crate::println!("FAIL: {}", format_args!($($arg)*));
        $crate::hvc::exit($status)
    }};
}

/// Check a condition; on failure print `FAIL: <message>` and exit with `status`.
#[macro_export]
macro_rules! check {
    ($cond:expr, $status:expr, $($arg:tt)*) => {{
        if !$cond {
            $crate::fail!($status, $($arg)*);
        }
    }};
}

/// A value no other (VM, page, word) pair produces: what the memory programs write and check.
pub fn pattern(vm: u64, page: u64, word: u64) -> u64 {
    (page.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (vm << 56) ^ (word << 40)) | 1
}

/// Volatile 8-byte store to guest RAM the program owns (free RAM beyond the image).
///
/// # Safety
/// `addr` is 8-byte aligned, in guest RAM, and no Rust object lives there.
pub unsafe fn poke(addr: u64, value: u64) {
    // SAFETY: the caller's contract.
    unsafe { core::ptr::write_volatile(addr as *mut u64, value) }
}

/// Volatile 8-byte load from guest RAM the program owns.
///
/// # Safety
/// As for [`poke`].
pub unsafe fn peek(addr: u64) -> u64 {
    // SAFETY: the caller's contract.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}
