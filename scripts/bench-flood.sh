#!/usr/bin/env bash
# Flood benchmark (hardening issue): a real `storgo node` holds a SIZE MiB item; a peer fetches
# it unloaded, then another fetches it while a third sends chunk requests for blocks that do not
# exist as fast as the protocol lets it (200 open at once, at least REQUESTS of them, for the
# whole fetch). Goal: the loaded fetch keeps at least half the unloaded speed, the node's peak
# RSS stays under 128 MiB. See examples/flood.rs. Loopback only, no mDNS.
# Usage: scripts/bench-flood.sh [RUNS] [SIZE_MIB] [REQUESTS]   (`just bench-flood` = 5 100 10000)
set -euo pipefail
runs=${1:-5}; size=${2:-100}; requests=${3:-10000}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${STORGO_BIN:-$here/target/release/storgo}
flood=$here/target/release/examples/flood
printf '%-4s %10s %10s %7s %9s %9s %7s %9s %8s\n' run unloaded loaded ratio requests "req/s" busy "not found" "RSS MiB"
results=()
for r in $(seq "$runs"); do
  line=$("$flood" "$bin" "$size" "$requests")
  read -r u l ratio n rps busy nf rss <<<"$line"
  printf '%-4s %8.0f MB/s %5.0f MB/s %7s %9s %9s %7s %9s %8s\n' "$r" \
    "$(awk -v s="$size" -v t="$u" 'BEGIN{print s*1.048576/t}')" \
    "$(awk -v s="$size" -v t="$l" 'BEGIN{print s*1.048576/t}')" "$ratio" "$n" "$rps" "$busy" "$nf" "$rss"
  results+=("$ratio $rss")
done
printf '%s\n' "${results[@]}" | sort -n | awk '
  { r[NR] = $1; if ($2 > m) m = $2 }
  END { printf "loaded/unloaded: min %s, median %s, max %s (goal >= 0.5); node peak RSS at most %d MiB (goal < 128)\n", r[1], r[int((NR+1)/2)], r[NR], m }'
