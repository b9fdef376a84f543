//! Guest calls over HVC/SMC: what a function id names, and the argument checks, decided here on
//! plain values (host-tested); `virt::smccc` acts on the answer.
//!
//! SMC Calling Convention (Arm DEN0028, "Function Identifiers"): w0 bit 31 = fast call, bit 30 =
//! SMC64, bits 29:24 = owner, bits 15:0 = function number. Calls are dispatched by owner range:
//! - owner 0, Arm architecture: SMCCC_VERSION (1.1) and SMCCC_ARCH_FEATURES;
//! - owner 4, standard secure services: PSCI 1.1 (`smccc::psci` ids and error codes);
//! - owner 6, vendor hypervisor services: the UVMHYP calls (README, "Hypercall ABI");
//! - anything else: NOT_SUPPORTED (-1) in x0, as SMCCC requires of an unknown function.

use smccc::arch::{SMCCC_ARCH_FEATURES, SMCCC_VERSION};
use smccc::psci::{
    PSCI_AFFINITY_INFO_32, PSCI_AFFINITY_INFO_64, PSCI_CPU_OFF, PSCI_CPU_ON_64, PSCI_CPU_SUSPEND_32, PSCI_CPU_SUSPEND_64,
    PSCI_FEATURES, PSCI_MIGRATE_INFO_TYPE, PSCI_SYSTEM_OFF, PSCI_SYSTEM_RESET, PSCI_VERSION,
};

/// SMCCC_VERSION's answer: 1.1 (SMCCC_ARCH_FEATURES exists).
pub const SMCCC_1_1: i64 = 0x0001_0001;
/// PSCI_VERSION's answer: 1.1.
pub const PSCI_1_1: i64 = 0x0001_0001;
/// MIGRATE_INFO_TYPE's answer: no Trusted OS that would need migrating (PSCI, 5.7).
pub const MIGRATE_NONE: i64 = 2;
/// AFFINITY_INFO's answers (PSCI, 5.6).
pub const AFFINITY_ON: i64 = 0;
pub const AFFINITY_OFF: i64 = 1;
/// SMCCC's "unknown function" / PSCI's NOT_SUPPORTED.
pub const NOT_SUPPORTED: i64 = smccc::psci::error::NOT_SUPPORTED as i64;
pub const SUCCESS: i64 = smccc::psci::error::SUCCESS as i64;

/// The UVMHYP vendor calls (owner 6, fast, SMC64).
pub mod uvmhyp {
    pub const EXIT: u32 = 0xC600_0000;
    pub const PRINT: u32 = 0xC600_0001;
    pub const COUNTER: u32 = 0xC600_0002;
    pub const YIELD: u32 = 0xC600_0003;
    pub const INFO: u32 = 0xC600_0004;
    pub const CLONE: u32 = 0xC600_0005;
    /// UVMHYP_ACCOUNT: the memory accounting of the calling VM and the global savings, from a
    /// fresh pass of `vm::account` over every VM (see [`super::AccountGroup`]).
    pub const ACCOUNT: u32 = 0xC600_0006;
    /// UVMHYP_ADVISE: set the paging advice of a range of the caller's RAM (x1 IPA, x2 length
    /// in bytes, both page-aligned; x3 the advice, see [`super::GuestAdvice`]).
    pub const ADVISE: u32 = 0xC600_0007;
    /// UVMHYP_PHASE: the caller has reached phase x1; x0 = the lowest phase of the running VMs
    /// (`crate::phase`).
    pub const PHASE: u32 = 0xC600_0008;
}

/// UVMHYP_ADVISE's x3: the advice, numbered as `POSIX_MADV_*` (the engine's `vm::map::Advice`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestAdvice {
    /// 0: the default neighbourhood.
    Normal,
    /// 1: the faulting page only.
    Random,
    /// 2: a wider neighbourhood ahead, and swap readahead.
    Sequential,
}

