//! The virtual GICv3 of a VM, as plain state (host-tested): the distributor and redistributor
//! registers a guest programs (Arm IHI 0069 "GICv3 and GICv4 Architecture Specification", 12.9
//! and 12.11), each interrupt's enable/pending/active/priority/group/trigger state, SPI routing,
//! SGI generation from `ICC_SGI1R_EL1`, and the choice of what goes into a vCPU's list registers.
//! `virt::vgic` puts it on the VM's bus and moves list registers in and out around each entry.
//!
//! The model: affinity routing always on (`GICD_CTLR.ARE` RAO/WI), one security state (`DS` = 1),
//! no LPIs/ITS, [`SPIS`] SPIs. A vCPU's MPIDR is Aff0 = its index, so `ICC_SGI1R_EL1` reaches
//! vCPUs through Aff0 with Aff1..3 = 0. An interrupt is *deliverable* to a vCPU when it is
//! enabled, pending (an edge latched, or a level line high) and not active; the hypervisor puts
//! the highest-priority deliverable ones (and active ones, so their state moves with the vCPU)
//! into list registers ([`Vgic::fill_lrs`]), and folds back what the guest did to them
//! ([`Vgic::sync_lrs`]).

use alloc::vec;
use alloc::vec::Vec;
use tock_registers::register_bitfields;
use tock_registers::LocalRegisterCopy;

/// SPIs implemented: INTIDs 32..32 + SPIS.
pub const SPIS: usize = 64;
/// SGIs and PPIs: INTIDs 0..32, banked per vCPU.
pub const PRIVATE: usize = 32;
/// The EL1 virtual timer's interrupt (PPI 11).
pub const VTIMER_INTID: u32 = 27;

/// GICD/GICR_PIDR2.ArchRev = 3 (GICv3), read by Linux to check the version.
const PIDR2_GICV3: u64 = 0x3 << 4;
/// GICD_IIDR/GICR_IIDR: Arm's JEP106 code (0x43B), product 0.
const IIDR: u64 = 0x43b;

register_bitfields![u64,
    /// ICH_LR<n>_EL2 (IHI 0069, 12.4.6).
    pub ICH_LR [
        VINTID OFFSET(0) NUMBITS(32) [],
        PRIORITY OFFSET(48) NUMBITS(8) [],
        GROUP OFFSET(60) NUMBITS(1) [],
        STATE OFFSET(62) NUMBITS(2) [Invalid = 0, Pending = 1, Active = 2, PendingActive = 3],
    ],
    /// ICC_SGI1R_EL1 (12.2.22), as a trapped write gives it.
    ICC_SGI1R [
        TARGET_LIST OFFSET(0) NUMBITS(16) [],
        AFF1 OFFSET(16) NUMBITS(8) [],
        INTID OFFSET(24) NUMBITS(4) [],
        AFF2 OFFSET(32) NUMBITS(8) [],
        IRM OFFSET(40) NUMBITS(1) [],
        RS OFFSET(44) NUMBITS(4) [],
        AFF3 OFFSET(48) NUMBITS(8) [],
    ],
    /// GICD_IROUTER<n> (12.9.22).
    GICD_IROUTER [
        AFF0 OFFSET(0) NUMBITS(8) [],
        ROUTING_MODE OFFSET(31) NUMBITS(1) [],
    ],
    /// GICR_TYPER (12.11.35).
    GICR_TYPER [
        LAST OFFSET(4) NUMBITS(1) [],
        PROCESSOR_NUMBER OFFSET(8) NUMBITS(16) [],
        AFFINITY OFFSET(32) NUMBITS(32) [],
    ],
];

register_bitfields![u32,
    /// GICD_CTLR with DS = 1 (12.9.4).
    GICD_CTLR [
        ENABLE_GRP0 OFFSET(0) NUMBITS(1) [],
        ENABLE_GRP1 OFFSET(1) NUMBITS(1) [],
        ARE OFFSET(4) NUMBITS(1) [],
        DS OFFSET(6) NUMBITS(1) [],
    ],
    /// GICD_TYPER (12.9.38).
    GICD_TYPER [
        IT_LINES OFFSET(0) NUMBITS(5) [],
        ID_BITS OFFSET(19) NUMBITS(5) [],
    ],
    /// GICR_WAKER (12.11.39).
    GICR_WAKER [
        PROCESSOR_SLEEP OFFSET(1) NUMBITS(1) [],
        CHILDREN_ASLEEP OFFSET(2) NUMBITS(1) [],
    ],
];

