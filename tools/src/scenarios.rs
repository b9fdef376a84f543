//! The QEMU scenarios: which guests run in which VMs, what each VM must end with, which console
//! and trace checks must hold, and how long it may take. They are TOML files in `scenarios/`
//! (format: [`crate::scenario_file`]); a scenario's name is its file's name without `.toml`.

use crate::scenario_file::{self, ScenarioError};
use std::path::{Path, PathBuf};
use vm::fault::FaultCase;

/// Guest RAM base (IPA) of every VM, and a VM's RAM when its spec gives none: the hypervisor's.
pub use hyp::config::DEFAULT_RAM_MIB;
pub use hyp::loader::RAM_BASE;

/// The directory of the scenario files, relative to the workspace root.
pub const DIR: &str = "scenarios";

/// How a VM must stop.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// `uvmhyp: vmN (name) exited S` with this S.
    Exit(u32),
    /// `uvmhyp: vmN (name) crashed [who]: ...` (any `hyp::stop::Cause`).
    Crash,
    /// `uvmhyp: vmN (name) crashed [who]: ...` with this `who` (`expect = { crashed = "out-of-memory" }`).
    Crashed(CrashCause),
    /// `uvmhyp: vmN (name) reset` (PSCI SYSTEM_RESET).
    Reset,
}

/// The `who` of an expected crash line, by its word (`hyp::stop::Cause::word`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct CrashCause(pub hyp::stop::Cause);

impl TryFrom<String> for CrashCause {
    type Error = String;
    fn try_from(w: String) -> Result<Self, String> {
        hyp::stop::Cause::from_word(&w).map(CrashCause).ok_or_else(|| format!("no crash cause {w:?} (guest-fault, guest-call, out-of-memory, swap-io, hypervisor)"))
    }
}

/// What a VM runs.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Image {
    /// A test guest of `guest/`, built to `target/aarch64-unknown-none/release/<name>`.
    Guest(String),
    /// Any guest ELF, by its path relative to the workspace root.
    Elf(String),
    /// A Linux `Image`, an optional initrd (paths relative to the root) and its command line.
    Linux { kernel: String, initrd: Option<String>, bootargs: String },
}

impl Image {
    /// The ELF's or kernel's path relative to the root, as the hypervisor's `vm=NAME:PATH` /
    /// `linux=NAME:KERNEL` takes it.
    pub fn path(&self) -> String {
        match self {
            Image::Guest(g) => crate::qemu::guest_path(g),
            Image::Elf(p) => p.clone(),
            Image::Linux { kernel, .. } => kernel.clone(),
        }
    }

    /// Every host file the VM needs.
    pub fn files(&self) -> Vec<String> {
        match self {
            Image::Linux { initrd: Some(i), .. } => vec![self.path(), i.clone()],
            _ => vec![self.path()],
        }
    }
}

/// One VM of a scenario (VM ids are 1, 2, … in order).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VmSpec {
    /// Name shown by the hypervisor (`vmN (name)`).
    pub name: String,
    pub image: Image,
    /// RAM in MiB; `None` = the hypervisor's default (64).
    pub ram_mib: Option<u64>,
    /// vCPUs; `None` = 1.
    pub cpus: Option<u32>,
    pub expect: Expect,
    /// Children the VM makes with UVMHYP_CLONE (README, "Hypercall ABI"): each is named
    /// `<name>.<k>`, k = 1..=clones, and must exit 0.
    pub clones: u32,
    /// The scenario's clone point (README, "Clone points"): the hypervisor clones the VM into
    /// `clones` children at its first console line containing this text.
    pub clone_at: Option<String>,
    /// Its pages are offered to the dedup scanner.
    pub dedup: bool,
    /// Its claim on the page pool.
    pub mem: MemClaim,
}

