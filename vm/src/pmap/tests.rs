//! Unit tests of `Stage2` and `Rmap` over the host simulations.

extern crate std;

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::stage2::vtcr_el2;
use super::*;
use crate::sim::{Event, EventLog, RecordingTlb, SimFrames, SimMem};

const TABLES: Pa = Pa(0x1000_0000);
const RW: Prot = Prot::READ.union(Prot::WRITE);
const P1: Pa = Pa(0x8000_0000);
const P2: Pa = Pa(0x8000_1000);
const IPA: Ipa = Ipa(0x4000_0000);

struct Fx {
    mem: Arc<SimMem>,
    tlb: Arc<RecordingTlb>,
    frames: Arc<SimFrames>,
    rmap: Arc<Rmap>,
    log: Arc<EventLog>,
}

impl Fx {
    fn new(table_frames: usize) -> Fx {
        let log = EventLog::new();
        let mem = Arc::new(SimMem::with_log(TABLES, table_frames, log.clone()));
        let frames = Arc::new(SimFrames::new(mem.clone(), TABLES, table_frames));
        Fx {
            mem,
            tlb: Arc::new(RecordingTlb::with_log(log.clone())),
            frames,
            // P1..P1+3 are indexed, the frames after them are not: both kinds of list are tested.
            rmap: Rmap::for_frames(P1, 3),
            log,
        }
    }
    fn stage2(&self, vmid: u16) -> Result<Arc<Stage2>, PmapError> {
        Stage2::new(
            self.mem.clone(),
            self.tlb.clone(),
            self.frames.clone(),
            self.rmap.clone(),
            Vmid(vmid),
        )
    }
    fn clean(&self) {
        assert_eq!(self.mem.bad_accesses(), 0);
        assert_eq!(self.frames.bad_frees(), 0);
    }
}

fn mappings(s2: &Stage2) -> Vec<(Ipa, Pa, Prot)> {
    let mut v = Vec::new();
    s2.for_each_mapping(|i, p, pr| v.push((i, p, pr)));
    v
}

#[test]
fn vtcr_el2_value() {
    assert_eq!(Stage2::VTCR_EL2, 0x8002_3558);
    // The design notes' working value (0x8002_3560) is the same configuration with a 32-bit IPA
    // space.
    let t0sz_mask = 0x3f;
    assert_eq!(
        (Stage2::VTCR_EL2 & !t0sz_mask) | vtcr_el2::t0sz(32),
        0x8002_3560
    );
}

#[test]
fn new_table_has_an_aligned_concatenated_root() {
    let fx = Fx::new(16);
    let s2 = fx.stage2(7).unwrap();
    assert_eq!(s2.root().0 % 0x2000, 0);
    assert_eq!(s2.vttbr(), 7 << 48 | s2.root().0);
    assert_eq!(s2.vmid(), Vmid(7));
    assert_eq!(
        (s2.resident(), s2.table_frames(), fx.frames.in_use()),
        (0, 0, 2)
    );
    drop(s2);
    assert_eq!(fx.frames.in_use(), 0);
    fx.clean();
}

#[test]
fn enter_extract_remove_round_trip() {
    let fx = Fx::new(16);
    let s2 = fx.stage2(1).unwrap();
    s2.enter(IPA, P1, RW, EnterFlags::empty()).unwrap();
    assert_eq!(s2.extract(IPA), Some((P1, RW)));
    assert_eq!(s2.extract(Ipa(IPA.0 + 0x1000)), None);
    assert_eq!(s2.descriptor(IPA).bits(), 0x0040_0000_8000_07ff);
    assert_eq!(
        (s2.resident(), s2.table_frames(), fx.frames.in_use()),
        (1, 2, 4)
    );
    assert_eq!(fx.rmap.mappings(P1), 1);
    assert_eq!(fx.rmap.mappings_of(P1), [(Vmid(1), IPA)]);
    assert_eq!(mappings(&s2), [(IPA, P1, RW)]);

    s2.remove(IPA, Ipa(IPA.0 + 0x1000));
    assert_eq!(s2.extract(IPA), None);
    assert_eq!(
        (s2.resident(), s2.table_frames(), fx.frames.in_use()),
        (0, 0, 2)
    );
    assert_eq!(fx.rmap.mappings(P1), 0);
    fx.clean();
}

#[test]
fn large_remove_batches_tlb_maintenance_and_releases_after_it() {
    let fx = Fx::new(16);
    let s2 = fx.stage2(3).unwrap();
    let pages = Stage2::BATCH_REMOVE_PAGES + 1;
    for p in 0..pages {
        let pa = Pa(P1.0 + p * PAGE_SIZE);
        s2.enter(Ipa(IPA.0 + p * PAGE_SIZE), pa, RW, EnterFlags::empty())
            .unwrap();
    }
    fx.tlb.clear();
    fx.log.clear();
    s2.remove(IPA, Ipa(IPA.0 + pages * PAGE_SIZE));
    // One whole-VM invalidation, after every descriptor was cleared, and no per-page ones.
    assert_eq!((fx.tlb.ipa_count(), fx.tlb.vm_count()), (0, 1));
    let events = fx.log.events();
    let inval = events
        .iter()
        .position(|e| matches!(e, Event::InvalidateVm { .. }))
        .unwrap();
    assert!(events[inval + 1..]
        .iter()
        .all(|e| !matches!(e, Event::Write { .. })));
    assert_eq!(s2.resident(), 0);
    assert_eq!((s2.table_frames(), fx.frames.in_use()), (0, 2));
    assert_eq!(fx.rmap.mappings(P1), 0);
    assert_eq!(fx.rmap.mappings(Pa(P1.0 + (pages - 1) * PAGE_SIZE)), 0);

    // A small remove still invalidates page by page.
    s2.enter(IPA, P1, RW, EnterFlags::empty()).unwrap();
    fx.tlb.clear();
    s2.remove(IPA, Ipa(IPA.0 + PAGE_SIZE));
    assert_eq!(fx.tlb.vm_count(), 0);
    assert!(fx.tlb.ipa_count() >= 1);
    fx.clean();
}

