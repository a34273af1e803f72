//! Erasure coding with in-process nodes (`ec:4+2`, DESIGN.md "Erasure coding"): an add is
//! coded into stripes and its six columns land on the six peers closest to its root, each
//! keeping one column (not the item). Then the adder and two data-column holders are gone at
//! once: a fresh node still fetches the item byte for byte (a degraded read, rebuilding the
//! lost columns' blocks from any four others), and one repair round places the lost columns
//! on new peers, which rebuild them with no key and no adder. A holder whose column went bad
//! on its disk and serves it unchecked is caught by the block addresses, booked, read around,
//! and its own scrub rebuilds its column.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use libp2p::Multiaddr;
use storgo::content::stripe::{Durability, Shape};
use storgo::content::BlockAddress;
use storgo::node::Node;
use storgo::store::{Store, StoreOptions};

use crate::nodes::*;
use crate::{fetch_and_compare, settle};

const K: u8 = 4;
const M: u8 = 2;

/// A replicating node (rounds run by the test) that serves its blocks without checking them
/// first, so that a block gone bad on its disk reaches the fetcher: the fetcher's checks are
/// what is tested.
async fn start(dir: &Path, bootstrap: Vec<Multiaddr>) -> Node {
    let store = Arc::new(Store::open(dir, StoreOptions::default()).expect("open store"));
    let mut net = loopback_config(bootstrap);
    net.serve.unchecked = true;
    let cfg = storgo::node::ReplicationConfig {
        repair_interval: None,
        stall_timeout: Duration::from_secs(20),
        ..Default::default()
    };
    Node::start_with(store, net, cfg).await.expect("start node")
}

/// The column `node` holds of `root`, if it holds one whole.
fn column_of(node: &Node, root: &BlockAddress) -> Option<u8> {
    node.store
        .replica_of(root)
        .expect("replica table")
        .filter(|r| r.complete)
        .and_then(|r| r.shard)
        .map(|s| s.column)
}

/// Node index → column, for every live node holding a column whole.
fn columns(nodes: &[Option<Arc<Node>>], root: &BlockAddress) -> Vec<(usize, u8)> {
    nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| n.as_ref().and_then(|n| column_of(n, root)).map(|c| (i, c)))
        .collect()
}

async fn round(nodes: &[Option<Arc<Node>>]) {
    let alive: Vec<Arc<Node>> = nodes.iter().flatten().cloned().collect();
    for n in &alive {
        n.replicator.round().await;
    }
    settle(&alive).await;
}

