//! The pagedaemon's TLB maintenance, counted with a recording `Tlb`: a 16-page cluster page-out
//! costs one invalidation for its VM, issued before the write is submitted and before any frame
//! is freed; dropping 16 clean swapped pages, or 16 clean object pages, the same; aging costs
//! one invalidation per aged VM at the end of the clock's pass, none when the VM was
//! invalidated whole after its flags were cleared, and none outside the clock (deactivation).

use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::cluster::{Added, SwapCluster};
use super::CLUSTER_PAGES;
use crate::addr::{Pa, Prot, PAGE_SIZE};
use crate::anon::SwapSlot;
use crate::map::Map;
use crate::pmap::{Tlb, Vmid};
use crate::sim::{RecordingTlb, SimMem, TlbOp};
use crate::swap::{MemSwap, SwapOp};
use crate::object::ImageObject;
use crate::testenv::{anon_spec, image_spec, page, rd, wr};
use crate::uvm::Uvm;

/// A recording `Tlb` that also notes how many frames were free at each invalidation.
#[derive(Default)]
struct WatchTlb {
    rec: RecordingTlb,
    uvm: spin::Once<Weak<Uvm>>,
    free_at: spin::Mutex<Vec<usize>>,
}

impl WatchTlb {
    fn note(&self) {
        if let Some(uvm) = self.uvm.get().and_then(Weak::upgrade) {
            self.free_at.lock().push(uvm.free_pages());
        }
    }
}

impl Tlb for WatchTlb {
    fn invalidate_ipa(&self, vmid: Vmid, ipa: crate::addr::Ipa) {
        self.note();
        self.rec.invalidate_ipa(vmid, ipa);
    }
    fn invalidate_vm(&self, vmid: Vmid) {
        self.note();
        self.rec.invalidate_vm(vmid);
    }
}

/// What the TLB had seen, and how many frames were free, when a write was submitted.
type AtWrite = (Vec<TlbOp>, usize);

struct Fx {
    tlb: Arc<WatchTlb>,
    uvm: Arc<Uvm>,
    swap: Arc<MemSwap>,
    map: Arc<Map>,
}

/// A pool of 256 frames, swap, and one VM (VMID 1) of 64 anon pages, each written.
fn fx() -> Fx {
    let mem = Arc::new(SimMem::new(Pa(0x8000_0000), 256));
    let tlb = Arc::new(WatchTlb::default());
    let uvm = Uvm::new(mem.clone(), tlb.clone(), mem.range());
    tlb.uvm.call_once(|| Arc::downgrade(&uvm));
    let swap = MemSwap::new(1024);
    uvm.set_swap(swap.clone());
    let map = Map::new(&uvm, Vmid(1)).unwrap();
    map.insert(anon_spec(0, 64)).unwrap();
    for i in 0..64 {
        wr(&map, page(i)).unwrap();
    }
    Fx {
        tlb,
        uvm,
        swap,
        map,
    }
}

impl Fx {
    fn anons(&self, n: u64) -> Vec<Arc<crate::anon::Anon>> {
        (0..n).map(|i| self.map.anon_at(page(i)).unwrap()).collect()
    }
    fn forget_tlb(&self) {
        self.tlb.rec.clear();
        self.tlb.free_at.lock().clear();
    }
}

