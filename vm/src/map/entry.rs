//! A map's entries: what one entry of the IPA space is ([`Entry`], built from an [`EntrySpec`]),
//! the fork and fault policies it carries ([`Inherit`], [`Advice`]), and the sorted set of them
//! behind the MAPS lock ([`MapInner`]: lookup, clip).

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::addr::{Ipa, Prot};
use crate::amap::{amap_split, AmapRef};
use crate::fault::FaultError;
use crate::object::Object;

/// What a child map gets of an entry at fork (the seed's `MAP_INHERIT_*`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Inherit {
    /// Both maps share the amap: writes in one are seen by the other.
    Share,
    /// The child gets a copy-on-write copy.
    #[default]
    Copy,
    /// The child gets nothing.
    None,
}

/// Expected access pattern, choosing the fault neighbourhood (the seed's `MADV_*`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Advice {
    /// 3 pages back, 4 forward.
    #[default]
    Normal,
    /// The faulting page only.
    Random,
    /// 8 back (deactivated, not mapped), 7 forward.
    Sequential,
}

impl Advice {
    /// (pages back, pages forward) looked at around a fault (the seed's `uvmadvice` table).
    pub const fn range(self) -> (u64, u64) {
        match self {
            Advice::Normal => (3, 4),
            Advice::Random => (0, 0),
            Advice::Sequential => (8, 7),
        }
    }
}

/// Why a map operation failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MapError {
    /// An address or offset is not page aligned.
    Unaligned,
    /// `start >= end`, or the range leaves the stage-2 input range.
    BadRange,
    /// The new entry overlaps an existing one.
    Overlap,
    /// Part of the range is not mapped.
    NoEntry,
    /// The protection exceeds the entry's maximum.
    Protection,
    /// The object is smaller than the entry needs.
    ObjectRange,
    /// No frame for the stage-2 root, or for a copy.
    NoMemory,
    /// Transient: a page the operation must copy is BUSY (being copied or filled). The seed
    /// would sleep until it is not; the caller retries.
    Busy,
    /// Wiring faulted and failed.
    Fault(FaultError),
}

/// How to create an entry (`Map::insert`).
#[derive(Clone)]
pub struct EntrySpec {
    pub start: Ipa,
    pub end: Ipa,
    pub prot: Prot,
    pub max_prot: Prot,
    pub inherit: Inherit,
    pub advice: Advice,
    /// The lower layer and the byte offset of `start` in it.
    pub object: Option<(Arc<dyn Object>, u64)>,
    /// Give the entry an amap (anonymous memory) now.
    pub anon: bool,
    /// Writes promote into the amap instead of reaching the object.
    pub copy_on_write: bool,
}

impl EntrySpec {
    /// Anonymous (zero-fill) memory over `[start, end)`: an amap now, no object, protection
    /// `prot`, maximum protection ALL, COPY inheritance, normal advice.
    pub fn anon(start: Ipa, end: Ipa, prot: Prot) -> EntrySpec {
        EntrySpec {
            start,
            end,
            prot,
            max_prot: Prot::ALL,
            inherit: Inherit::Copy,
            advice: Advice::Normal,
            object: None,
            anon: true,
            copy_on_write: false,
        }
    }

    /// A copy-on-write mapping of `object` from byte `offset` over `[start, end)`, with an amap
    /// now (writes promote into it), protection ALL: a guest image as hyp maps it. Otherwise as
    /// [`EntrySpec::anon`].
    pub fn image(object: Arc<dyn Object>, offset: u64, start: Ipa, end: Ipa) -> EntrySpec {
        EntrySpec {
            object: Some((object, offset)),
            copy_on_write: true,
            ..EntrySpec::anon(start, end, Prot::ALL)
        }
    }
}

