//! The arm64 Linux `Image` header, and where a VM's kernel, device tree and initrd go in its RAM.
//!
//! Per the kernel's `Documentation/arch/arm64/booting.rst`, an `Image` starts with a 64-byte
//! little-endian header:
//!
//! ```text
//!   0x00  u32 code0, u32 code1     executable code (an EFI stub starts with "MZ")
//!   0x08  u64 text_offset          image load offset from a 2 MiB aligned base
//!   0x10  u64 image_size           effective image size: the memory the kernel uses from its start
//!   0x18  u64 flags                bit 0 big-endian, bits 1-2 page size, bit 3 physical placement
//!   0x20  u64 res2, res3, res4
//!   0x38  u32 magic                "ARM\x64" (0x644d5241)
//!   0x3c  u32 res5                 PE/COFF header offset
//! ```
//!
//! Kernels before v3.17 have `image_size` 0 and a `text_offset` of unspecified endianness; for
//! them booting.rst says to assume a `text_offset` of 0x80000 and to keep as much memory as
//! possible free after the image ([`ImageSize::Unknown`]). [`ImageHeader::placement`] states the
//! placement rule. Pure functions over bytes and numbers.

use core::fmt;
use core::ops::Range;

use vm::{Ipa, PAGE_SIZE};

/// Bytes of the header.
pub const HEADER_SIZE: usize = 64;
/// "ARM\x64", little-endian, at offset 0x38.
const MAGIC: u32 = 0x644d_5241;
const MAGIC_OFFSET: usize = 0x38;
/// booting.rst: "Where image_size is zero, text_offset can be assumed to be 0x80000."
const LEGACY_TEXT_OFFSET: u64 = 0x8_0000;
/// The kernel's base, and the device tree's slot, are 2 MiB aligned.
const ALIGN_2M: u64 = 2 << 20;
/// booting.rst: the device tree "must not exceed 2 megabytes in size".
pub const DTB_MAX_SIZE: u64 = ALIGN_2M;
/// booting.rst: the initrd must lie in "a 1 GB aligned physical memory window of up to 32 GB in
/// size that fully covers the kernel Image as well".
const INITRD_WINDOW_ALIGN: u64 = 1 << 30;
const INITRD_WINDOW_SIZE: u64 = 32 << 30;
/// Flag bit 3 set: the image may sit anywhere its `image_size` bytes stay below 2^48.
const PLACEMENT_LIMIT_48BIT: u64 = 1 << 48;

const FLAG_BIG_ENDIAN: u64 = 1 << 0;
const FLAG_PAGE_SIZE_SHIFT: u32 = 1;
const FLAG_PAGE_SIZE_MASK: u64 = 0b11;
const FLAG_PLACEMENT_ANYWHERE: u64 = 1 << 3;

/// Why a kernel image or its placement was refused (the kernel file, or the VM's RAM size, is
/// at fault).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageError {
    /// The file is shorter than the 64-byte header.
    Truncated { len: usize },
    /// No "ARM\x64" at offset 0x38: not an arm64 `Image` (a gzip file, an ELF vmlinux, ...).
    BadMagic { found: u32 },
    /// Flag bit 0: a big-endian kernel; guests run little-endian.
    BigEndian,
    /// The kernel, its memory, the device tree and the initrd do not fit in RAM: they need RAM up
    /// to `need_end` (exclusive), RAM ends at `ram_end`.
    RamTooSmall { need_end: u64, ram_end: u64 },
    /// Flag bit 3 asks for the kernel's memory to lie below 2^48; with this RAM it ends at `end`.
    Above48Bit { end: u64 },
    /// The initrd would end at `initrd_end`, outside the 32 GiB window (1 GiB aligned) that
    /// holds the kernel.
    InitrdOutsideWindow { initrd_end: u64 },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::Truncated { len } => {
                write!(f, "kernel file of {len} bytes is shorter than the {HEADER_SIZE}-byte arm64 Image header")
            }
            ImageError::BadMagic { found } => write!(
                f,
                "not an arm64 Image: magic at 0x38 is {found:#010x}, not ARM\\x64 (a gzip vmlinuz must be unpacked first)"
            ),
            ImageError::BigEndian => write!(f, "big-endian kernel (Image flag bit 0); guests run little-endian"),
            ImageError::RamTooSmall { need_end, ram_end } => write!(
                f,
                "kernel, device tree and initrd need guest RAM up to {need_end:#x}, RAM ends at {ram_end:#x}"
            ),
            ImageError::Above48Bit { end } => {
                write!(f, "the kernel asks to stay below 2^48 (Image flag bit 3), its memory would end at {end:#x}")
            }
            ImageError::InitrdOutsideWindow { initrd_end } => write!(
                f,
                "initrd ending at {initrd_end:#x} is outside the 32 GiB window that holds the kernel"
            ),
        }
    }
}

