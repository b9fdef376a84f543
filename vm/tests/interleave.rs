//! Interleaving explorer: two or three engine operations run concurrently under the `shuttle`
//! scheduler, which may switch threads at every lock acquisition (the engine's locks are
//! shuttle's in this build, see `vm/src/sync.rs`), during every swap I/O and during every bulk
//! copy of a frame. After each schedule the guest-visible state is checked against what the
//! scenario's operations allow in any order: the bytes of every page the scenario knows (read as
//! the guest would, through the stage-2 descriptor and faults), the permissions of every stage-2
//! mapping (inside its entry's protection; a frame mapped writable is mapped at no other page of
//! any VM), and, once every map and object is dropped, that no frame leaked and no swap slot
//! stayed in use.
//!
//! What it explores (one `#[test]` a scenario):
//! - `slot_reuse`: a page-out of VM A ∥ the removal of that page ∥ a page-out of VM B, with one
//!   swap slot: a slot freed while A's write is in flight must not end up with A's data over B's.
//! - `copy_vs_fault`: `copy_in` of A's page ∥ a write fault on it (case 1A) ∥ a page-out of it and
//!   a new page in VM B: the copy must return A's bytes.
//! - `loan_vs_writer`: a loan of an object page to VM B's amap ∥ VM A writing it through a
//!   shared (not copy-on-write) mapping; A's later writes must not reach B.
//! - `loan_vs_wire`: a loan of an object page to VM B ∥ VM A wiring its shared mapping of it: the
//!   loan is refused or broken by the wiring; no frame is ever wired and lent at once.
//! - `install_vs_remove`: a loan installed into B (`install_anon`) ∥ the removal of that page and
//!   a new entry over it: whichever wins (an install into the hole fails), nothing leaks.
//! - `fork_vs_write`: a fork of A ∥ A writing a page ∥ A's other page paged out.
//! - `swapin_shared` / `swapin_shared_failing`: after a fork, both VMs fault in their shared
//!   swapped-out anon ∥ another page-out; with the slot's reads failing both must see `Io`.
//! - `swapin_vs_remove_failing`: a swap-in whose read fails ∥ the removal of the page: a slot
//!   that failed a read ends BAD, even when the anon was freed during the read.
//! - `wire_vs_pageout`: wiring A's pages ∥ page-outs of them ∥ the pagedaemon.
//! - `dedup_vs_write`: a dedup pass that merges A's and B's identical pages ∥ A writing one of
//!   them ∥ B writing the other: whether a merge comes before a write (which then copies, 1B)
//!   or after (the compare refuses it), every write lands in its writer's VM only.
//!
//! Devices that act during I/O: the swap device ([`SlowSwap`]) takes [`IO_STEPS`] scheduler
//! yields between the start of an I/O and its completion (a write takes the frame's bytes at its
//! start and lands at its end), so other operations run during it and two I/Os complete in
//! either order; it can fail the reads of chosen slots. The engine's physical memory
//! ([`YieldingMem`]) yields every [`CHUNK`] bytes of a bulk read, write or copy (a hypervisor
//! copy takes time). Guest loads and stores use the raw memory: atomic with their stage-2 check.
//!
//! Schedules: half from shuttle's PCT scheduler (depth [`PCT_DEPTH`]), half from its random
//! scheduler. PCT finds this kind of bug far sooner: a thread that yields (an I/O or a copy in
//! progress) drops to the lowest priority, so the others run to completion meanwhile, as beside a
//! slow device; the random scheduler interleaves step by step.
//!
//! CI: `make test` runs `cargo test -p vm --features shuttle --test interleave` ([`CI_SCHEDULES`]
//! schedules a scenario from the fixed seed [`CI_SEED`], a few seconds in all); each scenario
//! prints how many schedules it ran and how long it took. Shuttle's locks only work inside a
//! shuttle execution, so the other tests never run in this build and plain `cargo test -p vm`
//! skips this file (`required-features`). `make soak` runs 200,000 schedules a scenario from a
//! random seed. Knobs: `UVMHYP_INTERLEAVE_SCHEDULES=<n>` (a scenario),
//! `UVMHYP_INTERLEAVE_SEED=<n>|random`, `UVMHYP_INTERLEAVE_SCHEDULER=pct|random`.
//!
//! Replay: a failure prints the seed and count that reproduce the run, and shuttle prints the
//! failing schedule (a quoted hex string over a few lines);
//! `UVMHYP_INTERLEAVE_REPLAY='<that string>' cargo test -p vm --features shuttle --test interleave
//! -- --exact interleave_<scenario>` replays exactly that schedule.
#![forbid(unsafe_code)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use common::{anon_spec, cpu_frame, image_bytes, ipa, PAGE};
use shuttle::scheduler::{PctScheduler, RandomScheduler};
use shuttle::sync::Mutex;
use shuttle::thread;
use shuttle::{Config, Runner};
use vm::addr::{Access, Pa, Prot};
use vm::dedup::Dedup;
use vm::fault::{fault, FaultError, FaultFlags};
use vm::map::{Advice, EntrySpec, Inherit, Map};
use vm::object::{loan_to_anon, ImageObject, Object};
use vm::physmem::PhysMem;
use vm::pmap::Vmid;
use vm::sim::{RecordingTlb, SimMem};
use vm::swap::{SwapDevice, SwapIoError};
use vm::uvm::Uvm;

