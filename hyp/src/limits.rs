//! Boot-time limits: does the scenario fit the hypervisor's heap and page pool?
//!
//! Everything the engine allocates for a VM is bounded by the VM's RAM size, so it can be checked
//! before the first VM is built, instead of failing an allocation halfway through a run (a heap
//! allocation failure is a hypervisor panic, exit status 101). [`check`] adds up, for every VM, the
//! worst case of what the engine will hold once the guest has touched all of its RAM:
//! - heap: one amap slot per RAM page (the RAM entry's amap) and one anon per RAM page;
//! - pool: the stage-2 tables that map the whole RAM with 4 KiB pages, which are never paged out
//!   while the VM lives, plus one frame per vCPU so that faults can still make progress;
//!
//! and, once for the pool, the engine's per-frame metadata (heap). A scenario that does not fit
//! is refused with the VM and the limit that it exceeds: boot reports it as a bad scenario
//! (exit status 2).
//!
//! Heap blocks come from `talc` (`arch/heap.rs`), which adds a one-word tag to each block and
//! rounds it to a word ([`TALC_TAG`]); each array and each object is counted at the larger of
//! that and its size rounded up to a power of two — the bound this module was written against
//! (with a buddy allocator), which also covers a `Vec` that grew by doubling. Sizes are `core::mem::size_of` of the
//! engine's types where they are public; the two private per-frame arrays (`Queues::links`, two
//! `u32` a frame, and the reverse map's per-frame list, an inline entry and a `Vec`) are written
//! out below. All arithmetic saturates: a size too large to represent exceeds every limit.

use alloc::string::String;
use alloc::sync::Arc;
use core::fmt;
use core::mem::size_of;

use vm::anon::Anon;
use vm::page::{PageMeta, Queue};
use vm::pmap::Stage2;
use vm::PAGE_SIZE;

use crate::config::{Config, MAX_VMS, RAM_BASE};

/// `vm::page::Queues::links`: a `{ prev: u32, next: u32 }` per pool frame (private type).
const LINK_BYTES: u64 = 8;
/// `vm::pmap::rmap::Rmap::frames`: a `Mutex<List>` per pool frame, `List` being an inline
/// `Option<RmapEntry>` (table id, IPA, generation: 24 bytes and a tag) and a `Vec` (24 bytes);
/// 64 bytes bounds it with the lock (private type).
const RMAP_LIST_BYTES: u64 = 64;
/// Bytes a level-2 table maps (1 GiB) and a level-3 table maps (2 MiB), 4 KiB granule.
const L2_SPAN: u64 = 1 << 30;
const L3_SPAN: u64 = 2 << 20;

/// What the scenario exceeds (always the user's mistake: fewer or smaller VMs fit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitError {
    /// More VMs than there are VMIDs.
    TooManyVms { count: usize, max: usize },
    /// A VM's flattened image does not fit in its RAM.
    ImageTooBig { vm: String, image_bytes: u64, ram_bytes: u64 },
    /// The heap cannot hold the metadata of this VM and every VM before it (`need` bytes in all,
    /// page-pool metadata included).
    Heap { vm: String, need: u64, heap: u64 },
    /// The page pool cannot hold the stage-2 tables of this VM and every VM before it plus a
    /// frame per vCPU (`need` frames in all).
    Pool { vm: String, need: u64, pool: u64 },
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitError::TooManyVms { count, max } => write!(f, "{count} VMs (at most {max})"),
            LimitError::ImageTooBig { vm, image_bytes, ram_bytes } => {
                write!(f, "vm `{vm}`: image of {image_bytes} bytes does not fit in its {ram_bytes} bytes of RAM")
            }
            LimitError::Heap { vm, need, heap } => write!(
                f,
                "vm `{vm}`: the VMs up to this one need {} KiB of hypervisor heap for their RAM's metadata, \
                 the heap has {} KiB free (use less ram= or fewer VMs)",
                need.div_ceil(1024),
                heap / 1024
            ),
            LimitError::Pool { vm, need, pool } => write!(
                f,
                "vm `{vm}`: the VMs up to this one need {need} page-pool frames for stage-2 tables and vCPUs, \
                 the pool has {pool} (use a larger pool= or less ram=)"
            ),
        }
    }
}

/// What a scenario was found to need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Heap bytes, worst case.
    pub heap: u64,
    /// Pool frames, worst case.
    pub pool: u64,
}

/// Bytes `talc` adds to each block (its tag), also the word it rounds blocks to; its smallest
/// block is three words.
const TALC_TAG: u64 = 8;

/// Heap bytes of a block holding `bytes`: what talc takes for it (tag and rounding), but never
/// less than the power-of-two bound (see the module comment).
fn block(bytes: u64) -> u64 {
    let talc = bytes.saturating_add(2 * TALC_TAG - 1) & !(TALC_TAG - 1);
    let pow2 = bytes.checked_next_power_of_two().unwrap_or(u64::MAX);
    talc.max(pow2).max(3 * TALC_TAG)
}

