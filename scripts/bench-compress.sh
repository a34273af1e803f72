#!/usr/bin/env bash
# What per-chunk compression saves and costs, in one run: `storgo add` with and without
# compression (`--no-compress`) of (1) real text — the source code and documentation of every
# crate in the local cargo registry, tarred into one file so that the figures show compression
# rather than per-file costs — and (2) random bytes (incompressible: the cost of detecting it).
# For each: add MB/s, bytes stored (the data dir's blocks), and a fetch by a second node on
# loopback: MB/s and bytes the first node sent. Each add is repeated RUNS times, alternating
# the order, and printed as min–max.
# Usage: scripts/bench-compress.sh [RUNS] [RANDOM_MIB]      (`just bench-compress`)
set -euo pipefail
runs=${1:-3}
random_mib=${2:-512}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${STORGO_BIN:-$here/target/release/storgo}
work=$(mktemp -d "${TMPDIR:-/tmp}/storgo-bench-compress.XXXXXX")
cleanup() {
  for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

registry=${CARGO_HOME:-$HOME/.cargo}/registry/src
if [[ -d $registry ]]; then
  (cd "$registry" && find . -type f \( -name '*.rs' -o -name '*.md' -o -name '*.txt' -o -name '*.toml' \
     -o -name '*.json' -o -name '*.html' -o -name '*.c' -o -name '*.h' \) -print0 |
     tar --null -T - -cf "$work/text.tar")
else
  echo "no cargo registry at $registry: the text case is skipped" >&2
fi
head -c $((random_mib * 1024 * 1024)) /dev/urandom > "$work/random"

now() { date +%s.%N; }
mbps() { awk -v b="$1" -v a="$2" -v c="$3" 'BEGIN { printf "%.0f", b / (c - a) / 1e6 }'; }
blocks_bytes() { du -sb "$1/blocks" | awk '{print $1}'; }

# One add into a fresh data dir: prints "MB/s stored_bytes".
add_once() { # file, flag
  local d=$work/add; rm -rf "$d"
  local t0 t1; t0=$(now); "$bin" --data-dir "$d" add "$1" ${2:+"$2"} > /dev/null; t1=$(now)
  echo "$(mbps "$(stat -c %s "$1")" "$t0" "$t1") $(blocks_bytes "$d")"
  rm -rf "$d"
}

# A fetch of the file from a node holding it (added with flag): prints "MB/s bytes_sent".
fetch_once() { # file, flag
  local d=$work/net; rm -rf "$d"; mkdir -p "$d"
  local id; id=$("$bin" --data-dir "$d/a" add "$1" ${2:+"$2"} | tail -n 1)
  "$bin" --data-dir "$d/a" node --no-mdns --listen /ip4/127.0.0.1/tcp/0 > "$d/a.out" 2> "$d/a.err" &
  for _ in $(seq 600); do grep -q '^api:' "$d/a.out" 2>/dev/null && break; sleep 0.1; done
  local addr; addr=$(awk '/^listening on/ {print $3; exit}' "$d/a.out")
  local t0 t1; t0=$(now)
  "$bin" --data-dir "$d/b" fetch "$id" --no-mdns --listen /ip4/127.0.0.1/tcp/0 --bootstrap "$addr" -o "$d/out" > /dev/null 2>&1
  t1=$(now)
  cmp -s "$1" "$d/out" || { echo "fetched bytes differ" >&2; exit 1; }
  local sent; sent=$("$bin" --data-dir "$d/a" status --json | awk -F'"bytes_served":' '{split($2, a, /[,}]/); print a[1]}')
  pkill -TERM -f -- "^$bin --data-dir $d/a node" || true; wait 2>/dev/null || true
  echo "$(mbps "$(stat -c %s "$1")" "$t0" "$t1") $sent"
  rm -rf "$d"
}

range() { sort -n | awk '{v[NR] = $1} END {printf (v[1] == v[NR] ? "%s" : "%s–%s, median %s"), v[1], v[NR], v[int((NR + 1) / 2)]}'; }

printf '%-26s %12s %26s %14s %12s %12s\n' "" "size" "add MB/s" "stored" "fetch MB/s" "sent"
for case in text random; do
  file=$work/$case.tar; [[ $case == random ]] && file=$work/random
  [[ -f $file ]] || continue
  size=$(stat -c %s "$file")
  : > "$work/on"; : > "$work/off"
  for r in $(seq "$runs"); do
    order=(on off); (( r % 2 == 0 )) && order=(off on)
    for mode in "${order[@]}"; do
      flag=""; [[ $mode == off ]] && flag=--no-compress
      add_once "$file" "$flag" >> "$work/$mode"
    done
  done
  for mode in on off; do
    flag=""; [[ $mode == off ]] && flag=--no-compress
    read -r fetch_mbps sent < <(fetch_once "$file" "$flag")
    stored=$(awk '{print $2}' "$work/$mode" | head -n 1)
    label="$case, compression $mode"
    printf '%-26s %9.1f MB %26s %11.1f MB %12s %9.1f MB\n' "$label" "$(awk -v b="$size" 'BEGIN{print b/1e6}')" \
      "$(awk '{print $1}' "$work/$mode" | range)" "$(awk -v b="$stored" 'BEGIN{print b/1e6}')" \
      "$fetch_mbps" "$(awk -v b="$sent" 'BEGIN{print b/1e6}')"
  done
done
