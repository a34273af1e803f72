#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/) for SECS seconds each with cargo-fuzz (libFuzzer,
# nightly toolchain), starting from the committed seeds in fuzz/corpus/ (made from the
# protocols/ vectors by scripts/fuzz-seeds.py), and prints executions per target. A crash stops
# the run with the input saved under fuzz/artifacts/TARGET/; add it as a regression test.
# Usage: scripts/fuzz.sh [SECS] [TARGET...]        (`just fuzz` = 60 s per target)
set -euo pipefail
secs=${1:-60}; shift || true
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here/fuzz"
export PATH="$HOME/.cargo/bin:/tmp/cargo-fuzz/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz" >&2
  cargo install cargo-fuzz --root /tmp/cargo-fuzz
fi
targets=("$@"); [[ ${#targets[@]} -gt 0 ]] || mapfile -t targets < <(cargo +nightly fuzz list)
python3 "$here/scripts/fuzz-seeds.py" >/dev/null
printf '%-20s %14s %10s %12s\n' target executions seconds "exec/s"
for t in "${targets[@]}"; do
  # Work on a copy of the seeds, so that the committed corpus stays small.
  work=$(mktemp -d); cp -r "corpus/$t/." "$work/" 2>/dev/null || true
  log=$(mktemp)
  if ! cargo +nightly fuzz run "$t" "$work" -- -max_total_time="$secs" -rss_limit_mb=1024 >"$log" 2>&1; then
    tail -n 30 "$log"; echo "fuzz target $t failed; the input is under fuzz/artifacts/$t/" >&2; exit 1
  fi
  awk -v t="$t" '/^Done [0-9]+ runs in/ { printf "%-20s %14d %10d %12d\n", t, $2, $5, $2 / ($5 ? $5 : 1) }' "$log"
  rm -rf "$work" "$log"
done
