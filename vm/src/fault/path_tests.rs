//! Unit tests of seed paths that only another CPU can reach: the world changing while the fault
//! is unlocked for a case-2 SYNC get or an anonget swap-in, and the neighbour skips. Each test is
//! named after the seed's case; each was checked to fail with the branch it covers broken.

use alloc::boxed::Box;
use alloc::sync::Arc;

use super::*;
use crate::addr::PageIdx;
use crate::anon::{Anon, SwapSlot};
use crate::map::EntrySpec;
use crate::object::{GetMode, ImageObject, Object, PageSlot, PagerError, PutFlags};
use crate::page::{Busy, Owner, PageFlags};
use crate::pmap::Pmap;
use crate::swap::MemSwap;
use crate::testenv::*;
use crate::uvm::Uvm;

fn snap(map: &Map) -> crate::stats::StatsSnapshot {
    map.stats().snapshot()
}

type Hook = Box<dyn FnOnce(PageIdx) + Send>;

/// A pager over an image whose SYNC `get` runs a hook once, after the page is resident and BUSY
/// and while the fault holds no lock: another CPU changing the world during the pager's I/O.
struct HookPager {
    inner: Arc<ImageObject>,
    hook: spin::Mutex<Option<Hook>>,
}

impl Object for HookPager {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn get(
        &self,
        uvm: &Uvm,
        offset: u64,
        pages: &mut [PageSlot],
        center: usize,
        access: Prot,
        advice: Advice,
        mode: GetMode,
    ) -> Result<usize, PagerError> {
        let n = self
            .inner
            .get(uvm, offset, pages, center, access, advice, mode)?;
        if let (GetMode::Sync, Some(PageSlot::Page(busy))) = (mode, pages.get(center)) {
            let hook = self.hook.lock().take();
            if let Some(h) = hook {
                h(busy.page());
            }
        }
        Ok(n)
    }

    fn put(&self, uvm: &Uvm, start: u64, end: u64, flags: PutFlags) -> Result<(), PagerError> {
        self.inner.put(uvm, start, end, flags)
    }

    fn resident(&self, offset: u64) -> Option<PageIdx> {
        self.inner.resident(offset)
    }

    fn loan_break(&self, uvm: &Uvm, offset: u64, pg: Busy) -> Result<Busy, Busy> {
        self.inner.loan_break(uvm, offset, pg)
    }
}

/// A map with one copy-on-write entry of 4 pages over a hooked image (byte i of page n is n + 1).
fn hooked_map(e: &Env, hook: impl FnOnce(&Arc<Map>, PageIdx) + Send + 'static) -> Arc<Map> {
    let img = e.image(4 * 4096);
    let pager = Arc::new(HookPager {
        inner: img,
        hook: spin::Mutex::new(None),
    });
    let m = e.map(1);
    let object: Arc<dyn Object> = pager.clone();
    m.insert(EntrySpec {
        prot: Prot::ALL,
        object: Some((object, 0)),
        copy_on_write: true,
        ..anon_spec(0, 4)
    })
    .unwrap();
    let m2 = m.clone();
    *pager.hook.lock() = Some(Box::new(move |pg| hook(&m2, pg)));
    m
}

/// A new anon (an_ref 1) with a resident, unbusy, active page whose first byte is `byte`.
fn resident_anon(uvm: &Uvm, byte: u8) -> Arc<Anon> {
    let anon = Anon::new();
    let busy = uvm
        .alloc_page(Owner::Anon(Arc::downgrade(&anon)), true)
        .unwrap();
    let pg = busy.page();
    uvm.mem().write(uvm.pa(pg), &[byte]);
    anon.lock().page = Some(pg);
    uvm.enqueue(pg);
    uvm.unbusy(busy);
    anon
}

/// Put `anon` into the amap slot of `ipa` behind the map's back (no map write lock, so no
/// version bump): another CPU's fault on a map sharing the amap. Returns the anon replaced.
fn fill_slot(m: &Map, ipa: Ipa, anon: Arc<Anon>) -> Option<Arc<Anon>> {
    let e = m.entry(ipa).unwrap();
    let aref = e.aref.as_ref().unwrap();
    let slot = e.slot(ipa).unwrap();
    let old = aref.amap.lock().add(slot, anon).unwrap();
    old
}

