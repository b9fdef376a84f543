//! CSV for pandas/R: the timeline (`faults.csv`, always) and every fault record (`records.csv`,
//! `--csv`; with the counter frequency in `report.json`'s `counter_hz` to turn ticks into time).

use super::load::Loaded;
use super::model::{Axis, Report};
use crate::checks;
use std::fmt::Write;

pub const FAULTS_CSV: &str = "faults.csv";
pub const RECORDS_CSV: &str = "records.csv";

/// A VM name as a CSV field: names are letters, digits, `-` and `_` (the scenario file checks),
/// but a bare trace's are made here; quote anything else anyway.
fn field(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

/// One row per bucket: its start, then records per VM, then the total.
pub fn timeline(r: &Report) -> String {
    let t = &r.timeline;
    let mut s = String::from(match t.axis {
        Axis::Seconds => "t_start_s",
        Axis::Seq => "seq_start",
    });
    for v in &r.vms {
        let _ = write!(s, ",{}", field(&v.name));
    }
    s.push_str(",total\n");
    for (i, b) in t.buckets.iter().enumerate() {
        let _ = write!(s, "{}", i as f64 * t.width);
        for n in b {
            let _ = write!(s, ",{n}");
        }
        let _ = writeln!(s, ",{}", b.iter().sum::<u64>());
    }
    s
}

/// One row per fault record, in file order.
pub fn records(l: &Loaded) -> String {
    let timed = l.trace.freq.is_some();
    let mut s = String::from("seq,vm,vcpu,ipa,access,case,outcome,neighbours,refaults");
    s.push_str(if timed { ",time_ticks,cpu,cost_ticks\n" } else { "\n" });
    for r in &l.records {
        let _ = write!(
            s,
            "{},{},{},{:#x},{},{},{},{},{}",
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
        if let (true, Some(t)) = (timed, r.timing) {
            let _ = write!(s, ",{},{},{}", t.time, t.cpu, t.cost);
        }
        s.push('\n');
    }
    s
}