/// One interrupt's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Irq {
    enabled: bool,
    /// An edge (or a write to ISPENDR, or an SGI) latched.
    latched: bool,
    /// The line of a level-sensitive interrupt.
    level: bool,
    active: bool,
    priority: u8,
    group1: bool,
    edge: bool,
}

impl Irq {
    fn pending(&self) -> bool {
        self.latched || (self.level && !self.edge)
    }
    fn deliverable(&self) -> bool {
        self.enabled && self.pending() && !self.active
    }
}

/// A vCPU's banked interrupts and its redistributor.
#[derive(Clone, Debug)]
struct Cpu {
    private: [Irq; PRIVATE],
    asleep: bool,
}

/// What a register access did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Done; a read returns the value.
    Value(u64),
    /// No such register (reads as zero, writes ignored).
    Unknown,
}

/// What the caller must do after a change: wake or kick the vCPUs in the mask (bit i = vCPU i)
/// so they see newly deliverable interrupts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Notify(pub u64);

/// One list register's content as this model sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lr {
    pub intid: u32,
    pub priority: u8,
    pub pending: bool,
    pub active: bool,
}

impl Lr {
    /// The ICH_LR<n>_EL2 value (Group 1, no HW bit).
    pub fn encode(self) -> u64 {
        let state = match (self.pending, self.active) {
            (false, false) => ICH_LR::STATE::Invalid,
            (true, false) => ICH_LR::STATE::Pending,
            (false, true) => ICH_LR::STATE::Active,
            (true, true) => ICH_LR::STATE::PendingActive,
        };
        let mut r = LocalRegisterCopy::<u64, ICH_LR::Register>::new(0);
        r.modify(ICH_LR::VINTID.val(u64::from(self.intid)) + ICH_LR::PRIORITY.val(u64::from(self.priority)) + ICH_LR::GROUP::SET + state);
        r.get()
    }

    /// An ICH_LR<n>_EL2 value read back.
    pub fn decode(v: u64) -> Lr {
        let r = LocalRegisterCopy::<u64, ICH_LR::Register>::new(v);
        let state = r.read(ICH_LR::STATE);
        Lr { intid: r.read(ICH_LR::VINTID) as u32, priority: r.read(ICH_LR::PRIORITY) as u8, pending: state & 1 != 0, active: state & 2 != 0 }
    }
}

/// A VM's virtual GICv3.
#[derive(Clone, Debug)]
pub struct Vgic {
    ctlr: LocalRegisterCopy<u32, GICD_CTLR::Register>,
    spis: Vec<Irq>,
    /// IROUTER of each SPI: the target vCPU (Aff0), or any with IRM (delivered to vCPU 0).
    route: Vec<u64>,
    cpus: Vec<Cpu>,
}

/// Distributor register offsets (12.9).
mod gicd {
    pub const CTLR: u64 = 0x0000;
    pub const TYPER: u64 = 0x0004;
    pub const IIDR: u64 = 0x0008;
    pub const TYPER2: u64 = 0x000c;
    pub const IGROUPR: u64 = 0x0080;
    pub const ISENABLER: u64 = 0x0100;
    pub const ICENABLER: u64 = 0x0180;
    pub const ISPENDR: u64 = 0x0200;
    pub const ICPENDR: u64 = 0x0280;
    pub const ISACTIVER: u64 = 0x0300;
    pub const ICACTIVER: u64 = 0x0380;
    pub const IPRIORITYR: u64 = 0x0400;
    pub const ICFGR: u64 = 0x0c00;
    pub const IROUTER: u64 = 0x6000;
    pub const PIDR2: u64 = 0xffe8;
}

/// Redistributor register offsets: RD_base frame, then the SGI_base frame 64 KiB above (12.11).
mod gicr {
    pub const CTLR: u64 = 0x0000;
    pub const IIDR: u64 = 0x0004;
    pub const TYPER: u64 = 0x0008;
    pub const WAKER: u64 = 0x0014;
    pub const PIDR2: u64 = 0xffe8;
    pub const SGI_BASE: u64 = 0x1_0000;
}

/// A banked bit-array register's kind (ISENABLER … ICACTIVER, IGROUPR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bits {
    Group,
    SetEnable,
    ClearEnable,
    SetPending,
    ClearPending,
    SetActive,
    ClearActive,
}

