#!/bin/bash
# The Linux part of `make bench` (issue 8, point 10): one Linux VM (1 vCPU, 512 MiB of guest
# RAM, -cpu max,pauth=off) booted with the same kernel and initramfs directly by QEMU at EL1 and
# under uvmhyp, both under -icount (1 ns of virtual time per instruction, idle time skipped), so
# the numbers are counts, not wall times on a noisy machine:
#   - virtual time from QEMU start to the boot marker (the guest prints the counter there), and
#     its ratio uvmhyp / direct;
#   - the 256 MiB tmpfs fill's MiB/s on the guest's clock, and its ratio;
#   - under uvmhyp, the stage-2 faults and distinct pages faulted in before the marker (trace).
# Usage: bench.sh DIR (target/linux, holding Image and initramfs.cpio.gz); run from the repo root
# after `make build` and `make linux-artifacts`.
set -u
DIR=${1:?usage: bench.sh DIR}
T="uvmhyp-linux:"
WORK="tmpfs:256"
ICOUNT="shift=0,align=off,sleep=off"

# The counter at the marker (ticks) and the tmpfs fill rate, from a console log.
counter() { sed -n "s/.*$T counter \([0-9]*\) at \([0-9]*\) Hz.*/\1 \2/p" "$1" | head -1; }
fill() { sed -n "s/.*$T tmpfs 256 MiB: fill \([0-9.]*\) MiB\/s.*/\1/p" "$1" | head -1; }

direct="$DIR/bench-direct.log"
timeout 300 qemu-system-aarch64 -M virt,gic-version=3,dtb-randomness=off -cpu max,pauth=off -m 512 \
  -nographic -nic none -icount "$ICOUNT" -rtc clock=vm -kernel "$DIR/Image" -initrd "$DIR/initramfs.cpio.gz" \
  -append "console=ttyAMA0 uvmhyp.work=$WORK" < /dev/null > "$direct" 2>&1

scenario="$DIR/bench-uvmhyp.toml"
cat > "$scenario" <<TOML
about = "make bench: one Linux VM under -icount (guest/linux/bench.sh)"
[stop]
timeout_s = 300
[qemu]
cpu = "max,pauth=off"
icount = true
smp = 1
[[vm]]
name = "linux"
kernel = "$DIR/Image"
initrd = "$DIR/initramfs.cpio.gz"
bootargs = "console=ttyAMA0 uvmhyp.work=$WORK"
ram_mib = 512
TOML
target/release/tools run "$scenario" > "$DIR/bench-uvmhyp.out" 2>&1
run=$(readlink -f target/uvmhyp/runs/latest)
under="$run/console.log"

read -r d_ticks freq < <(counter "$direct")
read -r u_ticks _ < <(counter "$under")
d_fill=$(fill "$direct")
u_fill=$(fill "$under")
if [ -z "${d_ticks:-}" ] || [ -z "${u_ticks:-}" ] || [ -z "$d_fill" ] || [ -z "$u_fill" ]; then
  echo "linux-bench: a boot did not reach its marker or its fill line ($direct, $under)"
  exit 1
fi
marker_us=$(awk -v t="$u_ticks" -v f="$freq" 'BEGIN { printf "%.3f", t * 1e6 / f }')
# Fault rows of `tools trace` (seq vm vcpu ipa access case outcome nbrs refl time_us cpu cost):
# those before the marker, and the distinct pages among the resolved ones.
read -r faults pages < <(target/release/tools trace -n 100000000 "$run/uvmhyp.trace" | awk -v m="$marker_us" '
  NF == 12 && $1 ~ /^[0-9]+$/ && $10 + 0 <= m { n++; if ($7 == "resolved") { p = $4; sub(/...$/, "", p); seen[p] = 1 } }
  END { k = 0; for (p in seen) k++; print n + 0, k }')
awk -v d="$d_ticks" -v u="$u_ticks" -v f="$freq" -v df="$d_fill" -v uf="$u_fill" -v faults="$faults" -v pages="$pages" 'BEGIN {
  printf "linux-bench: QEMU start to marker: direct %.3f s, uvmhyp %.3f s of virtual time: ratio %.2f\n", d / f, u / f, u / d
  printf "linux-bench: 256 MiB tmpfs fill: direct %s MiB/s, uvmhyp %s MiB/s: ratio %.2f\n", df, uf, uf / df
  printf "linux-bench: under uvmhyp before the marker: %d stage-2 faults, %d distinct pages faulted in (%.1f MiB)\n", faults, pages, pages * 4096 / 1048576
}'
