#!/usr/bin/env bash
# Two storgo nodes on 127.0.0.1 fetching a file (1 GiB by default), next to n0-computer's
# sendme (iroh, --relay disabled) on the same file in the same run. Prints MB/s, time to first
# byte and peak RSS of both sides.
#
# Everything runs inside a network namespace that has only a loopback interface (when run as
# root), so no tool can send a packet off this machine — sendme's default discovery included.
# Usage: scripts/bench-net.sh [SIZE_MIB]      (`just bench-net`)
set -euo pipefail
size_mib=${1:-1024}
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

file=$work/input
head -c $((size_mib * 1024 * 1024)) /dev/urandom > "$file"
head -c 1024 /dev/urandom > "$work/tiny"
bytes=$(stat -c %s "$file")
sync; cat "$file" > /dev/null

now() { date +%s.%N; }
mbps() { awk -v b="$bytes" -v s="$1" 'BEGIN { printf "%.0f", b / s / 1e6 }'; }
rss_mib() { awk -F': ' '/Maximum resident set size/ {printf "%d", $2/1024}' "$1"; }

start_node() { # name, extra args...
  local name=$1; shift
  run /usr/bin/time -v -o "$work/$name.time" "$bin" --data-dir "$work/$name" node --no-mdns \
    --listen /ip4/127.0.0.1/tcp/0 "$@" > "$work/$name.out" 2> "$work/$name.err" &
  for _ in $(seq 600); do grep -q '^api:' "$work/$name.out" 2>/dev/null && return 0; sleep 0.1; done
  echo "node $name did not start" >&2; cat "$work/$name.err" >&2; exit 1
}
stop_node() { pkill -TERM -f -- "^$bin --data-dir $work/$1 node" || true; }

start_node a
addr_a=$(awk '/^listening on/ {print $3; exit}' "$work/a.out")
id=$(run "$bin" --data-dir "$work/a" add "$file" | tail -n 1)
tiny=$(run "$bin" --data-dir "$work/a" add "$work/tiny" | tail -n 1)
start_node b --bootstrap "$addr_a"

t0=$(now); run "$bin" --data-dir "$work/b" fetch "$tiny" 2>/dev/null; t1=$(now)
ttfb=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", (b - a) * 1000 }')
t0=$(now); run "$bin" --data-dir "$work/b" fetch "$id" 2>/dev/null; t1=$(now)
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
storgo_mbps=$(mbps "$secs")
stop_node a; stop_node b; wait
rss_a=$(rss_mib "$work/a.time"); rss_b=$(rss_mib "$work/b.time")

printf '%-28s %8s %10s %14s %14s\n' "1 transfer of ${size_mib} MiB" "MB/s" "TTFB ms" "sender RSS" "receiver RSS"
printf '%-28s %8s %10s %10s MiB %10s MiB\n' "storgo fetch (TCP)" "$storgo_mbps" "$ttfb" "$rss_a" "$rss_b"

if [[ -n $ns && -x $sendme ]]; then
  mkdir -p "$work/send" "$work/recv"
  (cd "$work/send" && run /usr/bin/time -v -o "$work/send.time" "$sendme" send "$file" --relay disabled \
     > "$work/send.out" 2> "$work/send.err" &)
  ticket=""
  for _ in $(seq 600); do
    ticket=$(grep -ohE 'blob[a-z0-9]{20,}' "$work/send.out" "$work/send.err" 2>/dev/null | head -n 1 || true)
    [[ -n $ticket ]] && break; sleep 0.1
  done
  [[ -n $ticket ]] || { echo "sendme printed no ticket" >&2; cat "$work/send.err" >&2; exit 1; }
  t0=$(now)
  (cd "$work/recv" && run /usr/bin/time -v -o "$work/recv.time" "$sendme" receive "$ticket" --relay disabled \
     > /dev/null 2> "$work/recv.err")
  t1=$(now)
  pkill -INT -f -- "$sendme send $file" || true; sleep 1; pkill -KILL -f -- "$sendme send $file" || true; wait || true
  s_secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
  s_mbps=$(mbps "$s_secs")
  printf '%-28s %8s %10s %10s MiB %10s MiB\n' "sendme (iroh QUIC)" "$s_mbps" "-" \
    "$(rss_mib "$work/send.time" || echo ?)" "$(rss_mib "$work/recv.time")"
  awk -v a="$storgo_mbps" -v b="$s_mbps" 'BEGIN { printf "storgo / sendme throughput: %.2f\n", a / b }'
else
  echo "sendme: not measured (needs root for the loopback-only namespace and \`cargo install sendme\`)"
fi