impl Bits {
    /// The kind and register index of a 32-bit bit-array offset (`base` = the IGROUPR offset).
    fn at(offset: u64) -> Option<(Bits, usize)> {
        let kinds = [
            (gicd::IGROUPR, Bits::Group),
            (gicd::ISENABLER, Bits::SetEnable),
            (gicd::ICENABLER, Bits::ClearEnable),
            (gicd::ISPENDR, Bits::SetPending),
            (gicd::ICPENDR, Bits::ClearPending),
            (gicd::ISACTIVER, Bits::SetActive),
            (gicd::ICACTIVER, Bits::ClearActive),
        ];
        kinds.into_iter().find(|(base, _)| (*base..*base + 0x80).contains(&offset)).map(|(base, k)| (k, ((offset - base) / 4) as usize))
    }

    fn get(self, irq: &Irq) -> bool {
        match self {
            Bits::Group => irq.group1,
            Bits::SetEnable | Bits::ClearEnable => irq.enabled,
            Bits::SetPending | Bits::ClearPending => irq.pending(),
            Bits::SetActive | Bits::ClearActive => irq.active,
        }
    }

    /// Apply a written 1 (or, for IGROUPR, the written bit).
    fn set(self, irq: &mut Irq, bit: bool) {
        match self {
            Bits::Group => irq.group1 = bit,
            _ if !bit => {}
            Bits::SetEnable => irq.enabled = true,
            Bits::ClearEnable => irq.enabled = false,
            Bits::SetPending => irq.latched = true,
            Bits::ClearPending => irq.latched = false,
            Bits::SetActive => irq.active = true,
            Bits::ClearActive => irq.active = false,
        }
    }
}

impl Vgic {
    /// The GIC of a VM with `vcpus` vCPUs, out of reset: everything disabled, SGIs edge and
    /// enabled-by-nothing, PPIs level.
    pub fn new(vcpus: usize) -> Vgic {
        let mut private = [Irq::default(); PRIVATE];
        for (i, irq) in private.iter_mut().enumerate() {
            irq.edge = i < 16;
        }
        let mut ctlr = LocalRegisterCopy::new(0);
        ctlr.modify(GICD_CTLR::ARE::SET + GICD_CTLR::DS::SET);
        Vgic { ctlr, spis: vec![Irq::default(); SPIS], route: vec![0; SPIS], cpus: vec![Cpu { private, asleep: true }; vcpus] }
    }

    fn irq_mut(&mut self, cpu: usize, intid: u32) -> Option<&mut Irq> {
        let i = intid as usize;
        if i < PRIVATE {
            self.cpus.get_mut(cpu).map(|c| &mut c.private[i])
        } else {
            self.spis.get_mut(i - PRIVATE)
        }
    }

    fn irq(&self, cpu: usize, intid: u32) -> Option<&Irq> {
        let i = intid as usize;
        if i < PRIVATE {
            self.cpus.get(cpu).map(|c| &c.private[i])
        } else {
            self.spis.get(i - PRIVATE)
        }
    }

    /// The vCPU an SPI goes to.
    fn target(&self, spi: usize) -> usize {
        let route = LocalRegisterCopy::<u64, GICD_IROUTER::Register>::new(self.route[spi]);
        let aff0 = route.read(GICD_IROUTER::AFF0) as usize;
        if route.is_set(GICD_IROUTER::ROUTING_MODE) || aff0 >= self.cpus.len() {
            0
        } else {
            aff0
        }
    }

    /// Who must look again after `intid` changed for `cpu`: its target, if it is deliverable.
    fn notify(&self, cpu: usize, intid: u32) -> Notify {
        let target = if (intid as usize) < PRIVATE { cpu } else { self.target(intid as usize - PRIVATE) };
        match self.irq(target, intid) {
            Some(irq) if irq.deliverable() => Notify(1 << target),
            _ => Notify(0),
        }
    }

    fn bits_read(&self, cpu: usize, first: u32, kind: Bits) -> u64 {
        (0..32).filter(|b| self.irq(cpu, first + b).is_some_and(|i| kind.get(i))).fold(0, |v, b| v | 1 << b)
    }

    fn bits_write(&mut self, cpu: usize, first: u32, kind: Bits, value: u64) -> Notify {
        let mut n = Notify(0);
        for b in 0..32 {
            // SGIs' enables are writable; their trigger is fixed (see `cfg_write`).
            if let Some(irq) = self.irq_mut(cpu, first + b) {
                kind.set(irq, value >> b & 1 != 0);
            }
            n.0 |= self.notify(cpu, first + b).0;
        }
        n
    }

