//! Trace checks: decode a trace file and hold it against a scenario's [`Check`]s.

use crate::scenarios::{Check, Scenario, RAM_BASE};
use std::collections::BTreeSet;
use vm::fault::{FaultCase, FaultError};
use vm::trace::{self, Outcome, Record, Trace};

/// Decode a whole trace (version 1 or 2); any header, length or field error is an error (a short
/// or corrupt trace fails the test).
pub fn decode(bytes: &[u8]) -> Result<Trace, String> {
    trace::decode(bytes).map_err(|e| format!("bad trace ({} bytes): {e}", bytes.len()))
}

/// The fault records of a trace, which the checks look at.
pub fn faults(t: &Trace) -> Vec<Record> {
    t.faults().copied().collect()
}

/// Every fault case, in the order of their trace codes.
pub const CASES: &[FaultCase] = &[
    FaultCase::Layerless0,
    FaultCase::Anon1A,
    FaultCase::AnonCow1B,
    FaultCase::Obj2A,
    FaultCase::ObjCopy2B,
    FaultCase::Zero2B,
    FaultCase::ObjFault,
];

/// The case [`case_name`] calls `name`.
pub fn case_by_name(name: &str) -> Option<FaultCase> {
    CASES.iter().copied().find(|c| case_name(Some(*c)) == name)
}

/// Short name of a case, as the seed spells it.
pub fn case_name(case: Option<FaultCase>) -> &'static str {
    match case {
        None => "-",
        Some(FaultCase::Layerless0) => "0",
        Some(FaultCase::Anon1A) => "1A",
        Some(FaultCase::AnonCow1B) => "1B",
        Some(FaultCase::Obj2A) => "2A",
        Some(FaultCase::ObjCopy2B) => "2B-copy",
        Some(FaultCase::Zero2B) => "2B-zero",
        Some(FaultCase::ObjFault) => "pgo_fault",
    }
}

/// Short name of an outcome.
pub fn outcome_name(o: Outcome) -> String {
    match o {
        Outcome::Resolved => "resolved".into(),
        Outcome::Mmio => "mmio".into(),
        Outcome::AbortInjected => "abort".into(),
        Outcome::Failed(e) => format!("{e:?}"),
    }
}

fn in_ram(r: &Record, ram_bytes: u64) -> bool {
    r.ipa.0 >= RAM_BASE && r.ipa.0 < RAM_BASE + ram_bytes
}

/// Evaluate every check of `scenario` (plus: every VM has at least one record); returns one message
/// per failed check.
pub fn run_checks(scenario: &Scenario, records: &[Record]) -> Vec<String> {
    let mut failures = Vec::new();
    for (i, spec) in scenario.vms.iter().enumerate() {
        let id = i as u16 + 1;
        if !records.iter().any(|r| r.vm == id) {
            failures.push(format!("trace: no record of vm{id} ({})", spec.name));
        }
    }
    for check in &scenario.checks {
        if let Err(e) = eval(scenario, check, records) {
            failures.push(format!("trace: {e}"));
        }
    }
    failures
}