/// Schedules a scenario in CI.
const CI_SCHEDULES: usize = 10_000;
/// PCT's bug depth: the scenarios need up to two forced preemptions (three threads).
const PCT_DEPTH: usize = 3;
/// Attempts of a guest access or copy that keeps meeting BUSY pages (each attempt yields, so
/// the holder runs; only a page left BUSY for good exhausts them).
const RETRIES: usize = 10_000;
/// The seed CI explores from.
const CI_SEED: u64 = 0x5eed_0007;
/// Frames of the engine's pool in every scenario: small, so that freed frames are reused soon.
const FRAMES: usize = 24;

// ---- devices that take time ---------------------------------------------------------------------

/// Bytes a bulk access of [`YieldingMem`] moves between two scheduler yields.
const CHUNK: usize = PAGE / 64;
/// Scheduler yields a swap I/O takes between its start and its completion.
const IO_STEPS: usize = 16;

/// Physical memory whose bulk reads, writes and copies yield to the scheduler every [`CHUNK`]
/// bytes (a copy takes time; a descriptor's `read_u64`/`write_u64` does not yield).
struct YieldingMem(Arc<SimMem>);

impl PhysMem for YieldingMem {
    fn zero(&self, frame: Pa) {
        self.0.zero(frame)
    }
    fn copy(&self, dst: Pa, src: Pa) {
        let mut buf = vec![0u8; PAGE];
        self.read(src, &mut buf);
        self.write(dst, &buf);
    }
    fn read(&self, pa: Pa, buf: &mut [u8]) {
        for (k, chunk) in buf.chunks_mut(CHUNK).enumerate() {
            if k > 0 {
                thread::yield_now();
            }
            self.0.read(Pa(pa.0 + (k * CHUNK) as u64), chunk);
        }
    }
    fn write(&self, pa: Pa, buf: &[u8]) {
        for (k, chunk) in buf.chunks(CHUNK).enumerate() {
            if k > 0 {
                thread::yield_now();
            }
            self.0.write(Pa(pa.0 + (k * CHUNK) as u64), chunk);
        }
    }
    fn same(&self, a: Pa, b: Pa) -> bool {
        self.0.same(a, b)
    }
    fn hash(&self, frame: Pa) -> u64 {
        self.0.hash(frame)
    }
    fn read_u64(&self, pa: Pa) -> u64 {
        self.0.read_u64(pa)
    }
    fn write_u64(&self, pa: Pa, value: u64) {
        self.0.write_u64(pa, value)
    }
}

/// A swap device whose I/O takes [`IO_STEPS`] scheduler yields: a write takes the frame's bytes
/// at its start and lands on the slot only at the end; a read takes the slot's bytes at the end. Two I/Os in flight can thus complete in either order. Reads of slots in
/// `failing` fail (after the same delay).
struct SlowSwap {
    /// The device's DMA reaches memory directly (not through the yielding copies).
    dma: Arc<SimMem>,
    slots: Mutex<Vec<Option<Vec<u8>>>>,
    failing: Mutex<Vec<u32>>,
    /// Reads that failed.
    failed: AtomicU64,
}

impl SlowSwap {
    fn new(dma: Arc<SimMem>, n: u32) -> Arc<SlowSwap> {
        Arc::new(SlowSwap {
            dma,
            slots: Mutex::new(vec![None; n as usize]),
            failing: Mutex::new(Vec::new()),
            failed: AtomicU64::new(0),
        })
    }

    fn fail_reads_of(&self, slot: u32) {
        self.failing.lock().expect("lock").push(slot);
    }
}

impl SwapDevice for SlowSwap {
    fn slots(&self) -> u32 {
        self.slots.lock().expect("lock").len() as u32
    }

    fn read(&self, slot: u32, _mem: &dyn PhysMem, frame: Pa) -> Result<(), SwapIoError> {
        for _ in 0..IO_STEPS {
            thread::yield_now();
        }
        if self.failing.lock().expect("lock").contains(&slot) {
            self.failed.fetch_add(1, Ordering::Relaxed);
            return Err(SwapIoError);
        }
        let data = {
            let slots = self.slots.lock().expect("lock");
            let i = (slot as usize).checked_sub(1).ok_or(SwapIoError)?;
            slots.get(i).ok_or(SwapIoError)?.clone()
        };
        match data {
            Some(d) => self.dma.write(frame, &d),
            None => self.dma.zero(frame),
        }
        Ok(())
    }

