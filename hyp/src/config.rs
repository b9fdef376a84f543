//! The scenario: QEMU's `-append` string (read through semihosting SYS_GET_CMDLINE), parsed per
//! README's "The QEMU line" (`-append` tokens), and the guest images it names (read through semihosting, loaded by
//! [`crate::loader`]).
//!
//! Grammar (space-separated tokens, any order; [`expand`] first replaces a `scenario=PATH` token
//! by the tokens in that host file, for scenarios longer than a command line):
//! - `trace=PATH` — host path of the trace file (default [`DEFAULT_TRACE`]); `trace=off`: no trace
//!   at all (nothing recorded, nothing written: the benchmark's baseline);
//! - `dedup=PAGES` — run the content-dedup scanner (`vm::dedup`) on idle CPU time, PAGES pages a
//!   tick, over the VMs with the `,dedup` option;
//! - `account=MS` — the period of the memory accounting pass (`vm::account`: a trace record per
//!   VM and the global savings, [`DEFAULT_ACCOUNT_MS`] by default), in milliseconds of host
//!   counter time; `account=off`: no periodic pass (still one at each VM stop and at the end);
//! - `trace_max=MIB` — the trace file's size cap in MiB (default [`DEFAULT_TRACE_MAX_MIB`]): when
//!   reached, the trace ends with a "capped" record and tracing stops;
//! - `pool=MIB` — size of the guest page pool in MiB (default: all free RAM);
//! - `vm=NAME:PATH[,ram=MIB][,cpus=N]` — one VM booting a guest ELF; RAM default 64 MiB, vCPUs
//!   default 1;
//! - `linux=NAME:KERNEL[,initrd=PATH][,append=ARGS][,ram=MIB][,cpus=N]` — one VM booting a Linux
//!   `Image` (`crate::linux_boot`); ARGS is the kernel command line, percent-encoded (`%20` a
//!   space, `%2C` a comma, `%25` a percent sign: any byte as `%XX`).
//! - a VM's `clones=N,clone_at=TEXT` — the scenario's clone point: at the first console line
//!   of the VM containing TEXT (percent-encoded as `append=`), the hypervisor pauses all its
//!   vCPUs and clones it into N children (1..=64; `virt::pause`);
//! - a VM's `min=MIB`, `max=MIB`, `shares=N` — its claim on the page pool (`vm::share`: a
//!   reservation, a limit, a weight, as VMware ESX's); when any VM has one, every VM takes part,
//!   the others with `vm::share::MemShare::normal`;
//! - `selftest=NAME` — a test hook for the scenarios ([`crate::selftest`]; none by default).
//!
//! VM ids are 1, 2, … in command-line order, at most [`MAX_VMS`] of them (the id is the VM's
//! 8-bit VMID). VMs naming the same PATH share one image
//! (`Arc::ptr_eq` holds between their `image`s). Any error is the user's: boot prints it and
//! exits QEMU with status 2.

use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use vm::Ipa;

use crate::limits::LimitError;
use crate::linux_boot::{self, BootImage, LinuxError, Segment};
use crate::loader::{self, ElfError};
pub use crate::platform::{MAX_RAM_MIB, MAX_VCPUS, MAX_VMS, RAM_BASE};
use crate::selftest::{SelfTest, SelfTests};

/// Trace file used when the command line has no `trace=`.
pub const DEFAULT_TRACE: &str = "target/uvmhyp.trace";
/// The trace file's size cap when the command line has no `trace_max=` (MiB).
pub const DEFAULT_TRACE_MAX_MIB: u64 = 256;
/// The accounting period used when the command line has no `account=` (see `virt::account` for
/// what one pass costs).
pub const DEFAULT_ACCOUNT_MS: u64 = 100;
/// Largest `trace_max=` (MiB): 1 TiB.
pub const MAX_TRACE_MAX_MIB: u64 = 1 << 20;
/// Guest RAM when `vm=` has no `ram=` (MiB).
pub const DEFAULT_RAM_MIB: u64 = 64;
const _: () = assert!(RAM_BASE + MAX_RAM_MIB * MIB <= vm::pmap::Stage2::IPA_LIMIT);
const _: () = assert!(MAX_VMS == vm::pmap::Stage2::MAX_VMID as usize);

const MIB: u64 = 1 << 20;

/// One VM of the scenario.
#[derive(Clone)]
pub struct VmConfig {
    /// Name given on the command line (used in reports: `vm1 (name)`).
    pub name: String,
    /// Host path of the guest ELF or kernel (for reports; files with equal paths are shared).
    pub path: String,
    /// The VM's initial memory and vCPU 0's entry: for an ELF, its flattened image at RAM base;
    /// for Linux, kernel, device tree and initrd. Segments of files with equal paths share their
    /// bytes (`Arc::ptr_eq`), so they become one image object.
    pub boot: BootImage,
    /// The VM has a GICv3 (Linux VMs; test guests run without interrupts).
    pub irqchip: bool,
    /// Its pages are offered to the dedup scanner.
    pub dedup: bool,
    /// Its clone point, if the scenario clones it.
    pub clone: Option<ClonePoint>,
    /// Guest RAM size in bytes (a multiple of 1 MiB, ≥ the image).
    pub ram_bytes: u64,
    /// Number of vCPUs (only vCPU 0 runs until PSCI CPU_ON).
    pub cpus: u32,
    /// Its claim on the page pool (`min=`, `max=`, `shares=`), if it has one.
    pub share: Option<vm::share::MemShare>,
}

