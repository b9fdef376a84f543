//! Who caused an SError: the guest that was running, or the hypervisor's own work.
//!
//! An SError is an *asynchronous* abort (Arm ARM D1.3.4 "Asynchronous exceptions"; DDI 0487,
//! "The Reliability, Availability, and Serviceability (RAS) Extension", chapter D24 in recent
//! issues): a memory system error reported some time after the access that caused it, to
//! whatever the PE runs when it is finally signalled. Under HCR_EL2.AMO = 1 a physical SError is
//! taken to EL2 whenever it is pending while EL1 or EL0 runs, and left pending while EL2 runs with
//! PSTATE.A = 1 (which it always does). So without care an error caused by EL2's work just
//! before entering a guest is taken from the guest and blamed on it, and one caused by the guest
//! just before it trapped stays pending through the next entry and is blamed on the next VM.
//!
//! The fix, as KVM's `__guest_enter`/`__guest_exit` (`arch/arm64/kvm/hyp/entry.S`) does it, is
//! two synchronisation points (`arch/vectors.rs`), each of which collects whatever SError is
//! pending at that moment, so that what is found there has exactly one possible author:
//! - **At guest exit**, before EL2 does any work of its own: every lower-EL vector starts with
//!   `ESB` (Error Synchronization Barrier, FEAT_RAS: with PSTATE.A masked it *defers* a pending
//!   physical SError, recording its syndrome in DISR_EL1 with DISR_EL1.A = 1, instead of taking
//!   it; a NOP without FEAT_RAS), and the exit path reads and clears DISR_EL1. Without FEAT_RAS
//!   (no ESB, no DISR_EL1) the exit path waits for outstanding accesses (`DSB SY; ISB`), looks at
//!   ISR_EL1.A (an SError is pending) and, if so, unmasks PSTATE.A for one instruction so that it
//!   is taken at EL2, in a window the EL2 SError vector recognises by ELR_EL2. Either way the
//!   error was pending when the guest left: [`Seen::AtExit`], the guest's.
//! - **Before guest entry**, after the hypervisor's own work: `DSB SY; ISB`, then the same
//!   ESB + DISR_EL1 (or ISR_EL1.A + window) check. What is pending there arose since the last
//!   exit's check, while EL2 ran: [`Seen::BeforeEntry`], the hypervisor's. The guest is not
//!   entered (KVM returns to the host instead of entering, for the same reason).
//! - In between, an SError taken through the guest's own SError vector ([`Seen::GuestVector`])
//!   became pending while the guest ran (the entry check found none): the guest's.
//!
//! The guest's errors stop its VM (it cannot be given a virtual SError yet: no HCR_EL2.VSE
//! handling, and VSESR_EL2 is not set up); the hypervisor's are reported as a hypervisor event,
//! with the CPU and the syndrome, and the vCPU is entered again. An SError the EL2 vector takes
//! outside both windows cannot happen (EL2 never unmasks PSTATE.A elsewhere): it is a hypervisor
//! bug and panics like any other exception taken at EL2.
//!
//! The syndrome (ESR_ELx.ISS of EC 0x2F, or DISR_EL1, which has the same layout below bit 25):
//! IDS (implementation-defined syndrome), else AET (the error's severity, FEAT_RAS), EA, DFSC.
//!
//! QEMU's TCG raises no physical SError that a guest or EL2 could provoke, so no scenario takes
//! these paths (the `max` scenario runs the FEAT_RAS one, ESB + DISR_EL1, with nothing pending;
//! the others the ISR_EL1 one); the attribution rule is tested here.

use core::fmt;

use tock_registers::register_bitfields;

register_bitfields! {u64,
    /// The ISS of an SError (ESR_ELx with EC 0x2F), and DISR_EL1 (FEAT_RAS).
    pub SERROR_ISS [
        /// DISR_EL1.A: a deferred SError is recorded (DISR_EL1 only).
        A OFFSET(31) NUMBITS(1) [],
        /// Implementation-defined syndrome: the fields below are not the architecture's.
        IDS OFFSET(24) NUMBITS(1) [],
        /// Asynchronous error type (when DFSC says "asynchronous SError interrupt").
        AET OFFSET(10) NUMBITS(3) [
            Uncontainable = 0b000,
            Unrecoverable = 0b001,
            Restartable = 0b010,
            Recoverable = 0b011,
            Corrected = 0b110
        ],
        /// External abort type (implementation defined).
        EA OFFSET(9) NUMBITS(1) [],
        /// Fault status code.
        DFSC OFFSET(0) NUMBITS(6) [Uncategorized = 0b00_0000, AsynchronousSError = 0b01_0001]
    ]
}