    fn write(&self, slot: u32, _mem: &dyn PhysMem, frame: Pa) -> Result<(), SwapIoError> {
        let mut buf = vec![0u8; PAGE];
        self.dma.read(frame, &mut buf);
        for _ in 0..IO_STEPS {
            thread::yield_now();
        }
        let mut slots = self.slots.lock().expect("lock");
        let i = (slot as usize).checked_sub(1).ok_or(SwapIoError)?;
        *slots.get_mut(i).ok_or(SwapIoError)? = Some(buf);
        Ok(())
    }
}

// ---- the world of one schedule ------------------------------------------------------------------

struct World {
    raw: Arc<SimMem>,
    uvm: Arc<Uvm>,
    swap: Arc<SlowSwap>,
    image: Arc<ImageObject>,
    bytes: Arc<[u8]>,
}

impl World {
    fn new(slots: u32) -> World {
        let raw = Arc::new(SimMem::new(Pa(0x8000_0000), FRAMES));
        let mem = Arc::new(YieldingMem(raw.clone()));
        let uvm = Uvm::new(mem, Arc::new(RecordingTlb::counting()), raw.range());
        let swap = SlowSwap::new(raw.clone(), slots);
        uvm.set_swap(swap.clone());
        let bytes = image_bytes(0, 8 * PAGE);
        let image = ImageObject::new(&uvm, bytes.clone());
        World {
            raw,
            uvm,
            swap,
            image,
            bytes,
        }
    }

    /// A map with an anonymous read-write entry over pages `0..4`.
    fn anon_map(&self, vmid: u16) -> Arc<Map> {
        let m = Map::new(&self.uvm, Vmid(vmid)).expect("map");
        m.insert(anon_spec(0, 4, Prot::READ | Prot::WRITE))
            .expect("insert");
        m
    }

    /// A non-copy-on-write, writable mapping of the image's pages `0..4` at pages `4..8`.
    fn map_image_shared(&self, m: &Map) {
        let object: Arc<dyn Object> = self.image.clone();
        m.insert(EntrySpec {
            start: ipa(4),
            end: ipa(8),
            prot: Prot::READ | Prot::WRITE,
            max_prot: Prot::ALL,
            inherit: Inherit::Copy,
            advice: Advice::Normal,
            object: Some((object, 0)),
            anon: false,
            copy_on_write: false,
        })
        .expect("insert");
    }

    /// Image page `n`'s bytes.
    fn image_page(&self, n: usize) -> Vec<u8> {
        self.bytes[n * PAGE..(n + 1) * PAGE].to_vec()
    }

    /// The frame a guest access reaches, faulting until the descriptor allows it.
    fn touch(&self, m: &Map, page: u64, access: Access) -> Result<Pa, FaultError> {
        for _ in 0..RETRIES {
            if let Some(pa) = cpu_frame(m, ipa(page), access) {
                return Ok(pa);
            }
            match fault(m, ipa(page), access, FaultFlags::empty()) {
                Ok(_) | Err(FaultError::Restart) | Err(FaultError::NoMemory) => thread::yield_now(),
                Err(e) => return Err(e),
            }
        }
        panic!("vm{} page {page}: {access:?} never succeeds", m.vmid().0);
    }

    /// The guest writes the whole page `page` with `pattern(tag)`.
    fn write(&self, m: &Map, page: u64, tag: u8) {
        let pa = self.touch(m, page, Access::Write).expect("write fault");
        self.raw.write(pa, &pattern(tag));
    }

    /// The guest reads the whole page `page`.
    fn read(&self, m: &Map, page: u64) -> Result<Vec<u8>, FaultError> {
        let pa = self.touch(m, page, Access::Read)?;
        let mut buf = vec![0u8; PAGE];
        self.raw.read(pa, &mut buf);
        Ok(buf)
    }

    /// `copy_in` of a whole page, retried while the engine says Restart.
    fn copy_in(&self, m: &Map, page: u64) -> Vec<u8> {
        let mut buf = vec![0u8; PAGE];
        for _ in 0..RETRIES {
            match m.copy_in(ipa(page), &mut buf) {
                Ok(()) => return buf,
                Err(FaultError::Restart) | Err(FaultError::NoMemory) => thread::yield_now(),
                Err(e) => panic!("copy_in vm{} page {page}: {e:?}", m.vmid().0),
            }
        }
        panic!("copy_in vm{} page {page}: Restart forever", m.vmid().0);
    }

