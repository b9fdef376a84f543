//! The QEMU scenarios, as data: which guests run in which VMs, what each VM must end with, which
//! trace checks must hold, and how long it may take.

use vm::fault::FaultCase;

/// Guest RAM base (IPA) of every VM, and a VM's RAM when its spec gives none: the hypervisor's.
pub use hyp::config::DEFAULT_RAM_MIB;
pub use hyp::loader::RAM_BASE;

/// How a VM must stop.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Expect {
    /// `uvmhyp: vmN (name) exited S` with this S.
    Exit(u32),
    /// `uvmhyp: vmN (name) crashed: ...`.
    Crash,
}

/// One VM of a scenario (VM ids are 1, 2, … in order).
#[derive(Clone, Copy, Debug)]
pub struct VmSpec {
    /// Name shown by the hypervisor (`vmN (name)`).
    pub name: &'static str,
    /// Guest binary under `target/aarch64-unknown-none/release/`.
    pub guest: &'static str,
    /// RAM in MiB; `None` = the hypervisor's default (64).
    pub ram_mib: Option<u64>,
    /// vCPUs; `None` = 1.
    pub cpus: Option<u32>,
    pub expect: Expect,
}

impl VmSpec {
    /// RAM in bytes.
    pub fn ram_bytes(&self) -> u64 {
        self.ram_mib.unwrap_or(DEFAULT_RAM_MIB) << 20
    }
}

/// A check on the decoded trace. `vm` is the VM id (1-based).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Check {
    /// Resolved faults of `vm` with IPA in its RAM: `min ..= max`; and none of them failed
    /// (a `Restart` is allowed: the guest re-faults).
    RamFaults { vm: u16, min: u64, max: u64 },
    /// At least `min` records of `vm` resolved by `case`.
    CaseAtLeast { vm: u16, case: FaultCase, min: u64 },
    /// An `AbortInjected` record of `vm` at exactly `ipa`.
    AbortAt { vm: u16, ipa: u64 },
    /// Resolved faults of `vm` come from at least `min` distinct vCPUs.
    Vcpus { vm: u16, min: u16 },
}

/// A check on the hypervisor's console.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ConsoleCheck {
    /// At least `min` lines of `vm`'s output are exactly `text`.
    GuestLine { vm: u16, text: &'static str, min: usize },
    /// At most `max` lines of `vm`'s output start with `prefix`.
    GuestLinesAtMost { vm: u16, prefix: &'static str, max: usize },
    /// A `uvmhyp: warning:` line contains `text`.
    Warning { text: &'static str },
    /// VM `first` stopped before VM `then` (their stop lines are in that order).
    StopsBefore { first: u16, then: u16 },
}

/// A scenario.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    pub vms: &'static [VmSpec],
    /// `pool=MIB`, if set.
    pub pool_mib: Option<u64>,
    pub checks: &'static [Check],
    pub console: &'static [ConsoleCheck],
    pub timeout_s: u64,
    /// The emulated machine's settings that vary between scenarios.
    pub machine: Machine,
}

/// What of the QEMU line a scenario may change (README, "The QEMU line", fixes the rest).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Machine {
    /// The CPU model (`-cpu`).
    pub cpu: &'static str,
    /// Physical CPUs (`-smp`).
    pub cpus: u32,
    /// Run with `-icount shift=0,align=off,sleep=off`: the virtual counter then advances with
    /// executed instructions (1 ns each), so what a guest measures with CNTVCT is a repeatable
    /// instruction count. With one CPU nothing else (another CPU's idle loop) adds to it.
    pub icount: bool,
}

impl Machine {
    /// The QEMU line of the README: 4 Cortex-A72s, real time.
    pub const DEFAULT: Machine = Machine { cpu: "cortex-a72", cpus: 4, icount: false };
    /// One CPU, counting instructions: for measurements.
    pub const COUNTING: Machine = Machine { cpu: "cortex-a72", cpus: 1, icount: true };
    /// QEMU's `max` CPU (SVE, SME, MTE, … which the hypervisor hides from guests) without pointer
    /// authentication, whose emulation makes QEMU 7.2 4-5x slower.
    pub const MAX: Machine = Machine { cpu: "max,pauth=off", cpus: 4, icount: false };
}

impl Scenario {
    /// QEMU's exit status when the scenario goes as expected (README, "What a run prints": 0 iff every VM exited 0).
    pub fn expected_status(&self) -> i32 {
        if self.vms.iter().all(|v| v.expect == Expect::Exit(0)) {
            0
        } else {
            1
        }
    }

    /// How many VMs are expected to count as failed in the last line.
    pub fn expected_failed(&self) -> usize {
        self.vms.iter().filter(|v| v.expect != Expect::Exit(0)).count()
    }
}

const fn vm(name: &'static str, guest: &'static str) -> VmSpec {
    VmSpec { name, guest, ram_mib: None, cpus: None, expect: Expect::Exit(0) }
}

const fn vm_ram(name: &'static str, guest: &'static str, ram_mib: u64) -> VmSpec {
    VmSpec { name, guest, ram_mib: Some(ram_mib), cpus: None, expect: Expect::Exit(0) }
}