#[test]
fn tables_are_allocated_on_demand_and_shared() {
    let fx = Fx::new(32);
    let s2 = fx.stage2(1).unwrap();
    for i in 0..512 {
        s2.enter(IPA.add_pages(i), P1, Prot::READ, EnterFlags::empty())
            .unwrap();
    }
    assert_eq!(s2.table_frames(), 2, "one 2 MiB range: one L2 + one L3");
    s2.enter(Ipa(IPA.0 + (2 << 20)), P2, Prot::READ, EnterFlags::empty())
        .unwrap();
    assert_eq!(s2.table_frames(), 3, "next 2 MiB: a new L3");
    // Both ends of the 40-bit space.
    s2.enter(Ipa(0), P2, Prot::READ, EnterFlags::empty())
        .unwrap();
    s2.enter(Ipa((1 << 40) - 0x1000), P2, Prot::READ, EnterFlags::empty())
        .unwrap();
    assert_eq!(s2.table_frames(), 7);
    assert_eq!(s2.resident(), 515);
    assert_eq!(fx.rmap.mappings(P1), 512);
    let m = mappings(&s2);
    assert_eq!(m.len(), 515);
    assert_eq!(m[0], (Ipa(0), P2, Prot::READ));
    assert_eq!(m[514], (Ipa((1 << 40) - 0x1000), P2, Prot::READ));
    // Removing everything frees every table but the root.
    s2.remove(Ipa(0), Ipa(u64::MAX));
    assert_eq!(
        (s2.resident(), s2.table_frames(), fx.frames.in_use()),
        (0, 0, 2)
    );
    assert_eq!(fx.rmap.frames(), 0);
    fx.clean();
}

#[test]
fn the_walk_cache_forgets_unlinked_tables() {
    // `enter` remembers the last region's tables; after they are freed (remove) or retired
    // (clear), an enter in the same region must link new tables, not write into the old ones.
    let fx = Fx::new(32);
    let s2 = fx.stage2(1).unwrap();
    let next = IPA.add_pages(1);
    s2.enter(IPA, P1, RW, EnterFlags::empty()).unwrap();
    s2.remove(IPA, next);
    assert_eq!(s2.table_frames(), 0);
    s2.enter(next, P2, RW, EnterFlags::empty()).unwrap();
    assert_eq!(s2.extract(next), Some((P2, RW)), "reachable from the root");
    assert_eq!(s2.table_frames(), 2);

    assert!(s2.clear());
    s2.enter(IPA, P1, Prot::READ, EnterFlags::empty()).unwrap();
    assert_eq!(s2.extract(IPA), Some((P1, Prot::READ)));
    assert_eq!(s2.extract(next), None);
    assert_eq!(mappings(&s2), [(IPA, P1, Prot::READ)]);
    fx.clean();
}

#[test]
fn mapped_pages_agrees_with_extract_across_tables() {
    let fx = Fx::new(32);
    let s2 = fx.stage2(1).unwrap();
    // Three pages below a 2 MiB boundary and two above it (another level-3 table), with holes;
    // one more far away, out of the range asked.
    let below = Ipa(0x4020_0000 - 4 * 0x1000);
    for i in [0, 2, 3, 4, 6] {
        s2.enter(below.add_pages(i), P1, Prot::READ, EnterFlags::empty())
            .unwrap();
    }
    s2.enter(Ipa(0x8000_0000), P2, Prot::READ, EnterFlags::empty())
        .unwrap();
    let want = (0..16u64)
        .filter(|&i| s2.extract(below.add_pages(i)).is_some())
        .fold(0u32, |m, i| m | 1 << i);
    assert_eq!(want, 0b101_1101);
    assert_eq!(s2.mapped_pages(below, 16, false), want);
    assert_eq!(s2.mapped_pages(below.add_pages(2), 3, false), 0b111);
    // The same through the walk cache (the last enter was in the range's first table).
    s2.enter(below, P1, Prot::READ, EnterFlags::empty())
        .unwrap();
    assert_eq!(s2.mapped_pages(below, 16, false), want);
    // Nothing mapped there, and nothing past the IPA space.
    assert_eq!(s2.mapped_pages(Ipa(0x1_0000_0000), 16, false), 0);
    assert_eq!(s2.mapped_pages(Ipa((1 << 40) - 0x1000), 16, false), 0);
    // All young so far; once page 2's access flag is cleared (P1's other mappings too), only
    // the leaves still young count when asked for them.
    assert_eq!(s2.mapped_pages(below, 16, true), want);
    s2.enter(below.add_pages(2), P2, Prot::READ, EnterFlags::empty())
        .unwrap();
    assert!(fx.rmap.clear_reference(P2));
    assert_eq!(s2.mapped_pages(below, 16, false), want);
    assert_eq!(s2.mapped_pages(below, 16, true), want & !(1 << 2));
    fx.clean();
}

