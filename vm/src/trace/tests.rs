extern crate std;

use super::*;
use alloc::vec;
use proptest::prelude::*;

const FREQ: u64 = 62_500_000;

fn fault(seq: u64) -> Record {
    Record {
        seq,
        ipa: Ipa(0x4000_1234),
        vm: 3,
        vcpu: 1,
        access: Access::Write,
        case: Some(FaultCase::AnonCow1B),
        outcome: Outcome::Resolved,
        neighbours: 4,
        refaults: 1,
        timing: Some(Timing {
            time: 1_000_000 + seq,
            cpu: 2,
            cost: 625,
        }),
    }
}

/// One record of every kind (and every event).
fn one_of_each() -> Vec<Entry> {
    let ev = |what| {
        Entry::Event(Event {
            time: 77,
            cpu: 1,
            vm: 2,
            what,
        })
    };
    vec![
        Entry::Fault(fault(0)),
        Entry::Fault(Record {
            case: None,
            outcome: Outcome::Failed(FaultError::Restart),
            access: Access::Exec,
            ..fault(1)
        }),
        Entry::Fault(Record {
            case: None,
            outcome: Outcome::Mmio,
            access: Access::Read,
            ..fault(2)
        }),
        Entry::Fault(Record {
            case: None,
            outcome: Outcome::AbortInjected,
            ..fault(3)
        }),
        Entry::Accounting(Accounting {
            time: 5,
            cpu: 0,
            vm: 1,
            resident: 100,
            private: 60,
            shared: 30,
            zero: 10,
            swapped: 7,
            pool_free: 9000,
        }),
        ev(EventKind::VmStart),
        ev(EventKind::VmStop(StopStatus::Exited(u32::MAX))),
        ev(EventKind::VmStop(StopStatus::Crashed)),
        ev(EventKind::Clone { from: 1 }),
        ev(EventKind::DedupPass { merged: 1 << 40 }),
        Entry::Mmio(MmioCount {
            time: 9,
            cpu: 3,
            vm: 2,
            base: Ipa(0x0900_0000),
            offset: 0x18,
            direction: Direction::Read,
            count: 123_456,
        }),
        Entry::Mmio(MmioCount {
            time: 9,
            cpu: 3,
            vm: 2,
            base: Ipa(0x0900_0000),
            offset: 0,
            direction: Direction::Write,
            count: 1,
        }),
        Entry::Capped(Capped {
            time: 10,
            cpu: 1,
            unwritten: 2048,
            cap: 256 << 20,
        }),
        ev(EventKind::VmStop(StopStatus::Reset)),
        Entry::Savings(Savings {
            time: 11,
            cpu: 2,
            max_sharers: 8,
            distinct: 20_000,
            shared_frames: 12_000,
            saved_clone: 84_000,
            saved_image: 3,
            saved_dedup: 99_122,
            pool_used: 21_000,
            pool_free: 300_000,
        }),
        Entry::Swap(SwapRecord {
            time: 12,
            cpu: 1,
            vm: 3,
            op: SwapOp::PageOut,
            slot: 77,
            ipa: Ipa(0x4123_4000),
        }),
        Entry::Swap(SwapRecord {
            time: 13,
            cpu: 2,
            vm: 0,
            op: SwapOp::BadWrite,
            slot: u32::MAX,
            ipa: Ipa(0),
        }),
        Entry::Scan(PdScan {
            time: 14,
            cpu: 0,
            scanned: 64,
            freed: 16,
            deactivated: 32,
        }),
    ]
}

#[test]
fn every_kind_round_trips() {
    let entries = one_of_each();
    let file = encode(FREQ, &entries);
    let t = decode(&file).unwrap();
    assert_eq!(t.version, Version::V2);
    assert_eq!(t.freq, Some(FREQ));
    assert_eq!(t.entries, entries);
    assert_eq!(t.faults().count(), 4);
    assert_eq!(t.capped().map(|c| c.unwritten), Some(2048));
    let sizes: usize = entries.iter().map(|e| e.kind().bytes()).sum();
    assert_eq!(file.len(), HEADER_BYTES + sizes);
}