/// 16 dirty pages paged out as one cluster: one `invalidate_vm` (it was 16 `invalidate_ipa`),
/// already issued when the write is submitted, with no frame of the cluster freed yet; all 16
/// frames freed after.
#[test]
fn a_cluster_page_out_invalidates_once_before_the_write_and_the_frees() {
    let f = fx();
    let anons = f.anons(CLUSTER_PAGES as u64);
    let free = f.uvm.free_pages();
    // At the write: what the TLB had seen, and the free frames.
    let seen: Arc<spin::Mutex<Vec<AtWrite>>> = Arc::default();
    {
        let (seen, tlb, uvm) = (seen.clone(), f.tlb.clone(), Arc::downgrade(&f.uvm));
        f.swap.set_hook(Some(Arc::new(move |op, _slot| {
            if op == SwapOp::Write {
                let free = uvm.upgrade().map_or(0, |u| u.free_pages());
                seen.lock().push((tlb.rec.ops(), free));
            }
            Ok(())
        })));
    }
    f.forget_tlb();
    let mut cluster = SwapCluster::new(&f.uvm, CLUSTER_PAGES).unwrap();
    let mut freed = 0;
    for a in &anons {
        let (added, n) = cluster.add(a);
        assert_eq!(added, Added::Queued);
        freed += n;
    }
    assert_eq!(freed, CLUSTER_PAGES, "the full cluster was written at once");
    assert_eq!(f.swap.write_requests.load(Ordering::Relaxed), 1);
    assert_eq!(f.tlb.rec.ops(), [TlbOp::Vm(Vmid(1))]);
    assert_eq!(*f.tlb.free_at.lock(), [free], "no frame freed before the TLBI");
    let seen = seen.lock();
    assert!(!seen.is_empty());
    for (ops, free_then) in seen.iter() {
        assert_eq!(*ops, [TlbOp::Vm(Vmid(1))], "invalidated before the write");
        assert_eq!(*free_then, free, "nothing freed before the write");
    }
    assert_eq!(f.uvm.free_pages(), free + CLUSTER_PAGES);
    assert_eq!(f.map.stage2().resident(), 64 - CLUSTER_PAGES);
    for i in 0..CLUSTER_PAGES as u64 {
        let mut b = [0u8; 1];
        assert!(f.map.copy_in(page(i), &mut b).is_ok());
    }
}

/// 16 clean pages whose swap copy is current are dropped, not written, at the flush: one
/// `invalidate_vm`, issued while every one of their frames is still allocated.
#[test]
fn dropping_clean_swapped_pages_invalidates_once_before_the_frees() {
    let f = fx();
    let anons = f.anons(CLUSTER_PAGES as u64);
    {
        let mut cluster = SwapCluster::new(&f.uvm, CLUSTER_PAGES).unwrap();
        for a in &anons {
            cluster.add(a);
        }
    }
    // Read back through a read-only view (a writable mapping would dirty them): resident,
    // CLEAN, still holding their slots.
    f.map
        .protect(page(0), page(CLUSTER_PAGES as u64), Prot::READ)
        .unwrap();
    for i in 0..CLUSTER_PAGES as u64 {
        rd(&f.map, page(i)).unwrap();
        let a = anons[i as usize].lock();
        assert!(a.page.is_some() && matches!(a.swslot, SwapSlot::Slot(_)));
    }
    let writes = f.swap.writes.load(Ordering::Relaxed);
    let free = f.uvm.free_pages();
    f.forget_tlb();
    let mut cluster = SwapCluster::new(&f.uvm, CLUSTER_PAGES).unwrap();
    for a in &anons {
        let (added, n) = cluster.add(a);
        assert_eq!(added, Added::Dropped);
        assert_eq!(n, 0, "held BUSY for the flush (fewer than DROP_PAGES)");
    }
    const { assert!(CLUSTER_PAGES < super::cluster::DROP_PAGES) };
    assert_eq!(f.tlb.rec.ops(), [], "nothing invalidated before the flush");
    assert_eq!(cluster.flush(), CLUSTER_PAGES);
    assert_eq!(f.swap.writes.load(Ordering::Relaxed), writes, "nothing written");
    assert_eq!(f.tlb.rec.ops(), [TlbOp::Vm(Vmid(1))]);
    assert_eq!(*f.tlb.free_at.lock(), [free], "no frame freed before the TLBI");
    assert_eq!(f.uvm.free_pages(), free + CLUSTER_PAGES);
    for a in &anons {
        assert!(a.lock().page.is_none());
    }
}

/// The pagedaemon's clock over pages the guest has just written (every access flag set): it
/// ages them, clears their references (the first turn) and pages 16 of them out (the second).
/// The whole pass costs one TLBI: the cluster's, which came after the flags were cleared and
/// so also serves the aging (`pmap/aged.rs`). Before lazy aging and batching it cost one a
/// reference cleared plus one a page unmapped.
#[test]
fn a_reclaim_pass_costs_one_tlbi_per_cluster_which_serves_the_aging_too() {
    let f = fx();
    f.forget_tlb();
    assert_eq!(f.uvm.reclaim(CLUSTER_PAGES), CLUSTER_PAGES);
    assert_eq!(f.swap.write_requests.load(Ordering::Relaxed), 1);
    assert!(f.uvm.daemon_stats().pddeact > 0, "the refill aged pages");
    assert_eq!(f.tlb.rec.ops(), [TlbOp::Vm(Vmid(1))]);
}