/// How much memory the kernel uses from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSize {
    /// `image_size` bytes (v3.17 and later).
    Bytes(u64),
    /// `image_size` 0 (before v3.17): unbounded, keep the memory after the kernel free.
    Unknown,
}

/// Flag bits 1-2: the kernel's page size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageSize {
    Unspecified,
    K4,
    K16,
    K64,
}

/// Flag bit 3: where the 2 MiB aligned base may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// 0: as close as possible to the base of DRAM (memory below it is not linearly mapped).
    NearRamBase,
    /// 1: anywhere, as long as the image's `image_size` bytes lie below 2^48.
    Below48Bit,
}

/// A parsed `Image` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHeader {
    /// Offset of the image from its 2 MiB aligned base (0x80000 for kernels before v3.17).
    pub text_offset: u64,
    pub image_size: ImageSize,
    pub page_size: PageSize,
    pub placement: Placement,
    /// The flags word as read (bits 4-63 are reserved and ignored).
    pub flags: u64,
}

/// Where a VM's boot pieces go, as guest-physical ranges inside its RAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The 2 MiB aligned base the kernel is placed from.
    pub base: Ipa,
    /// The image file is loaded here (`base + text_offset`), and vCPU 0 enters here.
    pub kernel: Ipa,
    /// End (exclusive) of the kernel's memory: its start plus `image_size` (or the file's length,
    /// if longer, or if `image_size` is unknown).
    pub kernel_end: Ipa,
    /// The 2 MiB slot of the device tree, 2 MiB aligned: the blob goes at its start and may use
    /// all of it ([`DTB_MAX_SIZE`]).
    pub dtb: Range<Ipa>,
    /// Where the initrd goes, page aligned, when there is one.
    pub initrd: Option<Range<Ipa>>,
}

