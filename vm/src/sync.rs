//! The engine's lock types, in one place so that a test build can swap them.
//!
//! Normally these are `spin`'s locks, re-exported as they are: no wrapper, no cost on the fault
//! path. With the `shuttle` feature they are the `shuttle` crate's locks behind the same API
//! (`lock()`, `read()`, `write()` return the guard; `get_mut()` the value), so every acquisition
//! is a point where shuttle's scheduler may switch threads and `vm/tests/interleave.rs` can
//! explore the interleavings of engine operations deterministically. Shuttle's locks only work
//! inside a shuttle execution: a `shuttle` build is for that test alone.

#[cfg(not(feature = "shuttle"))]
pub use spin::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

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
