//! The only place with `asm!`, system registers and raw pointers. One facade over AArch64 / QEMU
//! virt for the rest of the hypervisor.
//!
//! System registers are read and written through `aarch64-cpu`
//! (`HCR_EL2.write(HCR_EL2::VM::SET + …)`), their fields named by its `tock-registers`
//! definitions (the library's decoders use the same ones). `asm!` is left for what no crate has: TLBI, DC/IC, AT, barriers inside one
//! sequence, the MMU switch, and the registers `aarch64-cpu` 11 lacks (CTR_EL0, DCZID_EL0,
//! PMCR_EL0, VPIDR_EL2, CNTHP_CVAL_EL2, DISR_EL1/VDISR_EL2/VSESR_EL2, the ID space by encoding).
//!
//! Boot and platform: [`entry`] (EL2 entry points, boot vectors), [`boot`] (DTB and
//! image extent), [`sysreg`] (boot register values), [`mmu`] (EL2 stage-1 identity map),
//! [`cpu`] (per-CPU state via TPIDR_EL2), [`lockwait`] (how a CPU waits for a taken engine lock), [`heap`], [`semihosting`], [`psci`] (caller side),
//! [`gic`] (physical GICv3), [`timer`] (EL2 hypervisor timer), [`uart`] (host console input).
//!
//! Virtualization: [`vectors`] (EL2 vectors, guest entry/exit), [`vcpu`] (EL1 context),
//! [`hcr`] (EL2 controls and trap policy), [`ich`] (GIC list registers), [`idregs`] (the ID registers guests see), [`at`] (guest VA translation), [`tlb`] (stage-2 TLB
//! maintenance), [`physmem`] (the engine's view of frames), [`cache`] (making hypervisor-written guest memory
//! visible to the guest).
//!
//! Devices of the hypervisor's own: [`virtio`] (the swap disk, virtio-blk on virtio-mmio).

pub mod at;
pub mod boot;
pub mod cache;
pub mod cpu;
pub mod entry;
pub mod gic;
pub mod hcr;
pub mod heap;
pub mod ich;
pub mod lockwait;
pub mod idregs;
pub mod mmu;
pub mod psci;
pub mod semihosting;
pub mod sysreg;
pub mod timer;
pub mod physmem;
pub mod tlb;
pub mod uart;
pub mod vcpu;
pub mod vectors;
pub mod virtio;
