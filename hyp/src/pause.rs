//! Pausing a whole VM so it can be cloned from outside (the scenario's clone point): the rules of
//! the rendezvous, generic over the vCPU type so they are host-tested; `virt::pause` is where the
//! run loop meets them.
//!
//! A template VM has a marker line; when its console prints a line containing it, the pause is
//! *requested* (once). From then on the VM is *held*: no vCPU of it is entered — a CPU that takes
//! one from the run queue, or one that comes back from a guest exit, *sets it aside* here instead
//! ([`Pause::arrive`]), whatever it was about to do (run, sleep in WFI, wait for a BUSY page, park
//! in a device: each of those re-executes or returns early, which is allowed); a vCPU powering off
//! meanwhile simply leaves the count. When the vCPUs set aside are every powered-on vCPU of the
//! VM, the one that arrived last gets them all back ([`Arrival::Complete`]) and does the clone,
//! then [`Pause::finish`] un-holds the VM and the vCPUs go back to the run queue.
//!
//! If the VM stops instead, vCPUs arriving are handed back to be dropped ([`Arrival::Stopped`])
//! and [`Pause::drain`] empties the set, so nothing waits for a VM that is gone.
//!
//! # Locks
//! The set-aside list is a leaf (taken alone, for a push or a take).

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use spin::Mutex;

/// One VM's pause point and rendezvous.
pub struct Pause<T> {
    /// The marker line fragment of a template (`None`: never paused by its console).
    at: Option<Vec<u8>>,
    /// Children to make at the pause.
    pub children: u32,
    /// The marker is still to be seen (it triggers once).
    armed: AtomicBool,
    /// The VM is held: its vCPUs are set aside, not entered.
    held: AtomicBool,
    /// The first arrival has rounded up the queued and running vCPUs.
    rounded_up: AtomicBool,
    /// The system counter when the pause was requested (the clone's latency starts there).
    requested_at: AtomicU64,
    aside: Mutex<Vec<T>>,
}

/// What [`Pause::arrive`] makes of a vCPU arriving.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival<T> {
    /// Set aside; others are still to come. `first`: this was the first arrival (it rounds up the
    /// rest: queued vCPUs, and kicks for running ones).
    Waiting { first: bool },
    /// Every powered-on vCPU is here: the caller clones, then calls [`Pause::finish`].
    Complete(Vec<T>),
    /// The VM stopped: drop this vCPU (if one arrived).
    Stopped(Option<T>),
}

impl<T> Pause<T> {
    /// The pause of a VM that clones itself into `children` at the first console line
    /// containing `at` (`None`: a VM without a scenario clone point).
    pub fn new(at: Option<Vec<u8>>, children: u32) -> Pause<T> {
        let armed = at.as_ref().is_some_and(|a| !a.is_empty()) && children > 0;
        Pause {
            at,
            children,
            armed: AtomicBool::new(armed),
            held: AtomicBool::new(false),
            rounded_up: AtomicBool::new(false),
            requested_at: AtomicU64::new(0),
            aside: Mutex::new(Vec::new()),
        }
    }

    /// A console line of the VM at counter `now`: true if it holds the marker and the pause was
    /// requested by it (the first such line only).
    pub fn on_line(&self, line: &[u8], now: u64) -> bool {
        let Some(at) = self.at.as_deref() else { return false };
        if !self.armed.load(Ordering::Acquire) || !line.windows(at.len()).any(|w| w == at) {
            return false;
        }
        if self.armed.swap(false, Ordering::AcqRel) {
            self.requested_at.store(now, Ordering::Relaxed);
            // SeqCst: a CPU that stores its `running` slot and then checks `held` either sees
            // the pause or is seen running by the round-up (which reads the slots after this).
            self.held.store(true, Ordering::SeqCst);
            return true;
        }
        false
    }

