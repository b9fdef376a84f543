//! `smp`: 4 vCPUs of one VM fault the same and different pages at once.
//!
//! vCPU 0 turns on its identity MMU (Normal memory, so atomics are sane), starts vCPUs 1..3 with
//! PSCI CPU_ON at `_start`, and then every vCPU, after a barrier:
//! - writes its own slots in each of the SHARED pages (all vCPUs fault those pages together),
//! - writes its private range of PRIVATE pages,
//!
//! then, after a second barrier, verifies every slot of every shared page and every vCPU's private
//! range. vCPU 0 waits for the others to finish and exits 0. Every vCPU also checks that the ID
//! registers hide SVE, SME, MTE and pointer authentication (the `max` scenario runs it on
//! `-cpu max`), and that its GIC priority mask and (with FEAT_RAS) DISR_EL1 start at reset and
//! stay its own.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};
use guest::exceptions;
use guest::hvc::{self, Counter};
use guest::layout::{self, PAGE_SIZE};
use guest::{check, println};

guest::entry!(main);

const CPUS: u64 = 4;
const SHARED: u64 = 256;
const PRIVATE: u64 = 512;
const WORDS: u64 = 4;

static ARRIVED: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicU64 = AtomicU64::new(0);

/// Wait until all vCPUs reached barrier number `n` (1, 2, ...).
fn barrier(n: u64) {
    ARRIVED.fetch_add(1, Ordering::AcqRel);
    let mut spins = 0u64;
    while ARRIVED.load(Ordering::Acquire) < n * CPUS {
        core::hint::spin_loop();
        spins += 1;
        if spins.is_multiple_of(256) {
            hvc::yield_now();
        }
    }
}

/// This vCPU's GIC priority mask (ICC_PMR_EL1; the hypervisor's HCR_EL2.IMO makes it the
/// virtual interface's ICH_VMCR_EL2.VPMR, which must move with the vCPU).
fn pmr() -> u64 {
    let v: u64;
    // SAFETY: reading the priority mask has no side effect.
    unsafe { core::arch::asm!("mrs {}, icc_pmr_el1", out(reg) v, options(nomem, nostack)) };
    v
}

fn set_pmr(v: u64) {
    // SAFETY: this guest takes no interrupts; the mask only decides which would be signalled.
    unsafe { core::arch::asm!("msr icc_pmr_el1, {}", "isb", in(reg) v, options(nomem, nostack)) };
}

/// A DISR_EL1 value no other vCPU uses (syndrome bits [5:0], never 0).
fn own_disr(vm: u64, cpu: u64) -> u64 {
    ((vm * CPUS + cpu) % 63) + 1
}

/// A priority mask no other vCPU uses (bits [7:4]: implemented with any number of priority bits).
fn own_pmr(vm: u64, cpu: u64) -> u64 {
    (((vm * CPUS + cpu) % 15) + 1) << 4
}

fn shared_page(p: u64) -> u64 {
    layout::free_start() + p * PAGE_SIZE
}

fn private_page(cpu: u64, p: u64) -> u64 {
    layout::free_start() + (SHARED + cpu * PRIVATE + p) * PAGE_SIZE
}

/// Slot `w` of `cpu` in a shared page: the vCPUs' slots interleave within one cache line.
fn slot(cpu: u64, w: u64) -> u64 {
    w * (PAGE_SIZE / WORDS) + cpu * 8
}

