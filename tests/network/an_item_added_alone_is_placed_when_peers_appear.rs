//! An item added while no peer is known is short of copies — and says so at once, in the
//! node's count and its metric — and has its copies placed within seconds of peers joining,
//! not at the next repair round (30 minutes by default; here an hour, so only the peers
//! joining can have placed them).

use std::sync::Arc;
use std::time::Duration;

use storgo::node::{Node, ReplicationConfig};
use storgo::store::Store;

use crate::nodes::*;

async fn start(dir: &std::path::Path, bootstrap: Vec<libp2p::Multiaddr>) -> Node {
    let store = Arc::new(Store::open(dir, Default::default()).expect("open store"));
    let cfg = ReplicationConfig {
        replication: 2,
        repair_interval: Some(Duration::from_secs(3600)),
        ..Default::default()
    };
    Node::start_with(store, loopback_config(bootstrap), cfg)
        .await
        .expect("start node")
}

/// `storgo_items_under_replicated` as `/metrics` shows it now.
async fn metric(node: &Node) -> String {
    let (metrics, store, replicator) = (
        node.metrics.clone(),
        Arc::clone(&node.store),
        node.replicator.clone(),
    );
    tokio::task::spawn_blocking(move || {
        metrics.observe_store(&store, &replicator);
        metrics.encode().unwrap()
    })
    .await
    .unwrap()
    .lines()
    .find(|l| l.starts_with("storgo_items_under_replicated "))
    .unwrap_or_default()
    .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_added_before_any_peer_is_placed_when_peers_appear() {
    let tmp = tempfile::tempdir().unwrap();
    let alone = start(&tmp.path().join("a"), vec![]).await;
    assert_eq!(metric(&alone).await, "storgo_items_under_replicated 0");
    let (id, _) = add_random(&alone, tmp.path(), "week1.pdf", 300_000, 11).await;
    // What an add through the API or the web page does next: provide, then place.
    let place = storgo::node::items::provide_then_place(
        &alone.client,
        &alone.replicator,
        id.root,
        None,
        None,
    )
    .await
    .expect("provide");
    place.await;
    assert_eq!(alone.replicator.under_replicated(), 1, "no peer: short");
    assert_eq!(metric(&alone).await, "storgo_items_under_replicated 1");

    // Two peers appear, one after the other.
    let b = start(&tmp.path().join("b"), vec![addr(&alone)]).await;
    let c = start(&tmp.path().join("c"), vec![addr(&alone)]).await;
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    while !(holds_replica(&b, &id.root) && holds_replica(&c, &id.root))
        || alone.replicator.under_replicated() > 0
    {
        assert!(
            tokio::time::Instant::now() < until,
            "within 30 s of peers joining: b holds {}, c holds {}, short {}",
            holds_replica(&b, &id.root),
            holds_replica(&c, &id.root),
            alone.replicator.under_replicated()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(metric(&alone).await, "storgo_items_under_replicated 0");
    for n in [alone, b, c] {
        n.stop().await;
    }
}
