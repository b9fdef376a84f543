//! The device tree a Linux guest boots with, generated per VM from a typed description of its
//! virtual platform ([`GuestPlatform`]), with the `vm-fdt` writer.
//!
//! Every address, size and interrupt number comes from the input: the platform module decides
//! the VM's map, this module only spells it the way Linux's bindings expect:
//!
//! ```text
//!   / { compatible = "linux,dummy-virt"; #address-cells = <2>; #size-cells = <2>;
//!       interrupt-parent = <&gic>;
//!     memory@RAM    { device_type = "memory"; reg = <RAM base, size>; }
//!     cpus          { cpu@N { device_type = "cpu"; compatible = "arm,armv8"; reg = <N>;
//!                             enable-method = "psci"; } ... }       (MPIDR Aff0 = N)
//!     psci          { compatible = "arm,psci-1.0", "arm,psci-0.2"; method = "hvc"; }
//!     intc@GICD     { compatible = "arm,gic-v3"; interrupt-controller; #interrupt-cells = <3>;
//!                     #address-cells = <0>;
//!                     reg = <GICD, size>, <GICR, 128 KiB x vCPUs>; }  (arm,gic-v3.yaml)
//!     timer         { compatible = "arm,armv8-timer";                 (arm,arch_timer.yaml)
//!                     interrupts = <PPI sec-phys>, <PPI phys>, <PPI virt>, <PPI hyp>; }
//!     apb-pclk      { compatible = "fixed-clock"; #clock-cells = <0>; clock-frequency; }
//!     pl011@UART    { compatible = "arm,pl011", "arm,primecell"; reg; interrupts = <SPI>;
//!                     clocks = <&clk>, <&clk>; clock-names = "uartclk", "apb_pclk"; }
//!     chosen        { bootargs; stdout-path = "/pl011@UART"; linux,initrd-start/end; }
//!   }
//! ```
//!
//! The blob must then fit the 2 MiB slot [`crate::linux_image::Layout::dtb`] gives it.

use alloc::format;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use vm::Ipa;
use vm_fdt::FdtWriter;

use crate::linux_image::DTB_MAX_SIZE;

/// More vCPUs than this would need MPIDR Aff0 values of 16 and up, which an `ICC_SGI1R_EL1`
/// target list reaches only with range selectors (Linux warns and cannot send them IPIs
/// without `ICC_CTLR_EL1.RSS`).
pub const MAX_VCPUS: u32 = 16;
/// Each GICv3 redistributor is two 64 KiB frames (RD_base, SGI_base; no VLPI frames).
pub const GICR_FRAMES_SIZE: u64 = 128 << 10;

/// The binding's first interrupt cell: the interrupt's kind.
const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
/// The binding's third cell: trigger type (include/dt-bindings/interrupt-controller/irq.h).
const IRQ_TYPE_LEVEL_HIGH: u32 = 4;
const IRQ_TYPE_LEVEL_LOW: u32 = 8;
/// The GIC binding's PPI CPU mask (bits 8-15 of the third cell, one bit per CPU, 8 at most).
const PPI_CPU_MASK_SHIFT: u32 = 8;
const PPI_CPU_MASK_MAX_CPUS: u32 = 8;
/// PPIs 0-15 are INTIDs 16-31; SPIs 0-987 are INTIDs 32-1019.
const PPI_COUNT: u32 = 16;
const SPI_COUNT: u32 = 988;
/// Our own phandles (any distinct non-zero values).
const PHANDLE_GIC: u32 = 1;
const PHANDLE_CLOCK: u32 = 2;

/// A private peripheral interrupt by its PPI number (0-15; INTID = 16 + n), as bindings write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ppi(pub u32);

/// A shared peripheral interrupt by its SPI number (0-987; INTID = 32 + n), as bindings write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spi(pub u32);

/// The VM's GICv3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gicv3 {
    /// The distributor's registers.
    pub distributor: Range<Ipa>,
    /// Base of the redistributors, one per vCPU in vCPU order, [`GICR_FRAMES_SIZE`] apart.
    pub redistributors: Ipa,
}

