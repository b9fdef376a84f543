//! `tools`: the host side of uvmhyp — runs scenarios in QEMU, checks them, reads traces.
//!
//! ```text
//! tools run [scenario]        run one scenario (default: `default`), streaming the console
//! tools test [names...]       run scenarios (all by default), judge each, print a summary
//! tools trace <file> [-n N]   decode a trace: per-VM case counts and the first N records
//! tools debug [scenario]      QEMU halted with a gdb stub on :1234; prints the gdb command
//! tools list                  the scenarios
//! ```
//! The tool builds nothing (the Makefile does) and runs QEMU in the workspace root (`$UVMHYP_ROOT`
//! overrides), where the scenario's trace and console log land under `target/uvmhyp/<scenario>/`.
#![forbid(unsafe_code)]

mod checks;
mod console;
mod qemu;
mod scenarios;
mod verdict;

use scenarios::Scenario;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: tools run [scenario] | test [names...] | trace <file> [-n N] | debug [scenario] | list";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = qemu::root();
    let r = match args.first().map(String::as_str) {
        Some("run") => cmd_run(&root, args.get(1).map_or("default", String::as_str)),
        Some("test") => cmd_test(&root, &args[1..]),
        Some("trace") => cmd_trace(&args[1..]),
        Some("debug") => cmd_debug(&root, args.get(1).map_or("default", String::as_str)),
        Some("list") => {
            for s in scenarios::SCENARIOS {
                println!("{:<10} {}", s.name, s.about);
            }
            Ok(true)
        }
        _ => Err(USAGE.to_string()),
    };
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("tools: {e}");
            ExitCode::from(2)
        }
    }
}

fn scenario(name: &str) -> Result<&'static Scenario, String> {
    scenarios::find(name).ok_or_else(|| {
        let names: Vec<_> = scenarios::SCENARIOS.iter().map(|s| s.name).collect();
        format!("no scenario {name:?} (have: {})", names.join(", "))
    })
}

fn read_trace(root: &Path, s: &Scenario, console: &console::Console) -> Result<Vec<u8>, String> {
    let expected = qemu::trace_path(s.name);
    if let Some(p) = &console.trace_path {
        if *p != expected {
            return Err(format!("hypervisor wrote the trace to {p}, not {expected}"));
        }
    }
    std::fs::read(root.join(&expected)).map_err(|e| format!("{expected}: {e}"))
}

/// One scenario run and judged: QEMU's outcome, the trace as read, and every failure (empty =
/// passed). `Err` when it could not run at all (a binary missing, QEMU not started).
struct Judged {
    out: qemu::Outcome,
    trace: Result<Vec<u8>, String>,
    failures: Vec<String>,
}

fn run_judged(root: &Path, s: &Scenario, echo: bool) -> Result<Judged, String> {
    qemu::check_binaries(root, s)?;
    let out = qemu::run(root, s, echo, Duration::from_secs(s.timeout_s)).map_err(|e| format!("{}: {e}", qemu::QEMU))?;
    let trace = read_trace(root, s, &out.console);
    let failures = verdict::judge(s, out.status, out.timed_out, &out.console, trace.clone());
    Ok(Judged { out, trace, failures })
}

/// `run`: stream the console; success iff the scenario's VMs all ended as expected, QEMU's status
/// agrees (for `default`: every guest exited 0) and its console and trace checks hold.
fn cmd_run(root: &Path, name: &str) -> Result<bool, String> {
    let s = scenario(name)?;
    let Judged { out, trace, failures } = run_judged(root, s, true)?;
    if let Ok(records) = trace.and_then(|bytes| checks::decode(&bytes)) {
        println!();
        print_case_table(&records);
    }
    println!();
    println!(
        "scenario {}: {} in {:.1}s (QEMU status {}); trace {}, console log {}/console.log",
        s.name,
        if failures.is_empty() { "ok" } else { "FAILED" },
        out.elapsed.as_secs_f64(),
        out.status.map_or("none".to_string(), |c| c.to_string()),
        qemu::trace_path(s.name),
        qemu::out_dir(s.name)
    );
    for f in &failures {
        println!("  {f}");
    }
    Ok(failures.is_empty())
}

