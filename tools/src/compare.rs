//! `tools compare A B`: two runs' headline numbers side by side with the ratio B/A. A and B are
//! report JSONs (`report.json` of `tools report`), run folders (their `report.json` if there is
//! one, else the report made afresh from the trace, without writing anything) or trace files.

use crate::report::{self, build, load, model::Report};
use std::fmt;
use std::path::{Path, PathBuf};

/// Why a side could not be read (the user's mistake: exit 2).
#[derive(Debug)]
pub enum CompareError {
    Load(load::LoadError),
    /// A JSON file that is not a report of this version.
    BadJson { path: PathBuf, error: String },
}

impl fmt::Display for CompareError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            CompareError::Load(e) => e.fmt(f),
            CompareError::BadJson { path, error } => write!(f, "{}: not a report.json: {error}", path.display()),
        }
    }
}

/// The report of one side.
pub fn read(path: &Path) -> Result<Report, CompareError> {
    let json = if path.is_dir() { path.join(report::REPORT_JSON) } else { path.to_path_buf() };
    if json.extension().is_some_and(|e| e == "json") && json.is_file() {
        let text = std::fs::read_to_string(&json)
            .map_err(|e| CompareError::Load(load::LoadError::Read { path: json.clone(), error: e }))?;
        let bad = |error: String| CompareError::BadJson { path: json.clone(), error };
        let r: Report = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if r.report_version != report::model::REPORT_VERSION {
            return Err(bad(format!("report version {}, this tool reads {}", r.report_version, report::model::REPORT_VERSION)));
        }
        return Ok(r);
    }
    load::load(path).map(|l| build::build(&l)).map_err(CompareError::Load)
}

/// One row: name, A's value, B's value (`None`: that report does not have it).
type Row = (String, Option<f64>, Option<f64>);

/// The rows compared, in the order shown: counts, then every case either side has, then the
/// numbers that need time, cost or accounting.
pub fn rows(a: &Report, b: &Report) -> Vec<Row> {
    let n = |v: u64| Some(v as f64);
    let mut rows: Vec<Row> = vec![
        ("records".into(), n(a.headline.records), n(b.headline.records)),
        ("resolved faults".into(), n(a.headline.resolved), n(b.headline.resolved)),
        ("pages mapped".into(), n(a.headline.pages_mapped), n(b.headline.pages_mapped)),
    ];
    let mut cases: Vec<&String> = a.cases.keys().chain(b.cases.keys()).collect();
    cases.sort();
    cases.dedup();
    for c in cases {
        let of = |r: &Report| Some(r.cases.get(c).copied().unwrap_or(0) as f64);
        rows.push((format!("case {c}"), of(a), of(b)));
    }
    let opt = |v: Option<u64>| v.map(|v| v as f64);
    rows.push(("frames saved".into(), opt(a.headline.frames_saved), opt(b.headline.frames_saved)));
    rows.push(("99 % of faults by (s)".into(), a.headline.faults_99_s, b.headline.faults_99_s));
    rows.push(("p99 fault latency (µs)".into(), a.headline.p99_ns.map(|v| v / 1000.0), b.headline.p99_ns.map(|v| v / 1000.0)));
    rows.push(("page-ins".into(), opt(a.headline.page_ins), opt(b.headline.page_ins)));
    rows
}

fn value(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.0}"),
        Some(x) => format!("{x:.3}"),
    }
}

/// B/A, or `–` when either is missing or A is 0.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a != 0.0 => format!("{:.2}", b / a),
        _ => "–".into(),
    }
}

/// The table, one line each.
pub fn table(a: &Report, b: &Report) -> Vec<String> {
    let side = |r: &Report| match &r.scenario {
        Some(s) => format!("{s} ({})", r.trace),
        None => r.trace.clone(),
    };
    let rows = rows(a, b);
    let w = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0).max(6);
    let mut lines = vec![
        format!("A: {}", side(a)),
        format!("B: {}", side(b)),
        String::new(),
        format!("{:<w$} {:>12} {:>12} {:>8}", "", "A", "B", "B/A"),
    ];
    for (name, x, y) in &rows {
        lines.push(format!("{name:<w$} {:>12} {:>12} {:>8}", value(*x), value(*y), ratio(*x, *y)));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_and_missing_values() {
        assert_eq!(ratio(Some(4.0), Some(2.0)), "0.50");
        assert_eq!(ratio(Some(0.0), Some(2.0)), "–");
        assert_eq!(ratio(None, Some(2.0)), "–");
        assert_eq!(value(Some(16414.0)), "16414");
        assert_eq!(value(Some(0.0125)), "0.013");
        assert_eq!(value(None), "–");
    }
}
