#!/usr/bin/env bash
# Republishing provider records on a 50-node in-process network on 127.0.0.1: the batched sweep
# next to one start_providing per root, in the same run; then get_providers latency. Runs the
# benchmark RUNS times (fresh network and seed each time) and prints each run's figures and peak
# RSS (of the whole 50-node process, from /usr/bin/time -v).
# Usage: scripts/bench-dht.sh [RUNS] [bench_dht flags]      (`just bench-dht`)
set -euo pipefail
runs=${1:-3}
shift || true
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$here/target/release/examples/bench_dht
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for i in $(seq "$runs"); do
  echo "== run $i of $runs"
  /usr/bin/time -v "$bin" "$@" 2>"$log"
  grep -E "^seed|warning|failures" "$log" || true
  awk -F': ' '/Maximum resident set size/ {printf "peak RSS: %d MiB\n", $2/1024}' "$log"
done
