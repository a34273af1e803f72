#!/usr/bin/env bash
# Shared collections' figures (examples/bench_collections.rs) RUNS times, each a fresh network,
# with the whole process's peak RSS from /usr/bin/time -v.
# Usage: scripts/bench-collections.sh [RUNS] [bench_collections flags]   (`just bench-collections`)
set -euo pipefail
runs=${1:-3}
shift || true
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$here/target/release/examples/bench_collections
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for i in $(seq "$runs"); do
  echo "== run $i of $runs"
  /usr/bin/time -v "$bin" "$@" 2>"$log"
  grep -E "warning|panicked" "$log" || true
  awk -F': ' '/Maximum resident set size/ {printf "peak RSS: %d MiB\n", $2/1024}' "$log"
done