/// The generic timer's interrupts, in the order of the `arm,armv8-timer` binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerPpis {
    pub secure_phys: Ppi,
    pub phys: Ppi,
    pub virt: Ppi,
    pub hyp: Ppi,
}

/// The VM's PL011 UART (its console).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pl011 {
    pub regs: Range<Ipa>,
    pub irq: Spi,
    /// Frequency of its `uartclk` and `apb_pclk` (one fixed clock).
    pub clock_hz: u32,
}

/// Everything the guest's device tree says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestPlatform<'a> {
    /// The VM's RAM (one bank).
    pub ram: Range<Ipa>,
    /// vCPUs 0..vcpus; vCPU N has MPIDR Aff0 = N.
    pub vcpus: u32,
    pub gic: Gicv3,
    pub timer: TimerPpis,
    pub uart: Pl011,
    /// The kernel command line, as given (spaces, quotes: any byte but NUL).
    pub bootargs: &'a [u8],
    /// Where the initrd was loaded, if there is one.
    pub initrd: Option<Range<Ipa>>,
}

/// Why no device tree was made (the VM's description is at fault, or the writer refused).
#[derive(Debug, PartialEq, Eq)]
pub enum FdtError {
    /// Not 1..=[`MAX_VCPUS`] vCPUs.
    VcpuCount { vcpus: u32 },
    /// The RAM range is empty.
    EmptyRam,
    /// A device's register range is empty, or its redistributors overflow the address space.
    BadRegs { device: &'static str },
    /// A PPI number above 15.
    Ppi(Ppi),
    /// An SPI number above 987.
    Spi(Spi),
    /// The command line holds a NUL byte at `at` (a device-tree string cannot).
    NulInBootargs { at: usize },
    /// The initrd's range is inverted or not inside RAM.
    InitrdOutsideRam,
    /// The blob is `len` bytes, more than the 2 MiB booting.rst allows.
    TooBig { len: usize },
    /// The `vm-fdt` writer refused (a bug here: every name is ours).
    Writer(vm_fdt::Error),
}

impl fmt::Display for FdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FdtError::VcpuCount { vcpus } => write!(f, "{vcpus} vCPUs: a Linux guest has 1 to {MAX_VCPUS}"),
            FdtError::EmptyRam => write!(f, "the VM has no RAM"),
            FdtError::BadRegs { device } => write!(f, "the {device}'s register range is empty or overflows"),
            FdtError::Ppi(Ppi(n)) => write!(f, "PPI {n} does not exist (0 to 15)"),
            FdtError::Spi(Spi(n)) => write!(f, "SPI {n} does not exist (0 to 987)"),
            FdtError::NulInBootargs { at } => write!(f, "the kernel command line has a NUL byte at {at}"),
            FdtError::InitrdOutsideRam => write!(f, "the initrd is not inside the VM's RAM"),
            FdtError::TooBig { len } => write!(f, "the device tree is {len} bytes, more than 2 MiB"),
            FdtError::Writer(e) => write!(f, "device tree writer: {e}"),
        }
    }
}

impl From<vm_fdt::Error> for FdtError {
    fn from(e: vm_fdt::Error) -> Self {
        FdtError::Writer(e)
    }
}

/// `[base, size]` of a range, or `device`'s error when it is empty.
fn reg(r: &Range<Ipa>, device: &'static str) -> Result<[u64; 2], FdtError> {
    if r.end <= r.start {
        return Err(FdtError::BadRegs { device });
    }
    Ok([r.start.0, r.end.0 - r.start.0])
}

fn ppi_cells(ppi: Ppi, vcpus: u32) -> Result<[u32; 3], FdtError> {
    if ppi.0 >= PPI_COUNT {
        return Err(FdtError::Ppi(ppi));
    }
    let mask = (1u32 << vcpus.min(PPI_CPU_MASK_MAX_CPUS)) - 1;
    Ok([GIC_PPI, ppi.0, mask << PPI_CPU_MASK_SHIFT | IRQ_TYPE_LEVEL_LOW])
}

