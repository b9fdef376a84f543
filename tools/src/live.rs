//! The live view of a run: each console line as it comes (guest lines prefixed by their VM's
//! name, `[image1] image: ok`), each VM's own log (`vm-<name>.log` in the run folder), and the
//! run's progress: elapsed time, faults and faults/s, memory mapped, VMs running. On a terminal
//! the progress is one line redrawn in place (`indicatif`); otherwise a plain line every
//! [`PLAIN_EVERY`] so a CI log stays readable.
//!
//! Progress comes from the trace file as the hypervisor flushes it (64 KiB per CPU at a time, so
//! it lags by up to that many records) and from the console's stop lines.

use crate::console::{parse_line, Line};
use crate::out::Closed;
use crate::runs::RunDir;
use crate::scenarios::Scenario;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use std::collections::BTreeMap;
use vm::trace::{decode, Accounting, Entry, Kind, Outcome, Trace, Version, HEADER_BYTES};

/// How often a plain progress line is printed when stdout is not a terminal.
pub const PLAIN_EVERY: Duration = Duration::from_secs(10);
/// The window of the faults/s on a terminal.
const RATE_WINDOW: Duration = Duration::from_secs(5);
/// How often the trace file is looked at (and the terminal's line redrawn).
pub const POLL: Duration = Duration::from_millis(250);

/// What the run's console is shown as.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Echo {
    /// Every line (`tools run`).
    Console,
    /// No console, only progress (`tools test`: one line per scenario).
    Quiet,
}

/// The trace file read as it grows: its header once, then whole records decoded as they come,
/// a partial one kept for the next read.
struct Tail {
    path: PathBuf,
    /// Bytes of the file consumed so far.
    read: u64,
    /// The v2 header, once read (each batch of records is decoded behind it).
    header: Option<Vec<u8>>,
    partial: Vec<u8>,
    /// Not a v2 trace, or a record that does not decode: stop counting.
    broken: bool,
    faults: u64,
    pages_mapped: u64,
    /// Each VM's last accounting record.
    memory: BTreeMap<u16, Accounting>,
}

impl Tail {
    fn new(path: PathBuf) -> Tail {
        Tail { path, read: 0, header: None, partial: Vec::new(), broken: false, faults: 0, pages_mapped: 0, memory: BTreeMap::new() }
    }

    /// Read what was appended since the last call. A file that is not there yet or does not
    /// decode stops the counting, never the run: the verdict reads the whole trace at the end.
    fn poll(&mut self) {
        if self.broken {
            return;
        }
        let Ok(mut f) = File::open(&self.path) else { return };
        let mut new = Vec::new();
        if f.seek(SeekFrom::Start(self.read)).is_err() || f.read_to_end(&mut new).is_err() {
            return;
        }
        self.read += new.len() as u64;
        self.partial.extend_from_slice(&new);
        let header = match &self.header {
            Some(h) => h.clone(),
            None if self.partial.len() < HEADER_BYTES => return,
            None => {
                let h: Vec<u8> = self.partial.drain(..HEADER_BYTES).collect();
                if !matches!(decode(&h), Ok(Trace { version: Version::V2, .. })) {
                    self.broken = true;
                    return;
                }
                self.header = Some(h.clone());
                h
            }
        };
        // The whole records at the front: each kind has its size.
        let mut whole = 0;
        while let Some(&tag) = self.partial.get(whole) {
            let Some(kind) = Kind::from_tag(tag) else {
                self.broken = true;
                return;
            };
            if whole + kind.bytes() > self.partial.len() {
                break;
            }
            whole += kind.bytes();
        }
        let batch: Vec<u8> = header.iter().copied().chain(self.partial.drain(..whole)).collect();
        let Ok(t) = decode(&batch) else {
            self.broken = true;
            return;
        };
        for e in t.entries {
            match e {
                Entry::Fault(r) => {
                    self.faults += 1;
                    if r.outcome == Outcome::Resolved {
                        self.pages_mapped += 1 + u64::from(r.neighbours);
                    }
                }
                Entry::Accounting(a) => {
                    let newer = self.memory.get(&a.vm).is_none_or(|old| old.time <= a.time);
                    if newer {
                        self.memory.insert(a.vm, a);
                    }
                }
                _ => {}
            }
        }
    }

    /// `MiB 64.1 resident, 830 pool free` from the accounting records (`, 2.0 shared`,
    /// `, 1.0 swapped` when there are any), or the pages the faults so far mapped before the first
    /// one. Short: it shares a terminal line.
    fn memory(&self) -> String {
        let mib = |pages: u64| pages as f64 * 4096.0 / (1u64 << 20) as f64;
        if self.memory.is_empty() {
            return format!("MiB {:.1} mapped", mib(self.pages_mapped));
        }
        let sum = |f: fn(&Accounting) -> u32| self.memory.values().map(|a| u64::from(f(a))).sum::<u64>();
        let pool = self.memory.values().max_by_key(|a| a.time).map_or(0, |a| u64::from(a.pool_free));
        let mut s = format!("MiB {:.1} resident", mib(sum(|a| a.resident)));
        for (what, pages) in [("shared", sum(|a| a.shared)), ("swapped", sum(|a| a.swapped))] {
            if pages > 0 {
                s += &format!(", {:.1} {what}", mib(pages));
            }
        }
        s + &format!(", {:.0} pool free", mib(pool))
    }
}