    fn priority_read(&self, cpu: usize, first: u32, size: u8) -> u64 {
        (0..u32::from(size)).fold(0, |v, i| v | u64::from(self.irq(cpu, first + i).map_or(0, |q| q.priority)) << (8 * i))
    }

    fn priority_write(&mut self, cpu: usize, first: u32, size: u8, value: u64) -> Notify {
        let mut n = Notify(0);
        for i in 0..u32::from(size) {
            if let Some(q) = self.irq_mut(cpu, first + i) {
                q.priority = (value >> (8 * i)) as u8;
            }
            n.0 |= self.notify(cpu, first + i).0;
        }
        n
    }

    /// ICFGR<n>: two bits per interrupt, bit 1 = edge; SGIs are always edge (read-only).
    fn cfg_read(&self, cpu: usize, first: u32) -> u64 {
        (0..16).filter(|i| self.irq(cpu, first + i).is_some_and(|q| q.edge)).fold(0, |v, i| v | 2 << (2 * i))
    }

    fn cfg_write(&mut self, cpu: usize, first: u32, value: u64) {
        for i in 0..16 {
            if first + i < 16 {
                continue;
            }
            if let Some(q) = self.irq_mut(cpu, first + i) {
                q.edge = value >> (2 * i + 1) & 1 != 0;
            }
        }
    }

    /// A 32-bit register of the interrupt-state block shared by GICD (SPIs: `cpu` unused, INTIDs
    /// from 32) and GICR's SGI frame (`cpu`'s SGIs and PPIs). `first_reg` is 0 for the SGI frame
    /// (register n covers INTIDs 32n..) and is how the distributor refuses the private range.
    fn state_access(&mut self, cpu: usize, offset: u64, size: u8, write: Option<u64>, private: bool) -> (Access, Notify) {
        let ok_index = |n: usize| if private { n == 0 } else { n >= 1 };
        if let Some((kind, n)) = Bits::at(offset) {
            if size != 4 || !ok_index(n) {
                return (Access::Value(0), Notify(0));
            }
            let first = (n * 32) as u32;
            return match write {
                None => (Access::Value(self.bits_read(cpu, first, kind)), Notify(0)),
                Some(v) => (Access::Value(0), self.bits_write(cpu, first, kind, v)),
            };
        }
        if (gicd::IPRIORITYR..gicd::IPRIORITYR + 0x400).contains(&offset) {
            let first = (offset - gicd::IPRIORITYR) as u32;
            if (first < PRIVATE as u32) != private || !(size == 1 || size == 4) {
                return (Access::Value(0), Notify(0));
            }
            return match write {
                None => (Access::Value(self.priority_read(cpu, first, size)), Notify(0)),
                Some(v) => (Access::Value(0), self.priority_write(cpu, first, size, v)),
            };
        }
        if (gicd::ICFGR..gicd::ICFGR + 0x100).contains(&offset) && size == 4 {
            let first = ((offset - gicd::ICFGR) / 4 * 16) as u32;
            if (first < PRIVATE as u32) != private {
                return (Access::Value(0), Notify(0));
            }
            return match write {
                None => (Access::Value(self.cfg_read(cpu, first)), Notify(0)),
                Some(v) => {
                    self.cfg_write(cpu, first, v);
                    (Access::Value(0), Notify(0))
                }
            };
        }
        (Access::Unknown, Notify(0))
    }