/// A VM's claim on the hypervisor's page pool (`vm::share`); all `None`: no claim.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemClaim {
    pub min_mib: Option<u64>,
    pub max_mib: Option<u64>,
    pub shares: Option<u32>,
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
    /// At least `min` records resolved by `case` of `vm` and its clones together (the VMs
    /// numbered after the scenario's: `vm` is the scenario's only VM with clones).
    FamilyCaseAtLeast { vm: u16, case: FaultCase, min: u64 },
    /// An `AbortInjected` record of `vm` at exactly `ipa`.
    AbortAt { vm: u16, ipa: u64 },
    /// Resolved faults of `vm` come from at least `min` distinct vCPUs.
    Vcpus { vm: u16, min: u16 },
    /// `vm`'s MMIO accesses are counted, not recorded one by one: at least `min_accesses` of them
    /// in at most `max_records` aggregate records (and no fault record with outcome `mmio`).
    Mmio { vm: u16, min_accesses: u64, max_records: u64 },
    /// At least `min` page-ins, over all VMs, read a slot whose latest page-out was traced for
    /// another VM (`swapcheck::shared_pageins`): a shared anon written once, come back in a VM
    /// it was not named after. Over all VMs, not per VM: a page-out is named after the first
    /// mapping its anon's reverse map holds, and which VM faulted a shared page first is timing.
    SharedPageIns { min: u64 },
    /// The trace ends with a capped record, and the file is within the cap.
    Capped,
}

/// How the hypervisor traces a run (`[trace]` of a scenario file).
#[derive(Clone, PartialEq, Eq, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceSettings {
    /// `false`: the hypervisor runs with `trace=off` (no trace file; no trace checks allowed).
    pub enabled: bool,
    /// `trace_max=MIB`, if set (the hypervisor's default: `hyp::config::DEFAULT_TRACE_MAX_MIB`).
    pub max_mib: Option<u64>,
    /// The trace must reach its cap (`Check::Capped`); otherwise reaching it fails the run.
    pub capped: bool,
    /// `Check::SharedPageIns`, if set.
    pub shared_pageins: Option<u64>,
}

impl Default for TraceSettings {
    fn default() -> TraceSettings {
        TraceSettings { enabled: true, max_mib: None, capped: false, shared_pageins: None }
    }
}

/// A check on the hypervisor's console.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ConsoleCheck {
    /// At least `min` lines of `vm`'s output are exactly `text`.
    GuestLine { vm: u16, text: String, min: usize },
    /// At most `max` lines of `vm`'s output start with `prefix`.
    GuestLinesAtMost { vm: u16, prefix: String, max: usize },
    /// A `uvmhyp: warning:` line contains `text`.
    Warning { text: String },
    /// No `uvmhyp: warning:` line contains `text`.
    NoWarning { text: String },
    /// VM `first` stopped before VM `then` (their stop lines are in that order).
    StopsBefore { first: u16, then: u16 },
    /// The counters table's `total` of `counter` is at least `min`.
    CounterAtLeast { counter: String, min: u64 },
}

/// What of the QEMU line a scenario may change (README, "The QEMU line", fixes the rest).
#[derive(Clone, PartialEq, Eq, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Machine {
    /// The CPU model (`-cpu`).
    pub cpu: String,
    /// Physical CPUs (`-smp`).
    pub smp: u32,
    /// Host RAM of the emulated board (`-m`), as QEMU spells it (`1G`, `512M`).
    pub memory: String,
    /// Run with `-icount shift=0,align=off,sleep=off`: the virtual counter then advances with
    /// executed instructions (1 ns each), so what a guest measures with CNTVCT is a repeatable
    /// instruction count. With one CPU nothing else (another CPU's idle loop) adds to it.
    pub icount: bool,
}

impl Default for Machine {
    /// The QEMU line of the README: 4 Cortex-A72s, 1 GiB, real time.
    fn default() -> Machine {
        Machine { cpu: "cortex-a72".into(), smp: 4, memory: "1G".into(), icount: false }
    }
}

