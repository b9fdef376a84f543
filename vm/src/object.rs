//! Objects: the lower layer of a map entry (the seed's `struct uvm_object` and its pager ops).
//!
//! An object is a sequence of pages addressed by byte offset, filled on demand by its pager. The
//! fault routine talks to it through [`Object`]: `get` in LOCKED mode (resident pages only, never
//! blocks: the neighbourhood and the center page if it is there) and in SYNC mode (make the center
//! page resident, doing I/O), `put` (deactivate / flush / free a range), an optional `fault` hook
//! that takes over the whole fault, and `needs_write_fault` (never map writable: the object wants
//! to see every write).
//!
//! [`ImageObject`] is the real object uvmhyp uses: a guest image, its pages filled from a byte
//! source on first get. Pages past the bytes read as zero up to the page-rounded size; past that,
//! a get is an error.
//!
//! # Locks
//! The OBJECT lock is internal to each object: taken inside `get`/`put`/`loan_break`, after MAPS
//! and AMAP, before ANON, PMAP, PAGE and PAGE QUEUES. Unlike the seed, the fault routine does not
//! hold it between calls: a page handed out by `get` is BUSY, and BUSY is what keeps it from
//! being freed or changed (the seed holds both; BUSY alone suffices because every path that frees
//! an object page checks BUSY and marks it RELEASED instead).

use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};

use crate::addr::{Ipa, PageIdx, Prot, PAGE_SIZE};
use crate::anon::Anon;
use crate::fault::FaultError;
use crate::map::Advice;
use crate::page::{Busy, Owner, PageFlags, PageMeta};
use crate::pmap::Pmap;
use crate::uvm::Uvm;

/// One position of a `get`: in, whether the caller wants it; out, the page found.
#[derive(PartialEq, Eq, Debug)]
pub enum PageSlot {
    /// The caller does not want this page (already mapped); left untouched (`PGO_DONTCARE`).
    DontCare,
    /// Wanted, nothing found.
    Empty,
    /// Found: resident, now BUSY for the caller (the token), who must give it back when done.
    Page(Busy),
}

/// How `get` may behave.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GetMode {
    /// Resident pages only; never does I/O or allocates (`PGO_LOCKED`).
    Locked,
    /// Make the center page resident, allocating and filling it (`PGO_SYNCIO`).
    Sync,
}

/// Why a pager operation failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PagerError {
    /// The page is busy (now marked WANTED): try again once it is unbusied (`EAGAIN`).
    Again(PageIdx),
    /// No free frame.
    NoMemory,
    /// The backing store failed.
    Io,
    /// The offset is past the object's end.
    OutOfRange,
    /// The page is wired: it stays where its wiring pinned it, writable in place, and is never
    /// lent (the seed's loan code refuses wired pages).
    Wired,
}

bitflags::bitflags! {
    /// What `put` does to each resident page of the range (the seed's `PGO_*`).
    #[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
    pub struct PutFlags: u8 {
        /// Move to the inactive queue.
        const DEACTIVATE = 1 << 0;
        /// Write dirty pages back.
        const FLUSH = 1 << 1;
        /// Free the pages (dirty pages with no backing store are kept).
        const FREE = 1 << 2;
    }
}

/// What an object's `fault` hook gets (the seed's `pgo_fault` arguments).
pub struct ObjFault<'a> {
    pub uvm: &'a Uvm,
    pub pmap: &'a dyn Pmap,
    /// IPA of `pages[0]`.
    pub start: Ipa,
    /// Object offset of `pages[0]`.
    pub offset: u64,
    pub pages: &'a mut [PageSlot],
    pub center: usize,
    pub access: Prot,
    pub enter_prot: Prot,
    pub wired: bool,
}

/// A pager-backed object.
pub trait Object: Send + Sync {
    /// Size in bytes (a multiple of the page size); offsets at or past it are out of range.
    ///
    /// # Locks
    /// None (the size never changes).
    fn size(&self) -> u64;

