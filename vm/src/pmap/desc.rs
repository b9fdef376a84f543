//! Stage-2 translation-table descriptors (VMSAv8-64, 4 KiB granule).
//!
//! Layout, from the Arm ARM (DDI 0487, D8.3 "Translation table descriptor formats" and the stage-2
//! attribute fields of block and page descriptors):
//!
//! ```text
//!  63   59 58  55 54 53 52  51  50  48 47                    12 11  10  9  8  7  6  5    2  1  0
//! +-------+------+-----+---+---+------+------------------------+---+---+-----+-----+-------+--+--+
//! | RES0  |  SW  | XN  |Con|DBM|  --  | output address [47:12] | - |AF | SH  |S2AP |MemAttr|T |V |
//! +-------+------+-----+---+---+------+------------------------+---+---+-----+-----+-------+--+--+
//! ```
//!
//! - V (bit 0) valid; T (bit 1) at level 3 must be 1 (page; 0b01 is reserved and faults), at levels
//!   1 and 2 selects table (1) or block (0). A level-2 block maps 2 MiB (OA bits \[47:21\]), a level-1
//!   block 1 GiB (OA bits \[47:30\]).
//! - MemAttr\[5:2\] (without FEAT_S2FWB): \[5:4\] outer, \[3:2\] inner; 0b1111 Normal Write-Back
//!   (outer and inner), 0b0001 Device-nGnRE.
//! - S2AP\[7:6\]: 0b00 no data access, 0b01 read-only, 0b10 write-only, 0b11 read/write.
//! - SH\[9:8\]: 0b00 non-shareable, 0b10 outer, 0b11 inner shareable.
//! - AF (bit 10): access flag; an access through a descriptor with AF = 0 takes an access-flag
//!   fault (VTCR_EL2.HA = 0: the hardware never sets it for us).
//! - XN\[54:53\]: without FEAT_XNX only bit 54 exists (1 = execute never); with FEAT_XNX the value
//!   0b10 also means "not executable at EL1 nor EL0". We write 0b10, correct under both.
//! - Bits \[58:55\] are IGNORED by the hardware: software uses them (we keep the wired bit there).
//! - A stage-2 table descriptor has no attribute fields: 0b11 plus the next table's address.
//!
//! Break-before-make (Arm ARM D8.16.1): changing a valid descriptor's output address, its size
//! (block ↔ table, contiguous bit) or its memory type/shareability must go through an invalid
//! descriptor and a TLB invalidation before the new one is written.

use crate::addr::{Pa, Prot};

bitflags::bitflags! {
    /// The attribute bits of a stage-2 block or page descriptor (everything but the output
    /// address). Multi-bit fields have one constant per encoding used; read them with the masks
    /// in [`Stage2Attributes::MEMATTR_MASK`] and friends, not with `contains`.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct Stage2Attributes: u64 {
        /// bit\[0\]: the descriptor is valid.
        const VALID = 1 << 0;
        /// bit\[1\]: page at level 3; table (1) or block (0) at levels 1 and 2.
        const TABLE_OR_PAGE = 1 << 1;
        /// MemAttr\[5:2\] = 0b0001: Device-nGnRE (MMIO windows).
        const MEMATTR_DEVICE_NGNRE = 0b0001 << 2;
        /// MemAttr\[5:2\] = 0b1111: Normal, outer and inner Write-Back cacheable (guest RAM).
        const MEMATTR_NORMAL_WB = 0b1111 << 2;
        /// S2AP\[6\]: data reads allowed.
        const S2AP_READ = 0b01 << 6;
        /// S2AP\[7\]: data writes allowed.
        const S2AP_WRITE = 0b10 << 6;
        /// SH\[9:8\] = 0b10: outer shareable.
        const SH_OUTER = 0b10 << 8;
        /// SH\[9:8\] = 0b11: inner shareable.
        const SH_INNER = 0b11 << 8;
        /// bit\[10\]: access flag.
        const AF = 1 << 10;
        /// bit\[51\]: dirty bit modifier (FEAT_HAFDBS; unused).
        const DBM = 1 << 51;
        /// bit\[52\]: contiguous hint (unused).
        const CONTIGUOUS = 1 << 52;
        /// XN\[54:53\] = 0b10: execute never at EL1 and EL0.
        const XN = 0b10 << 53;
        /// bit\[55\], software (IGNORED by hardware): the mapping is wired.
        const SW_WIRED = 1 << 55;
    }
}

