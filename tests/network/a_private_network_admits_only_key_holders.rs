//! Who may connect: a private network (`--swarm-key`, libp2p pnet) admits only nodes holding
//! the same key, and an allow list admits only the peers it names; a deny list refuses one.

use std::sync::Arc;

use libp2p::pnet::PreSharedKey;
use storgo::network::NetworkConfig;
use storgo::node::{fetch, FetchOptions, Node};
use storgo::store::{Store, StoreOptions};

use crate::common::*;
use crate::nodes::*;

async fn node_with(dir: &std::path::Path, cfg: NetworkConfig) -> Node {
    let store = Arc::new(Store::open(dir, StoreOptions::default()).expect("open store"));
    Node::start(store, cfg).await.expect("start node")
}

fn tcp_addr(node: &Node) -> libp2p::Multiaddr {
    node.client
        .listen_addrs()
        .into_iter()
        .find(|a| a.to_string().contains("/tcp/"))
        .expect("a TCP address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_nodes_with_the_swarm_key_connect_and_fetch() {
    let tmp = tempfile::tempdir().unwrap();
    let key = PreSharedKey::new([7; 32]);
    let private = |bootstrap| NetworkConfig {
        swarm_key: Some(key),
        ..loopback_config(bootstrap)
    };
    let a = node_with(&tmp.path().join("a"), private(vec![])).await;
    assert!(
        a.client
            .listen_addrs()
            .iter()
            .all(|a| !a.to_string().contains("quic")),
        "QUIC is off in a private network"
    );
    let path = tmp.path().join("notes");
    let data = write_random(&path, 3 << 20, 70);
    let id = add_and_provide(&a, &path).await;

    let member = node_with(&tmp.path().join("b"), private(vec![tcp_addr(&a)])).await;
    let report = fetch(
        &member.client,
        &member.store,
        &id,
        &FetchOptions::default(),
        &|_| {},
        None,
    )
    .await
    .expect("a key holder fetches");
    assert_eq!(report.chunks_fetched, report.chunks_total);
    let mut back = Vec::new();
    storgo::files::cat(&member.store, &id, &mut back, &|_| {}).unwrap();
    assert!(back == data);

    let other_key = NetworkConfig {
        swarm_key: Some(PreSharedKey::new([8; 32])),
        ..loopback_config(vec![])
    };
    let outsider = node_with(&tmp.path().join("c"), other_key).await;
    let public = start_node(&tmp.path().join("d"), vec![]).await;
    for stranger in [&outsider, &public] {
        assert!(
            stranger.client.dial(tcp_addr(&a)).await.is_err(),
            "a node without the key cannot connect"
        );
    }
    assert!(
        public.client.dial(addr(&member)).await.is_err(),
        "nor reach another member"
    );
    for n in [a, member, outsider, public] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_list_admits_only_its_peers_and_a_deny_list_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let friend = start_node(&tmp.path().join("friend"), vec![]).await;
    let stranger = start_node(&tmp.path().join("stranger"), vec![]).await;
    let guarded = node_with(
        &tmp.path().join("guarded"),
        NetworkConfig {
            allow_peers: Some(vec![friend.client.peer_id()]),
            ..loopback_config(vec![])
        },
    )
    .await;
    let denying = node_with(
        &tmp.path().join("denying"),
        NetworkConfig {
            deny_peers: vec![stranger.client.peer_id()],
            ..loopback_config(vec![])
        },
    )
    .await;
    let path = tmp.path().join("x");
    write_random(&path, 1 << 20, 71);
    let id = add_and_provide(&guarded, &path).await;
    let have = |n: &Node, target: &Node| {
        let (c, t, at) = (n.client.clone(), target.client.peer_id(), addr(target));
        async move {
            let _ = c.dial(at).await;
            c.request(t, storgo::network::ChunkRequest::Have(vec![id.root]))
                .await
        }
    };
    assert!(
        have(&friend, &guarded).await.is_ok(),
        "an allowed peer is served"
    );
    assert!(
        have(&stranger, &guarded).await.is_err(),
        "anyone else is refused"
    );
    assert!(have(&friend, &denying).await.is_ok(), "others are served");
    assert!(
        have(&stranger, &denying).await.is_err(),
        "a denied peer is refused"
    );
    for n in [friend, stranger, guarded, denying] {
        n.stop().await;
    }
}
