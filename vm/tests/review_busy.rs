//! Regression tests for the BUSY-ownership and loan bugs of issue 7 (found by review, not by
//! the model: each needs something to happen *during* a copy or a fault). Each test's doc says
//! what the bug was.
//!
//! "Mid-copy" and "mid-fault" are made deterministic with [`HookMem`], a `PhysMem` that runs a
//! one-shot hook inside a chosen access on a chosen thread: the copy's data read
//! (`Map::copy_in` holds its page BUSY around it), or a fault's stage-2 descriptor access (the
//! fault is then past `anonget`, inside case 1). Threads hand over with channels; nothing is
//! timed.
#![forbid(unsafe_code)]

mod common;

use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;

use common::*;
use vm::addr::{Access, Pa, Prot};
use vm::fault::{fault, FaultFlags};
use vm::map::{EntrySpec, Map};
use vm::object::{loan_to_anon, ImageObject, Object, PagerError};
use vm::physmem::PhysMem;
use vm::pmap::Vmid;
use vm::sim::{RecordingTlb, SimMem};
use vm::swap::MemSwap;
use vm::uvm::Uvm;

/// Which access of [`HookMem`] a hook waits in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum At {
    /// `PhysMem::read` (a copy's data read).
    Read,
    /// `PhysMem::read_u64` (a stage-2 walk).
    ReadU64,
    /// `PhysMem::write_u64` (a stage-2 descriptor store).
    WriteU64,
}

type HookFn = Box<dyn FnOnce() + Send>;

/// A hook: runs once, in access `at`, on the thread named `thread`, the first time `ready`
/// says yes there.
struct Hook {
    at: At,
    thread: &'static str,
    ready: Box<dyn Fn() -> bool + Send>,
    run: HookFn,
}

/// Simulated memory that runs hooks inside chosen accesses (before the access itself).
struct HookMem {
    sim: Arc<SimMem>,
    hooks: Mutex<Vec<Hook>>,
}

impl HookMem {
    fn hook(
        &self,
        at: At,
        thread: &'static str,
        ready: impl Fn() -> bool + Send + 'static,
        run: impl FnOnce() + Send + 'static,
    ) {
        self.hooks.lock().unwrap().push(Hook {
            at,
            thread,
            ready: Box::new(ready),
            run: Box::new(run),
        });
    }

    /// Drop the hooks that never ran (their channels close: a waiter learns it at once).
    fn clear(&self) {
        self.hooks.lock().unwrap().clear();
    }

    fn fire(&self, at: At) {
        let here = thread::current();
        let Some(name) = here.name() else { return };
        let hook = {
            let mut hooks = self.hooks.lock().unwrap();
            let i = hooks
                .iter()
                .position(|h| h.at == at && h.thread == name && (h.ready)());
            i.map(|i| hooks.remove(i))
        };
        if let Some(h) = hook {
            (h.run)();
        }
    }
}

impl PhysMem for HookMem {
    fn zero(&self, frame: Pa) {
        self.sim.zero(frame)
    }
    fn copy(&self, dst: Pa, src: Pa) {
        self.sim.copy(dst, src)
    }
    fn read(&self, pa: Pa, buf: &mut [u8]) {
        self.fire(At::Read);
        self.sim.read(pa, buf)
    }
    fn write(&self, pa: Pa, buf: &[u8]) {
        self.sim.write(pa, buf)
    }
    fn same(&self, a: Pa, b: Pa) -> bool {
        self.sim.same(a, b)
    }
    fn hash(&self, frame: Pa) -> u64 {
        self.sim.hash(frame)
    }
    fn read_u64(&self, pa: Pa) -> u64 {
        self.fire(At::ReadU64);
        self.sim.read_u64(pa)
    }
    fn write_u64(&self, pa: Pa, value: u64) {
        self.fire(At::WriteU64);
        self.sim.write_u64(pa, value)
    }
}

/// An engine over `frames` hooked frames; a swap device of `slots` slots unless `slots` is 0.
fn hooked(frames: usize, slots: u32) -> (Arc<HookMem>, Arc<Uvm>) {
    let sim = Arc::new(SimMem::new(Pa(0x8000_0000), frames));
    let range = sim.range();
    let mem = Arc::new(HookMem {
        sim,
        hooks: Mutex::new(Vec::new()),
    });
    let uvm = Uvm::new(mem.clone(), Arc::new(RecordingTlb::counting()), range);
    if slots > 0 {
        uvm.set_swap(MemSwap::new(slots));
    }
    (mem, uvm)
}

