//! The physical GICv3, used by the hypervisor for its own interrupts (the EL2 "hypervisor timer",
//! PPI 10 = INTID 26, and SGI [`KICK_SGI`] between physical CPUs).
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
//! [`drain`]/[`kick`] are system-register operations and take no lock.

use core::ptr::NonNull;

use arm_gic::gicv3::registers::{Gicd, GicrSgi};
use arm_gic::gicv3::{GicCpuInterface, GicV3, SgiTarget, SgiTargetGroup};
use arm_gic::InterruptGroup;
use arm_gic::{IntId, UniqueMmioPointer};
use spin::{Mutex, Once};

use hyp::platform::host::{GICD_BASE, GICR_BASE};
/// INTID of the EL2 physical timer ("hypervisor timer", CNTHP_*): PPI 10.
pub const HYP_TIMER_INTID: u32 = 26;
/// SGI sent to an idle CPU when there is work for it ([`kick`]).
pub const KICK_SGI: u32 = 0;
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
    enable_private(cpu, KICK_SGI);
    enable_private(cpu, super::ich::MAINTENANCE_INTID);
}

fn enable_private(cpu: usize, intid: u32) {
    let id = IntId::try_from(intid).expect("valid INTID");
    let mut g = gic().lock();
    // Without these the hypervisor timer (time slices) or the kick SGI would silently never fire.
    g.set_interrupt_priority(id, Some(cpu), DEFAULT_PRIORITY)
        .unwrap_or_else(|e| panic!("GIC: priority of INTID {intid} on CPU {cpu}: {e:?}"));
    g.enable_interrupt(id, Some(cpu), true)
        .unwrap_or_else(|e| panic!("GIC: enabling INTID {intid} on CPU {cpu}: {e:?}"));
}

/// Enable shared peripheral interrupt `intid` (level-triggered, Group 1, the default priority),
/// routed to physical CPU `cpu`: a device of the hypervisor's own (the swap disk). QEMU's GICv3
/// does not implement 1-of-N routing (IRM = 1), so an SPI goes to one named CPU.
pub fn enable_spi(intid: u32, cpu: usize) -> Result<(), arm_gic::gicv3::GicError> {
    let id = IntId::try_from(intid).expect("valid INTID");
    debug_assert!(id.is_spi(), "INTID {intid} is no SPI");
    let mut g = gic().lock();
    g.set_group(id, None, arm_gic::gicv3::Group::Group1NS)?;
    g.set_trigger(id, None, arm_gic::Trigger::Level)?;
    g.set_interrupt_priority(id, None, DEFAULT_PRIORITY)?;
    g.distributor().set_routing(id, Some(super::cpu::mpidr_of(cpu)))?;
    g.enable_interrupt(id, None, true)
}

/// Interrupt groups of the CPU interface.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Group {
    /// Group 0 (signalled as FIQ; the hypervisor enables none).
    Zero,
    /// Group 1 (IRQ): the hypervisor timer and the kick SGI.
    One,
}

impl Group {
    fn arm(self) -> InterruptGroup {
        match self {
            Group::Zero => InterruptGroup::Group0,
            Group::One => InterruptGroup::Group1,
        }
    }
}

/// Acknowledge every pending interrupt of `group` (ICC_IAR0/1_EL1), call `f` with its INTID, then
/// end it (ICC_EOIR0/1_EL1; EOImode 0: priority drop and deactivation). A level interrupt must
/// have its source quietened by `f`, or it is pending again at once.
pub fn drain(group: Group, mut f: impl FnMut(u32)) {
    while let Some(id) = GicCpuInterface::get_and_acknowledge_interrupt(group.arm()) {
        f(u32::from(id));
        GicCpuInterface::end_interrupt(id, group.arm());
    }
}

/// Sends the kick SGI to physical CPU `cpu` (dense index), to wake it from an idle `WFI`.
pub fn kick(cpu: usize) {
    use aarch64_cpu::registers::MPIDR_EL1::{Aff0, Aff1, Aff2, Aff3};
    let m = super::cpu::mpidr_of(cpu);
    let aff0 = Aff0.read(m);
    // SGI target lists address Aff0 values 0..15 of one Aff3.Aff2.Aff1 cluster.
    debug_assert!(aff0 < 16, "kick: MPIDR {m:#x} has Aff0 >= 16 (needs range selection)");
    let target = SgiTarget::List {
        affinity3: Aff3.read(m) as u8,
        affinity2: Aff2.read(m) as u8,
        affinity1: Aff1.read(m) as u8,
        target_list: 1 << (aff0 & 0xf),
    };
    let _ = GicCpuInterface::send_sgi(IntId::sgi(KICK_SGI), target, SgiTargetGroup::CurrentGroup1);
}
