//! The VM's identity registers (`hyp/src/identity.rs` has the layout): which VM this is, its clone
//! index and parent, its children so far. Read-only 32-bit MMIO words at `platform::IDENTITY`.

use crate::layout::IDENTITY_BASE;

/// Register offsets.
pub const MAGIC: u64 = 0x00;
pub const VM: u64 = 0x04;
pub const CLONE_INDEX: u64 = 0x08;
pub const PARENT: u64 = 0x0c;
pub const CHILDREN: u64 = 0x10;
/// What `MAGIC` reads: "UVMI".
pub const MAGIC_VALUE: u32 = u32::from_le_bytes(*b"UVMI");

/// Register `offset` (one of the above: 4-byte aligned).
pub fn read(offset: u64) -> u32 {
    // SAFETY: the identity page is a device window of every VM (no RAM, no Rust object), mapped
    // as device memory by `mmu` or read as such with the MMU off; an aligned 32-bit read of a
    // register has no side effect.
    unsafe { core::ptr::read_volatile((IDENTITY_BASE + offset) as *const u32) }
}
