//! A node stopped in the middle of two fetches: at its next start it finishes the one that
//! was to pin its item, from where it stopped, and lets go of the one that only read its item
//! (`cat` through the node), whose reader is gone.

use std::sync::Arc;
use std::time::Duration;

use storgo::network::{NetworkConfig, ServeLimits};
use storgo::node::{fetch, FetchOptions, Node};
use storgo::store::{Store, StoreOptions};

use crate::common::*;
use crate::nodes::*;

const SIZE: usize = 16 << 20;

async fn slow_server(dir: &std::path::Path) -> Node {
    let store = Arc::new(Store::open(dir, StoreOptions::default()).expect("open store"));
    let cfg = NetworkConfig {
        serve: ServeLimits {
            bytes_per_second: Some(2 << 20),
            ..ServeLimits::default()
        },
        ..loopback_config(vec![])
    };
    Node::start(store, cfg).await.expect("start node")
}

/// Starts fetching `id` and stops the fetch once part of it is stored (under a partial pin
/// when it pins; a read writes no pin).
async fn cut_off(node: &Node, id: storgo::content::ContentId, pin: bool) {
    let stored_before = node.store.stats().unwrap().bytes;
    let (client, store) = (node.client.clone(), Arc::clone(&node.store));
    let fetching = tokio::spawn(async move {
        let opts = FetchOptions {
            pin,
            ..FetchOptions::default()
        };
        fetch(&client, &store, &id, &opts, &|_| {}, None).await
    });
    let mut poll = tokio::time::interval(Duration::from_millis(5));
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            poll.tick().await;
            let partial = !pin
                || node
                    .store
                    .pin_of(&id.root)
                    .unwrap()
                    .is_some_and(|p| p.partial);
            let stored = node.store.stats().unwrap().bytes - stored_before;
            if partial && stored >= (SIZE / 8) as u64 {
                return;
            }
            if fetching.is_finished() {
                return;
            }
        }
    })
    .await
    .expect("an eighth of the item to be stored");
    fetching.abort();
    match fetching.await {
        Err(e) if e.is_cancelled() => {}
        other => panic!("the fetch ended before it was cut off: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_fetch_is_resumed_and_an_interrupted_read_let_go() {
    let tmp = tempfile::tempdir().unwrap();
    let server = slow_server(&tmp.path().join("server")).await;
    let mut ids = Vec::new();
    for seed in [1, 2] {
        let path = tmp.path().join(format!("item-{seed}"));
        write_random(&path, SIZE, 300 + seed);
        ids.push(add_and_provide(&server, &path).await);
    }
    let (kept, read) = (ids[0], ids[1]);

    let node = start_node(&tmp.path().join("node"), vec![addr(&server)]).await;
    cut_off(&node, kept, true).await;
    cut_off(&node, read, false).await;
    let store = Arc::clone(&node.store);
    assert!(!store.pin_of(&kept.root).unwrap().unwrap().for_reading);
    assert!(
        store.pin_of(&read.root).unwrap().is_none(),
        "a read writes no pin"
    );
    let stored = store.stats().unwrap().bytes;
    node.stop().await;
    let served_before = server.client.info().await.unwrap().bytes_served;

    let node = Node::start(Arc::clone(&store), loopback_config(vec![addr(&server)]))
        .await
        .expect("restart");
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            poll.tick().await;
            let pins = store.pins().unwrap();
            if pins.len() == 1 && !pins[0].partial {
                return;
            }
        }
    })
    .await
    .expect("the pinning fetch to finish and the read to be let go");
    assert_eq!(store.pins().unwrap()[0].id, kept.to_string());
    // What the restarted node received: the kept item's missing part, nothing of the other.
    let refetched = node.client.info().await.unwrap().bytes_fetched;
    assert!(
        refetched < SIZE as u64 - (stored / 4),
        "the resumed fetch took {refetched} bytes (had {stored} stored of both items)"
    );
    // Nor did the server spend its serving budget on requests of the node that had gone
    // (it answered them from the queue after the node stopped, counting 25 MB for this
    // 16 MiB item, before it checked whether the requester was still there).
    let served = server.client.info().await.unwrap().bytes_served - served_before;
    assert!(
        served < SIZE as u64 - (stored / 4),
        "the server sent {served} bytes after the restart"
    );
    assert!(store.verify().unwrap().is_clean());
    node.stop().await;
    server.stop().await;
}
