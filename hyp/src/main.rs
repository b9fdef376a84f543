//! uvmhyp: a type-1 hypervisor for AArch64 whose guests' RAM is demand-faulted by the UVM engine.
//!
//! This file is the boot sequence and the hand-off to the virtualization layer (`virt`).
//!
//! ```text
//! CPU 0 (_start, EL2, MMU off)            CPUs 1..N-1 (_secondary_start via PSCI CPU_ON)
//!   console/log (semihosting)
//!   DTB at 0x4000_0000: RAM, CPU MPIDRs
//!   EL2 stage-1 identity map, MMU+caches on
//!   heap; GICv3 (dist + redist 0); timer off
//!   PSCI CPU_ON each secondary ───────────►  MMU on, GIC redistributor + CPU interface,
//!                                            timer off, "online"; wait for RELEASE
//!   config: cmdline + guest ELFs (exit 2 on error)
//!   carve the page pool
//!   virt::start(config, pool)   (once)
//!   RELEASE ─────────────────────────────►  virt::cpu_main(i)
//!   virt::cpu_main(0)
//! ```
//!
//! Memory carving (QEMU virt, `-m 1G`): `[0x4000_0000, +DTB)` device tree, then our image at
//! 0x4020_0000 (text, data, bss, 4 x 64 KiB stacks), the heap up to RAM base + 128 MiB, and every
//! remaining 4 KiB frame up to the end of RAM is the guest page pool (or `pool=MIB` of it).
//!
//! # Debugging with gdb
//! Start QEMU halted with its gdb stub (`make debug SCENARIO=…` does this): add `-s -S` to the
//! QEMU line of README's "The QEMU line". Then:
//! ```text
//! gdb-multiarch target/aarch64-unknown-none/release/hyp \
//!     -ex 'target remote :1234' -ex 'break hyp::boot_main' -ex 'continue'
//! ```
//! (Rust paths: `hyp::secondary_main`, `hyp::virt::cpu_main`, `core::panicking::panic_fmt` for panics.)
//! Each QEMU vCPU is a gdb thread (`info threads`, `thread 2`); `-ex 'set scheduler-locking step'`
//! keeps the other CPUs still while stepping. Release builds keep debug info (workspace profile).
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

extern crate alloc;

mod arch;
mod console;
mod virt;

use core::sync::atomic::{AtomicBool, Ordering};

use log::{error, info, LevelFilter};
use alloc::string::ToString;
use alloc::vec::Vec;
use hyp::config::{self, Config, ConfigError};
use hyp::selftest::SelfTest;
use hyp::{dtb, layout, limits};

use arch::{boot, cpu, gic, heap, mmu, psci, semihosting, timer, uart};

/// QEMU exit status for a bad scenario (command line or guest file).
const EXIT_BAD_SCENARIO: u32 = 2;
/// QEMU exit status after a hypervisor panic.
const EXIT_PANIC: u32 = 101;
/// Set by CPU 0 after `virt::start` returned; secondaries wait for it.
static RELEASE: AtomicBool = AtomicBool::new(false);

/// Boot CPU: everything up to the hand-off to `virt`. Called by `arch::entry` with the MMU off.
pub(crate) fn boot_main() -> ! {
    console::init(LevelFilter::Info);
    assert_eq!(cpu::current_el(), 2, "uvmhyp must be entered at EL2 (QEMU -M virt,virtualization=on)");

    let blob = boot::dtb().expect("no device tree at 0x4000_0000: link the hypervisor at or above 0x4020_0000");
    let platform = dtb::parse(blob).unwrap_or_else(|e| panic!("cannot parse QEMU's device tree: {e:?}"));
    let ram = platform.ram.clone();
    mmu::init(ram.clone(), boot::text(), &boot::stack_guards()).unwrap_or_else(|e| panic!("EL2 identity map for RAM {ram:#x?}: {e:?}"));
    mmu::enable();

    let image = boot::image();
    let carving = layout::carve(&ram, &image)
        .unwrap_or_else(|| panic!("RAM {ram:#x?} is too small for the hypervisor"));
    heap::init(carving.heap.clone());

    let mpidrs = &platform.cpu_mpidrs[..platform.cpu_count];
    if mpidrs.len() > cpu::MAX_CPUS {
        log::warn!("{} CPUs present; using the first {}", mpidrs.len(), cpu::MAX_CPUS);
    }
    cpu::set_present(mpidrs);
    timer::disarm();
    gic::init(cpu::count());
    uart::init();

    info!(
        "EL2 up: RAM {:#x}..{:#x} ({} MiB), image {:#x}..{:#x}, heap {} MiB, {} CPU(s), timer {} Hz",
        ram.start,
        ram.end,
        (ram.end - ram.start) >> 20,
        image.start,
        image.end,
        (carving.heap.end - carving.heap.start) >> 20,
        cpu::count(),
        timer::freq()
    );

    timer_selftest();
    start_secondaries();

    let config = load_scenario().unwrap_or_else(|e| {
        error!("bad scenario: {e}");
        semihosting::exit(EXIT_BAD_SCENARIO)
    });
    hyp::selftest::enable(config.selftest);
    if config.selftest.contains(SelfTest::PanicFault) {
        // The run's EL2 vectors (with the nested-fault guard), as `virt::cpu_main` installs them.
        arch::vectors::install();
        panic!("selftest=panic-fault: a deliberate panic, whose handler faults");
    }
    let (pool, clamped) = layout::limit_pool(carving.pool, config.pool_limit);
    if clamped {
        log::warn!("pool= exceeds the free RAM; using all {} MiB of it", (pool.end.0 - pool.start.0) >> 20);
    }
    info!(
        "{} VM(s); page pool {:#x}..{:#x} ({} frames)",
        config.vms.len(),
        pool.start.0,
        pool.end.0,
        (pool.end.0 - pool.start.0) / vm::PAGE_SIZE
    );

    let pool_frames = (pool.end.0 - pool.start.0) / vm::PAGE_SIZE;
    match limits::check(&config, heap::free_bytes(), pool_frames) {
        Ok(usage) => info!(
            "worst case: {} KiB of {} KiB free heap, {} of {} pool frames held for stage-2 tables and vCPUs",
            usage.heap.div_ceil(1024),
            heap::free_bytes() / 1024,
            usage.pool,
            pool_frames
        ),
        Err(e) => {
            error!("bad scenario: {}", ConfigError::Limit(e));
            semihosting::exit(EXIT_BAD_SCENARIO)
        }
    }

    virt::start(config, pool);
    RELEASE.store(true, Ordering::Release);
    cpu::sev();
    virt::cpu_main(0)
}