    /// Every stage-2 mapping of `maps` lies in an entry, allows no more than the entry, a frame
    /// mapped writable is mapped at no other (map, page), and no mapped frame is both wired and
    /// lent (a wiring pins a page writable in place, which a loan forbids).
    fn check_permissions(&self, maps: &[&Arc<Map>]) {
        let mut all: Vec<(u16, u64, Pa, Prot)> = Vec::new();
        for m in maps {
            m.stage2().for_each_mapping(|at, pa, prot| {
                all.push((m.vmid().0, at.0, pa, prot));
            });
            for &(vm, at, pa, _) in all.iter().filter(|x| x.0 == m.vmid().0) {
                let Some(pg) = self.uvm.page_at(pa) else {
                    continue;
                };
                let info = self.uvm.page_info(pg);
                assert!(
                    info.wire_count == 0 || info.loan_count == 0,
                    "frame {pa:?} at vm{vm} {at:#x} is wired ({}) and lent ({})",
                    info.wire_count,
                    info.loan_count
                );
            }
            for &(vm, at, pa, prot) in all.iter().filter(|x| x.0 == m.vmid().0) {
                match m.entry(vm::addr::Ipa(at)) {
                    Some(e) if e.prot.contains(prot) => {}
                    e => panic!(
                        "vm{vm} {at:#x} -> {pa:?} mapped {prot:?}, entry {:?}",
                        e.map(|e| e.prot)
                    ),
                }
            }
        }
        for w in all.iter().filter(|x| x.3.contains(Prot::WRITE)) {
            if let Some(o) = all.iter().find(|o| o.2 == w.2 && (o.0, o.1) != (w.0, w.1)) {
                panic!(
                    "frame {:?} writable at vm{} {:#x} and also mapped at vm{} {:#x} ({:?})",
                    w.2, w.0, w.1, o.0, o.1, o.3
                );
            }
        }
    }

    /// Drop every map and the image: every frame must be free and no swap slot used.
    fn teardown(self, maps: Vec<Arc<Map>>) {
        drop(maps);
        let World { uvm, image, .. } = self;
        drop(image);
        let (free, total) = (uvm.free_pages(), uvm.total_pages());
        assert_eq!(
            free,
            total,
            "teardown: {} of {total} frames leaked",
            total - free
        );
        let (_, used, _) = uvm.swap().expect("swap").counts();
        assert_eq!(used, 0, "teardown: {used} swap slots still used");
    }
}

/// A page full of bytes that tell `tag` apart from every other tag and from zero.
fn pattern(tag: u8) -> Vec<u8> {
    (0..PAGE)
        .map(|i| (i as u8).wrapping_mul(31) ^ tag.wrapping_mul(97) ^ (i >> 7) as u8 ^ 0x5a)
        .collect()
}

/// What `page` holds, for messages: a pattern, zeroes, or chunk by chunk what each holds.
fn which(page: &[u8]) -> String {
    let name = |b: &[u8], of: &dyn Fn(u8) -> Vec<u8>| -> String {
        match (0..=255u8).find(|&t| of(t) == b) {
            Some(t) => format!("pattern {t}"),
            None if b.iter().all(|&x| x == 0) => "zeroes".into(),
            None => "other bytes".into(),
        }
    };
    let whole = name(page, &pattern);
    if whole != "other bytes" || page.len() != PAGE {
        return whole;
    }
    let mut parts: Vec<(usize, String)> = Vec::new();
    for (k, c) in page.chunks(CHUNK).enumerate() {
        let n = name(c, &|t| pattern(t)[k * CHUNK..(k + 1) * CHUNK].to_vec());
        if parts.last().is_none_or(|p| p.1 != n) {
            parts.push((k * CHUNK, n));
        }
    }
    let parts: Vec<String> = parts
        .iter()
        .map(|(o, n)| format!("{n} from byte {o}"))
        .collect();
    parts.join(", ")
}

fn expect_page(what: &str, got: &[u8], want: &[u8]) {
    assert!(
        got == want,
        "{what}: got {}, want {}",
        which(got),
        which(want)
    );
}

fn spawn(f: impl FnOnce() + Send + 'static) -> thread::JoinHandle<()> {
    thread::spawn(f)
}

fn join(hs: Vec<thread::JoinHandle<()>>) {
    for h in hs {
        h.join().expect("thread");
    }
}

// ---- scenarios ----------------------------------------------------------------------------------

/// A page-out of A ∥ the removal of A's page ∥ a page-out of B, one swap slot; then B's page
/// must come back from swap with B's bytes.
fn slot_reuse() {
    let w = Arc::new(World::new(1));
    let (a, b) = (w.anon_map(1), w.anon_map(2));
    w.write(&a, 0, 1);
    w.write(&b, 0, 2);
    let hs = vec![
        spawn({
            let a = a.clone();
            move || {
                a.pageout(ipa(0));
            }
        }),
        spawn({
            let a = a.clone();
            move || a.remove(ipa(0), ipa(1)).expect("remove")
        }),
        spawn({
            let b = b.clone();
            move || {
                b.pageout(ipa(0));
            }
        }),
    ];
    join(hs);
    w.check_permissions(&[&a, &b]);
    expect_page("vm2 page 0", &w.read(&b, 0).expect("read"), &pattern(2));
    let w = Arc::into_inner(w).expect("world");
    w.teardown(vec![a, b]);
}

