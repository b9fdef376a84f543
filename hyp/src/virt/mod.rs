//! Virtualization: VMs, vCPUs, traps, scheduling. (VIRT HELPER owns this directory.)