#[test]
fn case_2_relock_fails_when_the_map_changed_during_the_sync_get() {
    let e = env(64);
    let m = hooked_map(&e, |m, _| {
        m.protect(page(0), page(4), Prot::READ).unwrap();
    });
    let r = rd(&m, page(1)).unwrap();
    assert_eq!((r.case, r.refaults), (FaultCase::Obj2A, 1));
    let s = snap(&m);
    assert_eq!((s.fltget, s.fltrelck, s.fltrelckok), (1, 1, 0));
    assert_eq!((s.flt_obj, s.fltpgrele), (1, 0));
    // The refault saw the new protection, not the stale view's READ|EXEC.
    assert_eq!(prot(&m, page(1)), Some(Prot::READ));
    assert_eq!(e.byte(&m, page(1)), 2);
}

#[test]
fn case_2_relock_finds_the_amap_slot_filled_and_uses_the_anon() {
    let e = env(64);
    let uvm = e.uvm.clone();
    let m = hooked_map(&e, move |m, _| {
        assert!(fill_slot(m, page(1), resident_anon(&uvm, 0xa5)).is_none());
    });
    let (free, tables) = (e.uvm.free_pages(), m.stage2().table_frames());
    let r = rd(&m, page(1)).unwrap();
    assert_eq!((r.case, r.refaults), (FaultCase::Anon1A, 1));
    let s = snap(&m);
    assert_eq!((s.fltget, s.fltrelck, s.fltrelckok), (1, 1, 1));
    assert_eq!((s.flt_obj, s.flt_anon, s.fltpgrele), (0, 1, 0));
    // The fault maps the anon's page, not the object page it read.
    assert_eq!(e.byte(&m, page(1)), 0xa5);
    let anon = m.anon_at(page(1)).unwrap();
    let apg = anon.lock().page.unwrap();
    assert_eq!(m.mapped_page(page(1)).unwrap().0, apg);
    // The object page was dropped (unbusied, left in the object, not mapped).
    let entry = m.entry(page(1)).unwrap();
    let (obj, _) = entry.object.as_ref().unwrap();
    let objpg = obj.resident(4096).unwrap();
    assert_ne!(objpg, apg);
    let info = e.uvm.page_info(objpg);
    assert!(!info.flags.contains(PageFlags::BUSY));
    assert_eq!(
        e.uvm.free_pages() + 2 + m.stage2().table_frames() - tables,
        free,
        "the anon page and the object page"
    );
}

#[test]
fn case_2_relock_finds_the_object_page_released() {
    let e = env(64);
    let m = hooked_map(&e, |m, pg| {
        // Another CPU frees the object's pages (`pgo_put(FREE)`): ours is BUSY, so RELEASED.
        let entry = m.entry(page(0)).unwrap();
        let (obj, _) = entry.object.as_ref().unwrap();
        obj.put(m.uvm(), 0, obj.size(), PutFlags::FREE).unwrap();
        assert!(m.uvm().page_info(pg).flags.contains(PageFlags::RELEASED));
    });
    let (free, tables) = (e.uvm.free_pages(), m.stage2().table_frames());
    let r = rd(&m, page(1)).unwrap();
    assert_eq!((r.case, r.refaults), (FaultCase::Obj2A, 1));
    let s = snap(&m);
    assert_eq!(
        (s.fltpgrele, s.fltget, s.flt_obj),
        (1, 2, 1),
        "read again on the refault"
    );
    assert_eq!((s.fltrelck, s.fltrelckok), (2, 2), "both relocks succeeded");
    assert_eq!(e.byte(&m, page(1)), 2);
    // The released page was freed: one object page resident, plus the stage-2 tables.
    let entry = m.entry(page(1)).unwrap();
    let (obj, _) = entry.object.as_ref().unwrap();
    let pg = obj.resident(4096).unwrap();
    assert_eq!(m.mapped_page(page(1)).unwrap().0, pg);
    assert_eq!(obj.resident(0), None, "the other pages stay freed");
    let tables = m.stage2().table_frames() - tables;
    assert_eq!(
        e.uvm.free_pages() + 1 + tables,
        free,
        "the released page was freed"
    );
}

