//! `ec:10+6` against `replicas:3` under the same churn (issue 24): 60 in-process nodes, items of
//! 1 KiB–8 MiB added at random nodes, then rounds of killing six nodes *at once* and starting
//! six, with one repair round everywhere between. Both runs use one seed (the same items, the
//! same victims). After every round each item's readability is counted from what the live
//! nodes hold (copies: one whole holder; stripes: K' shards alive in every stripe); at the end
//! every item the run still holds is fetched byte for byte from a node holding nothing of it.
//!
//! The arithmetic printed beside the observed losses: with exactly 3 holders an item is lost
//! when all three are among the six victims, 6·5·4/(60·59·58) per item and round; with 16
//! column holders a stripe of K' data blocks is lost when more than 16 − K' of them are,
//! which six victims can never be for K' ≤ 10. Expected losses over the run for copies:
//! items × rounds × 5.8e-4 (about 1.75 for 300 items and 10 rounds).
//!
//! Scaled by `STORGO_EC_CHURN_NODES`, `_ITEMS`, `_ROUNDS`, `_SEED`. `cargo test` runs 60 nodes,
//! 30 items and 2 rounds, which keeps the suite inside its time (two and a half minutes on 2
//! cores); the 300 items × 10 rounds is `STORGO_EC_CHURN_ITEMS=300
//! STORGO_EC_CHURN_ROUNDS=10`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::Multiaddr;
use rand::{Rng, SeedableRng};
use storgo::content::stripe::{Durability, Shape};
use storgo::content::{BlockAddress, ContentId};
use storgo::node::Node;
use storgo::store::{Store, StoreOptions};

use crate::nodes::*;
use crate::{fetch_and_compare, settle};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn start(dir: &Path, bootstrap: Vec<Multiaddr>, durability: Durability) -> Arc<Node> {
    let store = Arc::new(Store::open(dir, StoreOptions::default()).expect("open store"));
    let cfg = storgo::node::ReplicationConfig {
        durability: Some(durability),
        repair_interval: None,
        stall_timeout: Duration::from_secs(20),
        ..Default::default()
    };
    Arc::new(
        Node::start_with(store, loopback_config(bootstrap), cfg)
            .await
            .expect("start node"),
    )
}

/// Whether the live `nodes` together can still read `root`: a whole copy or pin somewhere,
/// or, striped, K' live shards in every stripe.
fn readable(nodes: &[Arc<Node>], root: &BlockAddress) -> bool {
    let mut columns: HashMap<u8, bool> = HashMap::new();
    let mut map = None;
    for n in nodes {
        if let Some(p) = n.store.pin_of(root).unwrap() {
            if !p.partial {
                return true;
            }
        }
        if let Some(r) = n.store.replica_of(root).unwrap() {
            match r.shard {
                None if r.complete => return true,
                Some(s) if r.complete => {
                    columns.insert(s.column, true);
                    map = map.or_else(|| n.store.stripe_map(&s.map, root).ok());
                }
                _ => {}
            }
        }
    }
    let Some(map) = map else {
        return false;
    };
    let k = map.shape.k as usize;
    map.stripes.iter().all(|s| {
        let data = (0..s.data.len())
            .filter(|c| columns.contains_key(&(*c as u8)))
            .count();
        let parity = (0..s.parity.len())
            .filter(|j| columns.contains_key(&((k + j) as u8)))
            .count();
        data + parity >= s.data.len()
    })
}

/// What one run came to.
struct Run {
    lost: usize,
    /// Bytes other nodes store for the items (all stores but the adders' pins), at the end.
    stored_by_others: u64,
    data: u64,
    moved: u64,
    took: Duration,
}

