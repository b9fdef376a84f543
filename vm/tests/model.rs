//! Model-based property test of the fault engine.
//!
//! Random sequences of operations run against the real engine (maps, amaps, anons, image objects,
//! the stage-2 table, the pagedaemon and an in-memory swap device that can be told to fail) and
//! against a reference model that knows only what a guest may observe: the bytes of every page of
//! every map, the protection of every page, and which accesses must fail and how.
//!
//! The CPU is simulated: an access first looks at the stage-2 descriptor (valid, access flag,
//! S2AP/XN); only if the descriptor refuses it is `fault` called, and the access is retried. So a
//! descriptor that allows too much is caught by the contents (a write lands where the model says
//! it must not), and one that allows too little costs a fault that must then succeed.
//!
//! After every step: every stage-2 mapping lies inside an entry, grants no more than the entry's
//! protection, maps a frame whose words equal the model's bytes for that map and IPA, and a
//! writable frame is mapped nowhere else except where the model says the same memory is seen
//! (SHARE inheritance, or a non-copy-on-write mapping of the same object page). Periodically the
//! whole 4 KiB of every mapped page is compared and every mapping of the whole IPA space is walked
//! with `Stage2::for_each_mapping`. At the end of each case every map and object is dropped and
//! the pool must be entirely free (no frame leaked) with no swap slot left in use.
//!
//! Also after every step: a page the step moved to the inactive queue (deactivation behind a
//! sequential fault) has no stage-2 access flag set anywhere, unless the pagedaemon ran in that
//! step (its refill keeps the reference for its clock). And the `Alias` operation asks every
//! public entry taking an IPA (`copy_in`, `copy_out`, `fault`, `mapped_page`, `extract`,
//! `descriptor`, `is_wired`, `clear_access`, `pageout`) about a window page plus a multiple of
//! 2^40, outside the IPA space: each must refuse it, and the step's check sees no low page changed.
//!
//! Dedup: every map is enabled in one [`Dedup`] scanner, and a `Dedup` operation (a scan of
//! [`DEDUP_BUDGET`] pages) runs after every [`DEDUP_EVERY`] operations of the cases with an odd
//! pool size. It is not drawn by the strategy, so that the operation sequences of a seed stay
//! what they were (a drawn operation changed the stream so that no fault met `NoMemory` any
//! more), and the even cases keep the memory pressure that merging relieves (with scans in
//! every case, a seed's 68 `NoMemory` faults became none). A merge changes nothing a guest may observe, so the model does nothing
//! for it: the checks after the step (every mapped frame's words, read-only sharing) and every
//! later access and copy-on-write are what test it. The run counts merges and merged references
//! that ended (1B breaks, slots freed) as outcomes.
//!
//! Accounting: at every full check, `vm::account` over every map is checked against the model
//! (a map reaches at most the pages its entries cover) and the stage-2 walk (every mapped page
//! is resident; a frame two maps map is shared in both), and its identities (see
//! `World::check_account`).
//!
//! Accesses mostly pick a page inside an entry; about one in seven picks any page of the window
//! or a few pages past it, so holes between entries and the space after them are touched and
//! `NoMapping` is predicted and checked.
//!
//! Coverage: the run counts every kind of operation and every outcome (accesses that succeed,
//! `NoMapping`, `Protection`, `Io`, `NoMemory`; forks, and forks with COPY, SHARE and NONE pages;
//! successful wires; pageouts; swap-ins; 2B zero-fill, 2B object-copy and 1B faults) and prints
//! the counts. A run of at least 100,000 operations fails if any count is zero.
//!
//! A failing run prints the operation (counted over the run) and the second at which it first
//! failed, before shrinking: how long the bug took to find.
//!
//! Scale: `UVMHYP_MODEL_OPS` (default 100,000) operations in cases of 500.
//!
//! Seed: without `UVMHYP_MODEL_SEED` the run uses [`DEFAULT_SEED`], so CI is deterministic (a
//! rare failing seed cannot make it flaky); `UVMHYP_MODEL_SEED=<n>` replays a run;
//! `UVMHYP_MODEL_SEED=random` explores with a seed from the clock. The seed is always printed,
//! with the command that replays it. A soak run that explores:
//! `UVMHYP_MODEL_SEED=random UVMHYP_MODEL_OPS=1000000 cargo test -p vm --release --test model -- --nocapture`.
#![allow(
    clippy::too_many_arguments,
    clippy::type_complexity,
    clippy::needless_range_loop,
    clippy::collapsible_if,
    reason = "a test harness: operation arguments mirror the model's fields one to one"
)]
#![forbid(unsafe_code)]

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use vm::account::account;
use vm::addr::{Access, Ipa, Pa, PageIdx, Prot, PAGE_SIZE};
use vm::anon::SwapSlot;
use vm::dedup::Dedup;
use vm::fault::{fault, FaultError, FaultFlags};
use vm::map::{Advice, EntrySpec, Inherit, Map, MapError};
use vm::object::{ImageObject, Object};
use vm::page::Queue;
use vm::physmem::PhysMem;
use vm::pmap::{Descriptor, Pmap, Stage2, Vmid};

/// Pages of IPA space the maps use (entries are placed inside it, so they collide).
const WINDOW: u64 = 64;
/// Pages of each image object.
const OBJ_PAGES: u64 = 48;
/// Image objects shared by every map.
const NOBJ: usize = 2;
/// Byte offsets of the words the model tracks in each page.
const OFFS: [u64; 3] = [0, 2056, 4088];
/// Most maps alive at once.
const MAX_MAPS: usize = 4;
/// Operations per case.
const OPS_PER_CASE: usize = 500;
/// A dedup scan after every this many operations.
const DEDUP_EVERY: usize = 8;
/// Pages each of those scans looks at.
const DEDUP_BUDGET: u8 = 48;
/// Full-page check and full IPA-space walk every this many steps.
const FULL_EVERY: usize = 25;

static OPS_RUN: AtomicU64 = AtomicU64::new(0);
/// The first failure's operation number (counted over the whole run) and seconds into the run,
/// before any shrinking: how long the run took to find the bug.
static FIRST_FAILURE: OnceLock<(u64, f64)> = OnceLock::new();

/// What the run exercised: printed at the end, and in a run of at least [`COVERAGE_OPS`]
/// operations every counter must be non-zero (a run that exercises nothing fails).
#[derive(Clone, Copy)]
enum Seen {
    AccessOk,
    NoMapping,
    Protection,
    Io,
    NoMemory,
    Forks,
    ForkCopy,
    ForkShare,
    ForkNone,
    WiresOk,
    Pageouts,
    Zero2B,
    ObjCopy2B,
    Anon1B,
    Pageins,
    DedupMerged,
    DedupUnmerged,
    Accounted,
}
const SEEN_NAMES: [&str; 18] = [
    "accesses ok",
    "NoMapping",
    "Protection",
    "Io",
    "NoMemory",
    "forks",
    "forks with COPY pages",
    "forks with SHARE pages",
    "forks with NONE pages",
    "wires ok",
    "pageouts",
    "flt_przero (2B zero-fill)",
    "flt_prcopy (2B object copy)",
    "flt_acow (1B)",
    "pageins (swap-ins)",
    "dedup_merged (pages merged)",
    "dedup_unmerged (merged pages copied or freed)",
    "accounts checked (vm::account)",
];
static SEEN: [AtomicU64; 18] = [const { AtomicU64::new(0) }; 18];