#[test]
fn no_tlb_invalidation_for_invalid_to_valid() {
    let fx = Fx::new(16);
    let s2 = fx.stage2(1).unwrap();
    for i in 0..8 {
        s2.enter(IPA.add_pages(i), P1, Prot::ALL, EnterFlags::empty())
            .unwrap();
    }
    s2.enter(IPA, P1, Prot::ALL, EnterFlags::empty()).unwrap(); // identical: no-op
    assert!(fx.tlb.ops().is_empty());
}

#[test]
fn break_before_make_on_output_address_change() {
    let fx = Fx::new(16);
    let s2 = fx.stage2(3).unwrap();
    s2.enter(IPA, P1, Prot::READ, EnterFlags::empty()).unwrap();
    let old = s2.descriptor(IPA);
    fx.log.clear();
    s2.enter(IPA, P2, RW, EnterFlags::empty()).unwrap();
    let new = s2.descriptor(IPA);
    assert_ne!(old, new);
    let ev = fx.log.events();
    let [Event::Write { pa: slot, value: 0 }, Event::InvalidateIpa {
        vmid: Vmid(3),
        ipa: IPA,
    }, Event::Write { pa: slot2, value }] = ev[..]
    else {
        panic!("expected invalid write, TLBI, new write: {ev:?}");
    };
    assert_eq!((slot, value), (slot2, new.bits()));
    assert_eq!(fx.rmap.mappings(P1), 0);
    assert_eq!(fx.rmap.mappings(P2), 1);
    assert_eq!(s2.resident(), 1);
}

#[test]
fn permission_changes_write_in_place_then_invalidate() {
    let fx = Fx::new(16);
    let s2 = fx.stage2(1).unwrap();
    s2.enter(IPA, P1, Prot::READ, EnterFlags::empty()).unwrap();
    fx.log.clear();
    s2.enter(IPA, P1, RW, EnterFlags::empty()).unwrap(); // upgrade, e.g. after a write fault
    let rw = s2.descriptor(IPA).bits();
    assert_eq!(
        fx.log.events(),
        [
            write_of(&fx, &s2, rw),
            Event::InvalidateIpa {
                vmid: Vmid(1),
                ipa: IPA
            }
        ]
    );
    fx.log.clear();
    s2.protect(IPA, Ipa(IPA.0 + 0x1000), Prot::READ | Prot::EXEC);
    let ro = s2.descriptor(IPA).bits();
    assert_eq!(
        ro, 0x0040_0000_8000_077f,
        "protect only lowers: EXEC was not granted"
    );
    assert_eq!(
        fx.log.events(),
        [
            write_of(&fx, &s2, ro),
            Event::InvalidateIpa {
                vmid: Vmid(1),
                ipa: IPA
            }
        ]
    );
    // Protecting to what is already there changes nothing.
    fx.log.clear();
    s2.protect(Ipa(0), Ipa(u64::MAX), Prot::ALL);
    assert!(fx.log.events().is_empty());
}

/// The `Write` event of `value` into `ipa`'s slot (found from the log itself).
fn write_of(fx: &Fx, _s2: &Stage2, value: u64) -> Event {
    let ev = fx.log.events();
    let pa = ev
        .iter()
        .find_map(|e| match *e {
            Event::Write { pa, value: v } if v == value => Some(pa),
            _ => None,
        })
        .unwrap_or(Pa(0));
    Event::Write { pa, value }
}

#[test]
fn protect_none_removes_and_holes_are_skipped() {
    let fx = Fx::new(16);
    let s2 = fx.stage2(1).unwrap();
    s2.enter(IPA, P1, RW, EnterFlags::empty()).unwrap();
    s2.enter(IPA.add_pages(2), P2, RW, EnterFlags::empty())
        .unwrap();
    s2.protect(Ipa(0), Ipa(IPA.0 + 0x2000), Prot::NONE);
    assert_eq!(mappings(&s2), [(IPA.add_pages(2), P2, RW)]);
    s2.protect(IPA, Ipa(u64::MAX), Prot::EXEC);
    assert_eq!(s2.extract(IPA.add_pages(2)), None, "RW ∩ X is nothing");
    assert_eq!(fx.frames.in_use(), 2);
    fx.clean();
}

