#!/usr/bin/env bash
# Times `storgo add` and `storgo cat` on a 1 GiB file next to `openssl dgst -sha256` on the
# same file in page cache, in the same run, and prints MB/s, ratios and peak RSS.
# Usage: scripts/bench-local.sh [SIZE_MIB]   (run by `just bench`; loopback-free, disk only)
set -euo pipefail
size_mib=${1:-1024}
bin=${STORGO_BIN:-target/release/storgo}
work=$(mktemp -d "${TMPDIR:-/tmp}/storgo-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
file=$work/input
head -c $((size_mib * 1024 * 1024)) /dev/urandom > "$file"
bytes=$(stat -c %s "$file")
sync; cat "$file" > /dev/null   # flushed, and in page cache

measure() { # label, command... -> sets secs and rss_kb
  local out=$work/time.$1; shift
  /usr/bin/time -v "$@" > "$work/stdout" 2> "$out" || { cat "$out" >&2; exit 1; }
  secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$out")
  rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out")
}
mbps() { awk -v b="$bytes" -v s="$1" 'BEGIN { printf "%.0f", b / s / 1e6 }'; }

best_ref=""
for _ in 1 2 3; do
  measure openssl openssl dgst -sha256 "$file"
  if [[ -z $best_ref ]] || awk -v a="$secs" -v b="$best_ref" 'BEGIN{exit !(a<b)}'; then best_ref=$secs; ref_rss=$rss_kb; fi
done
ref=$(mbps "$best_ref")

data=$work/data
measure add "$bin" --data-dir "$data" add "$file"
add_secs=$secs; add_rss=$rss_kb
id=$(tail -n 1 "$work/stdout")
sync
measure cat "$bin" --data-dir "$data" cat "$id"
cat_secs=$secs; cat_rss=$rss_kb
cmp -s "$work/stdout" "$file" || { echo "cat output differs from input" >&2; exit 1; }
# cat again to /dev/null-like sink without the comparison file write dominating
measure cat2 sh -c "'$bin' --data-dir '$data' cat '$id' > /dev/null"
cat2_secs=$secs; cat2_rss=$rss_kb

add=$(mbps "$add_secs"); cat1=$(mbps "$cat_secs"); cat2=$(mbps "$cat2_secs")
printf '%-34s %8s %8s %10s\n' "what (${size_mib} MiB)" "MB/s" "ratio" "peak RSS"
printf '%-34s %8s %8s %8s MiB\n' "openssl dgst -sha256 (reference)" "$ref" "1.00" $((ref_rss / 1024))
printf '%-34s %8s %8s %8s MiB\n' "storgo add" "$add" "$(awk -v a="$add" -v r="$ref" 'BEGIN{printf "%.2f", a/r}')" $((add_rss / 1024))
printf '%-34s %8s %8s %8s MiB\n' "storgo cat > file" "$cat1" "$(awk -v a="$cat1" -v r="$ref" 'BEGIN{printf "%.2f", a/r}')" $((cat_rss / 1024))
printf '%-34s %8s %8s %8s MiB\n' "storgo cat > /dev/null" "$cat2" "$(awk -v a="$cat2" -v r="$ref" 'BEGIN{printf "%.2f", a/r}')" $((cat2_rss / 1024))