/// Where one console line goes.
#[derive(Debug, PartialEq, Eq)]
struct Routed {
    /// The line as shown: a guest line with its VM's name for a prefix.
    shown: String,
    /// The VM whose log gets it, and what that log gets (a guest line without its prefix).
    log: Option<(u16, String)>,
    /// It is a VM's stop line.
    stop: bool,
}

/// Route `raw` for a scenario whose VM ids 1, 2, … are `names`. A `[vmN]` line of a VM the
/// scenario does not have stays as printed (the verdict reports such VMs).
fn routed(names: &[String], raw: &str) -> Routed {
    let vm_of = |vm: u16| names.get(usize::from(vm).wrapping_sub(1)).map(|n| (vm, n));
    let as_is = || Routed { shown: raw.to_string(), log: None, stop: false };
    match parse_line(raw) {
        Line::Guest { vm, text } => match vm_of(vm) {
            Some((vm, n)) => Routed { shown: format!("[{n}] {text}"), log: Some((vm, text)), stop: false },
            None => as_is(),
        },
        Line::Stopped { vm, .. } => match vm_of(vm) {
            Some((vm, _)) => Routed { shown: raw.to_string(), log: Some((vm, raw.to_string())), stop: true },
            None => as_is(),
        },
        _ => as_is(),
    }
}

/// One run's live view.
pub struct Live {
    echo: Echo,
    /// Scenario VM names by id - 1.
    names: Vec<String>,
    logs: Vec<BufWriter<File>>,
    stopped: usize,
    tail: Tail,
    start: Instant,
    /// Faults at the last rate sample, and when.
    rate_at: (u64, Instant),
    rate: f64,
    last_plain: Instant,
    last_poll: Instant,
    bar: Option<ProgressBar>,
}

impl Live {
    /// The view of a run of `s` in `run` (under `root`); creates the per-VM logs.
    pub fn new(root: &Path, s: &Scenario, run: &RunDir, echo: Echo) -> std::io::Result<Live> {
        let names: Vec<String> = s.vms.iter().map(|v| v.name.clone()).collect();
        let logs = names.iter().map(|n| File::create(root.join(run.vm_log(n))).map(BufWriter::new)).collect::<Result<_, _>>()?;
        let now = Instant::now();
        let bar = std::io::stdout().is_terminal().then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
            b.set_style(ProgressStyle::with_template("{spinner} {prefix}{wide_msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
            if echo == Echo::Quiet {
                b.set_prefix(format!("test {} ... ", s.name));
            }
            b
        });
        let tail = Tail::new(root.join(run.trace()));
        Ok(Live { echo, names, logs, stopped: 0, tail, start: now, rate_at: (0, now), rate: 0.0, last_plain: now, last_poll: now, bar })
    }

    /// Show `text` above the progress line.
    pub fn print(&self, text: &str) -> Result<(), Closed> {
        match &self.bar {
            Some(b) => b.suspend(|| out!("{text}")),
            None => out!("{text}"),
        }
    }

    /// One console line: into its VM's log, and shown when echoing.
    pub fn line(&mut self, raw: &str) -> Result<(), Closed> {
        let l = routed(&self.names, raw);
        if l.stop {
            self.stopped += 1;
        }
        if let Some((vm, text)) = &l.log {
            if let Some(log) = self.logs.get_mut(usize::from(*vm).wrapping_sub(1)) {
                // A log that cannot be written loses lines, not the run; the console log has them all.
                let _ = writeln!(log, "{text}");
            }
        }
        match self.echo {
            Echo::Console => self.print(&l.shown),
            Echo::Quiet => Ok(()),
        }
    }

    /// The QEMU command line, shown when echoing the console.
    pub fn command(&self, text: &str) -> Result<(), Closed> {
        match self.echo {
            Echo::Console => self.print(text),
            Echo::Quiet => Ok(()),
        }
    }

    /// When [`POLL`] has passed since the last look: look at the trace and show progress (redrawn
    /// on a terminal, a plain line every [`PLAIN_EVERY`] otherwise). Called after every console
    /// line and every [`POLL`] without one.
    pub fn tick_due(&mut self) -> Result<(), Closed> {
        let now = Instant::now();
        if now.duration_since(self.last_poll) < POLL {
            return Ok(());
        }
        self.last_poll = now;
        self.tail.poll();
        // The trace grows in 64 KiB bursts: a rate over one second is mostly 0 or a burst. Over
        // RATE_WINDOW on a terminal, over the interval between plain lines otherwise.
        let window = if self.bar.is_some() { RATE_WINDOW } else { PLAIN_EVERY };
        let since = now.duration_since(self.rate_at.1);
        if since >= window {
            self.rate = (self.tail.faults - self.rate_at.0) as f64 / since.as_secs_f64();
            self.rate_at = (self.tail.faults, now);
        }
        match &self.bar {
            Some(b) => {
                b.set_message(self.progress());
                b.tick();
                Ok(())
            }
            None if now.duration_since(self.last_plain) >= PLAIN_EVERY => {
                self.last_plain = now;
                out!("[tools] {}", self.progress())
            }
            None => Ok(()),
        }
    }

