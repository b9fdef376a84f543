//! A minimal flattened-device-tree reader: just what boot needs from QEMU's DTB — the RAM range
//! (`/memory@…` `reg`) and the CPUs' MPIDRs (`/cpus/cpu@…` `reg`).
//!
//! Plain safe Rust over a byte slice (Devicetree Specification v0.4, chapter 5: header, structure
//! block tokens FDT_BEGIN_NODE/END_NODE/PROP/NOP/END, big-endian cells).

use core::ops::Range;

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;
const MAX_DEPTH: usize = 16;
/// Largest number of CPUs recorded.
pub const MAX_CPUS: usize = 8;

/// A malformed or unexpected device tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtbError {
    /// No FDT magic at the start.
    BadMagic,
    /// A field points outside the blob, or a token is unknown.
    Malformed,
    /// No memory node with a `reg`.
    NoMemory,
}

/// What boot needs from the device tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// The first RAM bank.
    pub ram: Range<u64>,
    /// MPIDR (the `reg` of each `/cpus/cpu@N`), in DTB order.
    pub cpu_mpidrs: [u64; MAX_CPUS],
    /// How many entries of `cpu_mpidrs` are valid.
    pub cpu_count: usize,
}

fn be32(b: &[u8], off: usize) -> Result<u32, DtbError> {
    let s = b.get(off..off + 4).ok_or(DtbError::Malformed)?;
    Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Reads a number made of `cells` 32-bit big-endian cells (1 or 2).
fn cells(b: &[u8], cells: u32) -> Option<u64> {
    match cells {
        1 if b.len() >= 4 => Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64),
        2 if b.len() >= 8 => {
            Some(u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        }
        _ => None,
    }
}

/// Total size of the blob according to its header (to carve it out of RAM).
pub fn total_size(blob_header: &[u8]) -> Result<usize, DtbError> {
    if be32(blob_header, 0)? != FDT_MAGIC {
        return Err(DtbError::BadMagic);
    }
    Ok(be32(blob_header, 4)? as usize)
}

/// Parses the RAM range and the CPU list.
pub fn parse(blob: &[u8]) -> Result<Platform, DtbError> {
    if be32(blob, 0)? != FDT_MAGIC {
        return Err(DtbError::BadMagic);
    }
    let off_struct = be32(blob, 8)? as usize;
    let off_strings = be32(blob, 12)? as usize;

    #[derive(Clone, Copy, Default)]
    struct Level {
        addr_cells: u32,
        size_cells: u32,
        is_memory: bool,
        is_cpus: bool,
        is_cpu: bool,
    }
    // levels[d] describes the node at depth d (0 = root); its #address-cells/#size-cells apply to
    // its children.
    let mut levels = [Level { addr_cells: 2, size_cells: 1, ..Level::default() }; MAX_DEPTH];
    let mut depth: usize = 0; // number of open nodes
    let mut ram: Option<Range<u64>> = None;
    let mut p = Platform { ram: 0..0, cpu_mpidrs: [0; MAX_CPUS], cpu_count: 0 };
    let mut off = off_struct;

    loop {
        let token = be32(blob, off)?;
        off += 4;
        match token {
            FDT_BEGIN_NODE => {
                let rest = blob.get(off..).ok_or(DtbError::Malformed)?;
                let nlen = rest.iter().position(|&c| c == 0).ok_or(DtbError::Malformed)?;
                let name = &rest[..nlen];
                off = (off + nlen + 1).next_multiple_of(4);
                if depth >= MAX_DEPTH {
                    return Err(DtbError::Malformed);
                }
                let parent = if depth > 0 { levels[depth - 1] } else { Level::default() };
                let node_base = name.split(|&c| c == b'@').next().unwrap_or(name);
                levels[depth] = Level {
                    addr_cells: 2,
                    size_cells: 1,
                    is_memory: depth == 1 && node_base == b"memory",
                    is_cpus: depth == 1 && node_base == b"cpus",
                    is_cpu: depth == 2 && parent.is_cpus && node_base == b"cpu",
                };
                depth += 1;
            }
            FDT_END_NODE => {
                depth = depth.checked_sub(1).ok_or(DtbError::Malformed)?;
            }
            FDT_PROP => {
                let len = be32(blob, off)? as usize;
                let nameoff = be32(blob, off + 4)? as usize;
                off += 8;
                let val = blob.get(off..off + len).ok_or(DtbError::Malformed)?;
                off = (off + len).next_multiple_of(4);
                let names = blob.get(off_strings + nameoff..).ok_or(DtbError::Malformed)?;
                let nlen = names.iter().position(|&c| c == 0).ok_or(DtbError::Malformed)?;
                let pname = &names[..nlen];
                if depth == 0 {
                    return Err(DtbError::Malformed);
                }
                let here = depth - 1;
                let parent = if here > 0 { levels[here - 1] } else { Level::default() };
                match pname {
                    b"#address-cells" => {
                        levels[here].addr_cells = cells(val, 1).ok_or(DtbError::Malformed)? as u32
                    }
                    b"#size-cells" => {
                        levels[here].size_cells = cells(val, 1).ok_or(DtbError::Malformed)? as u32
                    }
                    b"reg" if levels[here].is_memory && ram.is_none() => {
                        let a = parent.addr_cells as usize * 4;
                        let s = parent.size_cells as usize * 4;
                        let base = cells(val, parent.addr_cells).ok_or(DtbError::Malformed)?;
                        let size = cells(val.get(a..a + s).ok_or(DtbError::Malformed)?, parent.size_cells)
                            .ok_or(DtbError::Malformed)?;
                        ram = Some(base..base.checked_add(size).ok_or(DtbError::Malformed)?);
                    }
                    b"reg" if levels[here].is_cpu && p.cpu_count < MAX_CPUS => {
                        p.cpu_mpidrs[p.cpu_count] =
                            cells(val, parent.addr_cells).ok_or(DtbError::Malformed)?;
                        p.cpu_count += 1;
                    }
                    _ => {}
                }
            }
            FDT_NOP => {}
            FDT_END => break,
            _ => return Err(DtbError::Malformed),
        }
    }
    p.ram = ram.ok_or(DtbError::NoMemory)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU 7.2's own device tree for `-M virt,virtualization=on,gic-version=3 -cpu cortex-a72
    /// -smp 4 -m 1G` (`-machine dumpdtb=`, trimmed to its used size).
    const QEMU_VIRT: &[u8] = include_bytes!("../fixtures/qemu-virt-a72-smp4-1g.dtb");

    #[test]
    fn qemu_virt_ram_and_cpus() {
        let p = parse(QEMU_VIRT).unwrap();
        assert_eq!(p.ram, 0x4000_0000..0x8000_0000);
        assert_eq!(&p.cpu_mpidrs[..p.cpu_count], &[0, 1, 2, 3]);
        assert_eq!(total_size(QEMU_VIRT), Ok(QEMU_VIRT.len()));
    }

    #[test]
    fn corrupt_blobs_are_errors_not_panics() {
        assert_eq!(parse(b"\0\0\0\0").err(), Some(DtbError::BadMagic));
        assert_eq!(parse(&QEMU_VIRT[..64]).err(), Some(DtbError::Malformed));
        // Every truncation and every single-byte corruption of the structure block must be
        // either parsed or refused: never a panic.
        for len in (0..QEMU_VIRT.len()).step_by(97) {
            let _ = parse(&QEMU_VIRT[..len]);
        }
        let mut blob = QEMU_VIRT.to_vec();
        for i in (40..blob.len()).step_by(13) {
            let old = blob[i];
            blob[i] = 0xff;
            let _ = parse(&blob);
            blob[i] = old;
        }
    }
}
