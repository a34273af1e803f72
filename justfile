# Everyday recipes. `just pre` is the gate CI runs before the tests.

# Formatting and lints, as CI checks them.
pre:
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings

# The whole test suite (what CI runs after `pre`).
test: pre
    cargo test

# Run a node (the main job).
node *ARGS:
    cargo run --release -- node {{ARGS}}

# Criterion benchmark of the per-chunk path, then add/cat on a 1 GiB file vs openssl.
bench size_mib="1024":
    cargo bench --bench seal
    cargo build --release
    scripts/bench-local.sh {{size_mib}}

# Erasure coding at 10+6 with 1 MiB shards on one core: encode and decode MB/s, the code alone
# and with storgo's address checks (Criterion); then twenty-six in-process nodes: a 1 GiB add placed
# as replicas:3 and as ec:10+6 (time, bytes stored by others), a healthy and a degraded fetch,
# and the repair of six lost columns.
bench-ec mib="1024":
    cargo bench --bench ec
    STORGO_BENCH_MIB={{mib}} cargo test --release --test durability bench_ec -- --ignored --nocapture

# Regenerate the protocol test vectors (only when a format deliberately changes).
vectors:
    cargo run --example vectors

# `storgo fetch -o` from a second node vs `sendme receive`, both ending with the file on disk,
# 512 MiB and 1 GiB, alternating order (root: isolated loopback-only netns).
bench-net runs="3" *SIZES_MIB:
    cargo build --release
    command -v sendme >/dev/null || test -x /tmp/sendme-bin/bin/sendme || cargo install sendme --root /tmp/sendme-bin
    scripts/bench-net.sh {{runs}} {{SIZES_MIB}}

# Compression on and off: add speed, bytes stored, fetch speed and bytes sent, on real text
# (the local cargo registry's sources, tarred) and on random bytes.
bench-compress runs="5" random_mib="512":
    cargo build --release
    scripts/bench-compress.sh {{runs}} {{random_mib}}

# A folder of 10,000 small files: add -r and get next to restic backup and restore, and the
# space each takes against the data.
bench-files runs="5" files="10000":
    cargo build --release
    scripts/bench-files.sh {{runs}} {{files}}

# 50 in-process nodes: republishing 10,000 provider records, batched sweep next to one
# start_providing per root in the same run, then get_providers latency (3 runs).
bench-dht runs="3" *ARGS:
    cargo build --release --example bench_dht
    scripts/bench-dht.sh {{runs}} {{ARGS}}

# A peer floods a node with requests for missing blocks while another fetches 100 MiB from it:
# loaded vs unloaded fetch speed and the node's peak RSS (hardening issue's flood figures).
bench-flood runs="5" size_mib="100" requests="10000":
    cargo build --release --bin storgo --example flood
    scripts/bench-flood.sh {{runs}} {{size_mib}} {{requests}}

# Every decoder of network, disk and user input under libFuzzer (cargo-fuzz, nightly), SECS per
# target from the committed seeds; prints executions per target.
fuzz secs="60":
    scripts/fuzz.sh {{secs}}

# Line coverage of the whole suite per module (cargo-llvm-cov); fails when a module that
# decodes network or disk input is under 80%. HTML in target/coverage/html.
coverage:
    scripts/coverage.sh

# N nodes on 127.0.0.1 (no mDNS), each with its web page; prints their login URLs. Data and
# logs in target/cluster/. `just cluster-stop` stops them.
cluster n="3":
    cargo build --release
    scripts/cluster.sh start {{n}}

cluster-stop:
    scripts/cluster.sh stop

# The container image without a registry: a Debian base from Debian's packages and the
# release binary (see docker/Dockerfile); then `docker-compose -f docker/compose.yaml up -d`.
docker-image:
    cargo build --release
    docker/make-base.sh
    rm -rf target/docker-context && mkdir -p target/docker-context/prebuilt
    cp Cargo.toml Cargo.lock target/docker-context/ && strip -o target/docker-context/prebuilt/storgo target/release/storgo
    DOCKER_BUILDKIT=0 docker build -f docker/Dockerfile -t storgo:latest --build-arg BASE=storgo-base:bookworm --build-arg BUILDER=storgo-base:bookworm target/docker-context
    docker image prune -f --filter label=storgo.stage=build

# Shared collections: publish → follower push time, latest-version resolution through the DHT
# on 30 in-process nodes, and search over 10,000 entries in 100 collections (3 runs, with peak
# RSS).
bench-collections runs="3" *ARGS:
    cargo build --release --example bench_collections
    scripts/bench-collections.sh {{runs}} {{ARGS}}

# Hole punching and relays across home routers in network namespaces (root): per NAT pairing,
# `pairs` fresh node pairs with 20 ms on the WAN; success rate, time to a direct connection,
# direct and relayed fetch speed.
bench-nat pairs="100" size_mib="64":
    STORGO_BENCH_PAIRS={{pairs}} STORGO_BENCH_MIB={{size_mib}} cargo test --release --test end_to_end bench_nat -- --ignored --nocapture --test-threads 1
