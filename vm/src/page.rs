//! Pages: the metadata of every frame in the pool, and the page queues.
//!
//! A frame of the pool is named by its [`PageIdx`]. Its metadata ([`PageMeta`]: flags, owner,
//! loan and wire counts) sits behind a per-frame spin lock; the queues (free, active, inactive)
//! sit behind one global lock ([`Queues`]). Both are leaves of the lock order:
//!
//! ```text
//! MAPS → AMAP → OBJECT → ANON → PMAP → PAGE (per-frame meta) → PAGE QUEUES
//! ```
//!
//! Nothing is ever locked while a page's metadata or the queues are held, except that the queues
//! may be taken while one page's metadata is held. Who may change a page's flags follows the seed:
//! the owner's lock (anon or object) is held, or the page is BUSY and the changer set BUSY.
//!
//! # BUSY has one owner
//!
//! BUSY is set only by `Busy::claim`, a test-and-set under the page's PAGE lock that hands the
//! setter a [`Busy`] token; it is cleared only by giving that token back (`Uvm::unbusy`,
//! `Uvm::finish_page`, `Uvm::free_page`, `Busy::clear`). Nobody can clear a BUSY they did not
//! set: a fault that found a page not BUSY under its owner's lock (case 1A) and maps it holds no
//! token, so a `copy_in` that made the page BUSY meanwhile keeps it BUSY (issue 7, bug 2).

use alloc::sync::Weak;
use alloc::vec::Vec;

use crate::addr::PageIdx;
use crate::anon::{Anon, SwapSlot};
use crate::object::Object;

bitflags::bitflags! {
    /// Page flags (the seed's `PG_*`).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct PageFlags: u8 {
        /// Someone owns the page for I/O or a fault in progress; nobody else may touch its data.
        const BUSY = 1 << 0;
        /// Someone found it BUSY and gave up (the seed sleeps on it; we restart).
        const WANTED = 1 << 1;
        /// The owner let go while the page was BUSY: whoever clears BUSY frees it.
        const RELEASED = 1 << 2;
        /// The contents equal the backing store (swap slot or object source).
        const CLEAN = 1 << 3;
        /// The contents are not valid yet (being filled).
        const FAKE = 1 << 4;
        /// The page must never be mapped writable.
        const RDONLY = 1 << 5;
        /// Read ahead of a SEQUENTIAL guest, and the fault that maps it starts the next
        /// readahead window (Linux's `PG_readahead`; `fault/readahead.rs`). Not in the seed.
        const READAHEAD = 1 << 6;
    }
}

/// Proof that its holder set BUSY on a page (see the module documentation): the only key that
/// clears it. Neither `Clone` nor `Copy`; made only by `Busy::claim`.
#[must_use = "the page stays BUSY until its holder gives the token back (Uvm::unbusy)"]
#[derive(PartialEq, Eq, Debug)]
pub struct Busy(PageIdx);

impl Busy {
    /// Set BUSY on `pg`, whose locked metadata is `m`, unless it is BUSY already (then `None`:
    /// someone else holds it). A page RELEASED is BUSY too, so it is never claimed.
    ///
    /// # Locks
    /// Entry and exit: `pg`'s PAGE lock held (`m`); takes nothing.
    pub(crate) fn claim(m: &mut PageMeta, pg: PageIdx) -> Option<Busy> {
        if m.flags.contains(PageFlags::BUSY) {
            return None;
        }
        m.flags.insert(PageFlags::BUSY);
        Some(Busy(pg))
    }

    /// The page held BUSY.
    ///
    /// # Locks
    /// None.
    pub fn page(&self) -> PageIdx {
        self.0
    }

    /// Clear BUSY and WANTED in a PAGE lock the caller holds, for a page handed to someone else
    /// in the same step (a loan break); a RELEASED page is not freed here (`Uvm::unbusy` does).
    /// Returns whether someone was WANTING it: the caller then calls `Uvm::wake_waiters` once
    /// the PAGE lock is dropped.
    ///
    /// # Locks
    /// Entry and exit: this page's PAGE lock held (`m`); takes nothing.
    #[must_use = "a WANTED page's waiters must be woken"]
    pub(crate) fn clear(self, m: &mut PageMeta) -> bool {
        debug_assert!(
            m.flags.contains(PageFlags::BUSY),
            "a token means BUSY is set"
        );
        let wanted = m.flags.contains(PageFlags::WANTED);
        m.flags.remove(PageFlags::BUSY | PageFlags::WANTED);
        wanted
    }
}