/// When a run ends (the timeout kills QEMU otherwise).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, serde::Deserialize)]
pub enum StopWhen {
    /// The hypervisor ends QEMU when its last VM stops.
    #[default]
    #[serde(rename = "all-vms-stopped")]
    AllVmsStopped,
    /// The hypervisor panics, and ends QEMU with the panic status (101): for the scenarios of a
    /// `selftest=` hook that makes it panic. No VM needs to stop, no trace is checked.
    #[serde(rename = "hypervisor-panic")]
    HypervisorPanic,
}

/// QEMU's exit status after a hypervisor panic (`hyp`'s `EXIT_PANIC`).
pub const PANIC_STATUS: i32 = 101;

/// A scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The file's name without `.toml`; names the output directory.
    pub name: String,
    pub about: String,
    /// The file it was read from.
    pub file: PathBuf,
    pub vms: Vec<VmSpec>,
    /// `pool=MIB`, if set.
    pub pool_mib: Option<u64>,
    pub checks: Vec<Check>,
    pub console: Vec<ConsoleCheck>,
    pub timeout_s: u64,
    /// When the run ends.
    pub stop: StopWhen,
    /// The hypervisor's `selftest=` hooks (`hyp::selftest`), by name.
    pub selftest: Vec<String>,
    /// The emulated machine's settings that vary between scenarios.
    pub machine: Machine,
    pub trace: TraceSettings,
    /// `[dedup] pages_per_tick`: the hypervisor's `dedup=` scan rate, if the scanner runs.
    pub dedup_rate: Option<u64>,
    /// `[stop] reproducible`: run twice, the traces must be byte-identical.
    pub reproducible: bool,
    /// `[[input]]`: what the runner types into the host console (QEMU's stdin), in order.
    pub input: Vec<InputStep>,
    /// `[swap] mib`: the size of the swap disk the runner attaches, if any.
    pub swap_mib: Option<u64>,
    /// `[swap] fail_*`: the swap disk's injected I/O errors (through blkdebug).
    pub swap_faults: crate::blkdebug::SwapFaults,
}

/// One `[[input]]` step: once the steps before it were sent and a console line so far (before or
/// after them) contains `after`,
/// `text` is written to QEMU's stdin, i.e. typed at the VM with focus (README, "Typing into a VM").
#[derive(Clone, PartialEq, Eq, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputStep {
    pub after: String,
    pub text: String,
}

impl Scenario {
    /// QEMU's exit status when the scenario goes as expected (README, "What a run prints": 0 iff every VM exited 0).
    pub fn expected_status(&self) -> i32 {
        if self.stop == StopWhen::HypervisorPanic {
            PANIC_STATUS
        } else if self.vms.iter().all(|v| v.expect == Expect::Exit(0)) {
            0
        } else {
            1
        }
    }

    /// VMs of the run: the scenario's and their clones.
    pub fn total_vms(&self) -> usize {
        self.vms.iter().map(|v| 1 + v.clones as usize).sum()
    }

    /// How many VMs are expected to count as failed in the last line.
    pub fn expected_failed(&self) -> usize {
        self.vms.iter().filter(|v| v.expect != Expect::Exit(0)).count()
    }
}