/// Engine bug 2 (`vm/tests/engine_bugs.rs`): `protect` leaving a wired leaf nothing keeps it as
/// a valid no-access descriptor (so unwire still finds the page); `unwire` then removes it;
/// `page_protect` removes a wired leaf like any other and reports it.
#[test]
fn protect_none_keeps_a_wired_leaf_until_unwired() {
    let fx = Fx::new(16);
    let s2 = fx.stage2(1).unwrap();
    s2.enter(IPA, P1, RW, EnterFlags::WIRED).unwrap();
    s2.enter(IPA.add_pages(1), P2, Prot::READ, EnterFlags::WIRED)
        .unwrap();
    s2.protect(IPA, IPA.add_pages(1), Prot::NONE);
    s2.protect(IPA.add_pages(1), IPA.add_pages(2), Prot::EXEC); // R ∩ X = nothing
    for (ipa, pa) in [(IPA, P1), (IPA.add_pages(1), P2)] {
        assert_eq!(s2.extract(ipa), Some((pa, Prot::NONE)));
        let d = s2.descriptor(ipa);
        assert!(d.is_valid() && s2.is_wired(ipa));
        assert_eq!(d.attributes().prot(), Prot::NONE, "S2AP = 00 and XN");
    }
    assert_eq!((s2.resident(), s2.wired()), (2, 2));
    assert_eq!(s2.unwire_leaf(IPA), Some(P1));
    assert_eq!(s2.extract(IPA), None, "kept only for its wiring");
    assert_eq!(s2.unwire_leaf(IPA), None);
    assert_eq!(fx.rmap.page_protect_wired(P2, Prot::NONE), 1);
    assert_eq!(s2.extract(IPA.add_pages(1)), None);
    assert_eq!((s2.resident(), s2.wired()), (0, 0));
    fx.clean();
}

#[test]
fn enter_with_no_protection_removes() {
    let fx = Fx::new(16);
    let s2 = fx.stage2(1).unwrap();
    s2.enter(IPA, P1, RW, EnterFlags::empty()).unwrap();
    s2.enter(IPA, P1, Prot::NONE, EnterFlags::empty()).unwrap();
    assert_eq!(s2.extract(IPA), None);
    assert_eq!(fx.rmap.mappings(P1), 0);
}

#[test]
fn out_of_range_inputs_are_errors() {
    let fx = Fx::new(16);
    let s2 = fx.stage2(1).unwrap();
    let e = EnterFlags::empty();
    assert_eq!(
        s2.enter(Ipa(1 << 40), P1, RW, e),
        Err(PmapError::OutOfRange)
    );
    assert_eq!(s2.enter(Ipa(!0xfff), P1, RW, e), Err(PmapError::OutOfRange));
    assert_eq!(
        s2.enter(Ipa(IPA.0 + 8), P1, RW, e),
        Err(PmapError::OutOfRange)
    );
    assert_eq!(
        s2.enter(IPA, Pa(P1.0 + 8), RW, e),
        Err(PmapError::OutOfRange)
    );
    assert_eq!(
        s2.enter(IPA, Pa(1 << 40), RW, e),
        Err(PmapError::OutOfRange)
    );
    assert_eq!(s2.extract(Ipa(u64::MAX)), None);
    s2.remove(Ipa(u64::MAX - 5), Ipa(u64::MAX));
    s2.protect(Ipa(1 << 40), Ipa(u64::MAX), Prot::NONE);
    s2.unwire(Ipa(u64::MAX));
    assert!(!s2.clear_access(Ipa(u64::MAX)));
    assert_eq!((s2.resident(), fx.frames.in_use()), (0, 2));
    fx.clean();
}

#[test]
fn out_of_table_frames() {
    let fx = Fx::new(1);
    assert_eq!(
        fx.stage2(1).err(),
        Some(PmapError::NoMemory),
        "no room for the root"
    );
    let fx = Fx::new(3); // root + one table
    let s2 = fx.stage2(1).unwrap();
    assert_eq!(
        s2.enter(IPA, P1, RW, EnterFlags::CANFAIL),
        Err(PmapError::NoMemory)
    );
    assert_eq!(
        (s2.resident(), s2.table_frames(), fx.frames.in_use()),
        (0, 0, 2),
        "L2 given back"
    );
    assert_eq!(fx.rmap.mappings(P1), 0);
    fx.clean();
}

#[test]
fn wired_mappings_are_counted() {
    let fx = Fx::new(16);
    let s2 = fx.stage2(1).unwrap();
    s2.enter(IPA, P1, RW, EnterFlags::WIRED).unwrap();
    s2.enter(IPA.add_pages(1), P1, RW, EnterFlags::empty())
        .unwrap();
    assert_eq!(s2.wired(), 1);
    assert!(s2.is_wired(IPA));
    assert!(s2
        .descriptor(IPA)
        .attributes()
        .contains(Stage2Attributes::SW_WIRED));
    fx.tlb.clear();
    s2.unwire(IPA);
    assert_eq!(s2.wired(), 0);
    assert!(!s2.is_wired(IPA));
    assert!(fx.tlb.ops().is_empty(), "software bit: no TLBI");
    assert_eq!(s2.extract(IPA), Some((P1, RW)));
    s2.enter(IPA, P1, RW, EnterFlags::WIRED).unwrap();
    assert_eq!(s2.wired(), 1);
    s2.remove(Ipa(0), Ipa(1 << 40));
    assert_eq!(s2.wired(), 0);
}

#[test]
fn access_flag_test_and_clear() {
    let fx = Fx::new(16);
    let s2 = fx.stage2(1).unwrap();
    s2.enter(IPA, P1, RW, EnterFlags::empty()).unwrap();
    assert!(s2.clear_access(IPA));
    assert!(!s2
        .descriptor(IPA)
        .attributes()
        .contains(Stage2Attributes::AF));
    // Aging is lazy: no invalidation (`Stage2::clear_access_flag`).
    assert!(fx.tlb.ops().is_empty());
    assert!(!s2.clear_access(IPA));
    assert_eq!(
        s2.extract(IPA),
        Some((P1, RW)),
        "still mapped, faults on access"
    );
    s2.enter(IPA, P1, RW, EnterFlags::empty()).unwrap();
    assert!(s2
        .descriptor(IPA)
        .attributes()
        .contains(Stage2Attributes::AF));
}