/// Operations applied, by kind (the order of [`Op`]'s variants).
const OP_NAMES: [&str; 16] = [
    "Access",
    "Insert",
    "Remove",
    "Protect",
    "Advise",
    "SetInherit",
    "Fork",
    "DropMap",
    "Wire",
    "Unwire",
    "Pageout",
    "Reclaim",
    "FailRead",
    "FailWrite",
    "Alias",
    "Dedup",
];
static OPS_BY_KIND: [AtomicU64; 16] = [const { AtomicU64::new(0) }; 16];

/// From this many operations on, the run asserts its coverage (every `SEEN` and `OPS_BY_KIND`
/// counter non-zero).
const COVERAGE_OPS: u64 = 100_000;
/// Pages past the window that accesses may touch: no entry is ever placed there.
const BEYOND: u64 = 8;

fn seen(what: Seen) {
    SEEN[what as usize].fetch_add(1, Ordering::Relaxed);
}

// ---- the reference model -----------------------------------------------------------------------

/// What a page was before any word of it was written.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Base {
    Zero,
    /// Page `1` of image `0`.
    Image(usize, u64),
}

/// The observable contents of one page: a base and the tracked words written since.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Content {
    base: Base,
    words: [Option<u64>; OFFS.len()],
    /// A swap read failed: the data is gone and every access needing it fails with `Io`.
    lost: bool,
}

impl Content {
    fn of(base: Base) -> Content {
        Content {
            base,
            words: [None; OFFS.len()],
            lost: false,
        }
    }
}

/// The private contents of one amap slot, shared by maps that share the amap (SHARE).
#[derive(Default, Debug)]
struct Cell {
    /// `None`: never written privately (zero for anonymous memory, the object's page for COW).
    content: Option<Content>,
}

type CellRef = Rc<RefCell<Cell>>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// Zero-fill anonymous memory.
    Anon,
    /// Copy-on-write over page `page` of object `obj`.
    Cow { obj: usize, page: u64 },
    /// Non-copy-on-write mapping of an object page: writes reach the object.
    Shared { obj: usize, page: u64 },
}

/// One page of one map in the model.
#[derive(Clone, Debug)]
struct Pos {
    prot: Prot,
    max_prot: Prot,
    inherit: Inherit,
    wired: u32,
    kind: Kind,
    cell: CellRef,
}

/// What a page's memory is, for "who may see a write" checks.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Ident {
    Cell(usize),
    Obj(usize, u64),
}

struct MapModel {
    map: Arc<Map>,
    pos: BTreeMap<u64, Pos>,
}

// ---- operations --------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum SpecKind {
    Anon,
    /// Anonymous, amap created lazily by the first fault (copy_on_write + needs_copy).
    LazyAnon,
    Cow {
        obj: u8,
        off: u8,
        anon: bool,
    },
    Shared {
        obj: u8,
        off: u8,
    },
}

#[derive(Clone, Debug)]
enum Op {
    Access {
        map: u8,
        /// Which page: a mapped one, or with `anywhere` any page of the window and beyond.
        page: u8,
        anywhere: bool,
        word: u8,
        access: Access,
        val: u16,
    },
    Insert {
        map: u8,
        start: u8,
        len: u8,
        kind: SpecKind,
        prot: u8,
        max_all: bool,
        inherit: u8,
    },
    Remove {
        map: u8,
        start: u8,
        len: u8,
    },
    Protect {
        map: u8,
        start: u8,
        len: u8,
        prot: u8,
    },
    Advise {
        map: u8,
        start: u8,
        len: u8,
        advice: u8,
    },
    SetInherit {
        map: u8,
        start: u8,
        len: u8,
        inherit: u8,
    },
    Fork {
        map: u8,
    },
    DropMap {
        map: u8,
    },
    Wire {
        map: u8,
        start: u8,
        len: u8,
    },
    Unwire {
        map: u8,
        start: u8,
        len: u8,
    },
    Pageout {
        map: u8,
        page: u8,
    },
    Reclaim {
        n: u8,
    },
    FailRead,
    FailWrite,
    /// Every public entry taking an IPA, at page `page` of the window plus `k` whole IPA spaces
    /// (2^40 each): all must refuse it, and no low page may change (`val` is what `copy_out`
    /// tries to write).
    Alias {
        map: u8,
        page: u8,
        k: u64,
        access: Access,
        val: u16,
    },
    /// A dedup scan of `budget` pages over every map (all are enabled). Not drawn by the
    /// strategy: `run_case` runs one after every [`DEDUP_EVERY`] operations (see there).
    Dedup {
        budget: u8,
    },
}

impl Op {
    /// Index of the variant in [`OP_NAMES`].
    fn kind(&self) -> usize {
        match self {
            Op::Access { .. } => 0,
            Op::Insert { .. } => 1,
            Op::Remove { .. } => 2,
            Op::Protect { .. } => 3,
            Op::Advise { .. } => 4,
            Op::SetInherit { .. } => 5,
            Op::Fork { .. } => 6,
            Op::DropMap { .. } => 7,
            Op::Wire { .. } => 8,
            Op::Unwire { .. } => 9,
            Op::Pageout { .. } => 10,
            Op::Reclaim { .. } => 11,
            Op::FailRead => 12,
            Op::FailWrite => 13,
            Op::Alias { .. } => 14,
            Op::Dedup { .. } => 15,
        }
    }
}

fn inherit_of(i: u8) -> Inherit {
    match i % 4 {
        0 | 1 => Inherit::Copy,
        2 => Inherit::Share,
        _ => Inherit::None,
    }
}

fn advice_of(a: u8) -> Advice {
    match a % 3 {
        0 => Advice::Normal,
        1 => Advice::Random,
        _ => Advice::Sequential,
    }
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let access =
        prop_oneof![5 => Just(Access::Read), 4 => Just(Access::Write), 1 => Just(Access::Exec)];
    let kind = prop_oneof![
        3 => Just(SpecKind::Anon),
        2 => Just(SpecKind::LazyAnon),
        4 => (any::<u8>(), any::<u8>(), any::<bool>())
            .prop_map(|(obj, off, anon)| SpecKind::Cow { obj, off, anon }),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(obj, off)| SpecKind::Shared { obj, off }),
    ];
    let m = any::<u8>();
    let start = 0..WINDOW as u8;
    let len = 1u8..24;
    prop_oneof![
        60 => (m, any::<u8>(), prop::bool::weighted(0.15), 0u8..OFFS.len() as u8, access.clone(), any::<u16>())
            .prop_map(|(map, page, anywhere, word, access, val)| Op::Access {
                map, page, anywhere, word, access, val
            }),
        5 => (m, start.clone(), len.clone(), kind, any::<u8>(), prop::bool::weighted(0.8), any::<u8>())
            .prop_map(|(map, start, len, kind, prot, max_all, inherit)| Op::Insert {
                map, start, len, kind, prot, max_all, inherit
            }),
        3 => (m, start.clone(), len.clone())
            .prop_map(|(map, start, len)| Op::Remove { map, start, len }),
        5 => (m, start.clone(), len.clone(), any::<u8>())
            .prop_map(|(map, start, len, prot)| Op::Protect { map, start, len, prot }),
        2 => (m, start.clone(), len.clone(), any::<u8>())
            .prop_map(|(map, start, len, advice)| Op::Advise { map, start, len, advice }),
        2 => (m, start.clone(), len.clone(), any::<u8>())
            .prop_map(|(map, start, len, inherit)| Op::SetInherit { map, start, len, inherit }),
        3 => m.prop_map(|map| Op::Fork { map }),
        1 => m.prop_map(|map| Op::DropMap { map }),
        2 => (m, start.clone(), 1u8..8).prop_map(|(map, start, len)| Op::Wire { map, start, len }),
        2 => (m, start.clone(), 1u8..24).prop_map(|(map, start, len)| Op::Unwire { map, start, len }),
        8 => (m, start.clone()).prop_map(|(map, page)| Op::Pageout { map, page }),
        2 => (1u8..32).prop_map(|n| Op::Reclaim { n }),
        1 => Just(Op::FailRead),
        1 => Just(Op::FailWrite),
        2 => (m, start.clone(), 1u64..1 << 24, access, any::<u16>())
            .prop_map(|(map, page, k, access, val)| Op::Alias { map, page, k, access, val }),
    ]
}

