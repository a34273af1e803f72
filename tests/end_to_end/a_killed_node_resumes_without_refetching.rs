//! SIGKILL of a node in the middle of a fetch, and in the middle of a replica intake: after a
//! restart `verify` is clean, the node finishes the work on its own, and what had arrived is
//! not asked for again (the serving node's byte count says so).

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use crate::procs::{listed, NodeProc};

const SIZE: usize = 48 << 20;

/// A node that serves slowly (so that a transfer can be cut in the middle) and never repairs
/// on its own (so that nothing but the test moves data).
fn slow_server(dir: &std::path::Path, bootstrap: Option<&str>) -> NodeProc {
    NodeProc::start_args(
        dir,
        bootstrap,
        &[
            "--serve-rate",
            "12MB",
            "--repair-interval",
            "0s",
            "--replication",
            "1",
        ],
    )
}

fn add(node: &NodeProc, path: &std::path::Path) -> String {
    let mut add = storgo(&node.data_dir);
    add.arg("add").arg(path);
    last_line(&ok(add))
}

/// Kills `node` once a third of the item is stored (and whatever else is on its way).
fn kill_a_third_in(node: NodeProc) -> u64 {
    wait_for(
        Duration::from_secs(60),
        "a third of the item to be stored",
        || node.stored_bytes() >= (SIZE / 3) as u64,
    );
    let got = node.stored_bytes();
    node.kill();
    assert!(
        got < SIZE as u64 * 9 / 10,
        "killed too late ({got} bytes in)"
    );
    got
}

fn root_of(id: &str) -> String {
    id.parse::<storgo::content::ContentId>()
        .unwrap()
        .root
        .to_string()
}

fn has(v: &serde_json::Value, key: &str, value: bool) -> bool {
    v[key].as_bool() == Some(value)
}

fn verify_clean(dir: &std::path::Path) {
    let mut verify = storgo(dir);
    verify.arg("verify");
    ok(verify);
}

/// What a kill left and what a restart makes of it: one item still arriving (a partial pin,
/// or a replica not yet complete) in a store that verifies; the restarted node finishes it on
/// its own, and neither it nor `server` moves much more than the part that had not arrived
/// (`before` bytes had been stored).
fn restart_and_finish(
    dir: &std::path::Path,
    server: &NodeProc,
    replica: bool,
    before: u64,
) -> NodeProc {
    let (field, arriving) = if replica {
        ("complete", false)
    } else {
        ("partial", true)
    };
    let held = listed(dir, replica);
    assert_eq!(held.len(), 1, "{held:?}");
    assert!(has(&held[0], field, arriving), "{held:?}");
    verify_clean(dir);

    let node = NodeProc::start(dir, Some(server.addr()));
    wait_for(
        Duration::from_secs(120),
        "the work to finish on its own",
        || {
            listed(dir, replica)
                .first()
                .is_some_and(|h| has(h, field, !arriving))
        },
    );
    // The node's store held nothing else, so all it had was this item's.
    let after = node.counter("bytes_fetched");
    let served = server.counter("bytes_served");
    assert!(
        after < SIZE as u64 - before / 2,
        "the restarted node fetched {after} of {SIZE} bytes again (had {before}):\n{}",
        node.log()
    );
    assert!(
        served < SIZE as u64 * 5 / 4,
        "the server sent {served} bytes for a {SIZE}-byte item"
    );
    verify_clean(dir);
    node
}

#[test]
fn a_fetch_cut_by_sigkill_resumes_at_restart_without_refetching() {
    let tmp = tempfile::tempdir().unwrap();
    let server = slow_server(&tmp.path().join("server"), None);
    let path = tmp.path().join("lecture.mp4");
    let data = write_random(&path, SIZE, 71);
    let id = add(&server, &path);

    let dir = tmp.path().join("student");
    let student = NodeProc::start(&dir, Some(server.addr()));
    let mut fetch = storgo(&dir);
    fetch
        .args(["fetch", &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut fetching = fetch.spawn().unwrap();
    let before = kill_a_third_in(student);
    assert!(!fetching.wait().unwrap().success());

    let _student = restart_and_finish(&dir, &server, false, before);
    let mut cat = storgo(&dir);
    cat.args(["cat", &id]);
    assert!(run(cat).stdout == data, "resumed item differs");
}

#[test]
fn a_replica_intake_cut_by_sigkill_resumes_at_restart_without_refetching() {
    let tmp = tempfile::tempdir().unwrap();
    let adder = slow_server(&tmp.path().join("adder"), None);
    let dir = tmp.path().join("holder");
    let holder = NodeProc::start(&dir, Some(adder.addr()));
    wait_for(Duration::from_secs(30), "the two nodes to meet", || {
        adder.counter("routing_table_size") >= 1
    });
    let path = tmp.path().join("dataset.bin");
    write_random(&path, SIZE, 72);
    // The add pushes the item to its one closest peer, the holder.
    let root = root_of(&add(&adder, &path));
    let before = kill_a_third_in(holder);

    let _holder = restart_and_finish(&dir, &adder, true, before);
    let mut ls = storgo(&dir);
    ls.args(["ls", "--replicas"]);
    assert!(ok(ls).contains(&root));
}
