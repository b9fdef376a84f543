//! The report of the small recorded traces of `tools/tests/data/`: `report-v1.trace` (a run of
//! `report-v1.toml`, default's VMs with a 5 MiB touch VM, before trace format v2) and
//! `report-v2.trace` (`report-v2.toml`: the same and `hostile`, for MMIO). Their numbers are held
//! against what `tools trace` prints for the same files and against the decoded records; their
//! plots are parsed back.

use super::*;
use crate::runs;
use std::collections::BTreeMap;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("uvmhyp-report-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A run folder holding the `report-<version>` trace with its scenario and a console log's
/// counters table.
fn run_folder(what: &str, version: &str) -> PathBuf {
    let dir = temp_dir(what).join(format!("report-{version}-20261202T134911Z"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(data(&format!("report-{version}.trace")), dir.join(runs::TRACE)).unwrap();
    std::fs::copy(data(&format!("report-{version}.toml")), dir.join(runs::SCENARIO)).unwrap();
    std::fs::write(dir.join(runs::CONSOLE_LOG), "counter vm1 vm2 vm3 total\nfaults 13 275 1217 1505\npageins 0 0 7 7\nuvmhyp: 3 VMs, 0 failed\n")
        .unwrap();
    dir
}

fn cases(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn v1_report_counts_what_the_trace_holds() {
    let l = load::load(&data("report-v1.trace")).unwrap();
    let r = build::build(&l);
    assert_eq!((r.trace_version, r.records), (1, 1505));
    // The numbers `tools trace tools/tests/data/report-v1.trace` prints.
    assert_eq!(r.cases, cases(&[("2A", 17), ("2B-copy", 14), ("2B-zero", 1209), ("Restart", 265)]));
    let per_vm: Vec<_> = r.vms.iter().map(|v| (v.id, v.name.as_str(), v.records, v.resolved, v.pages_mapped)).collect();
    assert_eq!(per_vm, [(1, "vm1", 13, 13, 14), (2, "vm2", 275, 10, 16), (3, "vm3", 1217, 1217, 1217)]);
    assert_eq!(r.vms[2].cases, cases(&[("2A", 4), ("2B-copy", 4), ("2B-zero", 1209)]));
    // v1 has no time: the timeline is over sequence numbers, 1505 records in buckets of 50.
    assert_eq!((r.timeline.axis, r.timeline.width, r.timeline.buckets.len()), (model::Axis::Seq, 50.0, 31));
    assert_eq!(r.timeline.buckets.iter().flatten().sum::<u64>(), 1505);
    assert_eq!(r.timeline.buckets[0], [0, 50, 0], "vm2's re-faults come first in this run");
    assert!(r.latency.is_none() && r.duration_s.is_none() && r.headline.faults_99_s.is_none());
    assert!(r.memory.is_empty() && r.events.is_empty() && r.mmio.is_empty());
    assert_eq!(r.notes.len(), 3, "{:?}", r.notes);
}

/// The costs of the v2 trace's faults in ns, sorted, straight from the decoder.
fn v2_costs_ns() -> Vec<f64> {
    let t = vm::trace::decode(&std::fs::read(data("report-v2.trace")).unwrap()).unwrap();
    let hz = t.freq.unwrap() as f64;
    let mut v: Vec<f64> = t.faults().map(|r| f64::from(r.timing.unwrap().cost) * 1e9 / hz).collect();
    v.sort_by(f64::total_cmp);
    v
}

#[test]
fn v2_report_has_time_latency_memory_events_and_mmio() {
    let r = build::build(&load::load(&data("report-v2.trace")).unwrap());
    // `tools trace tools/tests/data/report-v2.trace`: 1273 records (19 accounting, 8 events,
    // 1245 faults, 1 mmio counts), and its case table.
    assert_eq!((r.trace_version, r.records, r.counter_hz), (2, 1273, Some(62_500_000)));
    assert_eq!(r.cases, cases(&[("2A", 19), ("2B-copy", 17), ("2B-zero", 1209)]));
    assert_eq!(r.vms.iter().map(|v| v.records).collect::<Vec<_>>(), [14, 7, 1217, 7]);
    assert!(r.notes.iter().all(|n| !n.contains("no time") && !n.contains("no fault cost")), "{:?}", r.notes);

    // Timeline over seconds: every fault in a bucket, the run (0.079 s) in 40 buckets of 2 ms.
    assert_eq!(r.timeline.axis, model::Axis::Seconds);
    assert!((r.timeline.width - 0.002).abs() < 1e-12, "{}", r.timeline.width);
    assert_eq!(r.timeline.buckets.iter().flatten().sum::<u64>(), 1245);
    let d = r.duration_s.unwrap();
    assert!(d > 0.07 && d < 0.08, "{d}");

    // Latency: the decoder's costs, by nearest rank.
    let costs = v2_costs_ns();
    let l = r.latency.as_ref().unwrap();
    assert_eq!(l.count, 1245);
    let rank = |p: f64| costs[((p / 100.0 * costs.len() as f64).ceil() as usize) - 1];
    assert_eq!((l.p50_ns, l.p90_ns, l.p99_ns, l.max_ns), (rank(50.0), rank(90.0), rank(99.0), costs[costs.len() - 1]));
    assert!(l.p50_ns < l.p99_ns && l.p99_ns < l.max_ns);
    assert_eq!(l.histogram.iter().map(|b| b.2).sum::<u64>(), 1245);
    assert!(l.histogram.iter().all(|&(lo, hi, _)| hi == 2.0 * lo || lo == 0.0));
    assert_eq!(l.cdf.len(), 100);
    assert_eq!(l.cdf[49], (l.p50_ns, 0.5));
    assert_eq!(l.by_case.iter().map(|c| (c.case.as_str(), c.count)).collect::<Vec<_>>(), [("2A", 19), ("2B-copy", 17), ("2B-zero", 1209)]);
    assert_eq!(r.headline.p99_ns, Some(l.p99_ns));
    assert!(r.headline.faults_99_s.is_some_and(|t| t <= d));

    // Accounting: 19 samples over 4 VMs; touch ends with its 1217 pages resident.
    assert_eq!(r.memory.iter().map(|m| m.t_s.len()).sum::<usize>(), 19);
    let touch = r.memory.iter().find(|m| m.vm == 3).unwrap();
    assert_eq!(touch.resident.last(), Some(&1217));
    assert!(touch.t_s.windows(2).all(|w| w[0] <= w[1]), "samples in time order");
    assert!(r.headline.pool_free_min.is_some());
    // Events: each VM started and exited once; hostile's 30 PL011 writes.
    let ev: Vec<_> = r.events.iter().map(|e| (e.kind.as_str(), e.count)).collect();
    assert_eq!(ev, [("VM exit", 4), ("VM start", 4)]);
    assert_eq!(r.mmio, [model::MmioRow { vm: 4, base: 0x900_0000, offset: 0, direction: "write".into(), count: 30 }]);
    assert_eq!(r.mmio_buckets.iter().sum::<u64>(), 30);
    assert_eq!((r.headline.frames_saved, r.headline.page_ins), (None, None), "no dedup, no swap, no counters table");
}

#[test]
fn a_run_folder_gives_names_scenario_and_counters() {
    let dir = run_folder("names", "v1");
    // Through a `latest` link, as after `tools run`: the report names the run folder itself.
    let latest = dir.parent().unwrap().join(runs::LATEST);
    std::os::unix::fs::symlink(dir.file_name().unwrap(), &latest).unwrap();
    let markdown = make(&latest, None, true).unwrap();
    let json: model::Report = serde_json::from_str(&std::fs::read_to_string(dir.join(REPORT_JSON)).unwrap()).unwrap();
    assert_eq!(json.scenario.as_deref(), Some("report-v1"));
    assert_eq!(Path::new(&json.trace), std::fs::canonicalize(dir.join(runs::TRACE)).unwrap());
    assert_eq!(json.vms.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["image1", "image2", "touch"]);
    assert_eq!(json.headline.page_ins, Some(7));
    assert_eq!(json.counters.get("faults"), Some(&1505));
    assert_eq!(std::fs::read_to_string(dir.join(REPORT_MD)).unwrap(), markdown);
    assert!(markdown.contains("| `2B-zero` | 0 | 0 | 1209 | 1209 |"), "{markdown}");
    assert!(markdown.contains("## Fault latency\n\nNone in this trace"), "{markdown}");
    for f in ["faults.svg", "cases.svg", "faults.csv", "records.csv", "report.json", "report.md"] {
        assert!(markdown.contains(&format!("`{f}`")), "{f} not listed in {markdown}");
        assert!(dir.join(f).is_file(), "{f}");
    }
    assert!(!dir.join(plot::LATENCY_SVG).exists(), "no latency plot without costs");
    let timeline = std::fs::read_to_string(dir.join(csv::FAULTS_CSV)).unwrap();
    assert_eq!(timeline.lines().next(), Some("seq_start,image1,image2,touch,total"));
    assert_eq!(timeline.lines().nth(1), Some("0,0,50,0,50"));
    let records = std::fs::read_to_string(dir.join(csv::RECORDS_CSV)).unwrap();
    assert_eq!(records.lines().count(), 1 + 1505);
    assert_eq!(records.lines().filter(|l| l.contains(",2B-zero,resolved,")).count(), 1209);
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}

/// The `polyline`s of an SVG drawn in `stroke`, as their point counts.
fn lines_of(svg: &roxmltree::Document, stroke: &str) -> Vec<usize> {
    svg.descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke").is_some_and(|s| s.eq_ignore_ascii_case(stroke)))
        .map(|n| n.attribute("points").unwrap_or("").split_whitespace().count())
        .collect()
}

fn texts(svg: &roxmltree::Document) -> Vec<String> {
    svg.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).map(|t| t.trim().to_string()).collect()
}

fn hex(c: plotters::style::RGBAColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

#[test]
fn plots_parse_and_have_one_series_per_vm() {
    let dir = run_folder("plots", "v1");
    let r = build::build(&load::load(&dir).unwrap());
    let plots = plot::all(&r).unwrap();
    assert_eq!(plots.iter().map(|p| p.0).collect::<Vec<_>>(), [plot::FAULTS_SVG, plot::CASES_SVG]);
    let faults = roxmltree::Document::parse(&plots[0].1).unwrap();
    for (i, vm) in r.vms.iter().enumerate() {
        // The data line (a point per bucket) and the legend's sample (2 points).
        let mut lines = lines_of(&faults, &hex(plot::color(i)));
        lines.sort();
        assert_eq!(lines, [2, r.timeline.buckets.len()], "{}", vm.name);
        assert!(texts(&faults).contains(&vm.name), "{} not in the legend", vm.name);
    }
    let cases = roxmltree::Document::parse(&plots[1].1).unwrap();
    assert_eq!(texts(&cases).iter().filter(|t| t.contains("(log)")).count(), 1, "a log axis: 16384 zero-fills beside 3 copies");
    let bars = cases.descendants().filter(|n| n.has_tag_name("rect") && n.attribute("fill") == Some(hex(plot::color(0)).as_str())).count();
    assert_eq!(bars, r.cases.len());
    for c in r.cases.keys() {
        assert!(texts(&cases).contains(c), "{c} not labelled");
    }
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}

#[test]
fn v2_plots_have_latency_and_memory_series() {
    let dir = run_folder("plots-v2", "v2");
    let r = build::build(&load::load(&dir).unwrap());
    let plots: BTreeMap<&str, String> = plot::all(&r).unwrap().into_iter().collect();
    assert_eq!(
        plots.keys().copied().collect::<Vec<_>>(),
        [plot::CASES_SVG, plot::FAULTS_SVG, plot::LATENCY_CDF_SVG, plot::LATENCY_SVG, plot::MEMORY_SVG]
    );
    let latency = roxmltree::Document::parse(&plots[plot::LATENCY_SVG]).unwrap();
    let bars = latency.descendants().filter(|n| n.has_tag_name("rect") && n.attribute("fill") == Some(hex(plot::color(0)).as_str())).count();
    assert_eq!(bars, r.latency.as_ref().unwrap().histogram.iter().filter(|b| b.2 > 0).count(), "a bar per non-empty bucket");
    let cdf = roxmltree::Document::parse(&plots[plot::LATENCY_CDF_SVG]).unwrap();
    assert_eq!(lines_of(&cdf, &hex(plot::color(0))), [100]);
    let memory = roxmltree::Document::parse(&plots[plot::MEMORY_SVG]).unwrap();
    for (i, s) in r.memory.iter().enumerate() {
        let mut lines = lines_of(&memory, &hex(plot::color(i)));
        lines.sort();
        // Resident only (shared and swapped are 0 everywhere): the samples and the legend's sample.
        assert_eq!(lines, [2, s.t_s.len()], "{}", s.name);
        assert!(texts(&memory).contains(&format!("{} resident", s.name)));
    }
    assert!(!texts(&memory).iter().any(|t| t.ends_with(" shared")), "no line for shared pages that are all 0");
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}

#[test]
fn the_timeline_covers_records_after_the_last_fault() {
    use vm::addr::{Access, Ipa};
    use vm::trace::{Direction, Entry, MmioCount, Outcome, Record, Timing};
    let dir = temp_dir("span");
    let fault = Record { seq: 0, ipa: Ipa(0x4000_0000), vm: 1, vcpu: 0, access: Access::Read, case: None, outcome: Outcome::Mmio, neighbours: 0, refaults: 0, timing: Some(Timing { time: 0, cpu: 0, cost: 1 }) };
    let poll = MmioCount { time: 1000, cpu: 0, vm: 1, base: Ipa(0x900_0000), offset: 0x18, direction: Direction::Read, count: 5 };
    let t = dir.join("t.trace");
    // A 1 kHz counter: the fault at 0 s, a guest polling a register until 1 s.
    std::fs::write(&t, vm::trace::encode(1000, &[Entry::Fault(fault), Entry::Mmio(poll)])).unwrap();
    let r = build::build(&load::load(&t).unwrap());
    assert_eq!((r.timeline.width, r.timeline.buckets.len(), r.duration_s), (0.05, 21, Some(1.0)));
    assert_eq!(r.timeline.buckets[0], [1]);
    assert_eq!((r.mmio_buckets[0], r.mmio_buckets[20]), (0, 5));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dedup_passes_give_frames_saved_and_a_savings_plot() {
    use vm::trace::{Entry, Event, EventKind};
    let dir = temp_dir("savings");
    let pass = |time, merged| Entry::Event(Event { time, cpu: 0, vm: 1, what: EventKind::DedupPass { merged } });
    // The recorded v2 run, with two dedup passes added.
    let v2 = vm::trace::decode(&std::fs::read(data("report-v2.trace")).unwrap()).unwrap();
    let t0 = v2.entries.iter().filter_map(|e| e.time()).min().unwrap();
    let mut entries = v2.entries.clone();
    // Out of time order, as two CPUs' buffers may be: 10 pages at t0 + 1 s, 5 at t0 + 0.5 s.
    entries.push(pass(t0 + 62_500_000, 10));
    entries.push(pass(t0 + 31_250_000, 5));
    let t = dir.join("t.trace");
    std::fs::write(&t, vm::trace::encode(62_500_000, &entries)).unwrap();
    let markdown = make(&t, None, false).unwrap();
    let r: model::Report = serde_json::from_str(&std::fs::read_to_string(dir.join(REPORT_JSON)).unwrap()).unwrap();
    assert_eq!(r.headline.frames_saved, Some(15));
    assert_eq!(r.savings, [(0.5, 5), (1.0, 15)]);
    assert!(markdown.contains("Dedup passes merged 15 pages (2 passes, the last at 1.000 s)."), "{markdown}");
    let svg = std::fs::read_to_string(dir.join(plot::SAVINGS_SVG)).unwrap();
    let svg = roxmltree::Document::parse(&svg).unwrap();
    assert_eq!(lines_of(&svg, &hex(plot::color(0))), [5], "a step line: 0, then up at each pass");
    let ev: BTreeMap<String, u64> = r.events.iter().map(|e| (e.kind.clone(), e.count)).collect();
    assert_eq!((ev.get("dedup pass"), ev.get("pages merged")), (Some(&2), Some(&15)));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn savings_records_give_the_sharing_table_and_plot() {
    use vm::trace::{Entry, Savings};
    let dir = temp_dir("sharing");
    let v2 = vm::trace::decode(&std::fs::read(data("report-v2.trace")).unwrap()).unwrap();
    let t0 = v2.entries.iter().filter_map(|e| e.time()).min().unwrap();
    let pass = |time, clone, dedup| {
        Entry::Savings(Savings { time, cpu: 0, max_sharers: 2, distinct: 100, shared_frames: 10, saved_clone: clone, saved_image: 3, saved_dedup: dedup, pool_used: 150, pool_free: 850 })
    };
    let mut entries = v2.entries.clone();
    // Out of time order: the later pass (t0 + 1 s) saved less than the one at t0 + 0.5 s.
    entries.push(pass(t0 + 62_500_000, 5, 1));
    entries.push(pass(t0 + 31_250_000, 20, 7));
    let t = dir.join("t.trace");
    std::fs::write(&t, vm::trace::encode(62_500_000, &entries)).unwrap();
    let markdown = make(&t, None, false).unwrap();
    let r: model::Report = serde_json::from_str(&std::fs::read_to_string(dir.join(REPORT_JSON)).unwrap()).unwrap();
    let saved: Vec<(f64, u64, u64)> = r.sharing.iter().map(|p| (p.t_s, p.saved(), p.resident_sum)).collect();
    assert_eq!(saved, [(0.5, 30, 130), (1.0, 9, 109)]);
    assert!(markdown.contains("| most saved | 0.500 | 30 | 20 | 3 | 7 | 100 | 130 | 150 | 850 |"), "{markdown}");
    assert!(markdown.contains("| last | 1.000 | 9 | 5 | 3 | 1 | 100 | 109 | 150 | 850 |"), "{markdown}");
    let svg = std::fs::read_to_string(dir.join(plot::SHARING_SVG)).unwrap();
    let svg = roxmltree::Document::parse(&svg).unwrap();
    assert_eq!(lines_of(&svg, &hex(plot::color(0))), [2, 2], "the total, one point per pass, and its legend");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_inputs_are_load_errors() {
    let dir = temp_dir("bad");
    assert!(matches!(make(&dir, None, false), Err(ReportError::Load(load::LoadError::NoTrace { .. }))));
    let garbage = dir.join("g.trace");
    std::fs::write(&garbage, b"not a trace").unwrap();
    assert!(matches!(make(&garbage, None, false), Err(ReportError::Load(load::LoadError::BadTrace { .. }))));
    let mut short = std::fs::read(data("report-v1.trace")).unwrap();
    short.pop();
    std::fs::write(&garbage, &short).unwrap();
    assert!(matches!(make(&garbage, None, false), Err(ReportError::Load(load::LoadError::BadTrace { .. }))));
    assert!(matches!(make(&dir.join("nope"), None, false), Err(ReportError::Load(load::LoadError::Read { .. }))));
    assert!(std::fs::read_dir(&dir).unwrap().count() == 1, "nothing written for a bad input");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_empty_trace_reports_zeros() {
    let dir = temp_dir("empty");
    let t = dir.join("e.trace");
    std::fs::write(&t, vm::trace::header(62_500_000)).unwrap();
    let markdown = make(&t, None, false).unwrap();
    assert!(markdown.contains("0 records"), "{markdown}");
    assert!(!dir.join(plot::FAULTS_SVG).exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
