//! Limits on what peers may ask, each set low so that it shows: requests a second per peer,
//! bytes served a second, and bytes of replicas one peer may ask a node to hold per hour.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use storgo::content::BlockAddress;
use storgo::network::chunks::ErrorCode;
use storgo::network::{
    ChunkRequest, ChunkResponse, NetworkConfig, RefuseReason, ReplicateRequest, ReplicateResponse,
    ServeLimits,
};
use storgo::node::{fetch, FetchOptions, Node, ReplicationConfig};
use storgo::store::{Store, StoreOptions};

use crate::common::*;
use crate::nodes::*;

async fn limited_node(dir: &std::path::Path, serve: ServeLimits, intake_per_hour: u64) -> Node {
    let store = Arc::new(Store::open(dir, StoreOptions::default()).expect("open store"));
    let cfg = NetworkConfig {
        serve,
        ..loopback_config(vec![])
    };
    let replication = ReplicationConfig {
        repair_interval: None,
        intake_per_peer_per_hour: intake_per_hour,
        ..Default::default()
    };
    Node::start_with(store, cfg, replication)
        .await
        .expect("start node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_over_its_request_rate_is_answered_busy() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = ServeLimits {
        requests_per_second_per_peer: 20,
        ..ServeLimits::default()
    };
    let a = limited_node(&tmp.path().join("a"), serve, 1 << 30).await;
    let b = start_node(&tmp.path().join("b"), vec![addr(&a)]).await;
    b.client.dial(addr(&a)).await.unwrap();
    let target = a.client.peer_id();
    let answers: Vec<_> = stream::iter(0..200u32)
        .map(|i| {
            let c = b.client.clone();
            let mut d = [0u8; 32];
            d[..4].copy_from_slice(&i.to_be_bytes());
            async move {
                c.request(target, ChunkRequest::GetChunk(BlockAddress::from_digest(d)))
                    .await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let rate_busy = answers
        .iter()
        .filter(|r| {
            matches!(r, Ok(ChunkResponse::Error { code: ErrorCode::Busy, message })
                if message.contains("a second"))
        })
        .count();
    let not_found = answers
        .iter()
        .filter(|r| matches!(r, Ok(ChunkResponse::NotFound)))
        .count();
    eprintln!("200 asks at a 20/s limit: {not_found} answered, {rate_busy} busy");
    assert!(rate_busy > 0, "asks over the rate are answered busy");
    assert!(not_found >= 20, "a second's worth is served");
    for n in [a, b] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_are_served_no_faster_than_the_serve_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = ServeLimits {
        bytes_per_second: Some(4 << 20),
        ..ServeLimits::default()
    };
    let a = limited_node(&tmp.path().join("a"), serve, 1 << 30).await;
    let path = tmp.path().join("f");
    write_random(&path, 12 << 20, 80);
    let id = add_and_provide(&a, &path).await;
    let b = start_node(&tmp.path().join("b"), vec![addr(&a)]).await;
    let started = Instant::now();
    let opts = FetchOptions::default();
    fetch(&b.client, &b.store, &id, &opts, &|_| {}, None)
        .await
        .expect("the fetch completes");
    let took = started.elapsed();
    eprintln!("12 MiB at a 4 MiB/s serve rate: {took:?}");
    // One second's worth may go at once; the other 8 MiB need two more seconds.
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    for n in [a, b] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_cannot_ask_for_more_than_its_hourly_intake() {
    let tmp = tempfile::tempdir().unwrap();
    let a = limited_node(&tmp.path().join("a"), ServeLimits::default(), 3 << 20).await;
    let b = start_node(&tmp.path().join("b"), vec![addr(&a)]).await;
    let hold = |seed: u64| {
        let c = b.client.clone();
        let target = a.client.peer_id();
        let mut d = [0u8; 32];
        d[..8].copy_from_slice(&seed.to_be_bytes());
        async move {
            c.replicate(
                target,
                ReplicateRequest::Hold {
                    root: BlockAddress::from_digest(d),
                    replication: 3,
                    bytes: 2 << 20,
                    lease_until: None,
                    shard: None,
                },
            )
            .await
            .expect("an answer")
        }
    };
    assert_eq!(hold(1).await, ReplicateResponse::Accepted);
    match hold(2).await {
        ReplicateResponse::Refused {
            reason: RefuseReason::Busy,
            message,
        } => assert!(message.contains("last hour"), "{message}"),
        other => panic!("the second 2 MiB passes the 3 MiB hourly intake: {other:?}"),
    }
    for n in [a, b] {
        n.stop().await;
    }
}
