//! A adds; C, which knows only B, finds A through the DHT and fetches the same bytes.

use storgo::files::{self, AddOptions};
use storgo::node::{fetch, FetchOptions};

use crate::common::*;
use crate::nodes::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_fetches_what_a_added_knowing_only_b() {
    let tmp = tempfile::tempdir().unwrap();
    let b = start_node(&tmp.path().join("b"), vec![]).await;
    let a = start_node(&tmp.path().join("a"), vec![addr(&b)]).await;
    let c = start_node(&tmp.path().join("c"), vec![addr(&b)]).await;
    wait_routing(&a, 1).await;
    wait_routing(&c, 1).await;

    let path = tmp.path().join("notes.pdf");
    let data = write_random(&path, 9 << 20, 1);
    let store = a.store.clone();
    let added = tokio::task::spawn_blocking(move || {
        files::add_path(&store, &path, &AddOptions::default(), &|_| {})
    })
    .await
    .unwrap()
    .unwrap();
    a.client.provide(added.id.root).await.unwrap();

    let report = fetch(
        &c.client,
        &c.store,
        &added.id,
        &FetchOptions::default(),
        &|_| {},
        None,
    )
    .await
    .unwrap();
    assert_eq!(report.peers_used, vec![a.client.peer_id().to_string()]);
    assert!(report.chunks_fetched > 0);
    let mut back = Vec::new();
    files::cat(&c.store, &added.id, &mut back, &|_| {}).unwrap();
    assert!(back == data);
    // C now provides it too, and a second fetch transfers nothing.
    let again = fetch(
        &c.client,
        &c.store,
        &added.id,
        &FetchOptions::default(),
        &|_| {},
        None,
    )
    .await
    .unwrap();
    assert_eq!(again.chunks_fetched, 0);
    for n in [a, b, c] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_fetch_works_over_quic() {
    let tmp = tempfile::tempdir().unwrap();
    let quic = |bootstrap| {
        let mut cfg = loopback_config(bootstrap);
        cfg.listen = vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()];
        cfg
    };
    let open = |name: &str| {
        std::sync::Arc::new(
            storgo::store::Store::open(&tmp.path().join(name), Default::default()).unwrap(),
        )
    };
    let a = storgo::node::Node::start(open("a"), quic(vec![]))
        .await
        .unwrap();
    assert!(addr(&a).to_string().contains("/quic-v1/"));
    let c = storgo::node::Node::start(open("c"), quic(vec![addr(&a)]))
        .await
        .unwrap();
    wait_routing(&c, 1).await;
    let path = tmp.path().join("f");
    let data = write_random(&path, 6 << 20, 2);
    let id = add_and_provide(&a, &path).await;
    fetch_default(&c, &id, None).await.unwrap();
    let mut back = Vec::new();
    files::cat(&c.store, &id, &mut back, &|_| {}).unwrap();
    assert!(back == data);
    a.stop().await;
    c.stop().await;
}
