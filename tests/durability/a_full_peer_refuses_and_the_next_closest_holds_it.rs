//! The peer closest to an item is full: it refuses with a reason, and the next closest peers
//! take the item instead.

use std::collections::HashSet;
use std::time::Duration;

use crate::by_distance;
use crate::nodes::*;

const R: u8 = 2;
const QUOTA: u64 = 3 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_peer_refuses_and_the_next_closest_holds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let adder = start_replicating_node(&tmp.path().join("n0"), vec![], None, R).await;
    let boot = addr(&adder);
    let mut peers = Vec::new();
    for i in 1..6 {
        peers.push(
            start_replicating_node(
                &tmp.path().join(format!("n{i}")),
                vec![boot.clone()],
                Some(QUOTA),
                R,
            )
            .await,
        );
    }
    wait_routing(&adder, 5).await;
    for p in &peers {
        wait_routing(p, 3).await;
    }
    let (id, _) = add_random(&adder, tmp.path(), "slides.pdf", 2 << 20, 2).await;
    let order = by_distance(&id.root, peers.iter());
    // Fill the closest peer with an item of its own: the replica would pass its room.
    let full = peers
        .iter()
        .find(|p| p.client.peer_id() == order[0])
        .unwrap();
    add_random(full, tmp.path(), "own.bin", 2 << 20, 3).await;

    let report = adder
        .replicator
        .repair_item(id.root, storgo::content::stripe::Durability::Replicas(R))
        .await
        .expect("place");
    assert_eq!(report.refused.len(), 1, "{report:?}");
    assert_eq!(report.refused[0].0, order[0].to_string());
    assert!(report.refused[0].1.starts_with("OverQuota"), "{report:?}");
    let whole = adder
        .replicator
        .wait_for_replicas(id.root, R, Duration::from_secs(60), &|_| {})
        .await
        .unwrap();
    assert_eq!(whole.len(), R as usize);
    let holders: HashSet<_> = peers
        .iter()
        .filter(|p| holds_replica(p, &id.root))
        .map(|p| p.client.peer_id())
        .collect();
    let expected: HashSet<_> = order[1..=R as usize].iter().copied().collect();
    assert_eq!(holders, expected, "the next closest peers hold it");
    assert!(!report.under_replicated);
}
