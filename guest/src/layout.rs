//! Addresses the linker script defines, and the guest-physical layout the hypervisor gives us.

/// Guest RAM base (IPA), where the image is linked.
pub const RAM_BASE: u64 = 0x4000_0000;
/// Translation granule.
pub const PAGE_SIZE: u64 = 4096;
/// Most vCPUs a guest supports (one stack each). Must equal `MAX_CPUS` in `link.ld`, which
/// reserves the stacks.
pub const MAX_CPUS: usize = 4;
/// Bytes of one vCPU's stack. Must equal `STACK_SIZE` in `link.ld`.
pub const STACK_SIZE: u64 = 0x10000;

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