/// The whole scenario, handed to `virt::start`.
#[derive(Clone)]
pub struct Config {
    /// Host path of the trace file; `None`: `trace=off`.
    pub trace_path: Option<String>,
    /// The trace file's size cap in bytes.
    pub trace_max_bytes: u64,
    /// VMs in id order (vm1 = `vms[0]`).
    pub vms: Vec<VmConfig>,
    /// `pool=` in bytes, if given (boot has already applied it to the pool range).
    pub pool_limit: Option<u64>,
    /// The `selftest=` hooks.
    pub selftest: SelfTests,
    /// The dedup scanner's pages per tick, if it runs.
    pub dedup_rate: Option<u64>,
    /// `account=`: the accounting period in ms (`None`: off).
    pub account_ms: Option<u64>,
}

/// A VM as written on the command line, before its image is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    pub name: String,
    pub path: String,
    pub ram_bytes: u64,
    pub cpus: u32,
    pub kind: Kind,
    /// `,dedup`: its pages are merged with identical ones (needs `dedup=`).
    pub dedup: bool,
    /// `,clones=N,clone_at=TEXT`: the scenario clones it at a console line.
    pub clone: Option<ClonePoint>,
    /// `,min=MIB,max=MIB,shares=N` (any of them): its claim on the page pool.
    pub share: Option<vm::share::MemShare>,
}

/// Where the scenario clones a VM: at its first console line containing `at`, into `children`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClonePoint {
    pub at: Vec<u8>,
    pub children: u32,
}

/// What a VM boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A guest ELF (`vm=`).
    Elf,
    /// A Linux `Image` (`linux=`).
    Linux { initrd: Option<String>, bootargs: Vec<u8> },
}

/// The command line, parsed but with no file read yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    pub trace_path: Option<String>,
    pub trace_max_bytes: u64,
    pub pool_limit: Option<u64>,
    pub vms: Vec<VmSpec>,
    pub selftest: SelfTests,
    /// `dedup=PAGES`: the scanner's pages per tick (`None`: no scanner).
    pub dedup_rate: Option<u64>,
    /// `account=MS`: the accounting period (`None`: `account=off`).
    pub account_ms: Option<u64>,
}

/// What is wrong with the scenario (always the user's mistake).
#[derive(Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A token that is not `trace=`, `pool=` or `vm=`.
    UnknownToken(String),
    /// A `selftest=` name that is no hook.
    UnknownSelfTest(String),
    /// A `vm=` option other than `ram=` / `cpus=`.
    UnknownOption { token: String, option: String },
    /// More `vm=` tokens than [`MAX_VMS`].
    TooManyVms { count: usize },
    /// A number that does not parse or is out of range.
    BadNumber { token: String, what: &'static str, range: &'static str },
    /// A `key=` with nothing after it, or `vm=` without `NAME:PATH`.
    Missing { token: String, what: &'static str },
    /// The command line is not UTF-8 or could not be read.
    Cmdline,
    /// The guest file could not be read through semihosting.
    File { vm: String, path: String, why: String },
    /// The guest file is not a loadable AArch64 ELF for its VM.
    Elf { vm: String, path: String, why: ElfError },
    /// The kernel, initrd or command line cannot make a Linux boot image for its VM.
    Linux { vm: String, path: String, why: LinuxError },
    /// `append=` with a `%` not followed by two hex digits.
    BadEscape { token: String },
    /// The guest file is larger than the heap has room for (checked before reading it).
    FileTooBig { vm: String, path: String, bytes: u64, max: u64 },
    /// The VMs do not fit the heap or the page pool ([`crate::limits`]).
    Limit(LimitError),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownToken(t) => {
                write!(f, "unknown token `{t}` (expected trace=PATH|off, trace_max=MIB, pool=MIB, vm=NAME:PATH[,ram=MIB][,cpus=N], linux=NAME:KERNEL[,initrd=PATH][,append=ARGS][,ram=MIB][,cpus=N] or selftest=NAME)")
            }
            ConfigError::UnknownSelfTest(name) => {
                write!(f, "unknown test hook `selftest={name}` (expected one of:")?;
                SelfTest::names().try_for_each(|n| write!(f, " {n}"))?;
                write!(f, ")")
            }
            ConfigError::UnknownOption { token, option } => {
                write!(f, "in `{token}`: unknown option `{option}` (expected ram=MIB, cpus=N, dedup, min=MIB, max=MIB, shares=N, clones=N with clone_at=TEXT; initrd=PATH or append=ARGS for linux=)")
            }
            ConfigError::TooManyVms { count } => write!(f, "{count} VMs (at most {MAX_VMS})"),
            ConfigError::BadNumber { token, what, range } => {
                write!(f, "in `{token}`: bad {what} (expected a decimal number in {range})")
            }
            ConfigError::Missing { token, what } => write!(f, "in `{token}`: missing {what}"),
            ConfigError::Cmdline => write!(f, "cannot read the command line (semihosting SYS_GET_CMDLINE)"),
            ConfigError::File { vm, path, why } => write!(f, "vm `{vm}`: cannot read `{path}`: {why}"),
            ConfigError::Elf { vm, path, why } => write!(f, "vm `{vm}`: `{path}`: {why}"),
            ConfigError::Linux { vm, path, why } => write!(f, "vm `{vm}`: `{path}`: {why}"),
            ConfigError::BadEscape { token } => write!(f, "in `{token}`: `%` must be followed by two hex digits"),
            ConfigError::FileTooBig { vm, path, bytes, max } => {
                write!(f, "vm `{vm}`: `{path}` is {bytes} bytes, more than the {max} bytes of hypervisor heap left to read it")
            }
            ConfigError::Limit(e) => write!(f, "{e}"),
        }
    }
}

