//! The virtual platform every VM sees, and the limits of the hypervisor: one place for each
//! address and count (README, "Platform and limits").
//!
//! The guest-physical map follows QEMU's `virt` board (`hw/arm/virt.c`, `base_memmap`), so a guest
//! written for `virt` — Linux with a `virt` device tree, or our test guests — finds its devices
//! where it expects them:
//!
//! | IPA | what |
//! |---|---|
//! | `0x0800_0000` + 64 KiB | GICv3 distributor |
//! | `0x080A_0000` + 128 KiB per vCPU | GICv3 redistributors (RD + SGI frame each) |
//! | `0x0900_0000` + 4 KiB | PL011 UART, SPI 1 |
//! | `0x0A00_0000` + 512 B × 32 | virtio-mmio slots, SPIs 16.. |
//! | `0x0B00_0000` + 4 KiB | the VM's identity registers (`hyp::identity`; not in the DTB) |
//! | `0x4000_0000` + the VM's RAM | RAM (the image is linked at its base) |
//!
//! This file has no dependencies (only `core`): the test guests include it too
//! (`guest/src/layout.rs`, and `guest/build.rs` for the linker script's symbols), and `tools`
//! reads it through the `hyp` library.

/// A region of the guest-physical (IPA) space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub base: u64,
    pub size: u64,
}

impl Window {
    /// First byte after the window (saturating: a window may end at the top of the space).
    pub const fn end(self) -> u64 {
        self.base.saturating_add(self.size)
    }
    /// True when `ipa` is inside the window.
    pub const fn contains(self, ipa: u64) -> bool {
        ipa >= self.base && ipa - self.base < self.size
    }
}

/// Guest RAM starts here (IPA); every guest image is linked at this address.
pub const RAM_BASE: u64 = 0x4000_0000;
/// The translation granule of stage 2 and of the test guests.
pub const PAGE_SIZE: u64 = 4096;

/// GICv3 distributor.
pub const GICD: Window = Window { base: 0x0800_0000, size: 0x1_0000 };
/// GICv3 redistributor region base; each vCPU has one redistributor of [`GICR_STRIDE`] bytes
/// (RD_base and SGI_base frames of 64 KiB), so the region's size follows the VM's vCPU count.
pub const GICR_BASE: u64 = 0x080A_0000;
pub const GICR_STRIDE: u64 = 0x2_0000;
/// PL011 UART.
pub const PL011: Window = Window { base: 0x0900_0000, size: 0x1000 };
/// The PL011's interrupt (SPI number, INTID 32 + 1).
pub const PL011_SPI: u32 = 1;
/// virtio-mmio transport slots: slot `n` at `VIRTIO_BASE + n × VIRTIO_STRIDE`, SPI `16 + n`.
pub const VIRTIO_BASE: u64 = 0x0A00_0000;
pub const VIRTIO_STRIDE: u64 = 0x200;
pub const VIRTIO_SLOTS: u64 = 32;
/// INTID of virtio-mmio slot 0's interrupt: SPI 16 (QEMU virt's `VIRT_MMIO` irq base) + 32;
/// slot `n` has `VIRTIO_INTID_BASE + n`, level-triggered.
pub const VIRTIO_INTID_BASE: u32 = 32 + 16;

/// The VM's identity registers (`crate::identity`). Free in QEMU's `virt` map (between the
/// virtio-mmio slots and the platform bus at `0x0C00_0000`) and outside RAM, so Linux's
/// `/dev/mem` maps it as device memory; no DTB node: no driver needs it, userspace reads it.
pub const IDENTITY: Window = Window { base: 0x0B00_0000, size: 0x1000 };

/// The redistributor region of a VM with `vcpus` vCPUs.
pub const fn gicr(vcpus: u32) -> Window {
    Window { base: GICR_BASE, size: GICR_STRIDE * vcpus as u64 }
}

/// Physical CPUs the hypervisor runs on (per-CPU stacks and state are static).
pub const MAX_CPUS: usize = 4;
/// vCPUs per VM: the redistributor region of [`MAX_VCPUS`] ends below the PL011, and the test
/// guests reserve a stack for each.
pub const MAX_VCPUS: u32 = 8;
const _: () = assert!(gicr(MAX_VCPUS).end() <= PL011.base);
/// VMs alive at once: a VM's id is its 8-bit VMID, 1..=255 (VMID 0 is the hypervisor's empty
/// stage 2, loaded for TLB maintenance). Ids of stopped VMs are reused (`hyp::vmid`).
pub const MAX_VMS: usize = 255;
/// Largest guest RAM, MiB. RAM must end inside the 40-bit IPA space; below that the limit is
/// policy: the engine keeps a slot per guest page in the VM's amap (heap memory), and 3 GiB keeps
/// a VM's RAM in the low 4 GiB like a real `virt` machine's.
pub const MAX_RAM_MIB: u64 = 3 * 1024;
/// Bytes of one test-guest vCPU stack (`guest/link.ld` reserves [`MAX_VCPUS`] of them: 256 KiB
/// of demand-zero RAM, touched only by vCPUs that run). The test guests' deepest use is a few KiB
/// (formatting a console line).
pub const GUEST_STACK_SIZE: u64 = 0x8000;

/// The machine the hypervisor itself runs on: QEMU `virt` with `gic-version=3`
/// (`../shared/DESIGN.md` §7). The guests' platform above mirrors it, but these are physical
/// addresses, used only by `hyp/src/arch`.
pub mod host {
    /// GICv3 distributor (64 KiB).
    pub const GICD_BASE: u64 = 0x0800_0000;
    /// GICv3 redistributors (2 × 64 KiB frames per CPU).
    pub const GICR_BASE: u64 = 0x080A_0000;
    /// The PL011 UART QEMU connects to `-serial` (the host console's input, `arch::uart`).
    pub const PL011_BASE: u64 = 0x0900_0000;
    /// MMIO identity-mapped as Device-nGnRE at EL2: GICD, ITS, GICR, PL011, RTC/GPIO, virtio-mmio.
    pub const DEVICE_WINDOW: core::ops::Range<u64> = 0x0800_0000..0x0B00_0000;
    /// Where QEMU places its DTB when `-kernel` is an ELF linked ≥ 1 MiB above RAM base.
    pub const DTB_ADDR: u64 = 0x4000_0000;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_windows_are_below_ram_and_do_not_overlap() {
        let mut w = [GICD, gicr(MAX_VCPUS), PL011, Window { base: VIRTIO_BASE, size: VIRTIO_STRIDE * VIRTIO_SLOTS }, IDENTITY];
        w.sort_by_key(|w| w.base);
        for pair in w.windows(2) {
            assert!(pair[0].end() <= pair[1].base, "{:?} overlaps {:?}", pair[0], pair[1]);
        }
        assert!(w[4].end() <= RAM_BASE);
    }

    #[test]
    fn window_contains_is_half_open() {
        assert!(PL011.contains(0x0900_0000) && PL011.contains(0x0900_0fff));
        assert!(!PL011.contains(0x0900_1000) && !PL011.contains(0x08ff_ffff));
        assert_eq!(gicr(2), Window { base: 0x080A_0000, size: 0x4_0000 });
    }
}
