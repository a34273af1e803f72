//! A provider that serves corrupt chunks is detected and dropped; the fetch completes from an
//! honest provider.

use storgo::files;

use crate::common::*;
use crate::nodes::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_chunks_drop_the_peer_and_the_fetch_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let honest = start_node_with_secret(&tmp.path().join("honest"), vec![], SHARED_SECRET).await;
    let liar =
        start_liar_with_secret(&tmp.path().join("liar"), vec![addr(&honest)], SHARED_SECRET).await;
    let path = tmp.path().join("f");
    let data = write_random(&path, 24 << 20, 3);
    let id = add_and_provide(&honest, &path).await;
    assert_eq!(add_and_provide(&liar, &path).await, id);
    // Every chunk the liar holds now has one flipped byte; its manifests stay intact.
    for f in chunk_files(liar.store.dir()) {
        let mut b = std::fs::read(&f).unwrap();
        b[7] ^= 1;
        std::fs::write(&f, b).unwrap();
    }
    let c = start_node(&tmp.path().join("c"), vec![addr(&honest)]).await;
    c.client.dial(addr(&liar)).await.unwrap();

    let report = fetch_default(&c, &id, None).await.unwrap();
    assert!(
        report
            .peers_used
            .contains(&liar.client.peer_id().to_string()),
        "the liar was asked"
    );
    assert_eq!(
        report.peers_dropped,
        vec![liar.client.peer_id().to_string()]
    );
    let mut back = Vec::new();
    files::cat(&c.store, &id, &mut back, &|_| {}).unwrap();
    assert!(back == data);
    assert!(c.store.verify().unwrap().is_clean());
    for n in [honest, liar, c] {
        n.stop().await;
    }
}

/// An honest node with one block rotten on its disk checks it before serving: it answers "not
/// found" and sets the block aside instead of sending bad bytes. The fetcher takes that chunk
/// from the other provider and neither drops nor books the honest node (before, two such
/// blocks got an honest node banned).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotten_block_is_set_aside_not_served() {
    let tmp = tempfile::tempdir().unwrap();
    let other = start_node_with_secret(&tmp.path().join("other"), vec![], SHARED_SECRET).await;
    let rotten = start_node_with_secret(
        &tmp.path().join("rotten"),
        vec![addr(&other)],
        SHARED_SECRET,
    )
    .await;
    let path = tmp.path().join("f");
    let data = write_random(&path, 24 << 20, 4);
    let id = add_and_provide(&other, &path).await;
    assert_eq!(add_and_provide(&rotten, &path).await, id);
    let chunks = chunk_files(rotten.store.dir());
    for f in chunks.iter().take(3) {
        let mut b = std::fs::read(f).unwrap();
        b[7] ^= 1;
        std::fs::write(f, b).unwrap();
    }
    let c = start_node(&tmp.path().join("c"), vec![addr(&other)]).await;
    c.client.dial(addr(&rotten)).await.unwrap();

    let report = fetch_default(&c, &id, None).await.unwrap();
    let rotten_id = rotten.client.peer_id().to_string();
    assert!(report.peers_used.contains(&rotten_id), "{report:?}");
    assert!(report.peers_dropped.is_empty(), "{report:?}");
    let mut back = Vec::new();
    files::cat(&c.store, &id, &mut back, &|_| {}).unwrap();
    assert!(back == data);
    // Still welcome: the honest node is not banned, and a rotten block it was asked for
    // was set aside (moved out of the block files) rather than sent.
    assert!(
        c.client.banned().await.unwrap().is_empty(),
        "an honest node with rotten blocks was banned"
    );
    let set_aside = chunks.iter().take(3).filter(|f| !f.exists()).count();
    eprintln!("rotten blocks asked for and set aside: {set_aside} of 3");
    for n in [other, rotten, c] {
        n.stop().await;
    }
}
