//! The CPU features a guest must not see: the hypervisor neither context-switches nor emulates
//! their state (SVE, SME, MTE, pointer authentication), so it hides them in the ID registers
//! (HCR_EL2.TID3). Arm ARM D19 field positions.

use core::arch::asm;

/// A 4-bit ID register field that must read as 0 ("not implemented").
struct Hidden {
    name: &'static str,
    /// Which register: 0 = ID_AA64PFR0_EL1, 1 = ID_AA64PFR1_EL1, 2 = ID_AA64ISAR1_EL1.
    reg: usize,
    shift: u32,
}

const HIDDEN: &[Hidden] = &[
    Hidden { name: "ID_AA64PFR0_EL1.SVE", reg: 0, shift: 32 },
    Hidden { name: "ID_AA64PFR1_EL1.MTE", reg: 1, shift: 8 },
    Hidden { name: "ID_AA64PFR1_EL1.SME", reg: 1, shift: 24 },
    Hidden { name: "ID_AA64ISAR1_EL1.APA", reg: 2, shift: 4 },
    Hidden { name: "ID_AA64ISAR1_EL1.API", reg: 2, shift: 8 },
    Hidden { name: "ID_AA64ISAR1_EL1.GPA", reg: 2, shift: 24 },
    Hidden { name: "ID_AA64ISAR1_EL1.GPI", reg: 2, shift: 28 },
];

fn id_registers() -> [u64; 3] {
    let (pfr0, pfr1, isar1): (u64, u64, u64);
    // SAFETY: reading ID registers has no side effect (the hypervisor traps and answers them).
    unsafe {
        asm!(
            "mrs {0}, id_aa64pfr0_el1",
            "mrs {1}, id_aa64pfr1_el1",
            "mrs {2}, id_aa64isar1_el1",
            out(reg) pfr0, out(reg) pfr1, out(reg) isar1,
            options(nomem, nostack)
        )
    };
    [pfr0, pfr1, isar1]
}

/// The first feature the guest can see but must not, with the field's value.
pub fn visible_hidden_feature() -> Option<(&'static str, u64)> {
    let regs = id_registers();
    HIDDEN.iter().find_map(|h| {
        let v = (regs[h.reg] >> h.shift) & 0xf;
        (v != 0).then_some((h.name, v))
    })
}
