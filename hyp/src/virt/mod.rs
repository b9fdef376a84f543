//! Virtualization: VMs, vCPUs, traps, scheduling. Modules, from the bottom up (each imports only
//! modules above it in this list; README, "How the hypervisor works"):
//!
//! - [`out`]: the hypervisor's parsed console lines; [`device`]: what an emulated device is
//!   (trait, access, reply, context views); [`pl011`]: the UART; [`identity`]: the identity
//!   registers;
//! - [`machine`]: the VM and vCPU types, a VM's memory and VMID; [`next`]: what a handler wants
//!   next; [`trace`]: the fault trace; [`report`]: per-VM stop lines and the counters table;
//!   [`account`]: memory accounting passes (`vm::account`) for the trace, the report and guests;
//! - [`state`]: the global [`state::Hyp`], the VM table and life cycle (`stop_vm`);
//! - [`guestmem`]: checked guest buffers; [`inject`]: exceptions into a guest; [`mmio`]: an
//!   access on the VM's device bus; [`irq`]: physical interrupts at EL2; [`parking`]: vCPUs
//!   waiting for BUSY pages; [`vgic`]: the VM's
//!   GICv3 (its MMIO frames, list registers, the virtual timer's interrupt);
//! - one module per trap class: [`abort`] (stage-2 aborts → `vm::fault`, MMIO, SEA injection),
//!   [`smccc`] (HVC/SMC dispatch by owner) with [`psci`] and [`uvmhyp`] (VM clone: [`clone`]; results: [`callret`]),
//!   [`sysreg`], [`wait`]
//!   (WFI/WFE); [`trap`] dispatches an exit to them;
//! - [`input`]: host console input to the VM with focus;
//! - [`run`]: the per-CPU run loop, with its before-entry / after-exit hooks, acting on `Next`;
//! - [`build`]: the VMs of the scenario; [`swapdisk`]: the engine's swap device on the virtio-blk disk.
//!
//! [`start`] (CPU 0, once) builds; [`cpu_main`] (every CPU) runs vCPUs until every VM has
//! stopped, then one CPU prints the report and ends QEMU. EL2 runs with every interrupt masked.
//! Lock rules: `state.rs`.

mod abort;
mod account;
mod build;
mod callret;
mod clone;
mod device;
mod fairmem;
mod guestmem;
mod identity;
mod inject;
mod input;
mod irq;
mod machine;
mod mmio;
mod next;
pub mod out;
mod parking;
mod pause;
mod pdaemon;
mod pl011;
mod psci;
mod readahead;
mod report;
mod run;
mod smccc;
mod state;
mod swapbench;
mod swapdisk;
mod sysreg;
mod trace;
mod trap;
mod uvmhyp;
mod vgic;
mod wait;

use core::ops::Range;
use spin::Once;

use crate::arch::{cpu, vectors};
use ::vm::Pa;
use hyp::config::Config;
use state::Hyp;

static HYP: Once<Hyp> = Once::new();

/// Build every VM of `config` over the page pool `pool`. Called once, on CPU 0, before any
/// `cpu_main`.
pub fn start(config: Config, pool: Range<Pa>) {
    // Before any other CPU takes an engine lock.
    ::vm::sync::set_relax(crate::arch::lockwait::relax);
    let h: &'static Hyp = HYP.call_once(|| build::build(&config, pool).unwrap_or_else(|e| panic!("cannot build the VMs: {e}")));
    swapdisk::attach(&h.uvm);
    h.uvm.set_waker(alloc::sync::Arc::new(parking::Parking { waiters: &h.waiters, queue: &h.queue }));
    h.uvm.set_readahead_offload(alloc::sync::Arc::new(readahead::IdleCpus(h)));
    if h.trace.is_on() {
        h.uvm.set_swap_events(alloc::sync::Arc::new(trace::SwapListener(&h.trace)));
    }
}

/// Every physical CPU, after boot: run vCPUs until the end of the run. Installs the EL2 vectors
/// and the per-CPU EL2 controls itself (boot only installs its boot vectors).
pub fn cpu_main(cpu: usize) -> ! {
    vectors::install();
    cpu::mask_interrupts();
    crate::arch::hcr::init_cpu();
    let h = HYP.wait();
    log::debug!("virt: cpu{cpu} scheduling");
    if h.all_stopped() {
        h.finish();
    }
    run::run_cpu(h)
}
