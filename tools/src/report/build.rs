//! From a loaded trace to the [`Report`]'s numbers.

use super::load::Loaded;
use super::model::*;
use super::stats;
use crate::checks;
use std::collections::{BTreeMap, BTreeSet};
use vm::trace::{Direction, Entry, EventKind, Outcome, StopStatus};

/// Timeline buckets at most: enough to see phases, few enough for a table.
const MAX_BUCKETS: usize = 40;

/// The counter as seconds since the trace's first record (v2 traces; `None` for v1).
struct Clock {
    t0: u64,
    hz: u64,
}

impl Clock {
    fn of(l: &Loaded) -> Option<Clock> {
        let hz = l.trace.freq.filter(|&h| h > 0)?;
        let t0 = l.trace.entries.iter().filter_map(|e| e.time()).min()?;
        Some(Clock { t0, hz })
    }

    fn seconds(&self, t: u64) -> f64 {
        t.saturating_sub(self.t0) as f64 / self.hz as f64
    }

    fn ns(&self, ticks: u64) -> f64 {
        ticks as f64 * 1e9 / self.hz as f64
    }
}

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

    let clock = Clock::of(l);
    let version = l.trace.version.number();
    // A fault's position on the time axis: seconds with a clock (and timing), else its seq.
    let fault_x: Vec<f64> = l
        .records
        .iter()
        .map(|r| match (&clock, r.timing) {
            (Some(c), Some(t)) => c.seconds(t.time),
            _ => r.seq as f64,
        })
        .collect();
    let axis = if clock.is_some() { Axis::Seconds } else { Axis::Seq };
    // The axis covers every record: events and MMIO counts come after the last fault too.
    let last = clock.as_ref().and_then(|c| l.trace.entries.iter().filter_map(|e| e.time()).max().map(|t| c.seconds(t)));
    let span = fault_x.iter().copied().chain(last).fold(0.0, f64::max);
    let width = stats::nice_width(span, MAX_BUCKETS);
    let n_buckets = if l.records.is_empty() { 0 } else { (span / width).floor() as usize + 1 };
    // Clamped to the last bucket: no record lies past the span, but no index may panic either.
    let bucket = |x: f64| ((x / width).floor() as usize).min(n_buckets.saturating_sub(1));
    let column: BTreeMap<u16, usize> = vms.iter().enumerate().map(|(i, v)| (v.id, i)).collect();
    let mut buckets = vec![vec![0u64; vms.len()]; n_buckets];
    for (r, x) in l.records.iter().zip(&fault_x) {
        buckets[bucket(*x)][column[&r.vm]] += 1;
    }
    let timeline = Timeline { axis, width, buckets };

    let latency = clock.as_ref().and_then(|c| latency(l, c));
    let memory = clock.as_ref().map_or_else(Vec::new, |c| memory(l, c, &name_of));
    let (events, mmio_buckets) = match (&clock, n_buckets) {
        (Some(c), 1..) => (events(l, c, n_buckets, &bucket), mmio_buckets(l, c, n_buckets, &bucket)),
        _ => (Vec::new(), Vec::new()),
    };
    let mmio = mmio_rows(l);
    let counters: BTreeMap<String, u64> = l
        .counters
        .rows
        .iter()
        .filter_map(|(name, _)| l.counters.get(name, "total").map(|v| (name.clone(), v)))
        .collect();

    let mut notes = Vec::new();
    if clock.is_none() {
        notes.push(format!("trace v{version} has no time: the timeline is over record sequence numbers"));
    }
    if latency.is_none() {
        notes.push(format!("trace v{version} has no fault cost: no latency histogram or percentiles"));
    }
    if counters.is_empty() {
        notes.push("no console.log beside the trace: no counters table".into());
    }
    if let Some(c) = l.trace.capped() {
        let at = clock.as_ref().map_or(String::new(), |k| format!(" at {:.3} s", k.seconds(c.time)));
        notes.push(format!(
            "the trace reached its cap of {} bytes{at}: cpu{}'s last {} records and everything after are missing",
            c.cap, c.cpu, c.unwritten
        ));
    }

    let mut resolved_x: Vec<f64> =
        l.records.iter().zip(&fault_x).filter(|(r, _)| r.outcome == Outcome::Resolved).map(|(_, x)| *x).collect();
    resolved_x.sort_by(f64::total_cmp);
    let mut passes: Vec<(u64, u64)> = l
        .trace
        .entries
        .iter()
        .filter_map(|e| match e {
            Entry::Event(ev) => match ev.what {
                EventKind::DedupPass { merged } => Some((ev.time, merged)),
                _ => None,
            },
            _ => None,
        })
        .collect();
    passes.sort_by_key(|p| p.0);
    let savings: Vec<(f64, u64)> = match &clock {
        Some(c) => passes
            .iter()
            .scan(0u64, |saved, &(t, merged)| {
                *saved += merged;
                Some((c.seconds(t), *saved))
            })
            .collect(),
        None => Vec::new(),
    };
    let page_in_events = l.trace.entries.iter().filter(|e| matches!(e, Entry::Swap(w) if w.op == vm::trace::SwapOp::PageIn)).count();
    let headline = Headline {
        records: l.records.len() as u64,
        resolved: vms.iter().map(|v| v.resolved).sum(),
        pages_mapped: vms.iter().map(|v| v.pages_mapped).sum(),
        faults_99_s: clock.as_ref().and_then(|_| stats::percentile(&resolved_x, 99.0)),
        p99_ns: latency.as_ref().map(|x| x.p99_ns),
        frames_saved: (!passes.is_empty()).then(|| passes.iter().map(|p| p.1).sum()),
        pool_free_min: l
            .trace
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Accounting(a) => Some(u64::from(a.pool_free)),
                _ => None,
            })
            .min(),
        page_ins: counters.get("pageins").copied().or((page_in_events > 0).then_some(page_in_events as u64)),
    };
    Report {
        report_version: REPORT_VERSION,
        trace: l.file.display().to_string(),
        scenario: l.scenario.clone(),
        trace_version: version,
        records: l.trace.entries.len() as u64,
        counter_hz: l.trace.freq,
        duration_s: last,
        vms,
        cases,
        timeline,
        latency,
        memory,
        savings,
        sharing: sharing(l, clock.as_ref()),
        events,
        mmio,
        mmio_buckets,
        counters,
        headline,
        notes,
    }
}

