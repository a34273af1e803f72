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

fn is_whole(v: &serde_json::Value, key: &str, whole: bool) -> bool {
    v[key].as_bool() == Some(whole)
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

    // What the kill left: a partial pin, and blocks that verify.
    let pins = listed(&dir, false);
    assert_eq!(pins.len(), 1, "{pins:?}");
    assert!(is_whole(&pins[0], "partial", true), "{pins:?}");
    let mut verify = storgo(&dir);
    verify.arg("verify");
    ok(verify);

    let student = NodeProc::start(&dir, Some(server.addr()));
    wait_for(
        Duration::from_secs(120),
        "the fetch to finish on its own",
        || {
            listed(&dir, false)
                .first()
                .is_some_and(|p| is_whole(p, "partial", false))
        },
    );
    // The student's own store held nothing else, so all it had was this item's.
    let after = student.counter("bytes_fetched");
    let served = server.counter("bytes_served");
    assert!(
        after < SIZE as u64 - before / 2,
        "the restarted node fetched {after} of {SIZE} bytes again (had {before}):\n{}",
        student.log()
    );
    assert!(
        served < SIZE as u64 * 5 / 4,
        "the server sent {served} bytes for a {SIZE}-byte item"
    );
    let mut verify = storgo(&dir);
    verify.arg("verify");
    ok(verify);
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

    let replicas = listed(&dir, true);
    assert_eq!(replicas.len(), 1, "{replicas:?}");
    assert!(is_whole(&replicas[0], "complete", false), "{replicas:?}");
    let mut verify = storgo(&dir);
    verify.arg("verify");
    ok(verify);

    let holder = NodeProc::start(&dir, Some(adder.addr()));
    wait_for(
        Duration::from_secs(120),
        "the intake to finish on its own",
        || {
            listed(&dir, true)
                .first()
                .is_some_and(|r| is_whole(r, "complete", true))
        },
    );
    let mut ls = storgo(&dir);
    ls.args(["ls", "--replicas"]);
    assert!(ok(ls).contains(&root));
    let after = holder.counter("bytes_fetched");
    let served = adder.counter("bytes_served");
    assert!(
        after < SIZE as u64 - before / 2,
        "the restarted holder fetched {after} of {SIZE} bytes again (had {before}):\n{}",
        holder.log()
    );
    assert!(
        served < SIZE as u64 * 5 / 4,
        "the adder sent {served} bytes for a {SIZE}-byte item"
    );
    let mut verify = storgo(&dir);
    verify.arg("verify");
    ok(verify);
}
