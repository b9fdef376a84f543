#!/bin/bash
# A scenario of N Linux VMs (`make linux VMS=N`): the VMs of scenarios/linux.toml, N of them,
# each booting the Debian kernel with 2 vCPUs and 256 MiB, running the 64 MiB tmpfs + anon
# workload and powering off; each must print its marker and pass.
set -eu
N=${1:?usage: scenario.sh N}
case "$N" in ''|*[!0-9]*|0) echo "scenario.sh: N must be a positive number, not '$N'" >&2; exit 2 ;; esac
cat <<TOML
about = "$N Debian Linux VMs (2 vCPUs, 256 MiB each) boot, verify a 64 MiB tmpfs and anon workload, power off"
[stop]
timeout_s = $((120 + 60 * N))
[qemu]
cpu = "max,pauth=off"
TOML
for i in $(seq 1 "$N"); do
  cat <<TOML
[[vm]]
name = "linux$i"
kernel = "target/linux/Image"
initrd = "target/linux/initramfs.cpio.gz"
bootargs = "console=ttyAMA0 uvmhyp.work=tmpfs:64,anon:64"
ram_mib = 256
vcpus = 2
[vm.console]
lines = [{ text = "uvmhyp-linux: up" }, { text = "uvmhyp-linux: done: 2 passed, 0 failed" }]
TOML
done
