//! The scenario file format (TOML; `scenarios/README.md` shows every field with comments) and its
//! errors. A bad file is the user's mistake: it gets `file:line:column: field F: what`, from the
//! spans `toml` keeps, and `tools` exits 2.
//!
//! The file is read into the `*File` types below, which mirror the TOML shape (checks nested in the
//! VM they are about), then turned into a [`Scenario`] whose checks name VMs by id. Whatever the
//! hypervisor would refuse on its `-append` line (RAM and vCPU ranges, pool size) is checked here
//! with the hypervisor's own parser, so a scenario that loads is one QEMU can start.

use crate::blkdebug::SwapFaults;
use crate::scenarios::{Check, ConsoleCheck, Expect, Image, InputStep, MemClaim, Machine, Scenario, StopWhen, TraceSettings, VmSpec};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;
use vm::fault::FaultCase;

/// The largest swap disk (MiB): 16 GiB, 4 Mi slots of 4 KiB.
const SWAP_MAX_MIB: u64 = 16 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    about: String,
    pool_mib: Option<Spanned<u64>>,
    #[serde(default)]
    selftest: Vec<Spanned<String>>,
    #[serde(default)]
    qemu: Machine,
    trace: Option<Spanned<TraceSettings>>,
    stop: Stop,
    dedup: Option<DedupFile>,
    swap: Option<SwapFile>,
    #[serde(default)]
    counters: CountersFile,
    vm: Vec<Spanned<VmFile>>,
    #[serde(default)]
    console: GlobalConsole,
    #[serde(default)]
    input: Vec<InputStep>,
}

/// `[dedup]`: the hypervisor's dedup scanner runs (over the VMs with `dedup = true`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DedupFile {
    pages_per_tick: Spanned<u64>,
}

/// `[swap]`: the runner attaches a swap disk of `mib` MiB (a sparse file in the run folder).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwapFile {
    mib: Spanned<u64>,
    /// Reads of these slots fail (`crate::blkdebug`).
    fail_read_slots: Option<Spanned<Vec<u32>>>,
    /// Writes of these slots fail.
    fail_write_slots: Option<Spanned<Vec<u32>>>,
    /// Every request fails.
    #[serde(default)]
    fail_all: bool,
}

