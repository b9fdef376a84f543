//! The scheduler's queues, and nothing else: runnable vCPUs in FIFO order, and sleepers — vCPUs
//! waiting for a deadline (WFI), for a wake-up (a device parked them), or both. Generic over the
//! vCPU type so the rules are host-tested; `virt::run` owns the policy (time slice, idling).
//!
//! Any vCPU can be woken by its id ([`RunQueue::wake`]): that is how an interrupt for a sleeping
//! vCPU, or a device completing what a parked vCPU waits for, makes it runnable at once.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// A vCPU's identity: (VM id, vCPU index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct VcpuId {
    pub vm: u16,
    pub index: u16,
}

/// What the queues need to know of a vCPU.
pub trait Queued {
    fn id(&self) -> VcpuId;
}

struct Sleeper<T> {
    /// Counter value it wakes at; `None`: only [`RunQueue::wake`] wakes it.
    until: Option<u64>,
    vcpu: T,
}

/// Runnable vCPUs and sleepers. Callers hold it under one lock (a leaf: push, pop, scan).
pub struct RunQueue<T> {
    ready: VecDeque<T>,
    sleepers: Vec<Sleeper<T>>,
}

impl<T> Default for RunQueue<T> {
    fn default() -> Self {
        RunQueue { ready: VecDeque::new(), sleepers: Vec::new() }
    }
}

impl<T: Queued> RunQueue<T> {
    /// Make `v` runnable, at the tail.
    pub fn push(&mut self, v: T) {
        self.ready.push_back(v);
    }

    /// The head of the queue.
    pub fn pop(&mut self) -> Option<T> {
        self.ready.pop_front()
    }

    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Put `v` to sleep until the counter reaches `until` (or, `None`, until woken).
    pub fn sleep(&mut self, v: T, until: Option<u64>) {
        self.sleepers.push(Sleeper { until, vcpu: v });
    }

    /// Move every sleeper whose deadline is `now` or earlier to the tail, oldest first; returns
    /// how many.
    pub fn wake_due(&mut self, now: u64) -> usize {
        let before = self.ready.len();
        let mut kept = Vec::with_capacity(self.sleepers.len());
        for s in core::mem::take(&mut self.sleepers) {
            if s.until.is_some_and(|t| t <= now) {
                self.ready.push_back(s.vcpu);
            } else {
                kept.push(s);
            }
        }
        self.sleepers = kept;
        self.ready.len() - before
    }

    /// Make the sleeping vCPU `id` runnable now. False if it is not asleep (running, queued,
    /// or off): the caller's event is then seen when it next runs.
    pub fn wake(&mut self, id: VcpuId) -> bool {
        match self.sleepers.iter().position(|s| s.vcpu.id() == id) {
            Some(i) => {
                let s = self.sleepers.remove(i);
                self.ready.push_back(s.vcpu);
                true
            }
            None => false,
        }
    }

    /// The earliest deadline among sleepers.
    pub fn earliest_deadline(&self) -> Option<u64> {
        self.sleepers.iter().filter_map(|s| s.until).min()
    }

    /// Take every vCPU of VM `vm`, queued or asleep (the VM stopped).
    pub fn take_vm(&mut self, vm: u16) -> Vec<T> {
        let mut out = Vec::new();
        let (mine, others): (Vec<T>, Vec<T>) = self.ready.drain(..).partition(|v| v.id().vm == vm);
        self.ready.extend(others);
        out.extend(mine);
        let (mine, others): (Vec<Sleeper<T>>, Vec<Sleeper<T>>) =
            core::mem::take(&mut self.sleepers).into_iter().partition(|s| s.vcpu.id().vm == vm);
        self.sleepers = others;
        out.extend(mine.into_iter().map(|s| s.vcpu));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct V(u16, u16);
    impl Queued for V {
        fn id(&self) -> VcpuId {
            VcpuId { vm: self.0, index: self.1 }
        }
    }

    fn drain(q: &mut RunQueue<V>) -> Vec<(u16, u16)> {
        core::iter::from_fn(|| q.pop()).map(|v| (v.0, v.1)).collect()
    }

    #[test]
    fn ready_is_fifo_and_due_sleepers_join_the_tail_in_order() {
        let mut q = RunQueue::default();
        q.push(V(1, 0));
        q.sleep(V(1, 1), Some(50));
        q.sleep(V(2, 0), Some(10));
        q.sleep(V(2, 1), None);
        q.push(V(3, 0));
        assert_eq!(q.earliest_deadline(), Some(10));
        assert_eq!(q.wake_due(9), 0);
        assert_eq!(q.wake_due(50), 2);
        assert_eq!(drain(&mut q), [(1, 0), (3, 0), (1, 1), (2, 0)]);
        assert_eq!(q.wake_due(u64::MAX), 0, "a parked vCPU has no deadline");
        assert!(!q.has_ready());
    }

    #[test]
    fn wake_moves_exactly_the_named_sleeper() {
        let mut q = RunQueue::default();
        q.sleep(V(1, 0), None);
        q.sleep(V(1, 1), Some(100));
        q.push(V(2, 0));
        assert!(q.wake(VcpuId { vm: 1, index: 1 }));
        assert!(!q.wake(VcpuId { vm: 1, index: 1 }), "already awake");
        assert!(!q.wake(VcpuId { vm: 2, index: 0 }), "queued, not asleep");
        assert_eq!(drain(&mut q), [(2, 0), (1, 1)]);
        assert!(q.wake(VcpuId { vm: 1, index: 0 }));
        assert_eq!(drain(&mut q), [(1, 0)]);
    }

    #[test]
    fn take_vm_removes_its_vcpus_from_both_queues() {
        let mut q = RunQueue::default();
        q.push(V(1, 0));
        q.push(V(2, 0));
        q.sleep(V(1, 1), None);
        q.sleep(V(2, 1), Some(5));
        let mut gone: Vec<(u16, u16)> = q.take_vm(1).into_iter().map(|v| (v.0, v.1)).collect();
        gone.sort();
        assert_eq!(gone, [(1, 0), (1, 1)]);
        assert_eq!(q.wake_due(5), 1);
        assert_eq!(drain(&mut q), [(2, 0), (2, 1)]);
    }
}