#[test]
fn ticks_convert_with_the_header_frequency() {
    let t = decode(&encode(FREQ, &[])).unwrap();
    assert_eq!(t.ticks_to_us(625), Some(10));
    assert_eq!(
        t.ticks_to_us(u64::MAX),
        Some((u128::from(u64::MAX) * 1_000_000 / u128::from(FREQ)) as u64)
    );
}

/// A version 1 file as the v1 hypervisor wrote it (header, then two 32-byte records).
#[rustfmt::skip]
const V1_SAMPLE: [u8; 16 + 64] = [
    b'U', b'V', b'M', b'H', b'Y', b'P', b'T', b'R', 1, 0, 0, 0, 32, 0, 0, 0,
    // seq 7, IPA 0x4000_1234, vm 3, vcpu 1, write, case 1B, resolved, 4 neighbours, 1 refault
    7, 0, 0, 0, 0, 0, 0, 0, 0x34, 0x12, 0, 0x40, 0, 0, 0, 0, 3, 0, 1, 0, 1, 2, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0,
    // seq 8, IPA 0x2000_0000, vm 1, vcpu 0, read, no case, abort injected
    8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0xff, 0x81, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

#[test]
fn a_version_1_file_decodes_without_timing() {
    let t = decode(&V1_SAMPLE).unwrap();
    assert_eq!(t.version, Version::V1);
    assert_eq!(t.freq, None);
    assert_eq!(t.ticks_to_us(100), None);
    let faults: Vec<Record> = t.faults().copied().collect();
    assert_eq!(
        faults,
        [
            Record {
                seq: 7,
                timing: None,
                ..fault(7)
            },
            Record {
                seq: 8,
                ipa: Ipa(0x2000_0000),
                vm: 1,
                vcpu: 0,
                access: Access::Read,
                case: None,
                outcome: Outcome::AbortInjected,
                neighbours: 0,
                refaults: 0,
                timing: None,
            },
        ]
    );
    let mut short = V1_SAMPLE.to_vec();
    short.pop();
    assert_eq!(
        decode(&short),
        Err(DecodeError::Truncated {
            record: 1,
            offset: 48
        })
    );
    let mut bad = V1_SAMPLE;
    bad[16 + 20] = 9;
    assert_eq!(
        decode(&bad),
        Err(DecodeError::BadField {
            record: 0,
            offset: 16,
            field: "access"
        })
    );
    let mut bad = V1_SAMPLE;
    bad[12] = 40;
    assert_eq!(
        decode(&bad),
        Err(DecodeError::BadHeaderField("record size"))
    );
}

#[test]
fn bad_headers_are_rejected() {
    assert_eq!(decode(b""), Err(DecodeError::BadHeader));
    assert_eq!(
        decode(b"garbage garbage garbage!"),
        Err(DecodeError::BadHeader)
    );
    let good = header(FREQ);
    assert_eq!(
        decode(&good[..HEADER_BYTES - 1]),
        Err(DecodeError::BadHeader)
    );
    let mut h = good;
    h[8] = 3;
    assert_eq!(decode(&h), Err(DecodeError::UnknownVersion(3)));
    assert_eq!(decode(&header(0)), Err(DecodeError::BadHeaderField("freq")));
    let mut h = good;
    h[13] = 1;
    assert_eq!(decode(&h), Err(DecodeError::BadHeaderField("reserved")));
}

#[test]
fn a_file_ending_inside_a_record_names_it() {
    let file = encode(FREQ, &one_of_each()[..3]);
    let cut = &file[..file.len() - 1];
    let last = HEADER_BYTES + 2 * FAULT_BYTES;
    assert_eq!(
        decode(cut),
        Err(DecodeError::Truncated {
            record: 2,
            offset: last
        })
    );
    // Only the kind byte of a record.
    assert_eq!(
        decode(&file[..last + 1]),
        Err(DecodeError::Truncated {
            record: 2,
            offset: last
        })
    );
}

/// The savings record's fields sit where the module table says.
#[test]
fn a_savings_record_has_the_documented_layout() {
    let g = Savings {
        time: 0x0102_0304_0506_0708,
        cpu: 3,
        max_sharers: 0x0a0b,
        distinct: 10,
        shared_frames: 11,
        saved_clone: 12,
        saved_image: 13,
        saved_dedup: 14,
        pool_used: 15,
        pool_free: 16,
    };
    let file = encode(FREQ, &[Entry::Savings(g)]);
    let b = &file[HEADER_BYTES..];
    assert_eq!(b.len(), SAVINGS_BYTES);
    assert_eq!(&b[..4], &[6, 3, 0x0b, 0x0a]);
    let u32s: Vec<u32> = (0..10)
        .map(|i| u32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap()))
        .collect();
    assert_eq!(u32s[1], 16, "pool_free");
    assert_eq!(&u32s[4..], &[10, 11, 12, 13, 14, 15]);
    assert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), g.time);
    assert_eq!(g.saved(), 39);
    // A file of the first revision (no savings record) reads as before; one with it, too.
    assert_eq!(decode(&file).unwrap().entries, [Entry::Savings(g)]);
}

