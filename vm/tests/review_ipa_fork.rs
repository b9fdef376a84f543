//! Regression tests for the engine bugs of issue 7 found by review in the stage-2 IPA checks,
//! the sequential deactivate-behind, the one-step clear of a stage-2 table, and fork. Each
//! test's doc says what the bug was; each failed before its fix.
#![forbid(unsafe_code)]

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use vm::addr::{Access, Ipa, Pa, Prot, PAGE_SIZE};
use vm::fault::{fault, FaultError, FaultFlags};
use vm::map::{Advice, EntrySpec, Map, MapError};
use vm::physmem::PhysMem;
use vm::pmap::{Descriptor, EnterFlags, Pmap, PmapError, Stage2, Stage2Attributes, Vmid};
use vm::sim::{RecordingTlb, SimMem};
use vm::uvm::Uvm;

/// The same guest page one IPA space higher: equal to `at` in every bit the table indexes.
fn alias(at: Ipa) -> Ipa {
    Ipa(at.0 + Stage2::IPA_LIMIT)
}

/// Bug 5: IPAs at or above 2^40 aliased low ones. `Stage2`'s lookups (`extract`, `descriptor`,
/// `clear_access`, `unwire`) did no range check and the level-1 index is masked to the root's
/// 1024 entries, so `RAM + 2^40` walked to RAM page 0: `copy_in` there returned page 0's bytes
/// (and `copy_out` wrote them), `clear_access` cleared page 0's access flag.
#[test]
fn ipas_beyond_the_ipa_space_do_not_alias_low_ones() {
    let env = Env::new(64, 8);
    let map = Map::new(&env.uvm, Vmid(1)).unwrap();
    map.insert(anon_spec(0, 4, Prot::READ | Prot::WRITE))
        .unwrap();
    map.copy_out(ipa(0), &[0x5a; 8]).unwrap();
    let s2 = map.stage2();
    let low = s2.descriptor(ipa(0));
    assert!(low.attributes().contains(Stage2Attributes::AF));

    let high = alias(ipa(0));
    let mut buf = [0u8; 8];
    assert_eq!(map.copy_in(high, &mut buf), Err(FaultError::NoMapping));
    assert_eq!(buf, [0; 8], "no byte of page 0 came back");
    assert_eq!(map.copy_out(high, &[0xa5; 8]), Err(FaultError::NoMapping));
    assert_eq!(s2.descriptor(high), Descriptor::INVALID);
    assert_eq!(s2.extract(high), None);
    assert_eq!(map.mapped_page(high), None);
    assert!(!s2.is_wired(high));
    assert!(!s2.clear_access(high), "no access flag out there");
    s2.unwire(high);
    assert_eq!(s2.descriptor(ipa(0)), low, "page 0's descriptor untouched");
    let mut back = [0u8; 8];
    map.copy_in(ipa(0), &mut back).unwrap();
    assert_eq!(back, [0x5a; 8], "page 0's bytes untouched");
}

/// Bug 5, the public entries: each refuses an IPA outside the space with its error (none
/// panics, none reaches a low page).
#[test]
fn public_entries_refuse_ipas_outside_the_ipa_space() {
    let env = Env::new(64, 8);
    let map = Map::new(&env.uvm, Vmid(1)).unwrap();
    map.insert(anon_spec(0, 4, Prot::READ | Prot::WRITE))
        .unwrap();
    map.copy_out(ipa(0), &[1]).unwrap();
    let high = alias(ipa(0));
    let past = Ipa(Stage2::IPA_LIMIT);
    let rw = Prot::READ | Prot::WRITE;
    assert_eq!(
        map.insert(EntrySpec::anon(high, high.add_pages(1), rw)),
        Err(MapError::BadRange)
    );
    assert_eq!(
        map.insert(EntrySpec::anon(
            Ipa(past.0 - PAGE_SIZE),
            past.add_pages(1),
            rw
        )),
        Err(MapError::BadRange)
    );
    for access in [Access::Read, Access::Write, Access::Exec] {
        assert_eq!(
            fault(&map, high, access, FaultFlags::empty()),
            Err(FaultError::NoMapping)
        );
    }
    let end = high.add_pages(1);
    assert_eq!(map.remove(high, end), Err(MapError::BadRange));
    assert_eq!(map.protect(high, end, Prot::NONE), Err(MapError::BadRange));
    assert_eq!(map.wire(high, end), Err(MapError::BadRange));
    assert_eq!(map.unwire(high, end), Err(MapError::BadRange));
    assert_eq!(
        map.advise(high, end, Advice::Random),
        Err(MapError::BadRange)
    );
    assert!(!map.contains(high) && map.entry(high).is_none() && map.anon_at(high).is_none());
    assert!(!map.pageout(high));
    let pa = env.uvm.pa(vm::addr::PageIdx(0));
    assert_eq!(
        map.stage2().enter(high, pa, rw, EnterFlags::empty()),
        Err(PmapError::OutOfRange)
    );
    assert_eq!(map.stage2().mapped_pages(high, 4, false), 0);
    let mut b = [0u8];
    map.copy_in(ipa(0), &mut b).unwrap();
    assert_eq!(b, [1]);
}

