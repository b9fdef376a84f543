//! Guest ELF loading: validate an ELF64 AArch64 executable and flatten its PT_LOAD segments into
//! one image that starts at guest RAM base (IPA 0x4000_0000).
//!
//! The image covers `[RAM_BASE, highest segment end)`: file bytes where segments have them, zeroes
//! in gaps and in each segment's `memsz` beyond `filesz`. It becomes the VM's read-only image
//! object; the guest sees it copy-on-write. Segments are placed by their physical address
//! (`p_paddr`), as QEMU's `-kernel` loader does, because guests start with their MMU off.
//!
//! Pure functions over byte slices (no hardware, no allocation but the result).

use alloc::sync::Arc;
use alloc::vec;
use core::fmt;

use vm::Ipa;

pub use crate::platform::RAM_BASE;

const EI_CLASS_64: u8 = 2;
const EI_DATA_LE: u8 = 1;
const ET_EXEC: u16 = 2;
const EM_AARCH64: u16 = 183;
const PT_LOAD: u32 = 1;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;

/// Why an ELF was refused (the guest image file is at fault).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElfError {
    /// Not an ELF file, or not 64-bit little-endian.
    NotElf64,
    /// Not an AArch64 (EM_AARCH64) file.
    NotAarch64,
    /// Not ET_EXEC (a static executable).
    NotExec,
    /// A header or segment points outside the file.
    Truncated,
    /// A PT_LOAD lies outside guest RAM `[0x4000_0000, 0x4000_0000 + ram)`.
    SegmentOutsideRam { paddr: u64, memsz: u64 },
    /// No PT_LOAD with a non-zero size.
    NoSegments,
    /// The entry point is not inside a loaded segment.
    EntryOutside { entry: u64 },
    /// The flattened image (`bytes`, from RAM base to the highest segment end) is larger than
    /// the heap can hold (`max` bytes free).
    ImageTooBig { bytes: u64, max: u64 },
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::NotElf64 => write!(f, "not a 64-bit little-endian ELF file"),
            ElfError::NotAarch64 => write!(f, "not an AArch64 ELF (e_machine != 183)"),
            ElfError::NotExec => write!(f, "not a static executable (e_type != ET_EXEC)"),
            ElfError::Truncated => write!(f, "truncated or inconsistent ELF headers"),
            ElfError::SegmentOutsideRam { paddr, memsz } => write!(
                f,
                "PT_LOAD at {paddr:#x} (+{memsz:#x}) is outside guest RAM"
            ),
            ElfError::NoSegments => write!(f, "no loadable segments"),
            ElfError::EntryOutside { entry } => write!(f, "entry point {entry:#x} is not in a loaded segment"),
            ElfError::ImageTooBig { bytes, max } => write!(
                f,
                "the flattened image is {bytes} bytes, more than the {max} bytes of hypervisor heap left for it"
            ),
        }
    }
}

/// A loaded guest image.
#[derive(Clone)]
pub struct Image {
    /// The flattened bytes, starting at IPA [`RAM_BASE`].
    pub bytes: Arc<[u8]>,
    /// Entry point (IPA).
    pub entry: Ipa,
}

