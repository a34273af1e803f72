//! Replicas are leases: the item's pinner renews them in its repair rounds; once it unpins,
//! the holders let the item go when the lease passes, instead of keeping it and pushing it to
//! each other forever (`replicate-v1.md`, "Leases").

use std::sync::Arc;
use std::time::Duration;

use storgo::node::{Node, ReplicationConfig};
use storgo::store::{Store, StoreOptions};

use crate::nodes::*;

const LEASE: Duration = Duration::from_secs(4);

async fn node(dir: &std::path::Path, bootstrap: Vec<libp2p::Multiaddr>) -> Node {
    let store = Arc::new(Store::open(dir, StoreOptions::default()).expect("open store"));
    let cfg = ReplicationConfig {
        replication: 2,
        repair_interval: None,
        scrub_rate: None,
        replica_lease: LEASE,
        stall_timeout: Duration::from_secs(20),
        ..Default::default()
    };
    Node::start_with(store, loopback_config(bootstrap), cfg)
        .await
        .expect("start node")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Waits until the wall clock passes `t` (leases are in Unix seconds).
async fn until_after(t: u64) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tokio::time::timeout(Duration::from_secs(30), async {
        while now() <= t {
            tick.tick().await;
        }
    })
    .await
    .expect("the clock to move");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinner_renews_and_an_unpinned_item_is_let_go() {
    let tmp = tempfile::tempdir().unwrap();
    let adder = node(&tmp.path().join("adder"), vec![]).await;
    let mut peers = Vec::new();
    for i in 0..3 {
        peers.push(node(&tmp.path().join(format!("p{i}")), vec![addr(&adder)]).await);
    }
    for p in &peers {
        wait_routing(p, 2).await;
    }
    let (id, _) = add_random(&adder, tmp.path(), "slides.pdf", 1 << 20, 21).await;
    adder
        .replicator
        .repair_item(id.root, storgo::content::stripe::Durability::Replicas(2))
        .await
        .unwrap();
    adder
        .replicator
        .wait_for_replicas(id.root, 2, Duration::from_secs(60), &|_| {})
        .await
        .unwrap();
    let holders: Vec<&Node> = peers
        .iter()
        .filter(|p| holds_replica(p, &id.root))
        .collect();
    assert_eq!(holders.len(), 2);
    let lease = |n: &Node| {
        n.store
            .replica_of(&id.root)
            .unwrap()
            .and_then(|r| r.lease_until)
            .expect("a replica with a lease")
    };
    let first: Vec<u64> = holders.iter().map(|h| lease(h)).collect();
    assert!(first.iter().all(|l| *l <= now() + LEASE.as_secs()));

    // A holder's own round passes its lease on but does not extend it.
    holders[0].replicator.round().await;
    assert_eq!(lease(holders[0]), first[0]);
    // The pinner's round renews every holder's lease.
    until_after(first.iter().copied().max().unwrap()).await;
    adder.replicator.round().await;
    for (h, l) in holders.iter().zip(&first) {
        assert!(lease(h) > *l, "the pinner's round renewed the lease");
    }

    // Unpinned: nobody renews; once the lease passes, the holders let the item go.
    adder.store.unpin(&id).unwrap();
    let last = holders.iter().map(|h| lease(h)).max().unwrap();
    until_after(last).await;
    for h in &holders {
        let report = h.replicator.round().await;
        assert_eq!(report.expired, 1, "{report:?}");
        assert!(h.store.replica_of(&id.root).unwrap().is_none());
    }
    // And nobody took it in again meanwhile.
    for p in &peers {
        assert!(!holds_replica(p, &id.root));
    }
    for n in peers.into_iter().chain([adder]) {
        n.stop().await;
    }
}
