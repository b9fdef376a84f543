//! Guest memory read and written by the hypervisor through a map (`copy_in`, `copy_out`), as
//! the guest would: pages are faulted in and held BUSY while copied.

use super::Map;
use crate::addr::{Access, Ipa, Pa, PAGE_SIZE};
use crate::fault::{fault, FaultError, FaultFlags};
use crate::page::{Busy, Owner};
use crate::pmap::Pmap;

impl Map {
    /// Read guest memory at `ipa` (faulting pages in for reading as the guest would).
    pub fn copy_in(&self, ipa: Ipa, buf: &mut [u8]) -> Result<(), FaultError> {
        self.copy(ipa, buf.len(), Access::Read, |pa, range| {
            if let Some(b) = buf.get_mut(range) {
                self.uvm.mem().read(pa, b);
            }
        })
    }

    /// Write guest memory at `ipa` (faulting pages in for writing as the guest would).
    pub fn copy_out(&self, ipa: Ipa, buf: &[u8]) -> Result<(), FaultError> {
        self.copy(ipa, buf.len(), Access::Write, |pa, range| {
            if let Some(b) = buf.get(range) {
                self.uvm.mem().write(pa, b);
            }
        })
    }

    /// Copy page by page. Each page is held BUSY while `f` runs (the map lock is taken only to
    /// find and claim it), so the pagedaemon, a free or a fork cannot pull it away mid-copy; a
    /// fork meeting it is refused as transient (`MapError::Busy`).
    ///
    /// # Locks
    /// Takes MAPS (read), PMAP, then PAGE (`hold`); drops them before `f` runs (the page's BUSY
    /// stands for them) and before faulting. Exit: nothing.
    fn copy(
        &self,
        ipa: Ipa,
        len: usize,
        access: Access,
        mut f: impl FnMut(Pa, core::ops::Range<usize>),
    ) -> Result<(), FaultError> {
        let mut done = 0usize;
        while done < len {
            let at = ipa.checked_add(done as u64).ok_or(FaultError::NoMapping)?;
            let n = ((PAGE_SIZE - at.page_offset()) as usize).min(len - done);
            let mut copied = false;
            for _ in 0..4 {
                if let Some((pa, busy)) = self.hold(at, access) {
                    f(Pa(pa.0 + at.page_offset()), done..done + n);
                    self.uvm.unbusy(busy);
                    copied = true;
                    break;
                }
                fault(self, at, access, FaultFlags::empty())?;
            }
            if !copied {
                return Err(FaultError::Restart);
            }
            done += n;
        }
        Ok(())
    }

    /// If `ipa` is mapped with `access` to a pool page that is not BUSY, make it BUSY and return
    /// it; the caller unbusies it (with the token: nobody else can, see `page.rs`).
    ///
    /// # Locks
    /// Takes MAPS (read), PMAP (the lookup), then PAGE; exit: nothing.
    fn hold(&self, ipa: Ipa, access: Access) -> Option<(Pa, Busy)> {
        let _g = self.read();
        let (pa, prot) = self.stage2.extract(ipa.page_base())?;
        if !prot.contains(access.prot()) {
            return None;
        }
        let pg = self.uvm.page_at(pa)?;
        let mut m = self.uvm.page_meta(pg).lock();
        if matches!(m.owner, Owner::Free | Owner::Table) {
            return None;
        }
        Some((pa, Busy::claim(&mut m, pg)?))
    }
}