// ---- the world: engine + model ------------------------------------------------------------------

struct World {
    env: Env,
    images: Vec<Arc<ImageObject>>,
    bytes: Vec<Arc<[u8]>>,
    /// Object pages written through non-copy-on-write mappings.
    objects: Vec<BTreeMap<u64, Content>>,
    maps: Vec<MapModel>,
    /// Scans every map (each is enabled when made): merges must leave every content as the
    /// model says.
    dedup: Dedup,
    /// Dedup scans run in this case (odd pool sizes: see the module documentation).
    dedup_on: bool,
    next_vmid: u16,
    step: usize,
}

type R<T = ()> = Result<T, TestCaseError>;

fn fail<T>(msg: String) -> R<T> {
    Err(TestCaseError::fail(msg))
}

fn page_range(start: u8, len: u8) -> (u64, u64) {
    let s = u64::from(start) % WINDOW;
    let e = (s + u64::from(len).max(1)).min(WINDOW);
    (s, e)
}

impl World {
    fn new(frames: usize, slots: u32) -> World {
        let env = Env::new(frames, slots);
        let len = OBJ_PAGES as usize * PAGE - 100; // the last page ends in zeroes
        let bytes: Vec<Arc<[u8]>> = (0..NOBJ).map(|j| image_bytes(j, len)).collect();
        let images = bytes
            .iter()
            .map(|b| ImageObject::new(&env.uvm, b.clone()))
            .collect();
        World {
            dedup: Dedup::new(&env.uvm),
            dedup_on: frames % 2 == 1,
            env,
            images,
            bytes,
            objects: vec![BTreeMap::new(); NOBJ],
            maps: Vec::new(),
            next_vmid: 1,
            step: 0,
        }
    }

    fn new_map(&mut self) -> R<Option<usize>> {
        let vmid = self.next_vmid;
        self.next_vmid += 1;
        match Map::new(&self.env.uvm, Vmid(vmid)) {
            Ok(map) => {
                self.dedup.enable_map(&map);
                self.maps.push(MapModel {
                    map,
                    pos: BTreeMap::new(),
                });
                Ok(Some(self.maps.len() - 1))
            }
            Err(MapError::NoMemory) => Ok(None),
            Err(e) => fail(format!("Map::new: {e:?}")),
        }
    }

    fn obj_content(&self, obj: usize, page: u64) -> Content {
        self.objects[obj]
            .get(&page)
            .cloned()
            .unwrap_or_else(|| Content::of(Base::Image(obj, page)))
    }

    /// What the guest must see at `p`.
    fn expected(&self, p: &Pos) -> Content {
        let private = p.cell.borrow().content.clone();
        match p.kind {
            Kind::Shared { obj, page } => self.obj_content(obj, page),
            Kind::Cow { obj, page } => private.unwrap_or_else(|| self.obj_content(obj, page)),
            Kind::Anon => private.unwrap_or(Content::of(Base::Zero)),
        }
    }

    fn ident(p: &Pos) -> Ident {
        match p.kind {
            Kind::Shared { obj, page } => Ident::Obj(obj, page),
            Kind::Cow { obj, page } if p.cell.borrow().content.is_none() => Ident::Obj(obj, page),
            _ => Ident::Cell(Rc::as_ptr(&p.cell) as usize),
        }
    }

    fn base_byte(&self, base: Base, o: usize) -> u8 {
        match base {
            Base::Zero => 0,
            Base::Image(j, p) => self.bytes[j]
                .get(p as usize * PAGE + o)
                .copied()
                .unwrap_or(0),
        }
    }

    fn word(&self, c: &Content, k: usize) -> u64 {
        c.words[k].unwrap_or_else(|| {
            let mut b = [0u8; 8];
            for (i, x) in b.iter_mut().enumerate() {
                *x = self.base_byte(c.base, OFFS[k] as usize + i);
            }
            u64::from_le_bytes(b)
        })
    }

    fn full_page(&self, c: &Content) -> Vec<u8> {
        let mut v: Vec<u8> = (0..PAGE).map(|o| self.base_byte(c.base, o)).collect();
        for (k, w) in c.words.iter().enumerate() {
            if let Some(w) = w {
                let o = OFFS[k] as usize;
                v[o..o + 8].copy_from_slice(&w.to_le_bytes());
            }
        }
        v
    }

    /// Record a guest write of `val` to word `k` of `p`.
    fn write_model(&mut self, p: &Pos, k: usize, val: u64) {
        match p.kind {
            Kind::Shared { obj, page } => {
                let mut c = self.obj_content(obj, page);
                c.words[k] = Some(val);
                self.objects[obj].insert(page, c);
            }
            _ => {
                let mut c = self.expected(p);
                c.words[k] = Some(val);
                p.cell.borrow_mut().content = Some(c);
            }
        }
    }

    /// A page inside an entry of map `mi` (so accesses reach the engine's cases); with
    /// `anywhere` (or no entry at all), any page of the window or up to [`BEYOND`] pages past it,
    /// so holes between entries and the unmapped space after them are touched too.
    fn pick_page(&self, mi: usize, p: u8, anywhere: bool) -> u64 {
        let pos = &self.maps[mi].pos;
        if anywhere || pos.is_empty() {
            u64::from(p) % (WINDOW + BEYOND)
        } else {
            *pos.keys()
                .nth(usize::from(p) % pos.len())
                .expect("non-empty")
        }
    }

    fn map_index(&self, m: u8) -> usize {
        usize::from(m) % self.maps.len()
    }

    // ---- error oracles -------------------------------------------------------------------------

    /// `NoMemory` is only right when the pagedaemon can free nothing at all.
    fn check_nomem(&mut self, what: &str) -> R {
        // With swap full, the seed gives ENOMEM too (`uvm_reclaimable()` is false but for a few
        // clean pages): only a NoMemory while swap has room is checked strictly.
        if self.env.uvm.swap().is_some_and(|s| s.counts().0 == 0) {
            return Ok(());
        }
        let mut freed = 0;
        for _ in 0..4 {
            freed += self.env.uvm.reclaim(16);
        }
        if freed > 0 {
            return fail(format!(
                "{what}: NoMemory although the pagedaemon can still free {freed} frames \
                 (free {}, swap {:?})",
                self.env.uvm.free_pages(),
                self.env.uvm.swap().map(|s| s.counts())
            ));
        }
        Ok(())
    }

