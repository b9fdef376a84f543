//! `tools trace`: a decoded trace as text — what it holds, the per-VM table of how faults ended,
//! the events, the MMIO counts, each VM's last accounting record, the cap if it was reached, and
//! the first fault records (with time, CPU and cost in a version 2 trace).

use crate::checks;
use crate::out::Closed;
use crate::verdict;
use std::collections::BTreeMap;
use vm::trace::{Accounting, Direction, Entry, EventKind, Kind, Record, StopStatus, Trace, Version};

/// Print `t` (read from `shown`), with at most `head` fault records.
pub fn trace(shown: &str, t: &Trace, head: usize) -> Result<(), Closed> {
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &t.entries {
        *kinds.entry(kind_name(e.kind())).or_insert(0) += 1;
    }
    let counts: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let clock = match t.freq {
        Some(f) => format!(", counter {f} Hz"),
        None => String::new(),
    };
    out!("{shown}: trace v{}{clock}, {} records ({})", t.version.number(), t.entries.len(), counts.join(", "))?;
    let faults = checks::faults(t);
    case_table(&faults)?;
    events(t)?;
    swap(t)?;
    mmio(t)?;
    accounting(t)?;
    if let Some(c) = t.capped() {
        out!()?;
        out!(
            "capped at {} bytes at {}: cpu{}'s flush of {} records and everything after was not written",
            c.cap,
            time(t, c.time),
            c.cpu,
            c.unwritten
        )?;
    }
    out!()?;
    fault_records(t, faults, head)
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Fault => "faults",
        Kind::Accounting => "accounting",
        Kind::Event => "events",
        Kind::Mmio => "mmio counts",
        Kind::Capped => "capped",
        Kind::Savings => "savings",
        Kind::Swap => "swap",
        Kind::Scan => "pd scans",
    }
}

/// Counter `ticks` as microseconds since the counter's start, or the raw ticks without a
/// frequency (never in v2, whose decoder insists on one).
fn time(t: &Trace, ticks: u64) -> String {
    match t.freq {
        Some(f) => format!("{:.1} µs", ticks as f64 * 1e6 / f as f64),
        None => format!("{ticks} ticks"),
    }
}

/// The per-VM table of how faults ended (`run` prints it too).
pub fn case_table(records: &[Record]) -> Result<(), Closed> {
    let counts = verdict::case_counts(records);
    let mut vms: Vec<u16> = counts.keys().map(|(v, _)| *v).collect();
    vms.dedup();
    let mut kinds: Vec<String> = counts.keys().map(|(_, k)| k.clone()).collect();
    kinds.sort();
    kinds.dedup();
    let mut head = format!("{:<10}", "trace");
    for v in &vms {
        head += &format!("{:>9}", format!("vm{v}"));
    }
    out!("{head}{:>9}", "total")?;
    for k in &kinds {
        let mut row = format!("{k:<10}");
        let mut total = 0;
        for v in &vms {
            let n = counts.get(&(*v, k.clone())).copied().unwrap_or(0);
            total += n;
            row += &format!("{n:>9}");
        }
        out!("{row}{total:>9}")?;
    }
    out!("{:<10}{:>9}", "records", records.len())
}

/// The events in time order (CPUs' buffers are interleaved in flush order in the file).
fn events(t: &Trace) -> Result<(), Closed> {
    let mut evs: Vec<&vm::trace::Event> = t
        .entries
        .iter()
        .filter_map(|e| match e {
            Entry::Event(ev) => Some(ev),
            _ => None,
        })
        .collect();
    if evs.is_empty() {
        return Ok(());
    }
    evs.sort_by_key(|e| e.time);
    out!()?;
    out!("events:")?;
    for ev in evs {
        let what = match ev.what {
            EventKind::VmStart => "start".to_string(),
            EventKind::VmStop(StopStatus::Exited(s)) => format!("exited {s}"),
            EventKind::VmStop(StopStatus::Crashed) => "crashed".to_string(),
            EventKind::VmStop(StopStatus::Reset) => "reset".to_string(),
            EventKind::Clone { from } => format!("cloned from vm{from}"),
            EventKind::DedupPass { merged } => format!("dedup pass, {merged} pages merged"),
        };
        out!("  {:>14}  cpu{}  vm{}  {what}", time(t, ev.time), ev.cpu, ev.vm)?;
    }
    Ok(())
}

/// The swap records counted per VM (`vm0`: no VM — bad slots, page-outs of pages no VM
/// mapped), and the pagedaemon's passes summed.
fn swap(t: &Trace) -> Result<(), Closed> {
    let counts = swap_counts(t);
    let scans: Vec<&vm::trace::PdScan> = t.entries.iter().filter_map(|e| if let Entry::Scan(p) = e { Some(p) } else { None }).collect();
    if counts.is_empty() && scans.is_empty() {
        return Ok(());
    }
    out!()?;
    out!("swap:")?;
    for (vm, n) in &counts {
        out!("  vm{vm:<5} {:>8} page-outs {:>8} page-ins {:>6} bad reads {:>6} bad writes", n[0], n[1], n[2], n[3])?;
    }
    let sum = |f: fn(&vm::trace::PdScan) -> u32| scans.iter().map(|p| u64::from(f(p))).sum::<u64>();
    out!("  {} pagedaemon passes: {} scanned, {} freed, {} deactivated", scans.len(), sum(|p| p.scanned), sum(|p| p.freed), sum(|p| p.deactivated))
}

