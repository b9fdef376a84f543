//! Addresses the linker script defines, and the guest-physical layout the hypervisor gives us.

/// Guest RAM base (IPA), where the image is linked.
pub const RAM_BASE: u64 = 0x4000_0000;
/// Translation granule.
pub const PAGE_SIZE: u64 = 4096;
/// Most vCPUs a guest supports (one stack each).
pub const MAX_CPUS: usize = 4;

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
    static __bss_start: u8;
    static __bss_end: u8;
    static __guest_end: u8;
}

/// End of the file-backed image (page aligned).
pub fn image_end() -> u64 {
    core::ptr::addr_of!(__image_end) as u64
}

/// Start of the image (== RAM_BASE).
pub fn image_start() -> u64 {
    core::ptr::addr_of!(__image_start) as u64
}

/// `[start, end)` of `.bss`.
pub fn bss() -> (u64, u64) {
    (core::ptr::addr_of!(__bss_start) as u64, core::ptr::addr_of!(__bss_end) as u64)
}

/// First page beyond image, `.bss` and the stacks: free RAM the program may use.
pub fn free_start() -> u64 {
    core::ptr::addr_of!(__guest_end) as u64
}

/// Pages from RAM base up to `free_start()`: the image, `.bss` and stacks.
pub fn reserved_pages() -> u64 {
    (free_start() - RAM_BASE) / PAGE_SIZE
}
