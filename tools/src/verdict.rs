//! Judging a finished run: QEMU's exit status, each VM's stop line, the last line, and the trace.

use crate::checks;
use crate::console::{Console, Stop};
use crate::scenarios::{ConsoleCheck, Expect, Scenario, StopWhen};
use vm::trace::Record;

/// Everything that went wrong in a run, one message each (empty = passed).
pub fn judge(s: &Scenario, status: Option<i32>, timed_out: bool, console: &Console, trace: Result<Vec<u8>, String>) -> Vec<String> {
    let mut f = Vec::new();
    if timed_out {
        f.push(format!("timed out after {} s", s.timeout_s));
    }
    let panic_expected = s.stop == StopWhen::HypervisorPanic;
    match (&console.panic, panic_expected) {
        (Some(p), false) => f.push(format!("hypervisor panic: {p}")),
        (None, true) => f.push("no `uvmhyp: PANIC` line".into()),
        _ => {}
    }
    match status {
        Some(st) if st == s.expected_status() => {}
        Some(st) => f.push(format!("QEMU exited {st}, expected {}", s.expected_status())),
        None if !timed_out => f.push("QEMU was killed by a signal".into()),
        None => {}
    }
    if panic_expected {
        // The run ends at the panic: no VM stops, the trace is not flushed.
        return f;
    }
    f.extend(judge_console(s, console));
    // Without a trace (`trace.enabled = false`) the scenario has no trace checks.
    if s.trace.enabled {
        match trace.and_then(|b| checks::decode(&b)) {
            Ok(t) => {
                f.extend(checks::run_checks(s, &t));
                f.extend(crate::swapcheck::check(&t, &console.counters));
            }
            Err(e) => f.push(format!("trace: {e}")),
        }
    }
    f
}

/// The console's per-VM stop lines and its last line against the scenario.
pub fn judge_console(s: &Scenario, console: &Console) -> Vec<String> {
    let mut f = Vec::new();
    for (i, spec) in s.vms.iter().enumerate() {
        let id = i as u16 + 1;
        match (console.stop_of(id), spec.expect) {
            (None, _) => f.push(format!("vm{id} ({}): no exit or crash line", spec.name)),
            (Some((_, name, _)), _) if *name != spec.name => {
                f.push(format!("vm{id}: named {name:?}, expected {:?}", spec.name))
            }
            (Some((_, _, Stop::Exited(st))), Expect::Exit(want)) if *st == want => {}
            (Some((_, _, Stop::Crashed(_))), Expect::Crash) => {}
            (Some((_, _, Stop::Crashed(c))), Expect::Crashed(want)) if c.cause == want.0 => {}
            (Some((_, _, Stop::Reset)), Expect::Reset) => {}
            (Some((_, _, got)), want) => f.push(format!("vm{id} ({}): {got:?}, expected {want:?}", spec.name)),
        }
    }
    // Clones: numbered after the scenario's VMs (in whatever order they were made), found by
    // name, each must exit 0.
    for spec in s.vms.iter().filter(|v| v.clones > 0) {
        for k in 1..=spec.clones {
            let child = format!("{}.{k}", spec.name);
            match console.stops.iter().find(|(id, name, _)| *id as usize > s.vms.len() && *name == child) {
                None => f.push(format!("clone {child}: no exit or crash line")),
                Some((_, _, Stop::Exited(0))) => {}
                Some((id, _, got)) => f.push(format!("vm{id} ({child}): {got:?}, expected Exit(0)")),
            }
        }
    }
    // A stop line for a VM the scenario does not have: a guest forged it, or the hypervisor lies.
    let is_clone = |name: &str| {
        name.rsplit_once('.').is_some_and(|(parent, k)| {
            s.vms.iter().any(|v| v.name == parent && k.parse::<u32>().is_ok_and(|k| (1..=v.clones).contains(&k)))
        })
    };
    for (id, name, _) in &console.stops {
        if *id == 0 || (*id as usize > s.vms.len() && !is_clone(name)) || *id as usize > s.total_vms() {
            f.push(format!("stop line for vm{id} ({name}), which the scenario does not have"));
        }
    }
    f.extend(s.console.iter().filter_map(|c| console_check(c, console)));
    match console.summary {
        Some((n, k)) if n == s.total_vms() && k == s.expected_failed() => {}
        Some((n, k)) => f.push(format!(
            "last line says {n} VMs, {k} failed; expected {}, {}",
            s.total_vms(),
            s.expected_failed()
        )),
        None => f.push("no `uvmhyp: N VMs, K failed` line".into()),
    }
    if console.counters.get("faults", "total").is_none() {
        f.push("no counters table with a `faults` row".into());
    }
    f
}

