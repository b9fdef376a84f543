//! Swap: the device trait, the slot allocator, and an in-memory device for host tests.
//!
//! A swap device stores whole frames in numbered slots (1-based, as the seed's `an_swslot`; 0 is
//! "no slot"). The hypervisor implements [`SwapDevice`] over virtio-blk; the host tests use
//! [`MemSwap`], which can be told to fail, and can run a test's hook in the middle of an I/O
//! ([`MemSwap::set_hook`]): the engine's locks are dropped and the page is BUSY then, which is
//! exactly the window a real, slow device leaves open. A read that fails marks the slot BAD (the seed's
//! `uvm_swap_markbad` + `SWSLOT_BAD`): it is never allocated again and the anon's data is lost.
//!
//! # Locks
//! The slot map's lock is a leaf: nothing is locked while it is held. Device I/O is done with no
//! engine lock held (the page being read or written is BUSY instead).

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::addr::Pa;
use crate::physmem::{PhysMem, FRAME_BYTES};

/// A swap I/O failed (device error, or the slot is out of the device's range).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SwapIoError;

/// A block device holding swapped pages.
pub trait SwapDevice: Send + Sync {
    /// Number of slots: valid slots are `1..=slots()`.
    fn slots(&self) -> u32;
    /// Read slot `slot` into `frame`.
    fn read(&self, slot: u32, mem: &dyn PhysMem, frame: Pa) -> Result<(), SwapIoError>;
    /// Write `frame` to slot `slot`.
    fn write(&self, slot: u32, mem: &dyn PhysMem, frame: Pa) -> Result<(), SwapIoError>;
}

/// State of one slot.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SlotState {
    Free,
    Used,
    /// An I/O error happened on it: never used again.
    Bad,
}

/// Slot allocator (next-fit over a state array).
#[derive(Debug)]
pub struct SlotMap {
    state: Vec<SlotState>,
    hint: usize,
    used: u32,
    bad: u32,
}

impl SlotMap {
    /// `n` free slots, numbered `1..=n`.
    ///
    /// # Locks
    /// None: the map is unreachable by anyone else until the caller stores it.
    pub fn new(n: u32) -> SlotMap {
        SlotMap {
            state: alloc::vec![SlotState::Free; n as usize],
            hint: 0,
            used: 0,
            bad: 0,
        }
    }

    /// A free slot, now used; `None` when the device is full.
    ///
    /// # Locks
    /// Entry and exit: the slot map's lock held (`self` is the locked map, a leaf); takes nothing.
    pub fn alloc(&mut self) -> Option<u32> {
        let n = self.state.len();
        for k in 0..n {
            let i = (self.hint + k) % n;
            if let Some(s @ SlotState::Free) = self.state.get_mut(i) {
                *s = SlotState::Used;
                self.hint = (i + 1) % n;
                self.used += 1;
                return u32::try_from(i + 1).ok();
            }
        }
        None
    }

    /// Return a used slot (a free or bad slot is left as it is).
    ///
    /// # Locks
    /// Entry and exit: the slot map's lock held (`self` is the locked map, a leaf); takes nothing.
    pub fn free(&mut self, slot: u32) {
        if let Some(s @ SlotState::Used) = self.slot_mut(slot) {
            *s = SlotState::Free;
            self.used -= 1;
        }
    }

    /// Mark a slot bad: it stays allocated forever.
    ///
    /// # Locks
    /// Entry and exit: the slot map's lock held (`self` is the locked map, a leaf); takes nothing.
    pub fn mark_bad(&mut self, slot: u32) {
        match self.slot_mut(slot) {
            Some(s @ SlotState::Used) => {
                *s = SlotState::Bad;
                self.used -= 1;
                self.bad += 1;
            }
            Some(s @ SlotState::Free) => {
                *s = SlotState::Bad;
                self.bad += 1;
            }
            _ => {}
        }
    }

    /// State of a slot (`None` when out of range).
    ///
    /// # Locks
    /// Entry and exit: the slot map's lock held (`self` is the locked map, a leaf); takes nothing.
    pub fn state(&self, slot: u32) -> Option<SlotState> {
        self.state.get((slot as usize).checked_sub(1)?).copied()
    }

