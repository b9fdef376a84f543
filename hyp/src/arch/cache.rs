//! Cache maintenance for guest memory the hypervisor reads or writes on a guest's behalf.
//!
//! The hypervisor reaches every frame through its identity map, Normal Write-Back cacheable, but a
//! guest does not necessarily look through the cache:
//! - with its stage 1 off (SCTLR_EL1.M = 0, and HCR_EL2.DC = 0) its data accesses are
//!   Device-nGnRnE and its fetches Non-cacheable (Arm ARM D8.2.10), so they go to the point of
//!   coherency (DRAM) whatever the caches hold; a guest may also map its memory Non-cacheable;
//! - the two aliases then have *mismatched memory attributes* (Arm ARM B2.16, "Mismatched memory
//!   attributes"; the stage-2 MemAttr we write is Normal WB, `vm::pmap::desc`, so the combined
//!   attribute is the guest's stage-1 one): coherency between a cacheable and a Non-cacheable
//!   access to one location is only guaranteed with cache maintenance by VA to the PoC between
//!   them (the B2.16 rule: clean after writing through the cacheable alias before the
//!   Non-cacheable one reads; invalidate before reading through the cacheable alias what the
//!   Non-cacheable one wrote);
//! - the instruction cache is not coherent with data stores (B2.4.4): a frame that held other
//!   code may still be in the I-cache.
//!
//! Hence two operations, both called by `physmem.rs`, which the engine (safe, host-tested code)
//! goes through for every byte it moves, so every path (zero fill, copy-on-write copy, image
//! fill, hypercall writes, and later swap-out and dedup compares) is covered:
//! - after the hypervisor writes a frame: [`sync_for_guest`], clean to the PoC (`DC CVAC`) and
//!   I-cache invalidation, so an uncached guest read or fetch sees the new bytes;
//! - before the hypervisor reads a frame a guest may have written uncached: [`sync_from_guest`],
//!   clean and invalidate to the PoC (`DC CIVAC`), so the read misses and fetches DRAM instead of
//!   a stale line (one our own earlier fill left, or a speculative fill). Clean *and* invalidate,
//!   not `DC IVAC`: if the guest's last write went through its cache, the dirty line is the
//!   newest data and an invalidate alone would discard it; a clean line is simply dropped.
//!
//! KVM does the same (arch/arm64/kvm/mmu.c): without FEAT_S2FWB it cleans and invalidates a page
//! to the PoC before mapping it at stage 2 (`clean_dcache_guest_page`, `__clean_dcache_guest_page`
//! → `kvm_flush_dcache_to_poc`), and flushes the guest's stage-2 range when it turns its caches
//! on or off (set/way trapping, `kvm_toggle_cache`). With FEAT_S2FWB (HCR_EL2.FWB = 1) stage 2
//! can force Write-Back whatever the guest's stage 1 says, the aliases no longer mismatch and
//! KVM skips this; uvmhyp does not set HCR_EL2.FWB and writes the non-FWB MemAttr encoding, so
//! it always maintains.
//!
//! QEMU does not model caches, so none of this changes what a run under QEMU shows; the line
//! ranges are computed by `hyp::cacheline` and host-tested there. Setting HCR_EL2.DC while a
//! vCPU's MMU is off was the alternative; it covers neither a guest that maps its memory
//! Non-cacheable itself nor the I-cache.

use core::arch::asm;

use hyp::cacheline::{dminline_bytes, iminline_bytes, line_span, CTR_EL0, DCZID_EL0};

