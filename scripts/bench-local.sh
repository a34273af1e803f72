#!/usr/bin/env bash
# Times `storgo add` and `storgo cat` on a 1 GiB file next to `openssl dgst -sha256` on the
# same file in page cache, in the same run, and prints MB/s, ratios and peak RSS. Next to them,
# the tools that do the same job: `restic backup` of the file to a fresh local repository
# (content-defined chunks, encryption, SHA-256 IDs, dedup — what `storgo add` does) and `age`
# encrypting it to a file. Both are installed from Debian when missing and run as root, or
# skipped with a message.
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

if [[ $(id -u) -eq 0 ]] && ! { command -v restic && command -v age; } >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic age >/dev/null 2>&1 \
    || echo "note: could not install restic/age from Debian" >&2
fi
restic_line="" age_line=""
if command -v restic >/dev/null 2>&1; then
  export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$work/restic-cache
  restic --repo "$work/restic" init >/dev/null
  # restic's fastest settings for this job: no pre-scan, no compression where the version has
  # it (random data does not compress, and storgo does not compress yet).
  flags=(--no-scan)
  restic backup --help 2>/dev/null | grep -q -- '--compression' && flags+=(--compression off)
  restic backup --help 2>/dev/null | grep -q -- '--no-scan' || flags=("${flags[@]:1}")
  sync
  measure restic restic --repo "$work/restic" backup "${flags[@]}" "$file"
  restic_line="$(mbps "$secs") $((rss_kb / 1024))"
  rm -rf "$work/restic" "$work/restic-cache"
else
  echo "note: restic not installed; skipping it (apt-get install restic)" >&2
fi
if command -v age >/dev/null 2>&1; then
  age-keygen -o "$work/age.key" 2>/dev/null
  recipient=$(age-keygen -y "$work/age.key")
  sync
  measure age age -r "$recipient" -o "$work/age.out" "$file"
  age_line="$(mbps "$secs") $((rss_kb / 1024))"
  rm -f "$work/age.out"
else
  echo "note: age not installed; skipping it (apt-get install age)" >&2
fi

add=$(mbps "$add_secs"); cat1=$(mbps "$cat_secs"); cat2=$(mbps "$cat2_secs")
printf '%-34s %8s %8s %10s\n' "what (${size_mib} MiB)" "MB/s" "ratio" "peak RSS"
printf '%-34s %8s %8s %8s MiB\n' "openssl dgst -sha256 (reference)" "$ref" "1.00" $((ref_rss / 1024))
printf '%-34s %8s %8s %8s MiB\n' "storgo add" "$add" "$(awk -v a="$add" -v r="$ref" 'BEGIN{printf "%.2f", a/r}')" $((add_rss / 1024))
printf '%-34s %8s %8s %8s MiB\n' "storgo cat > file" "$cat1" "$(awk -v a="$cat1" -v r="$ref" 'BEGIN{printf "%.2f", a/r}')" $((cat_rss / 1024))
printf '%-34s %8s %8s %8s MiB\n' "storgo cat > /dev/null" "$cat2" "$(awk -v a="$cat2" -v r="$ref" 'BEGIN{printf "%.2f", a/r}')" $((cat2_rss / 1024))
ratio() { awk -v a="$1" -v r="$2" 'BEGIN{printf "%.2f", a/r}'; }
if [[ -n $restic_line ]]; then
  read -r rmb rrss <<<"$restic_line"
  printf '%-34s %8s %8s %8s MiB   (storgo add / restic: %s)\n' "restic backup (fresh repo)" "$rmb" "$(ratio "$rmb" "$ref")" "$rrss" "$(ratio "$add" "$rmb")"
fi
if [[ -n $age_line ]]; then
  read -r amb arss <<<"$age_line"
  printf '%-34s %8s %8s %8s MiB   (storgo add / age: %s)\n' "age -r (encrypt to a file)" "$amb" "$(ratio "$amb" "$ref")" "$arss" "$(ratio "$add" "$amb")"
fi
