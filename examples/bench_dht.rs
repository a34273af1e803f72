//! `just bench-dht`: the cost of republishing provider records, batched sweep vs one
//! `start_providing` per root, on one in-process network of real nodes on 127.0.0.1.
//!
//! 1. Starts `--nodes` nodes (default 50), each joining through a random earlier one.
//! 2. Node 0 republishes `--roots` roots (default 10,000) with the sweep
//!    (`Republisher::announce`): wall time, and messages counted where they land — every
//!    Kademlia request and every announce batch received by any node.
//! 3. Node 0 provides `--naive` other roots (default: as many) the naive way, one
//!    `start_providing` each, 64 in flight: the same counts.
//! 4. `--lookups` `get_providers` lookups (default 300) of swept roots from random other
//!    nodes, one at a time: time and peers asked until the first provider record, and until
//!    the walk ends.
//!
//! Prints a table and one JSON line. Traffic stays on 127.0.0.1 (no mDNS).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::{Rng, SeedableRng};
use storgo::content::BlockAddress;
use storgo::network::NetworkConfig;
use storgo::node::{Node, ReplicationConfig, Traffic};
use storgo::store::{Store, StoreOptions};

struct Args {
    nodes: usize,
    roots: usize,
    naive: usize,
    lookups: usize,
    seed: u64,
}

fn args() -> Args {
    let mut a = Args {
        nodes: 50,
        roots: 10_000,
        naive: usize::MAX,
        lookups: 300,
        seed: rand::random(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().and_then(|v| v.parse::<u64>().ok());
        let Some(v) = value else {
            eprintln!(
                "usage: bench_dht [--nodes N] [--roots N] [--naive N] [--lookups N] [--seed S]"
            );
            std::process::exit(2);
        };
        match flag.as_str() {
            "--nodes" => a.nodes = v as usize,
            "--roots" => a.roots = v as usize,
            "--naive" => a.naive = v as usize,
            "--lookups" => a.lookups = v as usize,
            "--seed" => a.seed = v,
            _ => {
                eprintln!("unknown flag {flag}");
                std::process::exit(2);
            }
        }
    }
    if a.naive == usize::MAX {
        a.naive = a.roots;
    }
    a
}

async fn start(dir: &std::path::Path, bootstrap: Vec<libp2p::Multiaddr>) -> Node {
    let store = Arc::new(Store::open(dir, StoreOptions::default()).expect("open store"));
    let cfg = NetworkConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")],
        bootstrap,
        mdns: false,
        republish_interval: None,
        ..NetworkConfig::default()
    };
    let replication = ReplicationConfig {
        repair_interval: None,
        scrub_rate: None,
        ..ReplicationConfig::default()
    };
    Node::start_with(store, cfg, replication)
        .await
        .expect("start node")
}

/// Requests received by every node: the messages the network carried.
fn received(nodes: &[Node]) -> u64 {
    nodes
        .iter()
        .map(|n| {
            let Traffic {
                dht_requests_received,
                announcements_received,
                ..
            } = n.client.traffic();
            dht_requests_received + announcements_received
        })
        .sum()
}

/// Waits (at most 60 s) until the whole network receives fewer than 10 requests a second,
/// so that one phase's messages are counted in that phase and not the next.
async fn quiet(nodes: &[Node]) {
    let t = Instant::now();
    let mut last = received(nodes);
    while t.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = received(nodes);
        if now - last < 10 {
            return;
        }
        last = now;
    }
    eprintln!("warning: the network did not go quiet within 60 s");
}