    /// `Io` is right when a swap read failed during this fault for the anon at `(mi, page)`:
    /// then every page (of every map) holding that anon has lost its data.
    fn check_io(&mut self, mi: usize, page: u64, read_failures: u64, what: &str) -> R {
        if read_failures == 0 {
            return fail(format!("{what}: Io without a failed swap read"));
        }
        let map = self.maps[mi].map.clone();
        let Some(anon) = map.anon_at(ipa(page)) else {
            return fail(format!("{what}: Io but no anon at the faulting page"));
        };
        {
            let a = anon.lock();
            if a.swslot != SwapSlot::Bad || a.page.is_some() {
                return fail(format!("{what}: Io but the anon is {a:?}"));
            }
        }
        for m in 0..self.maps.len() {
            let mm = self.maps[m].map.clone();
            let pages: Vec<u64> = self.maps[m].pos.keys().copied().collect();
            for pg in pages {
                if mm.anon_at(ipa(pg)).is_some_and(|x| Arc::ptr_eq(&x, &anon)) {
                    let p = self.maps[m].pos[&pg].clone();
                    let mut c = self.expected(&p);
                    c.lost = true;
                    p.cell.borrow_mut().content = Some(c);
                }
            }
        }
        Ok(())
    }

    fn read_failures(&self) -> u64 {
        self.env.uvm.stats().pageins - self.env.swap.reads.load(Ordering::Relaxed)
    }

    // ---- operations ----------------------------------------------------------------------------

    fn access(&mut self, mi: usize, page: u64, k: usize, access: Access, val: u64) -> R {
        let map = self.maps[mi].map.clone();
        let at = Ipa(ipa(page).0 + OFFS[k]);
        let pos = self.maps[mi].pos.get(&page).cloned();
        let expect: Result<(), FaultError> = match &pos {
            None => Err(FaultError::NoMapping),
            Some(p) if !p.prot.contains(access.prot()) => Err(FaultError::Protection),
            Some(p) if self.expected(p).lost => Err(FaultError::Io),
            Some(_) => Ok(()),
        };
        let what = format!("step {} {access:?} map{mi} page {page} word {k}", self.step);
        let (mut oks, mut restarts) = (0, 0);
        loop {
            if let Some(pa) = cpu_frame(&map, at, access) {
                let Some(p) = pos.as_ref().filter(|_| expect.is_ok()) else {
                    return fail(format!(
                        "{what}: stage 2 allows it, the model says {expect:?}"
                    ));
                };
                let mem = self.env.mem.clone();
                if access == Access::Write {
                    write_u64(mem.as_ref(), pa, val);
                    self.write_model(p, k, val);
                } else {
                    let got = read_u64(mem.as_ref(), pa);
                    let want = self.word(&self.expected(p), k);
                    if got != want {
                        return fail(format!("{what}: read {got:#x}, model {want:#x}"));
                    }
                }
                seen(Seen::AccessOk);
                return Ok(());
            }
            let faults0 = self.env.uvm.stats().faults;
            let rf0 = self.read_failures();
            let r = fault(&map, at, access, FaultFlags::empty());
            let faults1 = self.env.uvm.stats().faults;
            if faults1 != faults0 + 1 {
                return fail(format!(
                    "{what}: stats.faults moved by {}",
                    faults1 - faults0
                ));
            }
            let rf = self.read_failures() - rf0;
            match r {
                Ok(_) if expect.is_ok() => {
                    oks += 1;
                    if oks > 3 {
                        return fail(format!("{what}: fault succeeds but stage 2 still refuses"));
                    }
                }
                Ok(res) => {
                    return fail(format!("{what}: fault {res:?}, the model says {expect:?}"))
                }
                Err(FaultError::Restart) => {
                    restarts += 1;
                    if restarts > 16 {
                        return fail(format!("{what}: Restart forever"));
                    }
                }
                Err(e) if Err(e) == expect => {
                    match e {
                        FaultError::NoMapping => seen(Seen::NoMapping),
                        FaultError::Protection => seen(Seen::Protection),
                        _ => seen(Seen::Io),
                    }
                    return Ok(());
                }
                Err(FaultError::Io) if expect.is_ok() => {
                    seen(Seen::Io);
                    return self.check_io(mi, page, rf, &what);
                }
                Err(FaultError::NoMemory) if expect.is_ok() => {
                    seen(Seen::NoMemory);
                    return self.check_nomem(&what);
                }
                Err(e) => return fail(format!("{what}: fault {e:?}, the model says {expect:?}")),
            }
        }
    }

    fn insert(
        &mut self,
        mi: usize,
        s: u64,
        e: u64,
        kind: SpecKind,
        prot: Prot,
        max_all: bool,
        inh: Inherit,
    ) -> R {
        let n = e - s;
        let (object, anon, cow, kinds): (
            Option<(Arc<dyn Object>, u64)>,
            bool,
            bool,
            Box<dyn Fn(u64) -> Kind>,
        ) = match kind {
            SpecKind::Anon => (None, true, false, Box::new(|_| Kind::Anon)),
            SpecKind::LazyAnon => (None, false, true, Box::new(|_| Kind::Anon)),
            SpecKind::Cow { obj, off, anon } => {
                let obj = usize::from(obj) % NOBJ;
                let off = u64::from(off) % (OBJ_PAGES - n + 1);
                let o: Arc<dyn Object> = self.images[obj].clone();
                (
                    Some((o, off * PAGE_SIZE)),
                    anon,
                    true,
                    Box::new(move |i| Kind::Cow { obj, page: off + i }),
                )
            }
            SpecKind::Shared { obj, off } => {
                let obj = usize::from(obj) % NOBJ;
                let off = u64::from(off) % (OBJ_PAGES - n + 1);
                let o: Arc<dyn Object> = self.images[obj].clone();
                (
                    Some((o, off * PAGE_SIZE)),
                    false,
                    false,
                    Box::new(move |i| Kind::Shared { obj, page: off + i }),
                )
            }
        };
        let max_prot = if max_all { Prot::ALL } else { prot };
        let spec = EntrySpec {
            start: ipa(s),
            end: ipa(e),
            prot,
            max_prot,
            inherit: inh,
            advice: Advice::Normal,
            object,
            anon,
            copy_on_write: cow,
        };
        let overlap = self.maps[mi].pos.range(s..e).next().is_some();
        let r = self.maps[mi].map.insert(spec);
        match (r, overlap) {
            (Ok(()), false) => {
                for pg in s..e {
                    let p = Pos {
                        prot,
                        max_prot,
                        inherit: inh,
                        wired: 0,
                        kind: kinds(pg - s),
                        cell: CellRef::default(),
                    };
                    self.maps[mi].pos.insert(pg, p);
                }
                Ok(())
            }
            (Err(MapError::Overlap), true) => Ok(()),
            (r, overlap) => fail(format!(
                "step {}: insert {s}..{e} gave {r:?}, overlap {overlap}",
                self.step
            )),
        }
    }

