//! The physical GICv3, used by the hypervisor for its own interrupts (the EL2 "hypervisor timer",
//! PPI 10 = INTID 26, and SGIs between physical CPUs).
//!
//! Driven through the `arm-gic` crate: distributor with affinity routing and Group 1 enabled,
//! each CPU's redistributor woken up, the CPU interface through system registers
//! (`ICC_SRE_EL2.{SRE, Enable}` so EL2 and the guests' EL1 may use them), priority mask open,
//! Group 1 enabled, EOImode 0 (an EOI also deactivates).
//!
//! Routing of physical IRQs to EL2 while a guest runs (`HCR_EL2.IMO`) belongs to the
//! virtualization layer; this module only configures the controller.
//!
//! # Locks
//! [`GIC`] (the distributor/redistributor MMIO driver) is a spin lock taken only for configuration;
//! [`ack`]/[`eoi`]/[`send_sgi`] are system-register operations and take no lock.

use core::ptr::NonNull;

use arm_gic::gicv3::registers::{Gicd, GicrSgi};
use arm_gic::gicv3::{GicCpuInterface, GicV3, SgiTarget, SgiTargetGroup};
use arm_gic::InterruptGroup;
use arm_gic::{IntId, UniqueMmioPointer};
use spin::{Mutex, Once};

/// GIC distributor base on QEMU virt (64 KiB).
pub const GICD_BASE: u64 = 0x0800_0000;
/// GIC redistributor region base on QEMU virt (2 x 64 KiB frames per CPU).
pub const GICR_BASE: u64 = 0x080A_0000;
/// INTID of the EL2 physical timer ("hypervisor timer", CNTHP_*): PPI 10.
pub const HYP_TIMER_INTID: u32 = 26;
/// Priority given to the interrupts the hypervisor enables (mid-range; all unmasked by PMR).
const DEFAULT_PRIORITY: u8 = 0x80;

static GIC: Once<Mutex<GicV3<'static>>> = Once::new();

fn gic() -> &'static Mutex<GicV3<'static>> {
    GIC.get().expect("gic::init not called")
}

/// Initialises the distributor, every redistributor and CPU 0's interface (CPU 0, once, after the
/// MMU is on). `cpus` = number of physical CPUs (redistributors).
pub fn init(cpus: usize) {
    GIC.call_once(|| {
        let gicd = NonNull::new(GICD_BASE as *mut Gicd).expect("non-null");
        let gicr = NonNull::new(GICR_BASE as *mut GicrSgi).expect("non-null");
        // SAFETY: GICD_BASE/GICR_BASE are QEMU virt's GICv3 distributor and redistributor regions,
        // identity-mapped Device-nGnRE by mmu.rs; this is the only driver instance (inside a
        // `Once`), so the MMIO is not aliased.
        let mut g = unsafe {
            GicV3::new(UniqueMmioPointer::new(gicd), gicr, cpus).expect("GICv3 redistributor layout")
        };
        GicCpuInterface::enable_system_register_el2(true);
        g.setup(0);
        Mutex::new(g)
    });
    finish_cpu(0);
}

/// Initialises the calling CPU's redistributor and CPU interface (every secondary CPU, once, after
/// [`init`] ran on CPU 0 and this CPU's MMU is on).
pub fn init_cpu() {
    let cpu = super::cpu::index();
    GicCpuInterface::enable_system_register_el2(true);
    {
        let mut g = gic().lock();
        g.init_cpu(cpu);
        if let Ok(mut r) = g.redistributor(cpu) {
            r.configure_default_settings();
        }
    }
    GicCpuInterface::enable_group1(true);
    finish_cpu(cpu);
}

fn finish_cpu(cpu: usize) {
    GicCpuInterface::set_priority_mask(0xff);
    enable_private(cpu, HYP_TIMER_INTID);
}

fn enable_private(cpu: usize, intid: u32) {
    let id = IntId::try_from(intid).expect("valid INTID");
    let mut g = gic().lock();
    let _ = g.set_interrupt_priority(id, Some(cpu), DEFAULT_PRIORITY);
    let _ = g.enable_interrupt(id, Some(cpu), true);
}

#[allow(dead_code)] // API for the virtualization layer
/// Enables a private interrupt (SGI 0..15 or PPI 16..31, by INTID) on the calling CPU.
pub fn enable_ppi(intid: u32) {
    assert!(intid < 32, "enable_ppi: INTID {intid} is not private");
    enable_private(super::cpu::index(), intid);
}

/// Acknowledges the highest-priority pending Group 1 interrupt (reads ICC_IAR1_EL1).
/// Returns its INTID, or `None` if nothing is pending (spurious, INTID 1023).
pub fn ack() -> Option<u32> {
    GicCpuInterface::get_and_acknowledge_interrupt(InterruptGroup::Group1).map(u32::from)
}

/// Ends (drops priority and deactivates, EOImode 0) an interrupt returned by [`ack`]
/// (writes ICC_EOIR1_EL1).
pub fn eoi(intid: u32) {
    if let Ok(id) = IntId::try_from(intid) {
        GicCpuInterface::end_interrupt(id, InterruptGroup::Group1);
    }
}

#[allow(dead_code)] // API for the virtualization layer (IPIs)
/// Sends SGI `sgi` (0..15) to physical CPU `cpu` (dense index; QEMU virt: MPIDR Aff0 = index).
/// The target must have enabled that SGI with [`enable_ppi`].
pub fn send_sgi(cpu: usize, sgi: u32) {
    let mpidr = super::cpu::mpidr_of(cpu);
    let target = SgiTarget::List {
        affinity3: (mpidr >> 32) as u8,
        affinity2: (mpidr >> 16) as u8,
        affinity1: (mpidr >> 8) as u8,
        target_list: 1 << (mpidr & 0xf),
    };
    let _ = GicCpuInterface::send_sgi(IntId::sgi(sgi), target, SgiTargetGroup::CurrentGroup1);
}
