//! `image`: the image object and copy-on-write.
//!
//! 1. Checksums a 16 KiB table in `.rodata` (4 pages of the shared image object: case 2A reads)
//!    against the value computed at build time.
//! 2. Reads a `static` in `.data` that must still hold its initial value: another VM running the
//!    same image wrote its own copy; seeing that write here means the shared object was modified.
//! 3. Writes the VM id into it (the page is promoted: case 2B copy), yields so the other VM runs,
//!    and reads it back; checks `flt_prcopy` >= 1.
//! 4. With FEAT_HAFDBS (`-cpu max`): walks through a level-1 table in `.data`, still read-only at
//!    stage 2, whose RAM block has its Access flag clear, with TCR_EL1.HA set. The walker's own
//!    write of the flag faults at stage 2 (S1PTW, WnR = 0) and must be resolved as a write (a
//!    copy), after which the table's descriptor has AF set; taken as a read it refaults forever.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};
use guest::hvc::{self, Counter};
use guest::{check, println};

guest::entry!(main);

const TABLE_WORDS: usize = 4096;

const fn table_word(i: usize) -> u32 {
    let x = (i as u32).wrapping_mul(0x01000193) ^ 0x811C_9DC5;
    x ^ (x >> 13) ^ ((i as u32) << 7)
}

const fn make_table() -> [u32; TABLE_WORDS] {
    let mut t = [0u32; TABLE_WORDS];
    let mut i = 0;
    while i < TABLE_WORDS {
        t[i] = table_word(i);
        i += 1;
    }
    t
}

const fn checksum(t: &[u32; TABLE_WORDS]) -> u64 {
    let mut sum = 0u64;
    let mut i = 0;
    while i < TABLE_WORDS {
        sum = sum.rotate_left(5) ^ t[i] as u64;
        i += 1;
    }
    sum
}

/// 16 KiB of read-only data in the image.
static TABLE: [u32; TABLE_WORDS] = make_table();
const TABLE_SUM: u64 = checksum(&make_table());

const PRISTINE: u64 = 0x1A6E_0B1E_C7ED_A7A0;

/// In `.data` on a page of its own (the alignment keeps it off the rodata's pages).
#[repr(C, align(4096))]
struct CowPage(AtomicU64);
static COW: CowPage = CowPage(AtomicU64::new(PRISTINE));

/// A level-1 table in `.data` on a page of its own: RAM without its Access flag (step 4).
#[repr(C, align(4096))]
struct WalkTable([AtomicU64; 512]);
static WALK_L1: WalkTable = WalkTable(walk_table());

const fn walk_table() -> [AtomicU64; 512] {
    let mut t = [const { AtomicU64::new(0) }; 512];
    t[1] = AtomicU64::new(guest::mmu::RAM_BLOCK_NO_AF);
    t
}

/// Step 4; returns false when the CPU has no hardware Access flag.
fn walker_sets_access_flag() -> bool {
    if !guest::mmu::has_hardware_access_flag() {
        return false;
    }
    let table = &WALK_L1 as *const WalkTable as u64;
    let before = WALK_L1.0[1].load(Ordering::SeqCst);
    let copies = hvc::counter(Counter::FltPrcopy);
    check!(before & guest::mmu::AF == 0, 6, "walk table descriptor {:#x} has AF before any walk", before);
    // SAFETY: WALK_L1 maps RAM as the identity map does, Access flag apart; TABLE is in the
    // image, in RAM.
    let v = unsafe { guest::mmu::load_with_table(table, guest::mmu::TCR_HA, &TABLE as *const _ as u64) };
    check!(v as u32 == TABLE[0], 7, "load through the walk table read {:#x}, expected {:#x}", v, TABLE[0]);
    let after = WALK_L1.0[1].load(Ordering::SeqCst);
    check!(after & guest::mmu::AF != 0, 8, "the walker did not set AF: descriptor {:#x}", after);
    let copied = hvc::counter(Counter::FltPrcopy) - copies;
    check!(copied >= 1, 9, "flt_prcopy rose by {}: the walker's write was not a copy-on-write", copied);
    true
}

fn main(_cpu: usize, _arg: u64) -> u32 {
    guest::mmu::enable();
    let info = hvc::info();
    println!("image: vm {} image {} bytes, table at {:#x}", info.vm, info.image_bytes, TABLE.as_ptr() as u64);

    let mut sum = 0u64;
    for word in TABLE.iter() {
        // SAFETY: an element of a static; volatile so the sum is computed from memory.
        let w = unsafe { core::ptr::read_volatile(word) };
        sum = sum.rotate_left(5) ^ w as u64;
    }
    check!(sum == TABLE_SUM, 2, "rodata checksum {:#x}, expected {:#x}", sum, TABLE_SUM);

    let seen = COW.0.load(Ordering::SeqCst);
    check!(
        seen == PRISTINE,
        3,
        "data at {:#x} is {:#x}, not its initial {:#x}: the shared image was modified",
        &COW as *const CowPage as u64,
        seen,
        PRISTINE
    );
    let mine = PRISTINE ^ (info.vm << 32) ^ 0xC0;
    COW.0.store(mine, Ordering::SeqCst);
    for _ in 0..8 {
        hvc::yield_now();
    }
    let back = COW.0.load(Ordering::SeqCst);
    check!(back == mine, 4, "data reads {:#x} after writing {:#x}: copy not private", back, mine);

    let prcopy = hvc::counter(Counter::FltPrcopy);
    println!(
        "image: rodata sum ok, data private; faults {} flt_obj {} flt_prcopy {}",
        hvc::counter(Counter::Faults),
        hvc::counter(Counter::FltObj),
        prcopy
    );
    check!(prcopy >= 1, 5, "flt_prcopy is {}, the write to .data was not a copy-on-write promote", prcopy);
    if walker_sets_access_flag() {
        println!("image: the walker set AF in a table page copied for it");
    } else {
        println!("image: no FEAT_HAFDBS on this CPU: walker Access-flag check not run");
    }
    println!("image: ok");
    0
}