#[test]
fn clear_retires_tables_whole_and_they_are_reused_after_the_invalidation() {
    let fx = Fx::new(32);
    let s2 = fx.stage2(1).unwrap();
    for i in 0..4u64 {
        s2.enter(Ipa(i << 30), P1, RW, EnterFlags::empty()).unwrap();
    }
    assert_eq!((s2.table_frames(), fx.frames.in_use()), (8, 10));
    let free = fx.frames.free_frames();
    fx.log.clear();
    assert!(s2.clear());
    // Nothing freed one by one: the eight frames are one retired set, counted free.
    assert_eq!(fx.frames.retired(), 8);
    assert_eq!(fx.frames.free_frames(), free + 8);
    assert_eq!((s2.table_frames(), fx.frames.in_use()), (0, 2));
    // The invalidation came before any reuse: the last event of the clear is the TLBI.
    assert_eq!(
        fx.log.events().last(),
        Some(&Event::InvalidateVm { vmid: Vmid(1) })
    );
    // New tables come from the retired set first, re-zeroed.
    s2.enter(IPA, P2, RW, EnterFlags::empty()).unwrap();
    assert_eq!((fx.frames.retired(), fx.frames.in_use()), (6, 4));
    assert_eq!(mappings(&s2), [(IPA, P2, RW)]);
    assert_eq!(fx.rmap.mappings(P1), 0);
    drop(s2);
    assert_eq!((fx.frames.in_use(), fx.rmap.frames()), (0, 0));
    fx.clean();
}

#[test]
fn a_root_allocation_drains_the_retired_tables() {
    // Ten frames: a root and eight tables, one frame left; after the clear only the retired
    // frames can make a second root.
    let fx = Fx::new(10);
    let a = fx.stage2(1).unwrap();
    for i in 0..4u64 {
        a.enter(Ipa(i << 30), P1, RW, EnterFlags::empty()).unwrap();
    }
    assert_eq!(fx.frames.in_use(), 10);
    assert_eq!(fx.stage2(2).unwrap_err(), PmapError::NoMemory);
    assert!(a.clear());
    assert_eq!(fx.frames.retired(), 8);
    let b = fx.stage2(2).unwrap();
    assert_eq!((fx.frames.retired(), fx.frames.in_use()), (0, 4));
    drop((a, b));
    assert_eq!(fx.frames.in_use(), 0);
    fx.clean();
}

#[test]
fn drop_frees_tables_and_forgets_mappings() {
    let fx = Fx::new(32);
    let a = fx.stage2(1).unwrap();
    let b = fx.stage2(2).unwrap();
    for i in 0..4u64 {
        a.enter(Ipa(i << 30), P1, RW, EnterFlags::empty()).unwrap();
        b.enter(Ipa(i << 30), P1, RW, EnterFlags::empty()).unwrap();
    }
    assert_eq!(fx.rmap.mappings(P1), 8);
    drop(b);
    assert_eq!(fx.rmap.mappings(P1), 4);
    assert!(fx.rmap.mappings_of(P1).iter().all(|&(v, _)| v == Vmid(1)));
    assert_eq!(fx.tlb.vm_invalidations(), [Vmid(2)]);
    assert_eq!(fx.frames.in_use(), 2 + 8);
    drop(a);
    assert_eq!((fx.frames.in_use(), fx.rmap.frames()), (0, 0));
    fx.clean();
}

#[test]
fn rmap_page_protect_across_two_vms() {
    let fx = Fx::new(32);
    let a = fx.stage2(1).unwrap();
    let b = fx.stage2(2).unwrap();
    let ib = Ipa(0x9000_0000);
    a.enter(IPA, P1, Prot::ALL, EnterFlags::empty()).unwrap();
    b.enter(ib, P1, RW, EnterFlags::empty()).unwrap();
    b.enter(ib.add_pages(1), P2, RW, EnterFlags::empty())
        .unwrap();
    assert_eq!(fx.rmap.mappings(P1), 2);

    fx.rmap.page_protect(P1, Prot::READ | Prot::EXEC);
    assert_eq!(a.extract(IPA), Some((P1, Prot::READ | Prot::EXEC)));
    assert_eq!(b.extract(ib), Some((P1, Prot::READ)));
    assert_eq!(
        b.extract(ib.add_pages(1)),
        Some((P2, RW)),
        "other frames untouched"
    );
    let mut inv = fx.tlb.invalidations();
    inv.sort();
    assert_eq!(inv, [(Vmid(1), IPA), (Vmid(2), ib)]);

    fx.rmap.page_protect(P1, Prot::NONE);
    assert_eq!((a.extract(IPA), b.extract(ib)), (None, None));
    assert_eq!(fx.rmap.mappings(P1), 0);
    assert_eq!((a.resident(), b.resident()), (0, 1));
    assert_eq!(a.table_frames(), 0, "emptied tables freed");
    fx.clean();
}

