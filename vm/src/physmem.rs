//! Physical memory, as the engine reaches it.
//!
//! The engine never dereferences a frame itself: the hypervisor implements this trait over its
//! linear map, the host tests over a `Vec`. Every method takes a page-aligned `Pa` of a frame the
//! engine owns (the page pool's frames and stage-2 table frames); an implementation may treat
//! anything else as a broken hypervisor invariant.

use crate::addr::{Pa, PAGE_SIZE};

/// Bytes in one frame.
pub const FRAME_BYTES: usize = PAGE_SIZE as usize;

/// Access to frames by physical address.
pub trait PhysMem: Send + Sync {
    /// Fill the frame with zeroes.
    fn zero(&self, frame: Pa);
    /// Copy a whole frame.
    fn copy(&self, dst: Pa, src: Pa);
    /// Read `buf.len()` bytes starting at `pa` (may cross into the next frame only if the caller
    /// owns it too).
    fn read(&self, pa: Pa, buf: &mut [u8]);
    /// Write `buf` starting at `pa`.
    fn write(&self, pa: Pa, buf: &[u8]);
    /// True when both frames hold the same bytes.
    fn same(&self, a: Pa, b: Pa) -> bool;
    /// A 64-bit content hash of the frame (for dedup candidates; equal frames hash equal).
    fn hash(&self, frame: Pa) -> u64;
    /// Read one 64-bit little-endian word (a translation-table descriptor).
    fn read_u64(&self, pa: Pa) -> u64;
    /// Write one 64-bit word so that a concurrent table walker sees either the old or the new
    /// value, never a mix (single-copy atomic on the hardware).
    fn write_u64(&self, pa: Pa, value: u64);
}
