//! A node stopped with SIGTERM after serving reads is not reported as crashed at its next
//! start. A read's session row was removed only by a later session's first write, so every
//! clean stop after a `cat` left rows that the next start took for a crash's.

use crate::common::*;
use crate::procs::NodeProc;

#[test]
fn a_stop_after_reads_leaves_no_interrupted_sessions() {
    let tmp = tempfile::tempdir().unwrap();
    let source = NodeProc::start(&tmp.path().join("source"), None);
    let path = tmp.path().join("notes.txt");
    let data = write_random(&path, 3 << 20, 11);
    let mut add = storgo(&source.data_dir);
    add.arg("add").arg(&path);
    let id = last_line(&ok(add));

    let dir = tmp.path().join("reader");
    let reader = NodeProc::start(&dir, Some(source.addr()));
    // Two reads through the node from the network (a read pins nothing, so both fetch), and
    // one of an item held here.
    for _ in 0..2 {
        let mut cat = storgo(&dir);
        cat.args(["cat", &id]);
        assert!(run(cat).stdout == data, "cat through the node");
    }
    let local = tmp.path().join("local.txt");
    let local_data = write_random(&local, 100_000, 12);
    let mut add = storgo(&dir);
    add.arg("add").arg(&local);
    let local_id = last_line(&ok(add));
    let mut cat = storgo(&dir);
    cat.args(["cat", &local_id]);
    assert!(run(cat).stdout == local_data);
    assert!(reader.stop().success(), "a clean exit on SIGTERM");

    let reader = NodeProc::start(&dir, Some(source.addr()));
    let mut status = storgo(&dir);
    status.args(["status", "--json"]);
    let s: serde_json::Value = serde_json::from_str(&ok(status)).unwrap();
    assert_eq!(
        s["sessions"]["interrupted_at_start"].as_u64(),
        Some(0),
        "a clean stop counted as a crash: {s}"
    );
    drop(reader);
    let log = std::fs::read_to_string(dir.with_extension("log")).unwrap();
    assert!(
        !log.contains("interrupted by a crash"),
        "the log reports a crash after a clean stop"
    );
}