/// Where the hypervisor found an SError.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Seen {
    /// Taken through the guest's SError exit vector: it became pending while the guest ran.
    GuestVector,
    /// Pending when the guest exited: deferred by the exit's ESB (DISR_EL1), or taken in the
    /// exit path's unmask window.
    AtExit,
    /// Pending at the check before guest entry: it arose from the hypervisor's work since the
    /// last exit. The guest was not entered.
    BeforeEntry,
}

/// Who is at fault.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Origin {
    /// The VM whose vCPU was running: it is stopped.
    Guest,
    /// The hypervisor: reported, and no VM is blamed.
    Hypervisor,
}

/// Who caused an SError found at `seen`.
pub fn origin(seen: Seen) -> Origin {
    match seen {
        Seen::GuestVector | Seen::AtExit => Origin::Guest,
        Seen::BeforeEntry => Origin::Hypervisor,
    }
}

/// What an SError syndrome says.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Syndrome {
    /// IDS = 1: implementation defined (ISS[23:0]).
    ImplementationDefined(u64),
    /// An asynchronous SError with its severity (FEAT_RAS), or `None` when the AET is reserved.
    Async(Option<SERROR_ISS::AET::Value>),
    /// DFSC 0: an uncategorized error (the only kind without FEAT_RAS).
    Uncategorized,
    /// Another DFSC (raw value).
    Other(u8),
}

impl Syndrome {
    /// Decode an SError ISS or a DISR_EL1 value.
    pub fn decode(iss: u64) -> Syndrome {
        if SERROR_ISS::IDS.is_set(iss) {
            return Syndrome::ImplementationDefined(iss & 0x00ff_ffff);
        }
        match SERROR_ISS::DFSC.read_as_enum(iss) {
            Some(SERROR_ISS::DFSC::Value::AsynchronousSError) => Syndrome::Async(SERROR_ISS::AET.read_as_enum(iss)),
            Some(SERROR_ISS::DFSC::Value::Uncategorized) => Syndrome::Uncategorized,
            None => Syndrome::Other(SERROR_ISS::DFSC.read(iss) as u8),
        }
    }
}

/// The report of an SError from the hypervisor's own work (printed as a warning).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HypervisorSError {
    /// The physical CPU it was found on.
    pub cpu: usize,
    /// DISR_EL1 or ESR_EL2.ISS.
    pub syndrome: u64,
}

impl fmt::Display for HypervisorSError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SError from hypervisor work on CPU {} (syndrome {:#x}: {:?}), found before guest entry; no VM blamed",
            self.cpu,
            self.syndrome,
            Syndrome::decode(self.syndrome)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn an_serror_pending_at_entry_is_the_hypervisors_never_the_guests() {
        // Before: whichever VM ran was stopped for any SError exit.
        assert_eq!(origin(Seen::BeforeEntry), Origin::Hypervisor);
        assert_eq!(origin(Seen::AtExit), Origin::Guest);
        assert_eq!(origin(Seen::GuestVector), Origin::Guest);
    }

    #[test]
    fn syndromes() {
        use SERROR_ISS::AET::Value as Aet;
        // DISR_EL1 after an ESB deferred an uncontainable error: A, DFSC 0b010001, AET 0.
        let disr = (SERROR_ISS::A::SET + SERROR_ISS::DFSC::AsynchronousSError + SERROR_ISS::AET::Uncontainable).value;
        assert_eq!(disr, 0x8000_0011);
        assert_eq!(Syndrome::decode(disr), Syndrome::Async(Some(Aet::Uncontainable)));
        assert_eq!(Syndrome::decode(0x11 | 0b110 << 10), Syndrome::Async(Some(Aet::Corrected)));
        assert_eq!(Syndrome::decode(0x11 | 0b100 << 10), Syndrome::Async(None));
        // An ARMv8.0 SError: ISS 0 (ESR_EL2 0xbe000000).
        assert_eq!(Syndrome::decode(0), Syndrome::Uncategorized);
        assert_eq!(Syndrome::decode(1 << 24 | 0x1234), Syndrome::ImplementationDefined(0x1234));
        assert_eq!(Syndrome::decode(0x10), Syndrome::Other(0x10));
    }

    #[test]
    fn the_report_names_the_cpu_and_blames_no_vm() {
        let r = format!("{}", HypervisorSError { cpu: 2, syndrome: 0x8000_0011 });
        assert!(r.contains("CPU 2") && r.contains("0x80000011") && r.contains("no VM blamed"), "{r}");
    }
}