fn latency(l: &Loaded, c: &Clock) -> Option<Latency> {
    let timed: Vec<(&vm::trace::Record, f64)> =
        l.records.iter().filter_map(|r| r.timing.map(|t| (r, c.ns(u64::from(t.cost))))).collect();
    if timed.is_empty() {
        return None;
    }
    let mut all: Vec<f64> = timed.iter().map(|(_, ns)| *ns).collect();
    all.sort_by(f64::total_cmp);
    let pct = |v: &[f64], p| stats::percentile(v, p).unwrap_or(0.0);
    let mut per_case: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    for (r, ns) in &timed {
        if r.outcome == Outcome::Resolved {
            per_case.entry(checks::case_name(r.case)).or_default().push(*ns);
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
        mean_ns: all.iter().sum::<f64>() / all.len() as f64,
        histogram: stats::pow2_histogram(&all),
        cdf: (1..=100).map(|p| (pct(&all, f64::from(p)), f64::from(p) / 100.0)).collect(),
        by_case,
    })
}

/// The savings records in time order (none without a clock: v1 has no such records).
fn sharing(l: &Loaded, c: Option<&Clock>) -> Vec<super::model::SharingPoint> {
    let Some(c) = c else { return Vec::new() };
    let mut all: Vec<&vm::trace::Savings> = l.trace.entries.iter().filter_map(|e| if let Entry::Savings(g) = e { Some(g) } else { None }).collect();
    all.sort_by_key(|g| g.time);
    all.iter()
        .map(|g| super::model::SharingPoint {
            t_s: c.seconds(g.time),
            clone: u64::from(g.saved_clone),
            image: u64::from(g.saved_image),
            dedup: u64::from(g.saved_dedup),
            distinct: u64::from(g.distinct),
            resident_sum: u64::from(g.distinct) + g.saved(),
            pool_used: u64::from(g.pool_used),
            pool_free: u64::from(g.pool_free),
        })
        .collect()
}

