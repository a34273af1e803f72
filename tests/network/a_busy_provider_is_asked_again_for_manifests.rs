//! A class fetching from one busy teacher: the only provider answers Busy to all but about
//! two requests a second (a fetch asks `Have` before a manifest, so one a second would refuse
//! every manifest). A manifest it refused used to be never asked of it again, and the
//! fetch failed with "no peer provides"; now it is asked again after a pause that doubles
//! (as chunk workers do), and the folder arrives whole.

use std::sync::Arc;

use storgo::network::{NetworkConfig, ServeLimits};
use storgo::node::Node;
use storgo::store::{Store, StoreOptions};

use crate::common::write_random;
use crate::nodes::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_provider_is_asked_again_for_manifests() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let tmp = tempfile::tempdir().unwrap();
    let store =
        Arc::new(Store::open(&tmp.path().join("teacher"), StoreOptions::default()).unwrap());
    let cfg = NetworkConfig {
        serve: ServeLimits {
            requests_per_second_per_peer: 2,
            ..Default::default()
        },
        ..loopback_config(vec![])
    };
    let teacher = Node::start(store, cfg).await.unwrap();
    let student = start_node(&tmp.path().join("student"), vec![addr(&teacher)]).await;
    wait_routing(&student, 1).await;

    // A folder of four files: a root manifest and one per file, each asked of the teacher.
    let course = tmp.path().join("course");
    std::fs::create_dir(&course).unwrap();
    for i in 0..4u64 {
        write_random(&course.join(format!("week{i}.txt")), 3_000, i);
    }
    let store = teacher.store.clone();
    let dir = course.clone();
    let added = tokio::task::spawn_blocking(move || {
        let opts = storgo::files::AddOptions {
            recursive: true,
            ..Default::default()
        };
        storgo::files::add_path(&store, &dir, &opts, &|_| {})
    })
    .await
    .unwrap()
    .unwrap();
    teacher.client.provide(added.id.root).await.unwrap();

    let report = fetch_default(&student, &added.id, None)
        .await
        .expect("the folder arrives from a busy teacher");
    assert_eq!(report.chunks_fetched, 4, "{report:?}");
    assert!(
        student
            .store
            .pin_of(&added.id.root)
            .unwrap()
            .is_some_and(|p| !p.partial),
        "pinned whole"
    );
    let busy = teacher.client.info().await.unwrap();
    println!("teacher info after the fetch: {busy:?}");

    for n in [teacher, student] {
        n.stop().await;
    }
}