/// `copy_in` of A's page ∥ a write fault on it (1A) ∥ a page-out of it, then B writes a new page:
/// the copy returns A's bytes.
fn copy_vs_fault() {
    let w = Arc::new(World::new(8));
    let (a, b) = (w.anon_map(1), w.anon_map(2));
    w.write(&a, 0, 1);
    let copied = Arc::new(Mutex::new(Vec::new()));
    let hs = vec![
        spawn({
            let (w, a, copied) = (w.clone(), a.clone(), copied.clone());
            move || *copied.lock().expect("lock") = w.copy_in(&a, 0)
        }),
        spawn({
            let a = a.clone();
            move || {
                // Succeeds, or Restart while the page is BUSY.
                let r = fault(&a, ipa(0), Access::Write, FaultFlags::empty());
                assert!(
                    matches!(r, Ok(_) | Err(FaultError::Restart)),
                    "write fault: {r:?}"
                );
            }
        }),
        spawn({
            let (w, a, b) = (w.clone(), a.clone(), b.clone());
            move || {
                a.pageout(ipa(0));
                w.write(&b, 1, 2);
            }
        }),
    ];
    join(hs);
    let copied = copied.lock().expect("lock").clone();
    expect_page("copy_in of vm1 page 0", &copied, &pattern(1));
    w.check_permissions(&[&a, &b]);
    expect_page("vm1 page 0", &w.read(&a, 0).expect("read"), &pattern(1));
    expect_page("vm2 page 1", &w.read(&b, 1).expect("read"), &pattern(2));
    let w = Arc::into_inner(w).expect("world");
    w.teardown(vec![a, b]);
}

/// A maps image page 0 writable (not copy-on-write) and has written it; a loan of that page
/// installed into B's amap ∥ A writing it again. Afterwards A writes once more: B must not see
/// that write (B holds what the page was at the loan: pattern 1 or 2).
fn loan_vs_writer() {
    let w = Arc::new(World::new(8));
    let (a, b) = (w.anon_map(1), w.anon_map(2));
    w.map_image_shared(&a);
    w.write(&a, 4, 1);
    let hs = vec![
        spawn({
            let (w, b) = (w.clone(), b.clone());
            move || match loan_to_anon(&w.uvm, w.image.as_ref(), 0) {
                Ok(anon) => b.install_anon(ipa(0), anon).expect("install_anon"),
                Err(e) => panic!("loan_to_anon: {e:?}"),
            }
        }),
        spawn({
            let (w, a) = (w.clone(), a.clone());
            move || w.write(&a, 4, 2)
        }),
    ];
    join(hs);
    let lent = w.read(&b, 0).expect("read");
    assert!(
        lent == pattern(1) || lent == pattern(2),
        "vm2's loaned page: {}",
        which(&lent)
    );
    w.check_permissions(&[&a, &b]);
    w.write(&a, 4, 3);
    expect_page("vm1 page 4", &w.read(&a, 4).expect("read"), &pattern(3));
    expect_page(
        "vm2's loaned page after vm1 wrote",
        &w.read(&b, 0).expect("read"),
        &lent,
    );
    w.check_permissions(&[&a, &b]);
    let w = Arc::into_inner(w).expect("world");
    w.teardown(vec![a, b]);
}

/// A loan of image page 0 to VM B ∥ VM A wiring its shared mapping of that page: the loan is
/// refused (`Wired`) or the wiring's write breaks it; a page is never wired and lent at once.
fn loan_vs_wire() {
    let w = Arc::new(World::new(8));
    let (a, b) = (w.anon_map(1), w.anon_map(2));
    w.map_image_shared(&a);
    w.write(&a, 4, 1);
    let hs = vec![
        spawn({
            let (w, b) = (w.clone(), b.clone());
            move || {
                // `Again`: the page is BUSY for the wiring meanwhile; try again, as a caller must.
                for _ in 0..RETRIES {
                    match loan_to_anon(&w.uvm, w.image.as_ref(), 0) {
                        Ok(anon) => return b.install_anon(ipa(0), anon).expect("install_anon"),
                        Err(vm::object::PagerError::Wired) => return,
                        Err(vm::object::PagerError::Again(_)) => thread::yield_now(),
                        Err(e) => panic!("loan_to_anon: {e:?}"),
                    }
                }
                panic!("loan_to_anon: Again forever");
            }
        }),
        spawn({
            let a = a.clone();
            move || {
                // A page BUSY for the loan makes the wiring fault restart, as a guest's would.
                for _ in 0..RETRIES {
                    match a.wire(ipa(4), ipa(5)) {
                        Err(vm::map::MapError::Fault(vm::fault::FaultError::Restart)) => {
                            thread::yield_now()
                        }
                        r => return r.expect("wire"),
                    }
                }
                panic!("wire: Restart forever");
            }
        }),
    ];
    join(hs);
    w.check_permissions(&[&a, &b]);
    let lent = w.read(&b, 0).expect("read");
    assert!(
        lent == pattern(1) || lent.iter().all(|&x| x == 0),
        "vm2 page 0 (the image's bytes when lent, zeroes when refused): {}",
        which(&lent)
    );
    a.unwire(ipa(4), ipa(5)).expect("unwire");
    let w = Arc::into_inner(w).expect("world");
    w.teardown(vec![a, b]);
}

