//! In-process nodes on 127.0.0.1 with port 0 and no mDNS.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use libp2p::Multiaddr;
use storgo::network::NetworkConfig;
use storgo::node::Node;
use storgo::store::{Store, StoreOptions};

pub fn loopback_config(bootstrap: Vec<Multiaddr>) -> NetworkConfig {
    NetworkConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")],
        bootstrap,
        mdns: false,
        request_timeout: Duration::from_secs(10),
        ..NetworkConfig::default()
    }
}

pub async fn start_node(dir: &Path, bootstrap: Vec<Multiaddr>) -> Node {
    let store = Arc::new(Store::open(dir, StoreOptions::default()).expect("open store"));
    Node::start(store, loopback_config(bootstrap))
        .await
        .expect("start node")
}

pub fn addr(node: &Node) -> Multiaddr {
    node.client
        .listen_addrs()
        .into_iter()
        .next()
        .expect("a listen address")
}

/// Waits until `node`'s routing table has at least `n` peers.
pub async fn wait_routing(node: &Node, n: usize) {
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            poll.tick().await;
            if node.client.info().await.expect("info").routing_table_size >= n {
                return;
            }
        }
    })
    .await
    .expect("routing table to fill");
}

/// A node whose store uses `secret`, so that several nodes produce the same blocks for the
/// same file (several providers of one item).
pub async fn start_node_with_secret(dir: &Path, bootstrap: Vec<Multiaddr>, secret: &str) -> Node {
    let opts = StoreOptions {
        convergence_secret: storgo::content::ConvergenceSecret::from_hex(secret),
        ..StoreOptions::default()
    };
    let store = Arc::new(Store::open(dir, opts).expect("open store"));
    Node::start(store, loopback_config(bootstrap))
        .await
        .expect("start node")
}

/// A node that lies: it serves whatever bytes its disk holds under an address without
/// checking them (an honest node checks every block before it leaves), sharing `secret`.
pub async fn start_liar_with_secret(dir: &Path, bootstrap: Vec<Multiaddr>, secret: &str) -> Node {
    let opts = StoreOptions {
        convergence_secret: storgo::content::ConvergenceSecret::from_hex(secret),
        ..StoreOptions::default()
    };
    let store = Arc::new(Store::open(dir, opts).expect("open store"));
    let cfg = NetworkConfig {
        serve: storgo::network::ServeLimits {
            unchecked: true,
            ..Default::default()
        },
        ..loopback_config(bootstrap)
    };
    Node::start(store, cfg).await.expect("start node")
}

/// Adds a file on `node` and announces it, waiting for the announcement.
pub async fn add_and_provide(node: &Node, path: &Path) -> storgo::content::ContentId {
    let store = node.store.clone();
    let path = path.to_owned();
    let added = tokio::task::spawn_blocking(move || {
        storgo::files::add_path(&store, &path, &Default::default(), &|_| {})
    })
    .await
    .expect("join")
    .expect("add");
    node.client.provide(added.id.root).await.expect("provide");
    added.id
}

/// Every chunk block file (the large ones) of a data dir.
pub fn chunk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    crate::common::block_files(dir)
        .into_iter()
        .filter(|p| {
            std::fs::metadata(p)
                .map(|m| m.len() > 100_000)
                .unwrap_or(false)
        })
        .collect()
}

/// A node with a store quota and replication settings of its own (no periodic repair: the
/// tests run rounds themselves, so what they observe follows from what they did).
pub async fn start_replicating_node(
    dir: &Path,
    bootstrap: Vec<Multiaddr>,
    max_storage: Option<u64>,
    replication: u8,
) -> Node {
    let opts = StoreOptions {
        max_storage,
        ..StoreOptions::default()
    };
    let store = Arc::new(Store::open(dir, opts).expect("open store"));
    let cfg = storgo::node::ReplicationConfig {
        replication,
        repair_interval: None,
        stall_timeout: Duration::from_secs(20),
        ..Default::default()
    };
    Node::start_with(store, loopback_config(bootstrap), cfg)
        .await
        .expect("start node")
}

/// Adds random bytes as a file on `node` (pinned and provided, no replication yet).
pub async fn add_random(
    node: &Node,
    dir: &Path,
    name: &str,
    len: usize,
    seed: u64,
) -> (storgo::content::ContentId, Vec<u8>) {
    let path = dir.join(name);
    let data = crate::common::write_random(&path, len, seed);
    (add_and_provide(node, &path).await, data)
}

/// Whether `node` holds a whole replica of `root`.
pub fn holds_replica(node: &Node, root: &storgo::content::BlockAddress) -> bool {
    node.store
        .replica_of(root)
        .expect("replica table")
        .is_some_and(|r| r.complete)
}

/// Fetches `id` on `node` with the default options, writing `output` when given.
pub async fn fetch_default(
    node: &Node,
    id: &storgo::content::ContentId,
    output: Option<storgo::files::Output>,
) -> Result<storgo::node::FetchReport, storgo::node::NodeError> {
    let opts = storgo::node::FetchOptions::default();
    storgo::node::fetch(&node.client, &node.store, id, &opts, &|_| {}, output).await
}
