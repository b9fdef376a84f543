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
#
# The swap-in and page-out ratios come from RUNS runs of swapbench (each ratio's two numbers
# from the same run): under QEMU on a noisy 2-core host one run's ratio ranges over 2x and more
# (0.32-0.62 over 15 runs of one build, 0.3-0.97 over 20 on another host), so each run is
# printed and the median of nine is the figure (one 9-run bench's three consecutive triples had
# medians of 0.53, 0.46 and 0.66).
set -euo pipefail
TOOLS=${TOOLS:-target/release/tools}
RUNS=${RUNS:-9}
num() { sed -E "s|$1|\\1|" <<<"$2"; }
ok_secs() { sed -nE "s/^scenario $1: ok in ([0-9.]+)s.*/\\1/p"; }

mkdir -p target/uvmhyp
runs=target/uvmhyp/swapbench.runs
: > "$runs"
for run in $(seq "$RUNS"); do
  $TOOLS run swapbench
  log=target/uvmhyp/runs/latest/console.log
  raw=$(grep -m1 'swap: raw sequential 4 KiB' "$log")
  big=$(grep -m1 'swap: raw sequential 64 KiB' "$log")
  fill=$(grep -m1 'overcommit: vm 1 wrote' "$log")
  asc=$(grep -m1 'overcommit: vm 1 verified .* ascending in' "$log")
  echo "$run" \
    "$(num '.*written in [0-9]+ us \(([0-9]+) KiB/s\).*' "$raw")" "$(num '.*read in [0-9]+ us \(([0-9]+) KiB/s\).*' "$raw")" \
    "$(num '.*written in [0-9]+ us \(([0-9]+) KiB/s\).*' "$big")" "$(num '.*read in [0-9]+ us \(([0-9]+) KiB/s\).*' "$big")" \
    "$(num '.* in ([0-9]+) ms.*' "$fill")" "$(num '.* ([0-9]+) swapped.*' "$fill")" "$(num '.* in ([0-9]+) ms.*' "$asc")" >> "$runs"
done

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

# Columns of $runs: run, raw 4 KiB write and read, raw 64 KiB write and read (KiB/s), fill ms,
# pages swapped, ascending pass ms.
awk -v o="$over" -v b="$base" '
function median(a, n,   i, j, t) {
  for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{
  n++; rw = $2; rr = $3; bw = $4; br = $5; fm = $6; s = $7; am = $8
  pin = s * 4 * 1000 / am; pout = s * 4 * 1000 / fm
  printf "swap bench run %d: raw disk, 4 KiB requests: read %d KiB/s, write %d KiB/s; 64 KiB requests: read %d KiB/s, write %d KiB/s\n", $1, rr, rw, br, bw
  printf "swap bench run %d: swap-in  %d pages in %d ms = %d KiB/s; / raw read  = %.2f (4 KiB), %.2f (64 KiB)\n", $1, s, am, pin, pin / rr, pin / br
  printf "swap bench run %d: page-out %d pages in %d ms = %d KiB/s; / raw write = %.2f (4 KiB), %.2f (64 KiB)\n", $1, s, fm, pout, pout / rw, pout / bw
  in4[n] = pin / rr; in64[n] = pin / br; out4[n] = pout / rw; out64[n] = pout / bw
}
END {
  printf "swap bench, median of %d runs: swap-in / raw read = %.2f (4 KiB), %.2f (64 KiB); page-out / raw write = %.2f (4 KiB), %.2f (64 KiB)\n", n, median(in4, n), median(in64, n), median(out4, n), median(out64, n)
  printf "swap bench: overcommit %.1f s on 320 MiB with swap / %.1f s on 1100 MiB = %.2f\n", o, b, o / b
}' "$runs"
