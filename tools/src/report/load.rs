//! What `tools report` reads: a trace file, or a run folder (its trace, plus the VM names of its
//! `scenario.toml` and the counters table of its `console.log`).

use crate::checks;
use crate::console::Console;
use crate::runs;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use vm::trace::{Record, Trace};

/// Why an input could not be read as a trace or a run folder (the user's mistake: exit 2).
#[derive(Debug)]
pub enum LoadError {
    /// The file or folder could not be read.
    Read { path: PathBuf, error: std::io::Error },
    /// A run folder without a trace in it.
    NoTrace { dir: PathBuf },
    /// The bytes are not a trace (bad header, truncated, a field no writer produces).
    BadTrace { path: PathBuf, error: String },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            LoadError::Read { path, error } => write!(f, "{}: {error}", path.display()),
            LoadError::NoTrace { dir } => write!(f, "{}: a folder without {} (not a run folder)", dir.display(), runs::TRACE),
            LoadError::BadTrace { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

/// A trace and what its run folder says about it.
pub struct Loaded {
    /// The trace file read.
    pub file: PathBuf,
    /// The folder of the run (or of the trace): where the report goes unless `--out` says.
    pub dir: PathBuf,
    /// The scenario's name, when a `scenario.toml` is beside the trace.
    pub scenario: Option<String>,
    /// VM names by id, from `scenario.toml` (ids are 1, 2, … in file order).
    pub names: BTreeMap<u16, String>,
    /// Every record, v1 or v2.
    pub trace: Trace,
    /// Its fault records, in file order.
    pub records: Vec<Record>,
    /// The counters table the hypervisor printed at the end (empty without a `console.log`).
    pub counters: crate::console::Counters,
}

/// Read `input`: a trace file, or a run folder holding one.
pub fn load(input: &Path) -> Result<Loaded, LoadError> {
    let read_err = |error| LoadError::Read { path: input.to_path_buf(), error };
    let meta = std::fs::metadata(input).map_err(read_err)?;
    let (file, dir) = if meta.is_dir() {
        let t = input.join(runs::TRACE);
        if !t.is_file() {
            return Err(LoadError::NoTrace { dir: input.to_path_buf() });
        }
        (t, input.to_path_buf())
    } else {
        let dir = input.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        (input.to_path_buf(), dir.to_path_buf())
    };
    let bytes = std::fs::read(&file).map_err(|error| LoadError::Read { path: file.clone(), error })?;
    let trace = checks::decode(&bytes).map_err(|error| LoadError::BadTrace { path: file.clone(), error })?;
    let records = checks::faults(&trace);
    let (file, dir) = (resolved(&file), resolved(&dir));
    let (scenario, names) = names_beside(&dir);
    let counters = counters_beside(&dir);
    Ok(Loaded { file, dir, scenario, names, trace, records, counters })
}

/// `path` with links resolved (`runs/latest` is the run folder it points at: a report or a
/// comparison must name the run, not whichever run is latest later), relative to the current
/// folder when it is under it.
fn resolved(path: &Path) -> PathBuf {
    let Ok(real) = std::fs::canonicalize(path) else { return path.to_path_buf() };
    match std::env::current_dir() {
        Ok(cwd) => match real.strip_prefix(&cwd) {
            Ok(p) if p.as_os_str().is_empty() => PathBuf::from("."),
            Ok(p) => p.to_path_buf(),
            Err(_) => real.clone(),
        },
        Err(_) => real,
    }
}

/// The scenario name and VM names of the `scenario.toml` in `dir`; none when there is no such
/// file or it does not parse (a report of a bare trace names VMs `vmN`).
fn names_beside(dir: &Path) -> (Option<String>, BTreeMap<u16, String>) {
    let file = dir.join(runs::SCENARIO);
    let Ok(src) = std::fs::read_to_string(&file) else { return (None, BTreeMap::new()) };
    // The run folder's copy is called scenario.toml; the run folder's name is `<scenario>-<time>`.
    let name = dir.file_name().and_then(|n| n.to_str()).and_then(|n| n.rsplit_once('-')).map(|(s, _)| s.to_string());
    match crate::scenario_file::parse(name.as_deref().unwrap_or("scenario"), &file.display().to_string(), &src) {
        Ok(s) => (Some(s.name.clone()), s.vms.iter().enumerate().map(|(i, v)| (i as u16 + 1, v.name.clone())).collect()),
        Err(_) => (None, BTreeMap::new()),
    }
}

/// The counters table of the `console.log` in `dir` (empty when there is none).
fn counters_beside(dir: &Path) -> crate::console::Counters {
    let mut c = Console::default();
    if let Ok(text) = std::fs::read_to_string(dir.join(runs::CONSOLE_LOG)) {
        text.lines().for_each(|l| c.feed(l));
    }
    c.counters
}
