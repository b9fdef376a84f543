//! Why a VM stopped, typed, and the one line that says it (README, "What a run prints"):
//!
//! ```text
//! uvmhyp: vm<N> (<name>) exited <status>
//! uvmhyp: vm<N> (<name>) reset
//! uvmhyp: vm<N> (<name>) crashed [<who>]: <what happened>
//! ```
//!
//! A guest's PSCI SYSTEM_RESET stops it as `reset` (it is not restarted: a run is a fixed set of
//! experiments, and a rebooting guest would never end one).
//!
//! `<who>` says whose fault it is: `guest-fault` (the guest did something no machine survives:
//! an exception it cannot take, every vCPU off), `guest-call` (a hypercall or PSCI call the
//! hypervisor had to refuse by stopping the VM), `out-of-memory` (the page pool ran dry),
//! `swap-io` (the swap device failed a read the VM needed), `hypervisor` (a bug or limit of ours:
//! an SError we could not attribute, an engine state that should not exist). `tools` parses the
//! line with [`Stop::parse`]: the form is stable.

use alloc::string::String;
use core::fmt;
use vm::fault::FaultError;

/// How a VM ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// UVMHYP_EXIT with this status, or PSCI SYSTEM_OFF (status 0).
    Exited(u32),
    /// PSCI SYSTEM_RESET.
    Reset,
    /// The hypervisor stopped it.
    Crashed(Crash),
}

/// A crash: whose fault, and what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crash {
    pub cause: Cause,
    pub what: String,
}

/// Whose fault a crash is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    GuestFault,
    GuestCall,
    OutOfMemory,
    SwapIo,
    Hypervisor,
}

impl Cause {
    const ALL: [Cause; 5] = [Cause::GuestFault, Cause::GuestCall, Cause::OutOfMemory, Cause::SwapIo, Cause::Hypervisor];

    /// The word in the console line.
    pub const fn word(self) -> &'static str {
        match self {
            Cause::GuestFault => "guest-fault",
            Cause::GuestCall => "guest-call",
            Cause::OutOfMemory => "out-of-memory",
            Cause::SwapIo => "swap-io",
            Cause::Hypervisor => "hypervisor",
        }
    }

    pub fn from_word(w: &str) -> Option<Cause> {
        Cause::ALL.into_iter().find(|c| c.word() == w)
    }

    /// Whose fault a failed engine fault is when it stops the VM: the pool ran dry, the swap
    /// device failed, or anything else — an engine answer that should not reach a stop (ours).
    pub fn of_fault(e: FaultError) -> Cause {
        match e {
            FaultError::NoMemory => Cause::OutOfMemory,
            FaultError::Io => Cause::SwapIo,
            _ => Cause::Hypervisor,
        }
    }
}

impl Stop {
    /// A crash of `cause` described by `what`.
    pub fn crash(cause: Cause, what: impl Into<String>) -> Stop {
        Stop::Crashed(Crash { cause, what: what.into() })
    }

    /// True for `Exited(0)`, the only stop that is not a failure.
    pub fn is_success(&self) -> bool {
        *self == Stop::Exited(0)
    }

    /// Parse what follows `vm<N> (<name>) ` in the console line (the output of `Display`).
    pub fn parse(text: &str) -> Option<Stop> {
        if let Some(status) = text.strip_prefix("exited ") {
            return status.parse().ok().map(Stop::Exited);
        }
        if text == "reset" {
            return Some(Stop::Reset);
        }
        let rest = text.strip_prefix("crashed [")?;
        let (word, what) = rest.split_once("]: ")?;
        Some(Stop::crash(Cause::from_word(word)?, what))
    }
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Exited(s) => write!(f, "exited {s}"),
            Stop::Reset => write!(f, "reset"),
            Stop::Crashed(c) => write!(f, "crashed [{}]: {}", c.cause.word(), c.what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn every_stop_parses_back_from_its_line() {
        let stops = [Stop::Exited(0), Stop::Exited(224), Stop::Exited(u32::MAX), Stop::Reset]
            .into_iter()
            .chain(Cause::ALL.into_iter().map(|c| Stop::crash(c, "data abort at 0x1000: [x]: y")));
        for s in stops {
            assert_eq!(Stop::parse(&s.to_string()), Some(s.clone()), "{s}");
        }
    }

    #[test]
    fn lines_of_other_forms_do_not_parse() {
        for t in ["exited", "exited -1", "reset now", "crashed: old form", "crashed [nobody]: x", "crashed [guest-fault] x", ""] {
            assert_eq!(Stop::parse(t), None, "{t:?}");
        }
    }

    #[test]
    fn failed_faults_blame_the_pool_the_swap_device_or_us() {
        assert_eq!(Cause::of_fault(FaultError::NoMemory), Cause::OutOfMemory);
        assert_eq!(Cause::of_fault(FaultError::Io), Cause::SwapIo);
        assert_eq!(Cause::of_fault(FaultError::NoBacking), Cause::Hypervisor);
    }

    #[test]
    fn only_exit_zero_is_success() {
        assert!(Stop::Exited(0).is_success());
        assert!(!Stop::Exited(1).is_success());
        assert!(!Stop::crash(Cause::Hypervisor, "x").is_success());
    }
}