/// One console check: `None` when it holds, else what went wrong.
fn console_check(check: &ConsoleCheck, console: &Console) -> Option<String> {
    let lines_of = |vm: u16| console.guest_lines.iter().filter(move |(id, _)| *id == vm).map(|(_, t)| t);
    match check {
        ConsoleCheck::GuestLine { vm, text, min } => {
            let n = lines_of(*vm).filter(|t| *t == text).count();
            (n < *min).then(|| format!("vm{vm} printed {text:?} {n} times, expected at least {min}"))
        }
        ConsoleCheck::GuestLinesAtMost { vm, prefix, max } => {
            let n = lines_of(*vm).filter(|t| t.starts_with(prefix.as_str())).count();
            (n > *max).then(|| format!("vm{vm} printed {n} lines starting {prefix:?}, expected at most {max}"))
        }
        ConsoleCheck::Warning { text } => (!console.warnings.iter().any(|w| w.contains(text.as_str())))
            .then(|| format!("no `uvmhyp: warning:` line containing {text:?}")),
        ConsoleCheck::NoWarning { text } => console
            .warnings
            .iter()
            .find(|w| w.contains(text.as_str()))
            .map(|w| format!("a `uvmhyp: warning:` line contains {text:?}: {w}")),
        ConsoleCheck::CounterAtLeast { counter, min } => match console.counters.get(counter, "total") {
            Some(n) if n >= *min => None,
            Some(n) => Some(format!("counter {counter}: total {n}, expected at least {min}")),
            None => Some(format!("no {counter} row in the counters table")),
        },
        ConsoleCheck::StopsBefore { first, then } => {
            let at = |vm: u16| console.stops.iter().position(|(id, _, _)| *id == vm);
            match (at(*first), at(*then)) {
                (Some(a), Some(b)) if a < b => None,
                _ => Some(format!("vm{first} did not stop before vm{then}")),
            }
        }
    }
}

/// Two runs' traces of a reproducible scenario: `None` if byte-identical, else where they part.
pub fn same_trace(a: &[u8], b: &[u8]) -> Option<String> {
    if a == b {
        return None;
    }
    let at = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    Some(format!("not reproducible: the second run's trace ({} bytes) differs from the first's ({} bytes) at byte {at}", b.len(), a.len()))
}