fn number(token: &str, text: &str, what: &'static str, range: &'static str, min: u64, max: u64) -> Result<u64, ConfigError> {
    let bad = || ConfigError::BadNumber { token: token.to_string(), what, range };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let v: u64 = text.parse().map_err(|_| bad())?;
    if v < min || v > max {
        return Err(bad());
    }
    Ok(v)
}

/// `bytes` as an `append=` value: `%XX` for every byte but letters, digits and `-_.~/=:+@`
/// (what `tools` writes; [`unescape`] reads it back).
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-_.~/=:+@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&alloc::format!("%{b:02X}"));
        }
    }
    out
}

/// `%XX`-decoded bytes of an `append=` value.
fn unescape(token: &str, v: &str) -> Result<Vec<u8>, ConfigError> {
    let bad = || ConfigError::BadEscape { token: token.to_string() };
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).and_then(|h| core::str::from_utf8(h).ok()).ok_or_else(bad)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Parses one `vm=` (`linux` false) or `linux=` value (`NAME:PATH[,option…]`); `token` is the
/// whole token for errors.
fn parse_vm(token: &str, value: &str, linux: bool) -> Result<VmSpec, ConfigError> {
    let mut parts = value.split(',');
    let head = parts.next().unwrap_or("");
    let (name, path) = head
        .split_once(':')
        .ok_or_else(|| ConfigError::Missing { token: token.to_string(), what: "NAME:PATH" })?;
    if name.is_empty() {
        return Err(ConfigError::Missing { token: token.to_string(), what: "VM name" });
    }
    if path.is_empty() {
        return Err(ConfigError::Missing { token: token.to_string(), what: "guest ELF path" });
    }
    let kind = if linux { Kind::Linux { initrd: None, bootargs: Vec::new() } } else { Kind::Elf };
    let mut spec = VmSpec { name: name.to_string(), path: path.to_string(), ram_bytes: DEFAULT_RAM_MIB * MIB, cpus: 1, kind, dedup: false, clone: None, share: None };
    let (mut children, mut at) = (None, None);
    let (mut min, mut max, mut shares) = (None, None, None);
    for opt in parts {
        match (opt.split_once('='), &mut spec.kind) {
            (Some(("clones", v)), _) => children = Some(number(token, v, "clone count", "1..=64", 1, crate::calls::MAX_CLONES)? as u32),
            (Some(("clone_at", v)), _) if !v.is_empty() => at = Some(unescape(token, v)?),
            (Some(("ram", v)), _) => spec.ram_bytes = number(token, v, "ram size in MiB", "1..=3072", 1, MAX_RAM_MIB)? * MIB,
            (Some(("cpus", v)), _) => spec.cpus = number(token, v, "vCPU count", "1..=8", 1, MAX_VCPUS as u64)? as u32,
            (None, _) if opt == "dedup" => spec.dedup = true,
            (Some(("min", v)), _) => min = Some(number(token, v, "memory reservation in MiB", "0..=3072", 0, MAX_RAM_MIB)?),
            (Some(("max", v)), _) => max = Some(number(token, v, "memory limit in MiB", "1..=3072", 1, MAX_RAM_MIB)?),
            (Some(("shares", v)), _) => shares = Some(number(token, v, "memory shares", "1..=1000000", 1, 1_000_000)? as u32),
            (Some(("initrd", p)), Kind::Linux { initrd, .. }) if !p.is_empty() => *initrd = Some(p.to_string()),
            (Some(("append", v)), Kind::Linux { bootargs, .. }) => *bootargs = unescape(token, v)?,
            _ => return Err(ConfigError::UnknownOption { token: token.to_string(), option: opt.to_string() }),
        }
    }
    if min.is_some() || max.is_some() || shares.is_some() {
        let frames = |mib: u64| (mib * MIB / vm::PAGE_SIZE) as usize;
        let ram_mib = spec.ram_bytes / MIB;
        if min.is_some_and(|m| m > ram_mib) || max.is_some_and(|m| m < min.unwrap_or(0)) {
            return Err(ConfigError::BadNumber { token: token.to_string(), what: "memory claim", range: "min <= max, min <= ram" });
        }
        let normal = vm::share::MemShare::normal(frames(ram_mib));
        spec.share = Some(vm::share::MemShare { min: frames(min.unwrap_or(0)), max: max.map(frames), shares: shares.unwrap_or(normal.shares) });
    }
    spec.clone = match (at, children) {
        (Some(at), Some(children)) => Some(ClonePoint { at, children }),
        (None, None) => None,
        (None, Some(_)) => return Err(ConfigError::Missing { token: token.to_string(), what: "clone_at=TEXT (the console line to clone at)" }),
        (Some(_), None) => return Err(ConfigError::Missing { token: token.to_string(), what: "clones=N (how many children)" }),
    };
    Ok(spec)
}

