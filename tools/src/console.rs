//! Parser for the hypervisor's console output (README, "What a run prints").

/// One console line, classified.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Line {
    /// `uvmhyp: trace -> PATH`
    TracePath(String),
    /// `[vmN] text`
    Guest { vm: u16, text: String },
    /// `uvmhyp: vmN (name) exited S` / `uvmhyp: vmN (name) crashed [who]: what` (`hyp::stop`)
    Stopped { vm: u16, name: String, stop: Stop },
    /// `uvmhyp: N VMs, K failed`
    Summary { vms: usize, failed: usize },
    /// `uvmhyp: PANIC at file:line: message`
    Panic(String),
    /// Anything else (hypervisor log lines, the counters table, …).
    Other(String),
}

fn parse_vm_id(s: &str) -> Option<u16> {
    s.strip_prefix("vm")?.parse().ok()
}

/// Classify one line (without its newline).
pub fn parse_line(line: &str) -> Line {
    let line = line.trim_end_matches(['\r', '\n']);
    if let Some(rest) = line.strip_prefix("[vm") {
        if let Some((id, text)) = rest.split_once("] ") {
            if let Ok(vm) = id.parse() {
                return Line::Guest { vm, text: text.to_string() };
            }
        }
        if let Some(id) = rest.strip_suffix(']') {
            if let Ok(vm) = id.parse() {
                return Line::Guest { vm, text: String::new() };
            }
        }
    }
    let other = || Line::Other(line.to_string());
    let Some(rest) = line.strip_prefix("uvmhyp: ") else { return other() };
    if let Some(path) = rest.strip_prefix("trace -> ") {
        return Line::TracePath(path.trim().to_string());
    }
    if let Some(msg) = rest.strip_prefix("PANIC") {
        return Line::Panic(msg.trim_start_matches([' ', ':']).trim_start_matches("at ").to_string());
    }
    // `vmN (name) <stop>`
    if let Some((id, after)) = rest.split_once(" (") {
        if let (Some(vm), Some((name, what))) = (parse_vm_id(id), after.split_once(") ")) {
            if let Some(stop) = Stop::parse(what) {
                return Line::Stopped { vm, name: name.to_string(), stop };
            }
        }
    }
    // `N VMs, K failed`
    if let Some((n, k)) = rest.split_once(" VMs, ") {
        if let (Ok(vms), Some(Ok(failed))) = (n.parse(), k.strip_suffix(" failed").map(str::parse)) {
            return Line::Summary { vms, failed };
        }
    }
    other()
}

/// How a VM stopped, as the console said.
pub use hyp::stop::Stop;

/// The counters table: column names (`vm1`, …, `total`) and rows.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct Counters {
    pub columns: Vec<String>,
    pub rows: Vec<(String, Vec<u64>)>,
}

impl Counters {
    /// Value of `counter` in `column` (e.g. `("faults", "vm1")`).
    pub fn get(&self, counter: &str, column: &str) -> Option<u64> {
        let c = self.columns.iter().position(|x| x == column)?;
        self.rows.iter().find(|(n, _)| n == counter).and_then(|(_, v)| v.get(c).copied())
    }
}

/// Everything the console told about a run.
#[derive(Clone, Default, Debug)]
pub struct Console {
    pub trace_path: Option<String>,
    /// (vm id, name, how it stopped), in the order printed.
    pub stops: Vec<(u16, String, Stop)>,
    pub summary: Option<(usize, usize)>,
    pub panic: Option<String>,
    pub counters: Counters,
    /// Guest output per VM id.
    pub guest_lines: Vec<(u16, String)>,
    /// The hypervisor's `uvmhyp: warning: …` lines (text after the prefix).
    pub warnings: Vec<String>,
    in_table: bool,
}

impl Console {
    /// Feed one line.
    pub fn feed(&mut self, raw: &str) {
        let line = parse_line(raw);
        if self.in_table {
            if let Line::Other(text) = &line {
                if let Some(row) = self.table_row(text) {
                    self.counters.rows.push(row);
                    return;
                }
            }
            self.in_table = false;
        }
        match line {
            Line::TracePath(p) => self.trace_path = Some(p),
            Line::Guest { vm, text } => self.guest_lines.push((vm, text)),
            Line::Stopped { vm, name, stop } => self.stops.push((vm, name, stop)),
            Line::Summary { vms, failed } => self.summary = Some((vms, failed)),
            Line::Panic(m) => self.panic = Some(m),
            Line::Other(text) => {
                if let Some(w) = text.strip_prefix("uvmhyp: warning: ") {
                    self.warnings.push(w.to_string());
                    return;
                }
                let mut words = text.split_whitespace();
                if words.next() == Some("counter") {
                    let cols: Vec<String> = words.map(str::to_string).collect();
                    if !cols.is_empty() && cols.last().map(String::as_str) == Some("total") {
                        self.counters = Counters { columns: cols, rows: Vec::new() };
                        self.in_table = true;
                    }
                }
            }
        }
    }

