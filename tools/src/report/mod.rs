//! `tools report TRACE|RUN_DIR`: the numbers of one run, as Markdown (`report.md`, also printed),
//! JSON (`report.json`, what `tools compare` reads), CSV and SVG plots, written into the run
//! folder (or beside the trace, or `--out DIR`).
//!
//! The files: [`load`] reads the trace and what its run folder says, [`build`] makes the
//! [`model::Report`], [`markdown`], [`csv`] and [`plot`] render it.

pub mod build;
pub mod csv;
pub mod load;
pub mod markdown;
pub mod model;
pub mod plot;
pub mod stats;

use std::path::{Path, PathBuf};

pub const REPORT_MD: &str = "report.md";
pub const REPORT_JSON: &str = "report.json";

/// Why a report was not made.
#[derive(Debug)]
pub enum ReportError {
    /// The input is not a trace or run folder (exit 2).
    Load(load::LoadError),
    /// An output file could not be written (exit 3, like a run that cannot write its folder).
    Write { path: PathBuf, error: String },
}

impl std::fmt::Display for ReportError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            ReportError::Load(e) => e.fmt(f),
            ReportError::Write { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

/// Read `input`, write the report's files into `out` (default: the run folder or the trace's
/// folder); `records_csv` adds every record as CSV. Returns the Markdown.
pub fn make(input: &Path, out: Option<&Path>, records_csv: bool) -> Result<String, ReportError> {
    let loaded = load::load(input).map_err(ReportError::Load)?;
    let report = build::build(&loaded);
    let dir = out.map_or_else(|| loaded.dir.clone(), Path::to_path_buf);
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| ReportError::Write { path, error: e.to_string() })
    };
    std::fs::create_dir_all(&dir).map_err(|e| ReportError::Write { path: dir.clone(), error: e.to_string() })?;
    let plots = plot::all(&report).map_err(|error| ReportError::Write { path: dir.clone(), error })?;
    let mut files = Vec::new();
    for (name, svg) in &plots {
        write(name, svg)?;
        files.push(name.to_string());
    }
    write(csv::FAULTS_CSV, &csv::timeline(&report))?;
    files.push(csv::FAULTS_CSV.into());
    if records_csv {
        write(csv::RECORDS_CSV, &csv::records(&loaded))?;
        files.push(csv::RECORDS_CSV.into());
    }
    let json = serde_json::to_string_pretty(&report).map_err(|e| ReportError::Write { path: dir.join(REPORT_JSON), error: e.to_string() })?;
    write(REPORT_JSON, &json)?;
    files.push(REPORT_JSON.into());
    files.push(REPORT_MD.into());
    let markdown = markdown::render(&report, &dir.display().to_string(), &files);
    write(REPORT_MD, &markdown)?;
    Ok(markdown)
}

#[cfg(test)]
mod tests;