/// `test`: every named scenario (all by default), then cargo's summary line.
fn cmd_test(root: &Path, names: &[String]) -> Result<bool, String> {
    let list: Vec<&Scenario> = if names.is_empty() {
        scenarios::SCENARIOS.iter().collect()
    } else {
        names.iter().map(|n| scenario(n)).collect::<Result<_, _>>()?
    };
    let start = Instant::now();
    println!("\nrunning {} QEMU scenarios", list.len());
    let mut failed = Vec::new();
    for s in &list {
        match run_judged(root, s, false) {
            Ok(j) if j.failures.is_empty() => {
                println!("test {} ... ok ({:.1}s)", s.name, j.out.elapsed.as_secs_f64());
            }
            Ok(j) => {
                println!("test {} ... FAILED ({:.1}s)", s.name, j.out.elapsed.as_secs_f64());
                for m in &j.failures {
                    println!("    {m}");
                }
                let tail = j.out.lines.len().saturating_sub(15);
                println!("    --- last console lines ({}/console.log) ---", qemu::out_dir(s.name));
                for l in &j.out.lines[tail..] {
                    println!("    | {l}");
                }
                failed.push(s.name);
            }
            Err(e) => {
                println!("test {} ... FAILED", s.name);
                println!("    {e}");
                failed.push(s.name);
            }
        }
    }
    if !failed.is_empty() {
        println!("\nfailures:");
        for n in &failed {
            println!("    {n}");
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed; finished in {:.2}s",
        if failed.is_empty() { "ok" } else { "FAILED" },
        list.len() - failed.len(),
        failed.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(failed.is_empty())
}

fn print_case_table(records: &[vm::trace::Record]) {
    let counts = verdict::case_counts(records);
    let mut vms: Vec<u16> = counts.keys().map(|(v, _)| *v).collect();
    vms.dedup();
    let mut kinds: Vec<String> = counts.keys().map(|(_, k)| k.clone()).collect();
    kinds.sort();
    kinds.dedup();
    print!("{:<10}", "trace");
    for v in &vms {
        print!("{:>9}", format!("vm{v}"));
    }
    println!("{:>9}", "total");
    for k in &kinds {
        print!("{k:<10}");
        let mut total = 0;
        for v in &vms {
            let n = counts.get(&(*v, k.clone())).copied().unwrap_or(0);
            total += n;
            print!("{n:>9}");
        }
        println!("{total:>9}");
    }
    println!("{:<10}{:>9}", "records", records.len());
}

/// `trace <file> [-n N]`.
fn cmd_trace(args: &[String]) -> Result<bool, String> {
    let file = args.first().ok_or(USAGE)?;
    let head = match args.get(1).map(String::as_str) {
        Some("-n") => args.get(2).and_then(|n| n.parse().ok()).ok_or("-n needs a number")?,
        _ => 20,
    };
    let bytes = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
    let records = checks::decode(&bytes)?;
    println!("{file}: {} records", records.len());
    print_case_table(&records);
    println!();
    println!("{:>8} {:>4} {:>4} {:>14} {:<6} {:<9} {:<10} {:>5} {:>5}", "seq", "vm", "vcpu", "ipa", "access", "case", "outcome", "nbrs", "refl");
    let mut sorted = records.clone();
    sorted.sort_by_key(|r| r.seq);
    for r in sorted.iter().take(head) {
        println!(
            "{:>8} {:>4} {:>4} {:>#14x} {:<6} {:<9} {:<10} {:>5} {:>5}",
            r.seq,
            r.vm,
            r.vcpu,
            r.ipa.0,
            format!("{:?}", r.access).to_lowercase(),
            checks::case_name(r.case),
            checks::outcome_name(r.outcome),
            r.neighbours,
            r.refaults
        );
    }
    Ok(true)
}

/// `debug [scenario]`: QEMU with `-s -S` in the foreground.
fn cmd_debug(root: &Path, name: &str) -> Result<bool, String> {
    let s = scenario(name)?;
    qemu::check_binaries(root, s)?;
    std::fs::create_dir_all(root.join(qemu::out_dir(s.name))).map_err(|e| e.to_string())?;
    let args = qemu::qemu_args(&qemu::append(s, &qemu::trace_path(s.name)), true, s.machine);
    println!("QEMU is halted with a gdb stub on :1234. In another terminal, from {}:", root.display());
    println!(
        "  gdb-multiarch -q -ex 'file {}' -ex 'target remote :1234'",
        qemu::hyp_path()
    );
    println!("  (guest symbols: add-symbol-file {} — guests are linked at 0x40000000)", qemu::guest_path(s.vms[0].guest));
    println!("$ {}", qemu::command_line(&args));
    let st = std::process::Command::new(qemu::QEMU)
        .args(&args)
        .current_dir(root)
        .status()
        .map_err(|e| format!("{}: {e}", qemu::QEMU))?;
    Ok(st.success())
}
