//! From a loaded trace to the [`Report`]'s numbers.

use super::load::Loaded;
use super::model::*;
use super::stats;
use crate::checks;
use std::collections::{BTreeMap, BTreeSet};
use vm::trace::Outcome;

/// Timeline buckets at most: enough to see phases, few enough for a table.
const MAX_BUCKETS: usize = 40;

pub fn build(l: &Loaded) -> Report {
    let ids: BTreeSet<u16> = l.names.keys().copied().chain(l.records.iter().map(|r| r.vm)).collect();
    let name_of = |id: u16| l.names.get(&id).cloned().unwrap_or_else(|| format!("vm{id}"));
    let counts = crate::verdict::case_counts(&l.records);
    let vms: Vec<VmRow> = ids
        .iter()
        .map(|&id| {
            let of = || l.records.iter().filter(move |r| r.vm == id);
            let resolved = || of().filter(|r| r.outcome == Outcome::Resolved);
            VmRow {
                id,
                name: name_of(id),
                records: of().count() as u64,
                resolved: resolved().count() as u64,
                pages_mapped: resolved().map(|r| 1 + u64::from(r.neighbours)).sum(),
                cases: counts.iter().filter(|((v, _), _)| *v == id).map(|((_, k), n)| (k.clone(), *n)).collect(),
            }
        })
        .collect();
    let mut cases = BTreeMap::new();
    for ((_, k), n) in &counts {
        *cases.entry(k.clone()).or_insert(0) += n;
    }

    let seconds = seconds_of(l);
    let timeline = timeline(l, &vms, seconds.as_deref());
    let latency = latency(l);
    let counters: BTreeMap<String, u64> = l
        .counters
        .rows
        .iter()
        .filter_map(|(name, _)| l.counters.get(name, "total").map(|v| (name.clone(), v)))
        .collect();

    let mut notes = Vec::new();
    if seconds.is_none() {
        notes.push(format!("trace v{} has no time: the timeline is over record sequence numbers", l.version));
    }
    if latency.is_none() {
        notes.push(format!("trace v{} has no fault cost: no latency histogram or percentiles", l.version));
    }
    if counters.is_empty() {
        notes.push("no console.log beside the trace: no counters table".into());
    }

    let resolved_times: Option<Vec<f64>> = seconds.as_ref().map(|s| {
        let mut v: Vec<f64> =
            l.records.iter().zip(s).filter(|(r, _)| r.outcome == Outcome::Resolved).map(|(_, t)| *t).collect();
        v.sort_by(f64::total_cmp);
        v
    });
    let headline = Headline {
        records: l.records.len() as u64,
        resolved: vms.iter().map(|v| v.resolved).sum(),
        pages_mapped: vms.iter().map(|v| v.pages_mapped).sum(),
        faults_99_s: resolved_times.as_deref().and_then(|t| stats::percentile(t, 99.0)),
        p99_ns: latency.as_ref().map(|x| x.p99_ns),
        frames_saved: None,
        page_ins: counters.get("pageins").copied(),
    };
    Report {
        report_version: REPORT_VERSION,
        trace: l.trace.display().to_string(),
        scenario: l.scenario.clone(),
        trace_version: l.version,
        records: l.records.len() as u64,
        counter_hz: l.counter_hz,
        duration_s: seconds.as_ref().and_then(|s| s.iter().copied().reduce(f64::max)),
        vms,
        cases,
        timeline,
        latency,
        memory: Vec::new(),
        events: Vec::new(),
        mmio: Vec::new(),
        counters,
        headline,
        notes,
    }
}

/// Each record's time in seconds since the first record, when the trace has time.
fn seconds_of(l: &Loaded) -> Option<Vec<f64>> {
    let (timing, hz) = (l.timing.as_ref()?, l.counter_hz.filter(|&h| h > 0)?);
    let t0 = timing.iter().map(|t| t.time).min().unwrap_or(0);
    Some(timing.iter().map(|t| (t.time - t0) as f64 / hz as f64).collect())
}

fn timeline(l: &Loaded, vms: &[VmRow], seconds: Option<&[f64]>) -> Timeline {
    let (axis, xs): (Axis, Vec<f64>) = match seconds {
        Some(s) => (Axis::Seconds, s.to_vec()),
        None => (Axis::Seq, l.records.iter().map(|r| r.seq as f64).collect()),
    };
    let span = xs.iter().copied().fold(0.0, f64::max);
    let width = stats::nice_width(span, MAX_BUCKETS);
    let n = (span / width).floor() as usize + 1;
    let column: BTreeMap<u16, usize> = vms.iter().enumerate().map(|(i, v)| (v.id, i)).collect();
    let mut buckets = vec![vec![0u64; vms.len()]; if l.records.is_empty() { 0 } else { n }];
    for (r, x) in l.records.iter().zip(&xs) {
        let b = ((x / width).floor() as usize).min(n - 1);
        buckets[b][column[&r.vm]] += 1;
    }
    Timeline { axis, width, buckets }
}

fn latency(l: &Loaded) -> Option<Latency> {
    let (timing, hz) = (l.timing.as_ref()?, l.counter_hz.filter(|&h| h > 0)?);
    let ns = |ticks: u64| ticks as f64 * 1e9 / hz as f64;
    let mut all: Vec<f64> = timing.iter().map(|t| ns(t.cost)).collect();
    all.sort_by(f64::total_cmp);
    let pct = |v: &[f64], p| stats::percentile(v, p).unwrap_or(0.0);
    let mut per_case: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    for (r, t) in l.records.iter().zip(timing) {
        if r.outcome == Outcome::Resolved {
            per_case.entry(checks::case_name(r.case)).or_default().push(ns(t.cost));
        }
    }
    let by_case = per_case
        .into_iter()
        .map(|(case, mut v)| {
            v.sort_by(f64::total_cmp);
            CaseLatency { case: case.to_string(), count: v.len() as u64, p50_ns: pct(&v, 50.0), p99_ns: pct(&v, 99.0) }
        })
        .collect();
    Some(Latency {
        count: all.len() as u64,
        p50_ns: pct(&all, 50.0),
        p90_ns: pct(&all, 90.0),
        p99_ns: pct(&all, 99.0),
        max_ns: all.last().copied().unwrap_or(0.0),
        mean_ns: if all.is_empty() { 0.0 } else { all.iter().sum::<f64>() / all.len() as f64 },
        histogram: stats::pow2_histogram(&all),
        by_case,
    })
}
