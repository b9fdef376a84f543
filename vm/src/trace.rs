//! Fault trace records: written by the hypervisor (through semihosting), read by `tools`.
//!
//! A trace file is a 16-byte header (`TRACE_MAGIC`, version, record size) followed by fixed-size
//! little-endian records, one per stage-2 fault the hypervisor handled, in the order each physical
//! CPU flushed them (records of one vCPU are in order; `seq` orders them globally).
//!
//! Record layout (32 bytes, little endian):
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | `seq`: global sequence number |
//! | 8..16 | `ipa`: faulting IPA (page offset kept) |
//! | 16..18 | `vm` id |
//! | 18..20 | `vcpu` index in its VM |
//! | 20 | access: 0 read, 1 write, 2 exec |
//! | 21 | case (`FaultCase` as u8), 0xff when the fault failed before a case was chosen |
//! | 22 | result: 0 resolved, otherwise `FaultError` as u8; 0x80 = MMIO emulated, 0x81 = abort injected |
//! | 23 | neighbours mapped |
//! | 24 | refaults |
//! | 25..32 | reserved, zero |

use crate::addr::{Access, Ipa};
use crate::fault::{FaultCase, FaultError};

/// First 8 bytes of a trace file.
pub const TRACE_MAGIC: [u8; 8] = *b"UVMHYPTR";
/// Format version written after the magic.
pub const TRACE_VERSION: u32 = 1;
/// Size of the file header.
pub const HEADER_BYTES: usize = 16;
/// Size of one record.
pub const RECORD_BYTES: usize = 32;

/// How a trapped access ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// The engine mapped the page.
    Resolved,
    /// The engine refused the fault.
    Failed(FaultError),
    /// The IPA was a device window; the access was emulated.
    Mmio,
    /// No RAM or device: a synchronous external abort was injected into the guest.
    AbortInjected,
}

/// One trace record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Record {
    pub seq: u64,
    pub ipa: Ipa,
    pub vm: u16,
    pub vcpu: u16,
    pub access: Access,
    pub case: Option<FaultCase>,
    pub outcome: Outcome,
    pub neighbours: u8,
    pub refaults: u8,
}

/// Why bytes could not be decoded as a trace.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DecodeError {
    /// The header's magic, version or record size is wrong.
    BadHeader,
    /// The length is not header + a whole number of records.
    Truncated,
    /// A field holds a value no writer produces.
    BadField { record: usize },
}

/// The file header.
pub fn header() -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[..8].copy_from_slice(&TRACE_MAGIC);
    h[8..12].copy_from_slice(&TRACE_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(RECORD_BYTES as u32).to_le_bytes());
    h
}

impl Record {
    /// Encode into the on-disk layout.
    pub fn encode(&self) -> [u8; RECORD_BYTES] {
        let mut b = [0u8; RECORD_BYTES];
        b[0..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8..16].copy_from_slice(&self.ipa.0.to_le_bytes());
        b[16..18].copy_from_slice(&self.vm.to_le_bytes());
        b[18..20].copy_from_slice(&self.vcpu.to_le_bytes());
        b[20] = match self.access {
            Access::Read => 0,
            Access::Write => 1,
            Access::Exec => 2,
        };
        b[21] = self.case.map_or(0xff, |c| c as u8);
        b[22] = match self.outcome {
            Outcome::Resolved => 0,
            Outcome::Failed(e) => e as u8,
            Outcome::Mmio => 0x80,
            Outcome::AbortInjected => 0x81,
        };
        b[23] = self.neighbours;
        b[24] = self.refaults;
        b
    }

    /// Decode one record; `index` is only used in the error.
    pub fn decode(b: &[u8; RECORD_BYTES], index: usize) -> Result<Record, DecodeError> {
        let bad = DecodeError::BadField { record: index };
        let word = |r: core::ops::Range<usize>| {
            let mut w = [0u8; 8];
            w[..r.len()].copy_from_slice(&b[r]);
            u64::from_le_bytes(w)
        };
        let access = match b[20] {
            0 => Access::Read,
            1 => Access::Write,
            2 => Access::Exec,
            _ => return Err(bad),
        };
        let case = match b[21] {
            0xff => None,
            c => Some(case_from_u8(c).ok_or(bad)?),
        };
        let outcome = match b[22] {
            0 => Outcome::Resolved,
            0x80 => Outcome::Mmio,
            0x81 => Outcome::AbortInjected,
            e => Outcome::Failed(error_from_u8(e).ok_or(bad)?),
        };
        Ok(Record {
            seq: word(0..8),
            ipa: Ipa(word(8..16)),
            vm: word(16..18) as u16,
            vcpu: word(18..20) as u16,
            access,
            case,
            outcome,
            neighbours: b[23],
            refaults: b[24],
        })
    }
}

/// Check a whole trace's header and length; returns the number of records.
pub fn check(bytes: &[u8]) -> Result<usize, DecodeError> {
    if bytes.len() < HEADER_BYTES || bytes[..HEADER_BYTES] != header() {
        return Err(DecodeError::BadHeader);
    }
    let body = bytes.len() - HEADER_BYTES;
    if !body.is_multiple_of(RECORD_BYTES) {
        return Err(DecodeError::Truncated);
    }
    Ok(body / RECORD_BYTES)
}

/// Iterate over the records of a checked trace.
pub fn records(
    bytes: &[u8],
) -> Result<impl Iterator<Item = Result<Record, DecodeError>> + '_, DecodeError> {
    check(bytes)?;
    Ok(bytes[HEADER_BYTES..]
        .chunks_exact(RECORD_BYTES)
        .enumerate()
        .map(|(i, c)| {
            let mut r = [0u8; RECORD_BYTES];
            r.copy_from_slice(c);
            Record::decode(&r, i)
        }))
}

fn case_from_u8(v: u8) -> Option<FaultCase> {
    use FaultCase::*;
    [
        Layerless0, Anon1A, AnonCow1B, Obj2A, ObjCopy2B, Zero2B, ObjFault,
    ]
    .into_iter()
    .find(|c| *c as u8 == v)
}

fn error_from_u8(v: u8) -> Option<FaultError> {
    use FaultError::*;
    [NoMapping, Protection, NoBacking, NoMemory, Io, Restart]
        .into_iter()
        .find(|e| *e as u8 == v)
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    #[test]
    fn record_round_trips() {
        let r = Record {
            seq: 7,
            ipa: Ipa(0x4000_1234),
            vm: 3,
            vcpu: 1,
            access: Access::Write,
            case: Some(FaultCase::AnonCow1B),
            outcome: Outcome::Resolved,
            neighbours: 4,
            refaults: 1,
        };
        let mut file: Vec<u8> = header().to_vec();
        file.extend_from_slice(&r.encode());
        let back: Vec<_> = records(&file).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(back, [r]);
    }

    #[test]
    fn truncated_and_corrupt_traces_are_rejected() {
        let mut file: Vec<u8> = header().to_vec();
        file.extend_from_slice(&[0u8; RECORD_BYTES - 1]);
        assert_eq!(check(&file).err(), Some(DecodeError::Truncated));
        assert_eq!(check(b"garbage").err(), Some(DecodeError::BadHeader));
        let mut file: Vec<u8> = header().to_vec();
        let mut rec = [0u8; RECORD_BYTES];
        rec[20] = 9;
        file.extend_from_slice(&rec);
        let first = records(&file).unwrap().next().unwrap();
        assert_eq!(first, Err(DecodeError::BadField { record: 0 }));
    }
}
