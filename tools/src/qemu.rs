//! Building the QEMU command line (README, "The QEMU line") and running it with a timeout.

use crate::console::Console;
use crate::live::Live;
use crate::out::Closed;
use crate::runs::RunDir;
use crate::scenarios::{Image, Machine, Scenario, VmSpec};
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-aarch64";
/// Where the bare-metal binaries are, relative to the workspace root.
pub const BIN_DIR: &str = "target/aarch64-unknown-none/release";

/// The fixed part of the QEMU line (README, "The QEMU line") but for `-cpu`, `-smp` and `-m`
/// (cortex-a72, 4 and 1G unless the scenario's [`Machine`] says otherwise); `-kernel` and `-append` follow.
///
/// The console: QEMU's stdin goes to the board's PL011 (`-chardev stdio` as `-serial`), which the
/// hypervisor reads as host console input (README, "Typing into a VM"); its output is
/// semihosting, written to QEMU's stdout by a `file` chardev (one `stdio` chardev is all QEMU
/// allows, and semihosting's would take stdin too). `-monitor none`: with `-nographic` QEMU would
/// otherwise put its monitor on stdio as well.
pub const QEMU_ARGS: &[&str] = &[
    "-M",
    "virt,virtualization=on,gic-version=3",
    "-cpu",
    CPU_PLACEHOLDER,
    "-smp",
    SMP_PLACEHOLDER,
    "-m",
    MEMORY_PLACEHOLDER,
    "-nographic",
    "-monitor",
    "none",
    "-nic",
    "none",
    "-chardev",
    "stdio,id=con0",
    "-serial",
    "chardev:con0",
    "-chardev",
    "file,id=semi0,path=/dev/stdout,append=on",
    "-semihosting-config",
    "enable=on,target=native,chardev=semi0",
];

/// The hypervisor ELF, relative to the root.
pub fn hyp_path() -> String {
    format!("{BIN_DIR}/hyp")
}

/// A guest ELF, relative to the root.
pub fn guest_path(guest: &str) -> String {
    format!("{BIN_DIR}/{guest}")
}

/// The `-append` string of a scenario (README, "The QEMU line").
pub fn append(s: &Scenario, trace: &str) -> String {
    let mut tokens = vec![if s.trace.enabled { format!("trace={trace}") } else { "trace=off".to_string() }];
    if let Some(m) = s.trace.max_mib {
        tokens.push(format!("trace_max={m}"));
    }
    if let Some(p) = s.pool_mib {
        tokens.push(format!("pool={p}"));
    }
    if let Some(r) = s.dedup_rate {
        tokens.push(format!("dedup={r}"));
    }
    tokens.extend(s.selftest.iter().map(|t| format!("selftest={t}")));
    tokens.extend(s.vms.iter().map(vm_token));
    tokens.join(" ")
}

/// One VM's `vm=NAME:PATH[,ram=MIB][,cpus=N]` or
/// `linux=NAME:KERNEL[,initrd=PATH][,append=ARGS][,ram=MIB][,cpus=N]` token.
pub fn vm_token(v: &VmSpec) -> String {
    let mut t = match &v.image {
        Image::Linux { kernel, initrd, bootargs } => {
            let mut t = format!("linux={}:{kernel}", v.name);
            if let Some(i) = initrd {
                t.push_str(&format!(",initrd={i}"));
            }
            if !bootargs.is_empty() {
                t.push_str(&format!(",append={}", hyp::config::escape(bootargs.as_bytes())));
            }
            t
        }
        image => format!("vm={}:{}", v.name, image.path()),
    };
    if let Some(r) = v.ram_mib {
        t.push_str(&format!(",ram={r}"));
    }
    if let Some(c) = v.cpus {
        t.push_str(&format!(",cpus={c}"));
    }
    if v.dedup {
        t.push_str(",dedup");
    }
    let claim = [("min", v.mem.min_mib), ("max", v.mem.max_mib), ("shares", v.mem.shares.map(u64::from))];
    for (key, value) in claim {
        if let Some(x) = value {
            t.push_str(&format!(",{key}={x}"));
        }
    }
    if let Some(at) = &v.clone_at {
        t.push_str(&format!(",clones={},clone_at={}", v.clones, hyp::config::escape(at.as_bytes())));
    }
    t
}

/// Stand for the scenario's CPU model, CPU count and memory in [`QEMU_ARGS`].
const CPU_PLACEHOLDER: &str = "<cpu>";
const SMP_PLACEHOLDER: &str = "<cpus>";
const MEMORY_PLACEHOLDER: &str = "<memory>";

