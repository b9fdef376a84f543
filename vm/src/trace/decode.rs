//! Decoding trace files of both versions (layouts in the parent module). Never panics: every
//! length is checked before a field is read, and every code is looked up, not trusted.

use alloc::vec::Vec;

use super::*;

/// Decode a whole trace file, version 1 or 2. The first bad record ends decoding with an error
/// that names it.
pub fn decode(bytes: &[u8]) -> Result<Trace, DecodeError> {
    if bytes.len() < 12 || bytes[..8] != TRACE_MAGIC {
        return Err(DecodeError::BadHeader);
    }
    match u32_at(bytes, 8) {
        1 => decode_v1(bytes),
        2 => decode_v2(bytes),
        v => Err(DecodeError::UnknownVersion(v)),
    }
}

fn decode_v1(bytes: &[u8]) -> Result<Trace, DecodeError> {
    if bytes.len() < V1_HEADER_BYTES {
        return Err(DecodeError::BadHeader);
    }
    if u32_at(bytes, 12) != V1_RECORD_BYTES as u32 {
        return Err(DecodeError::BadHeaderField("record size"));
    }
    let body = &bytes[V1_HEADER_BYTES..];
    let mut entries = Vec::with_capacity(body.len() / V1_RECORD_BYTES);
    for (record, b) in body.chunks(V1_RECORD_BYTES).enumerate() {
        let f = Fields {
            b,
            record,
            offset: V1_HEADER_BYTES + record * V1_RECORD_BYTES,
        };
        if b.len() < V1_RECORD_BYTES {
            return Err(f.truncated());
        }
        f.reserved(25..32)?;
        entries.push(Entry::Fault(Record {
            seq: f.u64(0),
            ipa: Ipa(f.u64(8)),
            vm: f.u16(16),
            vcpu: f.u16(18),
            access: f.access(20)?,
            case: f.case(21)?,
            outcome: f.outcome(22)?,
            neighbours: b[23],
            refaults: b[24],
            timing: None,
        }));
    }
    Ok(Trace {
        version: Version::V1,
        freq: None,
        entries,
    })
}

fn decode_v2(bytes: &[u8]) -> Result<Trace, DecodeError> {
    if bytes.len() < HEADER_BYTES {
        return Err(DecodeError::BadHeader);
    }
    if u32_at(bytes, 12) != 0 {
        return Err(DecodeError::BadHeaderField("reserved"));
    }
    let freq = u64_at(bytes, 16);
    if freq == 0 {
        return Err(DecodeError::BadHeaderField("freq"));
    }
    let mut entries = Vec::new();
    let mut offset = HEADER_BYTES;
    let mut record = 0;
    while offset < bytes.len() {
        let tag = bytes[offset];
        let kind = Kind::from_tag(tag).ok_or(DecodeError::BadKind {
            record,
            offset,
            tag,
        })?;
        let end = offset + kind.bytes();
        let f = Fields {
            b: &bytes[offset..end.min(bytes.len())],
            record,
            offset,
        };
        if end > bytes.len() {
            return Err(f.truncated());
        }
        entries.push(f.entry(kind)?);
        offset = end;
        record += 1;
    }
    Ok(Trace {
        version: Version::V2,
        freq: Some(freq),
        entries,
    })
}

/// One record's bytes (exactly its kind's size, once checked), and where it is for errors.
struct Fields<'a> {
    b: &'a [u8],
    record: usize,
    offset: usize,
}