/// One map entry (the seed's `struct vm_map_entry`).
#[derive(Clone)]
pub struct Entry {
    pub start: Ipa,
    pub end: Ipa,
    pub prot: Prot,
    pub max_prot: Prot,
    pub inherit: Inherit,
    pub advice: Advice,
    pub wired_count: u32,
    pub needs_copy: bool,
    pub copy_on_write: bool,
    pub aref: Option<AmapRef>,
    pub object: Option<(Arc<dyn Object>, u64)>,
}

impl Entry {
    /// Pages covered.
    pub fn npages(&self) -> usize {
        usize::try_from(self.end.pages_since(self.start)).unwrap_or(usize::MAX)
    }

    /// True when `ipa` is inside the entry.
    pub fn contains(&self, ipa: Ipa) -> bool {
        self.start <= ipa && ipa < self.end
    }

    /// Amap slot of `ipa` (which must be inside the entry).
    pub fn slot(&self, ipa: Ipa) -> Option<usize> {
        self.aref.as_ref()?.slot(self.start, ipa)
    }

    /// The seed's `VM_MAPENT_ISWIRED`.
    pub fn is_wired(&self) -> bool {
        self.wired_count > 0
    }
}

impl core::fmt::Debug for Entry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Entry")
            .field("start", &self.start)
            .field("end", &self.end)
            .field("prot", &self.prot)
            .field("max_prot", &self.max_prot)
            .field("inherit", &self.inherit)
            .field("advice", &self.advice)
            .field("wired_count", &self.wired_count)
            .field("needs_copy", &self.needs_copy)
            .field("copy_on_write", &self.copy_on_write)
            .field("amap", &self.aref.as_ref().map(|a| a.slotoff))
            .field("object", &self.object.as_ref().map(|o| o.1))
            .finish()
    }
}

/// The entries, behind the MAPS lock.
#[derive(Default)]
pub struct MapInner {
    pub(crate) entries: BTreeMap<u64, Entry>,
}

impl MapInner {
    /// The entry covering `ipa` (the seed's `uvm_map_lookup_entry`).
    pub fn lookup(&self, ipa: Ipa) -> Option<&Entry> {
        let (_, e) = self.entries.range(..=ipa.0).next_back()?;
        e.contains(ipa).then_some(e)
    }

    pub(crate) fn lookup_mut(&mut self, ipa: Ipa) -> Option<&mut Entry> {
        let (_, e) = self.entries.range_mut(..=ipa.0).next_back()?;
        e.contains(ipa).then_some(e)
    }

    /// Split the entry containing `at` so that an entry starts at `at` (the seed's
    /// `UVM_MAP_CLIP_START`/`_END`). The amap is split along (see `amap_split`).
    pub(crate) fn clip(&mut self, at: Ipa) {
        let Some(e) = self.lookup_mut(at) else { return };
        if e.start == at {
            return;
        }
        let total = e.npages();
        let head_pages = usize::try_from(at.pages_since(e.start)).unwrap_or(usize::MAX);
        let mut upper = e.clone();
        upper.start = at;
        e.end = at;
        if let Some(aref) = &e.aref {
            upper.aref = Some(amap_split(aref, head_pages, total));
        }
        if let Some((_, off)) = &mut upper.object {
            *off = off.saturating_add(at.0 - e.start.0);
        }
        self.entries.insert(at.0, upper);
    }

    /// Clip at both ends and return the starts of the entries inside `[start, end)`.
    pub(crate) fn clip_range(&mut self, start: Ipa, end: Ipa) -> Vec<u64> {
        self.clip(start);
        self.clip(end);
        self.entries
            .range(start.0..end.0)
            .map(|(k, _)| *k)
            .collect()
    }

    /// True when entries cover all of `[start, end)` with no hole.
    pub(crate) fn covers(&self, start: Ipa, end: Ipa) -> bool {
        let mut at = start;
        while at < end {
            match self.lookup(at) {
                Some(e) => at = e.end,
                None => return false,
            }
        }
        true
    }
}