/// Bug 6: SEQUENTIAL deactivate-behind kept the reference bit. The seed's deactivation
/// (`uvm_pagedeactivate`) clears the page's reference (`pmap_clear_reference`); here the pages
/// behind a sequential fault went to the inactive queue with their stage-2 access flags set, so
/// the pagedaemon's clock saw them referenced and gave them a second chance on the active queue
/// they should not have had, reclaiming other pages first.
#[test]
fn sequential_deactivate_behind_clears_the_reference() {
    let env = Env::new(128, 64);
    let map = Map::new(&env.uvm, Vmid(1)).unwrap();
    map.insert(EntrySpec {
        advice: Advice::Sequential,
        ..anon_spec(0, 32, Prot::READ | Prot::WRITE)
    })
    .unwrap();
    for n in 0..32 {
        map.copy_out(ipa(n), &[n as u8 + 1]).unwrap();
    }
    // Page 23 is behind each of the faults at 24..=31 (8 pages back), and nothing touched it
    // after the last of them.
    let pg = map.mapped_page(ipa(23)).map(|(pg, _)| pg).unwrap();
    let pa = env.uvm.pa(pg);
    assert_eq!(
        env.uvm.page_info(pg).queue,
        vm::page::Queue::Inactive,
        "deactivated behind"
    );
    assert!(
        !env.uvm.rmap().is_referenced(pa),
        "a page deactivated behind keeps no reference"
    );
    assert!(
        !map.stage2()
            .descriptor(ipa(23))
            .attributes()
            .contains(Stage2Attributes::AF),
        "its stage-2 access flag is clear"
    );
    // Still mapped: the guest's next access only sets the flag again.
    let mut b = [0u8];
    map.copy_in(ipa(23), &mut b).unwrap();
    assert_eq!(b, [24]);
}

/// Which `PhysMem` methods wrote into a watched range of frames.
#[derive(Default)]
struct WriteLog {
    watch: Option<(Pa, Pa)>,
    writes: Vec<&'static str>,
}

/// Something to run inside a `PhysMem::write` (while the page written is held BUSY).
type Hook = Box<dyn FnOnce() + Send>;

/// Physical memory that records the methods writing into the watched range, and runs a hook
/// once inside the next `write` (before writing).
struct Watched {
    mem: SimMem,
    log: Mutex<WriteLog>,
    hook: Mutex<Option<Hook>>,
}

impl Watched {
    fn new(frames: usize) -> Arc<Watched> {
        Arc::new(Watched {
            mem: SimMem::new(Pa(0x8000_0000), frames),
            log: Mutex::new(WriteLog::default()),
            hook: Mutex::new(None),
        })
    }

    /// An engine over this memory.
    fn uvm(self: &Arc<Watched>) -> Arc<Uvm> {
        let range = self.mem.range();
        Uvm::new(self.clone(), Arc::new(RecordingTlb::counting()), range)
    }

    fn note(&self, method: &'static str, pa: Pa) {
        let mut log = self.log.lock().unwrap();
        if log.watch.is_some_and(|(lo, hi)| lo <= pa && pa < hi) {
            log.writes.push(method);
        }
    }
}