/// Deterministic instruction counting (DESIGN §7): 1 ns of virtual time per instruction.
pub const ICOUNT_ARGS: &[&str] = &["-icount", "shift=0,align=off,sleep=off"];

/// All arguments after the QEMU binary name.
pub fn qemu_args(append: &str, gdb: bool, machine: &Machine) -> Vec<String> {
    let mut a: Vec<String> = QEMU_ARGS
        .iter()
        .map(|&s| match s {
            CPU_PLACEHOLDER => machine.cpu.clone(),
            SMP_PLACEHOLDER => machine.smp.to_string(),
            MEMORY_PLACEHOLDER => machine.memory.clone(),
            _ => s.to_string(),
        })
        .collect();
    if machine.icount {
        a.extend(ICOUNT_ARGS.iter().map(|s| s.to_string()));
    }
    if gdb {
        a.push("-s".into());
        a.push("-S".into());
    }
    a.extend(["-kernel".into(), hyp_path(), "-append".into(), append.to_string()]);
    a
}

/// The swap disk's image in a run folder.
pub const SWAP_IMAGE: &str = "swap.img";

/// The swap disk's blkdebug configuration in a run folder (only with injected faults).
pub const BLKDEBUG_CONFIG: &str = "blkdebug.conf";

/// QEMU's arguments attaching `image` as the hypervisor's swap disk: a raw virtio-blk device on
/// the board's virtio-mmio bus, through blkdebug configured by the file `faults` when given.
pub fn swap_args(image: &str, faults: Option<&str>) -> Vec<String> {
    vec![
        "-drive".into(),
        crate::blkdebug::drive(image, faults),
        "-device".into(),
        "virtio-blk-device,drive=swap".into(),
    ]
}

/// When `s` asks for swap: create its disk image in `run` (a sparse file of the size asked for,
/// new every run) and, with injected faults, its blkdebug configuration, and return the QEMU
/// arguments attaching it; else nothing.
pub fn prepare_swap(root: &Path, s: &Scenario, run: &RunDir) -> std::io::Result<Vec<String>> {
    let Some(mib) = s.swap_mib else { return Ok(Vec::new()) };
    let image = format!("{}/{SWAP_IMAGE}", run.path());
    std::fs::File::create(root.join(&image))?.set_len(mib << 20)?;
    if s.swap_faults.is_empty() {
        return Ok(swap_args(&image, None));
    }
    let config = format!("{}/{BLKDEBUG_CONFIG}", run.path());
    std::fs::write(root.join(&config), s.swap_faults.config())?;
    Ok(swap_args(&image, Some(&config)))
}

/// Quote an argument for a shell line shown to people.
pub fn shell_quote(a: &str) -> String {
    if a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,".contains(c)) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

/// The whole command as one shell line.
pub fn command_line(args: &[String]) -> String {
    std::iter::once(QEMU.to_string()).chain(args.iter().map(|a| shell_quote(a))).collect::<Vec<_>>().join(" ")
}

/// What a finished (or killed) QEMU run left.
#[derive(Debug)]
pub struct Outcome {
    /// QEMU's exit status; `None` if it was killed by a signal or by the timeout.
    pub status: Option<i32>,
    pub timed_out: bool,
    pub console: Console,
    /// Every line, stdout and stderr interleaved as received.
    pub lines: Vec<String>,
    pub elapsed: Duration,
}

/// Check that the binaries a scenario needs exist (this tool builds nothing).
pub fn check_binaries(root: &Path, s: &Scenario) -> Result<(), String> {
    let mut missing = Vec::new();
    for p in std::iter::once(hyp_path()).chain(s.vms.iter().flat_map(|v| v.image.files())) {
        if !root.join(&p).is_file() {
            missing.push(p);
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("missing {} (build with `make build`; the Linux guest's files with `make linux-artifacts`)", missing.join(", ")))
    }
}

fn pump<R: Read + Send + 'static>(r: R, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_string();
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
}

/// Why a run did not finish.
#[derive(Debug)]
pub enum RunError {
    /// QEMU could not be started, or the output directory or console log not written.
    Io(std::io::Error),
    /// Standard output was closed while echoing; QEMU has been killed.
    Closed,
}

impl From<std::io::Error> for RunError {
    fn from(e: std::io::Error) -> RunError {
        RunError::Io(e)
    }
}

/// The longest `-append` passed as is: the hypervisor reads its command line into 8 KiB, and a
/// longer scenario (many VMs, long kernel command lines) goes through a file instead.
pub const APPEND_MAX: usize = 4096;

