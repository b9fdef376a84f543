//! What a trap handler wants next for its vCPU. Handlers return it; only the run loop
//! (`run.rs`) acts on it — queues, sleeps, powers off — so no handler touches the run queue.

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::machine::Vcpu;
use hyp::runq::VcpuId;

pub enum Next {
    /// Re-enter the guest.
    Resume,
    /// Give up the physical CPU; back to the tail of the run queue.
    Yield,
    /// WFI: sleep until the system counter reaches `until`, or until woken.
    Sleep { until: u64 },
    /// Sleep until woken (a device parked the vCPU: `device::Reply::Park`).
    Park,
    /// PSCI CPU_OFF: park the vCPU in its VM until a CPU_ON.
    Off,
    /// The VM stopped: drop the vCPU.
    Drop,
    /// Re-enter the guest, and make these powered-on vCPUs runnable (PSCI CPU_ON, a clone's).
    /// Boxed: a vCPU moves by its `Box` between queue, CPU and slots, never by copy.
    #[allow(clippy::vec_box)]
    Start(Vec<Box<Vcpu>>),
    /// Re-enter the guest, and wake these sleeping vCPUs (a device's event).
    Wake(Vec<VcpuId>),
}

impl Next {
    /// The run loop may re-enter the guest at once.
    pub fn resumes(&self) -> bool {
        matches!(self, Next::Resume | Next::Start(_) | Next::Wake(_))
    }
}