/// The command line with a `scenario=PATH` token replaced by the host file's contents (more
/// tokens of the same grammar, any whitespace between them): a scenario of any length, where
/// QEMU's `-append` and the hypervisor's command-line buffer are bounded. One such file, which
/// names no other; it must fit the `max` bytes of heap left.
pub fn expand(cmdline: &str, files: &mut impl GuestFiles, max: u64) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(cmdline.len());
    let mut seen = false;
    for token in cmdline.split_ascii_whitespace() {
        let Some(path) = token.strip_prefix("scenario=") else {
            out.push_str(token);
            out.push(' ');
            continue;
        };
        let err = |why: String| ConfigError::File { vm: "(scenario)".to_string(), path: path.to_string(), why };
        if seen {
            return Err(err("a second scenario= token".to_string()));
        }
        seen = true;
        let len = files.len(path).map_err(err)?;
        if len > max {
            return Err(ConfigError::FileTooBig { vm: "(scenario)".to_string(), path: path.to_string(), bytes: len, max });
        }
        let bytes = files.read(path).map_err(err)?;
        let text = core::str::from_utf8(&bytes).map_err(|_| err("not UTF-8".to_string()))?;
        if text.split_ascii_whitespace().any(|t| t.starts_with("scenario=")) {
            return Err(err("it names another scenario= file".to_string()));
        }
        out.push_str(text);
        out.push(' ');
    }
    Ok(out)
}

/// Parses the command line (no file access).
///
/// A first token without `=` is skipped: QEMU's SYS_GET_CMDLINE puts the `-kernel` file name in
/// front of the `-append` text.
pub fn parse(cmdline: &str) -> Result<Scenario, ConfigError> {
    let mut sc = Scenario {
        trace_path: Some(DEFAULT_TRACE.to_string()),
        trace_max_bytes: DEFAULT_TRACE_MAX_MIB * MIB,
        pool_limit: None,
        vms: Vec::new(),
        selftest: SelfTests::default(),
        dedup_rate: None,
        account_ms: Some(DEFAULT_ACCOUNT_MS),
    };
    for (i, token) in cmdline.split_ascii_whitespace().enumerate() {
        let Some((key, value)) = token.split_once('=') else {
            if i == 0 {
                continue;
            }
            return Err(ConfigError::UnknownToken(token.to_string()));
        };
        match key {
            "trace" if value.is_empty() => {
                return Err(ConfigError::Missing { token: token.to_string(), what: "trace file path" })
            }
            "trace" if value == "off" => sc.trace_path = None,
            "trace" => sc.trace_path = Some(value.to_string()),
            "trace_max" => {
                sc.trace_max_bytes = number(token, value, "trace size cap in MiB", "1..=1048576", 1, MAX_TRACE_MAX_MIB)? * MIB
            }
            "dedup" => sc.dedup_rate = Some(number(token, value, "dedup scan rate in pages per tick", "1..=65536", 1, 65536)?),
            "account" if value == "off" => sc.account_ms = None,
            "account" => sc.account_ms = Some(number(token, value, "accounting period in ms", "1..=3600000", 1, 3_600_000)?),
            "pool" => sc.pool_limit = Some(number(token, value, "pool size in MiB", "1..=1048576", 1, 1 << 20)? * MIB),
            "vm" => sc.vms.push(parse_vm(token, value, false)?),
            "linux" => sc.vms.push(parse_vm(token, value, true)?),
            "selftest" => match SelfTest::named(value) {
                Some(t) => sc.selftest = sc.selftest.with(t),
                None => return Err(ConfigError::UnknownSelfTest(value.to_string())),
            },
            _ => return Err(ConfigError::UnknownToken(token.to_string())),
        }
    }
    if sc.vms.len() > MAX_VMS {
        return Err(ConfigError::TooManyVms { count: sc.vms.len() });
    }
    if sc.dedup_rate.is_none() {
        if let Some(v) = sc.vms.iter().find(|v| v.dedup) {
            return Err(ConfigError::Missing { token: alloc::format!("vm {},dedup", v.name), what: "dedup=PAGES (the scanner's rate)" });
        }
    }
    Ok(sc)
}

