//! `swapfail`: `overcommit`'s signature fill and two verifying passes, on a swap disk that fails
//! chosen I/O (scenarios `swapfail-read`, `swapfail-write`: QEMU's blkdebug). Every word is
//! read through an exception probe: a page whose swap copy could not be read must come back as
//! a synchronous external abort (a data abort from EL1, DFSC 0b010000) whose FAR is the very
//! word read — never as other data — and must abort again on every later read (its slot is bad,
//! the data gone). Every other page must verify. Prints `swapfail: N pages lost` (the scenario
//! checks it where it knows N) and ends `swapfail: ok`.
#![no_std]
#![no_main]

use guest::exceptions::{probe_read, DFSC_SEA, EC_DATA_ABORT_SAME_EL};
use guest::layout::{self, PAGE_SIZE};
use guest::pages::WORDS;
use guest::{check, hvc, pages, pattern, println};

guest::entry!(main);

/// Pages a run may lose (more: the disk failed more than any scenario asks for).
const MAX_LOST: usize = 64;

/// The pages found lost so far.
struct Lost {
    pages: [u64; MAX_LOST],
    n: usize,
}

impl Lost {
    fn contains(&self, page: u64) -> bool {
        self.pages[..self.n].contains(&page)
    }
}

/// Check page `page` of the region at `start`: `Ok(true)` when it verifies, `Ok(false)` when its
/// first word aborted as a lost page must, `Err(status)` otherwise.
fn check_page(start: u64, page: u64, tag: u64, what: &str) -> Result<bool, u32> {
    for w in 0..WORDS {
        let addr = start + page * PAGE_SIZE + w * (PAGE_SIZE / WORDS);
        match probe_read(addr) {
            Ok(got) if got == pattern(tag, page, w) => {}
            Ok(got) => {
                println!("FAIL: {}: {:#x}: read {:#018x}, expected {:#018x}", what, addr, got, pattern(tag, page, w));
                return Err(3);
            }
            Err(a) => {
                let sea = a.ec() == EC_DATA_ABORT_SAME_EL && a.fsc() == DFSC_SEA && a.far == addr;
                if !sea || w != 0 {
                    println!("FAIL: {}: {:#x} word {}: abort ESR {:#x} FAR {:#x}, expected an SEA there on word 0", what, addr, w, a.esr, a.far);
                    return Err(4);
                }
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Check `page` in a pass: a page lost before must abort again, a new loss is recorded.
fn visit(start: u64, page: u64, tag: u64, what: &str, lost: &mut Lost) -> Result<(), u32> {
    let ok = check_page(start, page, tag, what)?;
    match (ok, lost.contains(page)) {
        (true, false) | (false, true) => Ok(()),
        (true, true) => {
            println!("FAIL: {}: page {:#x} was lost and reads back", what, start + page * PAGE_SIZE);
            Err(5)
        }
        (false, false) if lost.n < MAX_LOST => {
            println!("swapfail: {}: SEA at {:#x}: its swap copy is lost", what, start + page * PAGE_SIZE);
            lost.pages[lost.n] = page;
            lost.n += 1;
            Ok(())
        }
        (false, false) => {
            println!("FAIL: {}: more than {} pages lost", what, MAX_LOST);
            Err(6)
        }
    }
}

fn run(start: u64, count: u64, tag: u64) -> Result<Lost, u32> {
    let mut lost = Lost { pages: [0; MAX_LOST], n: 0 };
    for p in 0..count {
        visit(start, p, tag, "ascending", &mut lost)?;
    }
    let strided = |i: u64| pages::strided(i, count);
    for i in 0..count {
        visit(start, strided(i), tag, "strided", &mut lost)?;
    }
    Ok(lost)
}

fn main(_cpu: usize, _arg: u64) -> u32 {
    guest::mmu::enable();
    let info = hvc::info();
    let start = layout::free_start();
    let end = layout::RAM_BASE + info.ram_bytes;
    check!(end > start, 2, "RAM of {} bytes is too small", info.ram_bytes);
    let count = (end - start) / PAGE_SIZE;
    // SAFETY: [start, end) is RAM beyond image, .bss and stacks.
    unsafe { pages::fill(start, 0..count, info.vm) };
    println!("swapfail: vm {} wrote {} pages", info.vm, count);
    let lost = match run(start, count, info.vm) {
        Ok(l) => l,
        Err(status) => return status,
    };
    println!("swapfail: {} pages lost", lost.n);
    println!("swapfail: vm {} verified {} pages twice, each lost page aborted every time: ok", info.vm, count - lost.n as u64);
    println!("swapfail: ok");
    0
}