    /// A distributor access.
    pub fn gicd(&mut self, offset: u64, size: u8, write: Option<u64>) -> (Access, Notify) {
        match (offset, write) {
            (gicd::CTLR, None) => (Access::Value(u64::from(self.ctlr.get())), Notify(0)),
            (gicd::CTLR, Some(v)) => {
                let w = LocalRegisterCopy::<u32, GICD_CTLR::Register>::new(v as u32);
                self.ctlr.set(0);
                self.ctlr.modify(GICD_CTLR::ENABLE_GRP0.val(w.read(GICD_CTLR::ENABLE_GRP0)) + GICD_CTLR::ENABLE_GRP1.val(w.read(GICD_CTLR::ENABLE_GRP1)));
                self.ctlr.modify(GICD_CTLR::ARE::SET + GICD_CTLR::DS::SET);
                (Access::Value(0), self.all_cpus())
            }
            (gicd::TYPER, None) => {
                let mut t = LocalRegisterCopy::<u32, GICD_TYPER::Register>::new(0);
                t.modify(GICD_TYPER::IT_LINES.val(((PRIVATE + SPIS) / 32 - 1) as u32) + GICD_TYPER::ID_BITS.val(9));
                (Access::Value(u64::from(t.get())), Notify(0))
            }
            (gicd::IIDR, None) => (Access::Value(IIDR), Notify(0)),
            // No extended SPI range, no virtual LPIs.
            (gicd::TYPER2, None) => (Access::Value(0), Notify(0)),
            (gicd::PIDR2, None) => (Access::Value(PIDR2_GICV3), Notify(0)),
            (o, w) if (gicd::IROUTER + 8 * PRIVATE as u64..gicd::IROUTER + 8 * (PRIVATE + SPIS) as u64).contains(&o) => {
                let spi = ((o - gicd::IROUTER) / 8) as usize - PRIVATE;
                let high = o % 8 == 4;
                match w {
                    None if size == 8 => (Access::Value(self.route[spi]), Notify(0)),
                    None => (Access::Value(if high { self.route[spi] >> 32 } else { self.route[spi] & 0xffff_ffff }), Notify(0)),
                    Some(v) => {
                        self.route[spi] = match (size, high) {
                            (8, _) => v,
                            (_, false) => self.route[spi] & !0xffff_ffff | v & 0xffff_ffff,
                            (_, true) => self.route[spi] & 0xffff_ffff | v << 32,
                        };
                        (Access::Value(0), self.notify(0, (spi + PRIVATE) as u32))
                    }
                }
            }
            (o, w) => self.state_access(0, o, size, w, false),
        }
    }

    /// An access to the redistributor of vCPU `cpu` (`offset` inside its 128 KiB).
    pub fn gicr(&mut self, cpu: usize, offset: u64, size: u8, write: Option<u64>) -> (Access, Notify) {
        let last = cpu + 1 == self.cpus.len();
        let Some(c) = self.cpus.get_mut(cpu) else { return (Access::Unknown, Notify(0)) };
        match (offset, write) {
            (gicr::CTLR, None) => (Access::Value(0), Notify(0)),
            (gicr::CTLR, Some(_)) => (Access::Value(0), Notify(0)),
            (gicr::IIDR, None) => (Access::Value(IIDR), Notify(0)),
            (gicr::TYPER | 0x000c, None) => {
                let mut t = LocalRegisterCopy::<u64, GICR_TYPER::Register>::new(0);
                t.modify(GICR_TYPER::AFFINITY.val(cpu as u64) + GICR_TYPER::PROCESSOR_NUMBER.val(cpu as u64) + GICR_TYPER::LAST.val(u64::from(last)));
                let v = t.get();
                let v = if size == 8 { v } else if offset == gicr::TYPER { v & 0xffff_ffff } else { v >> 32 };
                (Access::Value(v), Notify(0))
            }
            (gicr::WAKER, None) => {
                let mut w = LocalRegisterCopy::<u32, GICR_WAKER::Register>::new(0);
                w.modify(GICR_WAKER::PROCESSOR_SLEEP.val(u32::from(c.asleep)) + GICR_WAKER::CHILDREN_ASLEEP.val(u32::from(c.asleep)));
                (Access::Value(u64::from(w.get())), Notify(0))
            }
            (gicr::WAKER, Some(v)) => {
                c.asleep = LocalRegisterCopy::<u32, GICR_WAKER::Register>::new(v as u32).is_set(GICR_WAKER::PROCESSOR_SLEEP);
                (Access::Value(0), Notify(0))
            }
            (gicr::PIDR2, None) => (Access::Value(PIDR2_GICV3), Notify(0)),
            (o, w) if o >= gicr::SGI_BASE => self.state_access(cpu, o - gicr::SGI_BASE, size, w, true),
            _ => (Access::Unknown, Notify(0)),
        }
    }

    fn all_cpus(&self) -> Notify {
        Notify((0..self.cpus.len()).filter(|&c| self.has_deliverable(c)).fold(0, |m, c| m | 1 << c))
    }

