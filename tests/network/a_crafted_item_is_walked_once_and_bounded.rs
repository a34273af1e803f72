//! Hardening review, defect 4: the manifest walk of a fetch keeps a visited set and the whole
//! fetch can be given a deadline. A folder built so that each level names the level below
//! twice has 2^40 paths but only 41 distinct manifests: a walk without a visited set would
//! never finish; with one it fetches each manifest once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use storgo::content::{ContentId, DirEntry, DirManifest, EntryKind, Manifest, Tree};
use storgo::node::{fetch, FetchOptions, NodeError};
use storgo::store::{PinRecord, SessionKind};

use crate::common::*;
use crate::nodes::*;

const LEVELS: u32 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_of_shared_subtrees_is_fetched_once_per_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let a = start_node(&tmp.path().join("a"), vec![]).await;
    let path = tmp.path().join("leaf");
    write_random(&path, 50_000, 40);
    let leaf = add_and_provide(&a, &path).await;

    let store = Arc::clone(&a.store);
    let root = tokio::task::spawn_blocking(move || {
        let session = store.session(SessionKind::Add, "diamond").unwrap();
        let (mut below, mut kind, mut size) = (leaf, EntryKind::File, 50_000u64);
        let mut w = session.writer();
        for level in 1..=LEVELS {
            let entries = ["a", "b"]
                .map(|name| DirEntry {
                    name: name.into(),
                    kind,
                    size,
                    address: below.root,
                    key: below.key,
                })
                .to_vec();
            size *= 2;
            let dir = Manifest::Dir(DirManifest {
                name: format!("level{level}"),
                size,
                mode: None,
                mtime: None,
                entries: Tree::Leaves(entries),
            });
            let (address, key, block) = dir.seal(store.secret()).unwrap();
            w.put(address, &block).unwrap();
            (below, kind) = (ContentId::new(address, key), EntryKind::Dir);
        }
        w.finish().unwrap();
        session
            .commit_pin(&PinRecord {
                id: below.to_string(),
                name: "diamond".into(),
                kind: "dir".into(),
                size,
                pinned_at: 0,
                partial: false,
                for_reading: false,
                replicas: None,
                internal: false,
                durability: None,
                stripe_map: None,
            })
            .unwrap();
        below
    })
    .await
    .unwrap();
    a.client.provide(root.root).await.unwrap();

    let b = start_node(&tmp.path().join("b"), vec![addr(&a)]).await;
    let started = Instant::now();
    let report = fetch(
        &b.client,
        &b.store,
        &root,
        &FetchOptions::default(),
        &|_| {},
        None,
    )
    .await
    .expect("the fetch completes");
    eprintln!(
        "{} distinct manifests and {} chunk fetched in {:?}",
        LEVELS + 1,
        report.chunks_total,
        started.elapsed()
    );
    assert_eq!(report.chunks_total, 1, "the one leaf chunk, listed once");
    assert_eq!(report.size, 50_000u64 << LEVELS);
    for n in [a, b] {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_stops_at_its_deadline_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let a = start_node(&tmp.path().join("a"), vec![]).await;
    // An item no one holds: the stall timeout alone would keep looking for a minute.
    let nobody: ContentId = {
        let elsewhere = storgo::store::Store::open(
            &tmp.path().join("elsewhere"),
            storgo::store::StoreOptions::default(),
        )
        .unwrap();
        let path = tmp.path().join("x");
        write_random(&path, 1000, 41);
        storgo::files::add_path(&elsewhere, &path, &Default::default(), &|_| {})
            .unwrap()
            .id
    };
    let opts = FetchOptions {
        deadline: Some(Duration::from_secs(2)),
        ..FetchOptions::default()
    };
    let started = Instant::now();
    let err = fetch(&a.client, &a.store, &nobody, &opts, &|_| {}, None)
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::DeadlinePassed { .. }), "{err}");
    assert!(err.to_string().contains("deadline of 2 s"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    a.stop().await;
}