    /// Find (LOCKED) or make resident (SYNC) the pages of `pages`, the first at byte `offset`.
    /// Returns how many pages were found. In SYNC mode only `pages[center]` is made resident;
    /// it comes back BUSY, or the call fails. Each page found is BUSY for the caller, its token
    /// in its slot ([`PageSlot::Page`]); a page BUSY for someone else is skipped (LOCKED) or
    /// refused with `Again` (SYNC).
    ///
    /// # Locks
    /// Entry: MAPS and AMAP may be held (LOCKED) or nothing (SYNC). Takes OBJECT inside.
    #[allow(clippy::too_many_arguments)]
    fn get(
        &self,
        uvm: &Uvm,
        offset: u64,
        pages: &mut [PageSlot],
        center: usize,
        access: Prot,
        advice: Advice,
        mode: GetMode,
    ) -> Result<usize, PagerError>;

    /// Apply `flags` to every resident page in `[start, end)`.
    ///
    /// # Locks
    /// Entry: MAPS and AMAP may be held (the sequential deactivate-behind holds them); no ANON,
    /// PMAP, PAGE or PAGE QUEUES lock. Takes OBJECT, and under it each page's PAGE lock, PAGE
    /// QUEUES, and PMAP (through the reverse map) for a page it frees or deactivates (the
    /// deactivation clears the page's reference bit in every stage 2). Exit: as on entry. A BUSY
    /// page is marked RELEASED instead of freed; a dirty or wired page is kept.
    fn put(&self, uvm: &Uvm, start: u64, end: u64, flags: PutFlags) -> Result<(), PagerError>;

    /// The object wants to see every write: its pages are always mapped read-only.
    ///
    /// # Locks
    /// None.
    fn needs_write_fault(&self) -> bool {
        false
    }

    /// An object that resolves faults itself returns `Some` (the seed's optional `pgo_fault`);
    /// the default is no hook. The hook enters mappings itself; `Err(Restart)` refaults.
    ///
    /// # Locks
    /// Entry: MAPS (read) and AMAP (if any) held, as the seed calls `pgo_fault`; the hook takes
    /// OBJECT and anything below itself. Exit: the hook releases what it took; the caller then
    /// drops MAPS and AMAP (in the seed the hook unlocks them).
    fn fault(&self, _args: &mut ObjFault<'_>) -> Option<Result<(), FaultError>> {
        None
    }

    /// The resident page at `offset`, if any (inspection; no flags change).
    ///
    /// # Locks
    /// Takes OBJECT briefly; anything above it may be held, nothing below.
    fn resident(&self, offset: u64) -> Option<PageIdx>;

    /// Break the loans of the BUSY page `pg` at `offset` (the seed's `uvm_loanbreak`): a copy
    /// replaces it in the object and is returned BUSY; the loaned page goes to its borrowers.
    /// `Err(pg)`, the old page still BUSY for the caller, when no frame is free.
    ///
    /// # Locks
    /// Entry: MAPS (read) and AMAP (if any) held (case 2A), `pg` BUSY for the caller, no ANON,
    /// PMAP, PAGE or PAGE QUEUES lock. Takes OBJECT, under it PAGE QUEUES and PAGE (allocation),
    /// PMAP (the old page's `page_protect`), PAGE. Exit: as on entry, the returned page BUSY and
    /// the old page unbusied. On failure nothing changed and `pg` is handed back, still BUSY.
    fn loan_break(&self, uvm: &Uvm, offset: u64, pg: Busy) -> Result<Busy, Busy>;
}

/// A read-only guest image (kernel, initrd, test program) shared by every VM that maps it.
pub struct ImageObject {
    me: Weak<ImageObject>,
    uvm: Arc<Uvm>,
    bytes: Arc<[u8]>,
    size: u64,
    pages: crate::sync::Mutex<BTreeMap<u64, PageIdx>>,
}

impl ImageObject {
    /// An object of `bytes.len()` rounded up to whole pages; nothing resident yet.
    ///
    /// # Locks
    /// None: the new object is unreachable by anyone else until returned.
    pub fn new(uvm: &Arc<Uvm>, bytes: Arc<[u8]>) -> Arc<ImageObject> {
        let size = (bytes.len() as u64).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        Arc::new_cyclic(|me| ImageObject {
            me: me.clone(),
            uvm: uvm.clone(),
            bytes,
            size,
            pages: crate::sync::Mutex::new(BTreeMap::new()),
        })
    }

