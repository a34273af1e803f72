//! Hardening review, defect 7: an item unpinned while the node was down must not be
//! announced (or answered for) as provided at the next start.

use std::sync::Arc;

use storgo::node::Node;
use storgo::store::{Store, StoreOptions};

use crate::common::*;
use crate::nodes::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_unpinned_offline_is_not_provided_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let a = start_node(&dir, vec![]).await;
    let (p1, p2) = (tmp.path().join("kept"), tmp.path().join("dropped"));
    write_random(&p1, 10_000, 1);
    write_random(&p2, 10_000, 2);
    let kept = add_and_provide(&a, &p1).await;
    let dropped = add_and_provide(&a, &p2).await;
    assert_eq!(a.client.info().await.unwrap().records_provided, 2);
    a.stop().await;

    // Offline: `storgo unpin` on the data dir with no node running.
    let store = Store::open(&dir, StoreOptions::default()).unwrap();
    store.unpin(&dropped).unwrap();
    drop(store);

    let store = Arc::new(Store::open(&dir, StoreOptions::default()).unwrap());
    let a = Node::start(store, loopback_config(vec![])).await.unwrap();
    assert_eq!(
        a.client.info().await.unwrap().records_provided,
        1,
        "only the item still pinned is provided"
    );
    let me = a.client.peer_id().to_string();
    let asked = a
        .client
        .find_providers(dropped.root)
        .await
        .unwrap()
        .providers;
    assert!(
        !asked.contains(&me),
        "the node does not name itself for what it dropped: {asked:?}"
    );
    let asked = a.client.find_providers(kept.root).await.unwrap().providers;
    assert!(asked.contains(&me), "{asked:?}");
    a.stop().await;
}