/// Run `f` on a thread named `name`.
fn spawn<T: Send + 'static>(
    name: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .expect("spawn")
}

/// A one-shot signal between threads.
fn signal() -> (Sender<()>, Receiver<()>) {
    channel()
}

/// What the fault of [`fault_beside_a_copy`] ended with.
type FaultResult = Result<vm::fault::Resolved, vm::fault::FaultError>;
/// What its copy read (the first word of page 0).
type CopyResult = Result<u64, vm::fault::FaultError>;

/// `b`'s read fault of page 0 stopped at its first `at` access past anonget (flt_anon counted),
/// while `a`'s `copy_in` of page 0 runs up to its data read, the page held BUSY; then the fault
/// goes on and ends. Returns the fault's result, the copy (still waiting in its data read) and
/// the signal that lets it read.
fn fault_beside_a_copy(
    mem: &Arc<HookMem>,
    a: &Arc<Map>,
    b: &Arc<Map>,
    at: At,
) -> (FaultResult, thread::JoinHandle<CopyResult>, Sender<()>) {
    let (in_window, fault_waits) = signal();
    let (copy_busy, copy_holds) = signal();
    let (changed, copy_waits) = signal();
    let bs = b.clone();
    mem.hook(
        at,
        "fault",
        move || bs.stats().flt_anon.load(Ordering::Relaxed) > 0,
        move || {
            in_window.send(()).unwrap();
            copy_holds.recv().unwrap();
        },
    );
    mem.hook(
        At::Read,
        "copy",
        || true,
        move || {
            copy_busy.send(()).unwrap();
            copy_waits.recv().unwrap();
        },
    );

    let (bf, mf) = (b.clone(), mem.clone());
    let faulter = spawn("fault", move || {
        let r = fault(&bf, ipa(0), Access::Read, FaultFlags::empty());
        mf.clear();
        r
    });
    fault_waits
        .recv()
        .expect("the fault ended without reaching its window");
    let ac = a.clone();
    let copier = spawn("copy", move || {
        let mut buf = [0u8; 8];
        ac.copy_in(ipa(0), &mut buf)
            .map(|()| u64::from_le_bytes(buf))
    });
    (faulter.join().unwrap(), copier, changed)
}

const OLD: u64 = 0x0123_4567_89ab_cdef;
const OTHER: u64 = 0xbad0_bad0_bad0_bad0;

/// Parent `a` with its anon page 0 holding `OLD` (a one-page entry, so no neighbourhood) and
/// a COPY fork `b` sharing that anon (an_ref 2; `a` maps it read-only, `b` not at all), and a
/// third VM `c` with page 0 resident (its tables exist: its next fault allocates one frame).
fn parent_child_other(uvm: &Arc<Uvm>) -> (Arc<Map>, Arc<Map>, Arc<Map>) {
    let a = Map::new(uvm, Vmid(1)).unwrap();
    a.insert(anon_spec(0, 1, Prot::READ | Prot::WRITE)).unwrap();
    guest_write(&a, 0, OLD);
    let b = a.fork(Vmid(2)).unwrap();
    assert_eq!(guest_read(&a, 0), OLD); // a maps it again, read-only (1A)
    let c = Map::new(uvm, Vmid(3)).unwrap();
    c.insert(anon_spec(0, 2, Prot::READ | Prot::WRITE)).unwrap();
    guest_write(&c, 0, 1);
    (a, b, c)
}

