//! In a 30-node network, a root added at one node is found by every other node.

use std::time::Duration;

use rand::{Rng, SeedableRng};

use crate::common::*;
use crate::nodes::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_finds_a_root_added_anywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(30);
    let mut nodes = vec![start_node(&tmp.path().join("n0"), vec![]).await];
    for i in 1..30 {
        // Each node knows one random earlier node: the DHT, not a star, connects them.
        let via = addr(&nodes[rng.gen_range(0..i)]);
        nodes.push(start_node(&tmp.path().join(format!("n{i}")), vec![via]).await);
    }
    for n in &nodes {
        wait_routing(n, 1).await;
    }
    let origin = rng.gen_range(0..nodes.len());
    let path = tmp.path().join("item");
    write_random(&path, 1 << 20, 2);
    let id = add_and_provide(&nodes[origin], &path).await;
    let want = nodes[origin].client.peer_id().to_string();

    let mut times = vec![];
    let mut requests = vec![];
    for (i, n) in nodes.iter().enumerate() {
        if i == origin {
            continue;
        }
        let lookup =
            tokio::time::timeout(Duration::from_secs(60), n.client.find_providers(id.root))
                .await
                .expect("lookup finishes")
                .expect("lookup");
        assert!(
            lookup.providers.contains(&want),
            "node {i} did not find the provider"
        );
        times.push(lookup.duration_ms);
        requests.push(lookup.requests);
    }
    times.sort();
    requests.sort();
    eprintln!(
        "30-node lookup: median {} ms, max {} ms; peers asked per lookup: median {}, max {}",
        times[times.len() / 2],
        times[times.len() - 1],
        requests[requests.len() / 2],
        requests[requests.len() - 1]
    );
    for n in nodes {
        n.stop().await;
    }
}