impl PhysMem for Watched {
    fn zero(&self, frame: Pa) {
        self.note("zero", frame);
        self.mem.zero(frame)
    }
    fn copy(&self, dst: Pa, src: Pa) {
        self.note("copy", dst);
        self.mem.copy(dst, src)
    }
    fn read(&self, pa: Pa, buf: &mut [u8]) {
        self.mem.read(pa, buf)
    }
    fn write(&self, pa: Pa, buf: &[u8]) {
        let hook = self.hook.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        self.note("write", pa);
        self.mem.write(pa, buf)
    }
    fn same(&self, a: Pa, b: Pa) -> bool {
        self.mem.same(a, b)
    }
    fn hash(&self, frame: Pa) -> u64 {
        self.mem.hash(frame)
    }
    fn read_u64(&self, pa: Pa) -> u64 {
        self.mem.read_u64(pa)
    }
    fn write_u64(&self, pa: Pa, value: u64) {
        self.note("write_u64", pa);
        self.mem.write_u64(pa, value)
    }
}

/// `Stage2::clear` (fork's way of write-protecting the parent) zeroed the live root with
/// `PhysMem::zero` while the VM's other vCPUs may be walking it: only `write_u64` promises a
/// walker sees a whole old or new descriptor (single-copy atomicity), so a walker could read a
/// torn level-1 descriptor. Break-before-make writes each valid descriptor invalid with
/// `write_u64`.
#[test]
fn clear_writes_the_live_root_with_single_copy_atomic_stores() {
    let mem = Watched::new(256);
    let uvm = mem.uvm();
    let map = Map::new(&uvm, Vmid(1)).unwrap();
    // Two level-1 slots in use (RAM and RAM + 1 GiB).
    map.insert(anon_spec(0, 4, Prot::READ | Prot::WRITE))
        .unwrap();
    let gib = (1 << 30) / PAGE_SIZE;
    map.insert(anon_spec(gib, 4, Prot::READ | Prot::WRITE))
        .unwrap();
    map.copy_out(ipa(0), &[7]).unwrap();
    map.copy_out(ipa(gib), &[8]).unwrap();
    let root = map.stage2().root();
    mem.log.lock().unwrap().watch = Some((root, root.add_pages(Stage2::ROOT_FRAMES as u64)));
    let child = map.fork(Vmid(2)).unwrap();
    let writes = std::mem::take(&mut mem.log.lock().unwrap().writes);
    assert_eq!(
        map.stage2().resident(),
        0,
        "fork cleared the parent's table"
    );
    assert_eq!(
        writes,
        ["write_u64", "write_u64"],
        "each valid level-1 descriptor, and only through write_u64"
    );
    let mut b = [0u8];
    map.copy_in(ipa(gib), &mut b).unwrap();
    child.copy_in(ipa(0), &mut b[..]).unwrap();
    assert_eq!(b, [7]);
}

/// A COPY fork of a wired entry copies its resident anons at once (the seed's `amap_cow_now`),
/// so the parent's wired frames never change. An anon whose page was BUSY (here: held by a
/// `copy_out` on another CPU, which holds no map lock while it copies) was shared instead, with
/// `an_ref` 2: the parent's next write took case 1B and replaced the wired frame. The seed waits
/// for the page and starts over; here the fork is refused as transient (`MapError::Busy`), and
/// the retry copies.
#[test]
fn wired_copy_fork_never_shares_a_busy_anon() {
    let mem = Watched::new(256);
    let uvm = mem.uvm();
    let map = Map::new(&uvm, Vmid(1)).unwrap();
    map.insert(anon_spec(0, 4, Prot::READ | Prot::WRITE))
        .unwrap();
    map.copy_out(ipa(1), &[0x11]).unwrap();
    map.wire(ipa(0), ipa(4)).unwrap();
    let wired = map.mapped_page(ipa(1)).unwrap().0;

    // Fork while the copy_out below holds page 1 BUSY.
    type Forked = Option<Result<Arc<Map>, MapError>>;
    let during: Arc<Mutex<Forked>> = Arc::default();
    let (m, d) = (map.clone(), during.clone());
    *mem.hook.lock().unwrap() = Some(Box::new(move || {
        *d.lock().unwrap() = Some(m.fork(Vmid(2)));
    }));
    map.copy_out(ipa(1), &[0x22]).unwrap();
    let during = during.lock().unwrap().take().expect("the hook ran");
    let child = match during {
        Ok(child) => child,
        Err(e) => {
            assert_eq!(e, MapError::Busy, "refused only as transient");
            assert!(!map.entry(ipa(1)).unwrap().needs_copy, "parent untouched");
            map.fork(Vmid(2)).unwrap()
        }
    };
    let (pa, ca) = (map.anon_at(ipa(1)).unwrap(), child.anon_at(ipa(1)).unwrap());
    assert!(!Arc::ptr_eq(&pa, &ca), "the child got a copy, not the anon");
    map.copy_out(ipa(1), &[0x33]).unwrap();
    assert_eq!(
        map.mapped_page(ipa(1)).map(|(pg, _)| pg),
        Some(wired),
        "the parent's wired frame is never replaced"
    );
    let mut b = [0u8];
    child.copy_in(ipa(1), &mut b).unwrap();
    assert_ne!(b, [0x33], "the child does not see the parent's later write");
    map.copy_in(ipa(1), &mut b).unwrap();
    assert_eq!(b, [0x33]);
}

