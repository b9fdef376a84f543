//! The `tools` binary end to end, without QEMU: `list`, `trace` on a synthetic file, usage errors.

use std::process::Command;
use vm::addr::{Access, Ipa};
use vm::fault::FaultCase;
use vm::trace::{header, Outcome, Record};

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

#[test]
fn trace_prints_counts_and_records() {
    let dir = std::env::temp_dir().join(format!("uvmhyp-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.trace");
    let mut bytes = header().to_vec();
    for (seq, vm, case, outcome, ipa) in [
        (0u64, 1u16, Some(FaultCase::Obj2A), Outcome::Resolved, 0x4000_0000u64),
        (1, 1, Some(FaultCase::ObjCopy2B), Outcome::Resolved, 0x4000_8000),
        (2, 2, None, Outcome::AbortInjected, 0x2000_0000),
    ] {
        let r = Record { seq, ipa: Ipa(ipa), vm, vcpu: 0, access: Access::Read, case, outcome, neighbours: 0, refaults: 0 };
        bytes.extend_from_slice(&r.encode());
    }
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

#[test]
fn unknown_scenario_and_no_command_are_errors() {
    assert_eq!(tools().output().unwrap().status.code(), Some(2));
    let out = tools().args(["run", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no scenario"));
}
