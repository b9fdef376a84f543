#!/bin/bash
# make bench's swap benchmarks, each beside a baseline from the same run (README, "Benchmarks"):
#   swap-in  : scenario swapbench's ascending pass (every page it swapped out read back) in KiB/s,
#              over the raw sequential read the hypervisor timed at attach in the same run, in
#              4 KiB requests and in 64 KiB ones (the largest request swap issues: the fairer
#              baseline, as swap's own reads and writes are now up to that size);
#   page-out : the same VM's fill (what it paged out, over the fill's time), over the raw write;
#   overcommit: scenario overcommit's time over the same VMs on a pool that holds them all (no
#              paging; its page-out and page-in bounds dropped).
# Both throughputs are the guest's view (faults, reclaim and parking included).
set -euo pipefail
TOOLS=${TOOLS:-target/release/tools}
num() { sed -E "s|$1|\\1|" <<<"$2"; }
ok_secs() { sed -nE "s/^scenario $1: ok in ([0-9.]+)s.*/\\1/p"; }

$TOOLS run swapbench
log=target/uvmhyp/runs/latest/console.log
raw=$(grep -m1 'swap: raw sequential 4 KiB' "$log")
big=$(grep -m1 'swap: raw sequential 64 KiB' "$log")
fill=$(grep -m1 'overcommit: vm 1 wrote' "$log")
asc=$(grep -m1 'overcommit: vm 1 verified .* ascending in' "$log")
raw_w=$(num '.*written in [0-9]+ us \(([0-9]+) KiB/s\).*' "$raw")
raw_r=$(num '.*read in [0-9]+ us \(([0-9]+) KiB/s\).*' "$raw")
big_w=$(num '.*written in [0-9]+ us \(([0-9]+) KiB/s\).*' "$big")
big_r=$(num '.*read in [0-9]+ us \(([0-9]+) KiB/s\).*' "$big")
fill_ms=$(num '.* in ([0-9]+) ms.*' "$fill")
swapped=$(num '.* ([0-9]+) swapped.*' "$fill")
asc_ms=$(num '.* in ([0-9]+) ms.*' "$asc")

mkdir -p target/uvmhyp
out=target/uvmhyp/swapbench.out
$TOOLS run overcommit | tee "$out"
over=$(ok_secs overcommit < "$out")
roomy=target/uvmhyp/overcommit-roomy.toml
# Room for all 4 x 256 MiB (and the engine's metadata): a 1100 MiB pool on a 2 GiB board.
sed -e 's/^pool_mib = 320$/pool_mib = 1100/' -e '/^at_least = /d' -e 's/^smp = 2$/smp = 2\nmemory = "2G"/' \
  scenarios/overcommit.toml > "$roomy"
grep -q '^pool_mib = 1100$' "$roomy" && grep -q '^memory = "2G"$' "$roomy"
$TOOLS run "$roomy" | tee "$out"
base=$(ok_secs overcommit-roomy < "$out")

awk -v rw="$raw_w" -v rr="$raw_r" -v bw="$big_w" -v br="$big_r" -v fm="$fill_ms" -v s="$swapped" -v am="$asc_ms" -v o="$over" -v b="$base" 'BEGIN {
  pin = s * 4 * 1000 / am; pout = s * 4 * 1000 / fm
  printf "swap bench: raw disk, 4 KiB requests: read %d KiB/s, write %d KiB/s; 64 KiB requests: read %d KiB/s, write %d KiB/s\n", rr, rw, br, bw
  printf "swap bench: swap-in  %d pages in %d ms = %d KiB/s; / raw read  = %.2f (4 KiB), %.2f (64 KiB)\n", s, am, pin, pin / rr, pin / br
  printf "swap bench: page-out %d pages in %d ms = %d KiB/s; / raw write = %.2f (4 KiB), %.2f (64 KiB)\n", s, fm, pout, pout / rw, pout / bw
  printf "swap bench: overcommit %.1f s on 320 MiB with swap / %.1f s on 1100 MiB = %.2f\n", o, b, o / b
}'
