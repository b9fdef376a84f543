//! The trace's swap records against the console's counters table: every run with a trace (not
//! capped) and a swap disk must trace one page-in record per `pageins` and one per `readaheads`
//! (a SEQUENTIAL fault's reads of the following pages are page-ins too), one bad-slot record per
//! `swpgbad`, one page-out record per `pageouts` whose write succeeded, and pagedaemon passes
//! whose scans and deactivations add up to `pdscans` and `pddeact`.

use crate::console::Counters;
use std::collections::BTreeMap;
use vm::trace::{Entry, SwapOp, SwapRecord, Trace};

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

/// Per VM, its page-ins of a slot whose latest page-out before them was traced for another VM
/// (not VM 0, a page no VM mapped): the anon that went out was mapped in that VM and comes back
/// in this one, so both reach it — a shared anon (a dedup merge's, a clone's), written to swap
/// once for all its VMs. Records are taken in time order (the CPUs' buffers are flushed
/// interleaved); a slot freed and used again starts over at its next page-out.
pub fn shared_pageins(t: &Trace) -> BTreeMap<u16, u64> {
    let mut swaps: Vec<&SwapRecord> = t
        .entries
        .iter()
        .filter_map(|e| match e {
            Entry::Swap(w) => Some(w),
            _ => None,
        })
        .collect();
    swaps.sort_by_key(|w| w.time);
    let mut written_for: BTreeMap<u32, u16> = BTreeMap::new();
    let mut n = BTreeMap::new();
    for w in swaps {
        match w.op {
            SwapOp::PageOut => {
                written_for.insert(w.slot, w.vm);
            }
            SwapOp::PageIn => {
                if written_for.get(&w.slot).is_some_and(|&by| by != 0 && by != w.vm) {
                    *n.entry(w.vm).or_insert(0) += 1;
                }
            }
            SwapOp::BadRead | SwapOp::BadWrite => {
                written_for.remove(&w.slot);
            }
        }
    }
    n
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
        swap_at(1, op, vm, 5)
    }

    fn swap_at(time: u64, op: SwapOp, vm: u16, slot: u32) -> Entry {
        Entry::Swap(SwapRecord { time, cpu: 0, vm, op, slot, ipa: Ipa(if vm == 0 { 0 } else { 0x4000_0000 }) })
    }

    #[test]
    fn a_page_in_of_a_slot_another_vm_wrote_is_a_shared_one() {
        let entries = [
            // Slot 5: written for VM 1, read back by VM 2 and VM 3 (shared), then by VM 1 (its own).
            swap_at(10, SwapOp::PageOut, 1, 5),
            swap_at(11, SwapOp::PageIn, 2, 5),
            swap_at(12, SwapOp::PageIn, 1, 5),
            // Out of order in the file (another CPU's buffer), in time order it is VM 3's read of
            // VM 1's write.
            swap_at(14, SwapOp::PageIn, 3, 5),
            swap_at(13, SwapOp::PageOut, 1, 5),
            // Slot 6: used again for VM 2 after VM 1: VM 2's read is of its own write.
            swap_at(20, SwapOp::PageOut, 1, 6),
            swap_at(21, SwapOp::PageOut, 2, 6),
            swap_at(22, SwapOp::PageIn, 2, 6),
            // Slot 7: written for no VM, or gone bad: nobody's page-in counts.
            swap_at(30, SwapOp::PageOut, 0, 7),
            swap_at(31, SwapOp::PageIn, 2, 7),
            swap_at(32, SwapOp::PageOut, 1, 8),
            swap_at(33, SwapOp::BadRead, 0, 8),
            swap_at(34, SwapOp::PageIn, 2, 8),
        ];
        assert_eq!(shared_pageins(&trace(&entries)), BTreeMap::from([(2, 1), (3, 1)]));
        assert!(shared_pageins(&trace(&[])).is_empty());
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
