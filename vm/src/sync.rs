//! The engine's lock types, in one place so that a test build can swap them.
//!
//! Normally these are `spin`'s locks, whose waiters call a relax function the embedder may set
//! ([`set_relax`]; a spin hint until then): no wrapper, no cost on the fault path while a lock
//! is free. With the `shuttle` feature they are the `shuttle` crate's locks behind the same API
//! (`lock()`, `read()`, `write()` return the guard; `get_mut()` the value), so every acquisition
//! is a point where shuttle's scheduler may switch threads and `vm/tests/interleave.rs` can
//! explore the interleavings of engine operations deterministically. Shuttle's locks only work
//! inside a shuttle execution: a `shuttle` build is for that test alone.

#[cfg(not(feature = "shuttle"))]
pub use native::{set_relax, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// `spin`'s locks with a waiting strategy the embedder may choose ([`set_relax`]).
///
/// Why: a lock holder's CPU can stop running while it holds the lock — under QEMU's TCG a vCPU
/// is a host thread the host deschedules (on 2 host cores QEMU's I/O thread, two vCPU threads
/// and the runner compete), as a guest vCPU is descheduled under any hypervisor. A waiter that
/// only spins then burns its own CPU for the holder's whole time off, and on a host with fewer
/// cores than busy threads keeps the holder off longer. Paravirtualised spinlocks (Linux's
/// `pv_wait`) stop spinning after a while and give the CPU up; the engine knows neither CPUs
/// nor time, so it leaves the "after a while" and the "give up" to the embedder.
#[cfg(not(feature = "shuttle"))]
mod native {
    pub use spin::mutex::MutexGuard;
    pub use spin::rwlock::RwLockReadGuard;

    /// The engine's mutex: `spin`'s, waiting through [`Relax`].
    pub type Mutex<T> = spin::mutex::Mutex<T, Relax>;
    /// The engine's reader-writer lock: `spin`'s, waiting through [`Relax`].
    pub type RwLock<T> = spin::rwlock::RwLock<T, Relax>;
    /// Its write guard (which names the waiting strategy).
    pub type RwLockWriteGuard<'a, T> = spin::rwlock::RwLockWriteGuard<'a, T, Relax>;

    /// What a waiter does between two looks at a lock it found taken.
    static RELAX: spin::Once<fn()> = spin::Once::new();

    /// Have every waiter on an engine lock call `relax` between two looks at the lock, instead
    /// of only [`core::hint::spin_loop`] (see the module documentation). The first call wins.
    ///
    /// # Locks
    /// `relax` runs with any of the engine's locks held (the waiter's, by lock order) and must
    /// take none of them.
    pub fn set_relax(relax: fn()) {
        RELAX.call_once(|| relax);
    }

    /// `spin`'s waiting strategy for the engine's locks: the embedder's, else a spin hint.
    pub struct Relax;

    impl spin::RelaxStrategy for Relax {
        #[inline]
        fn relax() {
            match RELAX.get() {
                Some(relax) => relax(),
                None => core::hint::spin_loop(),
            }
        }
    }
}

#[cfg(feature = "shuttle")]
pub use controlled::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

#[cfg(feature = "shuttle")]
mod controlled {
    use shuttle::sync::PoisonError;

    pub use shuttle::sync::{MutexGuard, RwLockReadGuard, RwLockWriteGuard};

    /// A mutex whose every `lock` is a shuttle scheduling point.
    #[derive(Debug, Default)]
    pub struct Mutex<T>(shuttle::sync::Mutex<T>);

    impl<T> Mutex<T> {
        /// A new unlocked mutex.
        pub const fn new(value: T) -> Mutex<T> {
            Mutex(shuttle::sync::Mutex::new(value))
        }

        /// Lock it (a panicking holder is a test failure already: poisoning is ignored).
        pub fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner)
        }

        /// The value, through exclusive access (no locking).
        pub fn get_mut(&mut self) -> &mut T {
            self.0.get_mut().unwrap_or_else(PoisonError::into_inner)
        }
    }

    /// A reader-writer lock whose every `read` and `write` is a shuttle scheduling point.
    #[derive(Debug, Default)]
    pub struct RwLock<T>(shuttle::sync::RwLock<T>);

    impl<T> RwLock<T> {
        /// A new unlocked lock.
        pub const fn new(value: T) -> RwLock<T> {
            RwLock(shuttle::sync::RwLock::new(value))
        }

        /// Lock it shared.
        pub fn read(&self) -> RwLockReadGuard<'_, T> {
            self.0.read().unwrap_or_else(PoisonError::into_inner)
        }

        /// Lock it exclusive.
        pub fn write(&self) -> RwLockWriteGuard<'_, T> {
            self.0.write().unwrap_or_else(PoisonError::into_inner)
        }

        /// The value, through exclusive access (no locking).
        pub fn get_mut(&mut self) -> &mut T {
            self.0.get_mut().unwrap_or_else(PoisonError::into_inner)
        }
    }
}
