//! Entry point, stacks and panic handling.
//!
//! `_start` is where vCPU 0 begins (the ELF entry, x0 = 0) and where the programs start secondary
//! vCPUs with PSCI CPU_ON (x0 = context id). Each vCPU takes its stack from MPIDR_EL1.Aff0 (the
//! hypervisor sets VMPIDR_EL2.Aff0 = vCPU index), so one entry serves all.

use core::arch::global_asm;

global_asm!(
    r#"
    .section .text.entry, "ax"
    .global _start
    .type _start, %function
_start:
    mov     x19, x0                     // x0 = CPU_ON context id (0 for vCPU 0)
    mrs     x20, mpidr_el1
    and     x20, x20, #0xff             // vCPU index
    cmp     x20, #{max_cpus}
    b.hs    2f
    // Stack: top - index * STACK_SIZE.
    ldr     x1, =__stack_top
    mov     x2, #{stack_size}
    msub    x1, x2, x20, x1
    mov     sp, x1
    // FP/SIMD at EL1: CPACR_EL1.FPEN = 0b11 (compiled Rust uses NEON registers).
    mov     x1, #(3 << 20)
    msr     cpacr_el1, x1
    isb
    // Our vectors before anything can fault.
    ldr     x1, =guest_vectors
    msr     vbar_el1, x1
    isb
    cbnz    x20, 1f
    // vCPU 0: zero .bss (demand-zero RAM already is; we assume nothing we did not write).
    ldr     x1, =__bss_start
    ldr     x2, =__bss_end
0:  cmp     x1, x2
    b.hs    1f
    stp     xzr, xzr, [x1], #16
    b       0b
1:  mov     x0, x20
    mov     x1, x19
    bl      guest_rust_start
2:  // More vCPUs than stacks: turn this one off (PSCI_CPU_OFF).
    ldr     x0, ={cpu_off}
    hvc     #0
    b       2b
    "#,
    max_cpus = const crate::layout::MAX_CPUS,
    stack_size = const crate::layout::STACK_SIZE,
    cpu_off = const crate::hvc::PSCI_CPU_OFF,
);

/// Address of `_start`, for PSCI CPU_ON.
pub fn entry_point() -> u64 {
    extern "C" {
        fn _start();
    }
    _start as *const () as u64
}

extern "Rust" {
    /// The program's main, defined by [`crate::entry!`].
    fn __guest_main(cpu: usize, arg: u64) -> u32;
}

/// Called by `_start` on every vCPU with its index and x0 at entry.
#[no_mangle]
extern "C" fn guest_rust_start(cpu: u64, arg: u64) -> ! {
    // SAFETY: `__guest_main` is defined by the program through `entry!` with this exact signature;
    // a guest binary without it does not link.
    let status = unsafe { __guest_main(cpu as usize, arg) };
    if cpu == 0 {
        crate::hvc::exit(status)
    }
    crate::hvc::psci_cpu_off()
}

/// Define the program's main: `fn main(cpu: usize, arg: u64) -> u32`, run by every vCPU; vCPU 0's
/// return value is the VM's exit status.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[no_mangle]
        fn __guest_main(cpu: usize, arg: u64) -> u32 {
            let f: fn(usize, u64) -> u32 = $main;
            f(cpu, arg)
        }
    };
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    crate::println!("FAIL: panic: {}", info);
    crate::hvc::exit(crate::EXIT_PANIC)
}
