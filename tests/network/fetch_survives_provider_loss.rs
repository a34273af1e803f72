//! A provider that stops mid-transfer: with two providers the fetch (and its output file)
//! completes from the other;
//! with one, a re-run resumes and fetches only the missing chunks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use storgo::files;
use storgo::node::{fetch, FetchOptions, Node};

use crate::common::*;
use crate::nodes::*;

/// Fetches `id` into `c`, stopping `victim` once a quarter of the bytes have arrived.
async fn fetch_killing(
    c: &Node,
    id: &storgo::content::ContentId,
    victim: Node,
    opts: FetchOptions,
    output: Option<files::Output>,
) -> (
    Result<storgo::node::FetchReport, storgo::node::NodeError>,
    bool,
) {
    let quarter = Arc::new(tokio::sync::Notify::new());
    let fired = Arc::new(AtomicBool::new(false));
    let killed_early = Arc::new(AtomicBool::new(false));
    let (q, f) = (quarter.clone(), fired.clone());
    let progress = move |p: storgo::node::FetchProgress| {
        if p.bytes_total > 0 && p.bytes_done * 4 >= p.bytes_total && !f.swap(true, Ordering::SeqCst)
        {
            q.notify_one();
        }
    };
    let k = killed_early.clone();
    let killer = tokio::spawn(async move {
        quarter.notified().await;
        victim.stop().await;
        k.store(true, Ordering::SeqCst);
    });
    let r = fetch(&c.client, &c.store, id, &opts, &progress, output).await;
    let early = killed_early.load(Ordering::SeqCst);
    killer.abort();
    (r, early)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_provider_finishes_the_fetch() {
    let tmp = tempfile::tempdir().unwrap();
    let a = start_node_with_secret(&tmp.path().join("a"), vec![], SHARED_SECRET).await;
    let b = start_node_with_secret(&tmp.path().join("b"), vec![addr(&a)], SHARED_SECRET).await;
    let path = tmp.path().join("f");
    let data = write_random(&path, 96 << 20, 4);
    let id = add_and_provide(&a, &path).await;
    add_and_provide(&b, &path).await;
    let c = start_node(&tmp.path().join("c"), vec![addr(&b)]).await;
    c.client.dial(addr(&a)).await.unwrap();
    let opts = FetchOptions {
        window: 1,
        ..FetchOptions::default()
    };
    // Written to a file while the chunks arrive, across the loss of a provider.
    let out = tmp.path().join("out");
    let (r, killed_mid_transfer) =
        fetch_killing(&c, &id, a, opts, Some(files::Output::Path(out.clone()))).await;
    let report = r.expect("fetch completes from the remaining provider");
    assert!(
        killed_mid_transfer,
        "the provider was stopped before the fetch ended"
    );
    assert_eq!(report.chunks_fetched, report.chunks_total);
    assert!(std::fs::read(&out).unwrap() == data, "the output file");
    let mut back = Vec::new();
    files::cat(&c.store, &id, &mut back, &|_| {}).unwrap();
    assert!(back == data);
    b.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_fetches_only_the_missing_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let a = start_node(&tmp.path().join("a"), vec![]).await;
    let path = tmp.path().join("f");
    let data = write_random(&path, 96 << 20, 5);
    let id = add_and_provide(&a, &path).await;
    let a_store = a.store.clone();
    let c = start_node(&tmp.path().join("c"), vec![addr(&a)]).await;
    let opts = FetchOptions {
        window: 1,
        ..FetchOptions::default()
    };
    let (r, _) = fetch_killing(&c, &id, a, opts.clone(), None).await;
    assert!(
        r.is_err(),
        "with its only provider gone the fetch stops with an error"
    );
    let held = files::stat(&c.store, &id).unwrap();
    assert!(
        held.chunks_local > 0 && held.chunks_local < held.chunks,
        "{held:?}"
    );

    // The provider comes back (same identity, new port); the re-run fetches the rest only.
    let a = Node::start(a_store, loopback_config(vec![])).await.unwrap();
    c.client.dial(addr(&a)).await.unwrap();
    let report = fetch(&c.client, &c.store, &id, &opts, &|_| {}, None)
        .await
        .unwrap();
    assert_eq!(
        report.chunks_fetched as u64,
        held.chunks - held.chunks_local
    );
    let mut back = Vec::new();
    files::cat(&c.store, &id, &mut back, &|_| {}).unwrap();
    assert!(back == data);
    a.stop().await;
    c.stop().await;
}