#[test]
fn rmap_reference_bits() {
    let fx = Fx::new(32);
    let a = fx.stage2(1).unwrap();
    let b = fx.stage2(2).unwrap();
    a.enter(IPA, P1, RW, EnterFlags::empty()).unwrap();
    b.enter(IPA, P1, Prot::READ, EnterFlags::empty()).unwrap();
    assert!(fx.rmap.is_referenced(P1));
    assert!(fx.rmap.clear_reference(P1));
    assert!(!fx.rmap.is_referenced(P1));
    assert!(!fx.rmap.clear_reference(P1));
    b.enter(IPA, P1, Prot::READ, EnterFlags::empty()).unwrap(); // the access-flag fault path
    assert!(fx.rmap.is_referenced(P1));
    assert!(!fx.rmap.is_referenced(P2));
    assert_eq!(fx.rmap.mappings(P1), 2);
}

#[test]
fn rmap_ignores_stale_entries() {
    // page_protect of a frame no longer mapped at a recorded IPA must not touch the new mapping.
    let fx = Fx::new(16);
    let a = fx.stage2(1).unwrap();
    a.enter(IPA, P1, RW, EnterFlags::empty()).unwrap();
    a.enter(IPA, P2, RW, EnterFlags::empty()).unwrap();
    fx.rmap.page_protect(P1, Prot::NONE);
    assert_eq!(a.extract(IPA), Some((P2, RW)));
}

#[test]
fn a_table_at_a_dropped_tables_number_does_not_revive_its_entries() {
    // Entries name tables by number (reused) and generation (never reused).
    let fx = Fx::new(16);
    let a = fx.stage2(1).unwrap();
    a.enter(IPA, P1, RW, EnterFlags::empty()).unwrap();
    drop(a); // its entry for P1 stays in the list, stale
    let b = fx.stage2(2).unwrap(); // the same number as `a`
    assert_eq!(fx.rmap.mappings(P1), 0);
    b.enter(Ipa(IPA.0 + 0x1000), P1, RW, EnterFlags::empty())
        .unwrap();
    assert_eq!(fx.rmap.mappings_of(P1), [(Vmid(2), Ipa(IPA.0 + 0x1000))]);
    fx.rmap.page_protect(P1, Prot::READ);
    assert_eq!(b.extract(Ipa(IPA.0 + 0x1000)), Some((P1, Prot::READ)));
    assert_eq!(b.extract(IPA), None);
    // A cleared table's entries are stale too, and pruned.
    assert!(b.clear());
    assert_eq!(fx.rmap.mappings(P1), 0);
    assert_eq!(fx.rmap.frames(), 0);
    fx.clean();
}

#[test]
fn concurrent_enter_and_page_protect() {
    use std::thread;
    let fx = Fx::new(64);
    let vms: Vec<_> = (1..=2).map(|v| fx.stage2(v).unwrap()).collect();
    let rounds = 2000;
    thread::scope(|s| {
        for (t, vm) in vms.iter().enumerate() {
            let vm = vm.clone();
            s.spawn(move || {
                for r in 0..rounds {
                    let ipa = IPA.add_pages(((r * 7 + t) % 1024) as u64);
                    let pa = if r % 3 == 0 { P2 } else { P1 };
                    vm.enter(ipa, pa, RW, EnterFlags::empty()).unwrap();
                    if r % 5 == 0 {
                        vm.remove(ipa, Ipa(ipa.0 + 0x1000));
                    }
                    if r % 11 == 0 {
                        vm.protect(IPA, Ipa(IPA.0 + (4 << 20)), Prot::READ);
                    }
                }
            });
        }
        let rmap = fx.rmap.clone();
        s.spawn(move || {
            for r in 0..rounds {
                let prot = if r % 2 == 0 { Prot::NONE } else { Prot::READ };
                rmap.page_protect(P1, prot);
                rmap.clear_reference(P2);
                rmap.page_protect(P2, Prot::READ);
            }
        });
    });
    // The rmap is exact: it lists precisely the mappings the tables hold.
    for pa in [P1, P2] {
        let mut listed = fx.rmap.mappings_of(pa);
        listed.sort();
        let mut actual = Vec::new();
        for vm in &vms {
            vm.for_each_mapping(|ipa, p, _| {
                if p == pa {
                    actual.push((vm.vmid(), ipa));
                }
            });
        }
        actual.sort();
        assert_eq!(listed, actual, "{pa:?}");
    }
    for vm in &vms {
        assert_eq!(vm.resident(), mappings(vm).len());
    }
    drop(vms);
    assert_eq!((fx.frames.in_use(), fx.rmap.frames()), (0, 0));
    fx.clean();
}

#[test]
fn concurrent_drop_and_page_protect() {
    use std::thread;
    let fx = Fx::new(64);
    thread::scope(|s| {
        let fx = &fx;
        s.spawn(move || {
            for r in 0..300u64 {
                let vm = fx.stage2(1 + (r % 200) as u16).unwrap();
                for i in 0..8 {
                    vm.enter(IPA.add_pages(i * 3), P1, RW, EnterFlags::empty())
                        .unwrap();
                }
                drop(vm); // races with page_protect holding an upgraded reference
            }
        });
        s.spawn(move || {
            for r in 0..3000 {
                fx.rmap
                    .page_protect(P1, if r % 2 == 0 { Prot::READ } else { Prot::NONE });
                fx.rmap.clear_reference(P1);
            }
        });
    });
    assert_eq!((fx.frames.in_use(), fx.rmap.frames()), (0, 0));
    fx.clean();
}