/// Heap bytes of an array of `n` elements of `each` bytes (one block).
fn array(n: u64, each: usize) -> u64 {
    block(n.saturating_mul(each as u64))
}

/// Heap bytes of the engine's metadata for `frames` pool frames (`Uvm::new`).
pub fn pool_metadata_bytes(frames: u64) -> u64 {
    array(frames, size_of::<spin::Mutex<PageMeta>>())
        .saturating_add(array(frames, LINK_BYTES as usize))
        .saturating_add(array(frames, size_of::<Queue>()))
        .saturating_add(array(frames, RMAP_LIST_BYTES as usize))
}

/// Heap bytes a VM with `ram_bytes` of RAM may need: its amap's slots and an anon per page
/// (each anon its own `Arc` block: two counters and the `Anon`).
pub fn vm_heap_bytes(ram_bytes: u64) -> u64 {
    let pages = ram_bytes.div_ceil(PAGE_SIZE);
    let anon = block((2 * size_of::<usize>() + size_of::<Anon>()) as u64);
    array(pages, size_of::<Option<Arc<Anon>>>()).saturating_add(pages.saturating_mul(anon))
}

/// Pool frames of the stage-2 tables that map `ram_bytes` of RAM at `RAM_BASE` (1 GiB aligned)
/// with pages: the concatenated root, a level-2 table per GiB, a level-3 table per 2 MiB.
pub fn vm_table_frames(ram_bytes: u64) -> u64 {
    (Stage2::ROOT_FRAMES as u64)
        .saturating_add(ram_bytes.div_ceil(L2_SPAN))
        .saturating_add(ram_bytes.div_ceil(L3_SPAN))
}