/// Who the engine tells when a page someone WANTED stops being BUSY (the seed's `wakeup(pg)` in
/// `uvm_page_unbusy`): the hypervisor, which parks a vCPU whose fault met the BUSY page
/// ([`crate::fault::Failure::busy`]) and wakes it here.
pub trait PageWaker: Send + Sync {
    /// `page` is no longer BUSY (or was freed while BUSY).
    ///
    /// # Locks
    /// May be called with engine locks held (a page freed under ANON): it must take no engine
    /// lock, only leaf locks of its own.
    fn unbusied(&self, page: crate::addr::Pa);
}

/// Who owns a frame.
#[derive(Clone, Debug, Default)]
pub enum Owner {
    /// On the free queue (or being handed out).
    #[default]
    Free,
    /// An intermediate stage-2 translation table.
    Table,
    /// The resident page of an anon.
    Anon(Weak<Anon>),
    /// A page of an object, at a byte offset in it.
    Object {
        object: Weak<dyn Object>,
        offset: u64,
    },
    /// A page whose owner dropped it while it was on loan: it lives until the last loan ends.
    Orphan,
}

/// Short form of [`Owner`] for inspection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OwnerKind {
    Free,
    Table,
    Anon,
    Object { offset: u64 },
    Orphan,
}

/// Metadata of one frame.
#[derive(Debug, Default)]
pub struct PageMeta {
    pub flags: PageFlags,
    pub owner: Owner,
    /// The anon that holds this object page on loan (object → anon loan), if any.
    pub loan_anon: Option<Weak<Anon>>,
    /// Number of loans outstanding. A loaned page is never written in place.
    pub loan_count: u32,
    /// Number of wirings. A wired page is on no paging queue and is never paged out.
    pub wire_count: u32,
    /// The swap slot of the anon that let go of this page while it was BUSY (RELEASED): the
    /// BUSY holder may still be reading or writing it, so it is freed with the page (by
    /// `Uvm::free_page`), or marked bad by a holder whose I/O failed, never earlier.
    pub released_swslot: SwapSlot,
}

impl PageMeta {
    /// The inspection form of the owner.
    ///
    /// # Locks
    /// Entry and exit: PAGE held (`self` is the locked metadata); takes nothing.
    pub fn owner_kind(&self) -> OwnerKind {
        match &self.owner {
            Owner::Free => OwnerKind::Free,
            Owner::Table => OwnerKind::Table,
            Owner::Anon(_) => OwnerKind::Anon,
            Owner::Object { offset, .. } => OwnerKind::Object { offset: *offset },
            Owner::Orphan => OwnerKind::Orphan,
        }
    }
}

/// Which queue a frame is on.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Queue {
    /// On no queue (wired, a table frame, an orphan, or allocated and taken off again).
    #[default]
    None,
    Free,
    Active,
    Inactive,
}

/// A snapshot of one page, for tests and diagnostics.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PageInfo {
    pub flags: PageFlags,
    pub owner: OwnerKind,
    pub loan_count: u32,
    pub wire_count: u32,
    pub queue: Queue,
}

const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Link {
    prev: u32,
    next: u32,
}

/// A doubly linked list threaded through `Queues::links` (head = oldest).
#[derive(Clone, Copy, Debug)]
struct List {
    head: u32,
    tail: u32,
    len: usize,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        len: 0,
    };
}

/// The page queues (the seed's `uvm_pageqlock` domain). All three are lists threaded through
/// `links`, so taking any frame off any queue is O(1). The free list is a stack (head = the frame
/// freed last), first handing out the pool's frames from the lowest.
#[derive(Debug)]
pub struct Queues {
    free: List,
    links: Vec<Link>,
    which: Vec<Queue>,
    active: List,
    inactive: List,
    /// Stage-2 table frames retired as whole sets (`TableFrames::retire_tables`): on no queue,
    /// still owned `Table`, but free to be handed out (see `Uvm`'s `TableFrames`).
    retired: Vec<crate::pmap::RetiredTables>,
    /// Frames in `retired`.
    retired_len: usize,
}

impl Queues {
    /// `n` frames, all free (lowest index handed out first).
    ///
    /// # Locks
    /// None: the queues are unreachable by anyone else until the caller stores them.
    pub(crate) fn new(n: u32) -> Queues {
        let link = |i: u32| Link {
            prev: i.checked_sub(1).unwrap_or(NIL),
            next: if i + 1 < n { i + 1 } else { NIL },
        };
        Queues {
            free: if n == 0 {
                List::EMPTY
            } else {
                List {
                    head: 0,
                    tail: n - 1,
                    len: n as usize,
                }
            },
            links: (0..n).map(link).collect(),
            which: alloc::vec![Queue::Free; n as usize],
            active: List::EMPTY,
            inactive: List::EMPTY,
            retired: Vec::new(),
            retired_len: 0,
        }
    }