/// How [`resolve`] reads a guest file: its length (`Err(why)` when it cannot be opened), then
/// its bytes.
pub trait GuestFiles {
    fn len(&mut self, path: &str) -> Result<u64, String>;
    fn read(&mut self, path: &str) -> Result<Vec<u8>, String>;
}

/// One distinct host file read for the scenario, and (for an ELF) its flattened image.
struct File {
    path: String,
    bytes: Arc<[u8]>,
    elf: Option<loader::Image>,
}

/// The index in `files` of `path`, read through `files_in` the first time (its length checked
/// against the `left` bytes of heap first).
fn read_once(files: &mut Vec<File>, files_in: &mut impl GuestFiles, vm: &str, path: &str, left: &mut u64) -> Result<usize, ConfigError> {
    if let Some(i) = files.iter().position(|f| f.path == path) {
        return Ok(i);
    }
    let file_err = |why| ConfigError::File { vm: vm.to_string(), path: path.to_string(), why };
    let len = files_in.len(path).map_err(file_err)?;
    if len > *left {
        return Err(ConfigError::FileTooBig { vm: vm.to_string(), path: path.to_string(), bytes: len, max: *left });
    }
    let bytes = files_in.read(path).map_err(file_err)?;
    *left -= len;
    files.push(File { path: path.to_string(), bytes: bytes.into(), elf: None });
    Ok(files.len() - 1)
}

