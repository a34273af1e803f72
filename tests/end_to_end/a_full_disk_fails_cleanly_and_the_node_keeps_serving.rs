//! A node whose data dir is on a small tmpfs (root only) fills it with a fetch, and then with
//! two replica intakes at once: each fails with a clear error, `verify` is clean, no partial
//! block is left, and the node goes on serving what it held before to another machine.

use std::time::Duration;

use crate::common::*;
use crate::procs::{listed, NodeProc};

fn add(node: &NodeProc, path: &std::path::Path) -> String {
    let mut add = storgo(&node.data_dir);
    add.arg("add").arg(path);
    last_line(&ok(add))
}

/// No block is left half written where a reader could see it.
fn assert_clean(dir: &std::path::Path) {
    let mut verify = storgo(dir);
    verify.args(["verify", "--json"]);
    let v: serde_json::Value = serde_json::from_str(ok(verify).trim()).unwrap();
    for field in ["corrupt", "missing", "damaged_items"] {
        assert_eq!(v[field].as_array().map(Vec::len), Some(0), "{field}: {v}");
    }
    let tmp: Vec<_> = std::fs::read_dir(dir.join("tmp"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
}

/// Another machine (a temporary node) fetches `id` from `from` and gets `data`.
fn fetched_elsewhere(scratch: &std::path::Path, from: &NodeProc, id: &str, data: &[u8]) {
    let fresh = tempfile::tempdir_in(scratch).unwrap();
    let out = fresh.path().join("copy");
    let mut fetch = storgo(&fresh.path().join("data"));
    fetch
        .args(["fetch", id, "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .args(["--bootstrap", from.addr(), "-o"])
        .arg(&out);
    ok(fetch);
    assert!(std::fs::read(&out).unwrap() == data, "fetched bytes differ");
}

#[test]
fn a_full_disk_during_fetch_and_replica_intake_fails_cleanly_and_serving_goes_on() {
    let Some(disk) = SmallDisk::mount("24m") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let server = NodeProc::start_args(
        &tmp.path().join("server"),
        None,
        &[
            "--repair-interval",
            "0s",
            "--replication",
            "1",
            "--serve-rate",
            "12MB",
        ],
    );
    let big = tmp.path().join("big.iso");
    write_random(&big, 40 << 20, 80);
    let big_id = add(&server, &big);

    let dir = disk.path.join("node");
    let node = NodeProc::start_args(
        &dir,
        Some(server.addr()),
        &["--repair-interval", "0s", "--replication", "1"],
    );
    let own = tmp.path().join("own.pdf");
    let own_data = write_random(&own, 2 << 20, 81);
    let own_id = add(&node, &own);

    // A fetch bigger than the disk.
    let mut fetch = storgo(&dir);
    fetch.args(["fetch", &big_id]);
    let line = fails(fetch);
    eprintln!("a fetch on a full disk: {line}");
    assert!(line.contains("No space left on device"), "{line}");
    assert!(
        line.contains(&*dir.to_string_lossy()),
        "names where: {line}"
    );
    assert_clean(&dir);
    fetched_elsewhere(tmp.path(), &node, &own_id, &own_data);

    // Make room again: the partial fetch is dropped and collected.
    let mut unpin = storgo(&dir);
    unpin.args(["unpin", &big_id]);
    ok(unpin);
    let mut gc = storgo(&dir);
    gc.arg("gc");
    ok(gc);

    // Two replicas pushed at once, each fitting alone, not both.
    let items: Vec<_> = (0..2)
        .map(|i| {
            let p = tmp.path().join(format!("dataset-{i}.bin"));
            write_random(&p, 13 << 20, 82 + i);
            p
        })
        .collect();
    for p in &items {
        add(&server, p);
    }
    wait_for(
        Duration::from_secs(120),
        "an intake to fail for want of space",
        || node.log().contains("replica intake failed"),
    );
    wait_for(Duration::from_secs(120), "intake to settle", || {
        listed(&dir, true)
            .iter()
            .all(|r| r["complete"].as_bool() == Some(true))
    });
    assert!(
        node.log().contains("No space left on device"),
        "the log says why: {}",
        node.log()
    );
    assert!(listed(&dir, true).len() <= 1);
    assert_clean(&dir);
    fetched_elsewhere(tmp.path(), &node, &own_id, &own_data);
}