/// A clock pass that clears access flags and frees nothing of that VM (no swap device: its
/// anon pages cannot go) ends with one `invalidate_vm` of it, so that what the guest touches
/// next sets the flags again even through a TLB entry from before; the flags are clear, and
/// the next access to each page sets its flag again.
#[test]
fn a_pass_that_ages_a_vm_and_frees_nothing_of_it_invalidates_it_once() {
    let mem = Arc::new(SimMem::new(Pa(0x8000_0000), 256));
    let tlb = Arc::new(WatchTlb::default());
    let uvm = Uvm::new(mem.clone(), tlb.clone(), mem.range());
    let map = Map::new(&uvm, Vmid(1)).unwrap();
    map.insert(anon_spec(0, 64)).unwrap();
    for i in 0..64 {
        wr(&map, page(i)).unwrap();
    }
    tlb.rec.clear();
    assert_eq!(uvm.reclaim(CLUSTER_PAGES), 0, "anon pages and no swap: nothing to free");
    assert_eq!(tlb.rec.ops(), [TlbOp::Vm(Vmid(1))]);
    let pa = |i| uvm.pa(map.anon_at(page(i)).unwrap().lock().page.unwrap());
    let cleared = (0..64).filter(|&i| !uvm.rmap().is_referenced(pa(i))).count();
    assert!(cleared > 0, "the pass cleared flags");
    for i in 0..64 {
        rd(&map, page(i)).unwrap();
        assert!(uvm.rmap().is_referenced(pa(i)), "page {i} referenced again");
    }
}

/// Aging alone (deactivating pages, which clears every mapping's access flag) issues no TLBI;
/// the guest's next access re-enters the mapping (an access-flag fault), with none either.
#[test]
fn aging_issues_no_tlbi() {
    let f = fx();
    f.forget_tlb();
    for i in 0..64 {
        let pg = f.map.anon_at(page(i)).unwrap().lock().page.unwrap();
        assert!(f.uvm.rmap().is_referenced(f.uvm.pa(pg)));
        assert!(f.uvm.deactivate(pg));
        assert!(!f.uvm.rmap().is_referenced(f.uvm.pa(pg)));
    }
    for i in 0..64 {
        rd(&f.map, page(i)).unwrap();
        let pg = f.map.anon_at(page(i)).unwrap().lock().page.unwrap();
        assert!(f.uvm.rmap().is_referenced(f.uvm.pa(pg)));
    }
    assert!(f.tlb.rec.ops().is_empty(), "{:?}", f.tlb.rec.ops());
}

/// 16 clean object pages (an image read through a copy-on-write entry) dropped by the clock:
/// one `invalidate_vm`, issued while every frame is still allocated; the pages read back from
/// the image afterwards.
#[test]
fn dropping_clean_object_pages_invalidates_once_before_the_frees() {
    let mem = Arc::new(SimMem::new(Pa(0x8000_0000), 256));
    let tlb = Arc::new(WatchTlb::default());
    let uvm = Uvm::new(mem.clone(), tlb.clone(), mem.range());
    tlb.uvm.call_once(|| Arc::downgrade(&uvm));
    let bytes: Vec<u8> = (0..64 * PAGE_SIZE as usize)
        .map(|i| (i / PAGE_SIZE as usize + 1) as u8)
        .collect();
    let obj = ImageObject::new(&uvm, bytes.into());
    let map = Map::new(&uvm, Vmid(1)).unwrap();
    map.insert(image_spec(&obj, 0, 64)).unwrap();
    for i in 0..64 {
        rd(&map, page(i)).unwrap();
    }
    tlb.rec.clear();
    tlb.free_at.lock().clear();
    let free = uvm.free_pages();
    assert_eq!(uvm.reclaim(CLUSTER_PAGES), CLUSTER_PAGES);
    assert_eq!(tlb.rec.ops(), [TlbOp::Vm(Vmid(1))]);
    assert_eq!(*tlb.free_at.lock(), [free], "no frame freed before the TLBI");
    assert_eq!(uvm.free_pages(), free + CLUSTER_PAGES);
    assert_eq!(map.stage2().resident(), 64 - CLUSTER_PAGES);
    for i in 0..64u64 {
        let mut b = [0u8; 1];
        map.copy_in(page(i), &mut b).unwrap();
        assert_eq!(b[0], (i + 1) as u8, "page {i}");
    }
}