/// `[counters]`: checks on the counters table's `total` column.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CountersFile {
    #[serde(default)]
    at_least: BTreeMap<String, u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Stop {
    #[serde(default)]
    when: StopWhen,
    timeout_s: u64,
    /// Run twice: the two traces must be byte-identical (needs `[qemu] icount = true`).
    reproducible: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VmFile {
    name: String,
    guest: Option<String>,
    elf: Option<String>,
    kernel: Option<String>,
    initrd: Option<String>,
    bootargs: Option<String>,
    ram_mib: Option<u64>,
    vcpus: Option<u32>,
    #[serde(default = "exit_0")]
    expect: Expect,
    #[serde(default)]
    clones: u32,
    /// The scenario's clone point: at its first console line containing this text, the
    /// hypervisor pauses the VM and clones it into `clones` children.
    clone_at: Option<String>,
    #[serde(default)]
    dedup: bool,
    /// Its claim on the page pool (the hypervisor's `min=`, `max=`, `shares=`).
    mem_min_mib: Option<u64>,
    mem_max_mib: Option<u64>,
    shares: Option<u32>,
    #[serde(default)]
    trace: VmTrace,
    #[serde(default)]
    console: VmConsole,
}

fn exit_0() -> Expect {
    Expect::Exit(0)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct VmTrace {
    ram_faults: Option<Bounds>,
    #[serde(default)]
    cases: BTreeMap<CaseName, u64>,
    /// As `cases`, over the VM and its clones together (the VM must have `clones`, and be the
    /// only VM of the scenario that does).
    #[serde(default)]
    family_cases: BTreeMap<CaseName, u64>,
    vcpus: Option<u16>,
    #[serde(default)]
    aborts_at: Vec<u64>,
    mmio: Option<MmioBounds>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MmioBounds {
    min_accesses: u64,
    max_records: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Bounds {
    min: u64,
    max: u64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct VmConsole {
    #[serde(default)]
    lines: Vec<LineCheck>,
    #[serde(default)]
    at_most: Vec<PrefixCheck>,
    #[serde(default)]
    stops_before: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineCheck {
    text: String,
    #[serde(default = "one")]
    min: usize,
}

fn one() -> usize {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrefixCheck {
    prefix: String,
    max: usize,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GlobalConsole {
    #[serde(default)]
    warnings: Vec<String>,
    #[serde(default)]
    no_warnings: Vec<String>,
}

/// A fault case by the name the trace reader prints ([`crate::checks::case_name`]).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct CaseName(u8);

impl<'de> Deserialize<'de> for CaseName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match crate::checks::case_by_name(&s) {
            Some(c) => Ok(CaseName(c as u8)),
            None => {
                let names: Vec<_> = crate::checks::CASES.iter().map(|c| crate::checks::case_name(Some(*c))).collect();
                Err(serde::de::Error::custom(format!("unknown fault case `{s}`, expected one of {}", names.join(", "))))
            }
        }
    }
}

impl CaseName {
    fn case(&self) -> FaultCase {
        crate::checks::CASES.iter().copied().find(|c| *c as u8 == self.0).expect("built from CASES")
    }
}

/// A scenario file that cannot be used.
#[derive(Debug)]
pub enum ScenarioError {
    /// The file (or `scenarios/`) could not be read.
    Read { file: PathBuf, error: std::io::Error },
    /// The file is not a valid scenario: where, which field, what is wrong.
    Invalid { file: String, at: Option<Location>, field: Option<String>, message: String },
    /// No `scenarios/NAME.toml`.
    Unknown { name: String, have: Vec<String> },
}

/// A place in a file, 1-based, with its line's text.
#[derive(Debug)]
pub struct Location {
    pub line: usize,
    pub column: usize,
    pub text: String,
}

impl Location {
    fn of(src: &str, offset: usize) -> Location {
        let offset = offset.min(src.len());
        let start = src[..offset].rfind('\n').map_or(0, |i| i + 1);
        let end = src[offset..].find('\n').map_or(src.len(), |i| offset + i);
        Location {
            line: src[..offset].matches('\n').count() + 1,
            column: src[start..offset].chars().count() + 1,
            text: src[start..end].to_string(),
        }
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScenarioError::Read { file, error } => write!(f, "{}: {error}", file.display()),
            ScenarioError::Invalid { file, at, field, message } => {
                write!(f, "{file}:")?;
                if let Some(at) = at {
                    write!(f, "{}:{}:", at.line, at.column)?;
                }
                if let Some(field) = field {
                    write!(f, " field `{field}`:")?;
                }
                write!(f, " {message}")?;
                if let Some(at) = at {
                    write!(f, "\n    | {}", at.text)?;
                }
                Ok(())
            }
            ScenarioError::Unknown { name, have } => write!(f, "no scenario {name:?} (have: {})", have.join(", ")),
        }
    }
}

/// Read and check one scenario file; `root` is the workspace root (file names are shown relative to it).
pub fn load(root: &Path, file: &Path) -> Result<Scenario, ScenarioError> {
    let src = std::fs::read_to_string(file).map_err(|error| ScenarioError::Read { file: file.to_path_buf(), error })?;
    let shown = file.strip_prefix(root).unwrap_or(file).display().to_string();
    let name = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    parse(&name, &shown, &src).map(|mut s| {
        s.file = file.to_path_buf();
        s
    })
}

/// Parse a scenario called `name` from `src`; `shown` names the file in errors.
pub fn parse(name: &str, shown: &str, src: &str) -> Result<Scenario, ScenarioError> {
    let invalid = |span: Option<Range<usize>>, field: Option<String>, message: String| ScenarioError::Invalid {
        file: shown.to_string(),
        at: span.map(|s| Location::of(src, s.start)),
        field,
        message,
    };
    if !is_name(name) {
        return Err(invalid(None, None, format!("scenario name {name:?} (the file's name) must be letters, digits, `-` or `_`")));
    }
    let file: File = toml::from_str(src).map_err(|e| {
        let field = e.span().and_then(|s| field_at(src, s));
        invalid(e.span(), field, e.message().to_string())
    })?;
    for t in &file.selftest {
        hyp::config::parse(&format!("selftest={}", t.get_ref()))
            .map_err(|e| invalid(Some(t.span()), Some("selftest".into()), e.to_string()))?;
    }
    if let Some(p) = &file.pool_mib {
        hyp::config::parse(&format!("pool={}", p.get_ref()))
            .map_err(|e| invalid(Some(p.span()), Some("pool_mib".into()), e.to_string()))?;
    }
    let trace_span = file.trace.as_ref().map(|t| t.span());
    let trace = file.trace.map(|t| t.into_inner()).unwrap_or_default();
    if let Some(m) = trace.max_mib {
        hyp::config::parse(&format!("trace_max={m}"))
            .map_err(|e| invalid(trace_span.clone(), Some("trace.max_mib".into()), e.to_string()))?;
    }
    if file.vm.is_empty() {
        return Err(invalid(None, Some("vm".into()), "a scenario needs at least one [[vm]]".into()));
    }
    let names: Vec<&str> = file.vm.iter().map(|v| v.get_ref().name.as_str()).collect();
    let id_of = |n: &Spanned<String>, field: String| {
        names
            .iter()
            .position(|v| *v == n.get_ref())
            .map(|i| i as u16 + 1)
            .ok_or_else(|| invalid(Some(n.span()), Some(field), format!("no VM named {:?} (have: {})", n.get_ref(), names.join(", "))))
    };

    // Names first: checks refer to VMs by name.
    for (i, v) in file.vm.iter().enumerate() {
        let (span, field, name) = (Some(v.span()), Some(format!("vm{}.name", i + 1)), &v.get_ref().name);
        if !is_name(name) {
            return Err(invalid(span, field, format!("VM name {name:?} must be letters, digits, `-` or `_`")));
        }
        if names[..i].contains(&name.as_str()) {
            return Err(invalid(span, field, format!("a second VM named {name:?}")));
        }
    }

    let mut s = Scenario {
        name: name.to_string(),
        about: file.about,
        file: PathBuf::from(shown),
        vms: Vec::new(),
        pool_mib: file.pool_mib.map(|p| p.into_inner()),
        checks: Vec::new(),
        console: Vec::new(),
        timeout_s: file.stop.timeout_s,
        stop: file.stop.when,
        selftest: file.selftest.into_iter().map(Spanned::into_inner).collect(),
        machine: file.qemu,
        trace,
        dedup_rate: file.dedup.as_ref().map(|d| *d.pages_per_tick.get_ref()),
        reproducible: file.stop.reproducible.as_ref().is_some_and(|r| *r.get_ref()),
        input: file.input,
        swap_mib: file.swap.as_ref().map(|w| *w.mib.get_ref()),
        swap_faults: file.swap.as_ref().map_or_else(SwapFaults::default, |w| SwapFaults {
            read_slots: w.fail_read_slots.as_ref().map_or_else(Vec::new, |l| l.get_ref().clone()),
            write_slots: w.fail_write_slots.as_ref().map_or_else(Vec::new, |l| l.get_ref().clone()),
            all: w.fail_all,
        }),
    };
    if let Some(w) = &file.swap {
        let mib = *w.mib.get_ref();
        if !(1..=SWAP_MAX_MIB).contains(&mib) {
            return Err(invalid(Some(w.mib.span()), Some("swap.mib".into()), format!("{mib} MiB of swap: 1..={SWAP_MAX_MIB}")));
        }
        let slots = mib << 20 >> 12;
        for (field, list) in [("swap.fail_read_slots", &w.fail_read_slots), ("swap.fail_write_slots", &w.fail_write_slots)] {
            let Some(list) = list else { continue };
            if let Some(bad) = list.get_ref().iter().find(|&&s| s == 0 || u64::from(s) > slots) {
                return Err(invalid(Some(list.span()), Some(field.into()), format!("slot {bad}: the disk's slots are 1..={slots}")));
            }
        }
    }
    if let (true, false, Some(r)) = (s.reproducible, s.machine.icount, &file.stop.reproducible) {
        let span = Some(r.span());
        return Err(invalid(span, Some("stop.reproducible".into()), "a reproducible run needs `[qemu] icount = true`".into()));
    }
    if let Some(d) = &file.dedup {
        let rate = *d.pages_per_tick.get_ref();
        if !(1..=65536).contains(&rate) {
            return Err(invalid(Some(d.pages_per_tick.span()), Some("dedup.pages_per_tick".into()), format!("{rate} pages per tick: 1..=65536")));
        }
    }
    for (counter, &min) in &file.counters.at_least {
        s.console.push(ConsoleCheck::CounterAtLeast { counter: counter.clone(), min });
    }
    for (i, v) in file.vm.iter().enumerate() {
        let id = i as u16 + 1;
        let span = Some(v.span());
        let at = |f: &str| Some(format!("vm{id}.{f}"));
        let f = v.get_ref();
        let path_ok = |p: &str| !p.is_empty() && !p.contains(|c: char| c.is_whitespace() || c == ',');
        if f.kernel.is_none() && (f.initrd.is_some() || f.bootargs.is_some()) {
            let field = if f.initrd.is_some() { "initrd" } else { "bootargs" };
            return Err(invalid(span, at(field), "`initrd` and `bootargs` go with `kernel`".into()));
        }
        let image = match (&f.guest, &f.elf, &f.kernel) {
            (Some(g), None, None) if is_name(g) => Image::Guest(g.clone()),
            (Some(g), None, None) => return Err(invalid(span, at("guest"), format!("test guest {g:?} must be a name from guest/, not a path (use `elf` for a path)"))),
            (None, Some(p), None) if path_ok(p) => Image::Elf(p.clone()),
            (None, Some(p), None) => return Err(invalid(span, at("elf"), format!("ELF path {p:?} must be non-empty, without spaces or commas"))),
            (None, None, Some(k)) if path_ok(k) && f.initrd.as_deref().is_none_or(path_ok) => {
                Image::Linux { kernel: k.clone(), initrd: f.initrd.clone(), bootargs: f.bootargs.clone().unwrap_or_default() }
            }
            (None, None, Some(_)) => {
                let field = if f.kernel.as_deref().is_some_and(path_ok) { "initrd" } else { "kernel" };
                return Err(invalid(span, at(field), "kernel and initrd paths must be non-empty, without spaces or commas".into()));
            }
            _ => return Err(invalid(span, at("guest"), "give exactly one of `guest` (a test guest), `elf` (a path) and `kernel` (a Linux Image)".into())),
        };
        if f.clone_at.is_some() && f.clones == 0 {
            return Err(invalid(span, at("clone_at"), "a clone point needs `clones` (how many children, 1..=64)".into()));
        }
        if f.clone_at.as_deref() == Some("") {
            return Err(invalid(span, at("clone_at"), "the clone point's text must not be empty".into()));
        }
        let spec = VmSpec { name: f.name.clone(), image, ram_mib: f.ram_mib, cpus: f.vcpus, expect: f.expect, clones: f.clones, clone_at: f.clone_at.clone(), dedup: f.dedup, mem: MemClaim { min_mib: f.mem_min_mib, max_mib: f.mem_max_mib, shares: f.shares } };
        // The hypervisor's own limits on RAM and vCPUs.
        if spec.dedup && s.dedup_rate.is_none() {
            return Err(invalid(span, at("dedup"), "`dedup = true` needs a `[dedup]` table with the scanner's pages_per_tick".into()));
        }
        // The scan rate is the scenario's, checked on its own below.
        hyp::config::parse(&format!("dedup=1 {}", crate::qemu::vm_token(&spec))).map_err(|e| {
            let field = match e.to_string() {
                t if f.vcpus.is_some() && t.contains("vCPU") => "vcpus",
                t if t.contains("memory limit") => "mem_max_mib",
                t if t.contains("memory shares") => "shares",
                t if t.contains("memory") => "mem_min_mib",
                _ => "ram_mib",
            };
            invalid(span, at(field), e.to_string())
        })?;
        s.vms.push(spec);

        if let Some(Bounds { min, max }) = f.trace.ram_faults {
            s.checks.push(Check::RamFaults { vm: id, min, max });
        }
        for (case, &min) in &f.trace.cases {
            s.checks.push(Check::CaseAtLeast { vm: id, case: case.case(), min });
        }
        if !f.trace.family_cases.is_empty() && (f.clones == 0 || s.vms.iter().filter(|v| v.clones > 0).count() > 1) {
            return Err(invalid(Some(v.span()), at("trace.family_cases"), "needs `clones` on this VM, and on no other VM".into()));
        }
        for (case, &min) in &f.trace.family_cases {
            s.checks.push(Check::FamilyCaseAtLeast { vm: id, case: case.case(), min });
        }
        if let Some(min) = f.trace.vcpus {
            s.checks.push(Check::Vcpus { vm: id, min });
        }
        s.checks.extend(f.trace.aborts_at.iter().map(|&ipa| Check::AbortAt { vm: id, ipa }));
        if let Some(MmioBounds { min_accesses, max_records }) = f.trace.mmio {
            s.checks.push(Check::Mmio { vm: id, min_accesses, max_records });
        }
        for l in &f.console.lines {
            s.console.push(ConsoleCheck::GuestLine { vm: id, text: l.text.clone(), min: l.min });
        }
        for p in &f.console.at_most {
            s.console.push(ConsoleCheck::GuestLinesAtMost { vm: id, prefix: p.prefix.clone(), max: p.max });
        }
        for then in &f.console.stops_before {
            s.console.push(ConsoleCheck::StopsBefore { first: id, then: id_of(then, format!("vm{id}.console.stops_before"))? });
        }
    }
    s.console.extend(file.console.warnings.into_iter().map(|text| ConsoleCheck::Warning { text }));
    s.console.extend(file.console.no_warnings.into_iter().map(|text| ConsoleCheck::NoWarning { text }));
    if s.trace.capped {
        s.checks.push(Check::Capped);
    }
    if let Some(min) = s.trace.shared_pageins {
        s.checks.push(Check::SharedPageIns { min });
    }
    if !s.trace.enabled && !s.checks.is_empty() {
        let why = "a scenario with `trace.enabled = false` has no trace: remove its trace checks (`[vm.trace]`, `trace.capped`, `trace.shared_pageins`)";
        return Err(invalid(trace_span, Some("trace.enabled".into()), why.into()));
    }
    Ok(s)
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The dotted field an error span points into, as the file's reader thinks of it
/// (`vm2.trace.ram_faults.max`): the table header above the span (`[[vm]]` counted, 1-based like
/// VM ids), then the keys open on the span's line before it, then the key the span is on, if any.
fn field_at(src: &str, span: Range<usize>) -> Option<String> {
    let start = span.start.min(src.len());
    let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
    let mut path = Vec::new();
    // The last header at or above the span's line; `[[vm]]` headers up to it give the VM's id.
    let line_end = src[start..].find('\n').map_or(src.len(), |i| start + i);
    let mut vms = 0;
    let mut header: Option<&str> = None;
    for line in src[..line_end].lines() {
        let t = line.trim();
        if t.starts_with("[[vm]]") {
            vms += 1;
        }
        if t.starts_with('[') {
            header = Some(t);
        }
    }
    if let Some(h) = header {
        let h = h.split('#').next().unwrap_or("").trim().trim_start_matches('[').trim_end_matches(']');
        let mut parts = h.split('.').map(str::trim);
        match parts.next() {
            Some("vm") => path.push(format!("vm{vms}")),
            Some(p) => path.push(p.to_string()),
            None => {}
        }
        path.extend(parts.map(str::to_string));
    }
    let on_header = src[line_start..].trim_start().starts_with('[');
    if !on_header {
        path.extend(open_keys(&src[line_start..start]));
        // The span is on a key itself (an unknown field): name it too.
        let rest = &src[start..];
        let key: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect();
        if !key.is_empty() && rest[key.len()..].trim_start().starts_with('=') {
            path.push(key);
        }
    }
    (!path.is_empty()).then(|| path.join("."))
}

/// The keys whose values are still open at the end of `line` (a prefix of one TOML line):
/// `a = { b = [{ c = ` gives `a`, `b`, `c`.
fn open_keys(line: &str) -> Vec<String> {
    let mut open: Vec<(usize, String)> = Vec::new();
    let mut depth = 0;
    let mut word = String::new();
    // Whitespace ends a word: the next character starts a new one.
    let mut gap = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                // A quoted key or a string value: its text is the word (escapes do not matter here).
                word.clear();
                let mut escaped = false;
                for q in chars.by_ref() {
                    if q == c && !(escaped && c == '"') {
                        break;
                    }
                    escaped = q == '\\' && !escaped;
                    word.push(q);
                }
            }
            '=' => {
                open.retain(|(d, _)| *d < depth);
                open.push((depth, std::mem::take(&mut word)));
            }
            '{' | '[' => {
                depth += 1;
                word.clear();
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                open.retain(|(d, _)| *d <= depth);
                word.clear();
            }
            ',' => {
                open.retain(|(d, _)| *d < depth);
                word.clear();
            }
            '#' => break,
            c if c.is_whitespace() => gap = true,
            c => {
                if std::mem::take(&mut gap) {
                    word.clear();
                }
                word.push(c);
            }
        }
    }
    open.into_iter().map(|(_, k)| k).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> String {
        parse("bad", "scenarios/bad.toml", src).map(|_| ()).unwrap_err().to_string()
    }

    #[test]
    fn a_memory_claim_reaches_the_hypervisor_line_and_is_checked() {
        let base = "about = \"x\"\n[stop]\ntimeout_s = 1\n[[vm]]\nname = \"t\"\nguest = \"touch\"\nram_mib = 32\n";
        let s = parse("ok", "x.toml", &format!("{base}mem_min_mib = 16\nshares = 500\n")).unwrap();
        assert_eq!(s.vms[0].mem, MemClaim { min_mib: Some(16), max_mib: None, shares: Some(500) });
        assert!(crate::qemu::append(&s, "t").ends_with(",ram=32,min=16,shares=500"));
        assert!(err(&format!("{base}mem_min_mib = 33\n")).contains("field `vm1.mem_min_mib`"));
        assert!(err(&format!("{base}mem_min_mib = 8\nmem_max_mib = 4\n")).contains("field `vm1.mem_min_mib`"));
        assert!(err(&format!("{base}mem_max_mib = 0\n")).contains("field `vm1.mem_max_mib`"));
        assert!(err(&format!("{base}shares = 0\n")).contains("field `vm1.shares`"));
    }

    #[test]
    fn a_clone_point_needs_clones_and_reaches_the_hypervisor_line() {
        let base = "about = \"x\"\n[stop]\ntimeout_s = 1\n[[vm]]\nname = \"t\"\nguest = \"touch\"\n";
        assert!(err(&format!("{base}clone_at = \"go\"\n")).contains("needs `clones`"));
        assert!(err(&format!("{base}clones = 2\nclone_at = \"\"\n")).contains("must not be empty"));
        assert!(err(&format!("{base}clones = 65\nclone_at = \"go\"\n")).contains("clone count"));
        let s = parse("ok", "x.toml", &format!("{base}clones = 4\nclone_at = \"uvmhyp-linux: clone-point\"\n")).unwrap();
        assert_eq!(s.vms[0].clone_at.as_deref(), Some("uvmhyp-linux: clone-point"));
        assert!(crate::qemu::append(&s, "t").contains(",clones=4,clone_at=uvmhyp-linux:%20clone-point"));
    }

    #[test]
    fn dedup_needs_its_table_and_a_rate_in_range() {
        let vm = "\n[[vm]]\nname = \"a\"\nguest = \"touch\"\ndedup = true\n";
        let base = "about = \"x\"\n[stop]\ntimeout_s = 1\n";
        assert!(err(&format!("{base}{vm}")).contains("needs a `[dedup]` table"));
        assert!(err(&format!("{base}[dedup]\npages_per_tick = 0\n{vm}")).contains("dedup.pages_per_tick"));
        let s = parse("ok", "x.toml", &format!("{base}[dedup]\npages_per_tick = 64\n[counters]\nat_least = {{ dedup_merged = 5 }}\n{vm}")).unwrap();
        assert_eq!((s.dedup_rate, s.vms[0].dedup), (Some(64), true));
        assert!(s.console.contains(&ConsoleCheck::CounterAtLeast { counter: "dedup_merged".into(), min: 5 }));
        assert!(crate::qemu::append(&s, "t").contains("dedup=64 vm=a:") && crate::qemu::append(&s, "t").ends_with(",dedup"));
    }

    #[test]
    fn swap_asks_for_a_disk_in_range_and_the_runner_attaches_it() {
        let base = "about = \"x\"\n[stop]\ntimeout_s = 1\n[[vm]]\nname = \"a\"\nguest = \"touch\"\n";
        assert_eq!(parse("ok", "x.toml", base).unwrap().swap_mib, None);
        assert_eq!(parse("ok", "x.toml", &format!("{base}[swap]\nmib = 512\n")).unwrap().swap_mib, Some(512));
        assert!(err(&format!("{base}[swap]\nmib = 0\n")).contains("swap.mib"));
        assert!(err(&format!("{base}[swap]\nmib = 16385\n")).contains("swap.mib"));
        let f = parse("ok", "x.toml", &format!("{base}[swap]\nmib = 1\nfail_read_slots = [1, 256]\nfail_write_slots = [2]\n")).unwrap();
        assert_eq!(f.swap_faults, SwapFaults { read_slots: vec![1, 256], write_slots: vec![2], all: false });
        assert!(err(&format!("{base}[swap]\nmib = 1\nfail_read_slots = [257]\n")).contains("swap.fail_read_slots"));
        assert!(err(&format!("{base}[swap]\nmib = 1\nfail_write_slots = [0]\n")).contains("swap.fail_write_slots"));
        assert!(parse("ok", "x.toml", &format!("{base}[swap]\nmib = 1\nfail_all = true\n")).unwrap().swap_faults.all);
        let oom = parse("ok", "x.toml", &base.replace("\"touch\"\n", "\"touch\"\nexpect = { crashed = \"out-of-memory\" }\n")).unwrap();
        assert_eq!(oom.vms[0].expect, crate::scenarios::Expect::Crashed(crate::scenarios::CrashCause(hyp::stop::Cause::OutOfMemory)));
        assert!(err(&base.replace("\"touch\"\n", "\"touch\"\nexpect = { crashed = \"tired\" }\n")).contains("no crash cause"));
        let args = crate::qemu::swap_args("run/swap.img", None).join(" ");
        assert_eq!(args, "-drive if=none,file=run/swap.img,format=raw,id=swap -device virtio-blk-device,drive=swap");
    }

    const GOOD: &str = r#"
about = "x"
pool_mib = 32
[qemu]
smp = 2
[stop]
timeout_s = 5
[[vm]]
name = "a"
guest = "touch"
ram_mib = 72
[vm.trace]
ram_faults = { min = 1, max = 2 }
cases = { "2B-zero" = 3, "1A" = 4 }
aborts_at = [0x2000_0000]
[vm.console]
stops_before = ["b"]
[[vm]]
name = "b"
elf = "somewhere/else.elf"
vcpus = 2
expect = "crash"
[vm.console]
lines = [{ text = 'a\x0ab' }, { text = "c", min = 3 }]
"#;

    #[test]
    fn a_good_file_becomes_its_scenario() {
        let s = parse("good", "good.toml", GOOD).unwrap();
        assert_eq!((s.name.as_str(), s.about.as_str(), s.pool_mib, s.timeout_s), ("good", "x", Some(32), 5));
        assert_eq!(s.machine, Machine { smp: 2, ..Machine::default() });
        assert_eq!(
            s.vms,
            [
                VmSpec { name: "a".into(), image: Image::Guest("touch".into()), ram_mib: Some(72), cpus: None, expect: Expect::Exit(0), clones: 0, clone_at: None, dedup: false, mem: Default::default() },
                VmSpec { name: "b".into(), image: Image::Elf("somewhere/else.elf".into()), ram_mib: None, cpus: Some(2), expect: Expect::Crash, clones: 0, clone_at: None, dedup: false, mem: Default::default() },
            ]
        );
        assert_eq!(
            s.checks,
            [
                Check::RamFaults { vm: 1, min: 1, max: 2 },
                Check::CaseAtLeast { vm: 1, case: FaultCase::Anon1A, min: 4 },
                Check::CaseAtLeast { vm: 1, case: FaultCase::Zero2B, min: 3 },
                Check::AbortAt { vm: 1, ipa: 0x2000_0000 },
            ]
        );
        assert_eq!(
            s.console,
            [
                ConsoleCheck::StopsBefore { first: 1, then: 2 },
                ConsoleCheck::GuestLine { vm: 2, text: r"a\x0ab".into(), min: 1 },
                ConsoleCheck::GuestLine { vm: 2, text: "c".into(), min: 3 },
            ]
        );
    }

    #[test]
    fn the_documented_example_parses() {
        let doc = std::fs::read_to_string(crate::qemu::root().join("scenarios/README.md")).unwrap();
        let example = doc.split("```toml\n").nth(1).and_then(|b| b.split("```").next()).expect("a toml block");
        let s = parse("example", "scenarios/README.md", example).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.vms.len(), 2);
        assert_eq!(s.machine, Machine::default());
    }

    #[test]
    fn a_wrong_type_names_line_and_field() {
        let src = GOOD.replace("ram_mib = 72", "ram_mib = \"lots\"");
        let e = err(&src);
        assert!(e.starts_with("scenarios/bad.toml:11:11: field `vm1.ram_mib`: invalid type: string \"lots\", expected u64"), "{e}");
        assert!(e.ends_with("    | ram_mib = \"lots\""), "{e}");
    }

    #[test]
    fn an_unknown_field_is_refused_with_its_line() {
        let e = err(&GOOD.replace("vcpus = 2", "vcpu = 2"));
        assert!(e.starts_with("scenarios/bad.toml:21:1: field `vm2.vcpu`: unknown field `vcpu`, expected one of"), "{e}");
        let e = err(&GOOD.replace("[qemu]\nsmp = 2", "[qemu]\nsmp = 2\nkvm = true"));
        assert!(e.starts_with("scenarios/bad.toml:6:1: field `qemu.kvm`: unknown field `kvm`"), "{e}");
        let e = err(&GOOD.replace("pool_mib = 32", "pool = 32"));
        assert!(e.starts_with("scenarios/bad.toml:3:1: field `pool`: unknown field `pool`"), "{e}");
    }

    #[test]
    fn a_bad_value_inside_an_inline_table_names_its_key() {
        let e = err(&GOOD.replace("max = 2 }", "max = -2 }"));
        assert!(e.starts_with("scenarios/bad.toml:13:"), "{e}");
        assert!(e.contains("field `vm1.trace.ram_faults.max`: invalid value: integer `-2`"), "{e}");
        let e = err(&GOOD.replace("\"1A\" = 4", "\"1C\" = 4"));
        assert!(e.contains("unknown fault case `1C`, expected one of 0, 1A, 1B, 2A, 2B-copy, 2B-zero, pgo_fault"), "{e}");
        assert!(e.starts_with("scenarios/bad.toml:14:"), "{e}");
        let e = err(&GOOD.replace("min = 3 }", "mn = 3 }"));
        assert!(e.starts_with("scenarios/bad.toml:24:") && e.contains("field `vm2.console.lines.mn`: unknown field `mn`"), "{e}");
    }

    #[test]
    fn missing_fields_and_bad_references_are_errors_with_a_place() {
        let e = err(&GOOD.replace("[stop]\ntimeout_s = 5\n", ""));
        assert!(e.contains("missing field `stop`"), "{e}");
        let e = err(&GOOD.replace("stops_before = [\"b\"]", "stops_before = [\"c\"]"));
        assert!(e.starts_with("scenarios/bad.toml:17:17: field `vm1.console.stops_before`: no VM named \"c\" (have: a, b)"), "{e}");
        let e = err(&GOOD.replace("elf = \"somewhere/else.elf\"\n", ""));
        assert!(e.contains("field `vm2.guest`: give exactly one of `guest`"), "{e}");
        let e = err(&GOOD.replace("name = \"b\"", "name = \"a\""));
        assert!(e.contains("field `vm2.name`: a second VM named \"a\""), "{e}");
        let e = err(&GOOD.replace("vcpus = 2", "vcpus = 9"));
        assert!(e.contains("field `vm2.vcpus`: ") && e.contains("vCPU count"), "{e}");
        let e = err(&GOOD.replace("ram_mib = 72", "ram_mib = 0"));
        assert!(e.contains("field `vm1.ram_mib`: ") && e.contains("ram size"), "{e}");
        let e = err(&GOOD.replace("pool_mib = 32", "pool_mib = 0"));
        assert!(e.starts_with("scenarios/bad.toml:3:12: field `pool_mib`:"), "{e}");
        let e = err(&GOOD.replace("expect = \"crash\"", "expect = \"exploded\""));
        assert!(e.starts_with("scenarios/bad.toml:22:") && e.contains("field `vm2.expect`"), "{e}");
        assert!(err("about = ").starts_with("scenarios/bad.toml:1:"), "{}", err("about = "));
        assert!(parse("no good", "x.toml", GOOD).is_err());
    }

    #[test]
    fn trace_settings_are_checked() {
        let with = |table: &str| GOOD.replace("[stop]\n", &format!("[trace]\n{table}\n[stop]\n"));
        let e = err(&with("max_mib = 0"));
        assert!(e.contains("field `trace.max_mib`") && e.contains("trace size cap"), "{e}");
        let e = err(&with("enabled = false"));
        assert!(e.contains("field `trace.enabled`") && e.contains("remove its trace checks"), "{e}");
        let e = err(&with("cap = 3"));
        assert!(e.contains("unknown field `cap`"), "{e}");
        let s = parse("good", "good.toml", &with("max_mib = 2\ncapped = true")).unwrap();
        assert_eq!((s.trace.max_mib, s.trace.capped), (Some(2), true));
        assert!(s.checks.contains(&Check::Capped));
    }
}