    /// The VM is held: set its vCPUs aside instead of entering them.
    pub fn held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }

    /// The counter value at the request.
    pub fn requested_at(&self) -> u64 {
        self.requested_at.load(Ordering::Relaxed)
    }

    /// A vCPU of the held VM arrives (`None`: one powered off, leaving the count). `online`
    /// reads how many vCPUs are powered on, `stopped` whether the VM stopped; both are read
    /// under the list's lock, after this arrival is counted, so exactly one arrival — the last
    /// — sees the set complete.
    ///
    /// # Locks
    /// Takes the set-aside list alone.
    pub fn arrive(&self, v: Option<T>, online: impl Fn() -> u32, stopped: impl Fn() -> bool) -> Arrival<T> {
        let mut aside = self.aside.lock();
        if stopped() {
            return Arrival::Stopped(v);
        }
        aside.extend(v);
        let on = online() as usize;
        if on != 0 && aside.len() >= on {
            return Arrival::Complete(core::mem::take(&mut *aside));
        }
        Arrival::Waiting { first: !self.rounded_up.swap(true, Ordering::AcqRel) }
    }

    /// The clone is done: the VM runs again (its vCPUs are the caller's to queue).
    pub fn finish(&self) {
        self.held.store(false, Ordering::SeqCst);
    }

    /// Every vCPU set aside (the VM stopped: they are dropped).
    ///
    /// # Locks
    /// Takes the set-aside list alone.
    pub fn drain(&self) -> Vec<T> {
        core::mem::take(&mut *self.aside.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use core::cell::Cell;

    fn template() -> Pause<u32> {
        Pause::new(Some(b"clone-point".to_vec()), 4)
    }

    #[test]
    fn the_marker_requests_the_pause_once() {
        let p = template();
        assert!(!p.on_line(b"booting", 1) && !p.held());
        assert!(p.on_line(b"uvmhyp-linux: clone-point\r", 7));
        assert!(p.held() && p.requested_at() == 7);
        assert!(!p.on_line(b"clone-point", 9), "a second marker line is a plain line");
        assert_eq!(p.requested_at(), 7);
        let plain: Pause<u32> = Pause::new(None, 4);
        assert!(!plain.on_line(b"clone-point", 1) && !plain.held());
        let none: Pause<u32> = Pause::new(Some(b"clone-point".to_vec()), 0);
        assert!(!none.on_line(b"clone-point", 1), "no children: nothing to pause for");
    }

    #[test]
    fn the_last_of_the_online_vcpus_completes_the_set() {
        let p = template();
        p.on_line(b"clone-point", 0);
        let online = Cell::new(3);
        assert_eq!(p.arrive(Some(1), || online.get(), || false), Arrival::Waiting { first: true });
        assert_eq!(p.arrive(Some(2), || online.get(), || false), Arrival::Waiting { first: false });
        // The third powers off instead of arriving: the count shrinks, the set is complete.
        online.set(2);
        assert_eq!(p.arrive(None, || online.get(), || false), Arrival::Complete(vec![1, 2]));
        p.finish();
        assert!(!p.held() && p.drain().is_empty());
    }

    #[test]
    fn a_vcpu_powered_on_during_the_pause_is_waited_for() {
        let p = template();
        p.on_line(b"clone-point", 0);
        let online = Cell::new(1);
        // vCPU 0, still running, powers on vCPU 1: two are online before either arrives.
        online.set(2);
        assert_eq!(p.arrive(Some(1), || online.get(), || false), Arrival::Waiting { first: true });
        assert_eq!(p.arrive(Some(0), || online.get(), || false), Arrival::Complete(vec![1, 0]));
    }

    #[test]
    fn a_stopped_vm_hands_its_vcpus_back() {
        let p = template();
        p.on_line(b"clone-point", 0);
        assert_eq!(p.arrive(Some(1), || 2, || false), Arrival::Waiting { first: true });
        assert_eq!(p.arrive(Some(2), || 2, || true), Arrival::Stopped(Some(2)));
        assert_eq!(p.drain(), vec![1]);
    }
}