#[test]
fn neighbour_anon_with_an_ref_above_one_is_mapped_read_only() {
    let e = env(128);
    let parent = e.anon_map(4);
    for i in 0..4 {
        parent.copy_out(page(i), &[i as u8 + 1]).unwrap();
    }
    let child = parent.fork(crate::pmap::Vmid(2)).unwrap();
    // Child write to page 2: amap copy, then 1B gives page 2 a private anon (an_ref 1); the
    // other anons stay shared with the parent (an_ref 2).
    assert_eq!(wr(&child, page(2)).unwrap().case, FaultCase::AnonCow1B);
    assert_eq!(child.anon_at(page(1)).unwrap().lock().an_ref, 2);
    assert_eq!(child.anon_at(page(2)).unwrap().lock().an_ref, 1);
    child.stage2().remove(page(0), page(4));

    let before = snap(&child);
    let r = rd(&child, page(0)).unwrap();
    let d = snap(&child).since(&before);
    assert_eq!(
        (r.case, r.neighbours, d.fltnamap),
        (FaultCase::Anon1A, 3, 3)
    );
    assert_eq!(
        prot(&child, page(1)),
        Some(Prot::READ),
        "an_ref 2: read-only"
    );
    assert_eq!(prot(&child, page(2)), Some(Prot::READ | Prot::WRITE));
    assert_eq!(
        prot(&child, page(3)),
        Some(Prot::READ),
        "an_ref 2: read-only"
    );

    // A write to the read-only neighbour is a fault, and it is 1B: the parent keeps its data.
    let before = snap(&child);
    assert_eq!(wr(&child, page(1)).unwrap().case, FaultCase::AnonCow1B);
    assert_eq!(snap(&child).since(&before).flt_acow, 1);
    child.copy_out(page(1), &[0x77]).unwrap();
    assert_eq!(e.byte(&parent_mapped(&parent), page(1)), 2);
    assert_eq!(e.byte(&child, page(1)), 0x77);
}

/// The parent, with page 1 faulted in for reading (its stage 2 was cleared by the fork).
fn parent_mapped(parent: &Arc<Map>) -> Arc<Map> {
    rd(parent, page(1)).unwrap();
    parent.clone()
}

#[test]
fn busy_and_loaned_neighbour_anons_are_skipped() {
    let e = env(128);
    let img = e.image(4 * 4096);
    let m = e.anon_map(8);
    for i in [0, 1, 3, 4] {
        m.copy_out(page(i), &[i as u8 + 1]).unwrap();
    }
    let loaned = crate::object::loan_to_anon(&e.uvm, img.as_ref(), 0).unwrap();
    m.install_anon(page(2), loaned).unwrap();
    let busy_pg = m.anon_at(page(3)).unwrap().lock().page.unwrap();
    let busy = e.uvm.try_busy(busy_pg).unwrap();
    m.stage2().remove(page(0), page(8));

    // NORMAL around page 1: page 0 behind, pages 2..=5 ahead; 5 has no anon.
    let before = snap(&m);
    let r = rd(&m, page(1)).unwrap();
    let d = snap(&m).since(&before);
    assert_eq!(
        (r.case, r.neighbours, d.fltnamap),
        (FaultCase::Anon1A, 2, 2)
    );
    assert!(prot(&m, page(0)).is_some() && prot(&m, page(4)).is_some());
    assert_eq!(prot(&m, page(2)), None, "loaned neighbour skipped");
    assert_eq!(prot(&m, page(3)), None, "busy neighbour skipped");
    assert!(!e.uvm.page_info(busy_pg).flags.contains(PageFlags::WANTED));

    e.uvm.unbusy(busy);
    assert_eq!(rd(&m, page(3)).unwrap().case, FaultCase::Anon1A);
    assert_eq!(e.byte(&m, page(3)), 4);
    assert_eq!(rd(&m, page(2)).unwrap().case, FaultCase::Anon1A);
    assert_eq!(e.byte(&m, page(2)), 1);
    assert_eq!(
        prot(&m, page(2)),
        Some(Prot::READ),
        "loaned: read-only when faulted"
    );
}