impl Fields<'_> {
    fn truncated(&self) -> DecodeError {
        DecodeError::Truncated {
            record: self.record,
            offset: self.offset,
        }
    }

    fn bad(&self, field: &'static str) -> DecodeError {
        DecodeError::BadField {
            record: self.record,
            offset: self.offset,
            field,
        }
    }

    fn u16(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.b[at], self.b[at + 1]])
    }

    fn u32(&self, at: usize) -> u32 {
        u32_at(self.b, at)
    }

    fn u64(&self, at: usize) -> u64 {
        u64_at(self.b, at)
    }

    fn reserved(&self, r: core::ops::Range<usize>) -> Result<(), DecodeError> {
        if self.b[r].iter().all(|&x| x == 0) {
            Ok(())
        } else {
            Err(self.bad("reserved"))
        }
    }

    fn access(&self, at: usize) -> Result<Access, DecodeError> {
        [Access::Read, Access::Write, Access::Exec]
            .into_iter()
            .find(|a| access_code(*a) == self.b[at])
            .ok_or(self.bad("access"))
    }

    fn case(&self, at: usize) -> Result<Option<FaultCase>, DecodeError> {
        use FaultCase::*;
        match self.b[at] {
            0xff => Ok(None),
            c => [
                Layerless0, Anon1A, AnonCow1B, Obj2A, ObjCopy2B, Zero2B, ObjFault,
            ]
            .into_iter()
            .find(|k| *k as u8 == c)
            .map(Some)
            .ok_or(self.bad("case")),
        }
    }

    fn outcome(&self, at: usize) -> Result<Outcome, DecodeError> {
        use FaultError::*;
        match self.b[at] {
            0 => Ok(Outcome::Resolved),
            0x80 => Ok(Outcome::Mmio),
            0x81 => Ok(Outcome::AbortInjected),
            e => [NoMapping, Protection, NoBacking, NoMemory, Io, Restart]
                .into_iter()
                .find(|k| *k as u8 == e)
                .map(Outcome::Failed)
                .ok_or(self.bad("outcome")),
        }
    }

    /// The version 2 record of `kind` (its length checked).
    fn entry(&self, kind: Kind) -> Result<Entry, DecodeError> {
        let b = self.b;
        Ok(match kind {
            Kind::Fault => {
                if b[6] != 0 {
                    return Err(self.bad("refault reason"));
                }
                Entry::Fault(Record {
                    seq: self.u64(8),
                    ipa: Ipa(self.u64(16)),
                    vm: self.u16(32),
                    vcpu: self.u16(34),
                    access: self.access(1)?,
                    case: self.case(2)?,
                    outcome: self.outcome(3)?,
                    neighbours: b[4],
                    refaults: b[5],
                    timing: Some(Timing {
                        time: self.u64(24),
                        cpu: b[7],
                        cost: self.u32(36),
                    }),
                })
            }
            Kind::Accounting => {
                self.reserved(36..40)?;
                Entry::Accounting(Accounting {
                    time: self.u64(8),
                    cpu: b[1],
                    vm: self.u16(2),
                    resident: self.u32(16),
                    private: self.u32(20),
                    shared: self.u32(24),
                    zero: self.u32(28),
                    swapped: self.u32(32),
                    pool_free: self.u32(4),
                })
            }
            Kind::Event => {
                self.reserved(5..8)?;
                let arg = self.u64(16);
                let what = match b[1] {
                    1 => EventKind::VmStart,
                    2 => EventKind::VmStop(StopStatus::Exited(
                        u32::try_from(arg).map_err(|_| self.bad("exit status"))?,
                    )),
                    3 => EventKind::VmStop(StopStatus::Crashed),
                    4 => EventKind::Clone {
                        from: u16::try_from(arg).map_err(|_| self.bad("clone source"))?,
                    },
                    5 => EventKind::DedupPass { merged: arg },
                    8 => EventKind::VmStop(StopStatus::Reset),
                    _ => return Err(self.bad("event")),
                };
                if matches!(
                    what,
                    EventKind::VmStart | EventKind::VmStop(StopStatus::Crashed | StopStatus::Reset)
                ) && arg != 0
                {
                    return Err(self.bad("reserved"));
                }
                Entry::Event(Event {
                    time: self.u64(8),
                    cpu: b[4],
                    vm: self.u16(2),
                    what,
                })
            }
            Kind::Mmio => {
                self.reserved(33..40)?;
                let direction = match b[32] {
                    0 => Direction::Read,
                    1 => Direction::Write,
                    _ => return Err(self.bad("direction")),
                };
                Entry::Mmio(MmioCount {
                    time: self.u64(8),
                    cpu: b[1],
                    vm: self.u16(2),
                    base: Ipa(self.u64(16)),
                    offset: self.u32(4),
                    direction,
                    count: self.u64(24),
                })
            }
            Kind::Capped => {
                self.reserved(2..4)?;
                Entry::Capped(Capped {
                    time: self.u64(8),
                    cpu: b[1],
                    unwritten: self.u32(4),
                    cap: self.u64(16),
                })
            }
            Kind::Savings => Entry::Savings(Savings {
                time: self.u64(8),
                cpu: b[1],
                max_sharers: self.u16(2),
                pool_free: self.u32(4),
                distinct: self.u32(16),
                shared_frames: self.u32(20),
                saved_clone: self.u32(24),
                saved_image: self.u32(28),
                saved_dedup: self.u32(32),
                pool_used: self.u32(36),
            }),
            Kind::Swap => {
                self.reserved(25..32)?;
                let op = SwapOp::ALL
                    .into_iter()
                    .find(|o| o.code() == b[1])
                    .ok_or(self.bad("swap op"))?;
                let (vm, ipa) = (self.u16(2), Ipa(self.u64(16)));
                if vm == 0 && ipa.0 != 0 {
                    return Err(self.bad("ipa"));
                }
                Entry::Swap(SwapRecord {
                    time: self.u64(8),
                    cpu: b[24],
                    vm,
                    op,
                    slot: self.u32(4),
                    ipa,
                })
            }
            Kind::Scan => {
                self.reserved(2..4)?;
                Entry::Scan(PdScan {
                    time: self.u64(8),
                    cpu: b[1],
                    scanned: self.u32(4),
                    freed: self.u32(16),
                    deactivated: self.u32(20),
                })
            }
        })
    }
}

/// The u32 at `at` (the caller checked the length).
fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

/// The u64 at `at` (the caller checked the length).
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}
