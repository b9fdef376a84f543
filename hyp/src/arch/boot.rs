//! What the boot CPU finds in memory when QEMU starts it: the device tree blob and the extent of
//! our own image (from the linker script's symbols).

use core::ops::Range;

pub use hyp::platform::host::DTB_ADDR;
/// Largest DTB we accept (QEMU's is about 1 MiB at most; ours ~8 KiB).
const DTB_MAX: usize = 2 << 20;

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
    static __text_end: u8;
    static __stacks_start: u8;
}

/// The hypervisor's code, from `_start` to the end of `.text`.
pub fn text() -> Range<u64> {
    // Only the addresses of the linker-script symbols are taken.
    (&raw const __image_start) as u64..(&raw const __text_end) as u64
}

/// The hypervisor image in memory, from `_start` to the end of the stacks (page aligned).
pub fn image() -> Range<u64> {
    // Only the addresses of the linker-script symbols are taken (`&raw const` needs no `unsafe`).
    (&raw const __image_start) as u64..(&raw const __image_end) as u64
}

/// The guard page at the bottom of each CPU's stack slot (`hyp.ld`, `cpu::STACK_SIZE`): left
/// unmapped by `mmu.rs`, so a stack overflow faults instead of overwriting what lies below.
pub fn stack_guards() -> [u64; super::cpu::MAX_CPUS] {
    let base = (&raw const __stacks_start) as u64;
    core::array::from_fn(|i| base + (i * super::cpu::STACK_SIZE) as u64)
}

/// The device tree QEMU left at [`DTB_ADDR`], or `None` if there is no FDT magic there.
pub fn dtb() -> Option<&'static [u8]> {
    // SAFETY: DTB_ADDR is the base of RAM (always present on QEMU virt; below our image, never
    // written by us). We read the 8-byte header first, then trust its total size only up to
    // DTB_MAX, which stays inside the 2 MiB below our image at 0x4020_0000.
    let header = unsafe { core::slice::from_raw_parts(DTB_ADDR as *const u8, 8) };
    let size = hyp::dtb::total_size(header).ok()?;
    if size > DTB_MAX {
        return None;
    }
    // SAFETY: as above; `size` ≤ DTB_MAX bytes of RAM below our image, read-only from now on.
    Some(unsafe { core::slice::from_raw_parts(DTB_ADDR as *const u8, size) })
}