/// Per VM, the swap records of each op (in `SwapOp::ALL` order).
fn swap_counts(t: &Trace) -> BTreeMap<u16, [u64; 4]> {
    let mut counts: BTreeMap<u16, [u64; 4]> = BTreeMap::new();
    for e in &t.entries {
        if let Entry::Swap(w) = e {
            let k = vm::trace::SwapOp::ALL.iter().position(|o| *o == w.op).unwrap_or(0);
            counts.entry(w.vm).or_default()[k] += 1;
        }
    }
    counts
}

/// MMIO counts summed over the run, per VM, device register and direction.
fn mmio(t: &Trace) -> Result<(), Closed> {
    let mut sums: BTreeMap<(u16, u64, u32, Direction), (u64, usize)> = BTreeMap::new();
    for e in &t.entries {
        if let Entry::Mmio(m) = e {
            let s = sums.entry((m.vm, m.base.0, m.offset, m.direction)).or_insert((0, 0));
            s.0 += m.count;
            s.1 += 1;
        }
    }
    if sums.is_empty() {
        return Ok(());
    }
    out!()?;
    out!("mmio accesses (summed over the run):")?;
    out!("  {:>4} {:>12} {:>8} {:<5} {:>10} {:>9}", "vm", "device", "offset", "dir", "accesses", "intervals")?;
    for ((vm, base, offset, dir), (count, records)) in sums {
        let dir = if dir == Direction::Read { "read" } else { "write" };
        out!("  {vm:>4} {base:>#12x} {offset:>#8x} {dir:<5} {count:>10} {records:>9}")?;
    }
    Ok(())
}

/// Each VM's latest accounting record.
fn accounting(t: &Trace) -> Result<(), Closed> {
    let mut last: BTreeMap<u16, (Accounting, usize)> = BTreeMap::new();
    for e in &t.entries {
        if let Entry::Accounting(a) = e {
            let (latest, n) = last.entry(a.vm).or_insert((*a, 0));
            if a.time >= latest.time {
                *latest = *a;
            }
            *n += 1;
        }
    }
    if last.is_empty() {
        return Ok(());
    }
    out!()?;
    out!("accounting (pages; each VM's latest sample, vm::account's definitions):")?;
    out!(
        "  {:>4} {:>14} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>8}",
        "vm", "time", "resident", "private", "shared", "zero", "swapped", "pool free", "samples"
    )?;
    for (vm, (a, n)) in last {
        out!(
            "  {vm:>4} {:>14} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {n:>8}",
            time(t, a.time),
            a.resident,
            a.private,
            a.shared,
            a.zero,
            a.swapped,
            a.pool_free
        )?;
    }
    savings(t)
}

/// The savings record with the most frames saved, and the last one.
fn savings(t: &Trace) -> Result<(), Closed> {
    let all: Vec<&vm::trace::Savings> = t.entries.iter().filter_map(|e| if let Entry::Savings(g) = e { Some(g) } else { None }).collect();
    let (Some(peak), Some(last)) = (all.iter().max_by_key(|g| (g.saved(), g.time)), all.iter().max_by_key(|g| g.time)) else {
        return Ok(());
    };
    out!("frames saved ({} passes; distinct frames vs the sum of the VMs' resident pages):", all.len())?;
    for (what, g) in [("most", peak), ("last", last)] {
        out!(
            "  {what} at {}: {} saved (clone {}, image {}, dedup {}), {} distinct of {} resident, {} shared by up to {} VMs, pool {} used {} free",
            time(t, g.time),
            g.saved(),
            g.saved_clone,
            g.saved_image,
            g.saved_dedup,
            g.distinct,
            u64::from(g.distinct) + g.saved(),
            g.shared_frames,
            g.max_sharers,
            g.pool_used,
            g.pool_free
        )?;
    }
    Ok(())
}

/// The first `head` fault records in sequence order.
fn fault_records(t: &Trace, mut faults: Vec<Record>, head: usize) -> Result<(), Closed> {
    let timed = t.version >= Version::V2;
    let mut title = format!("{:>8} {:>4} {:>4} {:>14} {:<6} {:<9} {:<10} {:>5} {:>5}", "seq", "vm", "vcpu", "ipa", "access", "case", "outcome", "nbrs", "refl");
    if timed {
        title += &format!(" {:>14} {:>4} {:>9}", "time_us", "cpu", "cost_ns");
    }
    out!("{title}")?;
    faults.sort_by_key(|r| r.seq);
    for r in faults.iter().take(head) {
        let mut line = format!(
            "{:>8} {:>4} {:>4} {:>#14x} {:<6} {:<9} {:<10} {:>5} {:>5}",
            r.seq,
            r.vm,
            r.vcpu,
            r.ipa.0,
            format!("{:?}", r.access).to_lowercase(),
            checks::case_name(r.case),
            checks::outcome_name(r.outcome),
            r.neighbours,
            r.refaults
        );
        if let (Some(tm), Some(f)) = (r.timing, t.freq) {
            let us = tm.time as f64 * 1e6 / f as f64;
            let ns = (u128::from(tm.cost) * 1_000_000_000 / u128::from(f)) as u64;
            line += &format!(" {us:>14.3} {:>4} {ns:>9}", tm.cpu);
        }
        out!("{line}")?;
    }
    Ok(())
}
