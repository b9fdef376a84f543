#!/bin/bash
# Instructions executed per function between two console lines of a run, under QEMU's TCG: re-runs
# a run folder's QEMU command (its qemu.cmd) with the plugin tools/tcgprof/tbprof.c (which says
# why not gdb sampling), from the repository's root:
#   tools/tcgprof/run.sh RUN_DIR START STOP [TOP]
# counts from the first console line containing START to the first containing STOP (swapbench's
# ascending pass: 'pages in' 'ascending in'), then prints the TOP (default 40) functions of the
# hypervisor's ELF by instructions executed ("guest": blocks outside its text). Counts, not time:
# under TCG an MMIO access, a TLB flush or a page walk costs far more than its one instruction.
# With CALLERS=NAME (a function's name as printed, e.g. memset) it then prints which functions
# call NAME how often (by BL or tail-call B), and how often NAME was entered at all (indirect
# calls, through a trait object's BLR, included).
# Needs gcc and binutils' nm (Debian: apt-get install gcc binutils).
set -euo pipefail
run=${1:?usage: tools/tcgprof/run.sh RUN_DIR START STOP [TOP]}
start=${2:?start text}
stop=${3:?stop text}
top=${4:-40}
callers=${CALLERS:-}
out=target/tcgprof
mkdir -p "$out"
rm -f "$out/start" "$out/stop" "$out/blocks" "$out/console"
gcc -shared -fPIC -O2 -Wall -o "$out/tbprof.so" tools/tcgprof/tbprof.c -lpthread
cmd=$(cat "$run/qemu.cmd")
elf=$(sed -nE 's/.* -kernel ([^ ]+) .*/\1/p' <<<"$cmd")
# The runner deletes a run's swap disk image at its end: make a fresh one of the scenario's size.
img=$(grep -oE 'file=[^,]+/swap\.img' <<<"$cmd" | head -1 | cut -d= -f2 || true)
if [ -n "$img" ] && [ ! -e "$img" ]; then
  mib=$(sed -n '/^\[swap\]/,/^\[/s/^mib = \([0-9]*\).*/\1/p' "$run/scenario.toml")
  truncate -s "${mib:?no [swap] mib in $run/scenario.toml}M" "$img"
fi
mkfifo "$out/console"
eval "$cmd -plugin $out/tbprof.so,ctl=$out,out=$out/blocks" >"$out/console" 2>&1 </dev/null &
qemu=$!
trap 'kill $qemu 2>/dev/null || true' EXIT
exec 3<"$out/console"
while IFS= read -r line <&3; do
  printf '%s\n' "$line"
  case $line in *"$start"*) [ -e "$out/start" ] || touch "$out/start" ;; esac
  case $line in *"$stop"*) [ -e "$out/start" ] && { touch "$out/stop"; break; } ;; esac
done
[ -e "$out/stop" ] || { echo "tcgprof: the run ended before '$stop' (after '$start')" >&2; exit 1; }
cat <&3 >/dev/null &
for _ in $(seq 300); do [ -e "$out/blocks" ] && break; sleep 0.1; done
[ -e "$out/blocks" ] || { echo "tcgprof: the plugin wrote no counts" >&2; exit 1; }

# Each block's instructions x runs, summed per function of the ELF's symbol table (nm -S: the
# function whose [address, address + size) holds the block's first instruction).
nm -C --defined-only -S "$elf" | awk '$3 ~ /^[tTwW]$/' | sort >"$out/symbols"
awk -v top="$top" '
function hex(s,   i, n, c) { n = 0; s = tolower(s); for (i = 1; i <= length(s); i++) { c = index("0123456789abcdef", substr(s, i, 1)) - 1; n = n * 16 + c } return n }
NR == FNR { a[++ns] = hex($1); z[ns] = hex($2); $1 = $2 = $3 = ""; sub(/^ +/, ""); sub(/::h[0-9a-f]+$/, ""); name[ns] = $0; next }
{
  v = hex($1); n = $2 * $3; lo = 1; hi = ns; f = 0
  while (lo <= hi) { mid = int((lo + hi) / 2); if (a[mid] <= v) { f = mid; lo = mid + 1 } else hi = mid - 1 }
  who = (f && v < a[f] + (z[f] > 0 ? z[f] : 1)) ? name[f] : "guest"
  sum[who] += n; total += n
}
END {
  printf "tcgprof: %.1f million instructions between the two lines\n", total / 1e6
  for (w in sum) printf "%.2f%% %.2fM %s\n", 100 * sum[w] / total, sum[w] / 1e6, w | "sort -rn | head -" top
}' "$out/symbols" "$out/blocks"

[ -n "$callers" ] || exit 0
awk -v want="$callers" '
function hex(s,   i, n, c) { n = 0; s = tolower(s); for (i = 1; i <= length(s); i++) { c = index("0123456789abcdef", substr(s, i, 1)) - 1; n = n * 16 + c } return n }
NR == FNR { a[++ns] = hex($1); z[ns] = hex($2); $1 = $2 = $3 = ""; sub(/^ +/, ""); sub(/::h[0-9a-f]+$/, ""); name[ns] = $0; if ($0 == want) target[a[ns]] = 1; next }
(hex($1) in target) { entered += $3 }
($4 != "0") && (hex($4) in target) {
  v = hex($1); lo = 1; hi = ns; f = 0
  while (lo <= hi) { mid = int((lo + hi) / 2); if (a[mid] <= v) { f = mid; lo = mid + 1 } else hi = mid - 1 }
  who = (f && v < a[f] + (z[f] > 0 ? z[f] : 1)) ? name[f] : "guest"
  calls[who] += $3; total += $3
}
END {
  printf "tcgprof: %s entered %d times, %d of them by a BL or B from (the rest: indirect calls, BLR):\n", want, entered, total
  for (w in calls) printf "%d %s\n", calls[w], w | "sort -rn | head -20"
}' "$out/symbols" "$out/blocks"