/// Checks `p` and writes its device tree blob.
pub fn generate(p: &GuestPlatform<'_>) -> Result<Vec<u8>, FdtError> {
    if p.vcpus == 0 || p.vcpus > MAX_VCPUS {
        return Err(FdtError::VcpuCount { vcpus: p.vcpus });
    }
    if p.ram.end <= p.ram.start {
        return Err(FdtError::EmptyRam);
    }
    let ram = reg(&p.ram, "RAM")?;
    let gicd = reg(&p.gic.distributor, "GIC distributor")?;
    let gicr_size = GICR_FRAMES_SIZE * u64::from(p.vcpus);
    let gicr_end = p.gic.redistributors.checked_add(gicr_size).ok_or(FdtError::BadRegs { device: "GIC redistributors" })?;
    let gicr = reg(&(p.gic.redistributors..gicr_end), "GIC redistributors")?;
    let uart = reg(&p.uart.regs, "PL011")?;
    if p.uart.irq.0 >= SPI_COUNT {
        return Err(FdtError::Spi(p.uart.irq));
    }
    let t = &p.timer;
    let mut timer = Vec::with_capacity(12);
    for ppi in [t.secure_phys, t.phys, t.virt, t.hyp] {
        timer.extend_from_slice(&ppi_cells(ppi, p.vcpus)?);
    }
    if let Some(at) = p.bootargs.iter().position(|&b| b == 0) {
        return Err(FdtError::NulInBootargs { at });
    }
    if let Some(i) = &p.initrd {
        if i.end < i.start || i.start < p.ram.start || i.end > p.ram.end {
            return Err(FdtError::InitrdOutsideRam);
        }
    }

    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_string("compatible", "linux,dummy-virt")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_u32("interrupt-parent", PHANDLE_GIC)?;

    let memory = fdt.begin_node(&format!("memory@{:x}", ram[0]))?;
    fdt.property_string("device_type", "memory")?;
    fdt.property_array_u64("reg", &ram)?;
    fdt.end_node(memory)?;

    let cpus = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 1)?;
    fdt.property_u32("#size-cells", 0)?;
    for n in 0..p.vcpus {
        let cpu = fdt.begin_node(&format!("cpu@{n:x}"))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_string("compatible", "arm,armv8")?;
        fdt.property_u32("reg", n)?;
        fdt.property_string("enable-method", "psci")?;
        fdt.end_node(cpu)?;
    }
    fdt.end_node(cpus)?;

    let psci = fdt.begin_node("psci")?;
    fdt.property("compatible", b"arm,psci-1.0\0arm,psci-0.2\0")?;
    fdt.property_string("method", "hvc")?;
    fdt.end_node(psci)?;

    let gic = fdt.begin_node(&format!("intc@{:x}", gicd[0]))?;
    fdt.property_string("compatible", "arm,gic-v3")?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_u32("#interrupt-cells", 3)?;
    // No children (no ITS): dtc wants an interrupt provider to say so.
    fdt.property_u32("#address-cells", 0)?;
    fdt.property_array_u64("reg", &[gicd[0], gicd[1], gicr[0], gicr[1]])?;
    fdt.property_phandle(PHANDLE_GIC)?;
    fdt.end_node(gic)?;

    let timer_node = fdt.begin_node("timer")?;
    fdt.property_string("compatible", "arm,armv8-timer")?;
    fdt.property_array_u32("interrupts", &timer)?;
    fdt.end_node(timer_node)?;

    let clock = fdt.begin_node("apb-pclk")?;
    fdt.property_string("compatible", "fixed-clock")?;
    fdt.property_u32("#clock-cells", 0)?;
    fdt.property_u32("clock-frequency", p.uart.clock_hz)?;
    fdt.property_phandle(PHANDLE_CLOCK)?;
    fdt.end_node(clock)?;

    let uart_path = format!("/pl011@{:x}", uart[0]);
    let pl011 = fdt.begin_node(&uart_path[1..])?;
    fdt.property("compatible", b"arm,pl011\0arm,primecell\0")?;
    fdt.property_array_u64("reg", &uart)?;
    fdt.property_array_u32("interrupts", &[GIC_SPI, p.uart.irq.0, IRQ_TYPE_LEVEL_HIGH])?;
    fdt.property_array_u32("clocks", &[PHANDLE_CLOCK, PHANDLE_CLOCK])?;
    fdt.property("clock-names", b"uartclk\0apb_pclk\0")?;
    fdt.end_node(pl011)?;

    let chosen = fdt.begin_node("chosen")?;
    let mut bootargs = Vec::with_capacity(p.bootargs.len() + 1);
    bootargs.extend_from_slice(p.bootargs);
    bootargs.push(0);
    fdt.property("bootargs", &bootargs)?;
    fdt.property_string("stdout-path", &uart_path)?;
    if let Some(i) = &p.initrd {
        fdt.property_u64("linux,initrd-start", i.start.0)?;
        fdt.property_u64("linux,initrd-end", i.end.0)?;
    }
    fdt.end_node(chosen)?;

    fdt.end_node(root)?;
    let blob = fdt.finish()?;
    if blob.len() as u64 > DTB_MAX_SIZE {
        return Err(FdtError::TooBig { len: blob.len() });
    }
    Ok(blob)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fdt::node::FdtNode;
    use fdt::Fdt;
    use std::vec;

    const MIB: u64 = 1 << 20;

    /// QEMU virt's map (DESIGN.md section 7) as a platform module would give it.
    fn platform(vcpus: u32, bootargs: &[u8], initrd: Option<Range<Ipa>>) -> GuestPlatform<'_> {
        GuestPlatform {
            ram: Ipa(0x4000_0000)..Ipa(0x4000_0000 + 256 * MIB),
            vcpus,
            gic: Gicv3 { distributor: Ipa(0x0800_0000)..Ipa(0x0801_0000), redistributors: Ipa(0x080a_0000) },
            timer: TimerPpis { secure_phys: Ppi(13), phys: Ppi(14), virt: Ppi(11), hyp: Ppi(10) },
            uart: Pl011 { regs: Ipa(0x0900_0000)..Ipa(0x0900_1000), irq: Spi(1), clock_hz: 24_000_000 },
            bootargs,
            initrd,
        }
    }

    fn node<'b, 'a>(fdt: &'b Fdt<'a>, path: &str) -> FdtNode<'b, 'a> {
        fdt.find_node(path).unwrap_or_else(|| panic!("no node {path}"))
    }

    fn raw<'a>(n: FdtNode<'_, 'a>, prop: &str) -> &'a [u8] {
        n.property(prop).unwrap_or_else(|| panic!("no property {prop} in {}", n.name)).value
    }

    fn cells(n: FdtNode<'_, '_>, prop: &str) -> Vec<u32> {
        raw(n, prop).chunks(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect()
    }

    fn cells64(n: FdtNode<'_, '_>, prop: &str) -> Vec<u64> {
        raw(n, prop).chunks(8).map(|c| u64::from_be_bytes(c.try_into().unwrap())).collect()
    }

    #[test]
    fn root_memory_and_cpus() {
        let blob = generate(&platform(4, b"console=ttyAMA0", None)).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        let root = node(&fdt, "/");
        assert_eq!(raw(root, "compatible"), b"linux,dummy-virt\0");
        assert_eq!((cells(root, "#address-cells"), cells(root, "#size-cells")), (vec![2], vec![2]));
        let mem = node(&fdt, "/memory@40000000");
        assert_eq!(raw(mem, "device_type"), b"memory\0");
        assert_eq!(cells64(mem, "reg"), [0x4000_0000, 256 * MIB]);
        let cpus = node(&fdt, "/cpus");
        assert_eq!((cells(cpus, "#address-cells"), cells(cpus, "#size-cells")), (vec![1], vec![0]));
        let all: Vec<_> = cpus.children().collect();
        assert_eq!(all.len(), 4);
        for (n, cpu) in all.into_iter().enumerate() {
            assert_eq!(cpu.name, format!("cpu@{n}"));
            assert_eq!(cells(cpu, "reg"), [n as u32]);
            assert_eq!(raw(cpu, "device_type"), b"cpu\0");
            assert_eq!(raw(cpu, "compatible"), b"arm,armv8\0");
            assert_eq!(raw(cpu, "enable-method"), b"psci\0");
        }
    }

    #[test]
    fn the_hypervisors_own_dtb_reader_agrees() {
        let blob = generate(&platform(3, b"", None)).unwrap();
        let p = crate::dtb::parse(&blob).unwrap();
        assert_eq!(p.ram, 0x4000_0000..0x4000_0000 + 256 * MIB);
        assert_eq!(&p.cpu_mpidrs[..p.cpu_count], &[0, 1, 2]);
    }

    #[test]
    fn psci_over_hvc() {
        let blob = generate(&platform(1, b"", None)).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        let psci = node(&fdt, "/psci");
        assert_eq!(raw(psci, "compatible"), b"arm,psci-1.0\0arm,psci-0.2\0");
        assert_eq!(raw(psci, "method"), b"hvc\0");
    }

    #[test]
    fn gicv3_with_one_redistributor_per_vcpu() {
        for vcpus in [1, 2, 16] {
            let blob = generate(&platform(vcpus, b"", None)).unwrap();
            let fdt = Fdt::new(&blob).unwrap();
            let gic = node(&fdt, "/intc@8000000");
            assert_eq!(raw(gic, "compatible"), b"arm,gic-v3\0");
            assert_eq!(raw(gic, "interrupt-controller"), b"");
            assert_eq!(cells(gic, "#interrupt-cells"), [3]);
            assert_eq!(cells(gic, "#address-cells"), [0]);
            assert_eq!(cells64(gic, "reg"), [0x0800_0000, 0x1_0000, 0x080a_0000, 0x2_0000 * u64::from(vcpus)]);
            assert_eq!(cells(node(&fdt, "/"), "interrupt-parent"), cells(gic, "phandle"));
        }
    }

    #[test]
    fn timer_ppis_in_binding_order_with_the_cpu_mask() {
        for (vcpus, flags) in [(4, 0xf08), (2, 0x308), (1, 0x108), (16, 0xff08)] {
            let blob = generate(&platform(vcpus, b"", None)).unwrap();
            let fdt = Fdt::new(&blob).unwrap();
            let timer = node(&fdt, "/timer");
            assert_eq!(raw(timer, "compatible"), b"arm,armv8-timer\0");
            assert_eq!(cells(timer, "interrupts"), [1, 13, flags, 1, 14, flags, 1, 11, flags, 1, 10, flags]);
        }
    }

    #[test]
    fn pl011_with_its_clock_and_spi() {
        let blob = generate(&platform(2, b"", None)).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        let uart = node(&fdt, "/pl011@9000000");
        assert_eq!(raw(uart, "compatible"), b"arm,pl011\0arm,primecell\0");
        assert_eq!(cells64(uart, "reg"), [0x0900_0000, 0x1000]);
        assert_eq!(cells(uart, "interrupts"), [0, 1, 4]);
        assert_eq!(raw(uart, "clock-names"), b"uartclk\0apb_pclk\0");
        let clk = node(&fdt, "/apb-pclk");
        assert_eq!(raw(clk, "compatible"), b"fixed-clock\0");
        assert_eq!(cells(clk, "#clock-cells"), [0]);
        assert_eq!(cells(clk, "clock-frequency"), [24_000_000]);
        let phandle = cells(clk, "phandle")[0];
        assert_eq!(cells(uart, "clocks"), [phandle, phandle]);
        assert_ne!(phandle, cells(node(&fdt, "/intc@8000000"), "phandle")[0]);
    }

    #[test]
    fn chosen_keeps_bootargs_byte_for_byte_and_names_the_initrd() {
        let args: &[u8] = b"console=ttyAMA0  uvmhyp.work=tmpfs:64,anon:64 name=\"two words\" q='x' \xff";
        let initrd = Ipa(0x4240_0000)..Ipa(0x4253_3456);
        let blob = generate(&platform(2, args, Some(initrd))).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        let chosen = node(&fdt, "/chosen");
        assert_eq!(raw(chosen, "bootargs"), [args, b"\0"].concat());
        assert_eq!(raw(chosen, "stdout-path"), b"/pl011@9000000\0");
        assert_eq!(fdt.chosen().stdout().map(|n| n.name), Some("pl011@9000000"));
        assert_eq!(cells64(chosen, "linux,initrd-start"), [0x4240_0000]);
        assert_eq!(cells64(chosen, "linux,initrd-end"), [0x4253_3456]);
    }

    #[test]
    fn no_initrd_no_initrd_properties() {
        let blob = generate(&platform(1, b"quiet", None)).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        let chosen = node(&fdt, "/chosen");
        assert!(chosen.property("linux,initrd-start").is_none());
        assert!(chosen.property("linux,initrd-end").is_none());
        assert_eq!(fdt.chosen().bootargs(), Some("quiet"));
    }

    #[test]
    fn a_long_command_line_fits_until_2mib() {
        let long = vec![b'x'; 64 << 10];
        let blob = generate(&platform(1, &long, None)).unwrap();
        assert_eq!(raw(node(&Fdt::new(&blob).unwrap(), "/chosen"), "bootargs").len(), (64 << 10) + 1);
        let huge = vec![b'x'; 2 << 20];
        assert!(matches!(generate(&platform(1, &huge, None)), Err(FdtError::TooBig { len }) if len > 2 << 20));
    }

    #[test]
    fn bad_descriptions_are_refused() {
        assert_eq!(generate(&platform(0, b"", None)), Err(FdtError::VcpuCount { vcpus: 0 }));
        assert_eq!(generate(&platform(17, b"", None)), Err(FdtError::VcpuCount { vcpus: 17 }));
        assert_eq!(generate(&platform(1, b"a\0b", None)), Err(FdtError::NulInBootargs { at: 1 }));
        let outside = Ipa(0x3fff_f000)..Ipa(0x4000_1000);
        assert_eq!(generate(&platform(1, b"", Some(outside))), Err(FdtError::InitrdOutsideRam));
        let past_end = Ipa(0x4000_0000 + 256 * MIB - 4096)..Ipa(0x4000_0000 + 256 * MIB + 1);
        assert_eq!(generate(&platform(1, b"", Some(past_end))), Err(FdtError::InitrdOutsideRam));
        let inverted = Ipa(0x4100_0000)..Ipa(0x4000_0000);
        assert_eq!(generate(&platform(1, b"", Some(inverted))), Err(FdtError::InitrdOutsideRam));

        let mut p = platform(1, b"", None);
        p.ram = Ipa(0x4000_0000)..Ipa(0x4000_0000);
        assert_eq!(generate(&p), Err(FdtError::EmptyRam));
        let mut p = platform(1, b"", None);
        p.timer.hyp = Ppi(16);
        assert_eq!(generate(&p), Err(FdtError::Ppi(Ppi(16))));
        let mut p = platform(1, b"", None);
        p.uart.irq = Spi(988);
        assert_eq!(generate(&p), Err(FdtError::Spi(Spi(988))));
        let mut p = platform(1, b"", None);
        p.uart.regs = Ipa(0x0900_0000)..Ipa(0x0900_0000);
        assert_eq!(generate(&p), Err(FdtError::BadRegs { device: "PL011" }));
        let mut p = platform(2, b"", None);
        p.gic.redistributors = Ipa(u64::MAX - 0x1_0000);
        assert_eq!(generate(&p), Err(FdtError::BadRegs { device: "GIC redistributors" }));
    }
}
