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
    /// A 64-bit content hash of the frame (for dedup candidates; equal frames hash equal):
    /// its words, little-endian, in order, through a [`FrameHasher`].
    fn hash(&self, frame: Pa) -> u64;
    /// Read one 64-bit little-endian word (a translation-table descriptor).
    fn read_u64(&self, pa: Pa) -> u64;
    /// Write one 64-bit word so that a concurrent table walker sees either the old or the new
    /// value, never a mix (single-copy atomic on the hardware).
    fn write_u64(&self, pa: Pa, value: u64);
}

/// The content hash of a frame, fed its 64-bit words in order: xxHash64's lane round
/// (multiply, rotate, multiply) on one lane and its final avalanche. Hand-written rather than
/// the `xxhash-rust` crate because the hypervisor folds words it reads volatilely from frames a
/// guest may be writing; a byte-slice API would need a 4 KiB copy first.
///
/// FNV-1a over words, used before, only multiplies: a difference in a word's high bits never
/// reaches the low bits, so pages that differ only there (a VM number in the top byte, say)
/// collided about once in 256 and each collision cost a full compare and two write-protections.
#[derive(Clone, Copy, Debug)]
pub struct FrameHasher(u64);

const PRIME1: u64 = 0x9E37_79B1_85EB_CA87;
const PRIME2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const PRIME3: u64 = 0x1656_67B1_9E37_79F9;

impl FrameHasher {
    /// A hasher that has seen no word.
    pub const fn new() -> FrameHasher {
        FrameHasher(PRIME3)
    }

    /// Fold in the next word.
    pub fn word(&mut self, w: u64) {
        self.0 = (self.0 ^ w.wrapping_mul(PRIME2).rotate_left(31).wrapping_mul(PRIME1))
            .rotate_left(27)
            .wrapping_mul(PRIME1)
            .wrapping_add(PRIME2);
    }

    /// The hash of the words seen.
    pub fn finish(self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(PRIME2);
        h ^= h >> 29;
        h = h.wrapping_mul(PRIME3);
        h ^ (h >> 32)
    }
}

impl Default for FrameHasher {
    fn default() -> FrameHasher {
        FrameHasher::new()
    }
}

#[cfg(test)]
mod tests {
    use super::FrameHasher;
    use alloc::collections::BTreeSet;

    /// The hash of a frame whose only non-zero words are `words`, one every 512 bytes (as the
    /// `dedup` test guest writes them).
    fn sparse(words: [u64; 8]) -> u64 {
        let mut h = FrameHasher::new();
        for i in 0..512 {
            h.word(if i % 64 == 0 { words[i / 64] } else { 0 });
        }
        h.finish()
    }

    #[test]
    fn frames_differing_only_in_high_bits_hash_apart() {
        // 8 VMs x 2,048 pages whose words differ between VMs only in bits 56..63.
        let mut seen = BTreeSet::new();
        let mut collisions = 0;
        for vm in 0..8u64 {
            for page in 0..2048u64 {
                let words = core::array::from_fn(|w| {
                    (page.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (vm << 56) ^ ((w as u64) << 40)) | 1
                });
                if !seen.insert(sparse(words)) {
                    collisions += 1;
                }
            }
        }
        assert_eq!(collisions, 0);
    }

    #[test]
    fn equal_words_hash_equal_and_order_matters() {
        let a = sparse([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(a, sparse([1, 2, 3, 4, 5, 6, 7, 8]));
        assert_ne!(a, sparse([2, 1, 3, 4, 5, 6, 7, 8]));
        assert_ne!(sparse([0; 8]), sparse([0, 0, 0, 0, 0, 0, 0, 1]));
    }
}