/// Reads every VM's files from `files` (each distinct path once) and builds the [`Config`]. The
/// files, the flattened images and the device trees are held on the heap, which has
/// `heap_free` bytes: each is checked against what is left before it is allocated.
pub fn resolve(sc: Scenario, heap_free: u64, files_in: &mut impl GuestFiles) -> Result<Config, ConfigError> {
    let mut left = heap_free;
    let mut files: Vec<File> = Vec::new();
    let mut vms = Vec::with_capacity(sc.vms.len());
    for spec in sc.vms {
        let idx = read_once(&mut files, files_in, &spec.name, &spec.path, &mut left)?;
        let boot = match &spec.kind {
            Kind::Elf => {
                let file = &mut files[idx];
                // An image already flattened fits this VM's RAM exactly when its length does (it
                // ends at its highest segment's end); otherwise the loader validates against this
                // VM's RAM (it may differ between VMs sharing the image) and says why not.
                let image = match &file.elf {
                    Some(image) if image.bytes.len() as u64 <= spec.ram_bytes => image.clone(),
                    _ => {
                        let image = loader::load(&file.bytes, spec.ram_bytes, left).map_err(|why| ConfigError::Elf {
                            vm: spec.name.clone(),
                            path: spec.path.clone(),
                            why,
                        })?;
                        left -= image.bytes.len() as u64;
                        file.elf.get_or_insert(image).clone()
                    }
                };
                BootImage { segments: alloc::vec![Segment { at: Ipa(RAM_BASE), bytes: image.bytes }], entry: image.entry, x0: 0 }
            }
            Kind::Linux { initrd, bootargs } => {
                let initrd = match initrd {
                    Some(p) => Some(read_once(&mut files, files_in, &spec.name, p, &mut left)?),
                    None => None,
                };
                let kernel = files[idx].bytes.clone();
                let initrd = initrd.map(|i| files[i].bytes.clone());
                let boot = linux_boot::boot_image(&kernel, initrd.as_ref(), bootargs, spec.ram_bytes, spec.cpus)
                    .map_err(|why| ConfigError::Linux { vm: spec.name.clone(), path: spec.path.clone(), why })?;
                // The device tree is this VM's own allocation.
                left = left.saturating_sub(boot.segments.get(1).map_or(0, |s| s.bytes.len() as u64));
                boot
            }
        };
        let irqchip = matches!(spec.kind, Kind::Linux { .. });
        vms.push(VmConfig { name: spec.name, path: spec.path, boot, irqchip, dedup: spec.dedup, clone: spec.clone, ram_bytes: spec.ram_bytes, cpus: spec.cpus, share: spec.share });
    }
    Ok(Config {
        trace_path: sc.trace_path,
        trace_max_bytes: sc.trace_max_bytes,
        vms,
        pool_limit: sc.pool_limit,
        selftest: sc.selftest,
        dedup_rate: sc.dedup_rate,
        account_ms: sc.account_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::test_elf;
    use alloc::format;
    use alloc::vec;

    #[test]
    fn grammar() {
        let sc = parse("hyp trace=x.tr pool=100 vm=a:/p/a,ram=32,cpus=2 vm=b:/p/b").unwrap();
        assert_eq!(sc.trace_path.as_deref(), Some("x.tr"));
        assert_eq!(sc.trace_max_bytes, DEFAULT_TRACE_MAX_MIB * MIB);
        assert_eq!(sc.pool_limit, Some(100 * MIB));
        assert_eq!(
            sc.vms[0],
            VmSpec { name: "a".into(), path: "/p/a".into(), ram_bytes: 32 * MIB, cpus: 2, kind: Kind::Elf, dedup: false, clone: None, share: None }
        );
        assert_eq!((sc.vms[1].ram_bytes, sc.vms[1].cpus), (DEFAULT_RAM_MIB * MIB, 1));
        assert_eq!(parse("").unwrap().trace_path.as_deref(), Some(DEFAULT_TRACE));
        assert_eq!(parse("trace=off").unwrap().trace_path, None);
        assert_eq!(parse("trace_max=3").unwrap().trace_max_bytes, 3 * MIB);
        // A path may contain ':' after the name.
        assert_eq!(parse("vm=a:c:/x").unwrap().vms[0].path, "c:/x");
        // Test hooks: none unless named.
        assert_eq!(sc.selftest, SelfTests::default());
        let hooks = parse("selftest=panic-fault vm=a:/p selftest=data-pages-nx").unwrap().selftest;
        assert!(hooks.contains(SelfTest::PanicFault) && hooks.contains(SelfTest::DataPagesNx));
    }

    #[test]
    fn grammar_errors_name_the_token() {
        assert!(matches!(parse("hyp foo"), Err(ConfigError::UnknownToken(t)) if t == "foo"));
        assert!(matches!(parse("x=1"), Err(ConfigError::UnknownToken(_))));
        for bad in ["trace_max=0", "trace_max=1048577", "trace_max=", "pool=-1", "pool=0", "pool=99999999999999999999999", "vm=a:b,ram=0", "vm=a:b,cpus=9", "vm=a:b,cpus="] {
            assert!(matches!(parse(bad), Err(ConfigError::BadNumber { .. })), "{bad}");
        }
        assert!(matches!(parse("vm=a:b,x=1"), Err(ConfigError::UnknownOption { .. })));
        assert_eq!(parse("selftest=everything"), Err(ConfigError::UnknownSelfTest("everything".into())));
        assert!(format!("{}", ConfigError::UnknownSelfTest("x".into())).contains("panic-fault data-pages-nx"));
        for bad in ["vm=ab", "vm=a:", "vm=:p", "trace="] {
            assert!(matches!(parse(bad), Err(ConfigError::Missing { .. })), "{bad}");
        }
    }

    #[test]
    fn ram_limit_matches_its_message() {
        assert!(parse(&format!("vm=a:b,ram={MAX_RAM_MIB}")).is_ok());
        let e = parse(&format!("vm=a:b,ram={}", MAX_RAM_MIB + 1)).unwrap_err();
        assert!(format!("{e}").contains(&format!("1..={MAX_RAM_MIB}")), "{e}");
    }

    #[test]
    fn at_most_255_vms() {
        let line = |n: usize| (0..n).map(|i| format!("vm=v{i}:/g")).collect::<Vec<_>>().join(" ");
        assert_eq!(parse(&line(MAX_VMS)).unwrap().vms.len(), 255);
        assert_eq!(parse(&line(MAX_VMS + 1)), Err(ConfigError::TooManyVms { count: 256 }));
        assert!(format!("{}", ConfigError::TooManyVms { count: 256 }).contains("at most 255"));
    }

    /// Host files for [`resolve`]: `(path, bytes)`, and the paths read so far.
    struct Files(Vec<(&'static str, Vec<u8>)>, Vec<String>);

    impl GuestFiles for Files {
        fn len(&mut self, path: &str) -> Result<u64, String> {
            let f = self.0.iter().find(|(p, _)| *p == path).ok_or("no such file")?;
            Ok(f.1.len() as u64)
        }
        fn read(&mut self, path: &str) -> Result<Vec<u8>, String> {
            self.1.push(path.to_string());
            Ok(self.0.iter().find(|(p, _)| *p == path).ok_or("no such file")?.1.clone())
        }
    }

    #[test]
    fn resolve_reads_each_file_once_and_shares_images() {
        let code = test_elf(RAM_BASE, &[(RAM_BASE, b"one", 3)]);
        let other = test_elf(RAM_BASE, &[(RAM_BASE, b"two", 3)]);
        let sc = parse("vm=a:/g/one vm=b:/g/two vm=c:/g/one,ram=16").unwrap();
        let mut files = Files(vec![("/g/one", code), ("/g/two", other)], Vec::new());
        let c = resolve(sc, u64::MAX, &mut files).unwrap();
        assert_eq!(files.1, ["/g/one", "/g/two"]);
        let image = |i: usize| c.vms[i].boot.segments[0].bytes.clone();
        assert!(Arc::ptr_eq(&image(0), &image(2)));
        assert!(!Arc::ptr_eq(&image(0), &image(1)));
        assert_eq!(&image(1)[..], b"two");
        assert_eq!((c.vms[2].boot.entry, c.vms[2].ram_bytes), (Ipa(RAM_BASE), 16 * MIB));
    }

    /// A Linux `Image` of `len` bytes: header with image_size 16 MiB, little-endian, 4K pages.
    fn kernel(len: usize) -> Vec<u8> {
        let mut k = vec![0u8; len];
        k[0x10..0x18].copy_from_slice(&(16u64 << 20).to_le_bytes());
        k[0x18..0x20].copy_from_slice(&0xau64.to_le_bytes());
        k[0x38..0x3c].copy_from_slice(b"ARM\x64");
        k
    }

    #[test]
    fn linux_vms_take_kernel_initrd_and_an_escaped_command_line() {
        let sc = parse("linux=l1:/k,initrd=/i,append=console%3DttyAMA0%20name%3D%22a%2Cb%22%25,ram=128,cpus=2 linux=l2:/k").unwrap();
        assert_eq!(
            sc.vms[0].kind,
            Kind::Linux { initrd: Some("/i".into()), bootargs: b"console=ttyAMA0 name=\"a,b\"%".to_vec() }
        );
        assert_eq!((sc.vms[0].ram_bytes, sc.vms[0].cpus), (128 * MIB, 2));
        assert_eq!(sc.vms[1].kind, Kind::Linux { initrd: None, bootargs: Vec::new() });
        let mut files = Files(vec![("/k", kernel(3 * MIB as usize)), ("/i", vec![1; 100])], Vec::new());
        let c = resolve(sc, u64::MAX, &mut files).unwrap();
        assert_eq!(files.1, ["/k", "/i"], "the kernel is read once for both VMs");
        let (a, b) = (&c.vms[0].boot, &c.vms[1].boot);
        assert!(Arc::ptr_eq(&a.segments[0].bytes, &b.segments[0].bytes), "one kernel object");
        assert_eq!((a.segments.len(), b.segments.len()), (3, 2));
        assert_eq!((a.entry, a.x0), (Ipa(RAM_BASE), a.segments[1].at.0));
    }

    #[test]
    fn a_scenario_file_extends_the_command_line() {
        let vms: String = (0..200).map(|i| format!("vm=v{i}:/g/one,ram=16\n")).collect();
        let mut files = Files(vec![("/run/hyp.scenario", vms.clone().into_bytes()), ("/nested", b"scenario=/x".to_vec())], Vec::new());
        let line = expand("hyp trace=/t scenario=/run/hyp.scenario pool=64", &mut files, u64::MAX).unwrap();
        let sc = parse(&line).unwrap();
        assert_eq!((sc.vms.len(), sc.trace_path.as_deref(), sc.pool_limit), (200, Some("/t"), Some(64 * MIB)));
        assert!(vms.len() > 4096, "longer than an -append would take");
        assert!(matches!(expand("scenario=/nested", &mut files, u64::MAX), Err(ConfigError::File { .. })));
        assert!(matches!(expand("scenario=/run/hyp.scenario scenario=/run/hyp.scenario", &mut files, u64::MAX), Err(ConfigError::File { .. })));
        assert!(matches!(expand("scenario=/missing", &mut files, u64::MAX), Err(ConfigError::File { .. })));
        assert!(matches!(expand("scenario=/run/hyp.scenario", &mut files, 10), Err(ConfigError::FileTooBig { .. })));
        assert_eq!(expand("vm=a:/b", &mut files, 0).unwrap().trim(), "vm=a:/b", "no file: unchanged");
    }

    #[test]
    fn a_clone_point_needs_its_text_and_count() {
        let sc = parse("linux=t:/k,clones=4,clone_at=uvmhyp-linux:%20clone-point,cpus=2").unwrap();
        assert_eq!(sc.vms[0].clone, Some(ClonePoint { at: b"uvmhyp-linux: clone-point".to_vec(), children: 4 }));
        assert!(parse("vm=a:/g,clones=2").unwrap_err().to_string().contains("clone_at=TEXT"));
        assert!(parse("vm=a:/g,clone_at=x").unwrap_err().to_string().contains("clones=N"));
        assert!(matches!(parse("vm=a:/g,clones=65,clone_at=x"), Err(ConfigError::BadNumber { .. })));
        assert!(matches!(parse("vm=a:/g,clones=0,clone_at=x"), Err(ConfigError::BadNumber { .. })));
        assert!(matches!(parse("vm=a:/g,clones=1,clone_at="), Err(ConfigError::UnknownOption { .. })));
    }

    #[test]
    fn a_memory_claim_is_in_frames_with_normal_shares_by_default() {
        use vm::share::MemShare;
        let sc = parse("vm=a:/g,min=16,ram=32 vm=b:/g,max=8,shares=50 vm=c:/g").unwrap();
        assert_eq!(sc.vms[0].share, Some(MemShare { min: 4096, max: None, shares: 320 }));
        assert_eq!(sc.vms[1].share, Some(MemShare { min: 0, max: Some(2048), shares: 50 }));
        assert_eq!(sc.vms[2].share, None);
        assert!(matches!(parse("vm=a:/g,min=8,max=4"), Err(ConfigError::BadNumber { .. })));
        assert!(matches!(parse("vm=a:/g,ram=16,min=17"), Err(ConfigError::BadNumber { .. })));
        assert!(matches!(parse("vm=a:/g,shares=0"), Err(ConfigError::BadNumber { .. })));
        assert!(matches!(parse("vm=a:/g,max=0"), Err(ConfigError::BadNumber { .. })));
    }

    #[test]
    fn the_accounting_period_has_a_default_and_can_be_off() {
        assert_eq!(parse("vm=a:/g").unwrap().account_ms, Some(DEFAULT_ACCOUNT_MS));
        assert_eq!(parse("account=250 vm=a:/g").unwrap().account_ms, Some(250));
        assert_eq!(parse("account=off vm=a:/g").unwrap().account_ms, None);
        assert!(matches!(parse("account=0"), Err(ConfigError::BadNumber { .. })));
        assert!(matches!(parse("account=x"), Err(ConfigError::BadNumber { .. })));
    }

    #[test]
    fn dedup_needs_a_rate_and_marks_its_vms() {
        let sc = parse("dedup=128 vm=a:/g,dedup,ram=16 vm=b:/g").unwrap();
        assert_eq!(sc.dedup_rate, Some(128));
        assert_eq!((sc.vms[0].dedup, sc.vms[1].dedup), (true, false));
        assert!(parse("vm=a:/g,dedup").unwrap_err().to_string().contains("dedup=PAGES"));
        assert!(matches!(parse("dedup=0"), Err(ConfigError::BadNumber { .. })));
    }

    #[test]
    fn escape_and_unescape_round_trip_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let e = escape(&all);
        assert_eq!(e.matches('%').count(), 256 - 62 - 9, "all but alphanumerics and -_.~/=:+@ are escaped");
        assert!(!e.bytes().any(|b| b == b' ' || b == b','), "{e}");
        assert_eq!(unescape("t", &e).unwrap(), all);
        assert_eq!(escape(b"console=ttyAMA0 x=\"a b\""), "console=ttyAMA0%20x=%22a%20b%22");
    }

    #[test]
    fn bad_linux_tokens_are_errors() {
        for (t, want) in [
            ("linux=l:/k,append=%2", "two hex digits"),
            ("linux=l:/k,append=%zz", "two hex digits"),
            ("vm=l:/k,initrd=/i", "unknown option"),
            ("linux=l:/k,initrd=", "unknown option"),
        ] {
            let e = parse(t).unwrap_err().to_string();
            assert!(e.contains(want), "{t}: {e}");
        }
        let not_linux = resolve(parse("linux=l:/k").unwrap(), u64::MAX, &mut Files(vec![("/k", vec![0; 4096])], vec![]));
        assert!(matches!(not_linux, Err(ConfigError::Linux { .. })), "{:?}", not_linux.err());
    }

    #[test]
    fn resolve_reports_unreadable_and_invalid_guests() {
        let missing = resolve(parse("vm=z:/nope").unwrap(), u64::MAX, &mut Files(vec![], vec![]));
        assert!(matches!(&missing, Err(ConfigError::File { vm, .. }) if vm == "z"));
        let big = test_elf(RAM_BASE, &[(RAM_BASE, b"x", 2 * MIB)]);
        let too_big = resolve(parse("vm=z:/big,ram=1").unwrap(), u64::MAX, &mut Files(vec![("/big", big)], vec![]));
        assert!(matches!(too_big, Err(ConfigError::Elf { why: ElfError::SegmentOutsideRam { .. }, .. })));
        let e = format!("{}", missing.err().unwrap());
        assert!(e.contains("/nope") && e.contains("no such file"), "{e}");
    }

    #[test]
    fn files_and_images_are_checked_against_the_heap_left_before_allocating() {
        let elf = test_elf(RAM_BASE, &[(RAM_BASE, b"code", 4 * MIB)]);
        let len = elf.len() as u64;
        // The file alone does not fit: it is not read at all.
        let mut files = Files(vec![("/g", elf.clone())], vec![]);
        let e = resolve(parse("vm=a:/g").unwrap(), len - 1, &mut files).err().unwrap();
        assert_eq!(e, ConfigError::FileTooBig { vm: "a".into(), path: "/g".into(), bytes: len, max: len - 1 });
        assert!(files.1.is_empty());
        // The file fits, its 4 MiB image does not fit in what is left.
        let e = resolve(parse("vm=a:/g").unwrap(), len + MIB, &mut files).err().unwrap();
        assert_eq!(
            e,
            ConfigError::Elf { vm: "a".into(), path: "/g".into(), why: ElfError::ImageTooBig { bytes: 4 * MIB, max: MIB } }
        );
        // Two files each fitting alone, but not together.
        let other = test_elf(RAM_BASE, &[(RAM_BASE, b"code", 4 * MIB)]);
        let mut files = Files(vec![("/g", elf), ("/h", other)], vec![]);
        let e = resolve(parse("vm=a:/g vm=b:/h").unwrap(), len + 5 * MIB, &mut files).err().unwrap();
        assert!(matches!(&e, ConfigError::Elf { vm, why: ElfError::ImageTooBig { .. }, .. } if vm == "b"), "{e:?}");
        // A shared image is counted once.
        assert!(resolve(parse("vm=a:/g vm=b:/g").unwrap(), len + 4 * MIB, &mut files).is_ok());
    }
}
