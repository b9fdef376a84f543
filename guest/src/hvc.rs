//! The hypercall ABI (README, "Hypercall ABI"): SMCCC calls through `HVC #0` (or `SMC #0`), function id in x0,
//! arguments in x1..x3, result in x0 (negative SMCCC codes for errors).

use core::arch::asm;

/// UVMHYP_EXIT(status): does not return.
pub const UVMHYP_EXIT: u32 = 0xC600_0000;
/// UVMHYP_PRINT(ipa, len): one line of UTF-8.
pub const UVMHYP_PRINT: u32 = 0xC600_0001;
/// UVMHYP_COUNTER(id): a per-VM uvmexp counter.
pub const UVMHYP_COUNTER: u32 = 0xC600_0002;
/// UVMHYP_YIELD: give up the time slice.
pub const UVMHYP_YIELD: u32 = 0xC600_0003;
/// UVMHYP_INFO: VM id, vCPU index, RAM size, image size.
pub const UVMHYP_INFO: u32 = 0xC600_0004;
/// UVMHYP_CLONE(n): n copies of this VM continue after the call.
pub const UVMHYP_CLONE: u32 = 0xC600_0005;
pub const UVMHYP_ACCOUNT: u32 = 0xC600_0006;
/// UVMHYP_ADVISE (x1 IPA, x2 length, x3 advice: 0 normal, 1 random, 2 sequential).
pub const UVMHYP_ADVISE: u32 = 0xC600_0007;
/// UVMHYP_PHASE(n): this VM has reached phase n; the lowest phase of the running VMs.
pub const UVMHYP_PHASE: u32 = 0xC600_0008;
/// PSCI_VERSION.
pub const PSCI_VERSION: u32 = 0x8400_0000;
/// PSCI_CPU_ON (SMC64).
pub const PSCI_CPU_ON: u32 = 0xC400_0003;
/// PSCI_CPU_OFF.
pub const PSCI_CPU_OFF: u32 = 0x8400_0002;
/// PSCI_SYSTEM_OFF.
pub const PSCI_SYSTEM_OFF: u32 = 0x8400_0008;
/// PSCI_FEATURES.
pub const PSCI_FEATURES: u32 = 0x8400_000A;

/// SMCCC NOT_SUPPORTED.
pub const NOT_SUPPORTED: i64 = -1;
/// SMCCC INVALID_PARAMETERS.
pub const INVALID_PARAMETERS: i64 = -2;
/// PSCI ALREADY_ON.
pub const ALREADY_ON: i64 = -4;
/// PSCI INVALID_ADDRESS (a CPU_ON entry point that is misaligned or not in the VM's RAM).
pub const INVALID_ADDRESS: i64 = -9;

/// Most bytes one PRINT may carry.
pub const PRINT_MAX: usize = 1024;

/// The conduit of a call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Conduit {
    Hvc,
    Smc,
}

/// Raw SMCCC call: returns x0..x3 after the call.
pub fn call(conduit: Conduit, id: u32, a1: u64, a2: u64, a3: u64) -> [u64; 4] {
    let (mut r0, mut r1, mut r2, mut r3) = (id as u64, a1, a2, a3);
    // One call per conduit, the same registers: SMCCC lets the callee write x0..x17 and nothing
    // else of ours (the clobbers say so).
    macro_rules! smccc {
        ($insn:literal) => {
            asm!($insn,
                inout("x0") r0, inout("x1") r1, inout("x2") r2, inout("x3") r3,
                lateout("x4") _, lateout("x5") _, lateout("x6") _, lateout("x7") _,
                lateout("x8") _, lateout("x9") _, lateout("x10") _, lateout("x11") _,
                lateout("x12") _, lateout("x13") _, lateout("x14") _, lateout("x15") _,
                lateout("x16") _, lateout("x17") _,
                options(nostack))
        };
    }
    match conduit {
        // SAFETY: HVC #0 traps to the hypervisor, which follows SMCCC: it may write x0..x17 and
        // nothing else of ours (the clobbers say so); no memory of ours is touched except what
        // the call's arguments point to, which the caller keeps alive across the call.
        Conduit::Hvc => unsafe { smccc!("hvc #0") },
        // SAFETY: as for HVC: the hypervisor traps SMC #0 (HCR_EL2.TSC) and treats it the same.
        Conduit::Smc => unsafe { smccc!("smc #0") },
    }
    [r0, r1, r2, r3]
}