fn u16_at(b: &[u8], off: usize) -> Result<u16, ElfError> {
    let s = b.get(off..off + 2).ok_or(ElfError::Truncated)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, ElfError> {
    let s = b.get(off..off + 4).ok_or(ElfError::Truncated)?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], off: usize) -> Result<u64, ElfError> {
    let s = b.get(off..off + 8).ok_or(ElfError::Truncated)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

/// One PT_LOAD: file range and placement.
#[derive(Debug, Clone, Copy)]
struct Segment {
    offset: u64,
    filesz: u64,
    paddr: u64,
    memsz: u64,
}

/// Validates `elf` for a VM with `ram_bytes` of RAM and flattens it (see the module docs), into
/// at most `max_bytes` (what the heap can give it: checked before allocating).
pub fn load(elf: &[u8], ram_bytes: u64, max_bytes: u64) -> Result<Image, ElfError> {
    if elf.len() < EHDR_SIZE || elf[0..4] != [0x7f, b'E', b'L', b'F'] || elf[4] != EI_CLASS_64 || elf[5] != EI_DATA_LE {
        return Err(ElfError::NotElf64);
    }
    if u16_at(elf, 18)? != EM_AARCH64 {
        return Err(ElfError::NotAarch64);
    }
    if u16_at(elf, 16)? != ET_EXEC {
        return Err(ElfError::NotExec);
    }
    let entry = u64_at(elf, 24)?;
    let phoff = u64_at(elf, 32)? as usize;
    let phentsize = u16_at(elf, 54)? as usize;
    let phnum = u16_at(elf, 56)? as usize;
    if phentsize < PHDR_SIZE {
        return Err(ElfError::Truncated);
    }
    let ram_end = RAM_BASE.checked_add(ram_bytes).ok_or(ElfError::Truncated)?;

    let mut segs = vec::Vec::new();
    let mut end = RAM_BASE;
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize).ok_or(ElfError::Truncated)?).ok_or(ElfError::Truncated)?;
        if u32_at(elf, ph)? != PT_LOAD {
            continue;
        }
        let s = Segment {
            offset: u64_at(elf, ph + 8)?,
            paddr: u64_at(elf, ph + 24)?,
            filesz: u64_at(elf, ph + 32)?,
            memsz: u64_at(elf, ph + 40)?,
        };
        if s.memsz == 0 {
            continue;
        }
        let file_end = s.offset.checked_add(s.filesz).ok_or(ElfError::Truncated)?;
        if s.filesz > s.memsz || file_end > elf.len() as u64 {
            return Err(ElfError::Truncated);
        }
        let seg_end = s.paddr.checked_add(s.memsz);
        match seg_end {
            Some(e) if s.paddr >= RAM_BASE && e <= ram_end => end = end.max(e),
            _ => return Err(ElfError::SegmentOutsideRam { paddr: s.paddr, memsz: s.memsz }),
        }
        segs.push(s);
    }
    if segs.is_empty() {
        return Err(ElfError::NoSegments);
    }
    if !segs.iter().any(|s| entry >= s.paddr && entry < s.paddr + s.memsz) {
        return Err(ElfError::EntryOutside { entry });
    }

    let len = end - RAM_BASE;
    if len > max_bytes {
        return Err(ElfError::ImageTooBig { bytes: len, max: max_bytes });
    }
    let mut bytes = vec![0u8; len as usize];
    for s in &segs {
        let dst = (s.paddr - RAM_BASE) as usize;
        let src = &elf[s.offset as usize..(s.offset + s.filesz) as usize];
        bytes[dst..dst + src.len()].copy_from_slice(src);
    }
    Ok(Image { bytes: Arc::from(bytes), entry: Ipa(entry) })
}