    fn table_row(&self, text: &str) -> Option<(String, Vec<u64>)> {
        let mut words = text.split_whitespace();
        let name = words.next()?;
        let values: Result<Vec<u64>, _> = words.map(str::parse).collect();
        let mut values = values.ok()?;
        // The memory rows leave the pagedaemon's column blank (it has no memory): read it as 0.
        let daemon = self.counters.columns.iter().position(|c| c == "pdaemon");
        if let (Some(at), true) = (daemon, values.len() + 1 == self.counters.columns.len()) {
            values.insert(at, 0);
        }
        (values.len() == self.counters.columns.len()).then(|| (name.to_string(), values))
    }

    /// How VM `vm` stopped, if the console said.
    pub fn stop_of(&self, vm: u16) -> Option<&(u16, String, Stop)> {
        self.stops.iter().find(|(id, _, _)| *id == vm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_each_kind_of_line() {
        assert_eq!(parse_line("uvmhyp: trace -> target/x.trace"), Line::TracePath("target/x.trace".into()));
        assert_eq!(parse_line("[vm2] hello world\r"), Line::Guest { vm: 2, text: "hello world".into() });
        assert_eq!(parse_line("[vm12]"), Line::Guest { vm: 12, text: String::new() });
        assert_eq!(
            parse_line("uvmhyp: vm1 (image1) exited 0"),
            Line::Stopped { vm: 1, name: "image1".into(), stop: Stop::Exited(0) }
        );
        assert_eq!(
            parse_line("uvmhyp: vm3 (crash) crashed [guest-fault]: instruction abort at IPA 0x20000000"),
            Line::Stopped {
                vm: 3,
                name: "crash".into(),
                stop: Stop::crash(hyp::stop::Cause::GuestFault, "instruction abort at IPA 0x20000000")
            }
        );
        assert_eq!(
            parse_line("uvmhyp: vm3 (crash) crashed: the old form"),
            Line::Other("uvmhyp: vm3 (crash) crashed: the old form".into())
        );
        assert_eq!(parse_line("uvmhyp: 4 VMs, 1 failed"), Line::Summary { vms: 4, failed: 1 });
        assert_eq!(
            parse_line("uvmhyp: PANIC at hyp/src/main.rs:10: boom"),
            Line::Panic("hyp/src/main.rs:10: boom".into())
        );
        assert_eq!(parse_line("[vmx] no"), Line::Other("[vmx] no".into()));
        assert_eq!(parse_line("uvmhyp: vm1 (a) exited nope"), Line::Other("uvmhyp: vm1 (a) exited nope".into()));
        assert_eq!(parse_line("random"), Line::Other("random".into()));
    }

    #[test]
    fn collects_a_whole_run() {
        let out = "\
uvmhyp: trace -> target/uvmhyp/runs/default-20261202T123203Z/uvmhyp.trace
[vm1] image: ok
[vm2] image: ok
uvmhyp: vm1 (image1) exited 0
uvmhyp: vm2 (image2) exited 3
counter      vm1   vm2  total
faults        10    12     22
flt_prcopy     1     1      2
uvmhyp: 2 VMs, 1 failed
";
        let mut c = Console::default();
        out.lines().for_each(|l| c.feed(l));
        assert_eq!(c.trace_path.as_deref(), Some("target/uvmhyp/runs/default-20261202T123203Z/uvmhyp.trace"));
        assert_eq!(c.stop_of(2).unwrap().2, Stop::Exited(3));
        assert_eq!(c.summary, Some((2, 1)));
        assert_eq!(c.counters.columns, ["vm1", "vm2", "total"]);
        assert_eq!(c.counters.get("faults", "total"), Some(22));
        assert_eq!(c.counters.get("flt_prcopy", "vm2"), Some(1));
        assert_eq!(c.counters.get("nope", "vm1"), None);
        assert_eq!(c.guest_lines.len(), 2);
        assert!(c.panic.is_none());
        c.feed("uvmhyp: warning: vm1: 5 console lines dropped (over the console budget)");
        assert_eq!(c.warnings, ["vm1: 5 console lines dropped (over the console budget)"]);
    }

    #[test]
    fn table_ends_at_a_line_that_is_not_a_row() {
        let mut c = Console::default();
        for l in ["counter vm1 total", "faults 1 1", "faults 1 2 3", "fltnamap 0 0"] {
            c.feed(l);
        }
        assert_eq!(c.counters.rows.len(), 1);
    }

    #[test]
    fn memory_rows_leave_the_pagedaemon_column_blank() {
        let mut c = Console::default();
        for l in ["counter vm1 vm2 pdaemon total", "pageouts 0 0 7 7", "resident 3 4 7", "saved_clone 1 1 2"] {
            c.feed(l);
        }
        assert_eq!(c.counters.get("pageouts", "pdaemon"), Some(7));
        assert_eq!(c.counters.get("resident", "total"), Some(7));
        assert_eq!(c.counters.get("saved_clone", "vm2"), Some(1));
        assert_eq!(c.counters.get("saved_clone", "pdaemon"), Some(0));
    }
}