/// The swap and scan records' fields sit where the module table says, and a swap record
/// naming an IPA without a VM is refused.
#[test]
fn swap_and_scan_records_have_the_documented_layout() {
    let w = SwapRecord {
        time: 0x0102_0304_0506_0708,
        cpu: 5,
        vm: 0x0a0b,
        op: SwapOp::PageIn,
        slot: 0x1122_3344,
        ipa: Ipa(0x4000_1000),
    };
    let p = PdScan {
        time: 9,
        cpu: 6,
        scanned: 100,
        freed: 7,
        deactivated: 50,
    };
    let file = encode(FREQ, &[Entry::Swap(w), Entry::Scan(p)]);
    let b = &file[HEADER_BYTES..];
    assert_eq!(b.len(), SWAP_BYTES + SCAN_BYTES);
    assert_eq!(&b[..8], &[7, 2, 0x0b, 0x0a, 0x44, 0x33, 0x22, 0x11]);
    assert_eq!(u64::from_le_bytes(b[16..24].try_into().unwrap()), w.ipa.0);
    assert_eq!(b[24], 5, "cpu");
    let s = &b[SWAP_BYTES..];
    assert_eq!(&s[..8], &[8, 6, 0, 0, 100, 0, 0, 0]);
    assert_eq!(&s[16..24], &[7, 0, 0, 0, 50, 0, 0, 0]);
    assert_eq!(
        decode(&file).unwrap().entries,
        [Entry::Swap(w), Entry::Scan(p)]
    );
    let nowhere = SwapRecord { vm: 0, ..w };
    let file = encode(FREQ, &[Entry::Swap(nowhere)]);
    assert_eq!(
        decode(&file),
        Err(DecodeError::BadField {
            record: 0,
            offset: HEADER_BYTES,
            field: "ipa"
        })
    );
}

#[test]
fn an_unknown_kind_names_its_record() {
    let mut file = encode(FREQ, &one_of_each()[..2]);
    file.extend_from_slice(&[0x09; 24]);
    let offset = HEADER_BYTES + 2 * FAULT_BYTES;
    assert_eq!(
        decode(&file),
        Err(DecodeError::BadKind {
            record: 2,
            offset,
            tag: 9
        })
    );
    file.truncate(HEADER_BYTES);
    file.push(0);
    assert_eq!(
        decode(&file),
        Err(DecodeError::BadKind {
            record: 0,
            offset: HEADER_BYTES,
            tag: 0
        })
    );
}

/// The file of `one_of_each()[i]` alone, with byte `at` of the record set to `v`.
fn poked(i: usize, at: usize, v: u8) -> Result<Trace, DecodeError> {
    let mut file = encode(FREQ, &one_of_each()[i..=i]);
    file[HEADER_BYTES + at] = v;
    decode(&file)
}