    /// `12.3 s | 16414 faults, 1234/s | MiB 64.1 resident, … | VMs 1 running, 2 stopped`.
    fn progress(&self) -> String {
        let total = self.names.len();
        format!(
            "{:.1} s | {} faults, {:.0}/s | {} | VMs {} running, {} stopped",
            self.start.elapsed().as_secs_f64(),
            self.tail.faults,
            self.rate,
            self.tail.memory(),
            total.saturating_sub(self.stopped),
            self.stopped.min(total)
        )
    }

    /// Take the progress line away and flush the VM logs.
    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        for l in &mut self.logs {
            let _ = l.flush();
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm::addr::{Access, Ipa};
    use vm::fault::FaultCase;
    use vm::trace::{Record, Timing};

    fn fault(seq: u64, neighbours: u8, outcome: Outcome) -> Entry {
        let timing = Some(Timing { time: seq, cpu: 0, cost: 1 });
        Entry::Fault(Record { seq, ipa: Ipa(0x4000_0000), vm: 1, vcpu: 0, access: Access::Write, case: Some(FaultCase::Zero2B), outcome, neighbours, refaults: 0, timing })
    }

    fn resident(vm: u16, time: u64, resident: u32) -> Entry {
        Entry::Accounting(Accounting { time, vm, resident, pool_free: 256, ..Accounting::default() })
    }

    #[test]
    fn the_tail_counts_whole_records_as_the_file_grows() {
        let path = std::env::temp_dir().join(format!("uvmhyp-live-{}.trace", std::process::id()));
        let mut t = Tail::new(path.clone());
        t.poll();
        assert_eq!(t.faults, 0, "no file yet");
        let full = vm::trace::encode(62_500_000, &[fault(0, 3, Outcome::Resolved), resident(1, 5, 256), fault(1, 0, Outcome::Mmio), fault(2, 0, Outcome::Resolved)]);
        // The header alone, then the first record and part of the second.
        std::fs::write(&path, &full[..HEADER_BYTES - 4]).unwrap();
        t.poll();
        std::fs::write(&path, &full[..HEADER_BYTES + 40 + 10]).unwrap();
        t.poll();
        assert_eq!((t.faults, t.pages_mapped), (1, 4));
        assert_eq!(t.memory(), "MiB 0.0 mapped");
        std::fs::write(&path, &full).unwrap();
        t.poll();
        assert_eq!((t.faults, t.pages_mapped), (3, 5));
        assert_eq!(t.memory(), "MiB 1.0 resident, 1 pool free");
        t.memory.get_mut(&1).unwrap().shared = 512;
        assert_eq!(t.memory(), "MiB 1.0 resident, 2.0 shared, 1 pool free");
        // A record that does not decode stops the counting, and nothing panics.
        let mut bad = full.clone();
        bad.push(0x77);
        bad.extend_from_slice(&[0; 39]);
        std::fs::write(&path, &bad).unwrap();
        t.poll();
        assert!(t.broken);
        assert_eq!(t.faults, 3);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn guest_lines_get_their_vms_name_and_go_to_its_log() {
        let names = ["image1".to_string(), "touch".to_string()];
        let r = routed(&names, "[vm2] touch: ok");
        assert_eq!(r, Routed { shown: "[touch] touch: ok".into(), log: Some((2, "touch: ok".into())), stop: false });
        let r = routed(&names, "uvmhyp: vm1 (image1) exited 0");
        assert_eq!((r.shown.as_str(), r.log, r.stop), ("uvmhyp: vm1 (image1) exited 0", Some((1, "uvmhyp: vm1 (image1) exited 0".into())), true));
        for as_printed in ["[vm3] not ours", "[vm0] nor this", "uvmhyp: trace -> x", "[vmx] y"] {
            assert_eq!(routed(&names, as_printed), Routed { shown: as_printed.into(), log: None, stop: false });
        }
        let ghost = "uvmhyp: vm7 (ghost) exited 0";
        assert_eq!(routed(&names, ghost), Routed { shown: ghost.into(), log: None, stop: false }, "not a VM of the scenario");
    }

    #[test]
    fn a_v1_trace_is_not_counted() {
        let path = std::env::temp_dir().join(format!("uvmhyp-live-v1-{}.trace", std::process::id()));
        std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/report-v1.trace"), &path).unwrap();
        let mut t = Tail::new(path.clone());
        t.poll();
        assert!(t.broken && t.faults == 0);
        std::fs::remove_file(&path).unwrap();
    }
}
