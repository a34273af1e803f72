#!/usr/bin/env bash
# A local cluster for trying storgo without containers: N nodes on 127.0.0.1, the first the
# others' bootstrap peer, mDNS off (nothing leaves this machine).
#   scripts/cluster.sh start N     prints each node's web login URL
#   scripts/cluster.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
root=target/cluster
bin=${STORGO_BIN:-target/release/storgo}

stop() {
  for pidfile in "$root"/*.pid; do
    [[ -e $pidfile ]] || continue
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
  echo "cluster stopped (data kept in $root; rm -rf it to start afresh)"
}

start() {
  local n=$1 bootstrap=""
  [[ -x $bin ]] || { echo "build first: cargo build --release" >&2; exit 1; }
  mkdir -p "$root"
  for i in $(seq 1 "$n"); do
    local dir=$root/node$i out=$root/node$i.out
    if [[ -e $root/node$i.pid ]] && kill -0 "$(cat "$root/node$i.pid")" 2>/dev/null; then
      echo "node$i already runs (just cluster-stop first)" >&2; exit 1
    fi
    args=(--data-dir "$dir" node --no-mdns --listen /ip4/127.0.0.1/tcp/0 --api 127.0.0.1:0)
    [[ -n $bootstrap ]] && args+=(--bootstrap "$bootstrap")
    setsid "$bin" "${args[@]}" >"$out" 2>"$root/node$i.log" </dev/null &
    echo $! >"$root/node$i.pid"
    # Wait for the node's last start-up line (its API), up to 30 s.
    for _ in $(seq 300); do grep -q '^api: ' "$out" 2>/dev/null && break; sleep 0.1; done
    grep -q '^api: ' "$out" || { echo "node$i did not start; see $root/node$i.log" >&2; exit 1; }
    [[ -z $bootstrap ]] && bootstrap=$(grep -m1 '^listening on /ip4/127.0.0.1/tcp/' "$out" | sed 's/^listening on //')
    echo "node$i  $(grep '^web: ' "$out" | sed 's/^web: //')"
  done
  echo "logs: $root/node*.log · data: $root/node*/ · stop: just cluster-stop"
}

case ${1:-} in
  start) start "${2:-3}" ;;
  stop) stop ;;
  *) echo "usage: $0 start N | stop" >&2; exit 2 ;;
esac