/// Checks `config` against `heap_free` bytes of heap and `pool_frames` frames of page pool,
/// before anything is built; returns the worst-case usage.
pub fn check(config: &Config, heap_free: u64, pool_frames: u64) -> Result<Usage, LimitError> {
    if config.vms.len() > MAX_VMS {
        return Err(LimitError::TooManyVms { count: config.vms.len(), max: MAX_VMS });
    }
    let mut used = Usage { heap: pool_metadata_bytes(pool_frames), pool: 0 };
    for vc in &config.vms {
        // RAM the boot image spans, from RAM base to the end of its last segment.
        let image_bytes = vc.boot.segments.iter().map(|s| s.at.0 + s.bytes.len() as u64).max().unwrap_or(RAM_BASE) - RAM_BASE;
        if image_bytes > vc.ram_bytes {
            return Err(LimitError::ImageTooBig { vm: vc.name.clone(), image_bytes, ram_bytes: vc.ram_bytes });
        }
        used.heap = used.heap.saturating_add(vm_heap_bytes(vc.ram_bytes));
        if used.heap > heap_free {
            return Err(LimitError::Heap { vm: vc.name.clone(), need: used.heap, heap: heap_free });
        }
        used.pool = used.pool.saturating_add(vm_table_frames(vc.ram_bytes)).saturating_add(u64::from(vc.cpus));
        if used.pool > pool_frames {
            return Err(LimitError::Pool { vm: vc.name.clone(), need: used.pool, pool: pool_frames });
        }
    }
    Ok(used)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, VmConfig};
    use crate::linux_boot::{BootImage, Segment};
    use alloc::format;
    use alloc::string::ToString;
    use alloc::vec;
    use alloc::vec::Vec;
    use vm::Ipa;

    const MIB: u64 = 1 << 20;
    /// The heap and pool of a `-m 1G` machine (layout.rs: heap to RAM base + 128 MiB).
    const HEAP: u64 = 125 * MIB;
    const POOL: u64 = 229_376;

    fn vm(name: &str, ram_bytes: u64, image_bytes: usize) -> VmConfig {
        VmConfig {
            name: name.to_string(),
            path: "/g".to_string(),
            boot: BootImage { segments: vec![Segment { at: Ipa(RAM_BASE), bytes: Arc::from(vec![0u8; image_bytes]) }], entry: Ipa(RAM_BASE), x0: 0 },
            irqchip: false,
            dedup: false,
            clone: None,
            ram_bytes,
            cpus: 1,
            share: None,
        }
    }

    fn config(vms: Vec<VmConfig>) -> Config {
        Config { trace_path: Some("t".to_string()), trace_max_bytes: 1 << 20, vms, pool_limit: None, selftest: Default::default(), dedup_rate: None, account_ms: None }
    }

    #[test]
    fn the_default_scenario_fits() {
        let c = config(vec![vm("image1", 64 * MIB, 4096), vm("image2", 64 * MIB, 4096), vm("touch", 72 * MIB, 4096)]);
        let u = check(&c, HEAP, POOL).unwrap();
        assert!(u.heap < HEAP && u.pool < POOL, "{u:?}");
        // 64 MiB: 2 root + 1 L2 + 32 L3 tables, and the vCPU's frame.
        assert_eq!(vm_table_frames(64 * MIB), 35);
    }

    #[test]
    fn estimates_use_the_engines_sizes_rounded_to_power_of_two_blocks() {
        let pages = 3 * 1024 * MIB / PAGE_SIZE;
        let anon = (2 * size_of::<usize>() + size_of::<Anon>()).next_power_of_two() as u64;
        let slots = (pages * size_of::<Option<Arc<Anon>>>() as u64).next_power_of_two();
        assert_eq!(vm_heap_bytes(3 * 1024 * MIB), slots + pages * anon);
        assert!(pool_metadata_bytes(POOL) >= POOL * (size_of::<PageMeta>() as u64 + LINK_BYTES));
    }

    #[test]
    fn a_vm_whose_ram_metadata_exceeds_the_heap_is_named() {
        // A 3 GiB VM needs about 32 MiB of heap: more than a small machine's 16 MiB.
        let heap = 16 * MIB;
        let c = config(vec![vm("small", 64 * MIB, 4096), vm("huge", 3 * 1024 * MIB, 4096)]);
        let e = check(&c, heap, 4096).unwrap_err();
        assert!(matches!(&e, LimitError::Heap { vm, heap: h, .. } if vm == "huge" && *h == heap), "{e:?}");
        let text = format!("{e}");
        assert!(text.contains("`huge`") && text.contains("16384 KiB free"), "{text}");
        assert!(check(&config(vec![vm("small", 64 * MIB, 4096)]), heap, 4096).is_ok());
    }

    #[test]
    fn the_sum_of_vms_counts_not_each_alone() {
        let one = vm_heap_bytes(256 * MIB) + pool_metadata_bytes(POOL);
        assert!(one < HEAP);
        let many: Vec<_> = (0..MAX_VMS).map(|i| vm(&format!("v{i}"), 256 * MIB, 4096)).collect();
        let n_fit = (HEAP - pool_metadata_bytes(POOL)) / vm_heap_bytes(256 * MIB);
        let e = check(&config(many), HEAP, POOL).unwrap_err();
        assert_eq!(e, LimitError::Heap {
            vm: format!("v{n_fit}"),
            need: pool_metadata_bytes(POOL) + (n_fit + 1) * vm_heap_bytes(256 * MIB),
            heap: HEAP
        });
    }

    #[test]
    fn tables_and_vcpus_must_fit_the_pool() {
        let mut big = vm("tables", 1024 * MIB, 4096);
        big.cpus = 8;
        let need = vm_table_frames(1024 * MIB) + 8;
        assert_eq!(need, 2 + 1 + 512 + 8);
        assert!(check(&config(vec![big.clone()]), u64::MAX, need).is_ok());
        assert_eq!(
            check(&config(vec![big]), u64::MAX, need - 1),
            Err(LimitError::Pool { vm: "tables".to_string(), need, pool: need - 1 })
        );
    }

    #[test]
    fn an_image_bigger_than_its_ram_is_refused() {
        let e = check(&config(vec![vm("fat", MIB, (MIB + 1) as usize)]), HEAP, POOL).unwrap_err();
        assert_eq!(e, LimitError::ImageTooBig { vm: "fat".to_string(), image_bytes: MIB + 1, ram_bytes: MIB });
    }

    #[test]
    fn a_block_is_never_counted_below_what_talc_takes_for_it() {
        // Talc: the size plus a one-word tag, rounded to a word, at least three words.
        assert_eq!(block(1), 24);
        assert_eq!(block(44), 64, "an anon's Arc block: the power-of-two bound is larger");
        assert_eq!(block(512 * 1024), 512 * 1024 + 8, "an exact power of two gets its tag on top");
        assert_eq!(block(600 * 1024), 1024 * 1024);
    }

    #[test]
    fn too_many_vms_are_refused() {
        let vms: Vec<_> = (0..=MAX_VMS).map(|i| vm(&format!("v{i}"), MIB, 16)).collect();
        assert_eq!(check(&config(vms), u64::MAX, u64::MAX), Err(LimitError::TooManyVms { count: 256, max: 255 }));
    }

    #[test]
    fn overflowing_sizes_exceed_every_limit_instead_of_wrapping() {
        for ram in [1u64 << 60, u64::MAX - 1, u64::MAX] {
            assert!(vm_heap_bytes(ram) >= ram / PAGE_SIZE * 8, "{ram:#x}");
            let e = check(&config(vec![vm("wrap", ram, 16)]), HEAP, POOL).unwrap_err();
            assert!(matches!(e, LimitError::Heap { ref vm, .. } if vm == "wrap"), "{e:?}");
        }
        assert_eq!(array(u64::MAX, 8), u64::MAX);
        assert_eq!(block((1 << 63) + 1), u64::MAX);
        assert_eq!(pool_metadata_bytes(u64::MAX), u64::MAX);
        assert_eq!(vm_table_frames(u64::MAX), 2 + (u64::MAX >> 30) + 1 + (u64::MAX >> 21) + 1);
    }
}
