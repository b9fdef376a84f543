//! Host check of the Linux boot pieces on a real kernel (used by `make linux-direct`): builds the
//! boot image the hypervisor would (`hyp::linux_boot`: the `Image` placed by `linux_image`, the
//! device tree `guest_fdt` makes for uvmhyp's platform, the initrd where it says), writes the
//! device tree, and prints the header and where each piece goes. QEMU then boots the kernel with
//! that device tree and the initrd at that address.
//!
//! Usage: guest_dtb IMAGE INITRD OUT.dtb RAM_MIB VCPUS BOOTARGS

use std::process::ExitCode;
use std::sync::Arc;

use hyp::linux_boot;
use hyp::linux_image::ImageHeader;

fn run(args: &[String]) -> Result<(), String> {
    let [image, initrd, out, ram_mib, vcpus, bootargs] = args else {
        return Err("usage: guest_dtb IMAGE INITRD OUT.dtb RAM_MIB VCPUS BOOTARGS".into());
    };
    let kernel: Arc<[u8]> = std::fs::read(image).map_err(|e| format!("{image}: {e}"))?.into();
    let initrd: Arc<[u8]> = std::fs::read(initrd).map_err(|e| format!("{initrd}: {e}"))?.into();
    let ram_mib: u64 = ram_mib.parse().map_err(|_| format!("RAM_MIB {ram_mib}: not a number"))?;
    let vcpus: u32 = vcpus.parse().map_err(|_| format!("VCPUS {vcpus}: not a number"))?;

    let header = ImageHeader::parse(&kernel).map_err(|e| e.to_string())?;
    println!("guest_dtb: Image header {header:x?}");
    let boot = linux_boot::boot_image(&kernel, Some(&initrd), bootargs.as_bytes(), ram_mib << 20, vcpus).map_err(|e| e.to_string())?;
    for (what, s) in ["kernel", "dtb", "initrd"].iter().zip(&boot.segments) {
        println!("guest_dtb: {what} at {:#x}, {} bytes", s.at.0, s.bytes.len());
    }
    let [_, dtb, initrd_seg] = &boot.segments[..] else { return Err("no initrd segment".into()) };
    std::fs::write(out, &dtb.bytes[..]).map_err(|e| format!("{out}: {e}"))?;
    println!("guest_dtb: {out}: {} bytes; initrd-addr={:#x}", dtb.bytes.len(), initrd_seg.at.0);
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