/// Checks that the EL2 hypervisor timer reaches this CPU through the GIC as INTID 26: arms it
/// 1 ms ahead, then acknowledges it by polling (IRQs stay masked, no vectors involved).
fn timer_selftest() {
    timer::arm_in(timer::us_to_ticks(1000));
    let deadline = timer::now() + timer::us_to_ticks(200_000);
    let mut got = None;
    while got.is_none() && timer::now() <= deadline {
        gic::drain(gic::Group::One, |intid| {
            // Level-sensitive: quieten it before the EOI, or it is pending again at once.
            timer::disarm();
            got = Some(intid);
        });
        core::hint::spin_loop();
    }
    timer::disarm();
    if got != Some(gic::HYP_TIMER_INTID) {
        log::warn!("CPU {}: hypervisor timer self-test: expected INTID 26, got {got:?}", cpu::index());
    }
}

/// Starts CPUs 1.. with PSCI CPU_ON and waits until each has finished its bring-up.
fn start_secondaries() {
    if let Ok((major, minor)) = psci::version() {
        log::debug!("PSCI {major}.{minor}");
    }
    for i in 1..cpu::count() {
        let mpidr = cpu::mpidr_affinity(cpu::mpidr_of(i));
        if let Err(e) = psci::cpu_on(mpidr, arch::entry::secondary_entry(), i as u64) {
            panic!("PSCI CPU_ON for CPU {i} (MPIDR {mpidr:#x}) failed: {e:?}");
        }
        let deadline = timer::now() + timer::freq() * 2;
        while cpu::online() <= i {
            assert!(timer::now() < deadline, "CPU {i} (MPIDR {mpidr:#x}) did not come up within 2 s");
            core::hint::spin_loop();
        }
    }
    info!("{} CPU(s) online, EL2 MMU and GIC up on each", cpu::online());
}

/// A secondary CPU, entered from `arch::entry` with the MMU off.
pub(crate) fn secondary_main(index: usize) -> ! {
    mmu::enable();
    assert!(mmu::is_enabled(), "CPU {index}: EL2 MMU did not turn on");
    timer::disarm();
    gic::init_cpu();
    timer_selftest();
    cpu::mark_online();
    while !RELEASE.load(Ordering::Acquire) {
        cpu::wfe();
    }
    virt::cpu_main(index)
}

/// Guest files on the host, through semihosting.
struct HostFiles;

impl config::GuestFiles for HostFiles {
    fn len(&mut self, path: &str) -> Result<u64, alloc::string::String> {
        semihosting::file_len(path).map_err(|e| e.to_string())
    }

    fn read(&mut self, path: &str) -> Result<Vec<u8>, alloc::string::String> {
        let mut bytes = Vec::new();
        semihosting::read_file(path, &mut bytes).map_err(|e| e.to_string())?;
        Ok(bytes)
    }
}

/// Reads the scenario (QEMU's `-append`) and the guest images it names through semihosting,
/// each file and image checked against the free heap before it is allocated.
fn load_scenario() -> Result<Config, ConfigError> {
    let mut buf = alloc::vec![0u8; 8192];
    let line = semihosting::get_cmdline(&mut buf).map_err(|_| ConfigError::Cmdline)?;
    let line = core::str::from_utf8(line).map_err(|_| ConfigError::Cmdline)?;
    let line = config::expand(line, &mut HostFiles, heap::free_bytes())?;
    drop(buf);
    let scenario = config::parse(&line)?;
    config::resolve(scenario, heap::free_bytes(), &mut HostFiles)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    cpu::mask_interrupts();
    match info.location() {
        Some(l) => console::write_line_forced(format_args!(
            "uvmhyp: PANIC at {}:{}: {}",
            l.file(),
            l.line(),
            info.message()
        )),
        None => console::write_line_forced(format_args!("uvmhyp: PANIC at unknown location: {}", info.message())),
    }
    if hyp::selftest::enabled(SelfTest::PanicFault) {
        arch::vectors::fault_for_selftest();
    }
    semihosting::exit(EXIT_PANIC)
}
