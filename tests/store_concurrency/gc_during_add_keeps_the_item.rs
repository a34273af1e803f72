//! The first reproduction of the store-concurrency bug: `storgo gc` called again and again
//! while `storgo add` runs through the node. Before sessions, every item came out broken
//! (GC ran between the add's last block write and its pin).

use std::process::Stdio;

use crate::common::*;
use crate::procs::NodeProc;

#[test]
fn gc_during_add_through_the_node_keeps_every_item() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tmp.path().join("node"), None);
    let mut added = Vec::new();
    let mut overlapping_gcs = 0;
    for round in 0..6u64 {
        let path = tmp.path().join(format!("file-{round}"));
        let data = write_random(&path, 48 << 20, 100 + round);
        let mut add = storgo(&node.data_dir);
        add.arg("add")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut add = add.spawn().expect("spawn add");
        while add.try_wait().expect("poll add").is_none() {
            let mut gc = storgo(&node.data_dir);
            gc.arg("gc");
            ok(gc);
            overlapping_gcs += 1;
        }
        let out = add.wait_with_output().expect("add output");
        assert!(
            out.status.success(),
            "add {round} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        added.push((last_line(&String::from_utf8_lossy(&out.stdout)), data));
    }
    assert!(
        overlapping_gcs >= 6,
        "gc ran only {overlapping_gcs} times during the adds"
    );

    let mut verify = storgo(&node.data_dir);
    verify.arg("verify");
    ok(verify);
    for (id, data) in &added {
        let mut cat = storgo(&node.data_dir);
        cat.args(["cat", id]);
        let out = run(cat);
        assert!(
            out.status.success(),
            "cat {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout == *data, "cat {id} returned other bytes");
    }
}