/// Per-VM counts of each case, for reports.
pub fn case_counts(records: &[Record]) -> std::collections::BTreeMap<(u16, String), u64> {
    let mut m = std::collections::BTreeMap::new();
    for r in records {
        let key = match r.outcome {
            vm::trace::Outcome::Resolved => checks::case_name(r.case).to_string(),
            o => checks::outcome_name(o),
        };
        *m.entry((r.vm, key)).or_insert(0) += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::tests::builtin;

    fn console(text: &str) -> Console {
        let mut c = Console::default();
        text.lines().for_each(|l| c.feed(l));
        c
    }

    #[test]
    fn crash_scenario_wants_a_crash_and_an_exit_0() {
        let s = &builtin("crash");
        let good = console("uvmhyp: vm1 (crash) crashed [guest-fault]: instruction abort\nuvmhyp: vm2 (touch) exited 0\ncounter vm1 vm2 total\nfaults 1 2 3\nuvmhyp: 2 VMs, 1 failed");
        assert!(judge_console(s, &good).is_empty(), "{:?}", judge_console(s, &good));
        let bad = console("uvmhyp: vm1 (crash) exited 224\nuvmhyp: vm2 (touch) exited 0\nuvmhyp: 2 VMs, 1 failed");
        assert_eq!(judge_console(s, &bad).len(), 2);
    }

    /// `expect = { crashed = WHO }` wants that `[who]` and no other.
    #[test]
    fn a_crash_of_a_named_cause_must_have_that_cause() {
        let mut s = builtin("crash");
        s.vms[0].expect = Expect::Crashed(crate::scenarios::CrashCause(hyp::stop::Cause::OutOfMemory));
        let line = |who: &str| console(&format!("uvmhyp: vm1 (crash) crashed [{who}]: x\nuvmhyp: vm2 (touch) exited 0\ncounter vm1 vm2 total\nfaults 1 2 3\nuvmhyp: 2 VMs, 1 failed"));
        assert!(judge_console(&s, &line("out-of-memory")).is_empty(), "{:?}", judge_console(&s, &line("out-of-memory")));
        assert_eq!(judge_console(&s, &line("guest-fault")).len(), 1);
    }

    #[test]
    fn traces_compare_byte_for_byte() {
        assert_eq!(same_trace(b"abc", b"abc"), None);
        assert!(same_trace(b"abc", b"abd").is_some_and(|m| m.contains("at byte 2")));
        assert!(same_trace(b"abc", b"ab").is_some_and(|m| m.contains("at byte 2") && m.contains("(2 bytes)")));
    }

    #[test]
    fn a_counter_total_check_reads_the_table() {
        let c = console("counter vm1 vm2 total\ndedup_merged 3 4 7\nfaults 1 1 2");
        let check = |min| console_check(&ConsoleCheck::CounterAtLeast { counter: "dedup_merged".into(), min }, &c);
        assert_eq!(check(7), None);
        assert!(check(8).is_some_and(|m| m.contains("total 7, expected at least 8")));
        let missing = console_check(&ConsoleCheck::CounterAtLeast { counter: "nope".into(), min: 1 }, &c);
        assert!(missing.is_some_and(|m| m.contains("no nope row")));
    }

    #[test]
    fn clones_are_found_by_name_and_must_exit_0() {
        let s = &builtin("clone8");
        let stops: String = (1..=8).map(|k| format!("uvmhyp: vm{} (template.{k}) exited 0\n", 10 - k)).collect();
        let good = console(&format!("uvmhyp: vm1 (template) exited 0\n{stops}counter vm1 total\nfaults 1 1\nsaved_clone 114688 114688\nuvmhyp: 9 VMs, 0 failed"));
        assert!(judge_console(s, &good).is_empty(), "{:?}", judge_console(s, &good));
        let missing = console(&format!("uvmhyp: vm1 (template) exited 0\n{}uvmhyp: 8 VMs, 0 failed", stops.replace("(template.3) exited 0", "(other) exited 0")));
        let f = judge_console(s, &missing);
        assert!(f.iter().any(|m| m.contains("clone template.3: no exit")), "{f:?}");
        assert!(f.iter().any(|m| m.contains("(other), which the scenario does not have")), "{f:?}");
        let failed = console(&format!("uvmhyp: vm1 (template) exited 0\n{}uvmhyp: 9 VMs, 1 failed", stops.replace("(template.5) exited 0", "(template.5) exited 6")));
        let f = judge_console(s, &failed);
        assert!(f.iter().any(|m| m.contains("(template.5): Exited(6)")), "{f:?}");
    }

    #[test]
    fn forged_lines_and_console_checks() {
        let s = &builtin("hostile");
        let good = console(
            "[vm1] x\\x0auvmhyp: vm9 (fake) exited 0\n[vm1] x\n[vm1] uvmhyp: vm9 (fake) exited 0\n[vm1] hostile: flood 0\n\
             uvmhyp: vm1 (hostile) exited 0\nuvmhyp: warning: vm1: 488 console lines dropped\n\
             counter vm1 total\nfaults 1 1\nuvmhyp: 1 VMs, 0 failed",
        );
        assert!(judge_console(s, &good).is_empty(), "{:?}", judge_console(s, &good));
        // The same run where the hypervisor let the guest start a line of its own.
        let forged = console(
            "[vm1] x\nuvmhyp: vm9 (fake) exited 0\nuvmhyp: vm1 (hostile) exited 0\n\
             counter vm1 total\nfaults 1 1\nuvmhyp: 1 VMs, 0 failed",
        );
        let f = judge_console(s, &forged);
        assert!(f.iter().any(|m| m.contains("vm9")), "{f:?}");
        assert!(f.iter().any(|m| m.contains("printed")), "{f:?}");
        assert!(f.iter().any(|m| m.contains("warning")), "{f:?}");
    }

    #[test]
    fn stop_order_is_checked() {
        let s = &builtin("preempt");
        let tail = "counter vm1 total\nfaults 1 1\nuvmhyp: 6 VMs, 0 failed";
        let mut lines: Vec<String> = (1..=5).map(|i| format!("uvmhyp: vm{i} (spin{i}) exited 0")).collect();
        lines.insert(0, "uvmhyp: vm6 (polite) exited 0".into());
        let good = console(&format!("{}\n{tail}", lines.join("\n")));
        assert!(judge_console(s, &good).is_empty(), "{:?}", judge_console(s, &good));
        lines.swap(0, 3);
        let starved = console(&format!("{}\n{tail}", lines.join("\n")));
        assert_eq!(judge_console(s, &starved), ["vm6 did not stop before vm1", "vm6 did not stop before vm2", "vm6 did not stop before vm3"]);
    }

    #[test]
    fn missing_lines_status_and_trace_are_failures() {
        let s = &builtin("touch");
        let f = judge(s, Some(0), false, &console(""), Err("no trace file".into()));
        assert_eq!(f.len(), 4, "{f:?}");
        let f = judge(s, None, true, &console("uvmhyp: PANIC at x:1: y"), Ok(vec![]));
        assert!(f.iter().any(|m| m.contains("timed out")));
        assert!(f.iter().any(|m| m.contains("panic")));
        assert!(f.iter().any(|m| m.contains("bad trace")));
    }

    #[test]
    fn a_panic_scenario_wants_the_panic_and_status_101_only() {
        let s = &builtin("panic-fault");
        let panicked = console("uvmhyp: PANIC at hyp/src/main.rs:1: selftest=panic-fault");
        assert!(judge(s, Some(101), false, &panicked, Err("no trace file".into())).is_empty());
        // Hung in the panic path: the timeout, no status.
        let f = judge(s, None, true, &panicked, Err("no trace file".into()));
        assert_eq!(f, ["timed out after 20 s"]);
        // A run that did not panic fails, whatever its VMs did.
        let f = judge(s, Some(0), false, &console("uvmhyp: vm1 (spin) exited 0"), Ok(vec![]));
        assert!(f.iter().any(|m| m.contains("no `uvmhyp: PANIC` line")) && f.iter().any(|m| m.contains("expected 101")), "{f:?}");
    }
}
