//! A handoff trusts only holders that prove their copy. Two peers closer to an item than an
//! honest holder answer "I hold it whole" but have lost every chunk; the honest holder's
//! repair would have dropped its copy because of them. Now it asks each for a block picked at
//! random, keeps its copy, and books them.

use std::sync::Arc;
use std::time::Duration;

use storgo::node::{Node, ReplicationConfig};
use storgo::store::{Store, StoreOptions};

use crate::nodes::*;

async fn node(dir: &std::path::Path, bootstrap: Vec<libp2p::Multiaddr>) -> Node {
    let store = Arc::new(Store::open(dir, StoreOptions::default()).expect("open store"));
    // No background scrub or repair: the liars must not heal themselves before the test asks.
    let cfg = ReplicationConfig {
        replication: 2,
        repair_interval: None,
        scrub_rate: None,
        stall_timeout: Duration::from_secs(20),
        ..Default::default()
    };
    Node::start_with(store, loopback_config(bootstrap), cfg)
        .await
        .expect("start node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_keeps_its_copy_when_closer_claims_are_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let adder = node(&tmp.path().join("adder"), vec![]).await;
    let boot = addr(&adder);
    let mut peers = Vec::new();
    for i in 0..5 {
        peers.push(node(&tmp.path().join(format!("p{i}")), vec![boot.clone()]).await);
    }
    for p in &peers {
        wait_routing(p, 3).await;
    }
    let (id, _) = add_random(&adder, tmp.path(), "notes.pdf", 3 << 20, 9).await;
    adder
        .replicator
        .repair_item(id.root, storgo::content::stripe::Durability::Replicas(3))
        .await
        .unwrap();
    let whole = adder
        .replicator
        .wait_for_replicas(id.root, 3, Duration::from_secs(60), &|_| {})
        .await
        .unwrap();
    assert_eq!(whole.len(), 3, "three replicas placed");
    let mut holders: Vec<&Node> = peers
        .iter()
        .filter(|p| holds_replica(p, &id.root))
        .collect();
    holders.sort_by_key(|n| {
        crate::by_distance(&id.root, peers.iter())
            .iter()
            .position(|p| *p == n.client.peer_id())
    });
    let (liars, honest) = (&holders[..2], holders[2]);
    // The two closest keep their "whole replica" rows but lose every block (the proof is
    // drawn by bytes, so a liar that kept only the small blocks would almost always be asked
    // for one it lost; removing all of them makes the outcome certain).
    for l in liars {
        for f in crate::common::block_files(l.store.dir()) {
            std::fs::remove_file(f).unwrap();
        }
    }

    let report = honest
        .replicator
        .repair_item(id.root, storgo::content::stripe::Durability::Replicas(2))
        .await
        .unwrap();
    assert!(
        !report.handed_off,
        "handed off to holders without the data: {report:?}"
    );
    assert!(holds_replica(honest, &id.root));
    for l in liars {
        let debt = honest.client.debt(l.client.peer_id()).await.unwrap();
        assert!(
            debt > 0.0,
            "a holder that could not prove its copy is booked"
        );
    }

    for n in peers.into_iter().chain([adder]) {
        n.stop().await;
    }
}
