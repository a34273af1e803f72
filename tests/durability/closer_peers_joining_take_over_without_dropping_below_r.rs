//! Peers closer to an item join: after repair rounds its replicas sit on the R closest peers
//! and the farther old holders have dropped theirs, with never fewer than R whole copies at
//! any moment observed between steps.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use storgo::node::Node;

use crate::nodes::*;
use crate::{by_distance, settle};

const R: u8 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closer_peers_joining_take_over_without_dropping_below_r() {
    let tmp = tempfile::tempdir().unwrap();
    let adder = Arc::new(start_replicating_node(&tmp.path().join("n0"), vec![], None, R).await);
    let boot = addr(&adder);
    let mut nodes = vec![Arc::clone(&adder)];
    for i in 1..5 {
        nodes.push(Arc::new(
            start_replicating_node(
                &tmp.path().join(format!("n{i}")),
                vec![boot.clone()],
                None,
                R,
            )
            .await,
        ));
    }
    for n in &nodes {
        wait_routing(n, 3).await;
    }
    let (id, _) = add_random(&adder, tmp.path(), "syllabus.pdf", 1 << 20, 4).await;
    adder
        .replicator
        .repair_item(id.root, storgo::content::stripe::Durability::Replicas(R))
        .await
        .unwrap();
    adder
        .replicator
        .wait_for_replicas(id.root, R, Duration::from_secs(60), &|_| {})
        .await
        .unwrap();
    let count = |nodes: &[Arc<Node>]| nodes.iter().filter(|n| holds_replica(n, &id.root)).count();
    assert_eq!(count(&nodes), R as usize);

    // Eight more peers join; the item's R closest non-adders are now mostly new ones.
    for i in 5..13 {
        nodes.push(Arc::new(
            start_replicating_node(
                &tmp.path().join(format!("n{i}")),
                vec![boot.clone()],
                None,
                R,
            )
            .await,
        ));
    }
    for n in &nodes {
        wait_routing(n, 8).await;
    }
    let target: HashSet<_> = by_distance(&id.root, nodes[1..].iter().map(|n| n.as_ref()))
        [..R as usize]
        .iter()
        .copied()
        .collect();
    let mut rounds = 0;
    loop {
        let holders: HashSet<_> = nodes
            .iter()
            .filter(|n| holds_replica(n, &id.root))
            .map(|n| n.client.peer_id())
            .collect();
        assert!(
            holders.len() >= R as usize,
            "only {} whole copies after round {rounds}",
            holders.len()
        );
        if holders == target {
            break;
        }
        assert!(
            rounds < 6,
            "replicas did not settle on the closest peers: {holders:?} vs {target:?}"
        );
        for n in &nodes {
            n.replicator.round().await;
            assert!(
                count(&nodes) >= R as usize,
                "a handoff left fewer than R copies"
            );
        }
        settle(&nodes).await;
        rounds += 1;
    }
    eprintln!("replicas moved to the {R} closest peers in {rounds} rounds");
}
