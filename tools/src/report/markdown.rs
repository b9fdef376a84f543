//! The report as Markdown (`report.md`, and what `tools report` prints).

use super::model::*;
use std::fmt::Write;

/// The Markdown of `r`; `files` are the files written into `dir` with it (plots are shown inline).
pub fn render(r: &Report, dir: &str, files: &[String]) -> String {
    let mut m = String::new();
    let title = r.scenario.as_deref().map_or(String::new(), |s| format!(" of `{s}`"));
    let _ = writeln!(m, "# Fault report{title}\n");
    let mut about = format!("`{}`: trace v{}, {} records", r.trace, r.trace_version, r.records);
    if let Some(hz) = r.counter_hz {
        let _ = write!(about, ", counter {hz} Hz");
    }
    if let Some(d) = r.duration_s {
        let _ = write!(about, ", {d:.3} s from first record to last");
    }
    let _ = writeln!(m, "{about}.\n");
    for n in &r.notes {
        let _ = writeln!(m, "- {n}");
    }
    if !r.notes.is_empty() {
        m.push('\n');
    }
    cases(&mut m, r);
    by_vm(&mut m, r);
    over_time(&mut m, r, files);
    latency(&mut m, r, files);
    memory(&mut m, r, files);
    activity(&mut m, r, files);
    mmio(&mut m, r);
    if !files.is_empty() {
        let names: Vec<String> = files.iter().map(|f| format!("`{f}`")).collect();
        let _ = writeln!(m, "## Files\n\nIn `{dir}/`: {}.", names.join(", "));
    }
    m
}

fn table(m: &mut String, head: &[String], rows: &[Vec<String>]) {
    let _ = writeln!(m, "| {} |", head.join(" | "));
    let _ = writeln!(m, "|{}", head.iter().enumerate().map(|(i, _)| if i == 0 { "---|" } else { "---:|" }).collect::<String>());
    for row in rows {
        let _ = writeln!(m, "| {} |", row.join(" | "));
    }
    m.push('\n');
}

fn plot(m: &mut String, files: &[String], name: &str, alt: &str) {
    if files.iter().any(|f| f == name) {
        let _ = writeln!(m, "![{alt}]({name})\n");
    }
}

fn cases(m: &mut String, r: &Report) {
    let _ = writeln!(m, "## Faults by case\n");
    let mut head = vec!["case".to_string()];
    head.extend(r.vms.iter().map(|v| v.name.clone()));
    head.push("total".into());
    let rows: Vec<Vec<String>> = r
        .cases
        .iter()
        .map(|(case, total)| {
            let mut row = vec![format!("`{case}`")];
            row.extend(r.vms.iter().map(|v| v.cases.get(case).copied().unwrap_or(0).to_string()));
            row.push(total.to_string());
            row
        })
        .collect();
    table(m, &head, &rows);
}

fn by_vm(m: &mut String, r: &Report) {
    let _ = writeln!(m, "## Faults by VM\n");
    let head = ["VM", "name", "records", "resolved", "pages mapped", "MiB mapped"].map(String::from);
    let rows: Vec<Vec<String>> = r
        .vms
        .iter()
        .map(|v| {
            vec![
                format!("vm{}", v.id),
                v.name.clone(),
                v.records.to_string(),
                v.resolved.to_string(),
                v.pages_mapped.to_string(),
                format!("{:.1}", v.pages_mapped as f64 * 4096.0 / (1 << 20) as f64),
            ]
        })
        .collect();
    table(m, &head, &rows);
}

/// A bucket's start as the axis shows it.
pub fn axis_value(axis: Axis, x: f64) -> String {
    match axis {
        Axis::Seconds => format!("{x:.3}"),
        Axis::Seq => format!("{x:.0}"),
    }
}

