//! Churn at scale: 60 nodes, 300 items of 1 KiB to 8 MiB added at random nodes, R = 5. Ten
//! rounds of: kill 10% of the nodes at random, start as many new ones, run one repair round
//! everywhere. At the end every item is fetchable byte for byte and has R live holders.
//!
//! Why R = 5: the six nodes of a round die *at once*, before any repair. With exactly 3
//! holders, the chance that all of one item's holders are among them is 6·5·4 / (60·59·58) =
//! 5.8e-4, so over 300 items and 10 rounds about 1.75 items are expected to be lost — by
//! arithmetic, not by a defect (a CI run saw 3). With 5 holders it is 1.1e-6 per item and
//! round, 0.003 per run. `STORGO_CHURN_R` sets it.
//! Prints the messages and bytes each round moved. `STORGO_CHURN_NODES`, `_ITEMS` and
//! `_ROUNDS` scale it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use storgo::node::Node;

use crate::nodes::*;
use crate::{fetch_and_compare, settle};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn traffic(nodes: &[Arc<Node>]) -> (u64, u64) {
    nodes
        .iter()
        .map(|n| n.client.traffic())
        .fold((0, 0), |a, t| {
            (a.0 + t.bytes_fetched, a.1 + t.replicate_requests_sent)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_at_scale_keeps_every_item_whole_on_r_live_holders() {
    let (n_nodes, n_items, n_rounds) = (
        env("STORGO_CHURN_NODES", 60),
        env("STORGO_CHURN_ITEMS", 300),
        env("STORGO_CHURN_ROUNDS", 10),
    );
    let seed: u64 = std::env::var("STORGO_CHURN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let r = env("STORGO_CHURN_R", 5) as u8;
    eprintln!("churn seed {seed}: {n_nodes} nodes, {n_items} items, {n_rounds} rounds, R = {r}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let files = tmp.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let first = Arc::new(start_replicating_node(&tmp.path().join("d0"), vec![], None, r).await);
    let boot = addr(&first);
    let mut nodes = vec![first];
    let mut made = 1;
    // A node joins through a live one (a node given only a dead bootstrap address is alone
    // in any DHT).
    let start = |made: &mut usize, boot: libp2p::Multiaddr| {
        *made += 1;
        let dir = tmp.path().join(format!("d{made}"));
        async move { Arc::new(start_replicating_node(&dir, vec![boot], None, r).await) }
    };
    for _ in 1..n_nodes {
        nodes.push(start(&mut made, boot.clone()).await);
    }
    for n in &nodes {
        wait_routing(n, 10).await;
    }

    // Items of 1 KiB to 8 MiB (log-uniform), each added at a random node and placed.
    let t0 = Instant::now();
    let mut items = Vec::new();
    for i in 0..n_items {
        let len = (1024f64 * 8192f64.powf(rng.gen::<f64>())) as usize;
        let at = Arc::clone(&nodes[rng.gen_range(0..nodes.len())]);
        let (id, data) = add_random(&at, &files, &format!("item-{i}"), len, seed ^ i as u64).await;
        at.replicator
            .repair_item(id.root, storgo::content::stripe::Durability::Replicas(r))
            .await
            .expect("place");
        items.push((id, data));
    }
    settle(&nodes).await;
    let total: usize = items.iter().map(|(_, d)| d.len()).sum();
    eprintln!(
        "added and placed {n_items} items ({} MiB) in {:?}",
        total >> 20,
        t0.elapsed()
    );

    // The adders are gone for good after the first rounds: only replicas keep the items.
    for round in 1..=n_rounds {
        let kill = (nodes.len() / 10).max(1);
        for _ in 0..kill {
            let victim = nodes.swap_remove(rng.gen_range(0..nodes.len()));
            Arc::into_inner(victim).expect("sole owner").stop().await;
        }
        for _ in 0..kill {
            let via = addr(&nodes[rng.gen_range(0..nodes.len())]);
            let node = start(&mut made, via).await;
            wait_routing(&node, 10).await;
            nodes.push(node);
        }
        let before = traffic(&nodes);
        let t = Instant::now();
        let reports = futures::future::join_all(nodes.iter().map(|n| n.replicator.round())).await;
        settle(&nodes).await;
        let after = traffic(&nodes);
        let under: usize = reports.iter().map(|r| r.under_replicated).sum();
        let pushes: usize = reports.iter().map(|r| r.pushes).sum();
        let failed: Vec<_> = reports.iter().flat_map(|r| r.failed.iter()).collect();
        if !failed.is_empty() {
            eprintln!("round {round}: failures {failed:?}");
        }
        eprintln!(
            "round {round}: killed {kill}, started {kill}; {pushes} pushes, {under} under-replicated views; {} replicate messages, {} KiB moved, {:?}",
            after.1.saturating_sub(before.1),
            after.0.saturating_sub(before.0) >> 10,
            t.elapsed()
        );
    }

    // Every item: r live whole holders (replicas, or the adder's pin plus replicas), and
    // fetchable byte for byte at a node that does not hold it.
    let mut short = Vec::new();
    for (id, _) in &items {
        let holders = nodes.iter().filter(|n| holds_replica(n, &id.root)).count();
        if holders < r as usize {
            let pinners = nodes
                .iter()
                .filter(|n| n.store.pin_of(&id.root).unwrap().is_some())
                .count();
            let partial = nodes
                .iter()
                .filter(|n| {
                    n.store
                        .replica_of(&id.root)
                        .unwrap()
                        .is_some_and(|r| !r.complete)
                })
                .count();
            short.push((id.root, holders, pinners, partial));
        }
    }
    assert!(
        short.is_empty(),
        "items with fewer than {r} live replica holders (root, replicas, pins, partial): {short:?}"
    );
    // Records follow the replicas: each item's holders are named by provider records on its
    // k closest live peers. A holder announces before its intake ends (which `settle` waits
    // for); the check is still polled for a while, yielding to the nodes between passes, so a
    // record on its way is waited for rather than raced.
    let unlisted = || {
        let mut unlisted = Vec::new();
        for (id, _) in &items {
            let key = storgo::network::provider_key(&id.root);
            let mut order: Vec<_> = nodes.iter().map(|n| n.client.peer_id()).collect();
            storgo::network::distance_order(&id.root, &mut order);
            let closest: Vec<_> = order.into_iter().take(storgo::network::DHT_K).collect();
            for h in nodes.iter().filter(|n| holds_replica(n, &id.root)) {
                let me = h.client.peer_id();
                let listed = nodes
                    .iter()
                    .filter(|n| closest.contains(&n.client.peer_id()) && n.client.peer_id() != me)
                    .filter(|n| {
                        use libp2p::kad::store::RecordStore;
                        storgo::network::DhtStore::new(n.store.clone(), n.client.peer_id())
                            .providers(&key)
                            .iter()
                            .any(|r| r.provider == me)
                    })
                    .count();
                if listed == 0 {
                    let since = h.store.replica_of(&id.root).ok().flatten().map(|r| r.since);
                    let rows: Vec<usize> = nodes
                        .iter()
                        .filter(|n| closest.contains(&n.client.peer_id()))
                        .map(|n| {
                            use libp2p::kad::store::RecordStore;
                            storgo::network::DhtStore::new(n.store.clone(), n.client.peer_id())
                                .providers(&key)
                                .len()
                        })
                        .collect();
                    unlisted.push((id.root, me, since, rows));
                }
            }
        }
        unlisted
    };
    let mut left = unlisted();
    let waited = Instant::now();
    let mut poll = tokio::time::interval(Duration::from_millis(200));
    while !left.is_empty() && waited.elapsed() < Duration::from_secs(30) {
        poll.tick().await;
        left = unlisted();
    }
    assert!(
        left.is_empty(),
        "{} holders not named by any record on their item's {} closest live peers (root, holder, replica since, provider rows on each closest peer): {left:?}",
        left.len(),
        storgo::network::DHT_K
    );
    let deadline = Duration::from_secs(600);
    tokio::time::timeout(deadline, async {
        for (i, (id, data)) in items.iter().enumerate() {
            let reader = nodes
                .iter()
                .cycle()
                .skip(i)
                .find(|n| {
                    !holds_replica(n, &id.root) && n.store.pin_of(&id.root).unwrap().is_none()
                })
                .expect("a node without the item");
            fetch_and_compare(reader, id, data).await;
        }
    })
    .await
    .expect("every item fetched in time");
}
