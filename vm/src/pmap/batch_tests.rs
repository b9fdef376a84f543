//! Unit tests of lazy aging and of `TlbBatch` (`pmap/batch.rs`, `stage2/owed.rs`): the TLB
//! maintenance they issue, and in what order against the descriptor writes.

use alloc::vec::Vec;

use super::*;
use crate::sim::TlbOp;

/// Page `i` from `IPA`.
fn ipa(i: u64) -> Ipa {
    Ipa(IPA.0 + i * PAGE_SIZE)
}

/// Frame `i` from `P1` (the first three are in the rmap's index, the others are not).
fn frame(i: u64) -> Pa {
    Pa(P1.0 + i * PAGE_SIZE)
}

/// Map page 100 of `s2` to frame 9: keeps the level-3 table of the pages under test, whose
/// release (when its last leaf goes) would invalidate at once.
fn keep_tables(s2: &Stage2) {
    s2.enter(ipa(100), frame(9), RW, EnterFlags::empty())
        .unwrap();
}

/// Clearing the reference bit of every mapping of a frame issues no TLBI; setting it again (the
/// access-flag fault) neither; a later write protection of the old mapping does, and so does
/// raising its permission: a TLB may still hold it as it was before aging.
#[test]
fn aging_issues_no_tlbi_but_later_changes_of_an_old_mapping_do() {
    let fx = Fx::new(32);
    let a = fx.stage2(1).unwrap();
    let b = fx.stage2(2).unwrap();
    a.enter(IPA, P1, RW, EnterFlags::empty()).unwrap();
    b.enter(IPA, P1, RW, EnterFlags::empty()).unwrap();
    fx.tlb.clear();
    assert!(fx.rmap.clear_reference(P1));
    assert!(!fx.rmap.is_referenced(P1));
    assert!(!a.clear_access(ipa(0)), "already old");
    assert!(fx.tlb.ops().is_empty(), "aging: {:?}", fx.tlb.ops());
    // The access-flag fault's re-entry sets AF again, with the same permissions: no TLBI.
    a.enter(IPA, P1, RW, EnterFlags::empty()).unwrap();
    assert!(fx.tlb.ops().is_empty());
    // An old (AF = 0) mapping lowered to read-only: its stale writable entry must go.
    fx.log.clear();
    b.protect(IPA, ipa(1), Prot::READ);
    let ro = b.descriptor(IPA);
    assert!(!ro.attributes().contains(Stage2Attributes::AF));
    assert_eq!(
        fx.log.events(),
        [
            write_of(&fx, &b, ro.bits()),
            Event::InvalidateIpa {
                vmid: Vmid(2),
                ipa: IPA
            }
        ]
    );
    // Raised again on a write fault: the stale read-only entry would fault forever.
    fx.tlb.clear();
    b.enter(IPA, P1, RW, EnterFlags::empty()).unwrap();
    assert_eq!(fx.tlb.ops(), [TlbOp::Ipa(Vmid(2), IPA)]);
    fx.clean();
}

/// Unmapping a frame's mappings into a batch writes the invalid descriptors and forgets the
/// rmap entries at once, issues no TLBI until the flush, then one per IPA for one or two pages
/// of a VM and one `invalidate_vm` for more; each table forgets what it was owed.
#[test]
fn a_batch_invalidates_once_per_vm_at_its_flush() {
    let fx = Fx::new(32);
    let a = fx.stage2(1).unwrap();
    let b = fx.stage2(2).unwrap();
    for i in 0..4 {
        a.enter(ipa(i), frame(i), RW, EnterFlags::empty()).unwrap();
    }
    b.enter(ipa(7), frame(0), RW, EnterFlags::empty()).unwrap();
    keep_tables(&a);
    keep_tables(&b);
    fx.tlb.clear();
    let mut batch = TlbBatch::new();
    let mut wired = 0;
    for i in 0..4 {
        wired += fx.rmap.page_protect_batched(frame(i), Prot::NONE, &mut batch);
    }
    assert_eq!(wired, 0);
    assert!(fx.tlb.ops().is_empty(), "nothing before the flush");
    assert_eq!(batch.pages(), 5);
    assert_eq!((a.resident(), b.resident()), (1, 1));
    assert_eq!(fx.rmap.mappings(frame(0)), 0, "the rmap is exact at once");
    assert_eq!((a.owed_invalidations(), b.owed_invalidations()), (4, 1));
    batch.flush();
    let mut ops = fx.tlb.ops();
    ops.sort_by_key(|op| match op {
        TlbOp::Vm(v) | TlbOp::Ipa(v, _) => v.0,
    });
    assert_eq!(ops, [TlbOp::Vm(Vmid(1)), TlbOp::Ipa(Vmid(2), ipa(7))]);
    assert!(batch.is_empty());
    assert_eq!((a.owed_invalidations(), b.owed_invalidations()), (0, 0));
    // A flushed batch owes nothing: a second flush is free.
    fx.tlb.clear();
    batch.flush();
    assert!(fx.tlb.ops().is_empty());
    fx.clean();
}