    fn fork(&mut self, mi: usize) -> R {
        if self.maps.len() >= MAX_MAPS || self.next_vmid >= 250 {
            return Ok(());
        }
        let vmid = self.next_vmid;
        self.next_vmid += 1;
        let child = match self.maps[mi].map.fork(Vmid(vmid)) {
            Ok(c) => c,
            Err(MapError::NoMemory) => {
                let free = self.env.uvm.free_pages();
                if free > self.env.uvm.total_pages() / 2 {
                    return fail(format!(
                        "step {}: fork NoMemory with {free} free frames",
                        self.step
                    ));
                }
                return Ok(());
            }
            Err(e) => return fail(format!("step {}: fork: {e:?}", self.step)),
        };
        let mut pos = BTreeMap::new();
        for (&pg, p) in &self.maps[mi].pos {
            let c = match p.inherit {
                Inherit::None => continue,
                Inherit::Share => Pos {
                    wired: 0,
                    ..p.clone()
                },
                Inherit::Copy => {
                    let kind = match p.kind {
                        Kind::Shared { obj, page } => Kind::Cow { obj, page },
                        k => k,
                    };
                    let content = match p.kind {
                        Kind::Shared { .. } => None,
                        _ => p.cell.borrow().content.clone(),
                    };
                    Pos {
                        wired: 0,
                        kind,
                        cell: Rc::new(RefCell::new(Cell { content })),
                        ..p.clone()
                    }
                }
            };
            pos.insert(pg, c);
        }
        for (inh, what) in [
            (Inherit::Copy, Seen::ForkCopy),
            (Inherit::Share, Seen::ForkShare),
            (Inherit::None, Seen::ForkNone),
        ] {
            if self.maps[mi].pos.values().any(|p| p.inherit == inh) {
                seen(what);
            }
        }
        self.dedup.enable_map(&child);
        self.maps.push(MapModel { map: child, pos });
        seen(Seen::Forks);
        Ok(())
    }

    fn wire(&mut self, mi: usize, s: u64, e: u64) -> R {
        let covered = (s..e).all(|pg| self.maps[mi].pos.contains_key(&pg));
        let map = self.maps[mi].map.clone();
        let what = format!("step {} wire map{mi} {s}..{e}", self.step);
        // The model's prediction: the first newly wired page that cannot be faulted in.
        let predicted = (s..e).find_map(|pg| {
            let p = self.maps[mi].pos.get(&pg)?;
            // Wiring checks the maximum protection (WIREMAX), which always allows it.
            if p.wired > 0 {
                None
            } else if self.expected(p).lost {
                Some((pg, FaultError::Io))
            } else {
                None
            }
        });
        let rf0 = self.read_failures();
        let r = map.wire(ipa(s), ipa(e));
        let rf = self.read_failures() - rf0;
        // Promotions done on the way stay even when wiring fails: COW pages with an anon now
        // have private contents (same bytes as now).
        for pg in s..e {
            let Some(p) = self.maps[mi].pos.get(&pg).cloned() else {
                continue;
            };
            if matches!(p.kind, Kind::Cow { .. })
                && p.cell.borrow().content.is_none()
                && map.anon_at(ipa(pg)).is_some()
            {
                let c = self.expected(&p);
                p.cell.borrow_mut().content = Some(c);
            }
        }
        match r {
            Err(MapError::NoEntry) if !covered => Ok(()),
            _ if !covered => fail(format!("{what}: {r:?} over a hole")),
            Ok(()) => {
                if let Some(p) = predicted {
                    return fail(format!("{what}: Ok, the model says {p:?}"));
                }
                for pg in s..e {
                    let p = self.maps[mi].pos.get_mut(&pg).expect("covered");
                    p.wired += 1;
                    // Pages wired before may have lost their mapping to protect(NONE).
                    if p.wired == 1 && !map.stage2().is_wired(ipa(pg)) {
                        return fail(format!("{what}: page {pg} not mapped wired after wiring"));
                    }
                }
                seen(Seen::WiresOk);
                Ok(())
            }
            Err(MapError::Fault(FaultError::Io)) if rf > 0 => {
                // A swap read failed on the way: find the page whose anon lost its data (it
                // comes before any failure the model predicted).
                let limit = predicted.map_or(e, |p| p.0);
                let pg = (s..limit).find(|&pg| {
                    map.anon_at(ipa(pg))
                        .is_some_and(|a| a.lock().swslot == SwapSlot::Bad)
                });
                match pg {
                    Some(pg) => self.check_io(mi, pg, rf, &what),
                    None => fail(format!(
                        "{what}: Io and no anon before {limit} lost its data"
                    )),
                }
            }
            Err(MapError::Fault(e)) if predicted.map(|p| p.1) == Some(e) => Ok(()),
            Err(MapError::Fault(FaultError::Restart)) => Ok(()),
            Err(MapError::Fault(FaultError::NoMemory)) => self.check_nomem(&what),
            r => fail(format!("{what}: {r:?}, the model says {predicted:?}")),
        }
    }

    fn unwire(&mut self, mi: usize, s: u64, e: u64) -> R {
        let covered = (s..e).all(|pg| self.maps[mi].pos.contains_key(&pg));
        match (self.maps[mi].map.unwire(ipa(s), ipa(e)), covered) {
            (Ok(()), true) => {
                for pg in s..e {
                    let p = self.maps[mi].pos.get_mut(&pg).expect("covered");
                    p.wired = p.wired.saturating_sub(1);
                }
                Ok(())
            }
            (Err(MapError::NoEntry), false) => Ok(()),
            (r, c) => fail(format!(
                "step {}: unwire {s}..{e}: {r:?}, covered {c}",
                self.step
            )),
        }
    }

