//! Trace checks: decode a trace file and hold it against a scenario's [`Check`]s.

use crate::scenarios::{Check, Scenario, RAM_BASE};
use std::collections::BTreeSet;
use vm::fault::{FaultCase, FaultError};
use vm::trace::{self, Entry, Outcome, Record, Trace};

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

/// Evaluate every check of `scenario` (plus: every VM has at least one fault record, and the
/// trace is not capped unless the scenario wants it to be); returns one message per failed check.
pub fn run_checks(scenario: &Scenario, t: &Trace) -> Vec<String> {
    let records = &faults(t);
    let mut failures = Vec::new();
    if let Some(c) = t.capped() {
        if !scenario.checks.contains(&Check::Capped) {
            failures.push(format!("trace: capped at {} MiB (raise the scenario's trace.max_mib)", c.cap >> 20));
        }
    }
    for (i, spec) in scenario.vms.iter().enumerate() {
        let id = i as u16 + 1;
        if !records.iter().any(|r| r.vm == id) {
            failures.push(format!("trace: no record of vm{id} ({})", spec.name));
        }
    }
    for check in &scenario.checks {
        if let Err(e) = eval(scenario, check, t, records) {
            failures.push(format!("trace: {e}"));
        }
    }
    failures
}

/// One check on trace `t`, whose fault records are `records`.
pub fn eval(scenario: &Scenario, check: &Check, t: &Trace, records: &[Record]) -> Result<(), String> {
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
        Check::FamilyCaseAtLeast { vm, case, min } => {
            let scenario_vms = scenario.vms.len() as u16;
            let n = records
                .iter()
                .filter(|r| r.vm == vm || r.vm > scenario_vms)
                .filter(|r| r.case == Some(case) && r.outcome == Outcome::Resolved)
                .count() as u64;
            if n < min {
                return Err(format!(
                    "vm{vm} and its clones: {n} resolved {} faults, expected at least {min}",
                    case_name(Some(case))
                ));
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
        Check::Mmio { vm, min_accesses, max_records } => {
            if let Some(r) = of(vm).find(|r| r.outcome == Outcome::Mmio) {
                return Err(format!("vm{vm}: a fault record for the MMIO access at {} (accesses are counted)", r.ipa));
            }
            let (accesses, n) = t
                .entries
                .iter()
                .filter_map(|e| match e {
                    Entry::Mmio(m) if m.vm == vm => Some(m.count),
                    _ => None,
                })
                .fold((0u64, 0u64), |(a, n), c| (a + c, n + 1));
            if accesses < min_accesses || n > max_records {
                return Err(format!(
                    "vm{vm}: {accesses} MMIO accesses in {n} records, expected at least {min_accesses} in at most {max_records}"
                ));
            }
            Ok(())
        }
        Check::SharedPageIns { min } => {
            let per_vm = crate::swapcheck::shared_pageins(t);
            let n: u64 = per_vm.values().sum();
            if n < min {
                let each: Vec<String> = per_vm.iter().map(|(vm, k)| format!("vm{vm} {k}")).collect();
                return Err(format!(
                    "{n} page-ins of slots another VM's page-out wrote ({}), expected at least {min}",
                    if each.is_empty() { "none".to_string() } else { each.join(", ") }
                ));
            }
            Ok(())
        }
        Check::Capped => {
            let Some(c) = t.capped() else { return Err("not capped, expected to reach trace.max_mib".into()) };
            let last_is_capped = matches!(t.entries.last(), Some(Entry::Capped(_)));
            let size = (trace::HEADER_BYTES + t.entries.iter().map(|e| e.kind().bytes()).sum::<usize>()) as u64;
            if !last_is_capped || size > c.cap {
                return Err(format!("capped record not last, or the file ({size} bytes) is over its cap of {} bytes", c.cap));
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

    /// The checks of `s` against a trace of `records`.
    fn run_checks(s: &Scenario, records: &[Record]) -> Vec<String> {
        super::run_checks(s, &decode(&file(records)).unwrap())
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
        let good = touch_trace(1, 16384);
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

    /// `tools run default` recorded by the v1 hypervisor and by the v2 one, each cut to its first
    /// 1000 fault records of vm3 (`touch`) to stay small; everything else kept.
    const DEFAULT_V1: &[u8] = include_bytes!("../tests/data/default-v1.trace");
    const DEFAULT_V2: &[u8] = include_bytes!("../tests/data/default-v2.trace");

    /// Per-VM counts of how faults ended, as `tools run` prints them.
    fn cases(t: &Trace) -> Vec<(u16, String, u64)> {
        crate::verdict::case_counts(&faults(t)).into_iter().map(|((vm, k), n)| (vm, k, n)).collect()
    }

    #[test]
    fn the_recorded_v1_default_run_decodes() {
        let t = decode(DEFAULT_V1).unwrap();
        assert_eq!((t.version, t.freq, t.entries.len()), (trace::Version::V1, None, 1526));
        assert!(t.faults().all(|r| r.timing.is_none()));
        let want = [(1, "2A", 9), (1, "2B-copy", 5), (2, "2A", 2), (2, "2B-copy", 5), (2, "Restart", 505), (3, "2A", 4), (3, "2B-copy", 4), (3, "2B-zero", 992)];
        assert_eq!(cases(&t), want.map(|(v, k, n)| (v, k.to_string(), n)));
        // Its checks run as on a v2 trace: image1 and image2 hold, touch's bounds do not (cut).
        let f = run_checks(&builtin("default"), &faults(&t));
        assert_eq!(f, ["trace: vm3: 1000 resolved faults in its RAM, expected 2048..=16512"]);
    }

    #[test]
    fn the_recorded_v2_default_run_decodes_with_time_cpu_cost_and_its_other_records() {
        let t = decode(DEFAULT_V2).unwrap();
        assert_eq!((t.version, t.freq), (trace::Version::V2, Some(62_500_000)));
        let want = [(1, "2A", 7), (1, "2B-copy", 5), (2, "2A", 6), (2, "2B-copy", 5), (3, "2B-zero", 1000)];
        assert_eq!(cases(&t), want.map(|(v, k, n)| (v, k.to_string(), n)));
        let events: Vec<&trace::Event> = t.entries.iter().filter_map(|e| if let Entry::Event(e) = e { Some(e) } else { None }).collect();
        let starts = events.iter().filter(|e| e.what == trace::EventKind::VmStart).count();
        let exits = events.iter().filter(|e| e.what == trace::EventKind::VmStop(trace::StopStatus::Exited(0))).count();
        assert_eq!((events.len(), starts, exits), (6, 3, 3));
        let first = events.iter().map(|e| e.time).min().unwrap();
        let last = events.iter().map(|e| e.time).max().unwrap();
        for r in t.faults() {
            let tm = r.timing.expect("v2 faults are timed");
            assert!(tm.time > first && tm.time < last && tm.cost > 0 && tm.cpu < 4, "{r:?}");
        }
        // vm3's resident pages never shrink while it runs, and its last sample has all 16392.
        let mut vm3: Vec<trace::Accounting> = t.entries.iter().filter_map(|e| match e {
            Entry::Accounting(a) if a.vm == 3 => Some(*a),
            _ => None,
        }).collect();
        vm3.sort_by_key(|a| a.time);
        assert!(vm3.windows(2).all(|w| w[0].resident <= w[1].resident), "{vm3:?}");
        assert_eq!(vm3.last().map(|a| a.resident), Some(16392));
        assert!(t.capped().is_none());
    }

    #[test]
    fn mmio_accesses_must_be_counted_not_recorded() {
        let s = &builtin("poll");
        let count = |count| Entry::Mmio(trace::MmioCount {
            time: 1,
            cpu: 0,
            vm: 1,
            base: Ipa(0x0900_0000),
            offset: 0x18,
            direction: trace::Direction::Read,
            count,
        });
        let mut entries = vec![Entry::Fault(rec(0, 1, 0, RAM_BASE, Some(FaultCase::Obj2A), Outcome::Resolved))];
        entries.extend([count(60_000), count(40_011)]);
        let ok = decode(&trace::encode(62_500_000, &entries)).unwrap();
        assert!(super::run_checks(s, &ok).is_empty(), "{:?}", super::run_checks(s, &ok));
        // The v1 way: a record per access.
        let mut per_access = vec![entries[0]];
        per_access.extend((0..100_011).map(|i| Entry::Fault(rec(i + 1, 1, 0, 0x0900_0018, None, Outcome::Mmio))));
        let f = super::run_checks(s, &decode(&trace::encode(62_500_000, &per_access)).unwrap());
        assert!(f.len() == 1 && f[0].contains("a fault record for the MMIO access"), "{f:?}");
        // Too few accesses, or too many records.
        entries.pop();
        assert!(super::run_checks(s, &decode(&trace::encode(1, &entries)).unwrap())[0].contains("60000 MMIO accesses in 1 records"));
        entries.extend((0..400).map(|_| count(100)));
        assert!(super::run_checks(s, &decode(&trace::encode(1, &entries)).unwrap())[0].contains("in 401 records"));
    }

    #[test]
    fn a_capped_trace_fails_unless_the_scenario_expects_it() {
        let mut entries: Vec<Entry> = touch_trace(1, 16384).into_iter().map(Entry::Fault).collect();
        let size = (trace::HEADER_BYTES + entries.len() * trace::FAULT_BYTES + trace::CAPPED_BYTES) as u64;
        let capped = |cap| Entry::Capped(trace::Capped { time: 1, cpu: 0, unwritten: 10, cap });
        entries.push(capped(size));
        let t = decode(&trace::encode(1, &entries)).unwrap();
        assert_eq!(super::run_checks(&builtin("touch"), &t), ["trace: capped at 0 MiB (raise the scenario's trace.max_mib)"]);
        let mut wants = builtin("touch");
        wants.checks = vec![Check::Capped];
        assert!(super::run_checks(&wants, &t).is_empty());
        // Over its cap, or not the last record.
        *entries.last_mut().unwrap() = capped(size - 1);
        assert!(super::run_checks(&wants, &decode(&trace::encode(1, &entries)).unwrap())[0].contains("over its cap"));
        entries.insert(0, capped(size));
        entries.pop();
        assert!(super::run_checks(&wants, &decode(&trace::encode(1, &entries)).unwrap())[0].contains("not last"));
        entries.remove(0);
        assert_eq!(super::run_checks(&wants, &decode(&trace::encode(1, &entries)).unwrap()), ["trace: not capped, expected to reach trace.max_mib"]);
    }

    #[test]
    fn every_scenario_fails_on_an_empty_trace() {
        for s in crate::scenarios::all(&crate::qemu::root()).unwrap().iter().filter(|s| s.trace.enabled) {
            assert!(!run_checks(s, &[]).is_empty(), "{}", s.name);
        }
    }

    #[test]
    fn shared_page_ins_count_over_all_vms_whichever_vm_a_page_out_is_named_after() {
        use vm::trace::{SwapOp, SwapRecord};
        let s = &builtin("dedup-swap");
        let check = s.checks.iter().find(|c| matches!(c, Check::SharedPageIns { .. })).expect("dedup-swap's check");
        let Check::SharedPageIns { min } = *check else { unreachable!() };
        let swap = |time: u64, op: SwapOp, vm: u16, slot: u32| Entry::Swap(SwapRecord { time, cpu: 0, vm, op, slot, ipa: Ipa(RAM_BASE) });
        // Every page-out named after vm2 (the VM that faulted the shared pages first): vm2's own
        // page-ins are of its own slots, the others' are shared ones.
        let entries = |n: u64| -> Vec<Entry> {
            (0..n)
                .flat_map(|k| {
                    let slot = k as u32 + 1;
                    let vm = [1, 3, 4][k as usize % 3];
                    [swap(3 * k, SwapOp::PageOut, 2, slot), swap(3 * k + 1, SwapOp::PageIn, 2, slot), swap(3 * k + 2, SwapOp::PageIn, vm, slot)]
                })
                .collect()
        };
        let t = |n| Trace { version: trace::Version::V2, freq: Some(62_500_000), entries: entries(n) };
        assert_eq!(eval(s, check, &t(min), &[]), Ok(()), "vm2 has none, the others make up the total");
        let short = eval(s, check, &t(min - 1), &[]).unwrap_err();
        assert!(short.contains(&format!("{} page-ins", min - 1)) && short.contains("vm1 ") && !short.contains("vm2 "), "{short}");
        let none = Trace { version: trace::Version::V2, freq: Some(62_500_000), entries: Vec::new() };
        assert!(eval(s, check, &none, &[]).unwrap_err().contains("(none)"));
    }
}