/// CTR_EL0 (not in `aarch64-cpu` 11).
fn ctr_el0() -> u64 {
    let v: u64;
    // SAFETY: reading CTR_EL0 has no side effect.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// A guest's data-cache set/way operation (trapped by HCR_EL2.TSW), executed on this CPU as
/// clean and invalidate: `set_way` is the guest's operand (level, set and way of one line).
pub fn clean_invalidate_set_way(set_way: u64) {
    // SAFETY: DC CISW writes a line back before invalidating it: no data is lost, whatever line
    // the operand selects.
    unsafe { asm!("dc cisw, {}", "dsb ish", in(reg) set_way, options(nostack, preserves_flags)) };
}

/// DCZID_EL0 (not in `aarch64-cpu` 11).
fn dczid_el0() -> u64 {
    let v: u64;
    // SAFETY: reading DCZID_EL0 has no side effect.
    unsafe { asm!("mrs {}, dczid_el0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// The cache geometry the maintenance loops need, read from CTR_EL0 (a few instructions: cheaper
/// than a cached copy that would need synchronisation).
#[derive(Clone, Copy)]
struct Lines {
    /// Smallest D-cache line, bytes.
    d: u64,
    /// Smallest I-cache line, bytes.
    i: u64,
    /// No I-cache invalidation is needed for instruction-to-data coherence (CTR_EL0.DIC).
    dic: bool,
    /// PIPT I-cache: invalidating by PA-equal VA reaches every alias.
    pipt: bool,
}

impl Lines {
    fn read() -> Lines {
        let ctr = ctr_el0();
        Lines {
            d: dminline_bytes(ctr),
            i: iminline_bytes(ctr),
            dic: CTR_EL0::DIC.is_set(ctr),
            pipt: CTR_EL0::L1Ip::PIPT.matches_all(ctr),
        }
    }
}

/// Runs the cache instruction `$op` (e.g. `"dc cvac"`) on every `$step`-byte line of
/// `[$start, $end)`; `$start` is line aligned and `$start < $end`. Four lines an iteration when
/// the length is a multiple of four lines (every whole frame: lines are at most 2 KiB).
macro_rules! each_line {
    ($op:literal, $start:expr, $end:expr, $step:expr) => {{
        let (start, end, step): (u64, u64, u64) = ($start, $end, $step);
        debug_assert!(start < end && start.is_multiple_of(step));
        if (end - start).is_multiple_of(4 * step) {
            // SAFETY: the cache operation only moves or discards copies of identity-mapped RAM
            // (the caller's range); it never changes what memory holds.
            unsafe {
                asm!(
                    "2:",
                    concat!($op, ", {a}"), "add {a}, {a}, {s}",
                    concat!($op, ", {a}"), "add {a}, {a}, {s}",
                    concat!($op, ", {a}"), "add {a}, {a}, {s}",
                    concat!($op, ", {a}"), "add {a}, {a}, {s}",
                    "cmp {a}, {e}",
                    "b.lo 2b",
                    a = inout(reg) start => _, s = in(reg) step, e = in(reg) end,
                    options(nostack),
                )
            }
        } else {
            // SAFETY: as above.
            unsafe {
                asm!(
                    "2:",
                    concat!($op, ", {a}"), "add {a}, {a}, {s}",
                    "cmp {a}, {e}",
                    "b.lo 2b",
                    a = inout(reg) start => _, s = in(reg) step, e = in(reg) end,
                    options(nostack),
                )
            }
        }
    }};
}

/// `DSB ISH`.
fn dsb_ish() {
    // SAFETY: a barrier has no memory-safety effect.
    unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
}

/// The I-cache half of [`sync_for_guest`], after the D-cache clean of `[start, end)` completed
/// (`DSB ISH`): invalidate the range to the PoU on every CPU, then `DSB ISH; ISB`.
fn invalidate_icache(start: u64, end: u64, lines: Lines) {
    if lines.dic {
        return;
    }
    if lines.pipt {
        let Some(span) = line_span(start, end - start, lines.i) else { return };
        each_line!("ic ivau", span.start, span.end, lines.i);
    } else {
        // A VIPT I-cache may hold the frame under other virtual indexes (the guest's VAs).
        // SAFETY: IC IALLUIS only discards I-cache lines.
        unsafe { asm!("ic ialluis", options(nostack, preserves_flags)) };
    }
    // SAFETY: barriers have no memory-safety effect.
    unsafe { asm!("dsb ish", "isb", options(nostack, preserves_flags)) };
}

/// Make `[start, start + len)` (identity-mapped RAM the hypervisor just wrote) visible to a
/// guest that reads it uncached or executes it: clean to the PoC, invalidate the I-cache.
pub fn sync_for_guest(start: u64, len: usize) {
    let lines = Lines::read();
    let Some(span) = line_span(start, len as u64, lines.d) else { return };
    each_line!("dc cvac", span.start, span.end, lines.d);
    dsb_ish();
    invalidate_icache(start, span.end, lines);
}

/// Make a following cacheable read of `[start, start + len)` (identity-mapped RAM a guest may
/// have written uncached) see the point of coherency: clean and invalidate to the PoC, then
/// `DSB ISH` so the maintenance completes before the caller's loads.
pub fn sync_from_guest(start: u64, len: usize) {
    let lines = Lines::read();
    let Some(span) = line_span(start, len as u64, lines.d) else { return };
    each_line!("dc civac", span.start, span.end, lines.d);
    dsb_ish();
}

/// Zero the 4 KiB frame at `frame` (identity-mapped RAM the caller owns) and make it visible
/// to the guest as [`sync_for_guest`] does. With `DC ZVA` allowed (DCZID_EL0.DZP = 0) each block
/// is zeroed by one instruction, and when its block is the D-cache line the clean of that line
/// follows in the same loop; otherwise 16-byte stores of zero.
pub fn zero_frame_for_guest(frame: u64) {
    const FRAME: u64 = 4096;
    debug_assert!(frame.is_multiple_of(FRAME));
    let lines = Lines::read();
    let dczid = dczid_el0();
    let zva = 4u64 << DCZID_EL0::BS.read(dczid);
    let end = frame + FRAME;
    if DCZID_EL0::DZP.is_set(dczid) || zva > FRAME {
        // SAFETY: 16-byte aligned stores inside the caller's frame.
        unsafe {
            asm!(
                "2:",
                "stp xzr, xzr, [{a}], #16",
                "stp xzr, xzr, [{a}], #16",
                "stp xzr, xzr, [{a}], #16",
                "stp xzr, xzr, [{a}], #16",
                "cmp {a}, {e}",
                "b.lo 2b",
                a = inout(reg) frame => _, e = in(reg) end,
                options(nostack),
            )
        };
        each_line!("dc cvac", frame, end, lines.d);
    } else if zva == lines.d && FRAME.is_multiple_of(4 * zva) {
        // SAFETY: DC ZVA zeroes one aligned block of the caller's frame (Normal memory, EL2 may
        // use it: SCTLR_EL1.DZE only governs EL0); DC CVAC then cleans that same line.
        unsafe {
            asm!(
                "2:",
                "dc zva, {a}", "dc cvac, {a}", "add {a}, {a}, {s}",
                "dc zva, {a}", "dc cvac, {a}", "add {a}, {a}, {s}",
                "dc zva, {a}", "dc cvac, {a}", "add {a}, {a}, {s}",
                "dc zva, {a}", "dc cvac, {a}", "add {a}, {a}, {s}",
                "cmp {a}, {e}",
                "b.lo 2b",
                a = inout(reg) frame => _, s = in(reg) zva, e = in(reg) end,
                options(nostack),
            )
        };
    } else {
        each_line!("dc zva", frame, end, zva);
        each_line!("dc cvac", frame, end, lines.d);
    }
    dsb_ish();
    invalidate_icache(frame, end, lines);
}