#[test]
fn a_bad_field_is_named_with_its_record() {
    let bad = |field| {
        Err(DecodeError::BadField {
            record: 0,
            offset: HEADER_BYTES,
            field,
        })
    };
    assert_eq!(poked(0, 1, 3), bad("access"));
    assert_eq!(poked(0, 2, 7), bad("case"));
    assert_eq!(poked(0, 3, 0x7f), bad("outcome"));
    assert_eq!(poked(0, 6, 1), bad("refault reason"));
    assert_eq!(poked(4, 39, 1), bad("reserved"));
    assert_eq!(poked(5, 1, 9), bad("event"));
    assert_eq!(poked(5, 1, 0), bad("event"));
    assert_eq!(poked(5, 6, 1), bad("reserved"));
    assert_eq!(
        poked(5, 16, 1),
        bad("reserved"),
        "a VM start has no argument"
    );
    assert_eq!(
        poked(6, 20, 1),
        bad("exit status"),
        "an exit status is 32 bits"
    );
    assert_eq!(poked(8, 18, 1), bad("clone source"), "a VM id is 16 bits");
    assert_eq!(poked(10, 32, 2), bad("direction"));
    assert_eq!(poked(10, 35, 1), bad("reserved"));
    assert_eq!(poked(12, 3, 1), bad("reserved"));
    assert_eq!(poked(5, 1, 6), bad("event"), "page-out is a swap record");
    assert_eq!(poked(15, 1, 5), bad("swap op"));
    assert_eq!(poked(15, 1, 0), bad("swap op"));
    assert_eq!(poked(15, 31, 1), bad("reserved"));
    assert_eq!(poked(16, 16, 1), bad("ipa"), "no IPA without a VM");
    assert_eq!(poked(17, 3, 1), bad("reserved"));
    // The error names the record, not just the file.
    let mut file = encode(FREQ, &one_of_each());
    let at = HEADER_BYTES + 4 * FAULT_BYTES + ACCOUNTING_BYTES + 1;
    file[at] = 0;
    assert_eq!(
        decode(&file),
        Err(DecodeError::BadField {
            record: 5,
            offset: at - 1,
            field: "event"
        })
    );
}

#[test]
fn errors_read_as_sentences() {
    let e = DecodeError::BadField {
        record: 5,
        offset: 208,
        field: "event",
    };
    assert_eq!(
        std::format!("{e}"),
        "record 5 (byte 208): bad field `event`"
    );
}