impl GuestAdvice {
    /// The advice x3 names; `None` for any other value (the call answers INVALID_PARAMETERS).
    pub fn of(x3: u64) -> Option<GuestAdvice> {
        match x3 {
            0 => Some(GuestAdvice::Normal),
            1 => Some(GuestAdvice::Random),
            2 => Some(GuestAdvice::Sequential),
            _ => None,
        }
    }
}

/// UVMHYP_ACCOUNT's x1: which four figures come back in x0..x3 (pages or frames; SMCCC 1.1
/// returns up to four values). The definitions are `vm::account`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountGroup {
    /// 0: the caller's resident, private, shared, zero pages.
    Pages,
    /// 1: the caller's swapped pages and `sharers`; the pool's used and free frames.
    SwapAndPool,
    /// 2: frames saved by clone sharing, by image sharing, by dedup; distinct frames of all VMs.
    Saved,
}

impl AccountGroup {
    /// The group x1 names; `None` for any other value (the call answers INVALID_PARAMETERS).
    pub fn of(x1: u64) -> Option<AccountGroup> {
        match x1 {
            0 => Some(AccountGroup::Pages),
            1 => Some(AccountGroup::SwapAndPool),
            2 => Some(AccountGroup::Saved),
            _ => None,
        }
    }
}

/// Functions PSCI_FEATURES reports as implemented. SMCCC_VERSION is among them: that is how a
/// caller learns SMCCC 1.1 is there (DEN0028, "SMCCC_VERSION": discovered through PSCI_FEATURES).
const PSCI_IMPLEMENTED: &[u32] = &[
    PSCI_VERSION,
    PSCI_CPU_SUSPEND_32,
    PSCI_CPU_SUSPEND_64,
    PSCI_CPU_OFF,
    PSCI_CPU_ON_64,
    PSCI_AFFINITY_INFO_32,
    PSCI_AFFINITY_INFO_64,
    PSCI_MIGRATE_INFO_TYPE,
    PSCI_SYSTEM_OFF,
    PSCI_SYSTEM_RESET,
    PSCI_FEATURES,
    SMCCC_VERSION,
];
/// Functions SMCCC_ARCH_FEATURES reports as implemented (none of the Spectre workarounds: the
/// hypervisor has no firmware mitigation to offer, and saying NOT_SUPPORTED is the honest answer).
const ARCH_IMPLEMENTED: &[u32] = &[SMCCC_VERSION, SMCCC_ARCH_FEATURES];