    /// Set the line of level-sensitive `intid` (a PPI of `cpu`, or an SPI).
    pub fn set_level(&mut self, cpu: usize, intid: u32, level: bool) -> Notify {
        match self.irq_mut(cpu, intid) {
            Some(q) if q.level != level => {
                q.level = level;
                self.notify(cpu, intid)
            }
            _ => Notify(0),
        }
    }

    /// A write of `ICC_SGI1R_EL1` by vCPU `from` (IHI 0069, 12.2.22): the SGI INTID[27:24] to
    /// the vCPUs of TargetList[15:0] at Aff1..3 = 0 (ours are all there), or with IRM[40] to
    /// every vCPU but the sender.
    pub fn sgi(&mut self, from: usize, value: u64) -> Notify {
        let r = LocalRegisterCopy::<u64, ICC_SGI1R::Register>::new(value);
        let intid = r.read(ICC_SGI1R::INTID) as u32;
        let irm = r.is_set(ICC_SGI1R::IRM);
        let affinity_above_0 = r.read(ICC_SGI1R::AFF1) | r.read(ICC_SGI1R::AFF2) | r.read(ICC_SGI1R::AFF3);
        let rs = r.read(ICC_SGI1R::RS);
        let targets: u64 = if irm {
            ((1u64 << self.cpus.len()) - 1) & !(1 << from)
        } else if affinity_above_0 != 0 || rs != 0 {
            0
        } else {
            r.read(ICC_SGI1R::TARGET_LIST) & ((1u64 << self.cpus.len()) - 1)
        };
        let mut n = Notify(0);
        for cpu in (0..self.cpus.len()).filter(|c| targets >> c & 1 != 0) {
            if let Some(q) = self.irq_mut(cpu, intid) {
                q.latched = true;
            }
            n.0 |= self.notify(cpu, intid).0;
        }
        n
    }

    /// True when `cpu` has an interrupt to take (it must not sleep in WFI).
    pub fn has_deliverable(&self, cpu: usize) -> bool {
        let grp = |q: &Irq| if q.group1 { self.ctlr.is_set(GICD_CTLR::ENABLE_GRP1) } else { self.ctlr.is_set(GICD_CTLR::ENABLE_GRP0) };
        let Some(c) = self.cpus.get(cpu) else { return false };
        c.private.iter().any(|q| q.deliverable() && grp(q))
            || self.spis.iter().enumerate().any(|(i, q)| q.deliverable() && grp(q) && self.target(i) == cpu)
    }

    /// What to put in `cpu`'s `n` list registers: its active interrupts first (their state lives
    /// in the LR while the guest runs), then the deliverable ones by priority (lower value
    /// first, then lower INTID). Each chosen interrupt's pending latch and active state move into
    /// its LR (they come back in [`Vgic::sync_lrs`]). Also says whether more were left over (the
    /// caller then asks for the underflow maintenance interrupt).
    pub fn fill_lrs(&mut self, cpu: usize, n: usize) -> (Vec<Lr>, bool) {
        let grp1 = self.ctlr.is_set(GICD_CTLR::ENABLE_GRP1);
        let grp0 = self.ctlr.is_set(GICD_CTLR::ENABLE_GRP0);
        let mut want: Vec<(bool, u8, u32)> = Vec::new();
        for intid in 0..(PRIVATE + SPIS) as u32 {
            if intid as usize >= PRIVATE && self.target(intid as usize - PRIVATE) != cpu {
                continue;
            }
            let Some(q) = self.irq(cpu, intid) else { continue };
            let group_on = if q.group1 { grp1 } else { grp0 };
            if q.active || (q.deliverable() && group_on) {
                want.push((!q.active, q.priority, intid));
            }
        }
        want.sort();
        let more = want.len() > n;
        let lrs = want
            .into_iter()
            .take(n)
            .filter_map(|(_, priority, intid)| {
                let q = self.irq_mut(cpu, intid)?;
                let lr = Lr { intid, priority, pending: q.pending() && !q.active, active: q.active };
                q.latched = false;
                q.active = false;
                Some(lr)
            })
            .collect();
        (lrs, more)
    }

    /// Fold back `cpu`'s list registers after the guest ran: an LR still pending re-latches its
    /// interrupt if it is edge (a level one is pending while its line is high), an active one
    /// is active again; an invalid one was taken and completed.
    pub fn sync_lrs(&mut self, cpu: usize, lrs: &[Lr]) {
        for lr in lrs {
            if let Some(q) = self.irq_mut(cpu, lr.intid) {
                q.active |= lr.active;
                if lr.pending && q.edge {
                    q.latched = true;
                }
            }
        }
    }
}

