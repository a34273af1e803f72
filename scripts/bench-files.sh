#!/usr/bin/env bash
# A folder of many small files (course notes): 10,000 files of 100 B – 20 KB in 100 folders,
# random bytes. `storgo add -r` and `storgo get` of it next to `restic backup` to a fresh local
# repository and `restic restore` of that snapshot, in the same run, alternating which goes
# first; plus the space each takes on disk against the data itself. RUNS runs, min–max.
# restic is installed from Debian when missing and run as root, or skipped with a message.
# Usage: scripts/bench-files.sh [RUNS] [FILES]      (`just bench-files`)
set -euo pipefail
runs=${1:-3}
nfiles=${2:-10000}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${STORGO_BIN:-$here/target/release/storgo}
work=$(mktemp -d "${TMPDIR:-/tmp}/storgo-bench-files.XXXXXX")
trap 'rm -rf "$work"' EXIT

python3 - "$work/notes" "$nfiles" <<'EOF'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
for i in range(n):
    d = os.path.join(root, f"week{i % 100:02d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"note{i:05d}.txt"), "wb") as f:
        f.write(rng.randbytes(rng.randint(100, 20_000)))
EOF
data=$(find "$work/notes" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
sync; find "$work/notes" -type f -exec cat {} + > /dev/null   # in page cache

if [[ $(id -u) -eq 0 ]] && ! command -v restic >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic >/dev/null 2>&1 \
    || echo "note: could not install restic from Debian" >&2
fi
have_restic=""; command -v restic >/dev/null 2>&1 && have_restic=1
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$work/restic-cache

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
on_disk() { du -s --block-size=1 "$1" | awk '{print $1}'; }   # blocks used, as df sees them
# Both end with every byte durable: storgo syncs before it reports; restic syncs its pack files.

storgo_once() { # prints "add_secs get_secs dir_bytes"
  local d=$work/s; rm -rf "$d" "$work/out"
  local t0 t1 t2 id
  t0=$(now); id=$("$bin" --data-dir "$d" add -r "$work/notes" | tail -n 1); t1=$(now)
  "$bin" --data-dir "$d" get "$id" -o "$work/out" > /dev/null; sync; t2=$(now)
  diff -r -q "$work/notes" "$work/out" > /dev/null || { echo "storgo: output differs" >&2; exit 1; }
  echo "$(elapsed "$t0" "$t1") $(elapsed "$t1" "$t2") $(on_disk "$d")"
  rm -rf "$d" "$work/out"; sync
}

restic_once() {
  local r=$work/restic; rm -rf "$r" "$work/restic-cache" "$work/out"
  restic --repo "$r" init > /dev/null
  local flags=(--no-scan); restic backup --help 2>/dev/null | grep -q -- '--no-scan' || flags=()
  local t0 t1 t2
  t0=$(now); (cd "$work" && restic --repo "$r" backup "${flags[@]}" notes > /dev/null); t1=$(now)
  restic --repo "$r" restore latest --target "$work/out" > /dev/null; sync; t2=$(now)
  diff -r -q "$work/notes" "$work/out/notes" > /dev/null || { echo "restic: output differs" >&2; exit 1; }
  echo "$(elapsed "$t0" "$t1") $(elapsed "$t1" "$t2") $(on_disk "$r")"
  rm -rf "$r" "$work/restic-cache" "$work/out"; sync
}

: > "$work/results"
for run_no in $(seq "$runs"); do
  order=(storgo restic); (( run_no % 2 == 0 )) && order=(restic storgo)
  for tool in "${order[@]}"; do
    [[ $tool == restic && -z $have_restic ]] && continue
    line=$("${tool}_once")
    echo "$run_no $tool $line" >> "$work/results"
    echo "run $run_no, $tool: $line" >&2
  done
done

range() { sort -n | awk '{v[NR] = $1} END {printf (v[1] == v[NR] ? "%s" : "%s–%s, median %s"), v[1], v[NR], v[int((NR + 1) / 2)]}'; }
printf '\n%s files, %.1f MB of data\n' "$nfiles" "$(awk -v b="$data" 'BEGIN { print b / 1e6 }')"
printf '%-8s %26s %26s %26s\n' tool "add/backup s" "get/restore s" "on disk (× data)"
for tool in storgo restic; do
  grep -q " $tool " "$work/results" || continue
  printf '%-8s %26s %26s %26s\n' "$tool" \
    "$(awk -v t="$tool" '$2 == t {print $3}' "$work/results" | range)" \
    "$(awk -v t="$tool" '$2 == t {print $4}' "$work/results" | range)" \
    "$(awk -v t="$tool" -v d="$data" '$2 == t {printf "%.2f\n", $5 / d}' "$work/results" | range)"
done
[[ -n $have_restic ]] || echo "restic: not measured (apt-get install restic)"