/// The first write after a fork copied the whole entry's amap (`needs_copy` cleared for all of
/// it) under the map write lock: for a 256 MiB entry, 65536 anons referenced and
/// write-protected in one fault (~5 ms with every vCPU of the VM stopped on the lock). As the
/// seed's fault path does for a new amap (`amap_copy` with `canchunk`), the copy is chunked:
/// the entry is clipped to the `AMAP_CHUNK_PAGES`-aligned chunk around the fault and only that
/// chunk's slots are copied; the rest of the entry keeps `needs_copy` and the shared amap.
#[test]
fn first_write_after_fork_copies_only_a_chunk_of_the_amap() {
    use vm::amap::AMAP_CHUNK_PAGES as CHUNK;
    let env = Env::new(2048, 8);
    let map = Map::new(&env.uvm, Vmid(1)).unwrap();
    let pages = 512;
    map.insert(anon_spec(0, pages, Prot::READ | Prot::WRITE))
        .unwrap();
    for n in 0..pages {
        map.copy_out(ipa(n), &[n as u8]).unwrap();
    }
    let child = map.fork(Vmid(2)).unwrap();
    let at = 100;
    map.copy_out(ipa(at), &[0xee]).unwrap();

    let first = at / CHUNK * CHUNK;
    let chunk = map.entry(ipa(at)).unwrap();
    assert_eq!((chunk.start, chunk.end), (ipa(first), ipa(first + CHUNK)));
    assert!(!chunk.needs_copy);
    assert_eq!(
        chunk.aref.as_ref().unwrap().amap.lock().nslots(),
        CHUNK as usize
    );
    let entries = map.entries();
    assert_eq!(entries.len(), 3, "{entries:?}");
    for e in [&entries[0], &entries[2]] {
        assert!(e.needs_copy, "the rest still shares the amap: {e:?}");
    }
    assert_eq!(
        (
            entries[0].start,
            entries[0].end,
            entries[2].start,
            entries[2].end
        ),
        (ipa(0), ipa(first), ipa(first + CHUNK), ipa(pages))
    );
    assert_eq!(child.entries().len(), 1, "the child's entry is untouched");

    // Copy-on-write still holds everywhere: the parent's writes in and out of the chunk stay
    // its own, the child keeps the fork-time bytes and its own writes stay its own.
    map.copy_out(ipa(first + 1), &[0xe1]).unwrap();
    map.copy_out(ipa(300), &[0xe3]).unwrap();
    child.copy_out(ipa(301), &[0xc1]).unwrap();
    let read = |m: &Map, n: u64| {
        let mut b = [0u8];
        m.copy_in(ipa(n), &mut b).unwrap();
        b[0]
    };
    for n in 0..pages {
        let parent = match n {
            100 => 0xee,
            _ if n == first + 1 => 0xe1,
            300 => 0xe3,
            _ => n as u8,
        };
        let kid = if n == 301 { 0xc1 } else { n as u8 };
        assert_eq!((read(&map, n), read(&child, n)), (parent, kid), "page {n}");
    }
    assert_eq!(
        map.entries().len(),
        5,
        "the write at 300 copied its own chunk"
    );
}
