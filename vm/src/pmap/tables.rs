//! `Tables`: the stage-2 tables one reverse map serves, by number, with their generations.
//!
//! A reverse-map entry names its table by a [`TableId`] and the table's generation at the time
//! of the mapping (see `stage2/clear.rs`), not by a `Weak<Stage2>`: making and dropping an entry
//! then costs no reference-count update, which on the fault path is an atomic read-modify-write
//! saved on every new mapping. An entry is live when its table is still registered with the same
//! generation. Generations come from one counter per reverse map, so they are never reused: a
//! table registered later at a freed number never matches an older table's entries.
//!
//! # Locks
//! One reader-writer spin lock, innermost: taken under a `Stage2` lock or an rmap frame lock
//! (or by a `Stage2`'s `Drop`, wherever that runs), and no other lock is taken while it is held.

use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::Stage2;

/// A registered table's number.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct TableId(u32);

struct Slot {
    table: Weak<Stage2>,
    generation: u64,
}

#[derive(Default)]
struct Inner {
    slots: Vec<Option<Slot>>,
    /// Numbers of the empty slots.
    free: Vec<u32>,
}

/// Every live table of one reverse map. See the module documentation.
#[derive(Default)]
pub(super) struct Tables {
    inner: crate::sync::RwLock<Inner>,
    generations: AtomicU64,
}

impl Tables {
    /// A generation never handed out before.
    ///
    /// # Locks
    /// None.
    pub(super) fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Register `table` at `generation`; its number.
    ///
    /// # Locks
    /// Takes the tables lock (write).
    pub(super) fn register(&self, table: Weak<Stage2>, generation: u64) -> TableId {
        let mut inner = self.inner.write();
        let slot = Some(Slot { table, generation });
        match inner.free.pop() {
            Some(i) => {
                if let Some(s) = inner.slots.get_mut(i as usize) {
                    *s = slot;
                }
                TableId(i)
            }
            None => {
                inner.slots.push(slot);
                TableId(u32::try_from(inner.slots.len() - 1).unwrap_or(u32::MAX))
            }
        }
    }

    /// `id`'s table moved to `generation` (it was cleared).
    ///
    /// # Locks
    /// Takes the tables lock (write).
    pub(super) fn set_generation(&self, id: TableId, generation: u64) {
        if let Some(Some(s)) = self.inner.write().slots.get_mut(id.0 as usize) {
            s.generation = generation;
        }
    }

    /// `id`'s table is going away: every entry naming it is stale from now on.
    ///
    /// # Locks
    /// Takes the tables lock (write).
    pub(super) fn unregister(&self, id: TableId) {
        let mut inner = self.inner.write();
        if let Some(s) = inner.slots.get_mut(id.0 as usize) {
            if s.take().is_some() {
                inner.free.push(id.0);
            }
        }
    }

    /// True when `id` is registered at `generation`.
    ///
    /// # Locks
    /// Takes the tables lock (read).
    pub(super) fn is_live(&self, id: TableId, generation: u64) -> bool {
        matches!(
            self.inner.read().slots.get(id.0 as usize),
            Some(Some(s)) if s.generation == generation
        )
    }

    /// `id`'s table, if it is still registered and alive (whatever its generation).
    ///
    /// # Locks
    /// Takes the tables lock (read).
    pub(super) fn get(&self, id: TableId) -> Option<Arc<Stage2>> {
        match self.inner.read().slots.get(id.0 as usize) {
            Some(Some(s)) => s.table.upgrade(),
            _ => None,
        }
    }
}