    /// Number of retired stage-2 table frames (kept by `retire`, see `Uvm`).
    ///
    /// # Locks
    /// Entry and exit: PAGE QUEUES held (`self` is the locked queues); takes nothing.
    pub fn retired_count(&self) -> usize {
        self.retired_len
    }

    /// Keep a set of retired stage-2 table frames (O(1): the set is kept whole).
    ///
    /// # Locks
    /// Entry and exit: PAGE QUEUES held (`self` is the locked queues); takes nothing.
    pub(crate) fn retire(&mut self, tables: crate::pmap::RetiredTables) {
        if tables.is_empty() {
            return;
        }
        self.retired_len += tables.len();
        self.retired.push(tables);
    }

    /// Take one retired table frame.
    ///
    /// # Locks
    /// Entry and exit: PAGE QUEUES held (`self` is the locked queues); takes nothing.
    pub(crate) fn pop_retired(&mut self) -> Option<crate::addr::Pa> {
        loop {
            let set = self.retired.last_mut()?;
            match set.pop() {
                Some(frame) => {
                    self.retired_len = self.retired_len.saturating_sub(1);
                    return Some(frame);
                }
                None => {
                    self.retired.pop();
                }
            }
        }
    }

    /// Number of free frames.
    ///
    /// # Locks
    /// Entry and exit: PAGE QUEUES held (`self` is the locked queues); takes nothing.
    pub fn free_count(&self) -> usize {
        self.free.len
    }

    /// Number of active frames.
    ///
    /// # Locks
    /// Entry and exit: PAGE QUEUES held (`self` is the locked queues); takes nothing.
    pub fn active_count(&self) -> usize {
        self.active.len
    }

    /// Number of inactive frames.
    ///
    /// # Locks
    /// Entry and exit: PAGE QUEUES held (`self` is the locked queues); takes nothing.
    pub fn inactive_count(&self) -> usize {
        self.inactive.len
    }

    /// Which queue `pg` is on.
    ///
    /// # Locks
    /// Entry and exit: PAGE QUEUES held (`self` is the locked queues); takes nothing.
    pub fn queue_of(&self, pg: PageIdx) -> Queue {
        self.which
            .get(pg.0 as usize)
            .copied()
            .unwrap_or(Queue::None)
    }

    /// Take a free frame off the free queue.
    ///
    /// # Locks
    /// Entry and exit: PAGE QUEUES held (`self` is the locked queues); takes nothing.
    pub(crate) fn pop_free(&mut self) -> Option<PageIdx> {
        let i = self.free.head;
        if i == NIL {
            return None;
        }
        self.unlink(PageIdx(i));
        Some(PageIdx(i))
    }

    /// Take two adjacent free frames `i, i + 1` with `first_ok(i)` (a contiguous pair for a
    /// stage-2 root); returns the first.
    ///
    /// The search starts at the top of the pool, which single frames reach last (they are handed
    /// out from the bottom): there a pair is found at once, whatever is allocated below, so a
    /// fork's new root costs the same with 16 MiB or 256 MiB resident. Only a pool fragmented to
    /// its top makes the search long.
    ///
    /// # Locks
    /// Entry and exit: PAGE QUEUES held (`self` is the locked queues); takes nothing.
    pub(crate) fn take_pair(&mut self, first_ok: impl Fn(u32) -> bool) -> Option<PageIdx> {
        let n = u32::try_from(self.which.len()).ok()?;
        let i = (0..n.saturating_sub(1)).rev().find(|&i| {
            first_ok(i)
                && self.queue_of(PageIdx(i)) == Queue::Free
                && self.queue_of(PageIdx(i + 1)) == Queue::Free
        })?;
        self.unlink(PageIdx(i));
        self.unlink(PageIdx(i + 1));
        Some(PageIdx(i))
    }

    /// Put `pg` on the free queue (off any other queue first).
    ///
    /// # Locks
    /// Entry and exit: PAGE QUEUES held (`self` is the locked queues); takes nothing.
    pub(crate) fn push_free(&mut self, pg: PageIdx) {
        match self.queue_of(pg) {
            Queue::Free => return,
            Queue::Active | Queue::Inactive => self.unlink(pg),
            Queue::None => {}
        }
        self.link_head_free(pg);
    }

    /// Move `pg` to the tail of `q` (Active or Inactive). A free frame is left alone.
    ///
    /// # Locks
    /// Entry and exit: PAGE QUEUES held (`self` is the locked queues); takes nothing.
    pub(crate) fn move_to(&mut self, pg: PageIdx, q: Queue) {
        let cur = self.queue_of(pg);
        if cur == Queue::Free || (pg.0 as usize) >= self.links.len() {
            return;
        }
        if cur == Queue::Active || cur == Queue::Inactive {
            self.unlink(pg);
        }
        match q {
            Queue::Active | Queue::Inactive => self.link_tail(pg, q),
            Queue::None | Queue::Free => {}
        }
    }

