//! The parts of the hypervisor that need no hardware: the scenario grammar, guest ELF loading,
//! the Linux `Image` header and boot placement (`linux_image`), the device-tree reader and the
//! guest device-tree writer (`guest_fdt`), the carving of RAM, the boot-time heap and pool limits
//! (`limits`), the ID-register clamps (`idregs`), the VTTBR used for TLB maintenance (`vttbr`) and how far
//! an invalidation must reach (`tlb_scope`),
//! the line ranges of cache maintenance (`cacheline`), the console's guest-text rules (escaping,
//! line budget), the virtual platform's addresses and limits (`platform`), and the trap policy:
//! syndrome decoding (`esr`), abort classification (`abort`), MMIO data order and extension
//! (`mmio`), exception-entry state (`exception`), the injected-exception loop rule (`inject`),
//! guest-call decoding and PSCI checks (`calls`), the VMs' rendezvous (`phase`), the device bus (`bus`), the run queue (`runq`),
//! the VMID pool (`vmid`), stop reasons (`stop`), whom an SError is blamed on (`serror`); and the
//! test hooks a scenario may switch on (`selftest`). They are plain
//! safe Rust over bytes and register values, built into the EL2 binary and unit-tested on the
//! host (`cargo test -p hyp --lib`); the EL2 binary reads the registers and acts on the answers.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod abort;
pub mod budget;
pub mod bus;
pub mod cacheline;
pub mod calls;
pub mod config;
pub mod console_in;
pub mod dtb;
pub mod esr;
pub mod exception;
pub mod guest_fdt;
pub mod identity;
pub mod idregs;
pub mod inject;
pub mod layout;
pub mod limits;
pub mod linux_boot;
pub mod linux_image;
pub mod loader;
pub mod mmio;
pub mod pause;
pub mod phase;
pub mod pl011_rx;
pub mod platform;
pub mod ptimer;
pub mod runq;
pub mod selftest;
pub mod serror;
pub mod stop;
pub mod text;
pub mod tlb_scope;
pub mod vgic;
pub mod vmid;
pub mod vttbr;
#[cfg(test)]
mod virt_layering;
