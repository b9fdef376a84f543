//! `vm`: the machine-independent UVM engine of uvmhyp.
//!
//! A guest's physical address space is treated exactly like a process's virtual address space in
//! NetBSD's UVM: each VM owns a [`map::Map`] of entries over IPA ranges, each entry backed by an
//! upper layer (an amap of anons: private, copy-on-write pages) and/or a lower layer (an object: a
//! shared guest image, a template). A stage-2 abort is a page fault, resolved by
//! [`fault::fault`], a re-design of the seed `uvm_fault.c` (NetBSD rev 1.126).
//!
//! Principles:
//! - Simple and clear algorithms over fast and clever ones; the seed's structure stays visible.
//! - Safe Rust only (`forbid(unsafe_code)`), no panics on any input: every failure is an error enum
//!   saying who is at fault.
//! - Nothing here touches hardware. Frames are reached through [`physmem::PhysMem`], TLBs through
//!   [`pmap::Tlb`], the swap disk through [`swap::SwapDevice`]; the hypervisor implements them for
//!   real, the host tests with simulations.
//! - Lock order, everywhere: MAPS → AMAP → OBJECT → ANON → PMAP → PAGE → PAGE QUEUES (spin locks; no lock
//!   is held when control returns to a guest). The dedup scanner's own lock, DEDUP, comes before
//!   MAPS and is never taken by a fault ([`dedup`]). The accounting walk ([`account`]) takes the
//!   same order, one map at a time, and no DEDUP under MAPS.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod account;
pub mod addr;
pub mod amap;
pub mod anon;
pub mod dedup;
pub mod fault;
pub mod fork;
pub mod map;
pub mod object;
pub mod page;
pub mod pdaemon;
pub mod physmem;
pub mod pmap;
pub mod share;
pub mod sim;
pub mod stats;
pub mod swap;
pub mod swapevents;
pub mod sync;
pub mod trace;
pub mod uvm;

#[cfg(test)]
mod testenv;

pub use addr::{Access, Ipa, Pa, PageIdx, Prot, PAGE_SHIFT, PAGE_SIZE};