    /// (free, used, bad) slot counts.
    ///
    /// # Locks
    /// Entry and exit: the slot map's lock held (`self` is the locked map, a leaf); takes nothing.
    pub fn counts(&self) -> (u32, u32, u32) {
        let total = u32::try_from(self.state.len()).unwrap_or(u32::MAX);
        (total - self.used - self.bad, self.used, self.bad)
    }

    fn slot_mut(&mut self, slot: u32) -> Option<&mut SlotState> {
        self.state.get_mut((slot as usize).checked_sub(1)?)
    }
}

/// A swap device with its slot map (what `Uvm` holds once swap is configured).
pub struct Swap {
    pub(crate) dev: Arc<dyn SwapDevice>,
    pub(crate) map: crate::sync::Mutex<SlotMap>,
}

impl Swap {
    /// Wrap a device; every slot starts free.
    ///
    /// # Locks
    /// None: the swap is unreachable by anyone else until the caller stores it.
    pub fn new(dev: Arc<dyn SwapDevice>) -> Swap {
        let n = dev.slots();
        Swap {
            dev,
            map: crate::sync::Mutex::new(SlotMap::new(n)),
        }
    }

    /// (free, used, bad) slot counts.
    ///
    /// # Locks
    /// Takes the slot map's lock (a leaf); anything above it may be held.
    pub fn counts(&self) -> (u32, u32, u32) {
        self.map.lock().counts()
    }
}

/// Which way a swap I/O goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SwapOp {
    Read,
    Write,
}

/// What [`MemSwap`] runs in the middle of each I/O, given its direction and slot: other engine
/// operations, typically. An `Err` fails the I/O (failing chosen slots is a hook that returns
/// `Err` for them).
pub type SwapHook = dyn Fn(SwapOp, u32) -> Result<(), SwapIoError> + Send + Sync;

/// An in-memory swap device for host tests and benches; reads and writes can be made to fail, and
/// a hook can act while an I/O is in flight.
pub struct MemSwap {
    slots: crate::sync::Mutex<Vec<Option<Box<[u8]>>>>,
    hook: crate::sync::Mutex<Option<Arc<SwapHook>>>,
    fail_reads: AtomicU32,
    fail_writes: AtomicU32,
    /// Completed reads.
    pub reads: AtomicU64,
    /// Completed writes.
    pub writes: AtomicU64,
}

impl MemSwap {
    /// A device of `n` slots.
    ///
    /// # Locks
    /// None.
    pub fn new(n: u32) -> Arc<MemSwap> {
        Arc::new(MemSwap {
            slots: crate::sync::Mutex::new((0..n).map(|_| None).collect()),
            hook: crate::sync::Mutex::new(None),
            fail_reads: AtomicU32::new(0),
            fail_writes: AtomicU32::new(0),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        })
    }

    /// Make the next `n` reads fail.
    ///
    /// # Locks
    /// None (an atomic).
    pub fn fail_next_reads(&self, n: u32) {
        self.fail_reads.store(n, Ordering::SeqCst);
    }

    /// Make the next `n` writes fail.
    ///
    /// # Locks
    /// None (an atomic).
    pub fn fail_next_writes(&self, n: u32) {
        self.fail_writes.store(n, Ordering::SeqCst);
    }

    /// Run `hook` in the middle of every later I/O (`None`: no hook). The I/O has started (the
    /// engine is waiting for it, its page BUSY) and not completed: the hook runs before a read's
    /// data reaches the frame or a write's data reaches the slot, and before the result is
    /// decided. The hook runs with no lock of the device held, so it may start I/O itself (and is
    /// then called again, inside itself).
    ///
    /// # Locks
    /// Takes the hook's lock (a leaf).
    pub fn set_hook(&self, hook: Option<Arc<SwapHook>>) {
        *self.hook.lock() = hook;
    }

