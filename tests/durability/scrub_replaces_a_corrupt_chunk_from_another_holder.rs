//! A chunk file of a replica is corrupted on disk; the holder's next scrub finds it, sets it
//! aside and fetches it again from another holder.

use std::time::Duration;

use crate::nodes::*;

const R: u8 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_replaces_a_corrupt_chunk_from_another_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let adder = start_replicating_node(&tmp.path().join("n0"), vec![], None, R).await;
    let boot = addr(&adder);
    let mut peers = Vec::new();
    for i in 1..4 {
        peers.push(
            start_replicating_node(
                &tmp.path().join(format!("n{i}")),
                vec![boot.clone()],
                None,
                R,
            )
            .await,
        );
    }
    for p in &peers {
        wait_routing(p, 2).await;
    }
    let (id, data) = add_random(&adder, tmp.path(), "notes.pdf", 3 << 20, 5).await;
    adder
        .replicator
        .repair_item(id.root, storgo::content::stripe::Durability::Replicas(R))
        .await
        .unwrap();
    adder
        .replicator
        .wait_for_replicas(id.root, R, Duration::from_secs(60), &|_| {})
        .await
        .unwrap();
    // The adder goes away, so the block must come from the other replica holder.
    adder.stop().await;
    let holder = peers.iter().find(|p| holds_replica(p, &id.root)).unwrap();
    let dir = tmp
        .path()
        .join(["n1", "n2", "n3"][peers.iter().position(|p| std::ptr::eq(p, holder)).unwrap()]);
    let victim = chunk_files(&dir).into_iter().next().expect("a chunk file");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[1000] ^= 0x55;
    std::fs::write(&victim, &bytes).unwrap();

    let report = holder
        .replicator
        .scrub_item(id.root, None)
        .await
        .expect("scrub");
    assert_eq!(report.repaired_blocks, 1, "{report:?}");
    assert!(holder.store.verify().unwrap().is_clean());
    let replica = holder.store.replica_of(&id.root).unwrap().unwrap();
    assert!(replica.complete && replica.last_verified.is_some());
    assert_eq!(holder.replicator.scrub_totals().repaired_blocks, 1);
    // The replica is whole again: it reads back (with the ID's key) byte for byte.
    let mut out = Vec::new();
    storgo::files::cat(&holder.store, &id, &mut out, &|_| {}).unwrap();
    assert!(out == data);
}

/// A scrub that finds a bad block it cannot fetch again (no other holder is up) leaves the
/// replica partial — the node stops answering "whole" for it — and counted as checked, so the
/// background scrub goes on to other replicas instead of coming back to this one forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrub_that_cannot_repair_leaves_the_replica_partial() {
    let tmp = tempfile::tempdir().unwrap();
    let adder = start_replicating_node(&tmp.path().join("n0"), vec![], None, 1).await;
    let holder = start_replicating_node(&tmp.path().join("n1"), vec![addr(&adder)], None, 1).await;
    wait_routing(&holder, 1).await;
    let (id, _) = add_random(&adder, tmp.path(), "notes.pdf", 3 << 20, 6).await;
    adder
        .replicator
        .repair_item(id.root, storgo::content::stripe::Durability::Replicas(1))
        .await
        .unwrap();
    adder
        .replicator
        .wait_for_replicas(id.root, 1, Duration::from_secs(60), &|_| {})
        .await
        .unwrap();
    assert!(holds_replica(&holder, &id.root));
    adder.stop().await;
    let victim = chunk_files(&tmp.path().join("n1"))
        .into_iter()
        .next()
        .expect("a chunk file");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[1000] ^= 0x55;
    std::fs::write(&victim, &bytes).unwrap();

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let scrubbed = holder.replicator.scrub_item(id.root, None).await;
    assert!(scrubbed.is_err(), "nothing to repair from: {scrubbed:?}");
    let r = holder.store.replica_of(&id.root).unwrap().unwrap();
    assert!(!r.complete, "a replica missing a block is not whole");
    assert!(r.last_verified.is_some_and(|t| t >= before));
    holder.stop().await;
}