#[test]
fn anonget_relock_finds_the_anon_moved_and_refaults() {
    let e = env(64);
    let hs = HookSwap::new(8);
    e.uvm.set_swap(hs.clone());
    let m = e.anon_map(4);
    m.copy_out(page(0), &[3]).unwrap();
    assert!(m.pageout(page(0)));
    let old = m.anon_at(page(0)).unwrap();

    // While the swap-in runs unlocked, the slot gets another anon (no map version bump). The
    // replaced anon keeps its reference until the fault is over, so it is not RELEASED.
    let (m2, uvm) = (m.clone(), e.uvm.clone());
    let moved: Arc<spin::Mutex<Option<Arc<Anon>>>> = Arc::new(spin::Mutex::new(None));
    let moved2 = moved.clone();
    *hs.hook.lock() = Some(Box::new(move || {
        *moved2.lock() = fill_slot(&m2, page(0), resident_anon(&uvm, 0x42));
    }));

    let r = rd(&m, page(0)).unwrap();
    assert_eq!((r.case, r.refaults), (FaultCase::Anon1A, 1));
    let s = snap(&m);
    assert_eq!(
        (s.fltanget, s.pageins, s.fltrelck, s.fltrelckok),
        (2, 1, 1, 1),
        "one anonget per pass"
    );
    assert_eq!((s.fltanretry, s.fltpgrele, s.flt_anon), (0, 0, 1));
    assert_eq!(e.byte(&m, page(0)), 0x42, "the anon now in the slot");
    let gone = moved.lock().take().unwrap();
    assert!(Arc::ptr_eq(&gone, &old));
    // The moved anon's page came in from swap but was not mapped here.
    let oldpg = old.lock().page.unwrap();
    assert_ne!(m.mapped_page(page(0)).unwrap().0, oldpg);
    crate::anon::anon_unref(&e.uvm, &gone);
}

#[test]
fn wire_fault_on_a_swapped_out_anon_drops_its_swap_slot() {
    let e = env(64);
    let swap = MemSwap::new(8);
    e.uvm.set_swap(swap.clone());
    let m = e.anon_map(4);
    m.copy_out(page(1), &[0x3c]).unwrap();
    assert!(m.pageout(page(1)));
    let anon = m.anon_at(page(1)).unwrap();
    assert!(matches!(anon.lock().swslot, SwapSlot::Slot(_)));
    assert_eq!(e.uvm.swap().unwrap().counts(), (7, 1, 0));

    m.wire(page(1), page(2)).unwrap();
    let s = snap(&m);
    assert_eq!((s.fltanget, s.pageins), (1, 1), "swapped in");
    let (pg, p) = m.mapped_page(page(1)).unwrap();
    assert_eq!(p, Prot::READ | Prot::WRITE);
    let info = e.uvm.page_info(pg);
    assert_eq!(info.wire_count, 1);
    assert!(
        !info.flags.contains(PageFlags::CLEAN),
        "no swap copy: not clean"
    );
    assert_eq!(anon.lock().swslot, SwapSlot::None, "the slot was dropped");
    assert_eq!(e.uvm.swap().unwrap().counts(), (8, 0, 0));
    assert_eq!(e.byte(&m, page(1)), 0x3c);
}

/// Under SEQUENTIAL, neighbours whose mappings the pagedaemon aged (access flag clear) are
/// entered again, young, by the fault: the guest is about to touch them, and each would
/// otherwise take an access-flag fault of its own. Under NORMAL they count as mapped, and the
/// fault maps nothing but its own page (their reference bits stay the pagedaemon's).
#[test]
fn sequential_faults_map_aged_neighbours_again() {
    for (advice, want) in [(Advice::Sequential, 7), (Advice::Normal, 0)] {
        let e = env(64);
        let m = e.anon_map(16);
        m.advise(page(0), page(16), advice).unwrap();
        for n in 0..16 {
            m.copy_out(page(n), &[n as u8]).unwrap();
        }
        // Aged (the SEQUENTIAL faults of the writes deactivated those behind them already).
        for n in 0..16 {
            let pa = m.stage2().extract(page(n)).unwrap().0;
            e.uvm.rmap().clear_reference(pa);
            assert!(!e.uvm.rmap().is_referenced(pa), "page {n} old");
        }
        let r = rd(&m, page(0)).unwrap();
        assert_eq!(r.case, FaultCase::Anon1A);
        assert_eq!(r.neighbours, want, "{advice:?}");
        let young = (1..8)
            .filter(|&n| {
                let pa = m.stage2().extract(page(n)).unwrap().0;
                e.uvm.rmap().is_referenced(pa)
            })
            .count();
        assert_eq!(young, usize::from(want), "{advice:?}: neighbours young again");
    }
}