/// Builds small ELF files for tests: one PT_LOAD per `(paddr, file bytes, memsz)`.
#[cfg(test)]
pub(crate) fn test_elf(entry: u64, segments: &[(u64, &[u8], u64)]) -> vec::Vec<u8> {
    let phoff = EHDR_SIZE;
    let data_off = phoff + PHDR_SIZE * segments.len();
    let mut elf = vec![0u8; data_off];
    elf[0..4].copy_from_slice(&[0x7f, b'E', b'L', b'F']);
    elf[4] = EI_CLASS_64;
    elf[5] = EI_DATA_LE;
    elf[6] = 1;
    elf[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
    elf[18..20].copy_from_slice(&EM_AARCH64.to_le_bytes());
    elf[24..32].copy_from_slice(&entry.to_le_bytes());
    elf[32..40].copy_from_slice(&(phoff as u64).to_le_bytes());
    elf[54..56].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
    elf[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
    for (i, (paddr, data, memsz)) in segments.iter().enumerate() {
        let ph = phoff + i * PHDR_SIZE;
        let offset = elf.len() as u64;
        elf.extend_from_slice(data);
        elf[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        elf[ph + 8..ph + 16].copy_from_slice(&offset.to_le_bytes());
        elf[ph + 16..ph + 24].copy_from_slice(&paddr.to_le_bytes());
        elf[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
        elf[ph + 32..ph + 40].copy_from_slice(&(data.len() as u64).to_le_bytes());
        elf[ph + 40..ph + 48].copy_from_slice(&memsz.to_le_bytes());
    }
    elf
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn segments_are_flattened_at_ram_base_with_zeroed_gaps_and_bss() {
        let elf = test_elf(RAM_BASE + 2, &[(RAM_BASE, b"text", 4), (RAM_BASE + 0x2000, b"data", 0x1800)]);
        let img = load(&elf, 64 * MIB, u64::MAX).unwrap();
        assert_eq!(img.entry, Ipa(RAM_BASE + 2));
        assert_eq!(img.bytes.len(), 0x3800);
        assert_eq!(&img.bytes[..4], b"text");
        assert_eq!(&img.bytes[0x2000..0x2004], b"data");
        assert!(img.bytes[4..0x2000].iter().chain(&img.bytes[0x2004..]).all(|&b| b == 0));
    }

    #[test]
    fn malformed_files_are_refused_with_the_reason() {
        let elf = test_elf(RAM_BASE, &[(RAM_BASE, b"code", 4)]);
        assert_eq!(load(b"not an elf", MIB, u64::MAX).err(), Some(ElfError::NotElf64));
        assert_eq!(load(&elf[..EHDR_SIZE + 10], MIB, u64::MAX).err(), Some(ElfError::Truncated));
        let mut bad = elf.clone();
        bad[18] = 62;
        assert_eq!(load(&bad, MIB, u64::MAX).err(), Some(ElfError::NotAarch64));
        let mut bad = elf.clone();
        bad[16] = 3;
        assert_eq!(load(&bad, MIB, u64::MAX).err(), Some(ElfError::NotExec));
        let mut bad = elf.clone();
        // filesz larger than the file.
        bad[EHDR_SIZE + 32..EHDR_SIZE + 40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(load(&bad, MIB, u64::MAX).err(), Some(ElfError::Truncated));
        assert_eq!(load(&test_elf(RAM_BASE, &[]), MIB, u64::MAX).err(), Some(ElfError::NoSegments));
        assert_eq!(
            load(&test_elf(RAM_BASE + 8, &[(RAM_BASE, b"code", 4)]), MIB, u64::MAX).err(),
            Some(ElfError::EntryOutside { entry: RAM_BASE + 8 })
        );
    }

    #[test]
    fn segments_outside_the_vms_ram_are_refused() {
        let below = test_elf(0x1000, &[(0x1000, b"code", 4)]);
        assert_eq!(load(&below, MIB, u64::MAX).err(), Some(ElfError::SegmentOutsideRam { paddr: 0x1000, memsz: 4 }));
        let beyond = test_elf(RAM_BASE, &[(RAM_BASE, b"code", 2 * MIB)]);
        assert!(load(&beyond, 2 * MIB, u64::MAX).is_ok());
        assert_eq!(
            load(&beyond, MIB, u64::MAX).err(),
            Some(ElfError::SegmentOutsideRam { paddr: RAM_BASE, memsz: 2 * MIB })
        );
        let wraps = test_elf(RAM_BASE, &[(u64::MAX - 1, b"code", 4)]);
        assert!(matches!(load(&wraps, MIB, u64::MAX), Err(ElfError::SegmentOutsideRam { .. })));
    }

    #[test]
    fn an_image_larger_than_the_heap_is_refused_before_allocating() {
        // 20 MiB of bss in a 32 MiB VM: the loader would allocate it all.
        let bss = test_elf(RAM_BASE, &[(RAM_BASE, b"code", 20 * MIB)]);
        assert_eq!(
            load(&bss, 32 * MIB, 16 * MIB).err(),
            Some(ElfError::ImageTooBig { bytes: 20 * MIB, max: 16 * MIB })
        );
        assert_eq!(load(&bss, 32 * MIB, 20 * MIB).unwrap().bytes.len() as u64, 20 * MIB);
    }
}
