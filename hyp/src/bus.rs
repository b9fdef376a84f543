//! A VM's device bus: its emulated devices by IPA window, sorted, found by binary search. Generic
//! over the device type so the table is host-tested; `virt::bus` puts `dyn Device`s on it.
//!
//! Each VM builds its own bus from its description (`virt::build`): windows may differ per VM —
//! the redistributor region follows the vCPU count, virtio slots are per VM.

use alloc::vec::Vec;
use core::fmt;

use crate::platform::Window;

/// Why a device cannot go on the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachError {
    /// The window is empty.
    Empty(Window),
    /// The window overlaps one already on the bus.
    Overlap { new: Window, existing: Window },
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachError::Empty(w) => write!(f, "device window at {:#x} is empty", w.base),
            AttachError::Overlap { new, existing } => write!(
                f,
                "device window {:#x}..{:#x} overlaps {:#x}..{:#x}",
                new.base,
                new.end(),
                existing.base,
                existing.end()
            ),
        }
    }
}

/// Devices sorted by window base; windows never overlap.
pub struct Bus<D> {
    slots: Vec<(Window, D)>,
}

impl<D> Default for Bus<D> {
    fn default() -> Self {
        Bus { slots: Vec::new() }
    }
}

impl<D> Bus<D> {
    /// Put `device` at `window`, unless it is empty or overlaps a device already there.
    pub fn attach(&mut self, window: Window, device: D) -> Result<(), AttachError> {
        if window.size == 0 {
            return Err(AttachError::Empty(window));
        }
        let at = self.slots.partition_point(|(w, _)| w.base < window.base);
        let clash = [at.checked_sub(1), Some(at)]
            .into_iter()
            .flatten()
            .filter_map(|i| self.slots.get(i))
            .find(|(w, _)| w.base < window.end() && window.base < w.end());
        if let Some((existing, _)) = clash {
            return Err(AttachError::Overlap { new: window, existing: *existing });
        }
        self.slots.insert(at, (window, device));
        Ok(())
    }

    /// The device whose window covers `ipa`, with its window: O(log n).
    pub fn find(&self, ipa: u64) -> Option<(Window, &D)> {
        let after = self.slots.partition_point(|(w, _)| w.base <= ipa);
        let (w, d) = self.slots.get(after.checked_sub(1)?)?;
        w.contains(ipa).then_some((*w, d))
    }

    /// Every device, by window base.
    pub fn iter(&self) -> impl Iterator<Item = (Window, &D)> {
        self.slots.iter().map(|(w, d)| (*w, d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(base: u64, size: u64) -> Window {
        Window { base, size }
    }

    #[test]
    fn find_returns_the_covering_window_whatever_the_attach_order() {
        let mut bus = Bus::default();
        for (i, base) in [0x3000u64, 0x1000, 0x8000, 0x2000].into_iter().enumerate() {
            bus.attach(w(base, 0x800), i).unwrap();
        }
        assert_eq!(bus.iter().map(|(w, _)| w.base).collect::<Vec<_>>(), [0x1000, 0x2000, 0x3000, 0x8000]);
        assert_eq!(bus.find(0x1000), Some((w(0x1000, 0x800), &1)));
        assert_eq!(bus.find(0x37ff), Some((w(0x3000, 0x800), &0)));
        assert_eq!(bus.find(0x3800), None, "the gap after a window");
        assert_eq!(bus.find(0xfff), None, "below the first");
        assert_eq!(bus.find(0x8000), Some((w(0x8000, 0x800), &2)));
        assert_eq!(bus.find(u64::MAX), None);
    }

    #[test]
    fn overlapping_or_empty_windows_are_refused() {
        let mut bus = Bus::default();
        bus.attach(w(0x1000, 0x1000), 'a').unwrap();
        bus.attach(w(0x3000, 0x1000), 'b').unwrap();
        for bad in [w(0x1800, 0x100), w(0x0800, 0x1000), w(0x1fff, 2), w(0x2000, 0x1001), w(0, u64::MAX / 2), w(0x2800, 0)] {
            assert!(bus.attach(bad, 'x').is_err(), "{bad:?}");
        }
        bus.attach(w(0x2000, 0x1000), 'c').expect("exactly between two windows");
        assert_eq!(bus.find(0x2fff).map(|(_, d)| *d), Some('c'));
    }
}
