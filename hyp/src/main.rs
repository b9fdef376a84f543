//! uvmhyp: a type-1 hypervisor for AArch64 whose guests' RAM is demand-faulted by the UVM engine.
//! (BOOT HELPER owns this file.)
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

extern crate alloc;

mod arch;
mod virt;