/// 72 MiB leaves 64 MiB beyond `touch`'s image, bss and stacks: it touches exactly 64 MiB.
const TOUCH_RAM_MIB: u64 = 72;
/// Pages `touch` writes with 72 MiB.
const TOUCH_PAGES: u64 = 64 << 8;
/// Image, .bss, stacks and table pages a guest may fault besides its working set.
const SLACK: u64 = 128;

/// Every scenario, in the order `test` runs them.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "default",
        about: "two VMs sharing the image guest + one touch VM (make run)",
        vms: &[vm("image1", "image"), vm("image2", "image"), vm_ram("touch", "touch", TOUCH_RAM_MIB)],
        pool_mib: None,
        checks: &[
            Check::CaseAtLeast { vm: 1, case: FaultCase::Obj2A, min: 1 },
            Check::CaseAtLeast { vm: 1, case: FaultCase::ObjCopy2B, min: 1 },
            Check::CaseAtLeast { vm: 2, case: FaultCase::Obj2A, min: 1 },
            Check::CaseAtLeast { vm: 2, case: FaultCase::ObjCopy2B, min: 1 },
            Check::RamFaults { vm: 3, min: TOUCH_PAGES / 8, max: TOUCH_PAGES + SLACK },
        ],
        console: &[],
        timeout_s: 110,
        machine: Machine::DEFAULT,
    },
    Scenario {
        name: "touch",
        about: "one VM writes and verifies 64 MiB, every page demand-faulted",
        vms: &[vm_ram("touch", "touch", TOUCH_RAM_MIB)],
        pool_mib: None,
        checks: &[
            Check::RamFaults { vm: 1, min: TOUCH_PAGES / 8, max: TOUCH_PAGES + SLACK },
            Check::CaseAtLeast { vm: 1, case: FaultCase::Zero2B, min: TOUCH_PAGES / 8 },
        ],
        console: &[],
        timeout_s: 90,
        machine: Machine::DEFAULT,
    },
    Scenario {
        name: "image",
        about: "two VMs run the same image: shared read-only object (2A), private COW copy (2B)",
        vms: &[vm("image1", "image"), vm("image2", "image")],
        pool_mib: None,
        checks: &[
            Check::CaseAtLeast { vm: 1, case: FaultCase::Obj2A, min: 1 },
            Check::CaseAtLeast { vm: 1, case: FaultCase::ObjCopy2B, min: 1 },
            Check::CaseAtLeast { vm: 2, case: FaultCase::Obj2A, min: 1 },
            Check::CaseAtLeast { vm: 2, case: FaultCase::ObjCopy2B, min: 1 },
        ],
        console: &[],
        timeout_s: 60,
        machine: Machine::DEFAULT,
    },
    Scenario {
        name: "badaddr",
        about: "aborts injected for IPAs with no RAM/device, unknown HVC/SMC -> -1, bad PRINT -> -2 (MMU off)",
        vms: &[vm("badaddr", "badaddr")],
        pool_mib: None,
        checks: &[
            Check::AbortAt { vm: 1, ipa: 0x2000_0000 },
            Check::AbortAt { vm: 1, ipa: RAM_BASE + (DEFAULT_RAM_MIB << 20) },
        ],
        console: &[],
        timeout_s: 60,
        machine: Machine::DEFAULT,
    },
    Scenario {
        name: "crash",
        about: "a VM executing from an IPA with no RAM is stopped as crashed; a touch VM still exits 0",
        vms: &[
            VmSpec { name: "crash", guest: "crash", ram_mib: None, cpus: None, expect: Expect::Crash },
            vm_ram("touch", "touch", 16),
        ],
        pool_mib: None,
        checks: &[Check::RamFaults { vm: 2, min: (16 << 8) / 8 - SLACK, max: (16 << 8) + SLACK }],
        console: &[],
        timeout_s: 60,
        machine: Machine::DEFAULT,
    },
    Scenario {
        name: "smp",
        about: "4 vCPUs of one VM fault shared and private pages at once",
        vms: &[VmSpec { name: "smp", guest: "smp", ram_mib: None, cpus: Some(4), expect: Expect::Exit(0) }],
        pool_mib: None,
        checks: &[
            Check::Vcpus { vm: 1, min: 4 },
            Check::CaseAtLeast { vm: 1, case: FaultCase::Zero2B, min: (256 + 4 * 512) / 8 },
        ],
        console: &[],
        timeout_s: 90,
        machine: Machine::DEFAULT,
    },
    Scenario {
        name: "multi",
        about: "4 VMs at once, each sees zeroed private memory",
        vms: &[vm("multi1", "multi"), vm("multi2", "multi"), vm("multi3", "multi"), vm("multi4", "multi")],
        pool_mib: None,
        checks: &[
            Check::CaseAtLeast { vm: 1, case: FaultCase::Zero2B, min: 1024 / 8 },
            Check::CaseAtLeast { vm: 2, case: FaultCase::Zero2B, min: 1024 / 8 },
            Check::CaseAtLeast { vm: 3, case: FaultCase::Zero2B, min: 1024 / 8 },
            Check::CaseAtLeast { vm: 4, case: FaultCase::Zero2B, min: 1024 / 8 },
        ],
        console: &[],
        timeout_s: 90,
        machine: Machine::DEFAULT,
    },
    Scenario {
        name: "bench",
        about: "fault cost against its work, in instructions (-icount): zero fill vs memset, COW vs copy",
        vms: &[vm("bench", "bench")],
        pool_mib: None,
        checks: &[
            Check::CaseAtLeast { vm: 1, case: FaultCase::Zero2B, min: 4096 },
            Check::CaseAtLeast { vm: 1, case: FaultCase::ObjCopy2B, min: 256 },
        ],
        console: &[],
        timeout_s: 120,
        machine: Machine::COUNTING,
    },
    Scenario {
        name: "hostile",
        about: "forged console lines stay inside the guest's line, bad CPU_ON entries -> -9, a console flood is cut",
        vms: &[VmSpec { name: "hostile", guest: "hostile", ram_mib: None, cpus: Some(2), expect: Expect::Exit(0) }],
        pool_mib: None,
        checks: &[Check::CaseAtLeast { vm: 1, case: FaultCase::Obj2A, min: 1 }],
        console: &[
            // PRINT is one line: its newline is shown escaped.
            ConsoleCheck::GuestLine { vm: 1, text: r"x\x0auvmhyp: vm9 (fake) exited 0", min: 1 },
            // The PL011 is a byte stream: its newline ends a line, the next one is still the VM's.
            ConsoleCheck::GuestLine { vm: 1, text: "uvmhyp: vm9 (fake) exited 0", min: 1 },
            ConsoleCheck::GuestLinesAtMost { vm: 1, prefix: "hostile: flood ", max: 999 },
            ConsoleCheck::Warning { text: "console lines dropped" },
        ],
        timeout_s: 60,
        machine: Machine::DEFAULT,
    },
    Scenario {
        name: "max",
        about: "the default scenario and an smp VM on -cpu max,pauth=off (features guests must not see are hidden)",
        vms: &[
            vm("image1", "image"),
            vm("image2", "image"),
            vm_ram("touch", "touch", TOUCH_RAM_MIB),
            VmSpec { name: "smp", guest: "smp", ram_mib: None, cpus: Some(4), expect: Expect::Exit(0) },
        ],
        pool_mib: None,
        checks: &[
            Check::CaseAtLeast { vm: 1, case: FaultCase::ObjCopy2B, min: 1 },
            Check::RamFaults { vm: 3, min: TOUCH_PAGES / 8, max: TOUCH_PAGES + SLACK },
            Check::Vcpus { vm: 4, min: 4 },
        ],
        console: &[],
        timeout_s: 120,
        machine: Machine::MAX,
    },
    Scenario {
        name: "preempt",
        about: "5 VMs spin 15 s without a trap on 4 CPUs; a VM that yielded its first second must still finish first (time slices)",
        vms: &[
            vm("spin1", "spin"),
            vm("spin2", "spin"),
            vm("spin3", "spin"),
            vm("spin4", "spin"),
            vm("spin5", "spin"),
            vm("polite", "polite"),
        ],
        pool_mib: None,
        checks: &[Check::CaseAtLeast { vm: 6, case: FaultCase::Zero2B, min: 256 }],
        // Without preemption the polite VM would wait for a spinner to end.
        console: &[
            ConsoleCheck::StopsBefore { first: 6, then: 1 },
            ConsoleCheck::StopsBefore { first: 6, then: 2 },
            ConsoleCheck::StopsBefore { first: 6, then: 3 },
            ConsoleCheck::StopsBefore { first: 6, then: 4 },
            ConsoleCheck::StopsBefore { first: 6, then: 5 },
        ],
        timeout_s: 120,
        machine: Machine::DEFAULT,
    },
];

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_checks_name_existing_vms() {
        for (i, s) in SCENARIOS.iter().enumerate() {
            assert!(SCENARIOS[..i].iter().all(|o| o.name != s.name), "duplicate {}", s.name);
            assert!(!s.vms.is_empty());
            for c in s.checks {
                let vm = match *c {
                    Check::RamFaults { vm, .. }
                    | Check::CaseAtLeast { vm, .. }
                    | Check::AbortAt { vm, .. }
                    | Check::Vcpus { vm, .. } => vm,
                };
                assert!(vm >= 1 && (vm as usize) <= s.vms.len(), "{}: check on vm{}", s.name, vm);
            }
        }
    }

    #[test]
    fn expected_status_follows_the_vms() {
        assert_eq!(find("default").unwrap().expected_status(), 0);
        let crash = find("crash").unwrap();
        assert_eq!(crash.expected_status(), 1);
        assert_eq!(crash.expected_failed(), 1);
    }

    #[test]
    fn every_guest_of_the_issue_is_covered() {
        for g in ["touch", "image", "badaddr", "crash", "smp", "multi", "bench", "hostile", "spin", "polite"] {
            assert!(SCENARIOS.iter().any(|s| s.vms.iter().any(|v| v.guest == g)), "{g}");
        }
    }
}