async fn run(
    durability: Durability,
    seed: u64,
    n_nodes: usize,
    n_items: usize,
    rounds: usize,
) -> Run {
    let started = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let files = tmp.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let mut made = 0;
    let dir = |made: &mut usize| {
        *made += 1;
        tmp.path().join(format!("d{made}"))
    };
    let first = start(&dir(&mut made), vec![], durability).await;
    let boot = addr(&first);
    let mut nodes = vec![first];
    for _ in 1..n_nodes {
        nodes.push(start(&dir(&mut made), vec![boot.clone()], durability).await);
    }
    for n in &nodes {
        wait_routing(n, 10).await;
    }
    let mut items: Vec<(ContentId, Vec<u8>)> = Vec::new();
    let mut data = 0u64;
    for i in 0..n_items {
        let len = (1024f64 * 8192f64.powf(rng.gen::<f64>())) as usize;
        let at = Arc::clone(&nodes[rng.gen_range(0..nodes.len())]);
        let (id, bytes) = add_random(&at, &files, &format!("item-{i}"), len, seed ^ i as u64).await;
        at.replicator
            .repair_item(id.root, durability)
            .await
            .expect("place");
        data += bytes.len() as u64;
        items.push((id, bytes));
    }
    settle(&nodes).await;
    let fetched = |nodes: &[Arc<Node>]| -> u64 {
        nodes.iter().map(|n| n.client.traffic().bytes_fetched).sum()
    };
    let mut moved = 0;
    let mut lost: Vec<BlockAddress> = Vec::new();
    for round in 1..=rounds {
        // Six (a tenth) at once, before any repair.
        let kill = (nodes.len() / 10).max(1);
        for _ in 0..kill {
            let victim = nodes.swap_remove(rng.gen_range(0..nodes.len()));
            Arc::into_inner(victim).expect("sole owner").stop().await;
        }
        for (id, _) in &items {
            if !lost.contains(&id.root) && !readable(&nodes, &id.root) {
                lost.push(id.root);
            }
        }
        for _ in 0..kill {
            let via = addr(&nodes[rng.gen_range(0..nodes.len())]);
            let node = start(&dir(&mut made), vec![via], durability).await;
            wait_routing(&node, 10).await;
            nodes.push(node);
        }
        let before = fetched(&nodes);
        futures::future::join_all(nodes.iter().map(|n| n.replicator.round())).await;
        settle(&nodes).await;
        moved += fetched(&nodes).saturating_sub(before);
        eprintln!(
            "{durability} round {round}: {} items lost so far",
            lost.len()
        );
    }
    // Every item still held is read back, byte for byte, where nothing of it is held.
    for (i, (id, bytes)) in items.iter().enumerate() {
        if lost.contains(&id.root) {
            continue;
        }
        let reader = nodes
            .iter()
            .cycle()
            .skip(i)
            .find(|n| {
                n.store.replica_of(&id.root).unwrap().is_none()
                    && n.store.pin_of(&id.root).unwrap().is_none()
            })
            .expect("a node holding nothing of it");
        fetch_and_compare(reader, id, bytes).await;
    }
    // What the holders keep, as declared to them (a copy: the item; a column: its blocks,
    // the manifests and the map).
    let stored_by_others: u64 = nodes
        .iter()
        .flat_map(|n| n.store.replicas().unwrap())
        .filter(|r| r.complete)
        .map(|r| r.bytes)
        .sum();
    for n in nodes {
        Arc::into_inner(n).expect("sole owner").stop().await;
    }
    Run {
        lost: lost.len(),
        stored_by_others,
        data,
        moved,
        took: started.elapsed(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripes_survive_six_failures_at_once_where_copies_do_not() {
    let (n_nodes, n_items, rounds) = (
        env("STORGO_EC_CHURN_NODES", 60),
        env("STORGO_EC_CHURN_ITEMS", 30),
        env("STORGO_EC_CHURN_ROUNDS", 2),
    );
    let seed: u64 = std::env::var("STORGO_EC_CHURN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let ec = Durability::Stripes(Shape::new(10, 6).unwrap());
    let copies = Durability::Replicas(3);
    eprintln!("ec churn seed {seed}: {n_nodes} nodes, {n_items} items, {rounds} rounds");
    let striped = run(ec, seed, n_nodes, n_items, rounds).await;
    let copied = run(copies, seed, n_nodes, n_items, rounds).await;
    let kill = (n_nodes / 10).max(1) as f64;
    let n = n_nodes as f64;
    let p3 = (kill * (kill - 1.0) * (kill - 2.0)) / (n * (n - 1.0) * (n - 2.0));
    for (name, r, expected) in [
        ("ec:10+6", &striped, 0.0),
        ("replicas:3", &copied, n_items as f64 * rounds as f64 * p3),
    ] {
        eprintln!(
            "{name}: lost {} of {n_items} (expected by arithmetic {expected:.2}); others store {:.2}x the data; {} MiB moved by repair; {:?}",
            r.lost,
            r.stored_by_others as f64 / r.data as f64,
            r.moved >> 20,
            r.took
        );
    }
    assert_eq!(
        striped.lost, 0,
        "six simultaneous failures cannot lose a striped item"
    );
}