    fn apply(&mut self, op: &Op) -> R {
        if self.maps.is_empty() {
            if self.new_map()?.is_none() {
                return Ok(());
            }
        }
        OPS_BY_KIND[op.kind()].fetch_add(1, Ordering::Relaxed);
        match *op {
            Op::Access {
                map,
                page,
                anywhere,
                word,
                access,
                val,
            } => {
                let mi = self.map_index(map);
                let v = ((self.step as u64) << 20) | (u64::from(val) << 2) | 1;
                let pg = self.pick_page(mi, page, anywhere);
                self.access(mi, pg, usize::from(word) % OFFS.len(), access, v)?;
            }
            Op::Insert {
                map,
                start,
                len,
                kind,
                prot,
                max_all,
                inherit,
            } => {
                let mi = self.map_index(map);
                let (s, e) = page_range(start, len);
                let prot = PROTS[usize::from(prot) % PROTS.len()];
                self.insert(mi, s, e, kind, prot, max_all, inherit_of(inherit))?;
            }
            Op::Remove { map, start, len } => {
                let mi = self.map_index(map);
                let (s, e) = page_range(start, len);
                let r = self.maps[mi].map.remove(ipa(s), ipa(e));
                if r.is_err() {
                    return fail(format!("step {}: remove: {r:?}", self.step));
                }
                let keys: Vec<u64> = self.maps[mi].pos.range(s..e).map(|(k, _)| *k).collect();
                for k in keys {
                    self.maps[mi].pos.remove(&k);
                }
            }
            Op::Protect {
                map,
                start,
                len,
                prot,
            } => {
                let mi = self.map_index(map);
                let (s, e) = page_range(start, len);
                let prot = PROTS[usize::from(prot) % PROTS.len()];
                let exceeds = self.maps[mi]
                    .pos
                    .range(s..e)
                    .any(|(_, p)| !p.max_prot.contains(prot));
                match (self.maps[mi].map.protect(ipa(s), ipa(e), prot), exceeds) {
                    (Ok(()), false) => {
                        for (_, p) in self.maps[mi].pos.range_mut(s..e) {
                            p.prot = prot;
                        }
                    }
                    (Err(MapError::Protection), true) => {}
                    (r, x) => {
                        return fail(format!("step {}: protect: {r:?}, exceeds {x}", self.step))
                    }
                }
            }
            Op::Advise {
                map,
                start,
                len,
                advice,
            } => {
                let mi = self.map_index(map);
                let (s, e) = page_range(start, len);
                let r = self.maps[mi].map.advise(ipa(s), ipa(e), advice_of(advice));
                if r.is_err() {
                    return fail(format!("step {}: advise: {r:?}", self.step));
                }
            }
            Op::SetInherit {
                map,
                start,
                len,
                inherit,
            } => {
                let mi = self.map_index(map);
                let (s, e) = page_range(start, len);
                let inh = inherit_of(inherit);
                let r = self.maps[mi].map.set_inherit(ipa(s), ipa(e), inh);
                if r.is_err() {
                    return fail(format!("step {}: set_inherit: {r:?}", self.step));
                }
                for (_, p) in self.maps[mi].pos.range_mut(s..e) {
                    p.inherit = inh;
                }
            }
            Op::Fork { map } => {
                let mi = self.map_index(map);
                self.fork(mi)?;
            }
            Op::DropMap { map } => {
                if self.maps.len() > 1 {
                    let mi = self.map_index(map);
                    self.maps.remove(mi);
                }
            }
            Op::Wire { map, start, len } => {
                let mi = self.map_index(map);
                let (s, e) = page_range(start, len);
                self.wire(mi, s, e)?;
            }
            Op::Unwire { map, start, len } => {
                let mi = self.map_index(map);
                let (s, e) = page_range(start, len);
                self.unwire(mi, s, e)?;
            }
            Op::Pageout { map, page } => {
                let mi = self.map_index(map);
                let pg = self.pick_page(mi, page, false);
                let out = self.maps[mi].map.pageout(ipa(pg));
                if out {
                    seen(Seen::Pageouts);
                }
                if out && self.maps[mi].map.stage2().extract(ipa(pg)).is_some() {
                    return fail(format!("step {}: paged out but still mapped", self.step));
                }
            }
            Op::Reclaim { n } => {
                self.env.uvm.reclaim(usize::from(n));
            }
            Op::Dedup { budget } => {
                self.dedup.scan(usize::from(budget));
            }
            Op::FailRead => self.env.swap.fail_next_reads(1),
            Op::FailWrite => self.env.swap.fail_next_writes(1),
            Op::Alias {
                map,
                page,
                k,
                access,
                val,
            } => {
                let mi = self.map_index(map);
                let pg = self.pick_page(mi, page, false);
                self.alias(mi, pg, k, access, val)?;
            }
        }
        Ok(())
    }

    /// Page `pg` of map `mi` seen `k` IPA spaces higher: every public entry taking an IPA must
    /// refuse it (the walk's level-1 index is masked, so without a range check it reaches `pg`
    /// itself). What a refused `copy_out` or `pageout` might have changed below, the check
    /// after the step finds.
    fn alias(&mut self, mi: usize, pg: u64, k: u64, access: Access, val: u16) -> R {
        let Some(high) = k
            .checked_mul(Stage2::IPA_LIMIT)
            .and_then(|d| ipa(pg).checked_add(d))
        else {
            return Ok(());
        };
        let map = &self.maps[mi].map;
        let s2 = map.stage2();
        let where_ = format!("step {} map{mi} page {pg} + {k}*2^40 ({high:?})", self.step);
        let mut buf = [0u8; 8];
        let copied_in = map.copy_in(high, &mut buf);
        if copied_in != Err(FaultError::NoMapping) || buf != [0; 8] {
            return fail(format!("{where_}: copy_in {copied_in:?}, read {buf:x?}"));
        }
        let copied_out = map.copy_out(high, &[val as u8 | 1; 8]);
        if copied_out != Err(FaultError::NoMapping) {
            return fail(format!("{where_}: copy_out {copied_out:?}"));
        }
        let faulted = fault(map, high, access, FaultFlags::empty());
        if faulted.as_ref().err() != Some(&FaultError::NoMapping) {
            return fail(format!("{where_}: {access:?} fault {faulted:?}"));
        }
        let mapped = map.mapped_page(high);
        let extracted = s2.extract(high);
        let descriptor = s2.descriptor(high);
        if mapped.is_some() || extracted.is_some() || descriptor != Descriptor::INVALID {
            return fail(format!(
                "{where_}: mapped_page {mapped:?}, extract {extracted:?}, descriptor {descriptor:?}"
            ));
        }
        if s2.is_wired(high) || s2.clear_access(high) || map.pageout(high) {
            return fail(format!(
                "{where_}: wired, an access flag cleared or paged out out there"
            ));
        }
        Ok(())
    }

    // ---- invariants ----------------------------------------------------------------------------

    /// The queue of every frame, and how many pages the pagedaemon has aged so far: what
    /// [`World::check_deactivated`] compares with after a step.
    fn queues(&self) -> (Vec<Queue>, u64) {
        let uvm = &self.env.uvm;
        let queues = (0..uvm.total_pages())
            .map(|i| uvm.page_info(PageIdx(i as u32)).queue)
            .collect();
        (queues, uvm.stats().pddeact)
    }

    /// A page the step moved to the inactive queue was deactivated (a sequential fault's pages
    /// behind, an object's DEACTIVATE), and deactivation clears the reference, so none of its
    /// mappings may have its access flag set. Only the pagedaemon's refill ages pages keeping
    /// their reference (its clock follows at once): a step in which it ran is not checked.
    fn check_deactivated(&self, before: &(Vec<Queue>, u64)) -> R {
        let uvm = &self.env.uvm;
        if uvm.stats().pddeact != before.1 {
            return Ok(());
        }
        for (i, was) in before.0.iter().enumerate() {
            let pg = PageIdx(i as u32);
            if *was != Queue::Inactive
                && uvm.page_info(pg).queue == Queue::Inactive
                && uvm.rmap().is_referenced(uvm.pa(pg))
            {
                return fail(format!(
                    "step {}: page {i} deactivated (was {was:?}) but still referenced",
                    self.step
                ));
            }
        }
        Ok(())
    }