/// A loan of image page 1 (made before) installed into B's page 0 ∥ B's page 0 removed and mapped again as new
/// anonymous memory: B reads the image's bytes (installed into the new entry) or zeroes (the
/// install came first, or met the hole and failed), and nothing leaks either way.
fn install_vs_remove() {
    let w = Arc::new(World::new(8));
    let b = w.anon_map(2);
    // Lent before the schedule: reading the image page in takes long, and the race is the install.
    let anon = loan_to_anon(&w.uvm, w.image.as_ref(), vm::addr::PAGE_SIZE).expect("loan_to_anon");
    let hs = vec![
        spawn({
            let b = b.clone();
            move || match b.install_anon(ipa(0), anon) {
                Ok(()) | Err(vm::map::MapError::NoEntry) => {}
                Err(e) => panic!("install_anon: {e:?}"),
            }
        }),
        spawn({
            let b = b.clone();
            move || {
                b.remove(ipa(0), ipa(1)).expect("remove");
                // The hypervisor does something else before mapping the hole again.
                thread::yield_now();
                b.insert(anon_spec(0, 1, Prot::READ | Prot::WRITE))
                    .expect("insert");
            }
        }),
    ];
    join(hs);
    w.check_permissions(&[&b]);
    let got = w.read(&b, 0).expect("read");
    assert!(
        got == w.image_page(1) || got.iter().all(|&x| x == 0),
        "vm2 page 0: {} (neither image page 1 nor zeroes)",
        which(&got)
    );
    let w = Arc::into_inner(w).expect("world");
    w.teardown(vec![b]);
}

/// A fork of A ∥ A writing page 0 ∥ A's page 1 paged out: the child sees page 0 as before or
/// after the write, page 1 as it was; the parent sees its write.
fn fork_vs_write() {
    let w = Arc::new(World::new(8));
    let a = w.anon_map(1);
    w.write(&a, 0, 1);
    w.write(&a, 1, 2);
    let child = Arc::new(Mutex::new(None));
    let hs = vec![
        spawn({
            let (a, child) = (a.clone(), child.clone());
            move || *child.lock().expect("lock") = Some(a.fork(Vmid(3)).expect("fork"))
        }),
        spawn({
            let (w, a) = (w.clone(), a.clone());
            move || w.write(&a, 0, 3)
        }),
        spawn({
            let a = a.clone();
            move || {
                a.pageout(ipa(1));
            }
        }),
    ];
    join(hs);
    let c = child.lock().expect("lock").take().expect("child");
    w.check_permissions(&[&a, &c]);
    let c0 = w.read(&c, 0).expect("read");
    assert!(
        c0 == pattern(1) || c0 == pattern(3),
        "child page 0: {}",
        which(&c0)
    );
    expect_page("child page 1", &w.read(&c, 1).expect("read"), &pattern(2));
    expect_page("parent page 0", &w.read(&a, 0).expect("read"), &pattern(3));
    expect_page("parent page 1", &w.read(&a, 1).expect("read"), &pattern(2));
    w.write(&c, 0, 4);
    expect_page("parent page 0", &w.read(&a, 0).expect("read"), &pattern(3));
    w.check_permissions(&[&a, &c]);
    let w = Arc::into_inner(w).expect("world");
    w.teardown(vec![a, c]);
}

/// After a fork, the shared anon of page 0 is paged out; parent and child fault it in at once
/// (slow reads) ∥ the parent's page 1 is paged out. With `fail`, the slot's reads fail: both must
/// see `Io`.
fn swapin_shared(fail: bool) {
    let w = Arc::new(World::new(8));
    let a = w.anon_map(1);
    w.write(&a, 0, 1);
    w.write(&a, 1, 2);
    let c = a.fork(Vmid(3)).expect("fork");
    assert!(a.pageout(ipa(0)), "page-out before the schedule");
    if fail {
        let slot = a.anon_at(ipa(0)).expect("anon").lock().swslot;
        match slot {
            vm::anon::SwapSlot::Slot(s) => w.swap.fail_reads_of(s),
            s => panic!("paged-out anon has {s:?}"),
        }
    }
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut hs = Vec::new();
    for m in [a.clone(), c.clone()] {
        let (w, results) = (w.clone(), results.clone());
        hs.push(spawn(move || {
            let r = w.read(&m, 0);
            results.lock().expect("lock").push((m.vmid().0, r));
        }));
    }
    hs.push(spawn({
        let a = a.clone();
        move || {
            a.pageout(ipa(1));
        }
    }));
    join(hs);
    for (vm, r) in results.lock().expect("lock").iter() {
        match (fail, r) {
            (false, Ok(got)) => expect_page(&format!("vm{vm} page 0"), got, &pattern(1)),
            (true, Err(FaultError::Io)) => {}
            (_, r) => panic!(
                "vm{vm} page 0 (read failing: {fail}): {:?}",
                r.as_ref().map(|p| which(p))
            ),
        }
    }
    w.check_permissions(&[&a, &c]);
    expect_page("vm1 page 1", &w.read(&a, 1).expect("read"), &pattern(2));
    let w = Arc::into_inner(w).expect("world");
    w.teardown(vec![a, c]);
}