/// True for a write of a trapped SGI-generation register: ICC_SGI1R_EL1 (op2 5), ICC_ASGI1R_EL1
/// (6), ICC_SGI0R_EL1 (7) — S3_0_C12_C11_op2. (With one security state the three reach the same
/// vCPUs; the group of the SGI is the receiver's IGROUPR.)
pub fn is_sgi_register(s: &crate::esr::SysRegIss) -> bool {
    (s.op0, s.op1, s.crn, s.crm) == (3, 0, 12, 11) && (5..=7).contains(&s.op2) && !s.read
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Enable groups 0 and 1 and interrupt `intid` of `cpu` (through the right frame).
    fn enable(g: &mut Vgic, cpu: usize, intid: u32) {
        g.gicd(gicd::CTLR, 4, Some(0b11));
        let n = u64::from(intid / 32);
        let bit = Some(1u64 << (intid % 32));
        if intid < 32 {
            g.gicr(cpu, gicr::SGI_BASE + gicd::ISENABLER, 4, bit);
            g.gicr(cpu, gicr::SGI_BASE + gicd::IGROUPR, 4, bit);
        } else {
            g.gicd(gicd::ISENABLER + 4 * n, 4, bit);
            g.gicd(gicd::IGROUPR + 4 * n, 4, bit);
        }
    }

    #[test]
    fn identification_registers_say_gicv3_with_affinity_routing() {
        let mut g = Vgic::new(2);
        assert_eq!(g.gicd(gicd::PIDR2, 4, None).0, Access::Value(0x30));
        assert_eq!(g.gicd(gicd::TYPER, 4, None).0, Access::Value(2 | 9 << 19));
        assert_eq!(g.gicd(gicd::CTLR, 4, None).0, Access::Value(0x50), "ARE and DS read as one");
        assert_eq!(g.gicr(0, gicr::TYPER, 8, None).0, Access::Value(0));
        assert_eq!(g.gicr(1, gicr::TYPER, 8, None).0, Access::Value(1 << 32 | 1 << 8 | 1 << 4), "the last one says Last");
        assert_eq!(g.gicr(1, 0x000c, 4, None).0, Access::Value(1), "the upper half: affinity");
        assert_eq!(g.gicr(2, gicr::TYPER, 8, None).0, Access::Unknown);
        assert_eq!(g.gicd(0x5000, 4, None).0, Access::Unknown);
    }

    #[test]
    fn waker_handshake() {
        let mut g = Vgic::new(1);
        assert_eq!(g.gicr(0, gicr::WAKER, 4, None).0, Access::Value(0b110));
        g.gicr(0, gicr::WAKER, 4, Some(0));
        assert_eq!(g.gicr(0, gicr::WAKER, 4, None).0, Access::Value(0), "awake: ChildrenAsleep follows");
    }

    #[test]
    fn an_enabled_level_spi_goes_to_its_target_and_leaves_with_its_line() {
        let mut g = Vgic::new(2);
        enable(&mut g, 0, 33);
        g.gicd(gicd::IROUTER + 8 * 33, 8, Some(1));
        assert_eq!(g.set_level(0, 33, true), Notify(0b10), "routed to vCPU 1");
        assert!(g.has_deliverable(1) && !g.has_deliverable(0));
        let (lrs, more) = g.fill_lrs(1, 4);
        assert_eq!(lrs, [Lr { intid: 33, priority: 0, pending: true, active: false }]);
        assert!(!more);
        // The guest acknowledged it: active in the LR.
        g.sync_lrs(1, &[Lr { pending: false, active: true, ..lrs[0] }]);
        assert!(!g.has_deliverable(1), "active: not again until deactivated");
        let (lrs, _) = g.fill_lrs(1, 4);
        assert_eq!(lrs, [Lr { intid: 33, priority: 0, pending: false, active: true }], "the active state rides in the LR");
        g.sync_lrs(1, &[]);
        assert!(g.has_deliverable(1), "completed with the line still high: pending again");
        g.set_level(0, 33, false);
        assert!(!g.has_deliverable(1));
    }

    #[test]
    fn disabled_or_ungrouped_interrupts_are_not_delivered() {
        let mut g = Vgic::new(1);
        g.gicd(gicd::CTLR, 4, Some(0b10));
        g.gicd(gicd::IGROUPR + 4, 4, Some(1 << 2));
        g.set_level(0, 34, true);
        assert!(!g.has_deliverable(0), "not enabled");
        g.gicd(gicd::ISENABLER + 4, 4, Some(1 << 2));
        assert!(g.has_deliverable(0));
        g.gicd(gicd::CTLR, 4, Some(0));
        assert!(!g.has_deliverable(0), "group 1 off at the distributor");
        g.gicd(gicd::CTLR, 4, Some(0b10));
        g.gicd(gicd::ICENABLER + 4, 4, Some(1 << 2));
        assert!(!g.has_deliverable(0), "disabled again");
        assert_eq!(g.gicd(gicd::ISENABLER + 4, 4, None).0, Access::Value(0));
    }

    #[test]
    fn sgis_reach_their_targets_and_irm_all_others() {
        let mut g = Vgic::new(4);
        for cpu in 0..4 {
            enable(&mut g, cpu, 1);
        }
        assert_eq!(g.sgi(0, 1 << 24 | 0b1010), Notify(0b1010));
        assert!(g.has_deliverable(1) && g.has_deliverable(3) && !g.has_deliverable(2));
        assert_eq!(g.sgi(2, 1 << 24 | 1 << 40), Notify(0b1011), "everyone but the sender");
        assert_eq!(g.sgi(0, 1 << 24 | 1 << 16 | 1), Notify(0), "Aff1 = 1: nobody there");
        let (lrs, _) = g.fill_lrs(1, 4);
        assert_eq!(lrs.len(), 1);
        g.sync_lrs(1, &[Lr { pending: true, ..lrs[0] }]);
        assert!(g.has_deliverable(1), "an SGI still pending in its LR stays pending");
    }

    #[test]
    fn more_than_the_lrs_go_by_priority_and_say_so() {
        let mut g = Vgic::new(1);
        for intid in 32..38 {
            enable(&mut g, 0, intid);
            g.gicd(gicd::ISPENDR + 4, 4, Some(1 << (intid - 32)));
        }
        g.gicd(gicd::IPRIORITYR + 37, 1, Some(0x10));
        g.gicd(gicd::IPRIORITYR + 32, 4, Some(0x80808080));
        assert_eq!(g.gicd(gicd::IPRIORITYR + 32, 4, None).0, Access::Value(0x80808080));
        let (lrs, more) = g.fill_lrs(0, 4);
        assert!(more);
        assert_eq!(lrs.iter().map(|l| l.intid).collect::<Vec<_>>(), [36, 37, 32, 33], "priority 0, then 0x10, then the 0x80s by INTID");
        assert!(g.has_deliverable(0), "34 and 35 wait");
    }

    #[test]
    fn lr_encoding_round_trips() {
        for lr in [
            Lr { intid: 27, priority: 0xa0, pending: true, active: false },
            Lr { intid: 1, priority: 0, pending: true, active: true },
            Lr { intid: 95, priority: 0xf8, pending: false, active: true },
        ] {
            let v = lr.encode();
            assert_eq!(v >> 60 & 1, 1, "group 1");
            assert_eq!(Lr::decode(v), lr);
        }
    }

    #[test]
    fn private_registers_are_banked_and_sgis_stay_edge() {
        let mut g = Vgic::new(2);
        g.gicr(1, gicr::SGI_BASE + gicd::ISENABLER, 4, Some(1 << 27));
        assert_eq!(g.gicr(0, gicr::SGI_BASE + gicd::ISENABLER, 4, None).0, Access::Value(0));
        assert_eq!(g.gicr(1, gicr::SGI_BASE + gicd::ISENABLER, 4, None).0, Access::Value(1 << 27));
        g.gicr(0, gicr::SGI_BASE + gicd::ICFGR, 4, Some(0));
        assert_eq!(g.gicr(0, gicr::SGI_BASE + gicd::ICFGR, 4, None).0, Access::Value(0xaaaa_aaaa), "SGIs are edge");
        assert_eq!(g.gicr(0, gicr::SGI_BASE + gicd::ICFGR + 4, 4, None).0, Access::Value(0), "PPIs level");
        // The distributor does not reach private interrupts with ARE.
        g.gicd(gicd::ISENABLER, 4, Some(u64::MAX));
        assert_eq!(g.gicr(0, gicr::SGI_BASE + gicd::ISENABLER, 4, None).0, Access::Value(0));
    }
}