fn over_time(m: &mut String, r: &Report, files: &[String]) {
    let t = &r.timeline;
    let _ = writeln!(m, "## Faults over time\n");
    let _ = writeln!(m, "Fault records per {}; CSV: `faults.csv`.\n", t.axis.bucket(t.width));
    plot(m, files, super::plot::FAULTS_SVG, "faults over time per VM");
    let mut head = vec![format!("from ({})", t.axis.unit())];
    head.extend(r.vms.iter().map(|v| v.name.clone()));
    head.push("total".into());
    let rows: Vec<Vec<String>> = t
        .buckets
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let mut row = vec![axis_value(t.axis, i as f64 * t.width)];
            row.extend(b.iter().map(u64::to_string));
            row.push(b.iter().sum::<u64>().to_string());
            row
        })
        .collect();
    table(m, &head, &rows);
}

/// Nanoseconds as µs with 2 decimals (fault costs are µs to ms).
pub fn us(ns: f64) -> String {
    format!("{:.2}", ns / 1000.0)
}

fn latency(m: &mut String, r: &Report, files: &[String]) {
    let _ = writeln!(m, "## Fault latency\n");
    let Some(l) = &r.latency else {
        let _ = writeln!(m, "None in this trace: trace v{} records no fault cost.\n", r.trace_version);
        return;
    };
    let _ = writeln!(m, "Trap entry to ERET, {} faults, in µs.\n", l.count);
    table(
        m,
        &["p50", "p90", "p99", "max", "mean"].map(String::from),
        &[vec![us(l.p50_ns), us(l.p90_ns), us(l.p99_ns), us(l.max_ns), us(l.mean_ns)]],
    );
    plot(m, files, super::plot::LATENCY_SVG, "fault-latency histogram");
    plot(m, files, super::plot::LATENCY_CDF_SVG, "fault-latency CDF");
    let rows: Vec<Vec<String>> =
        l.histogram.iter().map(|(lo, hi, n)| vec![format!("{} – {}", us(*lo), us(*hi)), n.to_string()]).collect();
    table(m, &["µs".to_string(), "faults".to_string()], &rows);
    let rows: Vec<Vec<String>> =
        l.by_case.iter().map(|c| vec![format!("`{}`", c.case), c.count.to_string(), us(c.p50_ns), us(c.p99_ns)]).collect();
    table(m, &["case", "resolved", "p50 µs", "p99 µs"].map(String::from), &rows);
}

fn memory(m: &mut String, r: &Report, files: &[String]) {
    let _ = writeln!(m, "## Memory over time\n");
    if r.memory.is_empty() {
        let _ = writeln!(m, "None in this trace (no accounting records).\n");
        return;
    }
    plot(m, files, super::plot::MEMORY_SVG, "resident and shared pages over time");
    let _ = writeln!(m, "Pages (4 KiB) at each VM's last accounting record, and the most it had resident:\n");
    let head = ["VM", "samples", "resident", "private", "shared", "zero", "swapped", "peak resident"].map(String::from);
    let last = |v: &[u64]| v.last().copied().unwrap_or(0).to_string();
    let rows: Vec<Vec<String>> = r
        .memory
        .iter()
        .map(|s| {
            let peak = s.resident.iter().copied().max().unwrap_or(0).to_string();
            vec![s.name.clone(), s.t_s.len().to_string(), last(&s.resident), last(&s.private), last(&s.shared), last(&s.zero), last(&s.swapped), peak]
        })
        .collect();
    table(m, &head, &rows);
    if let Some(f) = r.headline.pool_free_min {
        let _ = writeln!(m, "Fewest free page-pool frames seen: {f}.\n");
    }
    sharing(m, r, files);
}

