#!/usr/bin/env bash
# One file sent from one machine's process to another over loopback and ending on disk, done by
# storgo (`storgo fetch ID -o FILE` through a running node, from a second node) and by
# n0-computer's sendme (`sendme receive`, which also ends with the file on disk), in the same
# run, on the same file, alternating which goes first. sendme gets its fastest settings: relay
# disabled, a ticket carrying only the direct addresses, no progress bars.
#
# Prints, per run and size: MB/s when the command returns, and to the point where the output is
# on disk (storgo's fetch syncs before it returns; sendme's does not, so `sync` follows it),
# the time to receive a 1 KiB file (first byte, end to end),
# CPU seconds of each side during the transfer, peak RSS of each process, and the ratio.
# Both outputs are compared with the input.
#
# Everything runs inside a network namespace that has only a loopback interface (when run as
# root), so no tool can send a packet off this machine — sendme's default discovery included.
# Usage: scripts/bench-net.sh [RUNS] [SIZES_MIB...]      (`just bench-net` = 3 runs of 512 and 1024)
set -euo pipefail
runs=${1:-3}; shift || true
sizes=("$@"); [[ ${#sizes[@]} -gt 0 ]] || sizes=(512 1024)
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${STORGO_BIN:-$here/target/release/storgo}
sendme=${SENDME_BIN:-$(command -v sendme || echo /tmp/sendme-bin/bin/sendme)}
work=$(mktemp -d "${TMPDIR:-/tmp}/storgo-bench-net.XXXXXX")
ns=""
cleanup() {
  for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -n $ns ]] && ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

run() { if [[ -n $ns ]]; then ip netns exec "$ns" "$@"; else "$@"; fi; }
if [[ $(id -u) -eq 0 ]] && command -v ip >/dev/null; then
  ns=storgo-bench-$$
  ip netns add "$ns" && ip netns exec "$ns" ip link set lo up
else
  echo "note: not root; running on the host's loopback (storgo with --no-mdns; sendme skipped)" >&2
fi
have_sendme=""; [[ -n $ns && -x $sendme ]] && have_sendme=1

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { print b - a }'; }
rss_mib() { awk -F': ' '/Maximum resident set size/ {printf "%d", $2/1024}' "$1"; }
time_cpu() { awk -F': ' '/User time|System time/ {s += $2} END {printf "%.2f", s}' "$1"; }
# CPU seconds (user + system) a running process has used so far.
cpu_of() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }
# Waits until the page cache has written back what the previous transfer left dirty, so
# each measurement starts from the same state.
settle() { sync; }

head -c 1024 /dev/urandom > "$work/tiny"

# storgo: node A holds the file (added before it starts, so its RSS is serving only), node
# B fetches with -o. Prints "secs ttfb_ms cpu_a cpu_b rss_a rss_b".
storgo_once() {
  local file=$1 d=$work/s
  rm -rf "$d"; mkdir -p "$d"
  local id tiny
  id=$("$bin" --data-dir "$d/a" add "$file" | tail -n 1)
  tiny=$("$bin" --data-dir "$d/a" add "$work/tiny" | tail -n 1)
  start_node "$d" a
  local addr_a; addr_a=$(awk '/^listening on/ {print $3; exit}' "$d/a.out")
  start_node "$d" b --bootstrap "$addr_a"
  local pa pb; pa=$(node_pid "$d" a); pb=$(node_pid "$d" b)
  local t0 t1 ttfb
  t0=$(now); run "$bin" --data-dir "$d/b" fetch "$tiny" -o "$d/tiny.out" >/dev/null 2>&1; t1=$(now)
  ttfb=$(awk -v s="$(elapsed "$t0" "$t1")" 'BEGIN { printf "%.0f", s * 1000 }')
  cmp -s "$work/tiny" "$d/tiny.out" || { echo "storgo: tiny output differs" >&2; exit 1; }
  settle
  local ca0 cb0 ca1 cb1 secs
  ca0=$(cpu_of "$pa"); cb0=$(cpu_of "$pb")
  t0=$(now)
  run /usr/bin/time -v -o "$d/fetch.time" "$bin" --data-dir "$d/b" fetch "$id" -o "$d/out" >/dev/null 2>"$d/fetch.err"
  t1=$(now)
  ca1=$(cpu_of "$pa"); cb1=$(cpu_of "$pb")
  secs=$(elapsed "$t0" "$t1")
  stop_node "$d" a; stop_node "$d" b; wait_nodes "$d"
  cmp -s "$file" "$d/out" || { echo "storgo: output differs from the input" >&2; exit 1; }
  local cpu_b; cpu_b=$(awk -v a="$cb0" -v b="$cb1" -v c="$(time_cpu "$d/fetch.time")" 'BEGIN { printf "%.2f", b - a + c }')
  echo "$secs $ttfb $(awk -v a="$ca0" -v b="$ca1" 'BEGIN { printf "%.2f", b - a }') $cpu_b $(rss_mib "$d/a.time") $(rss_mib "$d/b.time") $secs"
  rm -rf "$d"; settle
}

# storgo from three holders (two of them fetched it from the first), optionally killing one
# (SIGKILL) once a third of the output is written. Prints "secs peers_used".
multi_once() { # file, kill?
  local file=$1 kill=${2:-} d=$work/x
  rm -rf "$d"; mkdir -p "$d"
  local id; id=$("$bin" --data-dir "$d/a" add "$file" | tail -n 1)
  start_node "$d" a
  local addr_a; addr_a=$(awk '/^listening on/ {print $3; exit}' "$d/a.out")
  local h
  for h in h2 h3; do
    start_node "$d" "$h" --bootstrap "$addr_a"
    run "$bin" --data-dir "$d/$h" fetch "$id" >/dev/null 2>&1
  done
  start_node "$d" b --bootstrap "$addr_a"
  settle
  local t0 t1; t0=$(now)
  run "$bin" --data-dir "$d/b" fetch "$id" -o "$d/out" > "$d/fetch.out" 2>"$d/fetch.err" &
  local fetcher=$!
  if [[ -n $kill ]]; then
    local third=$(( $(stat -c %s "$file") / 3 ))
    while kill -0 "$fetcher" 2>/dev/null; do
      local written; written=$(find "$d" -maxdepth 2 -path '*/.out.storgo-*/item' -printf '%s\n' 2>/dev/null | head -n 1)
      [[ -n $written && $written -ge $third ]] && break
      sleep 0.02
    done
    pkill -KILL -f -- "^$bin --data-dir $d/h2 node" || true
  fi
  wait "$fetcher"
  t1=$(now)
  cmp -s "$file" "$d/out" || { echo "storgo (3 holders): output differs from the input" >&2; exit 1; }
  local used; used=$(cat "$d/fetch.out" "$d/fetch.err" | grep -oE '[0-9]+ peers' | awk '{print $1}' | head -n 1)
  for h in a h2 h3 b; do stop_node "$d" "$h"; done
  wait_nodes "$d"
  echo "$(elapsed "$t0" "$t1") ${used:-?}"
  rm -rf "$d"; settle
}

start_node() { # dir, name, extra args...
  local d=$1 name=$2; shift 2
  run /usr/bin/time -v -o "$d/$name.time" "$bin" --data-dir "$d/$name" node --no-mdns \
    --listen /ip4/127.0.0.1/tcp/0 "$@" > "$d/$name.out" 2> "$d/$name.err" &
  for _ in $(seq 600); do grep -q '^api:' "$d/$name.out" 2>/dev/null && return 0; sleep 0.1; done
  echo "node $name did not start" >&2; cat "$d/$name.err" >&2; exit 1
}
node_pid() { pgrep -f -- "^$bin --data-dir $1/$2 node" | head -n 1; }
stop_node() { pkill -TERM -f -- "^$bin --data-dir $1/$2 node" || true; }
wait_nodes() { # until both time(1) reports are written
  for _ in $(seq 300); do
    [[ -s $1/a.time && -s $1/b.time ]] && grep -q 'Maximum resident' "$1/a.time" "$1/b.time" && return 0
    sleep 0.1
  done
}

# sendme: a sender per file, `sendme receive` in an empty folder. Same fields as storgo_once.
sendme_send() { # file, dir → prints the ticket; the sender's pid is in dir/send.pid
  local f=$1 d=$2
  (cd "$d" && exec ip netns exec "$ns" /usr/bin/time -v -o "$d/send.time" "$sendme" send "$f" \
     --relay disabled --ticket-type addresses --no-progress > "$d/send.out" 2> "$d/send.err") &
  local ticket=""
  for _ in $(seq 600); do
    ticket=$(grep -ohE 'blob[a-z0-9]{20,}' "$d/send.out" "$d/send.err" 2>/dev/null | head -n 1 || true)
    [[ -n $ticket ]] && break; sleep 0.1
  done
  [[ -n $ticket ]] || { echo "sendme printed no ticket" >&2; cat "$d/send.err" >&2; exit 1; }
  pgrep -f -- "^$sendme send $f" | head -n 1 > "$d/send.pid"
  echo "$ticket"
}
sendme_once() {
  local file=$1 d=$work/m
  rm -rf "$d"; mkdir -p "$d/tiny" "$d/big" "$d/recv-tiny" "$d/recv"
  cp "$work/tiny" "$d/tiny/tiny"
  local tt; tt=$(sendme_send "$d/tiny/tiny" "$d/tiny")
  local t0 t1 ttfb
  t0=$(now); (cd "$d/recv-tiny" && run "$sendme" receive "$tt" --relay disabled --no-progress >/dev/null 2>&1); t1=$(now)
  ttfb=$(awk -v s="$(elapsed "$t0" "$t1")" 'BEGIN { printf "%.0f", s * 1000 }')
  pkill -INT -f -- "^$sendme send $d/tiny/tiny" || true
  local ticket; ticket=$(sendme_send "$file" "$d/big")
  local ps; ps=$(cat "$d/big/send.pid")
  settle
  local c0 c1 secs
  c0=$(cpu_of "$ps")
  t0=$(now)
  (cd "$d/recv" && run /usr/bin/time -v -o "$d/recv.time" "$sendme" receive "$ticket" --relay disabled --no-progress >/dev/null 2>"$d/recv.err")
  t1=$(now)
  c1=$(cpu_of "$ps")
  # storgo's fetch returns with the output and the stored copy on disk (fsync); sendme's
  # returns with them in the page cache. `sync` here gives the time to the same state.
  sync; local t2; t2=$(now)
  secs=$(elapsed "$t0" "$t1")
  durable=$(elapsed "$t0" "$t2")
  pkill -INT -f -- "^$sendme send $file" || true
  for _ in $(seq 100); do grep -q 'Maximum resident' "$d/big/send.time" 2>/dev/null && break; sleep 0.1; done
  pkill -KILL -f -- "^$sendme send" || true
  cmp -s "$file" "$d/recv/$(basename "$file")" || { echo "sendme: output differs from the input" >&2; exit 1; }
  echo "$secs $ttfb $(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }') $(time_cpu "$d/recv.time") $(rss_mib "$d/big/send.time" 2>/dev/null || echo 0) $(rss_mib "$d/recv.time") $durable"
  rm -rf "$d"; settle
}

results=$work/results
: > "$results"; : > "$work/multi"
for size in "${sizes[@]}"; do
  file=$work/input-$size
  head -c $((size * 1024 * 1024)) /dev/urandom > "$file"
done
for run_no in $(seq "$runs"); do
  for size in "${sizes[@]}"; do
    file=$work/input-$size
    cat "$file" > /dev/null
    order=(storgo sendme); (( run_no % 2 == 0 )) && order=(sendme storgo)
    for tool in "${order[@]}"; do
      [[ $tool == sendme && -z $have_sendme ]] && continue
      line=$("${tool}_once" "$file")
      echo "$run_no $size $tool $line" >> "$results"
      echo "run $run_no, $size MiB, $tool: $line" >&2
    done
    for kill in "" kill; do
      line=$(multi_once "$file" "$kill")
      echo "$run_no $size ${kill:-all} $line" >> "$work/multi"
      echo "run $run_no, $size MiB, 3 holders ${kill:+(one killed)}: $line" >&2
    done
  done
done

bytes_of() { echo $(( $1 * 1024 * 1024 )); }
printf '\n%-4s %-5s %-7s %8s %14s %8s %11s %11s %13s %13s\n' run MiB tool MB/s "MB/s on disk" "1KiB ms" "send CPU s" "recv CPU s" "send RSS MiB" "recv RSS MiB"
grep -v -e ' all ' -e ' kill ' "$results" > "$results.2" || true; mv "$results.2" "$results"
while read -r r size tool secs ttfb cs cr rs rr durable; do
  printf '%-4s %-5s %-7s %8.0f %14.0f %8s %11s %11s %13s %13s\n' "$r" "$size" "$tool" \
    "$(awk -v b="$(bytes_of "$size")" -v s="$secs" 'BEGIN { print b / s / 1e6 }')" \
    "$(awk -v b="$(bytes_of "$size")" -v s="$durable" 'BEGIN { print b / s / 1e6 }')" "$ttfb" "$cs" "$cr" "$rs" "$rr"
done < "$results"
echo
printf '%-4s %-5s %-34s %8s %s\n' run MiB "storgo fetch -o from 3 holders" MB/s "peers used"
while read -r r size what secs used; do
  label="all three serving"; [[ $what == kill ]] && label="one SIGKILLed at 1/3 of the output"
  printf '%-4s %-5s %-34s %8.0f %s\n' "$r" "$size" "$label" \
    "$(awk -v b="$(bytes_of "$size")" -v s="$secs" 'BEGIN { print b / s / 1e6 }')" "$used"
done < "$work/multi"
if [[ -n $have_sendme ]]; then
  echo
  for size in "${sizes[@]}"; do
    awk -v size="$size" '$2 == size { t[$1 " " $3] = $4; d[$1 " " $3] = $10 } END {
      lo = 1e9; hi = 0; dlo = 1e9; dhi = 0
      for (k in t) { split(k, p, " "); if (p[2] == "storgo" && ((p[1] " sendme") in t)) {
        r = t[p[1] " sendme"] / t[k]; if (r < lo) lo = r; if (r > hi) hi = r
        r = d[p[1] " sendme"] / d[k]; if (r < dlo) dlo = r; if (r > dhi) dhi = r } }
      if (hi > 0) printf "%s MiB: storgo fetch -o / sendme receive, per run: %.2f–%.2f (to the file in page cache), %.2f–%.2f (to the file on disk)\n", size, lo, hi, dlo, dhi
    }' "$results"
  done
else
  echo "sendme: not measured (needs root for the loopback-only namespace and \`cargo install sendme\`)"
fi