fn any_entry() -> impl Strategy<Value = Entry> {
    let access = prop_oneof![Just(Access::Read), Just(Access::Write), Just(Access::Exec)];
    let case = prop::option::of((0u8..7).prop_map(one_of_case));
    let outcome = prop_oneof![
        Just(Outcome::Resolved),
        Just(Outcome::Mmio),
        Just(Outcome::AbortInjected),
        Just(Outcome::Failed(FaultError::Restart)),
        Just(Outcome::Failed(FaultError::NoMemory)),
    ];
    let fault = (
        any::<[u64; 3]>(),
        any::<[u16; 2]>(),
        access,
        case,
        outcome,
        any::<[u8; 3]>(),
        any::<u32>(),
    )
        .prop_map(
            |(
                [seq, ipa, time],
                [vm, vcpu],
                access,
                case,
                outcome,
                [neighbours, refaults, cpu],
                cost,
            )| {
                Entry::Fault(Record {
                    seq,
                    ipa: Ipa(ipa),
                    vm,
                    vcpu,
                    access,
                    case,
                    outcome,
                    neighbours,
                    refaults,
                    timing: Some(Timing { time, cpu, cost }),
                })
            },
        );
    let accounting = (any::<u64>(), any::<u8>(), any::<u16>(), any::<[u32; 6]>()).prop_map(
        |(time, cpu, vm, n)| {
            Entry::Accounting(Accounting {
                time,
                cpu,
                vm,
                resident: n[0],
                private: n[1],
                shared: n[2],
                zero: n[3],
                swapped: n[4],
                pool_free: n[5],
            })
        },
    );
    let what = prop_oneof![
        Just(EventKind::VmStart),
        any::<u32>().prop_map(|s| EventKind::VmStop(StopStatus::Exited(s))),
        Just(EventKind::VmStop(StopStatus::Crashed)),
        Just(EventKind::VmStop(StopStatus::Reset)),
        any::<u16>().prop_map(|from| EventKind::Clone { from }),
        any::<u64>().prop_map(|merged| EventKind::DedupPass { merged }),
    ];
    let event =
        (any::<u64>(), any::<u8>(), any::<u16>(), what).prop_map(|(time, cpu, vm, what)| {
            Entry::Event(Event {
                time,
                cpu,
                vm,
                what,
            })
        });
    let mmio = (
        any::<[u64; 3]>(),
        any::<u8>(),
        any::<u16>(),
        any::<u32>(),
        any::<bool>(),
    )
        .prop_map(|([time, base, count], cpu, vm, offset, write)| {
            let direction = if write {
                Direction::Write
            } else {
                Direction::Read
            };
            Entry::Mmio(MmioCount {
                time,
                cpu,
                vm,
                base: Ipa(base),
                offset,
                direction,
                count,
            })
        });
    let capped =
        (any::<[u64; 2]>(), any::<u8>(), any::<u32>()).prop_map(|([time, cap], cpu, unwritten)| {
            Entry::Capped(Capped {
                time,
                cpu,
                unwritten,
                cap,
            })
        });
    let savings = (any::<u64>(), any::<u8>(), any::<u16>(), any::<[u32; 7]>()).prop_map(
        |(time, cpu, max_sharers, n)| {
            Entry::Savings(Savings {
                time,
                cpu,
                max_sharers,
                distinct: n[0],
                shared_frames: n[1],
                saved_clone: n[2],
                saved_image: n[3],
                saved_dedup: n[4],
                pool_used: n[5],
                pool_free: n[6],
            })
        },
    );
    let swap = (
        any::<u64>(),
        any::<u8>(),
        1u16..,
        prop::sample::select(SwapOp::ALL.to_vec()),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(|(time, cpu, vm, op, slot, ipa)| {
            Entry::Swap(SwapRecord {
                time,
                cpu,
                vm,
                op,
                slot,
                ipa: Ipa(ipa),
            })
        });
    let scan = (any::<u64>(), any::<u8>(), any::<[u32; 3]>()).prop_map(|(time, cpu, n)| {
        Entry::Scan(PdScan {
            time,
            cpu,
            scanned: n[0],
            freed: n[1],
            deactivated: n[2],
        })
    });
    prop_oneof![fault, accounting, event, mmio, capped, savings, swap, scan]
}

fn one_of_case(c: u8) -> FaultCase {
    use FaultCase::*;
    [
        Layerless0, Anon1A, AnonCow1B, Obj2A, ObjCopy2B, Zero2B, ObjFault,
    ][usize::from(c)]
}

proptest! {
    #[test]
    fn any_entries_round_trip(freq in 1u64.., entries in prop::collection::vec(any_entry(), 0..40)) {
        let t = decode(&encode(freq, &entries)).unwrap();
        prop_assert_eq!(t.freq, Some(freq));
        prop_assert_eq!(t.entries, entries);
    }

    #[test]
    fn no_bytes_make_decode_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn no_body_after_a_good_header_makes_decode_panic(
        v1 in any::<bool>(),
        body in prop::collection::vec(prop_oneof![0u8..8, any::<u8>()], 0..600),
    ) {
        let mut file = if v1 { V1_SAMPLE[..V1_HEADER_BYTES].to_vec() } else { header(FREQ).to_vec() };
        file.extend_from_slice(&body);
        let _ = decode(&file);
    }

    #[test]
    fn a_corrupted_byte_never_panics(
        entries in prop::collection::vec(any_entry(), 1..10),
        at in any::<prop::sample::Index>(),
        v in any::<u8>(),
    ) {
        let mut file = encode(FREQ, &entries);
        let i = at.index(file.len());
        file[i] = v;
        let _ = decode(&file);
    }
}