/// Memory type of a leaf mapping (the MemAttr encodings we write).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum MemAttr {
    /// Normal memory, Write-Back cacheable: guest RAM.
    NormalWriteBack,
    /// Device-nGnRE: pass-through MMIO.
    DeviceNGnRE,
}

impl Stage2Attributes {
    /// MemAttr\[5:2\].
    pub const MEMATTR_MASK: u64 = 0b1111 << 2;
    /// S2AP\[7:6\].
    pub const S2AP_MASK: u64 = 0b11 << 6;
    /// SH\[9:8\].
    pub const SH_MASK: u64 = 0b11 << 8;
    /// XN\[54:53\].
    pub const XN_MASK: u64 = 0b11 << 53;
    /// Software bits \[58:55\] (ignored by the hardware).
    pub const SW_MASK: u64 = 0b1111 << 55;

    /// Leaf attributes for a mapping with `prot` (AF set, inner shareable), without VALID/type
    /// bits. WRITE implies READ (stage 2 never maps write-only); no EXEC means XN. An empty
    /// `prot` gives S2AP = 0b00 + XN: a valid descriptor that permits nothing.
    pub fn for_prot(prot: Prot, mem: MemAttr) -> Self {
        let memattr = match mem {
            MemAttr::NormalWriteBack => Self::MEMATTR_NORMAL_WB,
            MemAttr::DeviceNGnRE => Self::MEMATTR_DEVICE_NGNRE,
        };
        (memattr | Self::SH_INNER | Self::AF).with_prot(prot)
    }

    /// The same attributes with S2AP and XN replaced to express `prot`.
    pub fn with_prot(self, prot: Prot) -> Self {
        let mut bits = self.bits() & !(Self::S2AP_MASK | Self::XN_MASK);
        if prot.contains(Prot::WRITE) {
            bits |= Self::S2AP_READ.bits() | Self::S2AP_WRITE.bits();
        } else if prot.contains(Prot::READ) {
            bits |= Self::S2AP_READ.bits();
        }
        if !prot.contains(Prot::EXEC) {
            bits |= Self::XN.bits();
        }
        Self::from_bits_retain(bits)
    }

    /// The protection these attributes grant (any non-zero XN counts as execute-never).
    pub fn prot(self) -> Prot {
        let mut prot = Prot::NONE;
        if self.bits() & Self::S2AP_READ.bits() != 0 {
            prot |= Prot::READ;
        }
        if self.bits() & Self::S2AP_WRITE.bits() != 0 {
            prot |= Prot::WRITE;
        }
        if self.bits() & Self::XN_MASK == 0 {
            prot |= Prot::EXEC;
        }
        prot
    }

    /// The memory type, if it is one of the encodings we write.
    pub fn mem_attr(self) -> Option<MemAttr> {
        match self.bits() & Self::MEMATTR_MASK {
            x if x == Self::MEMATTR_NORMAL_WB.bits() => Some(MemAttr::NormalWriteBack),
            x if x == Self::MEMATTR_DEVICE_NGNRE.bits() => Some(MemAttr::DeviceNGnRE),
            _ => None,
        }
    }
}

/// Translation level of a descriptor (4 KiB granule; we start at level 1).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Level {
    /// IPA\[39:30\] (concatenated root of our 40-bit IPA space); blocks map 1 GiB.
    L1,
    /// IPA\[29:21\]; blocks map 2 MiB.
    L2,
    /// IPA\[20:12\]; pages map 4 KiB.
    L3,
}

impl Level {
    /// Bit position of the lowest IPA bit this level resolves.
    pub const fn shift(self) -> u32 {
        match self {
            Level::L1 => 30,
            Level::L2 => 21,
            Level::L3 => 12,
        }
    }
    /// Bytes mapped by one leaf entry at this level.
    pub const fn leaf_size(self) -> u64 {
        1 << self.shift()
    }
}

/// A decoded descriptor.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Entry {
    /// bit\[0\] clear: translation fault.
    Invalid,
    /// A table descriptor (levels 1 and 2): the next-level table.
    Table(Pa),
    /// A leaf: a 4 KiB page (level 3) or a block (levels 1 and 2).
    Leaf {
        level: Level,
        oa: Pa,
        attrs: Stage2Attributes,
    },
    /// 0b01 at level 3: reserved, behaves as invalid.
    Reserved,
}