/// The header's little-endian field at `off` (a constant offset inside the 64 bytes).
fn u32_at(h: &[u8; HEADER_SIZE], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&h[off..off + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(h: &[u8; HEADER_SIZE], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&h[off..off + 8]);
    u64::from_le_bytes(a)
}

impl ImageHeader {
    /// Parses the header at the start of `image` (the whole file, or at least its first
    /// [`HEADER_SIZE`] bytes).
    pub fn parse(image: &[u8]) -> Result<ImageHeader, ImageError> {
        let Some(h) = image.first_chunk::<HEADER_SIZE>() else {
            return Err(ImageError::Truncated { len: image.len() });
        };
        let magic = u32_at(h, MAGIC_OFFSET);
        if magic != MAGIC {
            return Err(ImageError::BadMagic { found: magic });
        }
        let flags = u64_at(h, 0x18);
        if flags & FLAG_BIG_ENDIAN != 0 {
            return Err(ImageError::BigEndian);
        }
        let (text_offset, image_size) = match u64_at(h, 0x10) {
            0 => (LEGACY_TEXT_OFFSET, ImageSize::Unknown),
            size => (u64_at(h, 0x08), ImageSize::Bytes(size)),
        };
        let page_size = match (flags >> FLAG_PAGE_SIZE_SHIFT) & FLAG_PAGE_SIZE_MASK {
            1 => PageSize::K4,
            2 => PageSize::K16,
            3 => PageSize::K64,
            _ => PageSize::Unspecified,
        };
        let placement = if flags & FLAG_PLACEMENT_ANYWHERE != 0 {
            Placement::Below48Bit
        } else {
            Placement::NearRamBase
        };
        Ok(ImageHeader { text_offset, image_size, page_size, placement, flags })
    }

    /// Places a kernel file of `image_len` bytes, its device tree and an initrd of `initrd_len`
    /// bytes (if any) in `ram`.
    ///
    /// The rule:
    /// - the base is the lowest 2 MiB aligned address in RAM (booting.rst: "as close as possible
    ///   to the base of DRAM"; it also suits flag bit 3, checked against 2^48); the kernel is
    ///   loaded `text_offset` above it, and its memory runs `max(image_size, image_len)` bytes;
    /// - with a known `image_size`, the device tree gets the first 2 MiB aligned 2 MiB slot after
    ///   the kernel's memory (a slot of its own: the kernel maps it cacheable in blocks of up to
    ///   2 MiB, and a blob never crosses one), and the initrd follows the slot;
    /// - with `image_size` unknown (kernels before v3.17), the memory after the kernel stays free
    ///   as booting.rst asks: the device tree gets the highest 2 MiB aligned slot of RAM and the
    ///   initrd ends, page aligned, just below it;
    /// - the initrd must end inside the 32 GiB window (1 GiB aligned) that holds the kernel.
    ///
    /// The device tree's size is not an input: it is generated after the placement (it names the
    /// initrd's range), and must then fit its slot ([`DTB_MAX_SIZE`]). Nothing here overlaps.
    pub fn placement(&self, ram: Range<Ipa>, image_len: u64, initrd_len: Option<u64>) -> Result<Layout, ImageError> {
        let ram_end = ram.end.0;
        let too_small = |need_end: Option<u64>| ImageError::RamTooSmall { need_end: need_end.unwrap_or(u64::MAX), ram_end };
        let base = ram.start.0.checked_next_multiple_of(ALIGN_2M).ok_or(too_small(None))?;
        let kernel = base.checked_add(self.text_offset).ok_or(too_small(None))?;
        let footprint = match self.image_size {
            ImageSize::Bytes(size) => size.max(image_len),
            ImageSize::Unknown => image_len,
        };
        let kernel_end = kernel.checked_add(footprint).ok_or(too_small(None))?;
        if self.placement == Placement::Below48Bit && kernel_end > PLACEMENT_LIMIT_48BIT {
            return Err(ImageError::Above48Bit { end: kernel_end });
        }
        let initrd_given = initrd_len.is_some();
        let initrd_len = initrd_len.unwrap_or(0);
        let (dtb, initrd) = match self.image_size {
            ImageSize::Bytes(_) => {
                let dtb = kernel_end.checked_next_multiple_of(ALIGN_2M).ok_or(too_small(None))?;
                let dtb_end = dtb.checked_add(DTB_MAX_SIZE).ok_or(too_small(None))?;
                let initrd_end = dtb_end.checked_add(initrd_len).ok_or(too_small(None))?;
                (dtb..dtb_end, dtb_end..initrd_end)
            }
            ImageSize::Unknown => {
                let dtb_end = ram_end - ram_end % ALIGN_2M;
                let dtb = dtb_end.checked_sub(DTB_MAX_SIZE).ok_or(too_small(None))?;
                let initrd = dtb.checked_sub(initrd_len).ok_or(too_small(None))?;
                let initrd = initrd - initrd % PAGE_SIZE;
                if initrd < kernel_end {
                    // Short by what the kernel and the two pieces above it overlap.
                    return Err(too_small(ram_end.checked_add(kernel_end - initrd)));
                }
                (dtb..dtb_end, initrd..initrd + initrd_len)
            }
        };
        let need_end = dtb.end.max(initrd.end);
        if need_end > ram_end {
            return Err(too_small(Some(need_end)));
        }
        let window = base - base % INITRD_WINDOW_ALIGN;
        if initrd.end - window > INITRD_WINDOW_SIZE {
            return Err(ImageError::InitrdOutsideWindow { initrd_end: initrd.end });
        }
        Ok(Layout {
            base: Ipa(base),
            kernel: Ipa(kernel),
            kernel_end: Ipa(kernel_end),
            dtb: Ipa(dtb.start)..Ipa(dtb.end),
            initrd: initrd_given.then_some(Ipa(initrd.start)..Ipa(initrd.end)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    const MIB: u64 = 1 << 20;
    const RAM_BASE: u64 = 0x4000_0000;

    /// A synthetic header: "MZ" code, the given fields, the magic.
    fn header(text_offset: u64, image_size: u64, flags: u64) -> Vec<u8> {
        let mut h = std::vec![0u8; HEADER_SIZE];
        h[0..2].copy_from_slice(b"MZ");
        h[0x08..0x10].copy_from_slice(&text_offset.to_le_bytes());
        h[0x10..0x18].copy_from_slice(&image_size.to_le_bytes());
        h[0x18..0x20].copy_from_slice(&flags.to_le_bytes());
        h[0x38..0x3c].copy_from_slice(&MAGIC.to_le_bytes());
        h[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        h
    }

    fn ram(start: u64, size: u64) -> Range<Ipa> {
        Ipa(start)..Ipa(start + size)
    }

    /// The header of Debian 12's linux-image-6.1.0-57-arm64 (6.1.192-3): text_offset 0,
    /// image_size 0x201_0000, flags 0xa; the file is 0x1f6_e4c0 bytes.
    fn debian() -> ImageHeader {
        ImageHeader::parse(&header(0, 0x201_0000, 0xa)).unwrap()
    }

    #[test]
    fn parses_a_current_kernels_header() {
        let h = debian();
        assert_eq!(h.text_offset, 0);
        assert_eq!(h.image_size, ImageSize::Bytes(0x201_0000));
        assert_eq!(h.page_size, PageSize::K4);
        assert_eq!(h.placement, Placement::Below48Bit);
        assert_eq!(h.flags, 0xa);
    }

    #[test]
    fn reads_each_page_size_and_placement() {
        let sizes = [PageSize::Unspecified, PageSize::K4, PageSize::K16, PageSize::K64];
        for (bits, want) in sizes.iter().enumerate() {
            let h = ImageHeader::parse(&header(0, MIB, (bits as u64) << 1)).unwrap();
            assert_eq!(h.page_size, *want);
            assert_eq!(h.placement, Placement::NearRamBase);
        }
        // Reserved bits are ignored, not refused.
        let h = ImageHeader::parse(&header(0, MIB, 0xffff_0000_0000_0000)).unwrap();
        assert_eq!(h.page_size, PageSize::Unspecified);
    }

    #[test]
    fn a_short_file_is_truncated() {
        let h = header(0, MIB, 0xa);
        assert_eq!(ImageHeader::parse(&h[..HEADER_SIZE - 1]), Err(ImageError::Truncated { len: 63 }));
        assert_eq!(ImageHeader::parse(&[]), Err(ImageError::Truncated { len: 0 }));
    }

    #[test]
    fn a_gzip_or_elf_file_has_bad_magic() {
        let mut gz = std::vec![0u8; 4096];
        gz[..3].copy_from_slice(&[0x1f, 0x8b, 0x08]);
        assert_eq!(ImageHeader::parse(&gz), Err(ImageError::BadMagic { found: 0 }));
        let mut h = header(0, MIB, 0xa);
        h[0x38] = b'E';
        assert_eq!(ImageHeader::parse(&h), Err(ImageError::BadMagic { found: 0x644d_5245 }));
    }

    #[test]
    fn a_big_endian_kernel_is_refused() {
        assert_eq!(ImageHeader::parse(&header(0, MIB, 0xb)), Err(ImageError::BigEndian));
    }

    #[test]
    fn an_old_kernel_without_image_size_gets_the_documented_text_offset() {
        // Before v3.17 text_offset's endianness was unspecified: a big-endian 0x80000 here.
        let h = ImageHeader::parse(&header(0x0000_0800_0000_0000, 0, 0)).unwrap();
        assert_eq!(h.text_offset, 0x8_0000);
        assert_eq!(h.image_size, ImageSize::Unknown);
    }

    #[test]
    fn places_the_debian_kernel_then_the_dtb_then_the_initrd() {
        let l = debian().placement(ram(RAM_BASE, 256 * MIB), 0x1f6_e4c0, Some(1_258_723)).unwrap();
        assert_eq!(l.base, Ipa(RAM_BASE));
        assert_eq!(l.kernel, Ipa(RAM_BASE));
        assert_eq!(l.kernel_end, Ipa(RAM_BASE + 0x201_0000));
        assert_eq!(l.dtb, Ipa(0x4220_0000)..Ipa(0x4240_0000));
        assert_eq!(l.initrd, Some(Ipa(0x4240_0000)..Ipa(0x4240_0000 + 1_258_723)));
    }

    #[test]
    fn the_base_is_the_first_2mib_boundary_in_ram_plus_text_offset() {
        let h = ImageHeader::parse(&header(0x8_0000, 16 * MIB, 0x2)).unwrap();
        let l = h.placement(ram(RAM_BASE + 0x1000, 64 * MIB), 8 * MIB, None).unwrap();
        assert_eq!(l.base, Ipa(RAM_BASE + 2 * MIB));
        assert_eq!(l.kernel, Ipa(RAM_BASE + 2 * MIB + 0x8_0000));
        assert_eq!(l.kernel_end, Ipa(RAM_BASE + 18 * MIB + 0x8_0000));
        assert_eq!(l.dtb, Ipa(RAM_BASE + 20 * MIB)..Ipa(RAM_BASE + 22 * MIB));
        assert_eq!(l.initrd, None);
    }

    #[test]
    fn a_file_longer_than_image_size_keeps_all_its_bytes() {
        let h = ImageHeader::parse(&header(0, 4 * MIB, 0x2)).unwrap();
        let l = h.placement(ram(RAM_BASE, 64 * MIB), 5 * MIB + 1, Some(4096)).unwrap();
        assert_eq!(l.kernel_end, Ipa(RAM_BASE + 5 * MIB + 1));
        assert_eq!(l.dtb.start, Ipa(RAM_BASE + 6 * MIB));
    }

    #[test]
    fn too_little_ram_says_how_much_is_needed() {
        // Kernel 0x201_0000 → DTB slot 0x4220_0000..0x4240_0000 → initrd of 1 MiB to 0x424f_ffff.
        let r = debian().placement(ram(RAM_BASE, 36 * MIB), 0x1f6_e4c0, Some(MIB));
        assert_eq!(r, Err(ImageError::RamTooSmall { need_end: 0x4250_0000, ram_end: RAM_BASE + 36 * MIB }));
        // Exactly enough is enough.
        assert!(debian().placement(ram(RAM_BASE, 37 * MIB), 0x1f6_e4c0, Some(MIB)).is_ok());
        // RAM smaller than the kernel's own memory.
        let r = debian().placement(ram(RAM_BASE, 16 * MIB), 0x1f6_e4c0, None);
        assert_eq!(r, Err(ImageError::RamTooSmall { need_end: 0x4240_0000, ram_end: RAM_BASE + 16 * MIB }));
    }

    #[test]
    fn an_old_kernel_keeps_the_memory_after_it_free() {
        let h = ImageHeader::parse(&header(0, 0, 0)).unwrap();
        let l = h.placement(ram(RAM_BASE, 128 * MIB + 4096), 10 * MIB, Some(3 * MIB + 5)).unwrap();
        assert_eq!(l.kernel, Ipa(RAM_BASE + 0x8_0000));
        assert_eq!(l.kernel_end, Ipa(RAM_BASE + 0x8_0000 + 10 * MIB));
        assert_eq!(l.dtb, Ipa(RAM_BASE + 126 * MIB)..Ipa(RAM_BASE + 128 * MIB));
        let initrd_start = RAM_BASE + 123 * MIB - 4096;
        assert_eq!(l.initrd, Some(Ipa(initrd_start)..Ipa(initrd_start + 3 * MIB + 5)));
        // The pieces at the top meet the kernel: refused.
        let r = h.placement(ram(RAM_BASE, 16 * MIB), 10 * MIB, Some(4 * MIB));
        assert!(matches!(r, Err(ImageError::RamTooSmall { ram_end, .. }) if ram_end == RAM_BASE + 16 * MIB));
    }

    #[test]
    fn flag_bit_3_keeps_the_kernel_below_2_pow_48() {
        let top = PLACEMENT_LIMIT_48BIT - 16 * MIB;
        let r = debian().placement(ram(top, 1 << 30), 0x1f6_e4c0, None);
        assert_eq!(r, Err(ImageError::Above48Bit { end: PLACEMENT_LIMIT_48BIT + 0x101_0000 }));
        let below = ImageHeader::parse(&header(0, 0x201_0000, 0x2)).unwrap();
        assert!(below.placement(ram(top, 1 << 30), 0x1f6_e4c0, None).is_ok());
    }

    #[test]
    fn the_initrd_stays_in_the_kernels_32gib_window() {
        let big = ram(RAM_BASE, 64 << 30);
        let r = debian().placement(big.clone(), 0x1f6_e4c0, Some(33 << 30));
        assert_eq!(r, Err(ImageError::InitrdOutsideWindow { initrd_end: 0x4240_0000 + (33 << 30) }));
        assert!(debian().placement(big, 0x1f6_e4c0, Some(31 << 30)).is_ok());
    }

    #[test]
    fn addresses_near_the_top_of_the_space_are_refused_without_overflow() {
        let top = Ipa(u64::MAX - MIB)..Ipa(u64::MAX);
        assert!(matches!(debian().placement(top.clone(), 4096, None), Err(ImageError::RamTooSmall { .. })));
        let h = ImageHeader::parse(&header(u64::MAX, MIB, 0x2)).unwrap();
        assert!(matches!(h.placement(ram(RAM_BASE, MIB), 4096, Some(u64::MAX)), Err(ImageError::RamTooSmall { .. })));
        let old = ImageHeader::parse(&header(0, 0, 0)).unwrap();
        assert!(matches!(old.placement(top, u64::MAX, Some(u64::MAX)), Err(ImageError::RamTooSmall { .. })));
        assert!(matches!(old.placement(Ipa(0)..Ipa(MIB), 4096, None), Err(ImageError::RamTooSmall { .. })));
    }

    /// Over a spread of RAM bases, sizes, kernels and initrds: every accepted layout is aligned,
    /// inside RAM and without overlap.
    #[test]
    fn every_layout_is_aligned_inside_ram_and_disjoint() {
        let mut accepted = 0;
        for start in [RAM_BASE, RAM_BASE + 4096, RAM_BASE + 3 * MIB + 12345] {
            for size in [8 * MIB, 40 * MIB, 256 * MIB + 7] {
                for (text_offset, image_size) in [(0, 0x201_0000), (0x8_0000, 6 * MIB), (0, 0)] {
                    for initrd in [None, Some(1), Some(MIB + 3), Some(32 * MIB)] {
                        let h = ImageHeader::parse(&header(text_offset, image_size, 0x2)).unwrap();
                        let Ok(l) = h.placement(ram(start, size), 5 * MIB, initrd) else { continue };
                        accepted += 1;
                        assert_eq!(l.base.0 % ALIGN_2M, 0);
                        assert_eq!(l.kernel.0 - l.base.0, h.text_offset);
                        assert!(l.base.0 >= start && l.kernel_end > l.kernel);
                        assert_eq!((l.dtb.start.0 % ALIGN_2M, l.dtb.end.0 - l.dtb.start.0), (0, DTB_MAX_SIZE));
                        assert!(l.dtb.start >= l.kernel_end && l.dtb.end.0 <= start + size);
                        if let Some(i) = l.initrd {
                            assert_eq!(i.end.0 - i.start.0, initrd.unwrap());
                            assert!(i.start.is_page_aligned() && i.start >= l.kernel_end && i.end.0 <= start + size);
                            assert!(i.end <= l.dtb.start || i.start >= l.dtb.end);
                        } else {
                            assert_eq!(initrd, None);
                        }
                    }
                }
            }
        }
        assert!(accepted > 20, "only {accepted} layouts accepted");
    }
}
