//! The VTTBR_EL2 value TLB maintenance for a VM runs with.
//!
//! `TLBI IPAS2E1IS`/`VMALLS12E1IS` act on the VMID in VTTBR_EL2, so maintenance for another VM
//! must load that VMID. It must not load that VM's real stage-2 root: the current vCPU's EL1
//! state (TTBRs, SCTLR) is still live, HCR_EL2.VM is 1, and the EL1&0 regime may walk
//! speculatively, filling the other VM's TLB from this vCPU's stage-1 tables through the other
//! VM's stage 2. An all-invalid root tagged with the VMID gives the TLBI its VMID and lets no
//! walk produce an entry (and never points at a stage 2 that is being freed).

use vm::pmap::Vmid;

/// VTTBR_EL2.VMID position (bits \[63:48\]).
pub const VMID_SHIFT: u32 = 48;

/// VTTBR_EL2 for maintaining `vmid`: `empty_root` (the physical address of an all-invalid
/// stage-2 root, never a VM's) tagged with `vmid`.
pub fn maintenance_vttbr(empty_root: u64, vmid: Vmid) -> u64 {
    empty_root | (u64::from(vmid.0) << VMID_SHIFT)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BADDR of a VTTBR_EL2 value (bits \[47:1\]).
    fn baddr(vttbr: u64) -> u64 {
        vttbr & ((1 << VMID_SHIFT) - 2)
    }

    #[test]
    fn maintenance_walks_the_empty_root_tagged_with_the_vmid() {
        let empty = 0x4008_2000;
        for id in [1u16, 7, 255] {
            let v = maintenance_vttbr(empty, Vmid(id));
            assert_eq!(baddr(v), empty, "vmid {id}: base is the empty root");
            assert_eq!(v >> VMID_SHIFT, u64::from(id), "vmid {id}: tag");
        }
    }
}
