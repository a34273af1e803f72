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

# Regenerate the protocol test vectors (only when a format deliberately changes).
vectors:
    cargo run --example vectors

# Two nodes on loopback fetching 1 GiB, next to sendme in the same run (root: isolated netns).
bench-net size_mib="1024":
    cargo build --release
    command -v sendme >/dev/null || cargo install sendme
    scripts/bench-net.sh {{size_mib}}

# 50 in-process nodes: republishing 10,000 provider records, batched sweep next to one
# start_providing per root in the same run, then get_providers latency (3 runs).
bench-dht runs="3" *ARGS:
    cargo build --release --example bench_dht
    scripts/bench-dht.sh {{runs}} {{ARGS}}