/// Bug 2 (issue 7), fixed: case 1A cleared BUSY at its end (`finish_page`) although it never
/// set it: anonget only checked that the page was not BUSY, and a `copy_in` of another VM
/// sharing the anon could make it BUSY in between. 1A then unbusied the copy's page; the
/// pagedaemon paged it out and freed the frame, another VM got it, and the copy returned that
/// VM's bytes.
///
/// Here `b`'s read fault (1A on the shared anon) stops at its descriptor store; `a`'s copy
/// holds the page BUSY; the fault finishes; the page is paged out and a third VM allocates;
/// then the copy reads.
#[test]
fn case_1a_does_not_unbusy_a_page_a_copy_holds() {
    let (mem, uvm) = hooked(64, 16);
    let (a, b, c) = parent_child_other(&uvm);
    let (pg, _) = a.mapped_page(ipa(0)).expect("a maps page 0");

    // b's fault stops at its first descriptor store past anonget.
    let (fault, copier, changed) = fault_beside_a_copy(&mem, &a, &b, At::WriteU64);
    let resolved = fault.expect("b's read fault");
    assert_eq!(resolved.case, vm::fault::FaultCase::Anon1A);

    // While the copy holds the page, the pagedaemon takes it if it can and a third VM
    // allocates.
    let still_busy = uvm.page_info(pg).flags.contains(vm::page::PageFlags::BUSY);
    let paged_out = a.pageout(ipa(0));
    guest_write(&c, 1, OTHER);
    changed.send(()).unwrap();
    let got = copier.join().unwrap().expect("a's copy_in");
    assert_eq!(got, OLD, "the copy returned another VM's bytes");
    assert!(still_busy, "case 1A cleared the BUSY bit the copy holds");
    assert!(!paged_out, "a page held BUSY by a copy was paged out");
    assert_eq!(guest_read(&a, 0), OLD);
    assert_eq!(guest_read(&b, 0), OLD);
}

/// Bug 2 (issue 7), fixed: when case 1 ran out of memory it set BUSY on the anon's page
/// (`hold_busy`, an unconditional insert) to keep it through the reclaim and cleared it after
/// (`reclaim_or_nomem`): a page that a copy had made BUSY after anonget looked lost the copy's
/// BUSY. Here the pool is exhausted and there is no swap, so `b`'s read fault (1A) cannot get a
/// stage-2 table; it stops in its table walk while `a`'s copy makes the page BUSY, fails its
/// enter and reclaims. The anon is then freed (both VMs drop it) and a third VM allocates: the
/// copy read that VM's bytes.
#[test]
fn case_1_reclaim_does_not_unbusy_a_page_a_copy_holds() {
    let (mem, uvm) = hooked(64, 0);
    let (a, b, c) = parent_child_other(&uvm);
    let (pg, _) = a.mapped_page(ipa(0)).expect("a maps page 0");
    // Take every frame (no swap: nothing can be reclaimed).
    let hog = Map::new(&uvm, Vmid(9)).unwrap();
    hog.insert(anon_spec(0, 64, Prot::READ | Prot::WRITE))
        .unwrap();
    // A failed fault means no frame was left (the reserve is 0, nothing is reclaimable).
    let mut n = 0;
    while uvm.free_pages() > 0 && fault(&hog, ipa(n), Access::Write, FaultFlags::empty()).is_ok() {
        n += 1;
    }
    assert_eq!(uvm.free_pages(), 0);

    // b's fault stops past anonget, walking for the tables it cannot allocate.
    // Its result (NoMemory or Restart) is not the point.
    let (_fault, copier, changed) = fault_beside_a_copy(&mem, &a, &b, At::ReadU64);
    let still_busy = uvm.page_info(pg).flags.contains(vm::page::PageFlags::BUSY);
    // Both VMs drop the anon while the copy holds its page; then a third VM wants a frame
    // (only a page freed here can satisfy it: the pool is still exhausted).
    b.remove(ipa(0), ipa(1)).unwrap();
    a.remove(ipa(0), ipa(1)).unwrap();
    if fault(&c, ipa(1), Access::Write, FaultFlags::empty()).is_ok() {
        guest_write(&c, 1, OTHER);
    }
    changed.send(()).unwrap();
    let got = copier.join().unwrap().expect("a's copy_in");
    assert_eq!(got, OLD, "the copy returned another VM's bytes");
    assert!(
        still_busy,
        "the reclaim path cleared the BUSY bit the copy holds"
    );
    // The released page was freed when the copy let go: nothing leaked.
    drop((a, b, c, hog));
    assert_eq!(uvm.free_pages(), uvm.total_pages());
}