#[test]
fn provided_alloc_root_finds_an_aligned_pair() {
    /// A `TableFrames` without its own `alloc_root`, handing out ascending frames from 0x1000.
    struct Plain(spin::Mutex<(u64, Vec<Pa>)>);
    impl TableFrames for Plain {
        fn alloc_table(&self) -> Option<Pa> {
            let mut g = self.0.lock();
            if let Some(f) = g.1.pop() {
                return Some(f);
            }
            g.0 += 0x1000;
            (g.0 <= 0x10_000).then_some(Pa(g.0))
        }
        fn free_table(&self, frame: Pa) {
            self.0.lock().1.push(frame);
        }
    }
    let p = Plain(spin::Mutex::new((0, Vec::new())));
    assert_eq!(p.alloc_root(), Some(Pa(0x2000)));
    assert_eq!(p.0.lock().1, [Pa(0x1000)], "the unaligned frame went back");
    assert_eq!(p.alloc_table(), Some(Pa(0x1000)));
    let mem = Arc::new(SimMem::new(Pa(0), 0x11));
    let fx_tlb = Arc::new(RecordingTlb::new());
    let s2 = Stage2::new(mem.clone(), fx_tlb, Arc::new(p), Rmap::new(), Vmid(1)).unwrap();
    assert_eq!(s2.root(), Pa(0x4000));
    s2.enter(IPA, P1, RW, EnterFlags::empty()).unwrap();
    assert_eq!(s2.extract(IPA), Some((P1, RW)));
    assert_eq!(mem.bad_accesses(), 0);
}

mod model {
    //! Random operation sequences on two `Stage2`s sharing an `Rmap`, checked after every step
    //! against a plain map of (VM, IPA) → (frame, prot, wired, accessed).