    /// # Locks
    /// None.
    fn owner(&self, offset: u64) -> Owner {
        let object: Weak<dyn Object> = self.me.clone();
        Owner::Object { object, offset }
    }

    /// Fill a FAKE page from the image bytes (zero past them).
    ///
    /// # Locks
    /// Entry: nothing but the BUSY|FAKE page `pg`, which stands in for the OBJECT lock while it is
    /// filled. Takes nothing.
    fn fill(&self, uvm: &Uvm, offset: u64, pg: PageIdx) {
        let pa = uvm.pa(pg);
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = start
            .saturating_add(PAGE_SIZE as usize)
            .min(self.bytes.len());
        let src = self.bytes.get(start..end).unwrap_or(&[]);
        // Zero only a page the image does not fill whole (its last, or one past its end).
        if src.len() < PAGE_SIZE as usize {
            uvm.mem().zero(pa);
        }
        uvm.mem().write(pa, src);
    }

    /// # Locks
    /// Entry: nothing held (a SYNC get runs with the fault unlocked). Takes OBJECT, and under it
    /// PAGE (flags) or PAGE QUEUES then PAGE (allocation); fills the new BUSY|FAKE page after
    /// releasing OBJECT, then takes PAGE. Exit: nothing held; the page BUSY on success. On `Again`
    /// the resident page got WANTED and nothing else changed; on `NoMemory` nothing changed.
    fn get_sync(&self, uvm: &Uvm, offset: u64) -> Result<Busy, PagerError> {
        if offset >= self.size {
            return Err(PagerError::OutOfRange);
        }
        let busy = {
            let mut table = self.pages.lock();
            if let Some(&pg) = table.get(&offset) {
                let mut m = uvm.page_meta(pg).lock();
                // A RELEASED page is BUSY as well: never claimed.
                return Busy::claim(&mut m, pg).ok_or_else(|| {
                    m.flags.insert(PageFlags::WANTED);
                    PagerError::Again(pg)
                });
            }
            let busy = uvm
                .alloc_page(self.owner(offset), false)
                .ok_or(PagerError::NoMemory)?;
            table.insert(offset, busy.page());
            busy
        };
        // The page is BUSY|FAKE and in the table: fill it without the object lock.
        let pg = busy.page();
        self.fill(uvm, offset, pg);
        let mut m = uvm.page_meta(pg).lock();
        m.flags.remove(PageFlags::FAKE);
        m.flags.insert(PageFlags::CLEAN);
        Ok(busy)
    }
}

impl Object for ImageObject {
    /// # Locks
    /// None.
    fn size(&self) -> u64 {
        self.size
    }

    /// # Locks
    /// As [`Object::get`]. LOCKED: takes OBJECT and under it each page's PAGE lock (MAPS and AMAP
    /// may be held). SYNC: see `get_sync`. Exit: the pages returned are BUSY.
    fn get(
        &self,
        uvm: &Uvm,
        offset: u64,
        pages: &mut [PageSlot],
        center: usize,
        _access: Prot,
        _advice: Advice,
        mode: GetMode,
    ) -> Result<usize, PagerError> {
        match mode {
            GetMode::Sync => {
                let off = (center as u64)
                    .checked_mul(PAGE_SIZE)
                    .and_then(|d| offset.checked_add(d));
                let busy = self.get_sync(uvm, off.ok_or(PagerError::OutOfRange)?)?;
                match pages.get_mut(center) {
                    Some(slot) => *slot = PageSlot::Page(busy),
                    None => {
                        uvm.unbusy(busy);
                        return Err(PagerError::OutOfRange);
                    }
                }
                Ok(1)
            }
            GetMode::Locked => {
                let table = self.pages.lock();
                let mut got = 0;
                for (i, slot) in pages.iter_mut().enumerate() {
                    if matches!(slot, PageSlot::DontCare) {
                        continue;
                    }
                    *slot = PageSlot::Empty;
                    let off = (i as u64)
                        .checked_mul(PAGE_SIZE)
                        .and_then(|d| offset.checked_add(d));
                    let Some(&pg) = off.and_then(|o| table.get(&o)) else {
                        continue;
                    };
                    // A BUSY (or RELEASED, which is BUSY too) page is someone else's: skipped.
                    let Some(busy) = Busy::claim(&mut uvm.page_meta(pg).lock(), pg) else {
                        continue;
                    };
                    *slot = PageSlot::Page(busy);
                    got += 1;
                }
                Ok(got)
            }
        }
    }