fn main(cpu: usize, _arg: u64) -> u32 {
    let cpu = cpu as u64;
    guest::mmu::enable();
    let info = hvc::info();
    check!(info.vcpu == cpu, 2, "INFO says vCPU {}, MPIDR says {}", info.vcpu, cpu);
    if let Some((field, v)) = guest::idregs::visible_hidden_feature() {
        guest::fail!(6, "vCPU {} sees {} = {} (state the hypervisor does not switch)", cpu, field, v);
    }
    // A new vCPU's GIC CPU interface is out of reset, whatever ran on this physical CPU before;
    // the mask it sets stays its own across yields and migrations (checked after barrier 2).
    check!(pmr() == 0, 7, "vCPU {} starts with ICC_PMR_EL1 = {:#x}, not its reset 0", cpu, pmr());
    set_pmr(own_pmr(info.vm, cpu));
    // The same for DISR_EL1 where it exists (FEAT_RAS, `-cpu max`; hidden from the ID registers,
    // but there): the hypervisor's HCR_EL2.AMO makes it VDISR_EL2, which must move with the vCPU.
    let disr = exceptions::probe_disr_el1();
    if let Some(d) = disr {
        check!(d == 0, 8, "vCPU {} starts with DISR_EL1 = {:#x}, not its reset 0", cpu, d);
        exceptions::write_disr_el1(own_disr(info.vm, cpu));
    }
    if cpu == 0 {
        let need = layout::free_start() + (SHARED + CPUS * PRIVATE) * PAGE_SIZE;
        check!(need <= layout::RAM_BASE + info.ram_bytes, 2, "RAM too small");
        println!("smp: vm {}: starting vCPUs 1..{}", info.vm, CPUS - 1);
        for c in 1..CPUS {
            let r = hvc::psci_cpu_on(c, guest::rt::entry_point(), c);
            check!(r == 0, 3, "CPU_ON({}) returned {}", c, r);
        }
        let r = hvc::psci_cpu_on(1, guest::rt::entry_point(), 1);
        check!(r == hvc::ALREADY_ON, 3, "second CPU_ON(1) returned {}, expected -4", r);
    }

    barrier(1);
    if cpu == 0 {
        // The `clonepoint` scenario clones the VM at this line, while the others write.
        println!("smp: all {} vCPUs writing", CPUS);
    }
    for p in 0..SHARED {
        for w in 0..WORDS {
            // SAFETY: free RAM; each vCPU writes only its own 8-byte slots.
            unsafe { guest::poke(shared_page(p) + slot(cpu, w), guest::pattern(info.vm, p, cpu * WORDS + w)) };
        }
    }
    for p in 0..PRIVATE {
        for w in 0..WORDS {
            // SAFETY: free RAM, this vCPU's private range.
            unsafe { guest::poke(private_page(cpu, p) + w * (PAGE_SIZE / WORDS), guest::pattern(info.vm, 1000 + p, cpu)) };
        }
    }

    barrier(2);
    for p in 0..SHARED {
        for c in 0..CPUS {
            for w in 0..WORDS {
                let addr = shared_page(p) + slot(c, w);
                // SAFETY: free RAM; every writer finished before barrier 2.
                let v = unsafe { guest::peek(addr) };
                let want = guest::pattern(info.vm, p, c * WORDS + w);
                check!(v == want, 4, "vCPU {}: shared {:#x} (vCPU {}'s) is {:#x}, expected {:#x}", cpu, addr, c, v, want);
            }
        }
    }
    for c in 0..CPUS {
        for p in 0..PRIVATE {
            for w in 0..WORDS {
                let addr = private_page(c, p) + w * (PAGE_SIZE / WORDS);
                // SAFETY: as above.
                let v = unsafe { guest::peek(addr) };
                let want = guest::pattern(info.vm, 1000 + p, c);
                check!(v == want, 5, "vCPU {}: private {:#x} (vCPU {}'s) is {:#x}, expected {:#x}", cpu, addr, c, v, want);
            }
        }
    }

    let want = own_pmr(info.vm, cpu);
    check!(pmr() == want, 7, "vCPU {}: ICC_PMR_EL1 is {:#x}, it set {:#x}", cpu, pmr(), want);
    if disr.is_some() {
        let (got, want) = (exceptions::probe_disr_el1(), Some(own_disr(info.vm, cpu)));
        check!(got == want, 8, "vCPU {}: DISR_EL1 is {:x?}, it set {:x?}", cpu, got, want);
    }
    if cpu != 0 {
        DONE.fetch_add(1, Ordering::AcqRel);
        return 0;
    }
    let mut spins = 0u64;
    while DONE.load(Ordering::Acquire) < CPUS - 1 {
        spins += 1;
        if spins.is_multiple_of(64) {
            hvc::yield_now();
        }
        core::hint::spin_loop();
    }
    println!(
        "smp: {} vCPUs verified {} shared and {} private pages; faults {} zero-fill {}",
        CPUS,
        SHARED,
        CPUS * PRIVATE,
        hvc::counter(Counter::Faults),
        hvc::counter(Counter::FltPrzero)
    );
    println!("smp: ok");
    0
}