/// A mapping entered at an IPA a batch still owes is preceded by that IPA's invalidation (no
/// vCPU may see the new frame while another still reaches the old one); the batch's later flush
/// does not make the table forget a debt it owes a newer batch at the same IPA.
#[test]
fn entering_at_an_owed_ipa_invalidates_it_first() {
    let fx = Fx::new(32);
    let s2 = fx.stage2(1).unwrap();
    s2.enter(IPA, P1, RW, EnterFlags::empty()).unwrap();
    keep_tables(&s2);
    let mut first = TlbBatch::new();
    fx.rmap.page_protect_batched(P1, Prot::NONE, &mut first);
    fx.log.clear();
    s2.enter(IPA, P2, RW, EnterFlags::empty()).unwrap();
    let new = s2.descriptor(IPA).bits();
    assert_eq!(
        fx.log.events(),
        [
            Event::InvalidateIpa {
                vmid: Vmid(1),
                ipa: IPA
            },
            write_of(&fx, &s2, new),
        ],
        "the invalidation comes before the new descriptor"
    );
    assert_eq!(s2.owed_invalidations(), 0);
    // A newer batch owes the IPA again; the old batch's flush leaves that debt alone.
    let mut second = TlbBatch::new();
    fx.rmap.page_protect_batched(P2, Prot::NONE, &mut second);
    assert_eq!(s2.owed_invalidations(), 1);
    first.flush();
    assert_eq!(s2.owed_invalidations(), 1, "still owed to the second batch");
    fx.tlb.clear();
    second.flush();
    assert_eq!(fx.tlb.ops(), [TlbOp::Ipa(Vmid(1), IPA)]);
    assert_eq!(s2.owed_invalidations(), 0);
    fx.clean();
}

/// Protecting or removing a range that holds owed IPAs invalidates them first, so no access
/// the range no longer grants survives the call; a batch that lowers (not removes) a mapping
/// invalidates it at once and owes nothing.
#[test]
fn protect_and_remove_settle_owed_ipas_and_lowering_is_not_deferred() {
    let fx = Fx::new(32);
    let s2 = fx.stage2(1).unwrap();
    s2.enter(ipa(0), frame(0), RW, EnterFlags::empty()).unwrap();
    s2.enter(ipa(1), frame(1), RW, EnterFlags::empty()).unwrap();
    keep_tables(&s2);
    let mut batch = TlbBatch::new();
    fx.rmap.page_protect_batched(frame(0), Prot::NONE, &mut batch);
    fx.tlb.clear();
    s2.protect(ipa(0), ipa(2), Prot::READ);
    let ops: Vec<TlbOp> = fx.tlb.ops();
    assert_eq!(
        ops,
        [TlbOp::Ipa(Vmid(1), ipa(0)), TlbOp::Ipa(Vmid(1), ipa(1))],
        "the owed IPA, then the lowered mapping"
    );
    assert_eq!(s2.owed_invalidations(), 0);
    fx.tlb.clear();
    fx.rmap.page_protect_batched(frame(1), Prot::READ, &mut batch);
    assert!(fx.tlb.ops().is_empty(), "already read-only: nothing to do");
    s2.enter(ipa(1), frame(1), RW, EnterFlags::empty()).unwrap();
    fx.tlb.clear();
    fx.rmap.page_protect_batched(frame(1), Prot::READ, &mut batch);
    assert_eq!(fx.tlb.ops(), [TlbOp::Ipa(Vmid(1), ipa(1))], "lowered at once");
    assert_eq!(batch.pages(), 1, "only the removal of frame 0 is owed");
    fx.rmap.page_protect_batched(frame(1), Prot::NONE, &mut batch);
    fx.tlb.clear();
    s2.remove(ipa(0), ipa(4));
    assert_eq!(
        fx.tlb.ops(),
        [TlbOp::Ipa(Vmid(1), ipa(1))],
        "frame 0's debt was paid by the protect; frame 1's by this remove"
    );
    assert_eq!(s2.owed_invalidations(), 0);
    fx.clean();
}
