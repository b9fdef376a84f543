//! Guest memory a hypercall names: an (IPA, length) pair from a guest is an allegation until
//! [`GuestRange::check`] accepts it; reads then fault pages in as the guest itself would.

use alloc::vec;
use alloc::vec::Vec;

use super::machine::Vcpu;
use super::trace::Trace;
use vm::fault::{FaultError, FaultFlags};
use vm::map::Map;
use vm::{Access, Ipa, PAGE_SIZE};

/// A guest buffer that has been checked to lie inside the VM's RAM entries.
#[derive(Clone, Copy, Debug)]
pub struct GuestRange {
    start: Ipa,
    len: usize,
}

impl GuestRange {
    /// `[ipa, ipa + len)` if it is at most `max` bytes and both ends are in the VM's map.
    pub fn check(map: &Map, ipa: u64, len: u64, max: u64) -> Option<GuestRange> {
        if len > max {
            return None;
        }
        let start = Ipa(ipa);
        let last = start.checked_add(len.checked_sub(1)?)?;
        (map.contains(start) && map.contains(last)).then_some(GuestRange { start, len: len as usize })
    }

    /// Copy the bytes out of guest memory, faulting pages in for reading as the guest would.
    ///
    /// `Map::copy_in` faults what it needs itself but does not say which pages it faulted or
    /// how (that would take a change of its API in `vm`), so every page of the range that is not
    /// mapped readable is faulted here first, through the same `vm::fault::fault` call, and each
    /// such fault is traced as a Read by the vCPU `v`; `copy_in` then finds the pages mapped. (A
    /// page unmapped again in between, by another CPU, is refaulted by `copy_in` and not traced.)
    pub fn read(&self, trace: &Trace, v: &Vcpu) -> Result<Vec<u8>, FaultError> {
        let map = v.map();
        let end = self.start.0 + self.len as u64;
        let mut page = self.start.page_base();
        while page.0 < end {
            let readable = map.mapped_page(page).is_some_and(|(_, prot)| prot.contains(Access::Read.prot()));
            if !readable {
                let r = vm::fault::fault(map, page, Access::Read, FaultFlags::empty());
                trace.fault(v, page, Access::Read, &r);
                r?;
            }
            page = Ipa(page.0 + PAGE_SIZE);
        }
        let mut buf = vec![0u8; self.len];
        map.copy_in(self.start, &mut buf)?;
        Ok(buf)
    }
}
