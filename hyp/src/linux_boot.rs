//! What a Linux VM boots from (Documentation/arch/arm64/booting.rst): the kernel `Image` placed
//! as its header asks (`linux_image`), a device tree of the VM's platform (`guest_fdt`, addresses
//! from `platform`), the initrd where that device tree says; vCPU 0 enters the kernel at EL1h
//! with the MMU and caches off, x0 = the device tree's IPA, x1..x3 = 0.
//!
//! The three are read-only image segments: the hypervisor maps each as an image object
//! (copy-on-write, shared by every VM that boots the same file), the rest of RAM is zero-fill.

use alloc::sync::Arc;
use alloc::vec;
use core::fmt;
use core::ops::Range;

use vm::Ipa;

use crate::guest_fdt::{self, FdtError, Gicv3, GuestPlatform, Pl011, Ppi, Spi, TimerPpis};
use crate::linux_image::{ImageError, ImageHeader};
use crate::platform::{self, RAM_BASE};

/// One read-only piece of a VM's initial memory.
#[derive(Clone, Debug)]
pub struct Segment {
    /// Its first IPA (page aligned).
    pub at: Ipa,
    pub bytes: Arc<[u8]>,
}

/// A VM's initial memory and entry state.
#[derive(Clone, Debug)]
pub struct BootImage {
    /// In IPA order, not overlapping.
    pub segments: alloc::vec::Vec<Segment>,
    pub entry: Ipa,
    /// vCPU 0's x0.
    pub x0: u64,
}

impl BootImage {
    /// Bytes of all segments.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes.len() as u64).sum()
    }
}

/// Why a Linux VM cannot be booted as described.
#[derive(Debug, PartialEq, Eq)]
pub enum LinuxError {
    Image(ImageError),
    Fdt(FdtError),
}

impl fmt::Display for LinuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinuxError::Image(e) => write!(f, "kernel Image: {e}"),
            LinuxError::Fdt(e) => write!(f, "device tree: {e}"),
        }
    }
}

/// The timer's PPIs as QEMU virt wires them (secure physical 13, physical 14, virtual 11, EL2
/// physical 10: INTIDs 29, 30, 27, 26).
const TIMER: TimerPpis = TimerPpis { secure_phys: Ppi(13), phys: Ppi(14), virt: Ppi(11), hyp: Ppi(10) };
/// The PL011's reference clock (QEMU virt's `apb-pclk`, 24 MHz).
const PL011_CLOCK_HZ: u32 = 24_000_000;

fn range(w: platform::Window) -> Range<Ipa> {
    Ipa(w.base)..Ipa(w.end())
}

/// The boot image of a Linux VM with `ram_bytes` of RAM and `vcpus` vCPUs.
pub fn boot_image(kernel: &Arc<[u8]>, initrd: Option<&Arc<[u8]>>, bootargs: &[u8], ram_bytes: u64, vcpus: u32) -> Result<BootImage, LinuxError> {
    let header = ImageHeader::parse(kernel).map_err(LinuxError::Image)?;
    let ram = Ipa(RAM_BASE)..Ipa(RAM_BASE + ram_bytes);
    let layout = header
        .placement(ram.clone(), kernel.len() as u64, initrd.map(|i| i.len() as u64))
        .map_err(LinuxError::Image)?;
    let dtb = guest_fdt::generate(&GuestPlatform {
        ram,
        vcpus,
        gic: Gicv3 { distributor: range(platform::GICD), redistributors: Ipa(platform::GICR_BASE) },
        timer: TIMER,
        uart: Pl011 { regs: range(platform::PL011), irq: Spi(platform::PL011_SPI), clock_hz: PL011_CLOCK_HZ },
        bootargs,
        initrd: layout.initrd.clone(),
    })
    .map_err(LinuxError::Fdt)?;
    let mut segments = vec![Segment { at: layout.kernel, bytes: kernel.clone() }, Segment { at: layout.dtb.start, bytes: dtb.into() }];
    if let (Some(bytes), Some(at)) = (initrd, &layout.initrd) {
        segments.push(Segment { at: at.start, bytes: bytes.clone() });
    }
    Ok(BootImage { segments, entry: layout.kernel, x0: layout.dtb.start.0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux_image::DTB_MAX_SIZE;

    /// A kernel of `len` bytes with a valid header: text_offset 0, image_size 16 MiB, LE, 4K.
    fn kernel(len: usize) -> Arc<[u8]> {
        let mut k = vec![0u8; len];
        k[0x10..0x18].copy_from_slice(&(16u64 << 20).to_le_bytes());
        k[0x18..0x20].copy_from_slice(&0xau64.to_le_bytes());
        k[0x38..0x3c].copy_from_slice(b"ARM\x64");
        k.into()
    }

    #[test]
    fn kernel_dtb_and_initrd_are_page_aligned_in_order_and_x0_is_the_dtb() {
        let k = kernel(8 << 20);
        let initrd: Arc<[u8]> = vec![7u8; 5000].into();
        let b = boot_image(&k, Some(&initrd), b"console=ttyAMA0 x=\"a b\"", 256 << 20, 2).unwrap();
        assert_eq!(b.entry, Ipa(RAM_BASE));
        assert_eq!(b.segments.len(), 3);
        let dtb = &b.segments[1];
        assert_eq!(b.x0, dtb.at.0);
        assert!(Arc::ptr_eq(&b.segments[0].bytes, &k) && Arc::ptr_eq(&b.segments[2].bytes, &initrd));
        for pair in b.segments.windows(2) {
            assert!(pair[0].at.0 + pair[0].bytes.len() as u64 <= pair[1].at.0, "{pair:x?}");
        }
        assert!(b.segments.iter().all(|s| s.at.0 % 4096 == 0));
        assert!(dtb.at.0 >= RAM_BASE + (16 << 20), "the DTB is after the kernel's image_size");
        assert!(dtb.bytes.len() as u64 <= DTB_MAX_SIZE);
        let fdt = crate::dtb::parse(&dtb.bytes).unwrap();
        assert_eq!(fdt.ram, RAM_BASE..RAM_BASE + (256 << 20));
        assert_eq!(fdt.cpu_count, 2);
        assert_eq!(b.bytes(), (8 << 20) + 5000 + dtb.bytes.len() as u64);
    }

    #[test]
    fn a_bad_kernel_or_too_little_ram_is_an_error() {
        let not_linux: Arc<[u8]> = vec![0u8; 4096].into();
        assert!(matches!(boot_image(&not_linux, None, b"", 64 << 20, 1), Err(LinuxError::Image(_))));
        assert!(matches!(boot_image(&kernel(8 << 20), None, b"", 16 << 20, 1), Err(LinuxError::Image(_))));
        assert!(matches!(boot_image(&kernel(1 << 20), None, b"a\0b", 64 << 20, 1), Err(LinuxError::Fdt(_))));
    }
}