    fn check(&self, full: bool) -> R {
        let mem: &dyn PhysMem = self.env.mem.as_ref();
        let mut by_pa: HashMap<u64, Vec<(usize, u64, Prot, Ident)>> = HashMap::new();
        for (mi, m) in self.maps.iter().enumerate() {
            let mut maps: Vec<(Ipa, Pa, Prot)> = Vec::new();
            if full {
                m.map
                    .stage2()
                    .for_each_mapping(|i, pa, prot| maps.push((i, pa, prot)));
            } else {
                for pg in 0..WINDOW {
                    if let Some((pa, prot)) = m.map.stage2().extract(ipa(pg)) {
                        maps.push((ipa(pg), pa, prot));
                    }
                }
            }
            for (at, pa, prot) in maps {
                let where_ = format!("step {} map{mi} {at:?} -> {pa:?} {prot:?}", self.step);
                let pg = match at.0.checked_sub(RAM) {
                    Some(off) if off / PAGE_SIZE < WINDOW => off / PAGE_SIZE,
                    _ => return fail(format!("{where_}: mapping outside the window")),
                };
                let Some(p) = m.pos.get(&pg) else {
                    return fail(format!("{where_}: mapped but no entry"));
                };
                if !p.prot.contains(prot) {
                    return fail(format!("{where_}: entry allows only {:?}", p.prot));
                }
                let c = self.expected(p);
                if c.lost {
                    return fail(format!("{where_}: mapped although its data was lost"));
                }
                if full {
                    let mut buf = vec![0u8; PAGE];
                    mem.read(pa, &mut buf);
                    if buf != self.full_page(&c) {
                        let o = buf
                            .iter()
                            .zip(self.full_page(&c))
                            .position(|(a, b)| *a != b);
                        return fail(format!(
                            "{where_}: page differs from the model at byte {o:?}"
                        ));
                    }
                } else {
                    for k in 0..OFFS.len() {
                        let got = read_u64(mem, Pa(pa.0 + OFFS[k]));
                        let want = self.word(&c, k);
                        if got != want {
                            return fail(format!(
                                "{where_}: word {k} = {got:#x}, model {want:#x} ({:?}, {c:?})",
                                p.kind
                            ));
                        }
                    }
                }
                by_pa
                    .entry(pa.0)
                    .or_default()
                    .push((mi, pg, prot, Self::ident(p)));
            }
        }
        for (pa, users) in &by_pa {
            let Some(w) = users.iter().find(|u| u.2.contains(Prot::WRITE)) else {
                continue;
            };
            if let Some(o) = users.iter().find(|u| u.3 != w.3) {
                return fail(format!(
                    "step {}: frame {pa:#x} writable at map{} page {} and also mapped at map{} page {} \
                     which must not see those writes",
                    self.step, w.0, w.1, o.0, o.1
                ));
            }
        }
        if full {
            self.check_account(&by_pa)?;
        }
        Ok(())
    }

    /// The accounting walk (`vm::account`) against the model and the stage-2 walk of this step
    /// (`by_pa`: every mapping, by frame). The model knows contents, not residency, so what it
    /// can check are bounds: a map reaches at most the pages its entries cover (resident and
    /// swapped together), every mapped page is resident, a frame two maps map is shared in
    /// both, the distinct and shared frames are at least those the stage-2 tables show; and the
    /// identities (`private + shared = resident`, the savings by cause add up to
    /// `Σ resident − distinct`, zero pages are resident).
    fn check_account(&self, by_pa: &HashMap<u64, Vec<(usize, u64, Prot, Ident)>>) -> R {
        let vms: Vec<(u16, &Map)> = self
            .maps
            .iter()
            .enumerate()
            .map(|(i, m)| (i as u16, &*m.map))
            .collect();
        let acc = account(&self.env.uvm, &vms, &self.dedup.zero_anons());
        let at = format!("step {}: account", self.step);
        let mut mapped = vec![0u64; self.maps.len()];
        let mut shared = vec![0u64; self.maps.len()];
        let mut shared_frames = 0;
        for users in by_pa.values() {
            let many = users.iter().any(|u| u.0 != users[0].0);
            shared_frames += u64::from(many);
            for u in users {
                mapped[u.0] += 1;
                shared[u.0] += u64::from(many);
            }
        }
        for (mi, (v, m)) in acc.vms.iter().zip(&self.maps).enumerate() {
            let pages = m.pos.len() as u64;
            if v.resident + v.swapped > pages
                || v.private + v.shared != v.resident
                || v.zero > v.resident
            {
                return fail(format!("{at}: map{mi} {v:?} with {pages} pages in entries"));
            }
            if v.resident < mapped[mi] || v.shared < shared[mi] {
                return fail(format!("{at}: map{mi} {v:?}, but {} pages mapped, {} of them on frames another map maps", mapped[mi], shared[mi]));
            }
        }
        let g = &acc.global;
        if g.saved.total() != acc.resident_sum() - g.distinct {
            return fail(format!(
                "{at}: saved {:?} but Σ resident {} − distinct {}",
                g.saved,
                acc.resident_sum(),
                g.distinct
            ));
        }
        if g.distinct < by_pa.len() as u64 || g.shared_frames < shared_frames {
            return fail(format!(
                "{at}: {g:?}, but {} frames mapped, {shared_frames} by two maps",
                by_pa.len()
            ));
        }
        seen(Seen::Accounted);
        Ok(())
    }

    /// Drop everything: every frame must come back and no swap slot may stay in use.
    fn teardown(mut self) -> R {
        let uvm = self.env.uvm.clone();
        let st = uvm.stats();
        SEEN[Seen::Zero2B as usize].fetch_add(st.flt_przero, Ordering::Relaxed);
        SEEN[Seen::ObjCopy2B as usize].fetch_add(st.flt_prcopy, Ordering::Relaxed);
        SEEN[Seen::Anon1B as usize].fetch_add(st.flt_acow, Ordering::Relaxed);
        SEEN[Seen::Pageins as usize].fetch_add(st.pageins, Ordering::Relaxed);
        SEEN[Seen::DedupMerged as usize].fetch_add(st.dedup_merged, Ordering::Relaxed);
        SEEN[Seen::DedupUnmerged as usize].fetch_add(st.dedup_unmerged, Ordering::Relaxed);
        // Unwire everything the model says is wired: then no frame may stay wired.
        for mi in 0..self.maps.len() {
            while let Some((&s, _)) = self.maps[mi].pos.iter().find(|(_, p)| p.wired > 0) {
                let e =
                    (s..WINDOW).find(|pg| self.maps[mi].pos.get(pg).is_none_or(|p| p.wired == 0));
                self.unwire(mi, s, e.unwrap_or(WINDOW))?;
            }
        }
        let wired: Vec<_> = (0..uvm.total_pages())
            .map(|i| uvm.page_info(vm::addr::PageIdx(i as u32)))
            .filter(|i| i.wire_count > 0)
            .collect();
        if !wired.is_empty() {
            return fail(format!(
                "teardown: frames still wired after unwiring everything: {wired:?}"
            ));
        }
        self.maps.clear();
        self.images.clear();
        let (free, total) = (uvm.free_pages(), uvm.total_pages());
        let swap = uvm.swap().map(|s| s.counts());
        if free != total {
            let mut owners: HashMap<String, usize> = HashMap::new();
            for i in 0..total {
                let info = uvm.page_info(vm::addr::PageIdx(i as u32));
                if info.queue != vm::page::Queue::Free {
                    *owners
                        .entry(format!("{:?} wire {}", info.owner, info.wire_count))
                        .or_default() += 1;
                }
            }
            return fail(format!(
                "teardown: {} of {total} frames leaked: {owners:?}",
                total - free
            ));
        }
        if let Some((_, used, _)) = swap {
            if used != 0 {
                return fail(format!("teardown: {used} swap slots still used"));
            }
        }
        Ok(())
    }
}