/// One raw 64-bit stage-2 descriptor.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct Descriptor(pub u64);

impl core::fmt::Debug for Descriptor {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Descriptor({:#018x})", self.0)
    }
}

impl Descriptor {
    /// An invalid (faulting) descriptor.
    pub const INVALID: Descriptor = Descriptor(0);
    /// Output-address bits \[47:12\] of a page or table descriptor.
    pub const OA_MASK: u64 = 0x0000_ffff_ffff_f000;
    /// Bits \[1:0\].
    const TYPE_MASK: u64 = 0b11;

    /// A level-3 page descriptor for the frame at `pa` (page aligned) with `attrs`.
    pub fn page(pa: Pa, attrs: Stage2Attributes) -> Descriptor {
        let attrs = attrs | Stage2Attributes::VALID | Stage2Attributes::TABLE_OR_PAGE;
        Descriptor((pa.0 & Self::OA_MASK) | (attrs.bits() & !Self::OA_MASK))
    }

    /// A block descriptor at `level` (L1 or L2) for `pa`, which must be aligned to the block size.
    pub fn block(level: Level, pa: Pa, attrs: Stage2Attributes) -> Option<Descriptor> {
        if level == Level::L3 || pa.0 & (level.leaf_size() - 1) != 0 || pa.0 & !Self::OA_MASK != 0 {
            return None;
        }
        let attrs = (attrs | Stage2Attributes::VALID) - Stage2Attributes::TABLE_OR_PAGE;
        Some(Descriptor(pa.0 | (attrs.bits() & !Self::OA_MASK)))
    }

    /// A table descriptor pointing at the next-level table in frame `next`.
    pub fn table(next: Pa) -> Descriptor {
        Descriptor((next.0 & Self::OA_MASK) | 0b11)
    }

    /// The raw value.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// bit\[0\].
    pub const fn is_valid(self) -> bool {
        self.0 & 1 != 0
    }

    /// The attribute bits (the descriptor without its output address).
    pub fn attributes(self) -> Stage2Attributes {
        Stage2Attributes::from_bits_retain(self.0 & !Self::OA_MASK)
    }

    /// The same descriptor with different attribute bits (output address kept).
    pub fn with_attributes(self, attrs: Stage2Attributes) -> Descriptor {
        Descriptor((self.0 & Self::OA_MASK) | (attrs.bits() & !Self::OA_MASK))
    }

    /// Decode as a descriptor found at `level`.
    pub fn decode(self, level: Level) -> Entry {
        if !self.is_valid() {
            return Entry::Invalid;
        }
        let table_or_page = self.0 & 0b10 != 0;
        match (level, table_or_page) {
            (Level::L3, true) => Entry::Leaf {
                level,
                oa: Pa(self.0 & Self::OA_MASK),
                attrs: self.attributes(),
            },
            (Level::L3, false) => Entry::Reserved,
            (_, true) => Entry::Table(Pa(self.0 & Self::OA_MASK)),
            (_, false) => {
                let oa_mask = Self::OA_MASK & !(level.leaf_size() - 1);
                Entry::Leaf {
                    level,
                    oa: Pa(self.0 & oa_mask),
                    attrs: self.attributes(),
                }
            }
        }
    }

    /// The Arm ARM's break-before-make rule for replacing `old` with `new` in the same slot: true
    /// when `old` is valid, `new` is valid, and they differ in output address, in type (block ↔
    /// table), in the contiguous hint, or in memory type or shareability. Permission, AF and
    /// software-bit changes may be written in place (followed by a TLB invalidation).
    pub fn needs_break_before_make(old: Descriptor, new: Descriptor) -> bool {
        if !old.is_valid() || !new.is_valid() {
            return false;
        }
        let must_match = Self::OA_MASK
            | Self::TYPE_MASK
            | Stage2Attributes::CONTIGUOUS.bits()
            | Stage2Attributes::MEMATTR_MASK
            | Stage2Attributes::SH_MASK;
        (old.0 ^ new.0) & must_match != 0
    }