/// The frames sharing saved (savings records): the pass that saved the most, and the last.
fn sharing(m: &mut String, r: &Report, files: &[String]) {
    let (Some(peak), Some(last)) = (r.sharing.iter().max_by_key(|p| p.saved()), r.sharing.last()) else { return };
    let _ = writeln!(m, "### Frames saved by sharing\n");
    plot(m, files, super::plot::SHARING_SVG, "frames saved by clone, image and dedup sharing over time");
    let _ = writeln!(m, "Frames the VMs reach (distinct) against the sum of their resident pages, at {} accounting passes:\n", r.sharing.len());
    let head = ["pass", "time (s)", "saved", "clone", "image", "dedup", "distinct", "Σ resident", "pool used", "pool free"].map(String::from);
    let row = |what: &str, p: &super::model::SharingPoint| {
        [what.to_string(), format!("{:.3}", p.t_s)]
            .into_iter()
            .chain([p.saved(), p.clone, p.image, p.dedup, p.distinct, p.resident_sum, p.pool_used, p.pool_free].map(|x| x.to_string()))
            .collect::<Vec<String>>()
    };
    table(m, &head, &[row("most saved", peak), row("last", last)]);
}

fn activity(m: &mut String, r: &Report, files: &[String]) {
    let _ = writeln!(m, "## Dedup and swap activity\n");
    if let (Some(saved), Some(last)) = (r.headline.frames_saved, r.savings.last()) {
        let _ = writeln!(m, "Dedup passes merged {saved} pages ({} passes, the last at {:.3} s).\n", r.savings.len(), last.0);
        plot(m, files, super::plot::SAVINGS_SVG, "frames saved by dedup over time");
    }
    let counted: Vec<Vec<String>> = ["pageins", "pageouts", "pdscans", "pdfreed"]
        .iter()
        .filter_map(|c| r.counters.get(*c).map(|v| vec![format!("`{c}`"), v.to_string()]))
        .collect();
    if !counted.is_empty() {
        let _ = writeln!(m, "End-of-run counters (all VMs):\n");
        table(m, &["counter".to_string(), "total".to_string()], &counted);
    }
    if r.events.is_empty() {
        let _ = writeln!(m, "Over time: none in this trace (no event records).\n");
        return;
    }
    if !r.events.iter().any(|e| ["dedup pass", "page-out", "page-in"].contains(&e.kind.as_str())) {
        let _ = writeln!(m, "No dedup passes, page-outs or page-ins in this trace. Its events per {}, where there are any:\n", r.timeline.axis.bucket(r.timeline.width));
    }
    let mut head = vec![format!("from ({})", r.timeline.axis.unit())];
    head.extend(r.events.iter().map(|e| format!("{} ({})", e.kind, e.count)));
    let rows: Vec<Vec<String>> = (0..r.timeline.buckets.len())
        .filter(|&i| r.events.iter().any(|e| e.buckets.get(i).is_some_and(|&n| n > 0)))
        .map(|i| {
            let mut row = vec![axis_value(r.timeline.axis, i as f64 * r.timeline.width)];
            row.extend(r.events.iter().map(|e| e.buckets.get(i).copied().unwrap_or(0).to_string()));
            row
        })
        .collect();
    table(m, &head, &rows);
}

fn mmio(m: &mut String, r: &Report) {
    let _ = writeln!(m, "## MMIO\n");
    if r.mmio.is_empty() {
        let _ = writeln!(m, "None in this trace (no MMIO aggregate records).\n");
        return;
    }
    let rows: Vec<Vec<String>> = r
        .mmio
        .iter()
        .map(|x| vec![format!("vm{}", x.vm), format!("{:#x}", x.base), format!("{:#x}", x.offset), x.direction.clone(), x.count.to_string()])
        .collect();
    table(m, &["VM", "device", "register", "access", "count"].map(String::from), &rows);
    if !r.mmio_buckets.is_empty() {
        let _ = writeln!(m, "Accesses per {}, where there are any:\n", r.timeline.axis.bucket(r.timeline.width));
        let rows: Vec<Vec<String>> = r
            .mmio_buckets
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| vec![axis_value(r.timeline.axis, i as f64 * r.timeline.width), n.to_string()])
            .collect();
        table(m, &[format!("from ({})", r.timeline.axis.unit()), "accesses".to_string()], &rows);
    }
}
