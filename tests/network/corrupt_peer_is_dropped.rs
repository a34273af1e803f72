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
        start_node_with_secret(&tmp.path().join("liar"), vec![addr(&honest)], SHARED_SECRET).await;
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
