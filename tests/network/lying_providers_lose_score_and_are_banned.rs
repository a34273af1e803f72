//! Hostile providers (hardening review, defect 6, and "lying peers"): a provider that claims
//! an item but serves none of its chunks, one that serves bytes of the wrong block, and one
//! that goes silent mid-transfer. The fetch moves on to the honest provider and succeeds; each
//! liar is dropped from the fetch and booked; the one that sent bad blocks twice is banned,
//! refused afterwards, and still banned after the fetcher restarts.

use std::sync::Arc;

use storgo::node::Node;
use storgo::store::{Store, StoreOptions};

use crate::common::*;
use crate::nodes::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liars_are_dropped_booked_and_banned_and_the_fetch_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    // The honest provider serves at 8 MiB/s: a 16 MiB item takes it two seconds, so the liars
    // (connected, answering at once) are always asked before it is done — on a loaded machine
    // too, where an unlimited honest provider could finish before a liar's answer came.
    let honest = {
        let dir = tmp.path().join("honest");
        let opts = StoreOptions {
            convergence_secret: storgo::content::ConvergenceSecret::from_hex(SHARED_SECRET),
            ..StoreOptions::default()
        };
        let store = Arc::new(Store::open(&dir, opts).expect("open store"));
        let mut cfg = loopback_config(vec![]);
        cfg.serve.bytes_per_second = Some(8 << 20);
        Node::start(store, cfg).await.expect("start node")
    };
    let boot = vec![addr(&honest)];
    let empty =
        start_node_with_secret(&tmp.path().join("empty"), boot.clone(), SHARED_SECRET).await;
    let wrong =
        start_liar_with_secret(&tmp.path().join("wrong"), boot.clone(), SHARED_SECRET).await;
    let silent =
        start_node_with_secret(&tmp.path().join("silent"), boot.clone(), SHARED_SECRET).await;

    let mut ids = Vec::new();
    for (i, name) in ["lecture1", "lecture2"].iter().enumerate() {
        let path = tmp.path().join(name);
        write_random(&path, 16 << 20, 60 + i as u64);
        let id = add_and_provide(&honest, &path).await;
        for liar in [&empty, &wrong, &silent] {
            assert_eq!(add_and_provide(liar, &path).await, id);
        }
        ids.push(id);
    }
    // "empty" claims both items and holds none of their chunks; "wrong" serves each chunk
    // with bytes of another block (the same length, another chunk's bytes shifted).
    for f in chunk_files(empty.store.dir()) {
        std::fs::remove_file(f).unwrap();
    }
    let wrong_chunks = chunk_files(wrong.store.dir());
    for f in &wrong_chunks {
        let mut b = std::fs::read(f).unwrap();
        b.rotate_left(1);
        std::fs::write(f, b).unwrap();
    }
    // "silent" stops: its record stays in the DHT, its connection goes.
    let silent_id = silent.client.peer_id();
    silent.stop().await;

    let f_dir = tmp.path().join("fetcher");
    let fetcher = start_node(&f_dir, boot.clone()).await;
    for liar in [&empty, &wrong] {
        fetcher.client.dial(addr(liar)).await.unwrap();
    }
    let first = fetch_default(&fetcher, &ids[0], None)
        .await
        .expect("the fetch completes from the honest provider");
    eprintln!("dropped in the first fetch: {:?}", first.peers_dropped);
    let (empty_id, wrong_id) = (empty.client.peer_id(), wrong.client.peer_id());
    for liar in [empty_id, wrong_id] {
        assert!(
            first.peers_dropped.contains(&liar.to_string()),
            "{liar} is dropped from the fetch"
        );
        assert!(
            fetcher.client.debt(liar).await.unwrap() > 0.0,
            "{liar} lost score"
        );
    }
    assert_eq!(
        fetcher.client.debt(honest.client.peer_id()).await.unwrap(),
        0.0,
        "the honest provider keeps its score"
    );
    eprintln!(
        "silent provider's debt: {}",
        fetcher.client.debt(silent_id).await.unwrap()
    );

    // A second item from the same liars: two bad blocks in all ban the one that sent them.
    let second = fetch_default(&fetcher, &ids[1], None)
        .await
        .expect("the fetch completes from the honest provider");
    eprintln!("dropped in the second fetch: {:?}", second.peers_dropped);
    let banned = fetcher.client.banned().await.unwrap();
    assert!(
        banned
            .iter()
            .any(|b| b.peer == wrong_id.to_string() && b.reason.contains("do not match")),
        "the peer that sent bad blocks twice is banned: {banned:?}"
    );
    // The banned peer's connections are closed and refused: what it asks goes unanswered.
    let _ = wrong.client.dial(addr(&fetcher)).await;
    let asked = wrong
        .client
        .request(
            fetcher.client.peer_id(),
            storgo::network::ChunkRequest::Have(vec![ids[0].root]),
        )
        .await;
    assert!(asked.is_err(), "a banned peer is refused: {asked:?}");
    assert!(!fetcher
        .client
        .peers()
        .await
        .unwrap()
        .iter()
        .any(|p| p.peer_id == wrong_id.to_string()));

    // The ban survives a restart of the fetcher.
    fetcher.stop().await;
    let store = Arc::new(Store::open(&f_dir, StoreOptions::default()).unwrap());
    let fetcher = Node::start(store, loopback_config(boot)).await.unwrap();
    let banned = fetcher.client.banned().await.unwrap();
    assert!(
        banned.iter().any(|b| b.peer == wrong_id.to_string()),
        "still banned after a restart: {banned:?}"
    );
    assert!(fetcher.client.unban(wrong_id).await.unwrap());
    assert!(fetcher.client.banned().await.unwrap().is_empty());
    for n in [honest, empty, wrong, fetcher] {
        n.stop().await;
    }
}
