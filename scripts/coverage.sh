#!/usr/bin/env bash
# Line coverage of the whole test suite (cargo-llvm-cov: rustc's own instrumentation, the
# real-binary tests included — the binary they spawn is instrumented too), then the figure per
# module, and the modules that decode input from the network or the disk against 80%.
# Usage: scripts/coverage.sh   (as root, so that the tmpfs and namespace tests run too)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup component list --installed 2>/dev/null | grep -q '^llvm-tools'; then
  rustup component add llvm-tools
fi
command -v cargo-llvm-cov >/dev/null || cargo install cargo-llvm-cov --locked

out=target/coverage
mkdir -p "$out"
cargo llvm-cov clean --workspace
# The suite exactly as `cargo test` runs it.
cargo llvm-cov --no-report -- --test-threads="${COVERAGE_TEST_THREADS:-2}"
cargo llvm-cov report --lcov --output-path "$out/lcov.info"
cargo llvm-cov report --html --output-dir "$out" >/dev/null
python3 scripts/coverage-table.py "$out/lcov.info"
echo "per-line report: $out/html/index.html"
