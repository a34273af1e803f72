//! The batched republish puts each root's provider record on exactly the k peers closest to
//! it — the same peers a per-root `start_providing` would choose — with far fewer DHT walks
//! than roots, and ordinary `get_providers` lookups find them.

use std::collections::HashSet;
use std::time::Duration;

use libp2p::kad::store::RecordStore;
use rand::{Rng, SeedableRng};
use storgo::content::BlockAddress;
use storgo::network::{distance_order, provider_key, DhtStore, DHT_K};

use crate::nodes::*;

const NODES: usize = 30;
const ROOTS: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republish_puts_records_on_each_roots_closest_peers() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut nodes = vec![start_node(&tmp.path().join("n0"), vec![]).await];
    for i in 1..NODES {
        let via = addr(&nodes[rng.gen_range(0..i)]);
        nodes.push(start_node(&tmp.path().join(format!("n{i}")), vec![via]).await);
    }
    for n in &nodes {
        wait_routing(n, 5).await;
    }
    let roots: Vec<BlockAddress> = (0..ROOTS)
        .map(|_| BlockAddress::from_digest(rng.gen()))
        .collect();
    let origin = &nodes[0];
    let report = origin.republisher.announce(roots.clone()).await;
    eprintln!("{report:?}");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.records_sent, (ROOTS * DHT_K) as u64);
    assert_eq!(report.records_stored, report.records_sent);
    assert!(
        (report.walks as usize) * 10 < ROOTS,
        "{} walks for {ROOTS} roots",
        report.walks
    );

    // Where the records landed, against the true k closest computed over every node.
    let me = origin.client.peer_id();
    let others: Vec<_> = nodes.iter().skip(1).collect();
    let mut wrong = 0;
    for root in &roots {
        let key = provider_key(root);
        let mut order: Vec<_> = others.iter().map(|n| n.client.peer_id()).collect();
        distance_order(root, &mut order);
        let want: HashSet<_> = order.into_iter().take(DHT_K).collect();
        let holding: HashSet<_> = others
            .iter()
            .filter(|n| {
                DhtStore::new(n.store.clone(), n.client.peer_id())
                    .providers(&key)
                    .iter()
                    .any(|r| r.provider == me)
            })
            .map(|n| n.client.peer_id())
            .collect();
        wrong += usize::from(holding != want);
    }
    assert_eq!(
        wrong, 0,
        "{wrong} of {ROOTS} roots' records are not on their k closest peers"
    );

    // Lookups from other nodes find the origin.
    for i in 0..10 {
        let asker = &nodes[1 + rng.gen_range(0..NODES - 1)];
        let root = roots[rng.gen_range(0..ROOTS)];
        let lookup =
            tokio::time::timeout(Duration::from_secs(30), asker.client.find_providers(root))
                .await
                .expect("lookup finishes")
                .expect("lookup");
        assert!(
            lookup.providers.contains(&me.to_string()),
            "lookup {i} did not find the provider"
        );
    }
    for n in nodes {
        n.stop().await;
    }
}
