//! How a CPU waits for an engine lock another CPU holds (`vm::sync::set_relax`): spin a while,
//! then nap.
//!
//! Why: under QEMU's TCG each of our CPUs is a host thread, and on a 2-core host the two vCPU
//! threads, QEMU's I/O thread and its workers often want more than two cores: the host
//! deschedules a CPU that holds a lock for milliseconds at a time. A waiter that only spins then
//! spins for all of it, and keeps a host core from the holder (and from the I/O thread). A TCG
//! plugin counting executed instructions over `swapbench`'s ascending pass found about a fifth
//! of them in such spins, mostly on a stage-2 table's lock, which the faulting vCPU and the
//! pagedaemon on the other CPU both take. So after [`SPINS`] looks this CPU naps
//! ([`timer::nap`], WFI: the host thread gives its core up) for [`NAP_US`], as Linux's
//! paravirtualised spinlocks halt after a bounded spin. Measured: the pass executed 91 million
//! instructions instead of 112 million; over 20 interleaved runs each (this and the swap disk's
//! spare-buffer fix, against the build before both), its median time was 212 ms instead of
//! 226 ms and the strided pass's 4.50 s instead of 4.88 s (host time on this noisy 2-core
//! machine: a small gain, within each run's spread).
//!
//! The count is this CPU's over all its waits, not one wait's (the relax call does not know
//! where a wait begins): a CPU naps at most once every [`SPINS`] looks, whichever locks they were
//! at.

use core::sync::atomic::{AtomicU32, Ordering};

use hyp::platform::MAX_CPUS;

use super::{cpu, timer};

/// Looks at a taken lock between two naps: many more than a wait takes while the holder runs,
/// so that ordinary contention never naps. With 256 looks and 20 µs naps the waits napped on
/// ordinary contention and the ascending pass got slower (median 311 ms against 265 ms).
pub const SPINS: u32 = 4096;
/// One nap: as the swap disk's waits (`virtio::NAP_US`), long enough for the host to run
/// another thread.
pub const NAP_US: u64 = 50;

/// Each CPU's looks at taken locks since its last nap.
static LOOKS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// One look at a taken lock (the engine's `Relax`, `vm::sync`): a spin hint, and every
/// [`SPINS`]th time a nap.
///
/// # Locks
/// Runs with the waiter's engine locks held; takes none.
pub fn relax() {
    let Some(looks) = LOOKS.get(cpu::index()) else {
        core::hint::spin_loop();
        return;
    };
    if looks.fetch_add(1, Ordering::Relaxed) + 1 >= SPINS {
        looks.store(0, Ordering::Relaxed);
        timer::nap(NAP_US);
    } else {
        core::hint::spin_loop();
    }
}
