//! SIGKILL of the node in the middle of a `gc` sweep (seen from outside: block files have
//! started to go, not all of them): at restart `verify` is clean, the pinned item reads back,
//! and the next `gc` removes the rest — GC has nothing to resume, it is simply run again.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use crate::procs::NodeProc;

/// Writes `n` random files of `len` bytes under `dir`.
fn many_files(dir: &std::path::Path, n: usize, len: usize, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        std::fs::write(dir.join(i.to_string()), random_bytes(len, seed + i as u64)).unwrap();
    }
}

fn add(node: &NodeProc, path: &std::path::Path) -> String {
    let mut add = storgo(&node.data_dir);
    add.args(["add", "-r"]).arg(path);
    last_line(&ok(add))
}

fn gc_json(data_dir: &std::path::Path) -> serde_json::Value {
    let mut gc = storgo(data_dir);
    gc.args(["gc", "--json"]);
    serde_json::from_str(ok(gc).trim()).unwrap()
}

#[test]
fn sigkill_in_the_middle_of_gc_then_restart_verifies_and_gc_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let node = NodeProc::start(&dir, None);
    let keep_path = tmp.path().join("keep.bin");
    let keep = write_random(&keep_path, 5 << 20, 90);
    let keep_id = add(&node, &keep_path);
    // Garbage in both forms: block files (over 64 KiB) and records in packs.
    let big = tmp.path().join("big");
    many_files(&big, 2000, 70 << 10, 1_000);
    let small = tmp.path().join("small");
    many_files(&small, 4000, 2 << 10, 10_000);
    for folder in [&big, &small] {
        let id = add(&node, folder);
        let mut unpin = storgo(&dir);
        unpin.args(["unpin", &id]);
        ok(unpin);
    }
    let before = block_files(&dir).len();

    let mut gc = storgo(&dir);
    gc.arg("gc").stdout(Stdio::null()).stderr(Stdio::null());
    let mut collecting = gc.spawn().unwrap();
    wait_for(Duration::from_secs(60), "gc to start removing", || {
        block_files(&dir).len() < before
    });
    node.kill();
    let _ = collecting.wait();
    let left = block_files(&dir).len();
    eprintln!("block and pack files: {before} before gc, {left} when killed");

    let node = NodeProc::start(&dir, None);
    let mut verify = storgo(&dir);
    verify.args(["verify", "--json"]);
    let verified: serde_json::Value = serde_json::from_str(ok(verify).trim()).unwrap();
    assert_eq!(
        verified["corrupt"].as_array().map(Vec::len),
        Some(0),
        "{verified}"
    );
    assert_eq!(
        verified["missing"].as_array().map(Vec::len),
        Some(0),
        "{verified}"
    );
    assert_eq!(
        verified["damaged_items"].as_array().map(Vec::len),
        Some(0),
        "{verified}"
    );
    let mut cat = storgo(&dir);
    cat.args(["cat", &keep_id]);
    assert!(run(cat).stdout == keep, "the pinned item reads back whole");

    let first = gc_json(&dir);
    let second = gc_json(&dir);
    assert_eq!(second["removed_blocks"], 0, "{first} then {second}");
    assert!(
        left > 50 && first["removed_blocks"].as_u64().unwrap_or(0) > 0,
        "the kill landed after gc had finished ({left} files left): it did not test a cut sweep"
    );
    let mut ls = storgo(&dir);
    ls.arg("ls");
    let listed = ok(ls);
    // The header line, then the one item.
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(listed.contains(&keep_id));
    drop(node);
}
