#!/bin/bash
# Boots the Linux guest artifacts directly under QEMU (no hypervisor: the kernel runs at EL1 with
# QEMU's own DTB and PSCI) and checks what /init promises: the marker, one PASS line per
# workload item, the summary, a clean poweroff (QEMU exit status 0), all within a timeout.
# This is the "direct" baseline of issue 8's numbers, so it also measures:
#   - wall time from QEMU's start to the marker (this machine, this load: indicative only);
#   - under -icount shift=0 (one instruction = 1 ns of virtual time; an idle vCPU's time skips
#     to its next timer), the virtual counter at the marker: instructions from QEMU's start to
#     the marker plus the guest's idle time, the same count run after run;
# and it checks that a bad uvmhyp.work still ends in a clean poweroff with a FAIL line.
# Last, it boots the kernel on uvmhyp's own boot pieces: the device tree hyp::guest_fdt makes
# for QEMU virt's devices (2 vCPUs) and the initrd where hyp::linux_image places it, through
# the host example `guest_dtb` (QEMU keeps loading the kernel itself and replaces only the
# memory node, with the same RAM).
# QEMU runs with dtb-randomness=off: no kaslr-seed/rng-seed in its DTB, as in the DTB uvmhyp
# generates; with them the kernel randomizes its layout and the -icount count changes run to run.
#
# Usage: check-direct.sh DIR (holding Image and initramfs.cpio.gz; logs are written there).
# Environment: WORK (default tmpfs:16,anon:16), MEM (MiB, default 512), TIMEOUT (s, default 120).
# Run from anywhere; needs cargo for the guest_dtb example.
set -uo pipefail

DIR=${1:?usage: check-direct.sh DIR}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${WORK:-tmpfs:16,anon:16}
MEM=${MEM:-512}
TIMEOUT=${TIMEOUT:-120}
T="uvmhyp-linux:"
failures=0

fail() {
  echo "linux-direct: FAIL: $*"
  failures=$((failures + 1))
}

# $1 log file, then QEMU's options beyond the machine, CPU, RAM and kernel (the initrd, the
# command line, ...). Prints QEMU's exit status and the wall seconds from start to the marker
# ("-" when never seen) as "STATUS MARKER_SECONDS".
boot() {
  local log=$1
  shift
  local start marker=- line now status
  start=$EPOCHREALTIME
  : > "$log"
  while IFS= read -r line; do
    line=${line%$'\r'}
    printf '%s\n' "$line" >> "$log"
    if [ "$marker" = - ] && [ "$line" = "$T up" ]; then
      now=$EPOCHREALTIME
      marker=$(awk -v a="$start" -v b="$now" 'BEGIN { printf "%.2f", b - a }')
    fi
  done < <(timeout "$TIMEOUT" qemu-system-aarch64 -M virt,gic-version=3,dtb-randomness=off -cpu max,pauth=off \
             -nic none -m "$MEM" -nographic -no-reboot "$@" \
             -kernel "$DIR/Image" 2>&1 </dev/null
           echo "linux-direct-status: $?")
  status=$(sed -n 's/^linux-direct-status: //p' "$log")
  sed -i '/^linux-direct-status: /d' "$log"
  echo "$status $marker"
}

# $1 log, $2 pattern (grep -E, whole line), $3 what it means.
expect() {
  grep -Eqx "$2" "$1" || fail "$3 (no line matching '$2' in $1)"
}

# $1 log, $2 QEMU status: the checks every boot shares.
expect_clean_end() {
  expect "$1" "$T up" "no boot marker"
  expect "$1" "$T poweroff" "/init did not reach poweroff"
  [ "$2" = 0 ] || fail "QEMU exit status $2 (0 = PSCI SYSTEM_OFF; 124 = timeout after ${TIMEOUT}s) in $1"
}