/// Each VM's accounting records in time order (CPUs' buffers are interleaved in flush order).
fn memory(l: &Loaded, c: &Clock, name_of: &dyn Fn(u16) -> String) -> Vec<MemorySeries> {
    let mut per_vm: BTreeMap<u16, Vec<&vm::trace::Accounting>> = BTreeMap::new();
    for e in &l.trace.entries {
        if let Entry::Accounting(a) = e {
            per_vm.entry(a.vm).or_default().push(a);
        }
    }
    per_vm
        .into_iter()
        .map(|(vm, mut v)| {
            v.sort_by_key(|a| a.time);
            let col = |f: fn(&vm::trace::Accounting) -> u32| v.iter().map(|a| u64::from(f(a))).collect();
            MemorySeries {
                vm,
                name: name_of(vm),
                t_s: v.iter().map(|a| c.seconds(a.time)).collect(),
                resident: col(|a| a.resident),
                private: col(|a| a.private),
                shared: col(|a| a.shared),
                zero: col(|a| a.zero),
                swapped: col(|a| a.swapped),
            }
        })
        .collect()
}

/// Events by kind, counted per timeline bucket. VM starts and stops are there in every v2 trace;
/// the dedup and swap kinds once those issues land.
fn events(l: &Loaded, c: &Clock, n: usize, bucket: &dyn Fn(f64) -> usize) -> Vec<EventCount> {
    let mut by_kind: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
    for e in &l.trace.entries {
        let swap_kind = match e {
            Entry::Swap(w) => Some((w.time, swap_op_name(w.op))),
            Entry::Scan(p) => Some((p.time, "pagedaemon pass")),
            _ => None,
        };
        if let Some((time, kind)) = swap_kind {
            by_kind.entry(kind).or_insert_with(|| vec![0; n])[bucket(c.seconds(time))] += 1;
            continue;
        }
        let Entry::Event(ev) = e else { continue };
        let (kind, weight) = match ev.what {
            EventKind::VmStart => ("VM start", 1),
            EventKind::VmStop(StopStatus::Exited(_)) => ("VM exit", 1),
            EventKind::VmStop(StopStatus::Crashed) => ("VM crash", 1),
            EventKind::VmStop(StopStatus::Reset) => ("VM reset", 1),
            EventKind::Clone { .. } => ("clone", 1),
            EventKind::DedupPass { merged } => {
                by_kind.entry("pages merged").or_insert_with(|| vec![0; n])[bucket(c.seconds(ev.time))] += merged;
                ("dedup pass", 1)
            }
        };
        by_kind.entry(kind).or_insert_with(|| vec![0; n])[bucket(c.seconds(ev.time))] += weight;
    }
    by_kind.into_iter().map(|(kind, buckets)| EventCount { kind: kind.into(), count: buckets.iter().sum(), buckets }).collect()
}

/// MMIO accesses per bucket of the interval's end.
fn mmio_buckets(l: &Loaded, c: &Clock, n: usize, bucket: &dyn Fn(f64) -> usize) -> Vec<u64> {
    let mut b = vec![0u64; n];
    let mut any = false;
    for e in &l.trace.entries {
        if let Entry::Mmio(m) = e {
            b[bucket(c.seconds(m.time))] += m.count;
            any = true;
        }
    }
    if any {
        b
    } else {
        Vec::new()
    }
}

fn mmio_rows(l: &Loaded) -> Vec<MmioRow> {
    let mut sums: BTreeMap<(u16, u64, u32, Direction), u64> = BTreeMap::new();
    for e in &l.trace.entries {
        if let Entry::Mmio(m) = e {
            *sums.entry((m.vm, m.base.0, m.offset, m.direction)).or_insert(0) += m.count;
        }
    }
    sums.into_iter()
        .map(|((vm, base, offset, d), count)| MmioRow {
            vm,
            base,
            offset,
            direction: match d {
                Direction::Read => "read".into(),
                Direction::Write => "write".into(),
            },
            count,
        })
        .collect()
}

/// A swap record's row in the timeline's event counts.
fn swap_op_name(op: vm::trace::SwapOp) -> &'static str {
    match op {
        vm::trace::SwapOp::PageOut => "page-out",
        vm::trace::SwapOp::PageIn => "page-in",
        vm::trace::SwapOp::BadRead => "bad slot (read)",
        vm::trace::SwapOp::BadWrite => "bad slot (write)",
    }
}
