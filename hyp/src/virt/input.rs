//! Host console input (README, "Typing into a VM"): bytes from the host's UART (`arch::uart`,
//! QEMU's `-serial stdio`) go to the VM that has focus, through the escape-key rules of
//! `hyp::console_in`: into the VM's host-side queue, then as far as its PL011's receive FIFO has
//! room (the device's [`Device::receive`](super::device::Device::receive)); the rest waits in the
//! queue until the guest reads.
//!
//! Polled from every CPU's run loop, one CPU at a time (`arch::uart` says why polling); a poll
//! that finds no byte costs a try-lock and one UART register read. Focus is brought up to date
//! when bytes arrive (the first VM at the first byte; the next live one if the focused VM
//! stopped), and every move is printed (`uvmhyp: console: input to vm2 (name)`), so a run nobody
//! types into stays quiet.

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::device::{Ctx, Reply};
use super::machine::Vm;
use super::state::Hyp;
use crate::arch::uart;
use hyp::console_in::Action;
use hyp::runq::VcpuId;

/// Bytes taken from the host UART in one poll (a paste of more goes on at the next one; QEMU
/// holds back what its UART has no room for).
const POLL_BYTES: usize = 256;

/// Take the host UART's bytes and hand them out; `wake` makes the vCPUs a raised interrupt
/// names look at it (`run::wake`).
///
/// # Locks
/// Takes the focus lock (try-lock: a CPU that finds it held skips this poll), the VM table for
/// a copy, and each VM's input queue alone; after dropping them, the devices' locks (each
/// device's `receive`).
pub fn poll(h: &Hyp, wake: impl Fn(&Vm, &[VcpuId])) {
    let Some(mut focus) = h.focus.try_lock() else { return };
    let Some(first) = uart::read_byte() else { return };
    let vms = h.vms();
    let live: Vec<u16> = vms.iter().filter(|v| !v.is_stopped()).map(|v| v.number).collect();
    let by_number = |n: u16| vms.iter().find(|v| v.number == n);
    if let Some(moved) = focus.follow(&live) {
        announce(by_number(moved));
    }
    let mut fed: Vec<&Arc<Vm>> = Vec::new();
    let mut next = Some(first);
    for _ in 0..POLL_BYTES {
        let Some(byte) = next.take().or_else(uart::read_byte) else { break };
        match focus.feed(byte, &live) {
            Action::Deliver { vm, byte } => {
                if let Some(vm) = by_number(vm) {
                    vm.input.lock().push(byte);
                    if !fed.iter().any(|f| Arc::ptr_eq(f, vm)) {
                        fed.push(vm);
                    }
                }
            }
            Action::Focused(vm) => announce(by_number(vm)),
            Action::Help => log::info!("console: Ctrl-] then n (next VM), 1..9 (vm<N>) or Ctrl-] (send Ctrl-])"),
            Action::Nothing => {}
        }
    }
    drop(focus);
    for vm in fed {
        let cx = Ctx { hyp: h, vm: &**vm, vcpu: VcpuId { vm: vm.number, index: 0 } };
        for (_, d) in vm.bus.iter() {
            if let Reply::Wake(_, ids) = d.receive(&cx) {
                wake(vm, &ids);
            }
        }
    }
}

fn announce(vm: Option<&Arc<Vm>>) {
    if let Some(vm) = vm {
        log::info!("console: input to vm{} ({}); Ctrl-] n: next VM", vm.number, vm.name);
    }
}