/// HVC call returning x0 as a signed SMCCC result.
pub fn hvc(id: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    call(Conduit::Hvc, id, a1, a2, a3)[0] as i64
}

/// UVMHYP_EXIT: stop every vCPU of this VM with `status`.
pub fn exit(status: u32) -> ! {
    hvc(UVMHYP_EXIT, status as u64, 0, 0);
    // The hypervisor must not return from EXIT; if it does, stop this vCPU another way.
    loop {
        hvc(PSCI_SYSTEM_OFF, 0, 0, 0);
        hvc(PSCI_CPU_OFF, 0, 0, 0);
    }
}

/// UVMHYP_PRINT of raw bytes: 0, or -2 when `[ipa, ipa+len)` is not readable guest RAM or too long.
///
/// The address is passed as is: an allegation the hypervisor must check.
pub fn print_raw(ipa: u64, len: u64) -> i64 {
    hvc(UVMHYP_PRINT, ipa, len, 0)
}

/// UVMHYP_PRINT of one line (the hypervisor adds the prefix and newline). Identity-mapped VA == IPA.
pub fn print(line: &[u8]) -> i64 {
    print_raw(line.as_ptr() as u64, line.len() as u64)
}

/// Per-VM counters readable through UVMHYP_COUNTER.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u64)]
pub enum Counter {
    Faults = 0,
    FltAnon = 1,
    FltAcow = 2,
    FltObj = 3,
    FltPrcopy = 4,
    FltPrzero = 5,
    Fltnamap = 6,
    Fltnomap = 7,
    /// This VM's pages merged away by dedup.
    DedupMerged = 8,
    /// Of those, all-zero pages.
    DedupZero = 9,
    /// Merged references since ended (a write copied the page).
    DedupUnmerged = 10,
    /// Frames dedup saves now, over every VM.
    DedupSavedAll = 11,
    /// Passes the dedup scanner has completed.
    DedupPasses = 12,
}

/// UVMHYP_COUNTER: the counter's value for this VM.
pub fn counter(c: Counter) -> u64 {
    hvc(UVMHYP_COUNTER, c as u64, 0, 0) as u64
}

/// UVMHYP_COUNTER with a raw id (for probing invalid ids).
pub fn counter_raw(id: u64) -> i64 {
    hvc(UVMHYP_COUNTER, id, 0, 0)
}

/// UVMHYP_YIELD.
pub fn yield_now() {
    hvc(UVMHYP_YIELD, 0, 0, 0);
}

/// UVMHYP_ACCOUNT of `group` (0: this VM's resident, private, shared, zero pages; 1: its swapped
/// pages, sharers, the pool's used and free frames; 2: frames saved by clone, image, dedup
/// sharing, distinct frames); x0 = -2 (INVALID_PARAMETERS) for another group.
pub fn account(group: u64) -> [u64; 4] {
    call(Conduit::Hvc, UVMHYP_ACCOUNT, group, 0, 0)
}

/// Paging advice for [`advise`] (UVMHYP_ADVISE's x3, numbered as `POSIX_MADV_*`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Advice {
    Normal = 0,
    Random = 1,
    /// A wider fault neighbourhood ahead, and swap readahead.
    Sequential = 2,
}

/// UVMHYP_ADVISE of `len` bytes at `ipa` with raw advice `advice` (0..=2, [`Advice`]): 0, or
/// -2 (INVALID_PARAMETERS) for an unaligned, empty or unmapped range or another advice value.
pub fn advise(ipa: u64, len: u64, advice: u64) -> i64 {
    hvc(UVMHYP_ADVISE, ipa, len, advice)
}

