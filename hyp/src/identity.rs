//! A VM's identity registers: who it is and what it was cloned from, for guests that cannot make a
//! hypercall (Linux userspace reads them with busybox `devmem` through `/dev/mem`). The window is
//! [`crate::platform::IDENTITY`]; `virt::identity` puts it on every VM's bus.
//!
//! | offset | register | value |
//! |---|---|---|
//! | `0x00` | `MAGIC` | [`MAGIC`], "UVMI" |
//! | `0x04` | `VM` | the VM's number (`vm<N>` in output) |
//! | `0x08` | `CLONE_INDEX` | k for the k-th child made from its parent (1-based, counted over all its parent's clones); 0 when not a clone |
//! | `0x0c` | `PARENT` | the VM number it was cloned from; 0 when not a clone |
//! | `0x10` | `CHILDREN` | children made from this VM so far (a template sees it go from 0 to N) |
//!
//! 32-bit registers, read-only (writes are ignored as unknown registers).

use core::sync::atomic::{AtomicU32, Ordering};

/// `MAGIC`: "UVMI" read as a little-endian word.
pub const MAGIC: u32 = u32::from_le_bytes(*b"UVMI");
/// Register offsets.
pub const REG_MAGIC: u64 = 0x00;
pub const REG_VM: u64 = 0x04;
pub const REG_CLONE_INDEX: u64 = 0x08;
pub const REG_PARENT: u64 = 0x0c;
pub const REG_CHILDREN: u64 = 0x10;

/// Where a VM comes from: child `index` of VM `parent`, or (both 0) a VM of the scenario.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lineage {
    pub parent: u16,
    pub index: u16,
}

/// A VM's identity: its lineage (fixed when it is made) and its children so far.
#[derive(Debug, Default)]
pub struct Identity {
    pub lineage: Lineage,
    children: AtomicU32,
}

impl Identity {
    pub fn new(lineage: Lineage) -> Identity {
        Identity { lineage, children: AtomicU32::new(0) }
    }

    /// One more child is made from this VM: its clone index (1, 2, … over every clone of this
    /// VM, so children of successive clones have distinct indexes and names).
    pub fn add_child(&self) -> u16 {
        (self.children.fetch_add(1, Ordering::AcqRel) + 1) as u16
    }

    /// Register `offset` of VM `number`, read `size` bytes wide: only aligned 32-bit reads of
    /// the registers above; `None` for anything else.
    pub fn read(&self, number: u16, offset: u64, size: u8) -> Option<u64> {
        if size != 4 {
            return None;
        }
        let v = match offset {
            REG_MAGIC => MAGIC,
            REG_VM => u32::from(number),
            REG_CLONE_INDEX => u32::from(self.lineage.index),
            REG_PARENT => u32::from(self.lineage.parent),
            REG_CHILDREN => self.children.load(Ordering::Acquire),
            _ => return None,
        };
        Some(u64::from(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_tell_a_child_from_its_template() {
        let template = Identity::new(Lineage::default());
        let child = Identity::new(Lineage { parent: 1, index: 3 });
        assert_eq!(template.read(1, REG_MAGIC, 4), Some(0x494d_5655));
        assert_eq!((template.read(1, REG_CLONE_INDEX, 4), template.read(1, REG_PARENT, 4)), (Some(0), Some(0)));
        assert_eq!(template.read(1, REG_CHILDREN, 4), Some(0));
        assert_eq!((template.add_child(), template.add_child()), (1, 2));
        assert_eq!(template.read(1, REG_CHILDREN, 4), Some(2));
        assert_eq!(child.read(5, REG_VM, 4), Some(5));
        assert_eq!((child.read(5, REG_CLONE_INDEX, 4), child.read(5, REG_PARENT, 4)), (Some(3), Some(1)));
    }

    #[test]
    fn only_aligned_words_of_known_registers_read() {
        let id = Identity::default();
        assert_eq!(id.read(1, REG_VM, 8), None);
        assert_eq!(id.read(1, REG_VM, 1), None);
        assert_eq!(id.read(1, 0x14, 4), None);
        assert_eq!(id.read(1, 0x02, 4), None);
    }
}