fn random_roots(rng: &mut impl Rng, n: usize) -> Vec<BlockAddress> {
    (0..n)
        .map(|_| BlockAddress::from_digest(rng.gen()))
        .collect()
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let a = args();
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    eprintln!("seed {}: starting {} nodes", a.seed, a.nodes);
    let mut nodes: Vec<Node> = vec![start(&tmp.path().join("n0"), vec![]).await];
    for i in 1..a.nodes {
        let via = nodes[rng.gen_range(0..i)].client.listen_addrs()[0].clone();
        nodes.push(start(&tmp.path().join(format!("n{i}")), vec![via]).await);
    }
    let want = (a.nodes - 1).min(20);
    let filled = tokio::time::timeout(Duration::from_secs(60), async {
        for n in &nodes {
            while n.client.info().await.expect("info").routing_table_size < want {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    })
    .await;
    if filled.is_err() {
        eprintln!("warning: not every routing table reached {want} peers in 60 s");
    }
    let origin = &nodes[0];
    // A long-running node is connected to its neighbours already: connect first, then let
    // kad's own reaction to new routing-table entries (a bootstrap walk) die down, so that
    // neither way is charged for it.
    for n in &nodes[1..] {
        let _ = origin.client.dial(n.client.listen_addrs()[0].clone()).await;
    }
    quiet(&nodes).await;

    // The sweep.
    let swept = random_roots(&mut rng, a.roots);
    let before = received(&nodes);
    let t = Instant::now();
    let report = origin.republisher.announce(swept.clone()).await;
    let sweep_s = t.elapsed().as_secs_f64();
    quiet(&nodes).await;
    let sweep_msgs = received(&nodes) - before;
    if !report.failed.is_empty() {
        eprintln!("sweep failures: {:?}", report.failed);
    }

    // The naive way, on other roots.
    let naive = random_roots(&mut rng, a.naive);
    let before = received(&nodes);
    let t = Instant::now();
    futures::stream::iter(naive)
        .map(|root| origin.client.provide(root))
        .buffer_unordered(64)
        .for_each(|r| async move {
            if let Err(e) = r {
                eprintln!("provide: {e}");
            }
        })
        .await;
    let naive_s = t.elapsed().as_secs_f64();
    quiet(&nodes).await;
    let naive_msgs = received(&nodes) - before;

    // Lookups of swept roots from other nodes.
    let me = origin.client.peer_id().to_string();
    let (mut first_ms, mut whole_ms, mut asked_first, mut asked_all) =
        (vec![], vec![], vec![], vec![]);
    let (mut missed, mut local) = (0, 0);
    for _ in 0..a.lookups {
        let asker = &nodes[rng.gen_range(1..nodes.len())];
        let root = swept[rng.gen_range(0..swept.len())];
        let l = asker.client.find_providers(root).await.expect("lookup");
        if !l.providers.contains(&me) {
            missed += 1;
            continue;
        }
        // The asker is itself one of the k closest and holds the record: no network latency.
        if l.requests_to_first == Some(0) {
            local += 1;
            continue;
        }
        first_ms.push(l.first_provider_ms.unwrap_or(f64::NAN));
        asked_first.push(f64::from(l.requests_to_first.unwrap_or(0)));
        whole_ms.push(l.duration_ms as f64);
        asked_all.push(f64::from(l.requests));
    }
    for v in [
        &mut first_ms,
        &mut whole_ms,
        &mut asked_first,
        &mut asked_all,
    ] {
        v.sort_by(f64::total_cmp);
    }

    let per_root = |msgs: u64, n: usize| msgs as f64 / n.max(1) as f64;
    let sweep_per_root = per_root(sweep_msgs, a.roots);
    let naive_per_root = per_root(naive_msgs, a.naive);
    println!(
        "network: {} nodes on 127.0.0.1, k = {}",
        a.nodes,
        storgo::network::DHT_K
    );
    println!(
        "sweep: {} roots in {:.2} s; {} messages ({:.3}/root): {} walks ({} requests), {} batches to {} peers; {} records stored",
        a.roots, sweep_s, sweep_msgs, sweep_per_root, report.walks, report.walk_requests, report.batches, report.peers, report.records_stored
    );
    println!(
        "naive: {} roots in {:.2} s; {} messages ({:.1}/root)",
        a.naive, naive_s, naive_msgs, naive_per_root
    );
    println!(
        "ratio: {:.0}x fewer messages per root, {:.0}x less time per root",
        naive_per_root / sweep_per_root,
        (naive_s / a.naive.max(1) as f64) / (sweep_s / a.roots.max(1) as f64)
    );
    println!(
        "get_providers ({} over the network, {} answered from the asker's own store, {} missed): first record median {:.1} ms, p95 {:.1} ms, max {:.1} ms; peers asked by then median {}, max {}; whole walk median {} ms, p95 {} ms, {} peers asked",
        first_ms.len(),
        local,
        missed,
        pct(&first_ms, 0.5),
        pct(&first_ms, 0.95),
        pct(&first_ms, 1.0),
        pct(&asked_first, 0.5),
        pct(&asked_first, 1.0),
        pct(&whole_ms, 0.5),
        pct(&whole_ms, 0.95),
        pct(&asked_all, 0.5),
    );
    println!(
        "{}",
        serde_json::json!({
            "nodes": a.nodes, "seed": a.seed,
            "sweep": {"roots": a.roots, "secs": sweep_s, "messages": sweep_msgs,
                      "walks": report.walks, "batches": report.batches, "failed": report.failed.len()},
            "naive": {"roots": a.naive, "secs": naive_s, "messages": naive_msgs},
            "lookup": {"n": first_ms.len(), "local": local, "missed": missed,
                       "first_ms_median": pct(&first_ms, 0.5), "first_ms_p95": pct(&first_ms, 0.95),
                       "first_ms_max": pct(&first_ms, 1.0),
                       "asked_to_first_median": pct(&asked_first, 0.5),
                       "asked_to_first_max": pct(&asked_first, 1.0)},
        })
    );
    for n in nodes {
        n.stop().await;
    }
}
