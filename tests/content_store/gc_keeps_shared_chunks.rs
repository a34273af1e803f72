//! Garbage collection frees what nothing pinned needs and keeps what something still does.

use storgo::files::{self, AddOptions};
use storgo::store::{Store, StoreOptions};

use crate::common::*;

#[test]
fn unpinning_one_of_two_files_sharing_chunks_keeps_the_other_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("data"), StoreOptions::default()).unwrap();
    let shared = random_bytes(12 << 20, 1);
    let a_path = tmp.path().join("a");
    let b_path = tmp.path().join("b");
    let a_data = [shared.clone(), random_bytes(3 << 20, 2)].concat();
    let b_data = [shared, random_bytes(3 << 20, 3)].concat();
    std::fs::write(&a_path, &a_data).unwrap();
    std::fs::write(&b_path, &b_data).unwrap();
    let a = files::add_path(&store, &a_path, &AddOptions::default(), &|_| {}).unwrap();
    let b = files::add_path(&store, &b_path, &AddOptions::default(), &|_| {}).unwrap();
    let full = store.stats().unwrap();

    store.unpin(&a.id).unwrap();
    let report = store.gc().unwrap();
    assert!(report.removed_blocks > 0, "a's own chunks and manifest go");
    let after = store.stats().unwrap();
    assert!(after.bytes < full.bytes);
    assert!(
        after.bytes >= b_data.len() as u64,
        "b's chunks, shared ones included, stay"
    );

    let mut back = Vec::new();
    files::cat(&store, &b.id, &mut back, &|_| {}).unwrap();
    assert!(back == b_data);
    assert!(files::cat(&store, &a.id, &mut Vec::new(), &|_| {}).is_err());

    store.unpin(&b.id).unwrap();
    store.gc().unwrap();
    assert_eq!(store.stats().unwrap().bytes, 0);
    assert!(block_files(store.dir()).is_empty());
}

#[test]
fn an_unpinned_add_is_collected_and_gc_via_the_binary_reports_json() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let path = tmp.path().join("f");
    write_random(&path, 3 << 20, 8);
    let mut add = storgo(&data_dir);
    add.args(["add", "--no-pin"]).arg(&path);
    ok(add);
    assert!(!block_files(&data_dir).is_empty());
    let mut gc = storgo(&data_dir);
    gc.args(["gc", "--json"]);
    let r: serde_json::Value = serde_json::from_str(&ok(gc)).unwrap();
    assert!(r["removed_blocks"].as_u64().unwrap() > 0);
    assert!(block_files(&data_dir).is_empty());
}
