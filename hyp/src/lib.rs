//! The parts of the hypervisor that need no hardware: the scenario grammar, guest ELF loading,
//! the device-tree reader, the carving of RAM, and the console's guest-text rules (escaping, line
//! budget). They are plain safe Rust over byte slices, built into the EL2 binary and unit-tested
//! on the host (`cargo test -p hyp --lib`).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod bits;
pub mod budget;
pub mod config;
pub mod dtb;
pub mod esr;
pub mod idregs;
pub mod layout;
pub mod loader;
pub mod text;
pub mod vttbr;
