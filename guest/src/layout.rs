//! Addresses the linker script defines, and the guest-physical layout the hypervisor gives us:
//! the hypervisor's platform module itself (`hyp/src/platform.rs`, dependency-free), which
//! `build.rs` also turns into the linker script's inputs.

#[path = "../../hyp/src/platform.rs"]
#[allow(dead_code)]
mod platform;

/// Guest RAM base (IPA), where the image is linked.
pub use platform::RAM_BASE;
/// Translation granule.
pub use platform::PAGE_SIZE;
/// The PL011's base (IPA).
pub const PL011_BASE: u64 = platform::PL011.base;
/// The identity registers' base (IPA).
pub const IDENTITY_BASE: u64 = platform::IDENTITY.base;
/// Most vCPUs a guest supports (one stack each, reserved by `link.ld`).
pub const MAX_CPUS: usize = platform::MAX_VCPUS as usize;
/// Bytes of one vCPU's stack.
pub use platform::GUEST_STACK_SIZE as STACK_SIZE;

extern "C" {
    static __guest_end: u8;
}

/// First page beyond image, `.bss` and the stacks: free RAM the program may use.
pub fn free_start() -> u64 {
    core::ptr::addr_of!(__guest_end) as u64
}

/// Pages from RAM base up to `free_start()`: the image, `.bss` and stacks.
pub fn reserved_pages() -> u64 {
    (free_start() - RAM_BASE) / PAGE_SIZE
}