    use super::*;
    use alloc::collections::{BTreeMap, BTreeSet};
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Enter {
            vm: usize,
            page: u64,
            frame: u64,
            prot: u8,
            wired: bool,
        },
        Remove {
            vm: usize,
            page: u64,
            n: u64,
        },
        Protect {
            vm: usize,
            page: u64,
            n: u64,
            prot: u8,
        },
        Unwire {
            vm: usize,
            page: u64,
        },
        ClearAccess {
            vm: usize,
            page: u64,
        },
        PageProtect {
            frame: u64,
            prot: u8,
        },
        ClearReference {
            frame: u64,
        },
        /// `Stage2::clear`: everything unmapped at once (refused while a leaf is wired); the
        /// rmap entries go stale and must never be counted or acted on again.
        Clear {
            vm: usize,
        },
    }

    /// Pages spread over four 1 GiB regions, two 2 MiB tables each.
    fn ipa(page: u64) -> u64 {
        ((page / 1024) << 30) | ((page % 1024) << 12)
    }
    fn frame(f: u64) -> Pa {
        Pa(0x8000_0000 + f * 0x1000)
    }
    fn norm(p: Prot) -> Prot {
        if p.contains(Prot::WRITE) {
            p | Prot::READ
        } else {
            p
        }
    }

    fn op() -> impl Strategy<Value = Op> {
        let page = 0u64..4096;
        prop_oneof![
            4 => (0..2usize, page.clone(), 0u64..6, 0u8..8, any::<bool>())
                .prop_map(|(vm, page, frame, prot, wired)| Op::Enter { vm, page, frame, prot, wired }),
            1 => (0..2usize, page.clone(), 1u64..1500)
                .prop_map(|(vm, page, n)| Op::Remove { vm, page, n }),
            1 => (0..2usize, page.clone(), 1u64..1500, 0u8..8)
                .prop_map(|(vm, page, n, prot)| Op::Protect { vm, page, n, prot }),
            1 => (0..2usize, page.clone()).prop_map(|(vm, page)| Op::Unwire { vm, page }),
            1 => (0..2usize, page).prop_map(|(vm, page)| Op::ClearAccess { vm, page }),
            1 => (0u64..6, 0u8..8).prop_map(|(frame, prot)| Op::PageProtect { frame, prot }),
            1 => (0u64..6).prop_map(|frame| Op::ClearReference { frame }),
            1 => (0..2usize).prop_map(|vm| Op::Clear { vm }),
        ]
    }

    #[derive(Clone, Copy, PartialEq, Debug)]
    struct M {
        pa: Pa,
        prot: Prot,
        wired: bool,
        af: bool,
    }
    type Model = BTreeMap<(usize, u64), M>;

    /// `keep_wired`: `Pmap::protect` keeps a wired leaf left with nothing as a no-access leaf;
    /// `page_protect` removes it.
    fn lower(model: &mut Model, key: (usize, u64), prot: Prot, keep_wired: bool) {
        if let Some(m) = model.get_mut(&key) {
            let p = norm(m.prot & prot);
            if p.is_empty() && !(m.wired && keep_wired) {
                model.remove(&key);
            } else {
                m.prot = p;
            }
        }
    }

    fn check(fx: &Fx, vms: &[Arc<Stage2>], model: &Model) {
        let mut frames_in_use = 0;
        for (v, s2) in vms.iter().enumerate() {
            let want: Vec<_> = model
                .iter()
                .filter(|((vm, _), _)| *vm == v)
                .map(|(&(_, i), m)| (Ipa(i), m.pa, m.prot))
                .collect();
            assert_eq!(mappings(s2), want, "vm {v}");
            assert_eq!(s2.resident(), want.len());
            let wired = model
                .iter()
                .filter(|((vm, _), m)| *vm == v && m.wired)
                .count();
            assert_eq!(s2.wired(), wired);
            for (&(_, i), m) in model.iter().filter(|((vm, _), _)| *vm == v) {
                let a = s2.descriptor(Ipa(i)).attributes();
                assert_eq!(a.contains(Stage2Attributes::AF), m.af);
                assert_eq!(a.contains(Stage2Attributes::SW_WIRED), m.wired);
            }
            let l2: BTreeSet<_> = want.iter().map(|(i, ..)| i.0 >> 30).collect();
            let l3: BTreeSet<_> = want.iter().map(|(i, ..)| i.0 >> 21).collect();
            assert_eq!(s2.table_frames(), l2.len() + l3.len(), "vm {v} tables");
            frames_in_use += 2 + l2.len() + l3.len();
        }
        assert_eq!(fx.frames.in_use(), frames_in_use);
        for f in 0..6 {
            let n = model.values().filter(|m| m.pa == frame(f)).count();
            assert_eq!(fx.rmap.mappings(frame(f)), n, "frame {f}");
        }
        fx.clean();
    }

    fn run(ops: &[Op]) {
        let fx = Fx::new(64);
        let vms = [fx.stage2(1).unwrap(), fx.stage2(2).unwrap()];
        let mut model = Model::new();
        for op in ops {
            match *op {
                Op::Enter {
                    vm,
                    page,
                    frame: f,
                    prot,
                    wired,
                } => {
                    let prot = Prot::from_bits_truncate(prot);
                    let flags = if wired {
                        EnterFlags::WIRED
                    } else {
                        EnterFlags::empty()
                    };
                    vms[vm]
                        .enter(Ipa(ipa(page)), frame(f), prot, flags)
                        .unwrap();
                    if prot.is_empty() && !wired {
                        model.remove(&(vm, ipa(page)));
                    } else {
                        let m = M {
                            pa: frame(f),
                            prot: norm(prot),
                            wired,
                            af: true,
                        };
                        model.insert((vm, ipa(page)), m);
                    }
                }
                Op::Remove { vm, page, n } => {
                    vms[vm].remove(Ipa(ipa(page)), Ipa(ipa(page) + n * 0x1000));
                    model.retain(|&(v, i), _| {
                        v != vm || i < ipa(page) || i >= ipa(page) + n * 0x1000
                    });
                }
                Op::Protect { vm, page, n, prot } => {
                    let prot = Prot::from_bits_truncate(prot);
                    let (s, e) = (ipa(page), ipa(page) + n * 0x1000);
                    vms[vm].protect(Ipa(s), Ipa(e), prot);
                    let keys: Vec<_> = model.range((vm, s)..(vm, e)).map(|(k, _)| *k).collect();
                    for k in keys {
                        lower(&mut model, k, prot, true);
                    }
                }
                Op::Unwire { vm, page } => {
                    vms[vm].unwire(Ipa(ipa(page)));
                    if let Some(m) = model.get_mut(&(vm, ipa(page))) {
                        m.wired = false;
                        if m.prot.is_empty() {
                            // Kept only for its wiring.
                            model.remove(&(vm, ipa(page)));
                        }
                    }
                }
                Op::ClearAccess { vm, page } => {
                    let was = vms[vm].clear_access(Ipa(ipa(page)));
                    let m = model.get_mut(&(vm, ipa(page)));
                    assert_eq!(was, m.as_ref().is_some_and(|m| m.af));
                    if let Some(m) = m {
                        m.af = false;
                    }
                }
                Op::PageProtect { frame: f, prot } => {
                    let prot = Prot::from_bits_truncate(prot);
                    fx.rmap.page_protect(frame(f), prot);
                    let keys: Vec<_> = model
                        .iter()
                        .filter(|(_, m)| m.pa == frame(f))
                        .map(|(k, _)| *k)
                        .collect();
                    for k in keys {
                        lower(&mut model, k, prot, false);
                    }
                }
                Op::Clear { vm } => {
                    let wired = model.iter().any(|(&(v, _), m)| v == vm && m.wired);
                    let tables = vms[vm].table_frames();
                    let retired = fx.frames.retired();
                    assert_eq!(vms[vm].clear(), !wired);
                    if !wired {
                        model.retain(|&(v, _), _| v != vm);
                        // Every table frame retired as one set, none freed one by one.
                        assert_eq!(fx.frames.retired(), retired + tables);
                    } else {
                        assert_eq!(fx.frames.retired(), retired);
                    }
                }
                Op::ClearReference { frame: f } => {
                    let any = fx.rmap.clear_reference(frame(f));
                    let mut want = false;
                    for m in model.values_mut().filter(|m| m.pa == frame(f)) {
                        want |= m.af;
                        m.af = false;
                    }
                    assert_eq!(any, want);
                }
            }
            check(&fx, &vms, &model);
        }
        drop(vms);
        assert_eq!((fx.frames.in_use(), fx.rmap.frames()), (0, 0));
        fx.clean();
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
        #[test]
        fn stage2_and_rmap_agree_with_the_model(ops in proptest::collection::vec(op(), 1..160)) {
            run(&ops);
        }
    }
}

#[path = "batch_tests.rs"]
mod batch_tests;