/// UVMHYP_PHASE: this VM has reached phase `n`; the lowest phase any running VM has reached
/// (every other VM has got at least that far).
pub fn phase(n: u64) -> u64 {
    hvc(UVMHYP_PHASE, n, 0, 0) as u64
}

/// What UVMHYP_INFO tells about this VM and vCPU.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Info {
    pub vm: u64,
    pub vcpu: u64,
    pub ram_bytes: u64,
    pub image_bytes: u64,
}

/// UVMHYP_INFO.
pub fn info() -> Info {
    let [vm, vcpu, ram_bytes, image_bytes] = call(Conduit::Hvc, UVMHYP_INFO, 0, 0, 0);
    Info { vm, vcpu, ram_bytes, image_bytes }
}

/// Which side of a UVMHYP_CLONE this is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Cloned {
    /// The VM that asked: its children are VMs `first..first + count`.
    Parent { first: u64, count: u64 },
    /// Child `index` (1-based) of the clone.
    Child { index: u64 },
    /// No child was made (the SMCCC error).
    Failed(i64),
}

/// UVMHYP_CLONE: make `n` copies of this VM (memory shared copy-on-write, this vCPU's state);
/// each continues here, told apart by the result.
pub fn clone(n: u64) -> Cloned {
    let [x0, x1, _, _] = call(Conduit::Hvc, UVMHYP_CLONE, n, 0, 0);
    Cloned::of(x0, x1)
}

impl Cloned {
    /// UVMHYP_CLONE's x0 and x1, decoded.
    fn of(x0: u64, x1: u64) -> Cloned {
        match x0 as i64 {
            0 => Cloned::Child { index: x1 },
            e if e < 0 => Cloned::Failed(e),
            first => Cloned::Parent { first: first as u64, count: x1 },
        }
    }
}

/// UVMHYP_CLONE as the clone benchmark times it: returns the result, the virtual counter read
/// just before the HVC, and the one read by the first instruction after it — in a child too,
/// whose copy of the first read is its parent's (registers are copied, the counter's offset is
/// the parent's), so `after - before` is the request-to-first-instruction time on both sides.
pub fn clone_timed(n: u64) -> (Cloned, u64, u64) {
    let (mut r0, mut r1) = (u64::from(UVMHYP_CLONE), n);
    let (before, after): (u64, u64);
    // SAFETY: as `call`'s HVC: the hypervisor may write x0..x17 and nothing else of ours (the
    // clobbers say so; the two counter reads are in registers it keeps); reading CNTVCT_EL0 has
    // no side effect, and the ISBs keep both reads where they are written.
    unsafe {
        asm!("isb", "mrs {b}, cntvct_el0", "hvc #0", "isb", "mrs {a}, cntvct_el0",
            b = out(reg) before, a = out(reg) after,
            inout("x0") r0, inout("x1") r1,
            lateout("x2") _, lateout("x3") _,
            lateout("x4") _, lateout("x5") _, lateout("x6") _, lateout("x7") _,
            lateout("x8") _, lateout("x9") _, lateout("x10") _, lateout("x11") _,
            lateout("x12") _, lateout("x13") _, lateout("x14") _, lateout("x15") _,
            lateout("x16") _, lateout("x17") _,
            options(nostack))
    };
    (Cloned::of(r0, r1), before, after)
}

/// PSCI_CPU_ON: start vCPU `index` (MPIDR Aff0) at `entry` with x0 = `context`.
pub fn psci_cpu_on(index: u64, entry: u64, context: u64) -> i64 {
    hvc(PSCI_CPU_ON, index, entry, context)
}

/// PSCI_CPU_OFF: stop this vCPU.
pub fn psci_cpu_off() -> ! {
    loop {
        hvc(PSCI_CPU_OFF, 0, 0, 0);
    }
}