    /// # Locks
    /// As [`Object::put`]: OBJECT held across the walk; under it PAGE per page, PAGE QUEUES, and
    /// PMAP, PAGE, PAGE QUEUES (`page_protect`, `free_page`) for a page it frees, PMAP
    /// (`deactivate`) for a page it deactivates.
    fn put(&self, uvm: &Uvm, start: u64, end: u64, flags: PutFlags) -> Result<(), PagerError> {
        let mut table = self.pages.lock();
        let offsets: alloc::vec::Vec<u64> = table.range(start..end).map(|(o, _)| *o).collect();
        for off in offsets {
            let Some(&pg) = table.get(&off) else { continue };
            if flags.contains(PutFlags::DEACTIVATE) {
                // `deactivate` leaves BUSY (and wired) pages where they are.
                let _ = uvm.deactivate(pg);
            }
            // FLUSH: the image is a read-only source; a page written through a shared writable
            // mapping has no backing store to go to, so it is simply kept (never freed below).
            if !flags.contains(PutFlags::FREE) {
                continue;
            }
            let free_now = {
                // Decide and claim in one step under the page's lock.
                let mut m = uvm.page_meta(pg).lock();
                if !m.flags.contains(PageFlags::CLEAN) || m.wire_count > 0 {
                    continue;
                }
                table.remove(&off);
                if m.flags.contains(PageFlags::BUSY) {
                    // Someone holds it BUSY: they free it when they let go.
                    m.flags.insert(PageFlags::RELEASED);
                    None
                } else if m.loan_count > 0 {
                    hand_back_loan(&mut m);
                    None
                } else {
                    Busy::claim(&mut m, pg)
                }
            };
            if let Some(busy) = free_now {
                uvm.page_protect(pg, Prot::NONE);
                uvm.free_page(busy);
            }
        }
        Ok(())
    }

    /// # Locks
    /// Takes OBJECT briefly.
    fn resident(&self, offset: u64) -> Option<PageIdx> {
        self.pages.lock().get(&offset).copied()
    }

    /// The loan is judged again under the old page's PAGE lock: the borrowing anon may have
    /// given it back meanwhile (its own write fault, under the anon's lock, not ours). Then the
    /// old page belongs to nobody but this object, which has just replaced it: it is freed.
    ///
    /// # Locks
    /// As [`Object::loan_break`]: OBJECT held throughout; under it PAGE QUEUES and PAGE
    /// (allocation), PMAP (`page_protect` of the old page), PAGE, then PAGE QUEUES to dequeue an
    /// orphaned page or free the old one.
    fn loan_break(&self, uvm: &Uvm, offset: u64, old: Busy) -> Result<Busy, Busy> {
        let mut table = self.pages.lock();
        let Some(new) = uvm.alloc_page(self.owner(offset), false) else {
            return Err(old);
        };
        let pg = old.page();
        uvm.mem().copy(uvm.pa(new.page()), uvm.pa(pg));
        uvm.page_protect(pg, Prot::NONE);
        table.insert(offset, new.page());
        uvm.page_meta(new.page())
            .lock()
            .flags
            .remove(PageFlags::FAKE);
        enum Then {
            Borrowed,
            Orphan,
            Free(Busy),
        }
        let mut wanted = false;
        let then = {
            let mut m = uvm.page_meta(pg).lock();
            if m.loan_count == 0 && matches!(m.owner, Owner::Object { .. }) {
                // Given back meanwhile: ours alone, replaced, unmapped, still BUSY for us.
                Then::Free(old)
            } else {
                wanted = old.clear(&mut m);
                if hand_back_loan(&mut m) {
                    Then::Borrowed
                } else {
                    Then::Orphan
                }
            }
        };
        if wanted {
            uvm.wake_waiters(pg);
        }
        match then {
            Then::Borrowed => {}
            Then::Orphan => uvm.dequeue(pg),
            Then::Free(old) => uvm.free_page(old),
        }
        Ok(new)
    }
}

