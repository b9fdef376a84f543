//! The end-of-run report (README, "What a run prints"): per-VM exit lines as VMs stop, then the uvmexp counters
//! table (one column per VM and a total) and the summary line.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use super::out::outln;
use super::machine::Vm;
use alloc::sync::Arc;
use hyp::stop::Stop;
use vm::share::Standing;
use vm::stats::StatsSnapshot;

/// `uvmhyp: vm<N> (<name>) exited <status>` / `… crashed [<who>]: <what>` (`hyp::stop`).
pub fn vm_stopped(vm: &Vm, why: &Stop) {
    outln!("uvmhyp: vm{} ({}) {}", vm.number, vm.name, why);
}

/// The memory claim of `vm` as it stops (a run where VMs have claims, `vm::share`): what it held
/// against what it was entitled to.
pub fn share_at_stop(vm: &Vm, s: &Standing) {
    let max = s.claim.share.max.map_or_else(|| String::from("-"), |m| m.to_string());
    outln!(
        "uvmhyp: share: vm{} ({}) held {} pages at its stop, entitled to {} (min {}, max {max}, shares {})",
        vm.number,
        vm.name,
        s.resident,
        s.entitlement,
        s.claim.share.min,
        s.claim.share.shares
    );
}

/// Print the counters table (with `extra` rows after the counters: a name, one value per VM and
/// the total, as the memory accounting gives them) and the summary; returns the number of failed
/// VMs. `daemon`, when given (a run with swap), is the pagedaemon's own column, counted in the
/// total (the accounting rows have nothing in it: the pagedaemon has no memory of its own).
pub fn table(vms: &[Arc<Vm>], extra: &[(String, Vec<u64>, u64)], daemon: Option<StatsSnapshot>) -> usize {
    let mut snaps: Vec<StatsSnapshot> = vms.iter().map(|v| v.stats()).collect();
    snaps.extend(daemon);
    let total = snaps.iter().fold(StatsSnapshot::default(), |acc, s| acc.add(s));

    let mut header: Vec<String> = vec![String::from("counter")];
    header.extend(vms.iter().map(|v| format!("vm{}", v.number)));
    if daemon.is_some() {
        header.push(String::from("pdaemon"));
    }
    header.push(String::from("total"));

    let mut rows: Vec<Vec<String>> = Vec::new();
    for (i, (name, t)) in total.fields().enumerate() {
        let mut row = vec![String::from(name)];
        row.extend(snaps.iter().map(|s| s.fields().nth(i).map_or(0, |(_, x)| x).to_string()));
        row.push(t.to_string());
        rows.push(row);
    }
    for (name, per_vm, total) in extra {
        let mut row = vec![name.clone()];
        row.extend(per_vm.iter().map(u64::to_string));
        if daemon.is_some() {
            row.push(String::new());
        }
        row.push(total.to_string());
        rows.push(row);
    }

    let cols = header.len();
    let width: Vec<usize> = (0..cols)
        .map(|c| rows.iter().chain(core::iter::once(&header)).map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let fmt_row = |r: &[String]| {
        let mut s = format!("{:<w$}", r[0], w = width[0]);
        for c in 1..cols {
            s.push_str(&format!("  {:>w$}", r[c], w = width[c]));
        }
        s
    };
    outln!("{}", fmt_row(&header));
    for r in &rows {
        outln!("{}", fmt_row(r));
    }

    let failed = vms.iter().filter(|v| !v.stopped_state().is_some_and(|s| s.is_success())).count();
    outln!("uvmhyp: {} VMs, {} failed", vms.len(), failed);
    failed
}
