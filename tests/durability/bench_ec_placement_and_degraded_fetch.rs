//! `just bench-ec`, the network half (ignored by `cargo test`; the code half is `cargo bench
//! --bench ec`): twenty-six in-process nodes on loopback. One item of `STORGO_BENCH_MIB` (default
//! 1024) is added and placed twice, as `replicas:3` and as `ec:10+6`, on separate networks:
//! the add's time with its placement, and the bytes stored on the other nodes ÷ the item's
//! bytes. Then, striped: a fetch on a node holding nothing while every holder is up (healthy)
//! against one with the adder and the holders of data columns 0–5 gone (degraded: six of ten
//! data blocks per stripe rebuilt from parity), each fetch's rate, and the repair bytes a round
//! moves to put the six columns back ÷ the bytes those columns held.
//!
//! `STORGO_BENCH_MIB=1024 cargo test --release --test durability bench_ec -- --ignored --nocapture`

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::Multiaddr;
use storgo::content::stripe::{Durability, Shape};
use storgo::node::Node;
use storgo::store::{Store, StoreOptions};

use crate::nodes::*;
use crate::settle;

async fn start(dir: &Path, bootstrap: Vec<Multiaddr>) -> Arc<Node> {
    let store = Arc::new(Store::open(dir, StoreOptions::default()).expect("open store"));
    let cfg = storgo::node::ReplicationConfig {
        repair_interval: None,
        stall_timeout: Duration::from_secs(60),
        intake_per_peer_per_hour: u64::MAX,
        ..Default::default()
    };
    Arc::new(
        Node::start_with(store, loopback_config(bootstrap), cfg)
            .await
            .expect("start node"),
    )
}

async fn network(dir: &Path, n: usize) -> Vec<Option<Arc<Node>>> {
    let first = start(&dir.join("n0"), vec![]).await;
    let boot = addr(&first);
    let mut nodes = vec![Some(first)];
    for i in 1..n {
        nodes.push(Some(
            start(&dir.join(format!("n{i}")), vec![boot.clone()]).await,
        ));
    }
    for node in nodes.iter().flatten() {
        wait_routing(node, n.min(12) - 1).await;
    }
    nodes
}

fn stored(nodes: &[Option<Arc<Node>>], skip: usize) -> u64 {
    nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != skip)
        .filter_map(|(_, n)| n.as_ref())
        .map(|n| n.store.stats().unwrap().bytes)
        .sum()
}

async fn fetch_rate(node: &Node, id: &storgo::content::ContentId, mib: usize) -> f64 {
    let t = Instant::now();
    fetch_default(node, id, None).await.expect("fetch");
    mib as f64 * 1.048_576 / t.elapsed().as_secs_f64()
}

async fn stop_all(nodes: Vec<Option<Arc<Node>>>) {
    for n in nodes.into_iter().flatten() {
        Arc::into_inner(n).expect("sole owner").stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: just bench-ec"]
async fn bench_ec_placement_and_degraded_fetch() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mib: usize = std::env::var("STORGO_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let ec = Durability::Stripes(Shape::new(10, 6).unwrap());
    let mut results = Vec::new();
    for durability in [Durability::Replicas(3), ec] {
        let tmp = tempfile::tempdir().unwrap();
        let nodes = network(tmp.path(), 26).await;
        let adder = Arc::clone(nodes[0].as_ref().unwrap());
        let t = Instant::now();
        let (id, _) = add_random(&adder, tmp.path(), "dataset.bin", mib << 20, 5).await;
        let added = t.elapsed();
        adder
            .replicator
            .repair_item(id.root, durability)
            .await
            .expect("place");
        let all: Vec<Arc<Node>> = nodes.iter().flatten().cloned().collect();
        adder
            .replicator
            .wait_for_replicas(
                id.root,
                durability.holders() as u8,
                Duration::from_secs(600),
                &|_| {},
            )
            .await
            .expect("placed");
        settle(&all).await;
        drop(all);
        let placed = t.elapsed();
        let ratio = stored(&nodes, 0) as f64 / (mib << 20) as f64;
        println!(
            "bench-ec {durability}: add of {mib} MiB {:.1} s, with placement {:.1} s; others store {ratio:.3}x the item",
            added.as_secs_f64(),
            placed.as_secs_f64()
        );
        results.push((durability, ratio));
        if durability == ec {
            let root = id.root;
            let holder = |nodes: &[Option<Arc<Node>>], i: usize| {
                nodes[i]
                    .as_ref()
                    .and_then(|n| n.store.replica_of(&root).unwrap())
                    .and_then(|r| r.shard)
                    .map(|s| s.column)
            };
            let readers: Vec<usize> = (1..26).filter(|i| holder(&nodes, *i).is_none()).collect();
            let healthy = fetch_rate(nodes[readers[0]].as_ref().unwrap(), &id, mib).await;
            let lost: Vec<usize> = (1..26)
                .filter(|i| holder(&nodes, *i).is_some_and(|c| c < 6))
                .collect();
            let lost_bytes: u64 = lost
                .iter()
                .map(|i| nodes[*i].as_ref().unwrap().store.stats().unwrap().bytes)
                .sum();
            drop(adder);
            let mut nodes = nodes;
            // The healthy reader pinned what it read: it goes too, or it would serve it whole.
            for i in [0, readers[0]].into_iter().chain(lost.iter().copied()) {
                let n = nodes[i].take().unwrap();
                Arc::into_inner(n).expect("sole owner").stop().await;
            }
            let degraded = fetch_rate(nodes[readers[1]].as_ref().unwrap(), &id, mib).await;
            println!(
                "bench-ec {durability}: healthy fetch {healthy:.0} MB/s, degraded (6 of 10 data columns gone) {degraded:.0} MB/s, ratio {:.2}",
                degraded / healthy
            );
            let alive: Vec<Arc<Node>> = nodes.iter().flatten().cloned().collect();
            let before: u64 = alive.iter().map(|n| n.client.traffic().bytes_fetched).sum();
            for n in &alive {
                n.replicator.round().await;
            }
            settle(&alive).await;
            let moved: u64 = alive
                .iter()
                .map(|n| n.client.traffic().bytes_fetched)
                .sum::<u64>()
                - before;
            let back = (1..26).filter(|i| holder(&nodes, *i).is_some()).count();
            println!(
                "bench-ec {durability}: repair put {back} of 16 columns back, moving {} MiB for {} MiB lost ({:.2}x)",
                moved >> 20,
                lost_bytes >> 20,
                moved as f64 / lost_bytes as f64
            );
            drop(alive);
            stop_all(nodes).await;
        } else {
            drop(adder);
            stop_all(nodes).await;
        }
    }
    println!(
        "bench-ec bytes stored by others / item: {}",
        results
            .iter()
            .map(|(d, r)| format!("{d} {r:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