/// One decoded call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    SmcccVersion,
    /// SMCCC_ARCH_FEATURES of this function id.
    ArchFeatures(u32),
    Psci(Psci),
    Uvmhyp(Uvmhyp),
    /// Not implemented: x0 = NOT_SUPPORTED.
    Unknown(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Psci {
    Version,
    Features(u32),
    /// Power state ignored: every state is a WFI here (no state is lost).
    CpuSuspend,
    CpuOn { mpidr: u64, entry: u64, context: u64 },
    CpuOff,
    AffinityInfo { mpidr: u64, lowest_level: u64 },
    MigrateInfoType,
    SystemOff,
    SystemReset,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uvmhyp {
    Exit { status: u32 },
    Print { ipa: u64, len: u64 },
    Counter { id: u64 },
    Yield,
    Info,
    /// Clone the calling VM into `count` children (fork: 1).
    Clone { count: u64 },
    /// The caller's memory accounting (`None`: a group that does not exist).
    Account { group: Option<AccountGroup> },
    /// Set the advice of `[ipa, ipa + len)` (`None`: an advice that does not exist).
    Advise { ipa: u64, len: u64, advice: Option<GuestAdvice> },
    /// The caller has reached phase `n`.
    Phase { n: u64 },
}

/// Most children one UVMHYP_CLONE makes.
pub const MAX_CLONES: u64 = 64;
/// UVMHYP_CLONE: no child could be made (no VMID, no memory).
pub const DENIED: i64 = smccc::psci::error::DENIED as i64;

/// Owner field of a function id.
const fn owner(fid: u32) -> u32 {
    (fid >> 24) & 0x3f
}
const OWNER_ARCH: u32 = 0;
const OWNER_STANDARD_SECURE: u32 = 4;
const OWNER_VENDOR_HYP: u32 = 6;

/// Decode the call in x0..x3 (the id is w0: the upper half of x0 is ignored, SMCCC 1.1 §2.6).
pub fn decode(x: [u64; 4]) -> Call {
    let fid = x[0] as u32;
    match owner(fid) {
        OWNER_ARCH => match fid {
            SMCCC_VERSION => Call::SmcccVersion,
            SMCCC_ARCH_FEATURES => Call::ArchFeatures(x[1] as u32),
            _ => Call::Unknown(fid),
        },
        OWNER_STANDARD_SECURE => match fid {
            PSCI_VERSION => Call::Psci(Psci::Version),
            PSCI_FEATURES => Call::Psci(Psci::Features(x[1] as u32)),
            PSCI_CPU_ON_64 => Call::Psci(Psci::CpuOn { mpidr: x[1], entry: x[2], context: x[3] }),
            PSCI_CPU_SUSPEND_32 | PSCI_CPU_SUSPEND_64 => Call::Psci(Psci::CpuSuspend),
            PSCI_CPU_OFF => Call::Psci(Psci::CpuOff),
            PSCI_AFFINITY_INFO_64 => Call::Psci(Psci::AffinityInfo { mpidr: x[1], lowest_level: x[2] }),
            // The 32-bit call's arguments are w1, w2.
            PSCI_AFFINITY_INFO_32 => Call::Psci(Psci::AffinityInfo { mpidr: x[1] & 0xffff_ffff, lowest_level: x[2] & 0xffff_ffff }),
            PSCI_MIGRATE_INFO_TYPE => Call::Psci(Psci::MigrateInfoType),
            PSCI_SYSTEM_OFF => Call::Psci(Psci::SystemOff),
            PSCI_SYSTEM_RESET => Call::Psci(Psci::SystemReset),
            _ => Call::Unknown(fid),
        },
        OWNER_VENDOR_HYP => match fid {
            uvmhyp::EXIT => Call::Uvmhyp(Uvmhyp::Exit { status: x[1] as u32 }),
            uvmhyp::PRINT => Call::Uvmhyp(Uvmhyp::Print { ipa: x[1], len: x[2] }),
            uvmhyp::COUNTER => Call::Uvmhyp(Uvmhyp::Counter { id: x[1] }),
            uvmhyp::YIELD => Call::Uvmhyp(Uvmhyp::Yield),
            uvmhyp::INFO => Call::Uvmhyp(Uvmhyp::Info),
            uvmhyp::CLONE => Call::Uvmhyp(Uvmhyp::Clone { count: x[1] }),
            uvmhyp::ACCOUNT => Call::Uvmhyp(Uvmhyp::Account { group: AccountGroup::of(x[1]) }),
            uvmhyp::ADVISE => Call::Uvmhyp(Uvmhyp::Advise { ipa: x[1], len: x[2], advice: GuestAdvice::of(x[3]) }),
            uvmhyp::PHASE => Call::Uvmhyp(Uvmhyp::Phase { n: x[1] }),
            _ => Call::Unknown(fid),
        },
        _ => Call::Unknown(fid),
    }
}

/// PSCI_FEATURES: 0 for an implemented function, NOT_SUPPORTED otherwise.
pub fn psci_features(fid: u32) -> i64 {
    if PSCI_IMPLEMENTED.contains(&fid) {
        SUCCESS
    } else {
        NOT_SUPPORTED
    }
}

/// SMCCC_ARCH_FEATURES: 0 for an implemented function, NOT_SUPPORTED otherwise.
pub fn arch_features(fid: u32) -> i64 {
    if ARCH_IMPLEMENTED.contains(&fid) {
        SUCCESS
    } else {
        NOT_SUPPORTED
    }
}

/// Why a PSCI CPU_ON is refused (the PSCI error code is [`CpuOnError::code`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuOnError {
    /// No such vCPU: affinity above Aff0, or Aff0 ≥ the VM's vCPU count.
    NoSuchCpu,
    /// The entry point is not 4-byte aligned or not in the VM's RAM.
    BadEntry,
}

impl CpuOnError {
    pub fn code(self) -> i64 {
        i64::from(match self {
            CpuOnError::NoSuchCpu => smccc::psci::error::INVALID_PARAMETERS,
            CpuOnError::BadEntry => smccc::psci::error::INVALID_ADDRESS,
        })
    }
}

/// PSCI ALREADY_ON.
pub const ALREADY_ON: i64 = smccc::psci::error::ALREADY_ON as i64;

/// The vCPU index an MPIDR names (Aff0; higher affinity levels 0), if the VM has it.
pub fn vcpu_of(mpidr: u64, nr_vcpus: u16) -> Option<u16> {
    use aarch64_cpu::registers::MPIDR_EL1::{Aff0, Aff1, Aff2, Aff3};
    let index = Aff0.read(mpidr) as u16;
    (!(Aff3::SET + Aff2::SET + Aff1::SET).any_matching_bits_set(mpidr) && index < nr_vcpus).then_some(index)
}

/// The vCPU index CPU_ON names, if its entry point may be used. A vCPU's MPIDR is its index in
/// Aff0 (`VMPIDR_EL2`), so higher affinity levels must be 0; `entry` is an allegation: 4-byte
/// aligned and inside guest RAM (`in_ram`), or the target would crash the VM on its first fetch.
pub fn check_cpu_on(mpidr: u64, entry: u64, nr_vcpus: u16, in_ram: impl Fn(u64) -> bool) -> Result<u16, CpuOnError> {
    let index = vcpu_of(mpidr, nr_vcpus).ok_or(CpuOnError::NoSuchCpu)?;
    if !entry.is_multiple_of(4) || !in_ram(entry) {
        return Err(CpuOnError::BadEntry);
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(fid: u32, a: u64, b: u64, c: u64) -> Call {
        decode([u64::from(fid), a, b, c])
    }

    #[test]
    fn calls_dispatch_by_owner() {
        assert_eq!(call(SMCCC_VERSION, 0, 0, 0), Call::SmcccVersion);
        assert_eq!(call(SMCCC_ARCH_FEATURES, 0x8000_8000, 0, 0), Call::ArchFeatures(0x8000_8000));
        assert_eq!(call(PSCI_CPU_ON_64, 1, 0x4000_0000, 7), Call::Psci(Psci::CpuOn { mpidr: 1, entry: 0x4000_0000, context: 7 }));
        assert_eq!(call(PSCI_SYSTEM_OFF, 0, 0, 0), Call::Psci(Psci::SystemOff));
        assert_eq!(call(PSCI_SYSTEM_RESET, 0, 0, 0), Call::Psci(Psci::SystemReset));
        assert_eq!(call(PSCI_CPU_SUSPEND_64, 0, 0x4000_0000, 0), Call::Psci(Psci::CpuSuspend));
        assert_eq!(call(PSCI_AFFINITY_INFO_32, 0xffff_ffff_0000_0001, 0, 0), Call::Psci(Psci::AffinityInfo { mpidr: 1, lowest_level: 0 }));
        assert_eq!(call(PSCI_MIGRATE_INFO_TYPE, 0, 0, 0), Call::Psci(Psci::MigrateInfoType));
        assert_eq!(call(uvmhyp::PRINT, 0x4000_1000, 12, 0), Call::Uvmhyp(Uvmhyp::Print { ipa: 0x4000_1000, len: 12 }));
        assert_eq!(call(uvmhyp::EXIT, 0x1_0000_0003, 0, 0), Call::Uvmhyp(Uvmhyp::Exit { status: 3 }));
        assert_eq!(call(uvmhyp::CLONE, 8, 0, 0), Call::Uvmhyp(Uvmhyp::Clone { count: 8 }));
        assert_eq!(call(uvmhyp::ACCOUNT, 2, 0, 0), Call::Uvmhyp(Uvmhyp::Account { group: Some(AccountGroup::Saved) }));
        assert_eq!(call(uvmhyp::ACCOUNT, 0, 0, 0), Call::Uvmhyp(Uvmhyp::Account { group: Some(AccountGroup::Pages) }));
        assert_eq!(call(uvmhyp::ACCOUNT, 3, 0, 0), Call::Uvmhyp(Uvmhyp::Account { group: None }));
        let advise = |advice| Call::Uvmhyp(Uvmhyp::Advise { ipa: 0x4000_0000, len: 0x2000, advice });
        assert_eq!(call(uvmhyp::ADVISE, 0x4000_0000, 0x2000, 2), advise(Some(GuestAdvice::Sequential)));
        assert_eq!(call(uvmhyp::ADVISE, 0x4000_0000, 0x2000, 0), advise(Some(GuestAdvice::Normal)));
        assert_eq!(call(uvmhyp::ADVISE, 0x4000_0000, 0x2000, 3), advise(None));
        assert_eq!(call(uvmhyp::PHASE, 2, 0, 0), Call::Uvmhyp(Uvmhyp::Phase { n: 2 }));
    }

    #[test]
    fn the_upper_half_of_x0_is_ignored() {
        assert_eq!(decode([0xdead_0000_0000_0000 | u64::from(PSCI_VERSION), 0, 0, 0]), Call::Psci(Psci::Version));
    }

    #[test]
    fn unknown_functions_of_every_owner_are_unknown() {
        for fid in [0x8000_8000, 0x8400_0012, 0xC400_0003 ^ 0x4000_0000, 0xC600_0009, 0xC500_0000, 0x8200_0000, 0xBF00_0000] {
            assert_eq!(call(fid, 0, 0, 0), Call::Unknown(fid), "{fid:#x}");
        }
    }

    #[test]
    fn features_answer_what_is_implemented() {
        assert_eq!(psci_features(PSCI_CPU_ON_64), SUCCESS);
        assert_eq!(psci_features(SMCCC_VERSION), SUCCESS);
        assert_eq!(psci_features(PSCI_SYSTEM_RESET), SUCCESS);
        assert_eq!(psci_features(0x8400_0012), NOT_SUPPORTED, "SYSTEM_RESET2");
        assert_eq!(arch_features(SMCCC_ARCH_FEATURES), SUCCESS);
        assert_eq!(arch_features(0x8000_8000), NOT_SUPPORTED);
    }

    #[test]
    fn cpu_on_checks_target_and_entry() {
        let ram = |a: u64| (0x4000_0000..0x4400_0000).contains(&a);
        assert_eq!(check_cpu_on(3, 0x4000_0000, 4, ram), Ok(3));
        assert_eq!(check_cpu_on(4, 0x4000_0000, 4, ram), Err(CpuOnError::NoSuchCpu));
        assert_eq!(check_cpu_on(0x100, 0x4000_0000, 4, ram), Err(CpuOnError::NoSuchCpu));
        assert_eq!(check_cpu_on(1 << 32, 0x4000_0000, 4, ram), Err(CpuOnError::NoSuchCpu));
        // MPIDR bit 31 (RES1) and the MT/U bits are not affinity.
        assert_eq!(check_cpu_on((1 << 31) | 1, 0x4000_0000, 4, ram), Ok(1));
        assert_eq!(check_cpu_on(1, 0x4000_0002, 4, ram), Err(CpuOnError::BadEntry));
        assert_eq!(check_cpu_on(1, 0x4400_0000, 4, ram), Err(CpuOnError::BadEntry));
        assert_eq!(CpuOnError::NoSuchCpu.code(), -2);
        assert_eq!((vcpu_of(3, 4), vcpu_of(4, 4), vcpu_of(0x100, 4)), (Some(3), None, None));
        assert_eq!(CpuOnError::BadEntry.code(), -9);
    }
}