/// A's page 0 is paged out and its slot's reads fail; A faults it in ∥ A removes it. When the
/// device failed the read, the slot must end BAD (never handed out again), whoever freed the anon.
fn swapin_vs_remove_failing() {
    let w = Arc::new(World::new(4));
    let a = w.anon_map(1);
    w.write(&a, 0, 1);
    assert!(a.pageout(ipa(0)), "page-out before the schedule");
    match a.anon_at(ipa(0)).expect("anon").lock().swslot {
        vm::anon::SwapSlot::Slot(s) => w.swap.fail_reads_of(s),
        s => panic!("paged-out anon has {s:?}"),
    }
    let hs = vec![
        spawn({
            let (w, a) = (w.clone(), a.clone());
            move || match w.read(&a, 0) {
                Err(FaultError::Io) | Err(FaultError::NoMapping) => {}
                r => panic!("vm1 page 0: {:?}", r.map(|p| which(&p))),
            }
        }),
        spawn({
            let a = a.clone();
            move || a.remove(ipa(0), ipa(1)).expect("remove")
        }),
    ];
    join(hs);
    let failed = w.swap.failed.load(Ordering::Relaxed);
    let (_, used, bad) = w.uvm.swap().expect("swap").counts();
    assert_eq!(
        (used, bad),
        (0, u32::from(failed > 0)),
        "swap slots (used, bad) after {failed} failed reads"
    );
    let w = Arc::into_inner(w).expect("world");
    w.teardown(vec![a]);
}

/// Wiring A's pages 0..2 ∥ page-outs of both ∥ the pagedaemon: once wired, both pages are mapped
/// wired with their bytes.
fn wire_vs_pageout() {
    let w = Arc::new(World::new(8));
    let a = w.anon_map(1);
    w.write(&a, 0, 1);
    w.write(&a, 1, 2);
    let hs = vec![
        spawn({
            let a = a.clone();
            move || loop {
                match a.wire(ipa(0), ipa(2)) {
                    Ok(()) => break,
                    Err(vm::map::MapError::Fault(FaultError::Restart)) => thread::yield_now(),
                    Err(e) => panic!("wire: {e:?}"),
                }
            }
        }),
        spawn({
            let a = a.clone();
            move || {
                a.pageout(ipa(0));
                a.pageout(ipa(1));
            }
        }),
        spawn({
            let w = w.clone();
            move || {
                w.uvm.reclaim(4);
            }
        }),
    ];
    join(hs);
    for pg in 0..2 {
        assert!(
            a.stage2().is_wired(ipa(pg)),
            "vm1 page {pg} not mapped wired"
        );
    }
    w.check_permissions(&[&a]);
    expect_page("vm1 page 0", &w.read(&a, 0).expect("read"), &pattern(1));
    expect_page("vm1 page 1", &w.read(&a, 1).expect("read"), &pattern(2));
    a.unwire(ipa(0), ipa(2)).expect("unwire");
    let w = Arc::into_inner(w).expect("world");
    w.teardown(vec![a]);
}

// ---- the explorer -------------------------------------------------------------------------------

/// A and B hold the same bytes in pages 0 and 1, seen once by the scanner; its merging pass ∥ A
/// writing page 0 ∥ B writing page 1. Each VM then reads its own writes and the other's
/// unwritten page; writes after the pass stay private too.
fn dedup_vs_write() {
    let w = Arc::new(World::new(1));
    let (a, b) = (w.anon_map(1), w.anon_map(2));
    for m in [&a, &b] {
        w.write(m, 0, 1);
        w.write(m, 1, 2);
    }
    let d = Arc::new(Dedup::new(&w.uvm));
    d.enable_map(&a);
    d.enable_map(&b);
    while d.passes() == 0 {
        d.scan(1);
    }
    let hs = vec![
        spawn({
            let d = d.clone();
            move || {
                d.scan(8);
            }
        }),
        spawn({
            let (w, a) = (w.clone(), a.clone());
            move || w.write(&a, 0, 3)
        }),
        spawn({
            let (w, b) = (w.clone(), b.clone());
            move || w.write(&b, 1, 4)
        }),
    ];
    join(hs);
    w.check_permissions(&[&a, &b]);
    expect_page("vm1 page 0", &w.read(&a, 0).expect("read"), &pattern(3));
    expect_page("vm2 page 0", &w.read(&b, 0).expect("read"), &pattern(1));
    expect_page("vm1 page 1", &w.read(&a, 1).expect("read"), &pattern(2));
    expect_page("vm2 page 1", &w.read(&b, 1).expect("read"), &pattern(4));
    w.write(&b, 0, 5);
    w.write(&a, 1, 6);
    expect_page("vm1 page 0", &w.read(&a, 0).expect("read"), &pattern(3));
    expect_page("vm2 page 1", &w.read(&b, 1).expect("read"), &pattern(4));
    w.check_permissions(&[&a, &b]);
    drop(d);
    let w = Arc::into_inner(w).expect("world");
    w.teardown(vec![a, b]);
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    if v.trim() == "random" {
        return Some(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64),
        );
    }
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: expected a number")),
    )
}