/// The `-append` of `s` for `run`: the tokens themselves, or, when longer than [`APPEND_MAX`],
/// `scenario=PATH` naming them written to the run folder (`hyp::config::expand` reads it).
pub fn append_for_run(root: &Path, s: &Scenario, run: &RunDir) -> std::io::Result<String> {
    let line = append(s, &run.trace());
    if line.len() <= APPEND_MAX {
        return Ok(line);
    }
    let file = format!("{}/hyp.scenario", run.path());
    std::fs::write(root.join(&file), line.replace(' ', "\n"))?;
    Ok(format!("scenario={file}"))
}

/// What QEMU's stdin (the host console's input) is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Input {
    /// The scenario's `[[input]]` steps, in order, each written once a line containing its `after`
    /// has appeared (nothing if it has none).
    Script,
    /// This process's stdin, when it is a terminal (`tools run`: the user types into the VMs);
    /// else as [`Input::Script`].
    Terminal,
}

/// Run a scenario in QEMU from `root` with its outputs in `run`: writes the command to `qemu.cmd`,
/// shows the run through `live` (console lines, per-VM logs, progress), feeds QEMU's stdin as
/// `input` says, kills QEMU after `timeout` (or when stdout closes), and writes the console log.
pub fn run(root: &Path, s: &Scenario, run: &RunDir, live: &mut Live, timeout: Duration, input: Input) -> Result<Outcome, RunError> {
    let mut args = qemu_args(&append_for_run(root, s, run)?, false, &s.machine);
    args.extend(prepare_swap(root, s, run)?);
    std::fs::write(root.join(run.qemu_cmd()), format!("{}\n", command_line(&args)))?;
    live.command(&format!("$ {}", command_line(&args))).map_err(|Closed| RunError::Closed)?;
    let terminal = input == Input::Terminal && s.input.is_empty() && std::io::stdin().is_terminal();
    let stdin = if terminal {
        Stdio::inherit()
    } else if s.input.is_empty() {
        Stdio::null()
    } else {
        Stdio::piped()
    };
    // QEMU puts a terminal in raw mode and restores it when it exits, not when it is killed.
    let saved_tty = terminal.then(tty_settings).flatten();
    let start = Instant::now();
    let mut child = Command::new(QEMU).args(&args).current_dir(root).stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let mut typing = child.stdin.take();
    let mut steps = s.input.iter();
    let mut step = steps.next();
    let mut looked = 0;
    let (tx, rx) = mpsc::channel();
    pump(child.stdout.take().expect("piped"), tx.clone());
    pump(child.stderr.take().expect("piped"), tx);

    let mut console = Console::default();
    let mut lines = Vec::new();
    let deadline = start + timeout;
    let mut timed_out = false;
    loop {
        let now = Instant::now();
        if now >= deadline {
            timed_out = true;
            let _ = child.kill();
            break;
        }
        let shown = match rx.recv_timeout((deadline - now).min(crate::live::POLL)) {
            Ok(line) => {
                let shown = live.line(&line);
                console.feed(&line);
                lines.push(line);
                // The next step's `after` may be any line so far: look at the new ones since the
                // last look, and at all of them again once a step was sent.
                while let Some(st) = step {
                    match lines[looked..].iter().position(|l| l.contains(st.after.as_str())) {
                        Some(_) => {
                            // QEMU gone or its stdin closed: the run's checks tell what was missed.
                            let _ = typing.as_mut().map(|t| t.write_all(st.text.as_bytes()).and_then(|()| t.flush()));
                            step = steps.next();
                            looked = 0;
                        }
                        None => {
                            looked = lines.len();
                            break;
                        }
                    }
                }
                shown
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(()),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if shown.and_then(|()| live.tick_due()).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RunError::Closed);
        }
    }
    let status = child.wait()?;
    drop(typing);
    if let Some(saved) = saved_tty {
        restore_tty(&saved);
    }
    // Lines still queued after a kill.
    for line in rx.try_iter() {
        // The reader may be gone; the lines still go to the logs and the verdict.
        let _ = live.line(&line);
        console.feed(&line);
        lines.push(line);
    }
    live.finish();
    let elapsed = start.elapsed();
    let mut log = std::fs::File::create(root.join(run.console_log()))?;
    writeln!(log, "$ {}", command_line(&args))?;
    for l in &lines {
        writeln!(log, "{l}")?;
    }
    // The swap disk's bytes mean nothing once QEMU is gone (every run starts a new one), and
    // `overcommit` leaves 1.5 GiB of them: the run folder keeps only what explains the run.
    if s.swap_mib.is_some() {
        match std::fs::remove_file(root.join(run.path()).join(SWAP_IMAGE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    Ok(Outcome { status: if timed_out { None } else { status.code() }, timed_out, console, lines, elapsed })
}

/// The terminal's settings (`stty -g` on our stdin), to put back after QEMU.
fn tty_settings() -> Option<String> {
    let out = Command::new("stty").arg("-g").stdin(Stdio::inherit()).stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn restore_tty(saved: &str) {
    let _ = Command::new("stty").arg(saved).stdin(Stdio::inherit()).status();
}

/// The workspace root: `$UVMHYP_ROOT`, else the parent of this crate's manifest directory.
pub fn root() -> PathBuf {
    match std::env::var_os("UVMHYP_ROOT") {
        Some(r) => PathBuf::from(r),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tools/ has a parent").to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::tests::builtin;

    #[test]
    fn every_scenarios_append_is_what_the_hypervisor_parses() {
        for s in &crate::scenarios::all(&root()).unwrap() {
            let trace = format!("target/uvmhyp/runs/{}-20261202T143405Z/uvmhyp.trace", s.name);
            let parsed = hyp::config::parse(&append(s, &trace)).unwrap_or_else(|e| panic!("{}: {e:?}", s.name));
            assert_eq!(parsed.trace_path.as_deref(), s.trace.enabled.then_some(trace.as_str()), "{}", s.name);
            let cap = s.trace.max_mib.unwrap_or(hyp::config::DEFAULT_TRACE_MAX_MIB) << 20;
            assert_eq!(parsed.trace_max_bytes, cap, "{}", s.name);
            assert_eq!(parsed.pool_limit, s.pool_mib.map(|m| m << 20), "{}", s.name);
            let vms: Vec<_> = parsed.vms.iter().map(|v| (v.name.as_str(), v.ram_bytes, v.cpus)).collect();
            let want: Vec<_> = s.vms.iter().map(|v| (v.name.as_str(), v.ram_bytes(), v.cpus.unwrap_or(1))).collect();
            assert_eq!(vms, want, "{}", s.name);
            let hooks = s.selftest.iter().fold(hyp::selftest::SelfTests::default(), |set, t| {
                set.with(hyp::selftest::SelfTest::named(t).unwrap_or_else(|| panic!("{}: {t}", s.name)))
            });
            assert_eq!(parsed.selftest, hooks, "{}", s.name);
        }
    }

    #[test]
    fn append_lists_trace_and_vms_in_order() {
        let s = &builtin("default");
        assert_eq!(
            append(s, "target/uvmhyp/runs/default-20261202T123203Z/uvmhyp.trace"),
            "trace=target/uvmhyp/runs/default-20261202T123203Z/uvmhyp.trace \
             vm=image1:target/aarch64-unknown-none/release/image \
             vm=image2:target/aarch64-unknown-none/release/image \
             vm=touch:target/aarch64-unknown-none/release/touch,ram=72"
        );
        let smp = &builtin("smp");
        assert!(append(smp, "t").ends_with("vm=smp:target/aarch64-unknown-none/release/smp,cpus=4"));
        assert!(append(&builtin("capped"), "t").starts_with("trace=t trace_max=1 vm="));
        assert!(append(&builtin("bench-notrace"), "t").starts_with("trace=off vm="));
    }

    #[test]
    fn qemu_line_is_the_contract_line() {
        let args = qemu_args("vm=a:b", false, &Machine::default());
        assert_eq!(
            command_line(&args),
            "qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu cortex-a72 -smp 4 -m 1G \
             -nographic -monitor none -nic none -chardev stdio,id=con0 -serial chardev:con0 \
             -chardev file,id=semi0,path=/dev/stdout,append=on \
             -semihosting-config enable=on,target=native,chardev=semi0 \
             -kernel target/aarch64-unknown-none/release/hyp -append vm=a:b"
        );
        let counting = Machine { smp: 1, memory: "512M".into(), icount: true, ..Machine::default() };
        let counting = command_line(&qemu_args("vm=a:b", false, &counting));
        assert!(counting.contains(" -smp 1 -m 512M ") && counting.contains(" -icount shift=0,align=off,sleep=off "));
        let dbg = qemu_args("x y", true, &Machine::default());
        assert!(dbg.windows(2).any(|w| w == ["-s", "-S"]));
        assert!(command_line(&dbg).ends_with("-append 'x y'"));
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(shell_quote("a'b c"), r"'a'\''b c'");
    }
}
