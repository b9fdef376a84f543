//! The CPU features a guest must not see: the hypervisor neither context-switches nor emulates
//! their state (SVE, SME, MTE, pointer authentication, LORegions, RAS, AMU, SPE, the trace
//! buffer, more breakpoints than it implements — none: they are RAZ/WI), so it clamps them in the
//! ID registers (HCR_EL2.TID3). Arm ARM D19 field positions.

use core::arch::asm;

/// ID registers this guest reads, in [`id_registers`] order.
#[derive(Clone, Copy)]
enum Reg {
    Pfr0,
    Pfr1,
    Isar1,
    Dfr0,
    Mmfr1,
}

/// A 4-bit ID register field that must read at most `max` (0: "not implemented").
struct Clamped {
    name: &'static str,
    reg: Reg,
    shift: u32,
    max: u64,
}

const fn hidden(name: &'static str, reg: Reg, shift: u32) -> Clamped {
    Clamped { name, reg, shift, max: 0 }
}

const CLAMPED: &[Clamped] = &[
    hidden("ID_AA64PFR0_EL1.RAS", Reg::Pfr0, 28),
    hidden("ID_AA64PFR0_EL1.SVE", Reg::Pfr0, 32),
    hidden("ID_AA64PFR0_EL1.AMU", Reg::Pfr0, 44),
    hidden("ID_AA64PFR1_EL1.MTE", Reg::Pfr1, 8),
    hidden("ID_AA64PFR1_EL1.RAS_frac", Reg::Pfr1, 12),
    hidden("ID_AA64PFR1_EL1.SME", Reg::Pfr1, 24),
    hidden("ID_AA64ISAR1_EL1.APA", Reg::Isar1, 4),
    hidden("ID_AA64ISAR1_EL1.API", Reg::Isar1, 8),
    hidden("ID_AA64ISAR1_EL1.GPA", Reg::Isar1, 24),
    hidden("ID_AA64ISAR1_EL1.GPI", Reg::Isar1, 28),
    // Armv8.0 debug, two breakpoints and two watchpoints (fields hold "number minus one").
    Clamped { name: "ID_AA64DFR0_EL1.DebugVer", reg: Reg::Dfr0, shift: 0, max: 0b0110 },
    hidden("ID_AA64DFR0_EL1.TraceVer", Reg::Dfr0, 4),
    hidden("ID_AA64DFR0_EL1.PMUVer", Reg::Dfr0, 8),
    Clamped { name: "ID_AA64DFR0_EL1.BRPs", reg: Reg::Dfr0, shift: 12, max: 1 },
    Clamped { name: "ID_AA64DFR0_EL1.WRPs", reg: Reg::Dfr0, shift: 20, max: 1 },
    hidden("ID_AA64DFR0_EL1.CTX_CMPs", Reg::Dfr0, 28),
    hidden("ID_AA64DFR0_EL1.PMSVer", Reg::Dfr0, 32),
    hidden("ID_AA64DFR0_EL1.TraceBuffer", Reg::Dfr0, 44),
    hidden("ID_AA64MMFR1_EL1.LO", Reg::Mmfr1, 16),
];

fn id_registers() -> [u64; 5] {
    let (pfr0, pfr1, isar1, dfr0, mmfr1): (u64, u64, u64, u64, u64);
    // SAFETY: reading ID registers has no side effect (the hypervisor traps and answers them).
    unsafe {
        asm!(
            "mrs {0}, id_aa64pfr0_el1",
            "mrs {1}, id_aa64pfr1_el1",
            "mrs {2}, id_aa64isar1_el1",
            "mrs {3}, id_aa64dfr0_el1",
            "mrs {4}, id_aa64mmfr1_el1",
            out(reg) pfr0, out(reg) pfr1, out(reg) isar1, out(reg) dfr0, out(reg) mmfr1,
            options(nomem, nostack)
        )
    };
    [pfr0, pfr1, isar1, dfr0, mmfr1]
}

/// The first feature the guest sees beyond what the hypervisor allows, with the field's value.
pub fn visible_hidden_feature() -> Option<(&'static str, u64)> {
    let regs = id_registers();
    CLAMPED.iter().find_map(|c| {
        let v = (regs[c.reg as usize] >> c.shift) & 0xf;
        (v > c.max).then_some((c.name, v))
    })
}