/// One case: an engine with `frames` frames and `slots` swap slots, and `ops`. On failure, the
/// index of the failing step (`ops.len()` for the final checks) and why.
fn run_case(frames: usize, slots: u32, ops: &[Op]) -> Result<(), (usize, String)> {
    let at = |i: usize| move |e: TestCaseError| (i, e.to_string());
    let mut w = World::new(frames, slots);
    w.new_map().map_err(at(0))?;
    w.new_map().map_err(at(0))?;
    // A starting layout that fills most of the window, with every kind of entry.
    let (rw, all) = (2, 4);
    let layout: [(usize, u64, u64, SpecKind, usize, u8); 6] = [
        (0, 0, 16, SpecKind::Anon, rw, 0),
        (
            0,
            16,
            40,
            SpecKind::Cow {
                obj: 0,
                off: 0,
                anon: true,
            },
            all,
            0,
        ),
        (0, 40, 48, SpecKind::Shared { obj: 1, off: 8 }, all, 2),
        (0, 48, 64, SpecKind::LazyAnon, rw, 1),
        (
            1,
            0,
            24,
            SpecKind::Cow {
                obj: 1,
                off: 20,
                anon: false,
            },
            all,
            0,
        ),
        (1, 24, 64, SpecKind::Anon, all, 2),
    ];
    for (mi, s, e, kind, prot, inh) in layout {
        if mi < w.maps.len() {
            w.insert(mi, s, e, kind, PROTS[prot], true, inherit_of(inh))
                .map_err(at(0))?;
        }
    }
    for (i, op) in ops.iter().enumerate() {
        w.step = i;
        let before = w.queues();
        w.apply(op).map_err(at(i))?;
        w.check_deactivated(&before).map_err(at(i))?;
        w.check(i % FULL_EVERY == FULL_EVERY - 1).map_err(at(i))?;
        OPS_RUN.fetch_add(1, Ordering::Relaxed);
        if w.dedup_on && i % DEDUP_EVERY == DEDUP_EVERY - 1 {
            w.apply(&Op::Dedup {
                budget: DEDUP_BUDGET,
            })
            .map_err(at(i))?;
            w.check(false).map_err(at(i))?;
        }
    }
    w.check(true).map_err(at(ops.len()))?;
    w.teardown().map_err(at(ops.len()))
}

/// Shorten a failing sequence: cut after the failing step, then drop chunks of ops (halving the
/// chunk size down to one) as long as the case still fails.
fn minimise(frames: usize, slots: u32, mut ops: Vec<Op>) -> Vec<Op> {
    // The kind of failure: its message without numbers (a shorter case must fail the same way).
    let class = |why: &str| -> String {
        let s: String = why.chars().filter(|c| !c.is_ascii_digit()).collect();
        s.split(':').nth(1).unwrap_or("").chars().take(48).collect()
    };
    let Err((step, why)) = run_case(frames, slots, &ops) else {
        return ops;
    };
    let want = class(&why);
    ops.truncate(step + 1);
    let mut chunk = ops.len().div_ceil(2).max(1);
    loop {
        let mut i = 0;
        while i < ops.len() {
            let mut shorter = ops.clone();
            shorter.drain(i..(i + chunk).min(ops.len()));
            match run_case(frames, slots, &shorter) {
                Err((step, why)) if class(&why) == want => {
                    shorter.truncate(step + 1);
                    ops = shorter;
                }
                _ => i += chunk,
            }
        }
        if chunk == 1 {
            return ops;
        }
        chunk = chunk.div_ceil(2);
    }
}

/// The seed CI uses (no `UVMHYP_MODEL_SEED`): the one that found the failed-fork bug
/// (`engine_bugs.rs`, bug 7), so every CI run replays it.
const DEFAULT_SEED: u64 = 2_123_558_330_067_161_677;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// The run's seed: `UVMHYP_MODEL_SEED` (a number, or `random` for one from the clock), else
/// [`DEFAULT_SEED`]. Anything else is a mistake in the command line: refuse it rather than
/// silently run another seed.
fn model_seed() -> u64 {
    match std::env::var("UVMHYP_MODEL_SEED") {
        Err(_) => DEFAULT_SEED,
        Ok(v) if v.trim() == "random" => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("UVMHYP_MODEL_SEED={v:?}: expected a number or `random`")),
    }
}

#[test]
fn model_fault_engine() {
    let total = env_u64("UVMHYP_MODEL_OPS").unwrap_or(100_000);
    let seed = model_seed();
    let cases = total.div_ceil(OPS_PER_CASE as u64) as u32;
    println!(
        "model: {total} operations in {cases} cases of {OPS_PER_CASE}, seed {seed} \
              (replay: UVMHYP_MODEL_SEED={seed} UVMHYP_MODEL_OPS={total})"
    );
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases,
        max_shrink_iters: 300,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let strategy = (
        64usize..=256,
        8u32..=96,
        prop::collection::vec(op_strategy(), OPS_PER_CASE),
    );
    let start = std::time::Instant::now();
    let result = runner.run(&strategy, |(frames, slots, ops)| {
        run_case(frames, slots, &ops).map_err(|(i, why)| {
            FIRST_FAILURE.get_or_init(|| {
                let n = OPS_RUN.load(Ordering::Relaxed) + 1;
                (n, start.elapsed().as_secs_f64())
            });
            TestCaseError::fail(format!("step {i}: {why}"))
        })
    });
    let ran = OPS_RUN.load(Ordering::Relaxed);
    println!(
        "model: {ran} operations executed in {:.1?}, seed {seed}",
        start.elapsed()
    );
    let seen: Vec<String> = SEEN
        .iter()
        .zip(SEEN_NAMES)
        .map(|(n, name)| format!("{name} {}", n.load(Ordering::Relaxed)))
        .collect();
    println!("model: exercised: {}", seen.join(", "));
    let ops: Vec<String> = OPS_BY_KIND
        .iter()
        .zip(OP_NAMES)
        .map(|(n, name)| format!("{name} {}", n.load(Ordering::Relaxed)))
        .collect();
    println!("model: operations: {}", ops.join(", "));
    match result {
        Ok(()) => {
            if total >= COVERAGE_OPS {
                let missing: Vec<&str> = SEEN
                    .iter()
                    .zip(SEEN_NAMES)
                    .chain(OPS_BY_KIND.iter().zip(OP_NAMES))
                    .filter(|(n, _)| n.load(Ordering::Relaxed) == 0)
                    .map(|(_, name)| name)
                    .collect();
                assert!(
                    missing.is_empty(),
                    "model (seed {seed}): {total} operations never exercised {missing:?}\n\
                     exercised: {}\noperations: {}",
                    seen.join(", "),
                    ops.join(", ")
                );
            }
        }
        Err(TestError::Fail(why, (frames, slots, ops))) => {
            if let Some((n, secs)) = FIRST_FAILURE.get() {
                println!("model: first failure at operation {n}, {secs:.2} s into the run");
            }
            let ops = minimise(frames, slots, ops);
            let r = run_case(frames, slots, &ops);
            let mut shown = String::new();
            for (i, op) in ops.iter().enumerate() {
                shown.push_str(&format!("  {i}: {op:?}\n"));
            }
            panic!(
                "model failed (seed {seed}): {why}\nminimal case: frames {frames}, slots {slots}, \
                    {} ops:\n{shown}replay: {r:?}",
                ops.len()
            );
        }
        Err(e) => panic!("model: {e} (seed {seed})"),
    }
}
