//! `tools`: the host side of uvmhyp — runs scenarios in QEMU, checks them, reads traces.
//!
//! ```text
//! tools run [FILE|NAME]       run one scenario (default: `default`), streaming the console
//! tools test [FILE|NAME...]   run scenarios (all of scenarios/ by default), judge each, print a summary
//! tools trace FILE [-n N]     decode a trace: per-VM case counts and the first N records
//! tools report TRACE|RUN_DIR  Markdown, JSON, CSV and SVG plots of one run's trace
//! tools compare A B           two runs' headline numbers side by side, with the ratio B/A
//! tools debug [FILE|NAME]     QEMU halted with a gdb stub on :1234; prints the gdb command
//! tools list                  the scenarios
//! ```
//! The tool builds nothing (the Makefile does) and runs QEMU in the workspace root (`$UVMHYP_ROOT`
//! overrides); each run's scenario file, QEMU command, console log and trace land in a folder of
//! its own, `target/uvmhyp/runs/<scenario>-<time>/` ([`runs`]), `target/uvmhyp/runs/latest` the newest.
//! Its exit statuses are [`Status`].
#![forbid(unsafe_code)]

#[macro_use]
mod out;
mod blkdebug;
mod checks;
mod compare;
mod console;
mod live;
mod qemu;
mod report;
mod runs;
mod scenario_file;
mod scenarios;
mod show;
mod swapcheck;
mod verdict;

use clap::{Parser, Subcommand};
use out::Closed;
use scenario_file::ScenarioError;
use scenarios::Scenario;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The host side of uvmhyp: runs scenarios in QEMU, checks them, reads traces.
///
/// Scenarios are the TOML files of scenarios/ (see scenarios/README.md); a NAME is one of them,
/// a FILE (a path with a `/` or ending in .toml) any other. Exit status: 0 ok, 1 a scenario failed,
/// 2 bad usage or a bad scenario, trace or report file, 3 QEMU or a binary missing, 4 a run timed out,
/// 101 the hypervisor panicked, 141 standard output was closed.
#[derive(Parser)]
#[command(name = "tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario, streaming the console; then the trace's case table and the verdict
    Run {
        /// Scenario name (from scenarios/) or file
        #[arg(default_value = "default", value_name = "FILE|NAME", conflicts_with = "kernel")]
        scenario: String,
        /// Instead of a scenario: boot this Linux `Image` (path from the workspace root)
        #[arg(long, value_name = "IMAGE")]
        kernel: Option<String>,
        /// Its initrd
        #[arg(long, value_name = "FILE", requires = "kernel")]
        initrd: Option<String>,
        /// Its kernel command line
        #[arg(long, value_name = "ARGS", requires = "kernel", default_value = "console=ttyAMA0")]
        append: String,
        /// Guest RAM of each VM, MiB
        #[arg(long, value_name = "MIB", requires = "kernel", default_value_t = 256)]
        ram: u64,
        /// vCPUs of each VM
        #[arg(long, value_name = "N", requires = "kernel", default_value_t = 1)]
        cpus: u32,
        /// How many such VMs
        #[arg(long, value_name = "N", requires = "kernel", default_value_t = 1)]
        vms: u32,
    },
    /// Run scenarios without their console (all of scenarios/ by default), judge each, print a summary
    Test {
        /// Scenario names or files, in the order to run them
        #[arg(value_name = "FILE|NAME")]
        scenarios: Vec<String>,
    },
    /// Decode a trace: per-VM counts of how faults ended, then the first records in sequence order
    Trace {
        /// A trace file (target/uvmhyp/runs/latest/uvmhyp.trace: the last run's)
        file: PathBuf,
        /// How many records to print
        #[arg(short = 'n', default_value_t = 20)]
        records: usize,
    },
    /// Report on one run: faults by case, by VM and over time, latency, memory, MMIO; writes
    /// report.md, report.json, CSV and SVG plots into the run folder (or beside the trace) and
    /// prints the Markdown
    Report {
        /// A run folder (target/uvmhyp/runs/latest: the last run) or a trace file
        #[arg(value_name = "TRACE|RUN_DIR")]
        input: PathBuf,
        /// Write the files here instead
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Also write every record as records.csv
        #[arg(long)]
        csv: bool,
    },
    /// Two runs' headline numbers side by side (faults by case, frames saved, time to converge,
    /// page-ins, p99 latency) with the ratio B/A
    Compare {
        /// A run folder, report.json or trace file
        a: PathBuf,
        /// A run folder, report.json or trace file
        b: PathBuf,
    },
    /// List the scenarios of scenarios/ with what each proves
    List,
    /// Start QEMU halted with a gdb stub on :1234 and print the gdb command
    Debug {
        /// Scenario name (from scenarios/) or file
        #[arg(default_value = "default", value_name = "FILE|NAME")]
        scenario: String,
    },
}

