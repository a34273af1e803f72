//! Roles are explicit: the node a lone `storgo fetch` starts (no DHT server, one job) fetches
//! and runs nothing else — no replica service, repair, catch-up, scrub, republish,
//! collections or resume — while a resident node runs all of them; and `stop` returns only once every task
//! has let go of the data dir (it opens again at once). Both show it where an operator
//! looks: `storgo status` (the node's info) and `/metrics`.

use std::sync::Arc;

use storgo::network::NetworkConfig;
use storgo::node::{Node, Role};
use storgo::store::Store;

use crate::common::write_random;
use crate::nodes::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_node_runs_only_what_a_fetch_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let resident = start_node(&tmp.path().join("resident"), vec![]).await;
    let mut tasks = resident.background_tasks();
    // Resuming interrupted fetches is one-shot: with nothing to resume it may have ended.
    tasks.retain(|t| *t != "resume");
    tasks.sort();
    assert_eq!(
        tasks,
        [
            "catch-up",
            "collections",
            "repair",
            "replica service",
            "republish",
            "scrub"
        ],
        "a resident node keeps items and copies"
    );
    let info = resident.client.info().await.unwrap();
    assert_eq!(info.role, "resident");
    let mut shown = info.background_tasks.clone();
    shown.retain(|t| t != "resume");
    shown.sort();
    assert_eq!(shown, tasks, "status shows what runs");
    let metrics = resident.metrics.encode().unwrap();
    assert!(
        metrics.contains(r#"storgo_node_role{role="resident"} 1"#),
        "{metrics}"
    );
    for t in &tasks {
        let line = format!(r#"storgo_background_tasks{{task="{t}"}} 1"#);
        assert!(metrics.contains(&line), "no {line} in {metrics}");
    }
    let notes = tmp.path().join("notes.txt");
    let data = write_random(&notes, 200_000, 3);
    let id = add_and_provide(&resident, &notes).await;

    let dir = tmp.path().join("temporary");
    let cfg = NetworkConfig {
        dht_server: false,
        ..loopback_config(vec![addr(&resident)])
    };
    assert_eq!(Role::of(&cfg), Role::Temporary);
    let store = Arc::new(Store::open(&dir, Default::default()).unwrap());
    let temporary = Node::start(store, cfg).await.unwrap();
    assert!(
        temporary.background_tasks().is_empty(),
        "a temporary node runs {:?}",
        temporary.background_tasks()
    );
    let info = temporary.client.info().await.unwrap();
    assert_eq!(info.role, "temporary");
    assert!(info.background_tasks.is_empty(), "{info:?}");
    let metrics = temporary.metrics.encode().unwrap();
    assert!(
        metrics.contains(r#"storgo_node_role{role="temporary"} 1"#),
        "{metrics}"
    );
    assert!(
        !metrics.contains("storgo_background_tasks{"),
        "a temporary node shows no task: {metrics}"
    );
    wait_routing(&temporary, 1).await;
    let out = tmp.path().join("out");
    fetch_default(
        &temporary,
        &id,
        Some(storgo::files::Output::Path(out.clone())),
    )
    .await
    .expect("a temporary node fetches");
    assert_eq!(std::fs::read(&out).unwrap(), data);

    for n in [temporary, resident] {
        n.stop().await;
    }
    // Every task has let go of its store: the data dirs open again at once.
    for d in ["temporary", "resident"] {
        Store::open(&tmp.path().join(d), Default::default()).expect("the data dir is free");
    }
}
