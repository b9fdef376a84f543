//! Which CPUs may hold a VM's stage-2 TLB entries, and so how far a stage-2 invalidation must
//! reach: nowhere, this CPU only, or every CPU (broadcast).
//!
//! Why: a broadcast `TLBI ...IS` is the expensive kind — on real hardware it waits for every
//! CPU of the inner-shareable domain, and under QEMU's TCG each one is a "synced" flush that
//! stops every vCPU thread until all have flushed. Most stage-2 changes are made by the CPU
//! that runs the only vCPU of the VM (its own faults: copy-on-write, demand zero, swap-in), or
//! for a VM no CPU runs at that moment (the pagedaemon and the dedup scanner on idle CPUs), so
//! most broadcasts are not needed.
//!
//! The rule, per VMID, a mask of CPUs that may hold its entries:
//! - a CPU sets its bit before it loads a vCPU of the VM (`VcpuTlbs::entering`) and clears it
//!   only after it has left the VM and invalidated, locally, every entry of that VMID it may
//!   hold (`VcpuTlbs::left`). Between the two, whatever its EL1&0 regime walks may be cached;
//!   outside, nothing of that VMID is (EL2 never walks a VM's stage 2 except through AT while
//!   the vCPU is loaded, and maintenance uses an all-invalid root, `vttbr.rs`);
//! - an invalidation of the VMID by CPU `me`, after its descriptor write is complete
//!   ([`VcpuTlbs::scope`]): no bit set → no TLB holds the old entry, nothing to do; only `me`'s
//!   → a local TLBI; any other → broadcast.
//!
//! The ordering the arch layer adds (`arch/tlb.rs`): the invalidating CPU's `DSB ISH` between
//! its descriptor write and its read of the mask, the entering CPU's `DSB ISH` between setting
//! its bit and its first walk. Then either the invalidator sees the bit (and reaches that CPU)
//! or the entering CPU's walks see the new descriptor.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::platform::{MAX_CPUS, MAX_VMS};
use vm::pmap::Vmid;

const _: () = assert!(MAX_CPUS <= 32, "one bit a CPU in an AtomicU32");

/// How far an invalidation for a VMID must reach.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scope {
    /// No CPU may hold an entry of the VMID.
    Nowhere,
    /// Only the invalidating CPU may.
    Local,
    /// Some other CPU may: inner-shareable broadcast.
    Broadcast,
}

/// Per VMID (0 ..= [`MAX_VMS`]), the CPUs that may hold its stage-2 entries.
pub struct VcpuTlbs {
    cpus: [AtomicU32; MAX_VMS + 1],
}

impl VcpuTlbs {
    pub const fn new() -> VcpuTlbs {
        VcpuTlbs { cpus: [const { AtomicU32::new(0) }; MAX_VMS + 1] }
    }

    /// CPU `cpu` is about to load a vCPU of `vmid` (the arch layer's `DSB ISH` follows).
    pub fn entering(&self, vmid: Vmid, cpu: usize) {
        if let Some(m) = self.mask(vmid) {
            m.fetch_or(1 << cpu, Ordering::SeqCst);
        }
    }

    /// CPU `cpu` has left `vmid` and invalidated its own entries of it (completed, `DSB NSH`).
    pub fn left(&self, vmid: Vmid, cpu: usize) {
        if let Some(m) = self.mask(vmid) {
            m.fetch_and(!(1 << cpu), Ordering::SeqCst);
        }
    }

    /// How far an invalidation of `vmid` by CPU `me` must reach (after the descriptor write is
    /// complete: the arch layer's `DSB ISH` before the call). A VMID out of range — none is
    /// handed out — gets a broadcast, the answer that is always correct.
    pub fn scope(&self, vmid: Vmid, me: usize) -> Scope {
        let Some(m) = self.mask(vmid) else { return Scope::Broadcast };
        match m.load(Ordering::SeqCst) {
            0 => Scope::Nowhere,
            bits if bits == 1 << me => Scope::Local,
            _ => Scope::Broadcast,
        }
    }

    fn mask(&self, vmid: Vmid) -> Option<&AtomicU32> {
        self.cpus.get(usize::from(vmid.0))
    }
}

impl Default for VcpuTlbs {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vm_no_cpu_runs_needs_no_invalidation() {
        let t = VcpuTlbs::new();
        assert_eq!(t.scope(Vmid(3), 0), Scope::Nowhere);
        t.entering(Vmid(3), 1);
        t.left(Vmid(3), 1);
        assert_eq!(t.scope(Vmid(3), 0), Scope::Nowhere, "its last CPU flushed it on leaving");
    }

    #[test]
    fn only_this_cpu_means_local_any_other_means_broadcast() {
        let t = VcpuTlbs::new();
        t.entering(Vmid(5), 2);
        assert_eq!(t.scope(Vmid(5), 2), Scope::Local);
        assert_eq!(t.scope(Vmid(5), 0), Scope::Broadcast, "CPU 2 may hold entries CPU 0 cannot reach");
        t.entering(Vmid(5), 0);
        assert_eq!(t.scope(Vmid(5), 2), Scope::Broadcast, "two CPUs run vCPUs of the VM");
        t.left(Vmid(5), 0);
        assert_eq!(t.scope(Vmid(5), 2), Scope::Local);
        assert_eq!(t.scope(Vmid(6), 2), Scope::Nowhere, "other VMIDs are unaffected");
    }

    #[test]
    fn two_vcpus_of_one_vm_on_one_cpu_keep_its_bit_until_both_left() {
        // A CPU runs one vCPU at a time, so `left` after each run is exact; but a VMID's bit set
        // by one CPU must not be cleared by another's leaving.
        let t = VcpuTlbs::new();
        t.entering(Vmid(1), 0);
        t.entering(Vmid(1), 3);
        t.left(Vmid(1), 3);
        assert_eq!(t.scope(Vmid(1), 3), Scope::Broadcast, "CPU 0 still runs it");
        assert_eq!(t.scope(Vmid(1), 0), Scope::Local);
    }

    #[test]
    fn an_unknown_vmid_is_always_broadcast() {
        let t = VcpuTlbs::new();
        assert_eq!(t.scope(Vmid(MAX_VMS as u16 + 1), 0), Scope::Broadcast);
        t.entering(Vmid(u16::MAX), 0); // ignored, no panic
        assert_eq!(t.scope(Vmid(u16::MAX), 0), Scope::Broadcast);
    }
}
