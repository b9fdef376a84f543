//! Run folders: each run gets `target/uvmhyp/runs/<scenario>-<UTC time>/` holding everything needed
//! to look at it again or repeat it: the scenario file as used (`scenario.toml`), the exact QEMU
//! command (`qemu.cmd`), the console log (`console.log`), each VM's own log (`vm-<name>.log`) and
//! the trace (`uvmhyp.trace`).
//! `target/uvmhyp/runs/latest` links to the newest one. Nothing is overwritten; old runs stay until
//! someone removes them.

use crate::scenarios::Scenario;
use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The folder of all runs, relative to the workspace root.
pub const RUNS: &str = "target/uvmhyp/runs";
/// The link to the newest run, in [`RUNS`].
pub const LATEST: &str = "latest";
/// The files of a run folder.
pub const TRACE: &str = "uvmhyp.trace";
pub const CONSOLE_LOG: &str = "console.log";
pub const QEMU_CMD: &str = "qemu.cmd";
pub const SCENARIO: &str = "scenario.toml";

/// One run's folder, by its path relative to the root (QEMU runs in the root: the trace path the
/// hypervisor gets through semihosting is resolved there).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RunDir(String);

impl RunDir {
    /// Make a new folder for a run of `s` now, copy its scenario file in and point `latest` at it.
    pub fn create(root: &Path, s: &Scenario) -> io::Result<RunDir> {
        std::fs::create_dir_all(root.join(RUNS))?;
        let stamp = utc_stamp(SystemTime::now());
        // Two runs of one scenario in the same second get `.1`, `.2`, …; `create_dir` fails on
        // an existing folder, so two processes cannot share one.
        let mut n = 0;
        let dir = loop {
            let name = if n == 0 { format!("{}-{stamp}", s.name) } else { format!("{}-{stamp}.{n}", s.name) };
            match std::fs::create_dir(root.join(RUNS).join(&name)) {
                Ok(()) => break RunDir(format!("{RUNS}/{name}")),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => return Err(e),
            }
        };
        std::fs::copy(&s.file, root.join(dir.scenario_file()))?;
        dir.link_latest(root)?;
        Ok(dir)
    }

    /// `latest` -> this folder, replaced atomically (a new link renamed over the old one).
    fn link_latest(&self, root: &Path) -> io::Result<()> {
        let runs = root.join(RUNS);
        let name = self.0.rsplit('/').next().unwrap_or(&self.0);
        let tmp = runs.join(format!(".{LATEST}.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(name, &tmp)?;
        std::fs::rename(&tmp, runs.join(LATEST))
    }

    /// The folder, relative to the root.
    pub fn path(&self) -> &str {
        &self.0
    }

    pub fn trace(&self) -> String {
        format!("{}/{TRACE}", self.0)
    }

    pub fn console_log(&self) -> String {
        format!("{}/{CONSOLE_LOG}", self.0)
    }

    pub fn qemu_cmd(&self) -> String {
        format!("{}/{QEMU_CMD}", self.0)
    }

    /// What VM `name` printed (its guest lines and its stop line).
    pub fn vm_log(&self, name: &str) -> String {
        format!("{}/vm-{name}.log", self.0)
    }

    pub fn scenario_file(&self) -> String {
        format!("{}/{SCENARIO}", self.0)
    }
}

/// `YYYYMMDDTHHMMSSZ` of `t` (UTC), for folder names that sort by time.
fn utc_stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", day_secs / 3600, day_secs % 3600 / 60, day_secs % 60)
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stamps_are_utc_dates() {
        let at = |s: u64| utc_stamp(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "19700101T000000Z");
        assert_eq!(at(951_782_400), "20000229T000000Z");
        assert_eq!(at(1_796_222_045), "20261202T143405Z");
        assert_eq!(at(4_107_542_399), "21000228T235959Z");
    }

    #[test]
    fn each_run_gets_its_own_folder_with_the_scenario_and_latest_follows() {
        let root = std::env::temp_dir().join(format!("uvmhyp-runs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let s = crate::scenarios::find(&crate::qemu::root(), "touch").unwrap();
        let a = RunDir::create(&root, &s).unwrap();
        let b = RunDir::create(&root, &s).unwrap();
        assert_ne!(a, b);
        assert!(a.path().starts_with("target/uvmhyp/runs/touch-"), "{a:?}");
        for d in [&a, &b] {
            assert_eq!(std::fs::read(root.join(d.scenario_file())).unwrap(), std::fs::read(&s.file).unwrap());
        }
        let latest = root.join(RUNS).join(LATEST);
        assert_eq!(std::fs::canonicalize(&latest).unwrap(), std::fs::canonicalize(root.join(b.path())).unwrap());
        assert!(root.join(RUNS).join(LATEST).join("scenario.toml").is_file());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
