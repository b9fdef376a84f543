//! Host check of the Linux boot pieces on a real kernel (used by `make linux-direct`): reads an
//! arm64 `Image` and an initrd, places them with `linux_image` in RAM at 0x4000_0000, writes the
//! device tree `guest_fdt` makes for QEMU virt's devices, and prints the header and the layout.
//! QEMU then boots the kernel with that device tree and the initrd where the layout puts it.
//!
//! Usage: guest_dtb IMAGE INITRD OUT.dtb RAM_MIB VCPUS BOOTARGS

use std::ops::Range;
use std::process::ExitCode;

use hyp::guest_fdt::{self, Gicv3, GuestPlatform, Pl011, Ppi, Spi, TimerPpis};
use hyp::linux_image::ImageHeader;
use vm::Ipa;

/// QEMU virt's map (DESIGN.md section 7): what uvmhyp's platform will give a VM too.
const RAM_BASE: u64 = 0x4000_0000;
const GICD: Range<Ipa> = Ipa(0x0800_0000)..Ipa(0x0801_0000);
const GICR: Ipa = Ipa(0x080a_0000);
const PL011: Range<Ipa> = Ipa(0x0900_0000)..Ipa(0x0900_1000);
const PL011_SPI: Spi = Spi(1);
const PL011_CLOCK_HZ: u32 = 24_000_000;
const TIMER: TimerPpis = TimerPpis { secure_phys: Ppi(13), phys: Ppi(14), virt: Ppi(11), hyp: Ppi(10) };

fn run(args: &[String]) -> Result<(), String> {
    let [image, initrd, out, ram_mib, vcpus, bootargs] = args else {
        return Err("usage: guest_dtb IMAGE INITRD OUT.dtb RAM_MIB VCPUS BOOTARGS".into());
    };
    let image = std::fs::read(image).map_err(|e| format!("{image}: {e}"))?;
    let initrd_len = std::fs::metadata(initrd).map_err(|e| format!("{initrd}: {e}"))?.len();
    let ram_mib: u64 = ram_mib.parse().map_err(|_| format!("RAM_MIB {ram_mib}: not a number"))?;
    let vcpus: u32 = vcpus.parse().map_err(|_| format!("VCPUS {vcpus}: not a number"))?;

    let header = ImageHeader::parse(&image).map_err(|e| e.to_string())?;
    println!("guest_dtb: Image header {header:x?}");
    let ram = Ipa(RAM_BASE)..Ipa(RAM_BASE + (ram_mib << 20));
    let layout = header.placement(ram.clone(), image.len() as u64, Some(initrd_len)).map_err(|e| e.to_string())?;
    println!("guest_dtb: {layout:x?}");
    let platform = GuestPlatform {
        ram,
        vcpus,
        gic: Gicv3 { distributor: GICD, redistributors: GICR },
        timer: TIMER,
        uart: Pl011 { regs: PL011, irq: PL011_SPI, clock_hz: PL011_CLOCK_HZ },
        bootargs: bootargs.as_bytes(),
        initrd: layout.initrd.clone(),
    };
    let blob = guest_fdt::generate(&platform).map_err(|e| e.to_string())?;
    std::fs::write(out, &blob).map_err(|e| format!("{out}: {e}"))?;
    let initrd_at = layout.initrd.map_or(0, |i| i.start.0);
    println!("guest_dtb: {out}: {} bytes; initrd-addr={initrd_at:#x}", blob.len());
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guest_dtb: {e}");
            ExitCode::FAILURE
        }
    }
}
