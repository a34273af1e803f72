//! Ten nodes, R = 3: an add lands on exactly the three peers closest to its root. Then the
//! adder dies, and each original holder in turn, with a repair round between: after every
//! step the item is fetchable from the survivors and, after the round, three live peers hold
//! it whole again.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use storgo::node::Node;

use crate::nodes::*;
use crate::{by_distance, fetch_and_compare, settle};

const R: u8 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_survives_its_adder_and_each_holder_dying() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let tmp = tempfile::tempdir().unwrap();
    let first = start_replicating_node(&tmp.path().join("n0"), vec![], None, R).await;
    let boot = addr(&first);
    let mut nodes = vec![Some(Arc::new(first))];
    for i in 1..10 {
        let n = start_replicating_node(
            &tmp.path().join(format!("n{i}")),
            vec![boot.clone()],
            None,
            R,
        )
        .await;
        nodes.push(Some(Arc::new(n)));
    }
    for n in nodes.iter().flatten() {
        wait_routing(n, 6).await;
    }
    let adder = Arc::clone(nodes[0].as_ref().unwrap());
    let (id, data) = add_random(&adder, tmp.path(), "lecture.pdf", 3 << 20, 1).await;

    adder
        .replicator
        .repair_item(id.root, storgo::content::stripe::Durability::Replicas(R))
        .await
        .expect("place replicas");
    let whole = adder
        .replicator
        .wait_for_replicas(id.root, R, Duration::from_secs(60), &|_| {})
        .await
        .expect("wait");
    assert_eq!(whole.len(), R as usize, "three peers confirm");
    let others = by_distance(&id.root, nodes[1..].iter().flatten().map(|n| n.as_ref()));
    let expected: HashSet<_> = others[..R as usize].iter().copied().collect();
    let holders: HashSet<_> = nodes
        .iter()
        .flatten()
        .filter(|n| holds_replica(n, &id.root))
        .map(|n| n.client.peer_id())
        .collect();
    assert_eq!(
        holders, expected,
        "exactly the R closest other nodes hold it"
    );

    // The adder goes, then each original holder, one at a time.
    let mut victims = vec![adder.client.peer_id()];
    victims.extend(others[..R as usize].iter().copied());
    drop(adder);
    for victim in victims {
        let i = nodes
            .iter()
            .position(|n| n.as_ref().is_some_and(|n| n.client.peer_id() == victim))
            .expect("victim is alive");
        let node = Arc::into_inner(nodes[i].take().unwrap()).expect("sole owner");
        node.stop().await;
        let alive: Vec<Arc<Node>> = nodes.iter().flatten().cloned().collect();

        // Fetchable from the survivors right after the loss…
        let reader = alive
            .iter()
            .find(|n| !holds_replica(n, &id.root))
            .expect("a survivor without the item");
        fetch_and_compare(reader, &id, &data).await;

        // …and back to R whole holders after one repair round.
        for n in &alive {
            let r = n.replicator.round().await;
            if r.items > 0 {
                eprintln!("round on {}: {r:?}", n.client.peer_id());
            }
        }
        settle(&alive).await;
        let holders = alive.iter().filter(|n| holds_replica(n, &id.root)).count();
        assert!(
            holders >= R as usize,
            "after losing {victim} and a round, {holders} live holders (want {R})"
        );
    }
}