    /// True when replacing `old` by `new` requires a TLB invalidation: `old` was valid and
    /// something the hardware reads other than the access flag changed (software bits
    /// \[58:55\] are ignored by it).
    ///
    /// The access flag is left out both ways. Clearing it is done without a TLBI on purpose
    /// (the pagedaemon's aging, see `Stage2::clear_access_flag`), so a TLB may
    /// still hold the entry as it was with AF = 1, and that entry equals the descriptor in every
    /// other bit. Setting AF again therefore needs none either: the new descriptor is what the
    /// stale entry already says. What this rule may *not* do is trust "AF = 0 is never cached"
    /// (true only of entries written with AF = 0, Arm ARM D8.13, not of a descriptor whose AF
    /// was cleared under a live TLB entry): any other change of an AF = 0 descriptor (a
    /// permission lowered or raised) is invalidated like that of an AF = 1 one. Skipping the
    /// flush on "not accessed" after clearing AF lazily is the data corruption Linux's reviewers
    /// warn about for x86's lazy `ptep_clear_flush_young` ("If anyone ever implements the
    /// optimization of skipping the flush when unmapping a !accessed page, then this will cause
    /// data corruption"); a stale lower permission would also fault forever, as the
    /// hypervisor does no TLBI on a spurious permission fault.
    pub fn needs_tlb_invalidation(old: Descriptor, new: Descriptor) -> bool {
        old.is_valid()
            && (old.0 ^ new.0) & !(Stage2Attributes::SW_MASK | Stage2Attributes::AF.bits()) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PA: Pa = Pa(0x8000_1000);
    const XN: u64 = 1 << 54;

    fn page(prot: Prot) -> u64 {
        Descriptor::page(
            PA,
            Stage2Attributes::for_prot(prot, MemAttr::NormalWriteBack),
        )
        .bits()
    }

    #[test]
    fn page_encoding_is_bit_exact_for_each_prot() {
        // V|T = 0b11, MemAttr 0b1111 = 0x3c, SH inner = 0x300, AF = 0x400.
        assert_eq!(page(Prot::READ), 0x0040_0000_8000_177f);
        assert_eq!(page(Prot::READ | Prot::EXEC), 0x0000_0000_8000_177f);
        assert_eq!(page(Prot::READ | Prot::WRITE), 0x0040_0000_8000_17ff);
        assert_eq!(page(Prot::WRITE), 0x0040_0000_8000_17ff); // WRITE implies READ
        assert_eq!(page(Prot::ALL), 0x0000_0000_8000_17ff);
        assert_eq!(page(Prot::EXEC), 0x0000_0000_8000_173f);
        assert_eq!(page(Prot::NONE), 0x0040_0000_8000_173f);
        assert_eq!(page(Prot::NONE) & XN, XN);
    }

    #[test]
    fn device_and_wired_encoding() {
        let attrs = Stage2Attributes::for_prot(Prot::READ | Prot::WRITE, MemAttr::DeviceNGnRE);
        assert_eq!(
            Descriptor::page(Pa(0x0900_0000), attrs).bits(),
            0x0040_0000_0900_07c7
        );
        let wired = Descriptor::page(PA, attrs | Stage2Attributes::SW_WIRED);
        assert_eq!(wired.bits(), 0x00c0_0000_8000_17c7);
        assert_eq!(wired.attributes().mem_attr(), Some(MemAttr::DeviceNGnRE));
    }

    #[test]
    fn prot_round_trips() {
        for bits in 0..8u8 {
            let prot = Prot::from_bits_truncate(bits);
            let expect = if prot.contains(Prot::WRITE) {
                prot | Prot::READ
            } else {
                prot
            };
            let d = Descriptor(page(prot));
            assert_eq!(d.attributes().prot(), expect, "{prot:?}");
            assert_eq!(d.attributes().mem_attr(), Some(MemAttr::NormalWriteBack));
        }
    }

    #[test]
    fn decode_levels() {
        let attrs = Stage2Attributes::for_prot(Prot::READ, MemAttr::NormalWriteBack);
        let p = Descriptor::page(PA, attrs);
        assert_eq!(
            p.decode(Level::L3),
            Entry::Leaf {
                level: Level::L3,
                oa: PA,
                attrs: p.attributes()
            }
        );
        assert_eq!(p.decode(Level::L2), Entry::Table(PA));
        let t = Descriptor::table(Pa(0x4321_0000));
        assert_eq!(t.bits(), 0x4321_0003);
        assert_eq!(t.decode(Level::L1), Entry::Table(Pa(0x4321_0000)));
        let b = Descriptor::block(Level::L2, Pa(0x8020_0000), attrs).unwrap();
        assert_eq!(b.bits(), 0x0040_0000_8020_077d);
        match b.decode(Level::L2) {
            Entry::Leaf { level, oa, .. } => {
                assert_eq!((level, oa), (Level::L2, Pa(0x8020_0000)));
                assert_eq!(level.leaf_size(), 2 << 20);
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(b.decode(Level::L3), Entry::Reserved);
        assert_eq!(Descriptor::block(Level::L2, Pa(0x8020_1000), attrs), None);
        assert_eq!(Descriptor::block(Level::L3, Pa(0x8020_0000), attrs), None);
        assert_eq!(Descriptor::INVALID.decode(Level::L1), Entry::Invalid);
    }

    #[test]
    fn break_before_make_rule() {
        let rw = Stage2Attributes::for_prot(Prot::READ | Prot::WRITE, MemAttr::NormalWriteBack);
        let ro = Stage2Attributes::for_prot(Prot::READ, MemAttr::NormalWriteBack);
        let a = Descriptor::page(PA, rw);
        let bbm = Descriptor::needs_break_before_make;
        assert!(!bbm(Descriptor::INVALID, a), "invalid -> valid");
        assert!(
            !bbm(a, Descriptor::INVALID),
            "valid -> invalid is the break itself"
        );
        assert!(!bbm(a, Descriptor::page(PA, ro)), "permission change");
        assert!(
            !bbm(a, a.with_attributes(rw - Stage2Attributes::AF)),
            "AF change"
        );
        assert!(
            bbm(a, Descriptor::page(Pa(PA.0 + 0x1000), rw)),
            "output address"
        );
        let dev = Stage2Attributes::for_prot(Prot::READ | Prot::WRITE, MemAttr::DeviceNGnRE);
        assert!(bbm(a, Descriptor::page(PA, dev)), "memory type");
        let block = Descriptor::block(Level::L2, Pa(0x8020_0000), rw).unwrap();
        assert!(bbm(block, Descriptor::table(Pa(0x8020_0000))), "block size");
        assert!(bbm(
            Descriptor::table(Pa(0x1000)),
            Descriptor::table(Pa(0x2000))
        ));
    }

    #[test]
    fn tlb_rule_ignores_software_bits() {
        let rw = Stage2Attributes::for_prot(Prot::READ | Prot::WRITE, MemAttr::NormalWriteBack);
        let a = Descriptor::page(PA, rw);
        let wired = Descriptor::page(PA, rw | Stage2Attributes::SW_WIRED);
        assert!(!Descriptor::needs_tlb_invalidation(Descriptor::INVALID, a));
        assert!(!Descriptor::needs_tlb_invalidation(a, wired));
        assert!(!Descriptor::needs_tlb_invalidation(a, a));
        assert!(Descriptor::needs_tlb_invalidation(a, Descriptor::INVALID));
        assert!(Descriptor::needs_tlb_invalidation(
            a,
            a.with_attributes(rw.with_prot(Prot::READ))
        ));
    }

    /// The access flag alone never costs a TLBI (aging is lazy), but a descriptor whose AF was
    /// cleared is still invalidated when anything else changes: a TLB may hold it with AF = 1.
    #[test]
    fn tlb_rule_ignores_the_access_flag_but_not_what_an_old_entry_permits() {
        let rw = Stage2Attributes::for_prot(Prot::READ | Prot::WRITE, MemAttr::NormalWriteBack);
        let young = Descriptor::page(PA, rw);
        let old = young.with_attributes(young.attributes() - Stage2Attributes::AF);
        let tlbi = Descriptor::needs_tlb_invalidation;
        assert!(!tlbi(young, old), "clearing AF (aging)");
        assert!(!tlbi(old, young), "setting AF again");
        let ro_old = old.with_attributes(old.attributes().with_prot(Prot::READ));
        assert!(tlbi(old, ro_old), "write protecting an old mapping");
        assert!(tlbi(ro_old, young), "raising the permission of an old mapping");
        assert!(tlbi(old, Descriptor::INVALID), "unmapping an old mapping");
    }
}