    /// The middle of an I/O: run the hook, if any, with its lock dropped.
    fn mid_io(&self, op: SwapOp, slot: u32) -> Result<(), SwapIoError> {
        let hook = self.hook.lock().clone();
        hook.map_or(Ok(()), |h| h(op, slot))
    }

    fn take_failure(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
            .is_ok()
    }
}

impl SwapDevice for MemSwap {
    fn slots(&self) -> u32 {
        u32::try_from(self.slots.lock().len()).unwrap_or(u32::MAX)
    }

    fn read(&self, slot: u32, mem: &dyn PhysMem, frame: Pa) -> Result<(), SwapIoError> {
        self.mid_io(SwapOp::Read, slot)?;
        if Self::take_failure(&self.fail_reads) {
            return Err(SwapIoError);
        }
        let slots = self.slots.lock();
        let i = (slot as usize).checked_sub(1).ok_or(SwapIoError)?;
        match slots.get(i) {
            Some(Some(data)) => mem.write(frame, data),
            Some(None) => mem.zero(frame),
            None => return Err(SwapIoError),
        }
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn write(&self, slot: u32, mem: &dyn PhysMem, frame: Pa) -> Result<(), SwapIoError> {
        self.mid_io(SwapOp::Write, slot)?;
        if Self::take_failure(&self.fail_writes) {
            return Err(SwapIoError);
        }
        let mut buf = alloc::vec![0u8; FRAME_BYTES].into_boxed_slice();
        mem.read(frame, &mut buf);
        let mut slots = self.slots.lock();
        let i = (slot as usize).checked_sub(1).ok_or(SwapIoError)?;
        let s = slots.get_mut(i).ok_or(SwapIoError)?;
        *s = Some(buf);
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_map_alloc_free_bad() {
        let mut m = SlotMap::new(3);
        let a = m.alloc().unwrap();
        let b = m.alloc().unwrap();
        let c = m.alloc().unwrap();
        assert_eq!((a, b, c), (1, 2, 3));
        assert_eq!(m.alloc(), None);
        m.mark_bad(b);
        m.free(b); // a bad slot is never freed
        m.free(a);
        assert_eq!(m.counts(), (1, 1, 1));
        assert_eq!(m.alloc(), Some(1));
        assert_eq!(m.alloc(), None);
        assert_eq!(m.state(2), Some(SlotState::Bad));
        assert_eq!(m.state(0), None);
        assert_eq!(m.state(9), None);
    }

    /// The hook runs before the data moves (a write it starts lands first and is overwritten),
    /// sees the direction and slot, and fails the I/O it returns `Err` for.
    #[test]
    fn mem_swap_hook_runs_mid_io_and_can_fail_it() {
        use crate::sim::SimMem;
        use core::sync::atomic::AtomicBool;
        let mem = Arc::new(SimMem::new(Pa(0), 2));
        let dev = MemSwap::new(2);
        let (a, b) = (Pa(0), Pa(crate::addr::PAGE_SIZE));
        mem.write(a, b"first");
        mem.write(b, b"nested");
        let inner = AtomicBool::new(false);
        let (d, m) = (dev.clone(), mem.clone());
        dev.set_hook(Some(Arc::new(move |op, slot| {
            if op == SwapOp::Write && !inner.swap(true, Ordering::SeqCst) {
                assert_eq!(d.write(slot, m.as_ref(), b), Ok(()));
            }
            if op == SwapOp::Read && slot == 2 {
                return Err(SwapIoError);
            }
            Ok(())
        })));
        assert_eq!(dev.write(1, mem.as_ref(), a), Ok(()));
        assert_eq!(dev.read(1, mem.as_ref(), b), Ok(()));
        let mut buf = [0u8; 6];
        mem.read(b, &mut buf);
        assert_eq!(&buf[..5], b"first", "the outer write lands last");
        assert_eq!(dev.read(2, mem.as_ref(), b), Err(SwapIoError));
        dev.set_hook(None);
        assert_eq!(dev.read(2, mem.as_ref(), b), Ok(()));
        assert_eq!(dev.writes.load(Ordering::Relaxed), 2);
    }
}