/// One check.
pub fn eval(scenario: &Scenario, check: &Check, records: &[Record]) -> Result<(), String> {
    let of = |vm: u16| records.iter().filter(move |r| r.vm == vm);
    match *check {
        Check::RamFaults { vm, min, max } => {
            let ram = scenario.vms.get(vm as usize - 1).map_or(0, |v| v.ram_bytes());
            let in_range: Vec<&Record> = of(vm).filter(|r| in_ram(r, ram)).collect();
            let resolved = in_range.iter().filter(|r| r.outcome == Outcome::Resolved).count() as u64;
            let failed: Vec<&&Record> = in_range
                .iter()
                .filter(|r| !matches!(r.outcome, Outcome::Resolved | Outcome::Failed(FaultError::Restart)))
                .collect();
            if let Some(r) = failed.first() {
                return Err(format!(
                    "vm{vm}: {} faults in RAM not resolved, first at {} ({})",
                    failed.len(),
                    r.ipa,
                    outcome_name(r.outcome)
                ));
            }
            if resolved < min || resolved > max {
                return Err(format!("vm{vm}: {resolved} resolved faults in its RAM, expected {min}..={max}"));
            }
            Ok(())
        }
        Check::CaseAtLeast { vm, case, min } => {
            let n = of(vm).filter(|r| r.case == Some(case) && r.outcome == Outcome::Resolved).count() as u64;
            if n < min {
                return Err(format!("vm{vm}: {n} resolved {} faults, expected at least {min}", case_name(Some(case))));
            }
            Ok(())
        }
        Check::AbortAt { vm, ipa } => {
            if of(vm).any(|r| r.outcome == Outcome::AbortInjected && r.ipa.0 == ipa) {
                Ok(())
            } else {
                Err(format!("vm{vm}: no AbortInjected record at {ipa:#x}"))
            }
        }
        Check::Vcpus { vm, min } => {
            let vcpus: BTreeSet<u16> = of(vm).filter(|r| r.outcome == Outcome::Resolved).map(|r| r.vcpu).collect();
            if (vcpus.len() as u16) < min {
                return Err(format!("vm{vm}: resolved faults from vCPUs {vcpus:?}, expected {min} vCPUs"));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::tests::builtin;
    use vm::addr::{Access, Ipa};
    use vm::trace::{Entry, Timing};

    fn rec(seq: u64, vm: u16, vcpu: u16, ipa: u64, case: Option<FaultCase>, outcome: Outcome) -> Record {
        let timing = Some(Timing { time: seq * 100, cpu: 0, cost: 50 });
        Record { seq, ipa: Ipa(ipa), vm, vcpu, access: Access::Write, case, outcome, neighbours: 0, refaults: 0, timing }
    }

    fn file(records: &[Record]) -> Vec<u8> {
        let entries: Vec<Entry> = records.iter().map(|r| Entry::Fault(*r)).collect();
        trace::encode(62_500_000, &entries)
    }

    /// A trace that a correct hypervisor could write for `touch` (72 MiB, 16384 + 20 pages).
    fn touch_trace(vm: u16, pages: u64) -> Vec<Record> {
        (0..pages)
            .map(|p| rec(p, vm, 0, RAM_BASE + 0x4c000 + p * 4096, Some(FaultCase::Zero2B), Outcome::Resolved))
            .collect()
    }

    #[test]
    fn touch_passes_with_one_fault_per_page_and_fails_outside_bounds() {
        let s = &builtin("touch");
        let good = faults(&decode(&file(&touch_trace(1, 16384))).unwrap());
        assert_eq!(run_checks(s, &good), Vec::<String>::new());
        let few = touch_trace(1, 100);
        assert_eq!(run_checks(s, &few).len(), 2, "{:?}", run_checks(s, &few));
        let mut many = touch_trace(1, 16384);
        many.extend(touch_trace(1, 1000));
        assert!(run_checks(s, &many).iter().any(|m| m.contains("expected 2048..=")));
    }

    #[test]
    fn a_failed_fault_in_ram_fails_but_a_restart_does_not() {
        let s = &builtin("touch");
        let mut t = touch_trace(1, 16384);
        t.push(rec(1, 1, 0, RAM_BASE, None, Outcome::Failed(FaultError::Restart)));
        assert!(run_checks(s, &t).is_empty());
        t.push(rec(2, 1, 0, RAM_BASE, None, Outcome::Failed(FaultError::NoMemory)));
        assert!(run_checks(s, &t)[0].contains("not resolved"));
    }

    #[test]
    fn image_needs_2a_and_2b_copy_in_each_vm() {
        let s = &builtin("image");
        let mut t = vec![
            rec(0, 1, 0, RAM_BASE, Some(FaultCase::Obj2A), Outcome::Resolved),
            rec(1, 1, 0, RAM_BASE + 0x8000, Some(FaultCase::ObjCopy2B), Outcome::Resolved),
            rec(2, 2, 0, RAM_BASE, Some(FaultCase::Obj2A), Outcome::Resolved),
        ];
        let f = run_checks(s, &t);
        assert_eq!(f.len(), 1);
        assert!(f[0].contains("vm2") && f[0].contains("2B-copy"), "{f:?}");
        t.push(rec(3, 2, 0, RAM_BASE + 0x8000, Some(FaultCase::ObjCopy2B), Outcome::Resolved));
        assert!(run_checks(s, &t).is_empty());
    }

    #[test]
    fn badaddr_needs_aborts_at_both_addresses_and_missing_vms_fail() {
        let s = &builtin("badaddr");
        let t = vec![rec(0, 1, 0, 0x2000_0000, None, Outcome::AbortInjected)];
        let f = run_checks(s, &t);
        assert_eq!(f.len(), 1);
        assert!(f[0].contains("0x44000000"), "{f:?}");
        assert_eq!(run_checks(s, &[]).len(), 3);
    }

    #[test]
    fn smp_needs_every_vcpu() {
        let s = &builtin("smp");
        let mut t: Vec<Record> = (0..600)
            .map(|i| rec(i, 1, (i % 3) as u16, RAM_BASE + i * 4096, Some(FaultCase::Zero2B), Outcome::Resolved))
            .collect();
        assert!(run_checks(s, &t)[0].contains("4 vCPUs"));
        t.push(rec(999, 1, 3, RAM_BASE, Some(FaultCase::Zero2B), Outcome::Resolved));
        assert!(run_checks(s, &t).is_empty());
    }

    #[test]
    fn every_case_has_a_name_that_finds_it() {
        for &c in CASES {
            assert_eq!(case_by_name(case_name(Some(c))), Some(c));
            assert_eq!(CASES[c as usize], c, "CASES is in trace-code order");
        }
        assert_eq!(case_by_name("2C"), None);
    }

    #[test]
    fn corrupt_and_short_traces_do_not_decode() {
        let mut f = file(&touch_trace(1, 3));
        f.pop();
        assert!(decode(&f).is_err());
        assert!(decode(b"").is_err());
        let mut f = file(&touch_trace(1, 1));
        f[trace::HEADER_BYTES + 2] = 0x77;
        assert!(decode(&f).is_err());
    }

    #[test]
    fn every_scenario_fails_on_an_empty_trace() {
        for s in &crate::scenarios::all(&crate::qemu::root()).unwrap() {
            assert!(!run_checks(s, &[]).is_empty(), "{}", s.name);
        }
    }
}
