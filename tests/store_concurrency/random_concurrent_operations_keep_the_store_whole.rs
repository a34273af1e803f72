//! Four clients send random add, fetch, pin, unpin, gc, verify and cat requests to one node
//! at once (seeded; `STORGO_STRESS_SECS` runs it longer, `STORGO_STRESS_SEED` replays one).
//! Throughout: every add or fetch that reports success reads back at once, verify finds
//! nothing damaged, gc never meets an item it cannot walk. At the end: the node's pins are
//! exactly the clients' model, each reads back from the node's own blocks, the byte count is
//! the sum of the block files, and two GCs leave nothing the pins do not reach.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::stress;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_operations_from_four_clients_keep_every_invariant() {
    let seed = stress::seed();
    let tmp = tempfile::tempdir().unwrap();
    let files_dir = tmp.path().join("files");
    std::fs::create_dir_all(&files_dir).unwrap();
    let source = stress::start_node(&tmp.path().join("source"), None);
    let node = stress::start_node(&tmp.path().join("node"), Some(source.addr()));
    let sources = stress::add_sources(&source.data_dir, &files_dir, seed, 12).await;

    let setup = stress::Setup {
        node_dir: node.data_dir.clone(),
        files_dir,
        sources,
        clients: 4,
        seed,
        duration: stress::duration(40),
        stop: Arc::new(AtomicBool::new(false)),
        ops_done: Arc::new(tokio::sync::watch::channel(0).0),
    };
    let outcome = stress::run_clients(&setup).await;
    eprintln!("operations: {:?}", outcome.ops);
    for op in ["add", "fetch", "unpin", "gc", "verify"] {
        assert!(
            outcome.ops.get(op).copied().unwrap_or(0) > 0,
            "no {op} ran: {:?}",
            outcome.ops
        );
    }

    let pins = stress::check_through_node(&node.data_dir, &outcome).await;
    let mut on_node: Vec<&str> = pins.iter().map(|p| p.id.as_str()).collect();
    let mut model: Vec<&str> = outcome
        .items
        .iter()
        .filter(|(_, o)| o.pinned)
        .map(|(id, _)| id.as_str())
        .collect();
    on_node.sort();
    model.sort();
    assert_eq!(
        on_node, model,
        "the node's pins are not the clients' model (seed {seed})"
    );

    assert!(node.stop().success(), "node exits cleanly");
    stress::check_store_at_rest(&tmp.path().join("node"));
}