/// Every scenario file of `root`'s `scenarios/`, in file-name order (the order `test` runs them).
pub fn all(root: &Path) -> Result<Vec<Scenario>, ScenarioError> {
    let dir = root.join(DIR);
    let read = std::fs::read_dir(&dir).map_err(|error| ScenarioError::Read { file: dir.clone(), error })?;
    let mut files = Vec::new();
    for entry in read {
        let path = entry.map_err(|error| ScenarioError::Read { file: dir.clone(), error })?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    files.sort();
    files.iter().map(|f| scenario_file::load(root, f)).collect()
}

/// `FILE|NAME`: a path (it has a `/` or ends in `.toml`), else the scenario `scenarios/NAME.toml`.
pub fn find(root: &Path, arg: &str) -> Result<Scenario, ScenarioError> {
    if arg.contains('/') || arg.ends_with(".toml") {
        return scenario_file::load(root, Path::new(arg));
    }
    let file = root.join(DIR).join(format!("{arg}.toml"));
    if file.is_file() {
        return scenario_file::load(root, &file);
    }
    let have = all(root)?.into_iter().map(|s| s.name).collect();
    Err(ScenarioError::Unknown { name: arg.to_string(), have })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A scenario of the repository's `scenarios/`.
    pub(crate) fn builtin(name: &str) -> Scenario {
        find(&crate::qemu::root(), name).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_file_in_scenarios_parses_and_checks_name_existing_vms() {
        let all = all(&crate::qemu::root()).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "badaddr", "bench-notrace", "bench", "capped", "clone8", "clonebench-host", "clonebench", "clonepoint", "crash", "dedup-swap", "dedup8", "default", "echo", "fairmem-off", "fairmem-swap", "fairmem", "fork", "hostile", "image", "linux-clone", "linux-crash", "linux-focus", "linux-input", "linux-swap", "linux", "many", "max", "multi", "overcommit-shared", "overcommit", "panic-fault", "phase", "poll", "preempt", "repro", "smp", "swapbench", "swapdead", "swapfail-read", "swapfail-write", "swapfull", "touch", "xonly"
            ]
        );
        for s in &all {
            assert!(!s.vms.is_empty(), "{}", s.name);
            for c in &s.checks {
                let vm = match *c {
                    Check::RamFaults { vm, .. }
                    | Check::CaseAtLeast { vm, .. }
                    | Check::FamilyCaseAtLeast { vm, .. }
                    | Check::AbortAt { vm, .. }
                    | Check::Vcpus { vm, .. }
                    | Check::Mmio { vm, .. } => vm,
                    Check::Capped | Check::SharedPageIns { .. } => continue,
                };
                assert!(vm >= 1 && (vm as usize) <= s.vms.len(), "{}: check on vm{}", s.name, vm);
            }
        }
    }

    #[test]
    fn trace_settings_reach_the_scenario() {
        let capped = builtin("capped");
        assert_eq!(capped.trace, TraceSettings { enabled: true, max_mib: Some(1), capped: true, shared_pageins: None });
        assert!(capped.checks.contains(&Check::Capped));
        let off = builtin("bench-notrace");
        assert!(!off.trace.enabled && off.checks.is_empty());
        assert_eq!(builtin("default").trace, TraceSettings::default());
    }

    #[test]
    fn expected_status_follows_the_vms() {
        assert_eq!(builtin("default").expected_status(), 0);
        let crash = builtin("crash");
        assert_eq!(crash.expected_status(), 1);
        assert_eq!(crash.expected_failed(), 1);
    }

    #[test]
    fn badaddr_aborts_at_the_end_of_the_default_ram() {
        let aborts: Vec<Check> = builtin("badaddr").checks;
        assert!(aborts.contains(&Check::AbortAt { vm: 1, ipa: RAM_BASE + (DEFAULT_RAM_MIB << 20) }), "{aborts:?}");
    }

    #[test]
    fn every_guest_of_the_issue_is_covered() {
        let all = all(&crate::qemu::root()).unwrap();
        for g in ["touch", "image", "badaddr", "crash", "smp", "multi", "bench", "hostile", "spin", "polite", "poll"] {
            let image = Image::Guest(g.into());
            assert!(all.iter().any(|s| s.vms.iter().any(|v| v.image == image)), "{g}");
        }
    }

    #[test]
    fn an_unknown_name_lists_the_scenarios_and_a_path_is_read_as_a_file() {
        let root = crate::qemu::root();
        let e = find(&root, "nope").unwrap_err().to_string();
        assert!(e.contains("no scenario \"nope\"") && e.contains("default, echo, fairmem-off, fairmem-swap, fairmem, fork, hostile"), "{e}");
        let by_path = find(&root, &root.join("scenarios/touch.toml").display().to_string()).unwrap();
        assert_eq!(by_path.vms, builtin("touch").vms);
    }
}