/// Also asked by issue 7: `ImageObject::drop` freed every resident page, BUSY or not. A copy
/// holding an image page BUSY while the last reference to the image went (the entry removed)
/// then read from a frame another VM had been given meanwhile.
#[test]
fn image_drop_does_not_free_a_page_a_copy_holds() {
    let (mem, uvm) = hooked(64, 16);
    let img = ImageObject::new(&uvm, image_bytes(0, 2 * PAGE));
    let a = Map::new(&uvm, Vmid(1)).unwrap();
    a.insert(image_spec(&img, 0, 0, 2)).unwrap();
    let want = read_u64_of_image(0);
    assert_eq!(guest_read(&a, 0), want, "a maps the image page (2A)");
    let c = Map::new(&uvm, Vmid(3)).unwrap();
    c.insert(anon_spec(0, 2, Prot::READ | Prot::WRITE)).unwrap();
    guest_write(&c, 0, 1);

    let slot = Arc::new(Mutex::new(Some(img)));
    let (ah, ch, slot2) = (a.clone(), c.clone(), slot.clone());
    // Mid-copy (the image page BUSY for the copy): the image goes, a third VM allocates.
    mem.hook(
        At::Read,
        "copy",
        || true,
        move || {
            ah.remove(ipa(0), ipa(2)).unwrap();
            drop(slot2.lock().unwrap().take()); // the last reference: ImageObject::drop
            guest_write(&ch, 1, OTHER);
        },
    );
    let ac = a.clone();
    let got = spawn("copy", move || {
        let mut buf = [0u8; 8];
        ac.copy_in(ipa(0), &mut buf)
            .map(|()| u64::from_le_bytes(buf))
    })
    .join()
    .unwrap()
    .expect("a's copy_in");
    assert!(slot.lock().unwrap().is_none(), "the hook ran");
    assert_eq!(got, want, "the copy returned another VM's bytes");
    assert_eq!(guest_read(&c, 1), OTHER);
    // The page the copy held was freed when the copy let go: nothing leaked.
    drop((a, c));
    assert_eq!(uvm.free_pages(), uvm.total_pages());
}

/// The first word of image 0's page `n`.
fn read_u64_of_image(n: usize) -> u64 {
    u64::from_le_bytes(core::array::from_fn(|i| image_byte(0, n * PAGE + i)))
}

/// A shared (not copy-on-write) mapping of `img` over pages 0..2: its pages are mapped
/// writable (2A).
fn shared_image(img: &Arc<ImageObject>) -> EntrySpec {
    let mut spec = image_spec(img, 0, 0, 2);
    spec.copy_on_write = false;
    spec.anon = false;
    spec
}

/// Bug 3 (issue 7), fixed: `loan_to_anon` left the lender's existing writable mappings of the
/// object page in place (the seed's `uvm_loanuobj` write-protects the page on its first loan):
/// a VM writing through its shared mapping after the loan wrote into the borrower's page.
#[test]
fn loan_to_anon_write_protects_the_object_page() {
    let env = Env::new(64, 16);
    let img = ImageObject::new(&env.uvm, image_bytes(0, 2 * PAGE));
    let a = Map::new(&env.uvm, Vmid(1)).unwrap();
    a.insert(shared_image(&img)).unwrap();
    guest_write(&a, 0, 0x1111); // a's writable mapping of the object page
    let anon = loan_to_anon(&env.uvm, img.as_ref(), 0).expect("loan");
    let b = Map::new(&env.uvm, Vmid(2)).unwrap();
    b.insert(anon_spec(0, 1, Prot::READ | Prot::WRITE)).unwrap();
    b.install_anon(ipa(0), anon)
        .expect("install the loaned anon");
    assert_eq!(guest_read(&b, 0), 0x1111);

    guest_write(&a, 0, 0x2222); // after the loan: the borrower must not see it
    assert_eq!(guest_read(&a, 0), 0x2222);
    assert_eq!(
        guest_read(&b, 0),
        0x1111,
        "the borrower sees a write made after the loan"
    );
}

/// Bug 3 (issue 7), fixed: `loan_to_anon` lent wired pages (the seed's loan code refuses
/// them): a wired page must stay where its wiring pinned it, writable in place, which a loan
/// forbids.
#[test]
fn loan_to_anon_refuses_a_wired_page() {
    let env = Env::new(64, 16);
    let img = ImageObject::new(&env.uvm, image_bytes(0, 2 * PAGE));
    let a = Map::new(&env.uvm, Vmid(1)).unwrap();
    a.insert(shared_image(&img)).unwrap();
    a.wire(ipa(0), ipa(1)).unwrap();
    let pg = img.resident(0).expect("wired, so resident");
    assert_eq!(
        loan_to_anon(&env.uvm, img.as_ref(), 0).err(),
        Some(PagerError::Wired)
    );
    let info = env.uvm.page_info(pg);
    assert_eq!((info.loan_count, info.wire_count), (0, 1));
    assert!(!info.flags.contains(vm::page::PageFlags::BUSY));
    // Unwired, it may be lent.
    a.unwire(ipa(0), ipa(1)).unwrap();
    assert!(loan_to_anon(&env.uvm, img.as_ref(), 0).is_ok());
}