/// The object lets go of a page it loaned: the anon that borrowed it (if still alive) owns it
/// now, with `loan_count` lowered (saturating at 0); with no borrower the page becomes an orphan.
/// Returns true when an anon took the page, false when it was orphaned (the caller then dequeues
/// or frees it as its path requires).
///
/// # Locks
/// The caller holds the page's PAGE lock (`m` is its guarded metadata).
fn hand_back_loan(m: &mut PageMeta) -> bool {
    match m.loan_anon.take() {
        Some(a) => {
            m.owner = Owner::Anon(a);
            m.loan_count = m.loan_count.saturating_sub(1);
            true
        }
        None => {
            m.owner = Owner::Orphan;
            false
        }
    }
}

impl Drop for ImageObject {
    /// A loaned page goes to its borrowers; a page someone holds BUSY (a `copy_in`, a fault
    /// between its get and its end) is marked RELEASED, and its holder frees it when it lets go
    /// (`Uvm::unbusy`): freed here, its frame could be handed to another VM mid-copy.
    ///
    /// # Locks
    /// Entry: no OBJECT-or-later lock held (whoever drops the last reference may hold MAPS). Takes
    /// OBJECT to empty the table, then per page PAGE, and PMAP, PAGE QUEUES to free it.
    fn drop(&mut self) {
        let pages = core::mem::take(&mut *self.pages.lock());
        for (_, pg) in pages {
            let free_now = {
                let mut m = self.uvm.page_meta(pg).lock();
                if m.loan_count > 0 {
                    hand_back_loan(&mut m);
                    None
                } else {
                    let claimed = Busy::claim(&mut m, pg);
                    if claimed.is_none() {
                        m.flags.insert(PageFlags::RELEASED);
                    }
                    claimed
                }
            };
            if let Some(busy) = free_now {
                self.uvm.page_protect(pg, Prot::NONE);
                self.uvm.free_page(busy);
            }
        }
    }
}

/// Lend the object page at `offset` to a new anon (the seed's object → anon loan, `uvm_loananon`):
/// the anon's page is the object's page, with `loan_count` raised. Writes through the anon break
/// the loan (case 1 loan handling); the object keeps its page.
///
/// As the seed's `uvm_loanuobj`: the first loan write-protects every mapping of the page (a VM
/// mapping it writable through a shared entry would otherwise keep writing into the borrower's
/// data; its next write faults and breaks the loan instead), and a wired page is never lent
/// ([`PagerError::Wired`]: its wiring pins it writable in place). While the page is BUSY for the
/// loan nobody maps it anew, so nothing writable appears between the protection and the count.
///
/// # Locks
/// Entry: no OBJECT-or-later lock held. Takes OBJECT (a SYNC get), PAGE, PMAP (through the
/// reverse map, on the first loan) and PAGE, PAGE QUEUES, and the new anon's lock (unreachable by
/// anyone else). Exit: nothing held; on failure the page is unbusied.
pub fn loan_to_anon(uvm: &Uvm, object: &dyn Object, offset: u64) -> Result<Arc<Anon>, PagerError> {
    let mut slot = [PageSlot::Empty];
    object.get(
        uvm,
        offset,
        &mut slot,
        0,
        Prot::READ,
        Advice::Normal,
        GetMode::Sync,
    )?;
    let [PageSlot::Page(busy)] = slot else {
        return Err(PagerError::Io);
    };
    let pg = busy.page();
    let anon = Anon::new();
    let first = {
        let mut m = uvm.page_meta(pg).lock();
        let refused = if m.wire_count > 0 {
            Some(PagerError::Wired)
        } else if m.loan_anon.is_some() {
            Some(PagerError::Again(pg))
        } else {
            None
        };
        if let Some(e) = refused {
            drop(m);
            uvm.unbusy(busy);
            return Err(e);
        }
        let first = m.loan_count == 0;
        m.loan_count = m.loan_count.saturating_add(1);
        m.loan_anon = Some(Arc::downgrade(&anon));
        first
    };
    if first {
        uvm.page_protect(pg, Prot::READ);
    }
    anon.lock().page = Some(pg);
    uvm.enqueue(pg);
    uvm.unbusy(busy);
    Ok(anon)
}
