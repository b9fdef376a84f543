//! The engine's locks wait through the embedder's relax function (`vm::sync::set_relax`): a
//! waiter on a taken lock calls it between looks, and still gets the lock once it is free. A
//! test binary of its own: the function is set once per process. (Under the `shuttle` feature the
//! locks are shuttle's, with no relax function: nothing here.)
#![forbid(unsafe_code)]
#![cfg(not(feature = "shuttle"))]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use vm::sync::{set_relax, Mutex, RwLock};

static LOOKS: AtomicUsize = AtomicUsize::new(0);

fn counting_relax() {
    LOOKS.fetch_add(1, Ordering::Relaxed);
    std::thread::yield_now();
}

/// Wait (10 s at most, then fail) until the waiter has looked at the taken lock at least `n`
/// more times than `from`.
fn until_looked(from: usize, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while LOOKS.load(Ordering::Relaxed) < from + n {
        assert!(std::time::Instant::now() < deadline, "the waiter never called the relax function");
        std::thread::yield_now();
    }
}

#[test]
fn waiters_on_taken_engine_locks_call_the_relax_function_and_then_get_the_lock() {
    set_relax(counting_relax);

    // A mutex: the waiter relaxes while the holder keeps it, then takes it.
    let m = Arc::new(Mutex::new(0u32));
    let held = m.lock();
    let from = LOOKS.load(Ordering::Relaxed);
    let waiter = {
        let m = m.clone();
        std::thread::spawn(move || *m.lock() += 1)
    };
    until_looked(from, 3);
    assert_eq!(*held, 0, "the waiter got in while the lock was held");
    drop(held);
    waiter.join().unwrap();
    assert_eq!(*m.lock(), 1);

    // A reader-writer lock: a writer waits through the same function for a reader to leave.
    let rw = Arc::new(RwLock::new(0u32));
    let reading = rw.read();
    let from = LOOKS.load(Ordering::Relaxed);
    let writer = {
        let rw = rw.clone();
        std::thread::spawn(move || *rw.write() = 7)
    };
    until_looked(from, 3);
    assert_eq!(*reading, 0);
    drop(reading);
    writer.join().unwrap();
    assert_eq!(*rw.read(), 7);
}
