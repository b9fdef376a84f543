//! Typed addresses and protections.
//!
//! A guest-physical address (`Ipa`) and a host-physical address (`Pa`) are different things that
//! happen to share a representation; the types keep them apart. Only the arithmetic that makes sense
//! is provided.

use core::fmt;

/// Size of a translation granule and of every page the engine manages.
pub const PAGE_SIZE: u64 = 4096;
/// log2(PAGE_SIZE).
pub const PAGE_SHIFT: u32 = 12;

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The address rounded down to its page.
            pub const fn page_base(self) -> Self {
                Self(self.0 & !(PAGE_SIZE - 1))
            }
            /// Offset inside the page.
            pub const fn page_offset(self) -> u64 {
                self.0 & (PAGE_SIZE - 1)
            }
            /// True when the address is page aligned.
            pub const fn is_page_aligned(self) -> bool {
                self.page_offset() == 0
            }
            /// `self + bytes`, or `None` on overflow.
            pub const fn checked_add(self, bytes: u64) -> Option<Self> {
                match self.0.checked_add(bytes) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
            /// `self + pages * PAGE_SIZE`, saturating at `u64::MAX` (never panics). Callers
            /// stay inside a range they already checked; a saturated result lies outside any
            /// range, so range checks still refuse it. Use [`Self::checked_add`] to detect it.
            pub const fn add_pages(self, pages: u64) -> Self {
                Self(self.0.saturating_add(pages.saturating_mul(PAGE_SIZE)))
            }
            /// Number of whole pages from `base` up to `self`, saturating at 0 when
            /// `self < base` (never panics).
            pub const fn pages_since(self, base: Self) -> u64 {
                self.0.saturating_sub(base.0) >> PAGE_SHIFT
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#012x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#012x}", self.0)
            }
        }
    };
}

address_type!(
    /// Intermediate physical address: what a guest believes is physical memory.
    Ipa
);
address_type!(
    /// Host physical address: a real frame owned by the hypervisor.
    Pa
);

/// Index of a frame inside the page pool handed to the engine (`Pa = pool base + idx * PAGE_SIZE`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[repr(transparent)]
pub struct PageIdx(pub u32);

bitflags::bitflags! {
    /// Protection of a mapping (the seed's `vm_prot_t`).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct Prot: u8 {
        const READ = 1 << 0;
        const WRITE = 1 << 1;
        const EXEC = 1 << 2;
    }
}

impl Prot {
    /// Read, write and execute.
    pub const ALL: Prot = Prot::all();
    /// No access.
    pub const NONE: Prot = Prot::empty();
}

/// What a faulting access wanted. A fault has exactly one access kind.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Access {
    Read,
    Write,
    Exec,
}

impl Access {
    /// The protection bit this access needs.
    pub const fn prot(self) -> Prot {
        match self {
            Access::Read => Prot::READ,
            Access::Write => Prot::WRITE,
            Access::Exec => Prot::EXEC,
        }
    }
}