echo "linux-direct: booting $DIR/Image with uvmhyp.work=$WORK, -m $MEM"
initrd=(-initrd "$DIR/initramfs.cpio.gz")
read -r status marker < <(boot "$DIR/direct.log" "${initrd[@]}" -append "console=ttyAMA0 uvmhyp.work=$WORK")
expect_clean_end "$DIR/direct.log" "$status"
items=0
for item in ${WORK//,/ }; do
  expect "$DIR/direct.log" "$T ${item%%:*} ${item#*:} MiB: fill [0-9.]+ MiB/s, verify [0-9.]+ MiB/s: PASS" "$item did not pass"
  items=$((items + 1))
done
expect "$DIR/direct.log" "$T done: $items passed, 0 failed" "summary is not $items passed"
grep -E "^$T (up|counter|tmpfs|anon|done)" "$DIR/direct.log" | sed 's/^/  /'
echo "linux-direct: wall time from QEMU start to the marker: ${marker} s"

echo "linux-direct: booting with a bad uvmhyp.work (it must say so and still power off)"
read -r status _ < <(boot "$DIR/direct-bad.log" "${initrd[@]}" -append "console=ttyAMA0 quiet uvmhyp.work=tmpfs:16,swap:x")
expect_clean_end "$DIR/direct-bad.log" "$status"
expect "$DIR/direct-bad.log" "$T work: 'swap:x' in uvmhyp.work=tmpfs:16,swap:x: unknown kind 'swap' \(tmpfs or anon\): FAIL" "bad kind not reported"
expect "$DIR/direct-bad.log" "$T done: 0 passed, 1 failed" "bad work not counted as a failure"
grep -E "^$T (work|done)" "$DIR/direct-bad.log" | sed 's/^/  /'

echo "linux-direct: booting under -icount shift=0 (1 instruction = 1 ns of virtual time)"
# The RTC is pinned to virtual time, or the kernel's work depends on the host's date. The count
# then repeats exactly with -cpu cortex-a72; -cpu max still moves it by a few thousand ticks run
# to run (its RNDR feeds the kernel's random pool).
read -r status _ < <(boot "$DIR/direct-icount.log" "${initrd[@]}" -append "console=ttyAMA0 uvmhyp.work=$WORK" \
                       -icount shift=0,align=off,sleep=off -rtc base=2026-01-01T00:00:00,clock=vm)
expect_clean_end "$DIR/direct-icount.log" "$status"
counter=$(sed -n "s/^$T counter \([0-9]*\) at \([0-9]*\) Hz.*/\1 \2/p" "$DIR/direct-icount.log")
if [ -n "$counter" ]; then
  read -r ticks hz <<< "$counter"
  awk -v t="$ticks" -v f="$hz" 'BEGIN { printf "linux-direct: virtual counter at the marker: %d ticks at %d Hz = %.3f s of virtual time (at most %.0f million instructions)\n", t, f, t / f, t / f * 1000 }'
else
  fail "no counter line in $DIR/direct-icount.log"
fi

echo "linux-direct: booting with uvmhyp's boot image (hyp::linux_boot: guest_fdt device tree, linux_image placement), -smp 2"
bootargs="console=ttyAMA0 uvmhyp.work=$WORK name=\"two words\""
if (cd "$REPO" && cargo run -q -p hyp --example guest_dtb -- "$DIR/Image" "$DIR/initramfs.cpio.gz" \
      "$DIR/guest.dtb" "$MEM" 2 "$bootargs") > "$DIR/guest-dtb.txt"; then
  sed 's/^/  /' "$DIR/guest-dtb.txt"
  initrd_at=$(sed -n 's/.*initrd-addr=\(0x[0-9a-f]*\)$/\1/p' "$DIR/guest-dtb.txt")
  # No -initrd and no -append: QEMU would write its own initrd range and command line into
  # /chosen. The marker can then only come from the initrd at the address our DTB names.
  read -r status _ < <(boot "$DIR/direct-fdt.log" -smp 2 -dtb "$DIR/guest.dtb" \
                         -device loader,file="$DIR/initramfs.cpio.gz",addr="$initrd_at",force-raw=on)
  expect_clean_end "$DIR/direct-fdt.log" "$status"
  grep -Fq "Kernel command line: $bootargs" "$DIR/direct-fdt.log" ||
    fail "bootargs not taken from our device tree (no 'Kernel command line: $bootargs' in $DIR/direct-fdt.log)"
  expect "$DIR/direct-fdt.log" "\[ *[0-9.]+\] SMP: Total of 2 processors activated\." "second vCPU not started through our psci node"
  expect "$DIR/direct-fdt.log" "$T done: $items passed, 0 failed" "workload did not pass on our device tree"
  grep -E "Kernel command line|psci: PSCIv|GICv3: CPU[01]: found|arch_timer: cp15|SMP: Total|ttyAMA0 at MMIO|^$T (up|done)" "$DIR/direct-fdt.log" | sed 's/^/  /'
else
  fail "guest_dtb could not make the device tree"
fi

if [ "$failures" -ne 0 ]; then
  echo "linux-direct: $failures check(s) failed; logs in $DIR/direct*.log"
  exit 1
fi
echo "linux-direct: PASS (logs in $DIR/direct*.log)"
