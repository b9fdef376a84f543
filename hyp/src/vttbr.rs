//! The VTTBR_EL2 value TLB maintenance for a VM runs with.
//!
//! `TLBI IPAS2E1IS`/`VMALLS12E1IS` act on the VMID in VTTBR_EL2, so maintenance for another VM
//! must load that VMID. It must not load that VM's real stage-2 root: the current vCPU's EL1
//! state (TTBRs, SCTLR) is still live, HCR_EL2.VM is 1, and the EL1&0 regime may walk
//! speculatively, filling the other VM's TLB from this vCPU's stage-1 tables through the other
//! VM's stage 2. An all-invalid root tagged with the VMID gives the TLBI its VMID and lets no
//! walk produce an entry (and never points at a stage 2 that is being freed).

use aarch64_cpu::registers::VTTBR_EL2;
use vm::pmap::Vmid;

/// VTTBR_EL2 for maintaining `vmid`: `empty_root` (the physical address of an all-invalid
/// stage-2 root, never a VM's) tagged with `vmid`.
pub fn maintenance_vttbr(empty_root: u64, vmid: Vmid) -> u64 {
    VTTBR_EL2::VMID.val(u64::from(vmid.0)).modify(empty_root)
}

/// Whether `vttbr` points at `empty_root` (whatever its VMID): no vCPU is loaded, and any VMID
/// may stay there (nothing can walk the empty root; see `arch::tlb`'s use).
pub fn is_empty_root(vttbr: u64, empty_root: u64) -> bool {
    VTTBR_EL2::BADDR.read(vttbr) << 1 == empty_root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_empty_root_is_empty_whatever_its_vmid() {
        let empty = 0x4008_2000;
        assert!(is_empty_root(empty, empty), "VMID 0");
        assert!(is_empty_root(maintenance_vttbr(empty, Vmid(9)), empty));
        let vm_root = VTTBR_EL2::VMID.val(9).modify(0x4010_0000);
        assert!(!is_empty_root(vm_root, empty), "a VM's root");
    }

    #[test]
    fn maintenance_walks_the_empty_root_tagged_with_the_vmid() {
        let empty = 0x4008_2000;
        for id in [1u16, 7, 255] {
            let v = maintenance_vttbr(empty, Vmid(id));
            assert_eq!(VTTBR_EL2::BADDR.read(v) << 1, empty, "vmid {id}: base is the empty root");
            assert_eq!(VTTBR_EL2::VMID.read(v), u64::from(id), "vmid {id}: tag");
        }
    }
}
