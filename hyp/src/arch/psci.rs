//! PSCI as a *caller*: the hypervisor asks QEMU's firmware (conduit SMC, as QEMU virt's DTB says)
//! to start secondary CPUs. (QEMU is ended through semihosting `SYS_EXIT`, which carries a
//! status.) Emulating PSCI for guests is the virtualization
//! layer's (it may reuse `smccc::psci` constants to decode calls).

use smccc::Smc;
pub use smccc::psci::Error;

/// PSCI version implemented by the firmware, as (major, minor).
pub fn version() -> Result<(u16, u16), Error> {
    smccc::psci::version::<Smc>().map(|v| (v.major, v.minor))
}

/// Starts the physical CPU `mpidr` at `entry` (a physical address; EL2, MMU off) with
/// x0 = `context_id`.
pub fn cpu_on(mpidr: u64, entry: u64, context_id: u64) -> Result<(), Error> {
    smccc::psci::cpu_on::<Smc>(mpidr, entry, context_id)
}