/// The exit statuses (README, "The `tools` command"). When `test` runs several scenarios, the most serious
/// one wins: 101, then 3, then 4, then 1.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Status {
    Ok,
    /// A scenario failed: a VM ended otherwise than expected, or a console or trace check failed.
    Failed,
    /// The run hit the scenario's timeout and QEMU was killed.
    TimedOut,
    /// QEMU could not be started or a binary is missing (`make build`).
    CannotRun,
    /// The hypervisor printed `uvmhyp: PANIC`.
    HypervisorPanic,
}

impl Status {
    fn code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Failed => 1,
            Status::CannotRun => 3,
            Status::TimedOut => 4,
            Status::HypervisorPanic => 101,
        }
    }
}

/// Why a command stopped before giving a verdict.
enum Error {
    /// A bad argument (exit 2).
    Usage(String),
    /// A bad or missing scenario file (exit 2).
    Scenario(ScenarioError),
    /// QEMU or a binary is missing (exit 3).
    CannotRun(String),
    /// Standard output was closed (exit 141, the status of a process killed by SIGPIPE; nothing printed).
    Closed,
}

impl From<Closed> for Error {
    fn from(_: Closed) -> Error {
        Error::Closed
    }
}

impl From<ScenarioError> for Error {
    fn from(e: ScenarioError) -> Error {
        Error::Scenario(e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = qemu::root();
    let r = match cli.command {
        Command::Run { kernel: Some(kernel), initrd, append, ram, cpus, vms, .. } => {
            linux_scenario(&root, &kernel, initrd.as_deref(), &append, ram, cpus, vms).and_then(|f| cmd_run(&root, &f))
        }
        Command::Run { scenario, .. } => cmd_run(&root, &scenario),
        Command::Test { scenarios } => cmd_test(&root, &scenarios),
        Command::Trace { file, records } => cmd_trace(&file, records),
        Command::Report { input, out, csv } => cmd_report(&input, out.as_deref(), csv),
        Command::Compare { a, b } => cmd_compare(&a, &b),
        Command::List => cmd_list(&root),
        Command::Debug { scenario } => cmd_debug(&root, &scenario),
    };
    let (code, message) = match r {
        Ok(status) => (status.code(), None),
        Err(Error::Usage(m)) => (2, Some(m)),
        Err(Error::Scenario(e)) => (2, Some(e.to_string())),
        Err(Error::CannotRun(m)) => (3, Some(m)),
        Err(Error::Closed) => (141, None),
    };
    if let Some(m) = message {
        // stderr may be closed too: then there is no one to tell.
        let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("tools: {m}\n").as_bytes());
    }
    ExitCode::from(code)
}

fn read_trace(root: &Path, run: &runs::RunDir, console: &console::Console) -> Result<Vec<u8>, String> {
    let expected = run.trace();
    if let Some(p) = &console.trace_path {
        if *p != expected {
            return Err(format!("hypervisor wrote the trace to {p}, not {expected}"));
        }
    }
    std::fs::read(root.join(&expected)).map_err(|e| format!("{expected}: {e}"))
}

/// One scenario run and judged: QEMU's outcome, the trace as read, and every failure (empty =
/// passed).
struct Judged {
    run: runs::RunDir,
    out: qemu::Outcome,
    trace: Result<Vec<u8>, String>,
    failures: Vec<String>,
}

impl Judged {
    /// A run without failures is Ok, even one that was to panic (`hypervisor-panic` scenarios).
    fn status(&self) -> Status {
        if self.failures.is_empty() {
            Status::Ok
        } else if self.out.console.panic.is_some() {
            Status::HypervisorPanic
        } else if self.out.timed_out {
            Status::TimedOut
        } else {
            Status::Failed
        }
    }
}

/// Wait for the next second of the clock. The two runs of a reproducible scenario must have run
/// folders named alike in length: the trace path is on the hypervisor's command line, and parsing
/// a longer one takes more instructions, which moves every timestamp; a run in a second of its
/// own gets no `.1` suffix.
fn next_second() {
    let into = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    std::thread::sleep(Duration::from_nanos(u64::from(1_000_000_000 - into) + 10_000_000));
}

/// Run and judge `s`; `Err(CannotRun)` when it could not run at all (a binary missing, QEMU not started).
fn run_judged(root: &Path, s: &Scenario, echo: live::Echo) -> Result<Judged, Error> {
    qemu::check_binaries(root, s).map_err(Error::CannotRun)?;
    if s.reproducible {
        next_second();
    }
    let run = runs::RunDir::create(root, s).map_err(|e| Error::CannotRun(format!("{}: {e}", runs::RUNS)))?;
    let mut live = live::Live::new(root, s, &run, echo).map_err(|e| Error::CannotRun(format!("{}: {e}", run.path())))?;
    let input = if echo == live::Echo::Console { qemu::Input::Terminal } else { qemu::Input::Script };
    let out = qemu::run(root, s, &run, &mut live, Duration::from_secs(s.timeout_s), input).map_err(|e| match e {
        qemu::RunError::Io(e) => Error::CannotRun(format!("{}: {e}", qemu::QEMU)),
        qemu::RunError::Closed => Error::Closed,
    })?;
    let trace = read_trace(root, &run, &out.console);
    let mut failures = verdict::judge(s, out.status, out.timed_out, &out.console, trace.clone());
    if s.reproducible && failures.is_empty() {
        // The same scenario again, in a run folder of its own: under -icount its trace must not
        // differ by a byte.
        next_second();
        let again = run_judged(root, &Scenario { reproducible: false, ..s.clone() }, live::Echo::Quiet)?;
        failures.extend(again.failures.iter().map(|f| format!("second run: {f}")));
        if let (Ok(a), Ok(b)) = (&trace, &again.trace) {
            failures.extend(verdict::same_trace(a, b).map(|m| format!("{m} ({} vs {})", run.path(), again.run.path())));
        }
    }
    Ok(Judged { run, out, trace, failures })
}

/// The scenario file of `tools run --kernel …`: `vms` Linux VMs booting `kernel`, written to
/// `target/uvmhyp/linux-cli.toml` (the run folder keeps a copy) and read back like any other, so it
/// is checked the same way.
fn linux_scenario(root: &Path, kernel: &str, initrd: Option<&str>, append: &str, ram: u64, cpus: u32, vms: u32) -> Result<String, Error> {
    let quote = |v: &str| toml::Value::String(v.to_string()).to_string();
    let mut f = format!(
        "about = {}\n[stop]\ntimeout_s = {}\n[qemu]\ncpu = \"max,pauth=off\"\n",
        quote(&format!("tools run --kernel {kernel}")),
        300 + 60 * u64::from(vms)
    );
    for i in 1..=vms {
        f.push_str(&format!("\n[[vm]]\nname = \"linux{i}\"\nkernel = {}\n", quote(kernel)));
        if let Some(i) = initrd {
            f.push_str(&format!("initrd = {}\n", quote(i)));
        }
        f.push_str(&format!("bootargs = {}\nram_mib = {ram}\nvcpus = {cpus}\n", quote(append)));
    }
    let path = root.join("target/uvmhyp/linux-cli.toml");
    std::fs::create_dir_all(root.join("target/uvmhyp")).and_then(|()| std::fs::write(&path, f)).map_err(|e| Error::CannotRun(format!("{}: {e}", path.display())))?;
    Ok(path.display().to_string())
}

/// `run`: stream the console; success iff the scenario's VMs all ended as expected, QEMU's status
/// agrees (for `default`: every guest exited 0) and its console and trace checks hold.
fn cmd_run(root: &Path, arg: &str) -> Result<Status, Error> {
    let s = scenarios::find(root, arg)?;
    let j = run_judged(root, &s, live::Echo::Console)?;
    if let Ok(t) = j.trace.clone().and_then(|bytes| checks::decode(&bytes)) {
        out!()?;
        show::case_table(&checks::faults(&t))?;
    }
    out!()?;
    out!(
        "scenario {}: {} in {:.1}s (QEMU status {}); trace, console and VM logs, QEMU command and scenario in {}/",
        s.name,
        if j.failures.is_empty() { "ok" } else { "FAILED" },
        j.out.elapsed.as_secs_f64(),
        j.out.status.map_or("none".to_string(), |c| c.to_string()),
        j.run.path()
    )?;
    for f in &j.failures {
        out!("  {f}")?;
    }
    Ok(j.status())
}

/// `test`: every named scenario (all by default), then cargo's summary line.
fn cmd_test(root: &Path, names: &[String]) -> Result<Status, Error> {
    let list: Vec<Scenario> = if names.is_empty() {
        scenarios::all(root)?
    } else {
        names.iter().map(|n| scenarios::find(root, n)).collect::<Result<_, _>>()?
    };
    let start = Instant::now();
    out!("\nrunning {} QEMU scenarios", list.len())?;
    let mut failed = Vec::new();
    let mut worst = Status::Ok;
    for s in &list {
        let status = match run_judged(root, s, live::Echo::Quiet) {
            Ok(j) if j.failures.is_empty() => {
                out!("test {} ... ok ({:.1}s)", s.name, j.out.elapsed.as_secs_f64())?;
                j.status()
            }
            Ok(j) => {
                out!("test {} ... FAILED ({:.1}s)", s.name, j.out.elapsed.as_secs_f64())?;
                for m in &j.failures {
                    out!("    {m}")?;
                }
                let tail = j.out.lines.len().saturating_sub(15);
                out!("    --- last console lines ({}) ---", j.run.console_log())?;
                for l in &j.out.lines[tail..] {
                    out!("    | {l}")?;
                }
                j.status()
            }
            Err(Error::CannotRun(e)) => {
                out!("test {} ... FAILED", s.name)?;
                out!("    {e}")?;
                Status::CannotRun
            }
            Err(e) => return Err(e),
        };
        if status != Status::Ok {
            failed.push(s.name.as_str());
        }
        worst = worst.max(status);
    }
    if !failed.is_empty() {
        out!("\nfailures:")?;
        for n in &failed {
            out!("    {n}")?;
        }
    }
    out!(
        "\ntest result: {}. {} passed; {} failed; finished in {:.2}s",
        if failed.is_empty() { "ok" } else { "FAILED" },
        list.len() - failed.len(),
        failed.len(),
        start.elapsed().as_secs_f64()
    )?;
    Ok(worst)
}

fn cmd_list(root: &Path) -> Result<Status, Error> {
    for s in scenarios::all(root)? {
        out!("{:<10} {}", s.name, s.about)?;
    }
    Ok(Status::Ok)
}

/// `trace FILE [-n N]`.
fn cmd_trace(file: &Path, head: usize) -> Result<Status, Error> {
    let shown = file.display().to_string();
    let bytes = std::fs::read(file).map_err(|e| Error::Usage(format!("{shown}: {e}")))?;
    let t = checks::decode(&bytes).map_err(|e| Error::Usage(format!("{shown}: {e}")))?;
    show::trace(&shown, &t, head)?;
    Ok(Status::Ok)
}

/// `report TRACE|RUN_DIR [--out DIR] [--csv]`.
fn cmd_report(input: &Path, out: Option<&Path>, csv: bool) -> Result<Status, Error> {
    let markdown = report::make(input, out, csv).map_err(|e| match e {
        report::ReportError::Load(e) => Error::Usage(e.to_string()),
        e @ report::ReportError::Write { .. } => Error::CannotRun(e.to_string()),
    })?;
    for line in markdown.lines() {
        out!("{line}")?;
    }
    Ok(Status::Ok)
}

/// `compare A B`.
fn cmd_compare(a: &Path, b: &Path) -> Result<Status, Error> {
    let read = |p: &Path| compare::read(p).map_err(|e| Error::Usage(e.to_string()));
    let (a, b) = (read(a)?, read(b)?);
    for line in compare::table(&a, &b) {
        out!("{line}")?;
    }
    Ok(Status::Ok)
}

/// `debug [FILE|NAME]`: QEMU with `-s -S` in the foreground.
fn cmd_debug(root: &Path, arg: &str) -> Result<Status, Error> {
    let s = scenarios::find(root, arg)?;
    qemu::check_binaries(root, &s).map_err(Error::CannotRun)?;
    let run = runs::RunDir::create(root, &s).map_err(|e| Error::CannotRun(format!("{}: {e}", runs::RUNS)))?;
    let mut args = qemu::qemu_args(&qemu::append_for_run(root, &s, &run).map_err(|e| Error::CannotRun(format!("{}: {e}", run.path())))?, true, &s.machine);
    args.extend(qemu::prepare_swap(root, &s, &run).map_err(|e| Error::CannotRun(format!("{}: {e}", run.path())))?);
    std::fs::write(root.join(run.qemu_cmd()), format!("{}\n", qemu::command_line(&args)))
        .map_err(|e| Error::CannotRun(format!("{}: {e}", run.qemu_cmd())))?;
    out!("QEMU is halted with a gdb stub on :1234. In another terminal, from {}:", root.display())?;
    out!("  gdb-multiarch -q -ex 'file {}' -ex 'target remote :1234'", qemu::hyp_path())?;
    out!("  (guest symbols: add-symbol-file {} — guests are linked at 0x40000000)", s.vms[0].image.path())?;
    out!("$ {}", qemu::command_line(&args))?;
    out!("(trace, QEMU command and scenario in {}/)", run.path())?;
    let st = std::process::Command::new(qemu::QEMU)
        .args(&args)
        .current_dir(root)
        .status()
        .map_err(|e| Error::CannotRun(format!("{}: {e}", qemu::QEMU)))?;
    Ok(if st.success() { Status::Ok } else { Status::Failed })
}
