//! The `tools` binary end to end, without QEMU: `list`, `trace` on a synthetic file, `--help`,
//! usage errors and their exit statuses, bad scenario files, a closed stdout.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use vm::addr::{Access, Ipa};
use vm::fault::FaultCase;
use vm::trace::{encode, Entry, Outcome, Record, Timing};

fn tools() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tools"))
}

#[test]
fn list_names_every_scenario() {
    let out = tools().arg("list").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for name in ["default", "touch", "image", "badaddr", "crash", "smp", "multi"] {
        assert!(text.lines().any(|l| l.starts_with(name)), "{name} missing from:\n{text}");
    }
}

/// A fresh directory of this test process.
fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("uvmhyp-cli-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A trace of `n` records: 2A and 2B-copy faults of vm1, then aborts of vm2.
fn trace_bytes(n: u64) -> Vec<u8> {
    let mut entries = Vec::new();
    for seq in 0..n {
        let (vm, case, outcome, ipa) = match seq {
            0 => (1u16, Some(FaultCase::Obj2A), Outcome::Resolved, 0x4000_0000u64),
            1 => (1, Some(FaultCase::ObjCopy2B), Outcome::Resolved, 0x4000_8000),
            _ => (2, None, Outcome::AbortInjected, 0x2000_0000),
        };
        let timing = Some(Timing { time: 625 * seq, cpu: 0, cost: 125 });
        entries.push(Entry::Fault(Record { seq, ipa: Ipa(ipa), vm, vcpu: 0, access: Access::Read, case, outcome, neighbours: 0, refaults: 0, timing }));
    }
    encode(62_500_000, &entries)
}

#[test]
fn trace_prints_counts_and_records() {
    let dir = temp_dir("trace");
    let path = dir.join("t.trace");
    let mut bytes = trace_bytes(3);
    std::fs::write(&path, &bytes).unwrap();
    let out = tools().arg("trace").arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("3 records"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("2B-copy") && l.split_whitespace().last() == Some("1")), "{text}");
    assert!(text.contains("0x20000000"), "{text}");

    bytes.truncate(bytes.len() - 1);
    std::fs::write(&path, &bytes).unwrap();
    let out = tools().arg("trace").arg(&path).output().unwrap();
    assert!(!out.status.success(), "a short trace must fail");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The recorded traces of `tools/tests/data/` (see `checks.rs`'s tests), as `tools trace` shows them.
#[test]
fn trace_shows_both_versions_of_a_recorded_run() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let show = |f: &str| {
        let out = tools().arg("trace").arg(data.join(f)).args(["-n", "3"]).output().unwrap();
        assert!(out.status.success(), "{f}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let v2 = show("default-v2.trace");
    assert!(v2.contains("trace v2, counter 62500000 Hz, 1065 records (36 accounting, 6 events, 1023 faults)"), "{v2}");
    assert!(v2.contains("cpu1  vm3  exited 0"), "{v2}");
    let head = v2.lines().find(|l| l.trim_start().starts_with("seq")).unwrap();
    assert!(head.ends_with("time_us  cpu   cost_ns"), "{head}");
    let first = v2.lines().skip_while(|l| !l.trim_start().starts_with("seq")).nth(1).unwrap();
    assert_eq!(first.split_whitespace().count(), 12, "{first}");
    let v1 = show("default-v1.trace");
    assert!(v1.contains("trace v1, 1526 records (1526 faults)"), "{v1}");
    assert!(v1.lines().any(|l| l.starts_with("Restart") && l.ends_with("505")), "{v1}");
    assert!(!v1.contains("time_us"), "{v1}");
}

#[test]
fn unknown_scenario_and_no_command_are_errors() {
    assert_eq!(tools().output().unwrap().status.code(), Some(2));
    let out = tools().args(["run", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no scenario"));
}

#[test]
fn help_exits_0_on_every_command() {
    for args in [&["--help"][..], &["run", "--help"], &["test", "--help"], &["trace", "--help"], &["list", "--help"], &["debug", "--help"], &["help"]] {
        let out = tools().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Usage: tools"), "{args:?}: {text}");
    }
    let top = String::from_utf8(tools().arg("--help").output().unwrap().stdout).unwrap();
    for command in ["run", "test", "trace", "list", "debug"] {
        assert!(top.lines().any(|l| l.trim_start().starts_with(command)), "{command} missing from:\n{top}");
    }
    assert!(top.contains("101"), "exit statuses in --help: {top}");
}

#[test]
fn unknown_arguments_and_commands_exit_2() {
    for args in [&["list", "extra"][..], &["list", "--bogus"], &["trace"], &["trace", "f", "-n", "many"], &["frobnicate"], &["run", "a", "b"], &["--bogus"]] {
        let out = tools().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("error:"), "{args:?}");
    }
}

#[test]
fn a_bad_scenario_file_exits_2_with_file_line_and_field() {
    let dir = temp_dir("scenario");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "about = \"x\"\n[stop]\ntimeout_s = 1\n[[vm]]\nname = \"a\"\nguest = \"touch\"\nram = 5\n").unwrap();
    for command in ["run", "test", "debug"] {
        let out = tools().arg(command).arg(&file).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{command}");
        let err = String::from_utf8_lossy(&out.stderr);
        let want = format!("tools: {}:7:1: field `vm1.ram`: unknown field `ram`", file.display());
        assert!(err.starts_with(&want), "{command}: {err}");
    }
    let out = tools().args(["run", "/nonexistent/x.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.toml"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let dir = temp_dir("pipe");
    let path = dir.join("t.trace");
    std::fs::write(&path, trace_bytes(200_000)).unwrap();
    for args in [vec!["trace".into(), path.display().to_string(), "-n".into(), "200000".into()], vec!["list".into()], vec!["--help".into()]] {
        let mut child = tools().args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        // Close the read end before the tool writes: its first write gets EPIPE.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{args:?}: {err}");
        assert!(matches!(out.status.code(), Some(0 | 141)), "{args:?}: {:?} {err}", out.status);
        if args[0] == "trace" {
            assert_eq!(out.status.code(), Some(141), "trace must stop at the closed pipe");
            assert!(err.is_empty(), "{err}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
