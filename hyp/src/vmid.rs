//! VM ids: a VM's id is its 8-bit VMID (1..=255; VMID 0 tags the hypervisor's empty stage 2).
//! Ids are taken from a pool when a VM is created and given back when its stage 2 is gone.
//!
//! Reuse is safe only once no TLB entry tagged with the VMID survives: the engine's `Stage2`
//! invalidates its VMID's entries on every CPU when it is dropped (`TLBI VMALLS12E1IS` under the
//! empty root, `hyp::vttbr`), and the hypervisor frees the id only after that drop
//! (`virt::machine::Memory`). The pool hands out the lowest free id, so a run that creates its VMs
//! in order numbers them 1, 2, … as before.

use crate::platform::MAX_VMS;

/// Free VMIDs, one bit each (bit 0 = VMID 0, never free).
#[derive(Clone, Debug)]
pub struct VmidPool {
    used: [u64; 4],
}

impl Default for VmidPool {
    fn default() -> Self {
        Self::new()
    }
}

impl VmidPool {
    /// Every id free but VMID 0.
    pub const fn new() -> VmidPool {
        VmidPool { used: [1, 0, 0, 0] }
    }

    /// The lowest free id, now in use; `None` when [`MAX_VMS`] VMs exist.
    pub fn alloc(&mut self) -> Option<u16> {
        let (word, bits) = self.used.iter().enumerate().find(|(_, w)| **w != u64::MAX)?;
        let id = word * 64 + bits.trailing_ones() as usize;
        if id > MAX_VMS {
            return None;
        }
        self.used[word] |= 1 << (id % 64);
        Some(id as u16)
    }

    /// Give `id` back (its stage 2 is gone and its TLB entries with it). Freeing a free id or
    /// VMID 0 is ignored.
    pub fn free(&mut self, id: u16) {
        let id = usize::from(id);
        if id != 0 && id <= MAX_VMS {
            self.used[id / 64] &= !(1 << (id % 64));
        }
    }

    /// Ids in use.
    pub fn in_use(&self) -> usize {
        self.used.iter().map(|w| w.count_ones() as usize).sum::<usize>() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn ids_start_at_one_and_run_out_after_255() {
        let mut p = VmidPool::default();
        let ids: Vec<u16> = core::iter::from_fn(|| p.alloc()).collect();
        assert_eq!(ids, (1..=255).collect::<Vec<u16>>());
        assert_eq!(p.in_use(), 255);
        assert_eq!(p.alloc(), None);
    }

    #[test]
    fn a_freed_id_is_reused_lowest_first() {
        let mut p = VmidPool::default();
        for _ in 0..70 {
            p.alloc();
        }
        p.free(65);
        p.free(3);
        p.free(0);
        p.free(300);
        assert_eq!(p.in_use(), 68);
        assert_eq!((p.alloc(), p.alloc(), p.alloc()), (Some(3), Some(65), Some(71)));
    }
}
