//! The only place with `asm!`, system registers and raw pointers. (BOOT HELPER owns this file.)
//!
//! Boot-helper files: entry, mmu, semihosting, psci, gic, timer, cpu.
//! Virt-helper files: vectors, vcpu, tlb, physmem.
