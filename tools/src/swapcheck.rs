//! The trace's swap records against the console's counters table: every run with a trace (not
//! capped) and a swap disk must trace one page-in record per `pageins` and one per `readaheads`
//! (a SEQUENTIAL fault's reads of the following pages are page-ins too), one bad-slot record per
//! `swpgbad`, one page-out record per `pageouts` whose write succeeded, and pagedaemon passes
//! whose scans and deactivations add up to `pdscans` and `pddeact`.

use crate::console::Counters;
use vm::trace::{Entry, SwapOp, Trace};

/// What the trace's records add up to.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
struct Sums {
    page_outs: u64,
    page_ins: u64,
    bad_reads: u64,
    bad_writes: u64,
    scanned: u64,
    deactivated: u64,
}

fn sums(t: &Trace) -> Sums {
    let mut s = Sums::default();
    for e in &t.entries {
        match e {
            Entry::Swap(w) => match w.op {
                SwapOp::PageOut => s.page_outs += 1,
                SwapOp::PageIn => s.page_ins += 1,
                SwapOp::BadRead => s.bad_reads += 1,
                SwapOp::BadWrite => s.bad_writes += 1,
            },
            Entry::Scan(p) => {
                s.scanned += u64::from(p.scanned);
                s.deactivated += u64::from(p.deactivated);
            }
            _ => {}
        }
    }
    s
}

/// One message per disagreement; none when the trace is capped (records are missing by design)
/// or the counters table has no `pageins` row (no table: the console checks say so).
pub fn check(t: &Trace, counters: &Counters) -> Vec<String> {
    let total = |name: &str| counters.get(name, "total");
    let Some(pageins) = total("pageins") else { return Vec::new() };
    if t.capped().is_some() {
        return Vec::new();
    }
    let s = sums(t);
    let mut f = Vec::new();
    let mut expect = |what: &str, traced: u64, counted: Option<u64>| {
        if let Some(c) = counted.filter(|&c| c != traced) {
            f.push(format!("trace: {traced} {what} records, the counters say {c}"));
        }
    };
    // A table without a `readaheads` row is one from before readahead: none were counted.
    let read_ahead = total("readaheads").unwrap_or(0);
    expect("page-in", s.page_ins, Some(pageins.saturating_add(read_ahead)));
    expect("bad-slot", s.bad_reads + s.bad_writes, total("swpgbad"));
    // A failed write's pages are counted in `pageouts` but traced as bad slots.
    let written = total("pageouts").filter(|_| s.bad_writes == 0);
    expect("page-out", s.page_outs, written);
    // The pagedaemon's own counters are in the table only with swap (its `pdaemon` column);
    // without, its passes over object pages are traced but not counted.
    if counters.columns.iter().any(|c| c == "pdaemon") {
        expect("pagedaemon scanned-page", s.scanned, total("pdscans"));
        expect("pagedaemon deactivated-page", s.deactivated, total("pddeact"));
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm::addr::Ipa;
    use vm::trace::{encode, decode, Capped, PdScan, SwapRecord};

    fn counters(rows: &[(&str, u64)]) -> Counters {
        let columns = vec!["pdaemon".into(), "total".into()];
        Counters { columns, rows: rows.iter().map(|(n, v)| (n.to_string(), vec![*v, *v])).collect() }
    }

    fn swap(op: SwapOp, vm: u16) -> Entry {
        Entry::Swap(SwapRecord { time: 1, cpu: 0, vm, op, slot: 5, ipa: Ipa(if vm == 0 { 0 } else { 0x4000_0000 }) })
    }

    fn trace(entries: &[Entry]) -> Trace {
        decode(&encode(62_500_000, entries)).unwrap()
    }

    #[test]
    fn records_that_add_up_to_the_counters_pass_and_others_are_named() {
        let entries = [
            swap(SwapOp::PageOut, 1),
            swap(SwapOp::PageOut, 2),
            swap(SwapOp::PageIn, 1),
            swap(SwapOp::BadRead, 0),
            Entry::Scan(PdScan { time: 2, cpu: 1, scanned: 10, freed: 2, deactivated: 4 }),
        ];
        let good = counters(&[("pageins", 1), ("pageouts", 2), ("swpgbad", 1), ("pdscans", 10), ("pddeact", 4)]);
        assert_eq!(check(&trace(&entries), &good), Vec::<String>::new());
        // Pages read ahead are page-in records too: with one counted, one record is missing.
        let ahead = counters(&[("pageins", 1), ("readaheads", 1), ("pageouts", 2), ("swpgbad", 1), ("pdscans", 10), ("pddeact", 4)]);
        assert_eq!(check(&trace(&entries), &ahead), ["trace: 1 page-in records, the counters say 2"]);
        let mut with_ahead = entries.to_vec();
        with_ahead.push(swap(SwapOp::PageIn, 1));
        assert_eq!(check(&trace(&with_ahead), &ahead), Vec::<String>::new());
        let off = counters(&[("pageins", 2), ("pageouts", 3), ("swpgbad", 1), ("pdscans", 11), ("pddeact", 4)]);
        assert_eq!(
            check(&trace(&entries), &off),
            [
                "trace: 1 page-in records, the counters say 2",
                "trace: 2 page-out records, the counters say 3",
                "trace: 10 pagedaemon scanned-page records, the counters say 11",
            ]
        );
    }

    #[test]
    fn a_failed_write_or_a_capped_trace_excuses_what_it_must() {
        let failed = [swap(SwapOp::PageOut, 1), swap(SwapOp::BadWrite, 0)];
        let c = counters(&[("pageins", 0), ("pageouts", 2), ("swpgbad", 1)]);
        assert!(check(&trace(&failed), &c).is_empty());
        let capped = [swap(SwapOp::PageIn, 1), Entry::Capped(Capped { time: 3, cpu: 0, unwritten: 9, cap: 1 << 20 })];
        assert!(check(&trace(&capped), &counters(&[("pageins", 50)])).is_empty());
        // No counters table: nothing to hold the records against.
        assert!(check(&trace(&failed), &Counters::default()).is_empty());
        // No swap, no `pdaemon` column: passes over object pages are not counted.
        let scan = [Entry::Scan(PdScan { time: 2, cpu: 1, scanned: 10, freed: 2, deactivated: 4 })];
        let no_swap = Counters { columns: vec!["total".into()], rows: vec![("pageins".into(), vec![0]), ("pdscans".into(), vec![0])] };
        assert!(check(&trace(&scan), &no_swap).is_empty());
    }
}