/// Explore `scenario` (or replay one schedule of it), printing what ran: half the schedules
/// from shuttle's PCT scheduler (depth [`PCT_DEPTH`]), half from its random scheduler
/// (`UVMHYP_INTERLEAVE_SCHEDULER=pct` or `random` runs them all under one). On a
/// failure, which scheduler found it, after how many schedules and how long.
fn explore(name: &str, scenario: fn()) {
    if let Ok(s) = std::env::var("UVMHYP_INTERLEAVE_REPLAY") {
        // Shuttle prints the schedule over several lines, quoted: keep only its hex digits.
        let s: String = s.chars().filter(char::is_ascii_hexdigit).collect();
        println!("interleave {name}: replaying {s}");
        shuttle::replay(scenario, &s);
        return;
    }
    let schedules = env_u64("UVMHYP_INTERLEAVE_SCHEDULES").map_or(CI_SCHEDULES, |n| n as usize);
    let seed = env_u64("UVMHYP_INTERLEAVE_SEED").unwrap_or(CI_SEED);
    let replay = format!("UVMHYP_INTERLEAVE_SEED={seed} UVMHYP_INTERLEAVE_SCHEDULES={schedules}");
    // This scenario's own count (the tests of this file run in parallel).
    let run = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let counted = {
        let run = run.clone();
        move || {
            run.fetch_add(1, Ordering::Relaxed);
            scenario();
        }
    };
    let only = std::env::var("UVMHYP_INTERLEAVE_SCHEDULER").ok();
    let schedulers: Vec<&str> = ["pct", "random"]
        .into_iter()
        .filter(|s| only.as_deref().is_none_or(|o| o.trim() == *s))
        .collect();
    assert!(
        !schedulers.is_empty(),
        "UVMHYP_INTERLEAVE_SCHEDULER={only:?}: pct or random"
    );
    let half = schedules.div_ceil(schedulers.len());
    for which in schedulers {
        let r = std::panic::catch_unwind(|| match which {
            "pct" => Runner::new(
                PctScheduler::new_from_seed(seed, PCT_DEPTH, half),
                Config::default(),
            )
            .run(counted.clone()),
            _ => Runner::new(
                RandomScheduler::new_from_seed(seed, half),
                Config::default(),
            )
            .run(counted.clone()),
        });
        let ran = run.load(Ordering::Relaxed);
        let took = start.elapsed().as_secs_f64();
        if let Err(e) = r {
            println!(
                "interleave {name}: FAILED under the {which} scheduler at schedule {ran} after \
                 {took:.2} s ({replay})"
            );
            std::panic::resume_unwind(e);
        }
    }
    let ran = run.load(Ordering::Relaxed);
    println!(
        "interleave {name}: {ran} schedules in {:.2} s ({replay})",
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn interleave_slot_reuse() {
    explore("slot_reuse", slot_reuse);
}

#[test]
fn interleave_copy_vs_fault() {
    explore("copy_vs_fault", copy_vs_fault);
}

#[test]
fn interleave_loan_vs_writer() {
    explore("loan_vs_writer", loan_vs_writer);
}

#[test]
fn interleave_loan_vs_wire() {
    explore("loan_vs_wire", loan_vs_wire);
}

#[test]
fn interleave_install_vs_remove() {
    explore("install_vs_remove", install_vs_remove);
}

#[test]
fn interleave_fork_vs_write() {
    explore("fork_vs_write", fork_vs_write);
}

#[test]
fn interleave_swapin_shared() {
    explore("swapin_shared", || swapin_shared(false));
}

#[test]
fn interleave_swapin_shared_failing() {
    explore("swapin_shared_failing", || swapin_shared(true));
}

#[test]
fn interleave_swapin_vs_remove_failing() {
    explore("swapin_vs_remove_failing", swapin_vs_remove_failing);
}

#[test]
fn interleave_wire_vs_pageout() {
    explore("wire_vs_pageout", wire_vs_pageout);
}

#[test]
fn interleave_dedup_vs_write() {
    explore("dedup_vs_write", dedup_vs_write);
}
