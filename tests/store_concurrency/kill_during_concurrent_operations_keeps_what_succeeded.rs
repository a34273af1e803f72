//! SIGKILL of the node while four clients run random operations against it, then a restart:
//! the sessions the kill left are removed at start (and counted in `status`), everything that
//! had reported success is still there and reads back, verify is clean, and two GCs leave
//! only what the pins reach.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};
use storgo::api::client::ApiClient;
use storgo::api::Status;

use crate::stress;

/// Operations to let complete before the kill, so that it lands in the middle of real work.
const OPS_BEFORE_KILL: u64 = 200;

fn session_rows(index: &std::path::Path) -> u64 {
    const SESSIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("sessions");
    let db = redb::Database::open(index).expect("open the killed node's index");
    let tx = db.begin_read().expect("read");
    tx.open_table(SESSIONS)
        .expect("sessions table")
        .len()
        .expect("len")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_concurrent_operations_then_restart_keeps_what_succeeded() {
    let seed = stress::seed();
    let tmp = tempfile::tempdir().unwrap();
    let files_dir = tmp.path().join("files");
    std::fs::create_dir_all(&files_dir).unwrap();
    let source = stress::start_node(&tmp.path().join("source"), None);
    let node_dir = tmp.path().join("node");
    let mut node = stress::start_node(&node_dir, Some(source.addr()));
    let sources = stress::add_sources(&source.data_dir, &files_dir, seed, 12).await;

    let (ops_tx, mut ops_rx) = tokio::sync::watch::channel(0u64);
    let setup = stress::Setup {
        node_dir: node_dir.clone(),
        files_dir,
        sources,
        clients: 4,
        seed,
        duration: std::time::Duration::from_secs(3600),
        stop: Arc::new(AtomicBool::new(false)),
        ops_done: Arc::new(ops_tx),
    };
    let stop = Arc::clone(&setup.stop);
    let clients = tokio::spawn(async move { stress::run_clients(&setup).await });
    tokio::time::timeout(
        std::time::Duration::from_secs(300),
        ops_rx.wait_for(|n| *n >= OPS_BEFORE_KILL),
    )
    .await
    .expect("clients made progress")
    .expect("ops counter");
    stop.store(true, Ordering::Release);
    node.child.kill().expect("SIGKILL the node");
    node.child.wait().expect("reap the node");
    let outcome = clients.await.expect("clients");
    eprintln!(
        "operations before the kill: {:?}; under way at the kill: {} items, {} adds",
        outcome.ops,
        outcome.in_flight.len(),
        outcome.in_flight_adds.len()
    );

    let left = session_rows(&node_dir.join("index.redb"));
    let node = stress::start_node(&node_dir, Some(source.addr()));
    let api = ApiClient::discover(&node_dir)
        .await
        .expect("restarted node's API");
    let status: Status = api.get("/status").await.expect("status");
    eprintln!(
        "session rows the kill left: {left}; removed at start: {}",
        status.sessions.interrupted_at_start
    );
    assert_eq!(
        status.sessions.interrupted_at_start as u64, left,
        "every session row the kill left is removed at start"
    );

    let pins = stress::check_through_node(&node_dir, &outcome).await;
    for (id, o) in &outcome.items {
        if o.pinned && !outcome.in_flight.contains(id) {
            let p = pins.iter().find(|p| p.id == *id);
            assert!(
                p.is_some_and(|p| !p.partial),
                "{id} had reported success and was not touched since, but is not pinned whole after the restart (seed {seed})"
            );
        }
    }
    let status: Status = api.get("/status").await.expect("status");
    assert_eq!(status.sessions.live, 0, "no session outlives its request");
    assert!(node.stop().success(), "node exits cleanly");
    stress::check_store_at_rest(&node_dir);
}