async fn stop(nodes: &mut [Option<Arc<Node>>], i: usize) {
    let node = Arc::into_inner(nodes[i].take().expect("alive")).expect("sole owner");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columns_outlive_their_adder_and_m_holders() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let tmp = tempfile::tempdir().unwrap();
    let first = start(&tmp.path().join("n0"), vec![]).await;
    let boot = addr(&first);
    let mut nodes = vec![Some(Arc::new(first))];
    for i in 1..12 {
        let n = start(&tmp.path().join(format!("n{i}")), vec![boot.clone()]).await;
        nodes.push(Some(Arc::new(n)));
    }
    for n in nodes.iter().flatten() {
        wait_routing(n, 8).await;
    }
    let adder = Arc::clone(nodes[0].as_ref().unwrap());
    // About 14 chunks: three stripes of four, the last one short.
    let (id, data) = add_random(&adder, tmp.path(), "lecture.mp4", 14 << 20, 7).await;
    let shape = Shape::new(K, M).unwrap();
    let placed = adder
        .replicator
        .repair_item(id.root, Durability::Stripes(shape))
        .await
        .expect("place columns");
    assert_eq!(placed.durability, "ec:4+2");
    assert_eq!(placed.pushed.len(), 6, "six column holds: {placed:?}");
    let whole = adder
        .replicator
        .wait_for_replicas(id.root, K + M, Duration::from_secs(90), &|_| {})
        .await
        .expect("wait");
    assert_eq!(whole.len(), 6, "six peers hold a column whole");
    let held = columns(&nodes, &id.root);
    let distinct: HashSet<u8> = held.iter().map(|(_, c)| *c).collect();
    assert_eq!(distinct, (0..6).collect(), "one column each: {held:?}");
    let pin = adder.store.pin_of(&id.root).unwrap().expect("pinned");
    let map_address = pin.stripe_map.expect("the adder coded it");
    let map = adder.store.stripe_map(&map_address, &id.root).unwrap();
    let (all_columns, data_bytes) = map.bytes();
    assert!(map.stripes.len() >= 3, "{} stripes", map.stripes.len());
    // A holder keeps its column, not the item.
    for (i, c) in &held {
        let stored = nodes[*i].as_ref().unwrap().store.stats().unwrap().bytes;
        let column: u64 = map.column(*c as usize).map(|(_, _, l)| l as u64).sum();
        assert!(
            stored >= column && stored < column + (1 << 20),
            "node {i} (column {c}) stores {stored} bytes for a {column}-byte column"
        );
    }
    eprintln!(
        "ec:4+2 over {} stripes: {all_columns} bytes in columns for {data_bytes} of chunks ({:.3}x)",
        map.stripes.len(),
        all_columns as f64 / data_bytes as f64
    );

    // The adder and the holders of data columns 0 and 1 go at once.
    let lost: Vec<usize> = held
        .iter()
        .filter(|(_, c)| *c < 2)
        .map(|(i, _)| *i)
        .collect();
    drop(adder);
    stop(&mut nodes, 0).await;
    for i in &lost {
        stop(&mut nodes, *i).await;
    }
    let reader = nodes
        .iter()
        .flatten()
        .find(|n| column_of(n, &id.root).is_none())
        .cloned()
        .expect("a node holding nothing");
    fetch_and_compare(&reader, &id, &data).await;
    // It kept what it read until a GC: it would serve the liar's column below in its place.
    let reader_at = nodes
        .iter()
        .position(|n| {
            n.as_ref()
                .is_some_and(|n| n.client.peer_id() == reader.client.peer_id())
        })
        .expect("the reader");
    drop(reader);
    stop(&mut nodes, reader_at).await;

    // One round: the two lost columns go to free peers, rebuilt from four others.
    round(&nodes).await;
    let held = columns(&nodes, &id.root);
    let distinct: HashSet<u8> = held.iter().map(|(_, c)| *c).collect();
    assert_eq!(distinct, (0..6).collect(), "every column again: {held:?}");

    // A column holder's blocks go bad on its disk; it serves them unchecked.
    let (liar_i, liar_column) = *held
        .iter()
        .find(|(_, c)| *c == 2)
        .expect("a holder of column 2");
    let liar = Arc::clone(nodes[liar_i].as_ref().unwrap());
    let mut spoiled = 0;
    let files = crate::common::block_files(&tmp.path().join(format!("n{liar_i}")));
    for (_, a, _) in map.column(liar_column as usize) {
        for f in &files {
            if f.file_name().and_then(|n| n.to_str()) == Some(a.to_hex().as_str()) {
                let mut b = std::fs::read(f).unwrap();
                b[100] ^= 0xff;
                std::fs::write(f, b).unwrap();
                spoiled += 1;
            }
        }
    }
    assert!(spoiled > 0, "the liar's column is in block files");
    // A fresh node, holding nothing of the item.
    let via = addr(nodes.iter().flatten().next().unwrap());
    let reader2 = Arc::new(start(&tmp.path().join("fresh"), vec![via]).await);
    wait_routing(&reader2, 8).await;
    let report = fetch_default(&reader2, &id, None)
        .await
        .expect("fetch past the liar");
    let mut out = Vec::new();
    storgo::files::cat(&reader2.store, &id, &mut out, &|_| {}).expect("read back");
    assert!(out == data, "the same bytes past the liar");
    let debt = reader2.client.debt(liar.client.peer_id()).await.unwrap();
    let banned = reader2.client.banned().await.unwrap();
    assert!(
        debt > 0.0
            || banned
                .iter()
                .any(|b| b.peer == liar.client.peer_id().to_string()),
        "the liar is booked (debt {debt}, bans {banned:?})"
    );
    assert!(
        report
            .peers_dropped
            .contains(&liar.client.peer_id().to_string()),
        "the liar was dropped from the fetch: {report:?}"
    );
    // Its scrub finds its column bad and rebuilds it from the others.
    let scrub = liar
        .replicator
        .scrub_item(id.root, None)
        .await
        .expect("scrub");
    assert!(scrub.repaired_blocks > 0, "{scrub:?}");
    assert_eq!(column_of(&liar, &id.root), Some(liar_column));
    drop(liar);
    Arc::into_inner(reader2).expect("sole owner").stop().await;
    for i in 0..nodes.len() {
        if nodes[i].is_some() {
            stop(&mut nodes, i).await;
        }
    }
}
