//! Identical content is stored once: the same file twice, and two files that share a large
//! middle part.

use storgo::content::CHUNK_MAX;
use storgo::files::{self, AddOptions};
use storgo::store::{Store, StoreOptions};

use crate::common::*;

#[test]
fn adding_the_same_file_twice_writes_nothing_and_gives_the_same_id() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("data"), StoreOptions::default()).unwrap();
    let path = tmp.path().join("f");
    write_random(&path, 20 << 20, 5);
    let a = files::add_path(&store, &path, &AddOptions::default(), &|_| {}).unwrap();
    let before = store.stats().unwrap();
    let b = files::add_path(&store, &path, &AddOptions::default(), &|_| {}).unwrap();
    assert_eq!(a.id, b.id);
    assert_eq!(b.new_bytes, 0);
    assert_eq!(store.stats().unwrap(), before);
}

#[test]
fn two_files_sharing_a_100_mib_middle_store_it_once() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("data"), StoreOptions::default()).unwrap();
    let middle = random_bytes(100 << 20, 77);
    let edge = 5 << 20;
    let a_path = tmp.path().join("a");
    let b_path = tmp.path().join("b");
    std::fs::write(
        &a_path,
        [random_bytes(edge, 1), middle.clone(), random_bytes(edge, 2)].concat(),
    )
    .unwrap();
    std::fs::write(
        &b_path,
        [random_bytes(edge, 3), middle, random_bytes(edge, 4)].concat(),
    )
    .unwrap();
    files::add_path(&store, &a_path, &AddOptions::default(), &|_| {}).unwrap();
    let before = store.stats().unwrap().bytes;
    let b = files::add_path(&store, &b_path, &AddOptions::default(), &|_| {}).unwrap();
    let grown = store.stats().unwrap().bytes - before;
    // The changed ends, plus at most one boundary chunk on each side of the shared part where
    // cut points resynchronise, plus manifests.
    let bound = (2 * edge + 4 * CHUNK_MAX + 64 * 1024) as u64;
    assert!(grown >= (2 * edge) as u64, "grew only {grown}");
    assert!(
        grown <= bound,
        "store grew by {grown} bytes for {} changed bytes",
        2 * edge
    );
    assert_eq!(b.new_bytes, grown);
}