    /// Take `pg` off the active or inactive queue (no-op otherwise).
    ///
    /// # Locks
    /// Entry and exit: PAGE QUEUES held (`self` is the locked queues); takes nothing.
    pub(crate) fn dequeue(&mut self, pg: PageIdx) {
        if matches!(self.queue_of(pg), Queue::Active | Queue::Inactive) {
            self.unlink(pg);
        }
    }

    /// Up to `max` frames from the head (oldest end) of `q`, without removing them.
    ///
    /// # Locks
    /// Entry and exit: PAGE QUEUES held (`self` is the locked queues); takes nothing.
    pub(crate) fn oldest(&self, q: Queue, max: usize) -> Vec<PageIdx> {
        let list = match q {
            Queue::Active => self.active,
            Queue::Inactive => self.inactive,
            _ => return Vec::new(),
        };
        let mut out = Vec::new();
        let mut cur = list.head;
        while cur != NIL && out.len() < max {
            out.push(PageIdx(cur));
            cur = self.links.get(cur as usize).map_or(NIL, |l| l.next);
        }
        out
    }

    fn list_mut(&mut self, q: Queue) -> Option<&mut List> {
        match q {
            Queue::Active => Some(&mut self.active),
            Queue::Inactive => Some(&mut self.inactive),
            Queue::Free => Some(&mut self.free),
            Queue::None => None,
        }
    }

    /// Push `pg` (on no queue) on the free stack.
    fn link_head_free(&mut self, pg: PageIdx) {
        let i = pg.0;
        if (i as usize) >= self.links.len() {
            return;
        }
        let old_head = self.free.head;
        self.free.head = i;
        if self.free.tail == NIL {
            self.free.tail = i;
        }
        self.free.len += 1;
        if let Some(h) = self.links.get_mut(old_head as usize) {
            h.prev = i;
        }
        if let Some(l) = self.links.get_mut(i as usize) {
            *l = Link {
                prev: NIL,
                next: old_head,
            };
        }
        if let Some(w) = self.which.get_mut(i as usize) {
            *w = Queue::Free;
        }
    }

    fn link_tail(&mut self, pg: PageIdx, q: Queue) {
        let i = pg.0;
        let Some(list) = self.list_mut(q) else { return };
        let old_tail = list.tail;
        list.tail = i;
        if list.head == NIL {
            list.head = i;
        }
        list.len += 1;
        if let Some(t) = self.links.get_mut(old_tail as usize) {
            t.next = i;
        }
        if let Some(l) = self.links.get_mut(i as usize) {
            *l = Link {
                prev: old_tail,
                next: NIL,
            };
        }
        if let Some(w) = self.which.get_mut(i as usize) {
            *w = q;
        }
    }

    fn unlink(&mut self, pg: PageIdx) {
        let i = pg.0;
        let q = self.queue_of(pg);
        let Some(link) = self.links.get(i as usize).copied() else {
            return;
        };
        if let Some(p) = self.links.get_mut(link.prev as usize) {
            p.next = link.next;
        }
        if let Some(n) = self.links.get_mut(link.next as usize) {
            n.prev = link.prev;
        }
        if let Some(list) = self.list_mut(q) {
            if list.head == i {
                list.head = link.next;
            }
            if list.tail == i {
                list.tail = link.prev;
            }
            list.len = list.len.saturating_sub(1);
        }
        if let Some(l) = self.links.get_mut(i as usize) {
            *l = Link {
                prev: NIL,
                next: NIL,
            };
        }
        if let Some(w) = self.which.get_mut(i as usize) {
            *w = Queue::None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_move_and_count() {
        let mut q = Queues::new(4);
        assert_eq!(q.free_count(), 4);
        let a = q.pop_free().unwrap();
        let b = q.pop_free().unwrap();
        assert_eq!((a, b), (PageIdx(0), PageIdx(1)));
        q.move_to(a, Queue::Active);
        q.move_to(b, Queue::Active);
        assert_eq!(q.active_count(), 2);
        q.move_to(a, Queue::Inactive);
        assert_eq!((q.active_count(), q.inactive_count()), (1, 1));
        assert_eq!(q.oldest(Queue::Active, 8), alloc::vec![b]);
        q.dequeue(b);
        assert_eq!(q.queue_of(b), Queue::None);
        q.push_free(a);
        q.push_free(b);
        assert_eq!(
            (q.free_count(), q.inactive_count(), q.active_count()),
            (4, 0, 0)
        );
        assert_eq!(q.queue_of(PageIdx(99)), Queue::None);
    }
}
