//! Regression tests for the hardening review's defects 4, 5 and 8 (the files `get` writes,
//! crafted manifests, the data dir's permissions).

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, UNIX_EPOCH};

use storgo::content::{ChunkRef, ContentId, FileManifest, Manifest, Tree};
use storgo::files::{self, AddOptions};
use storgo::store::{SessionKind, Store, StoreError, StoreOptions};

use crate::common::*;

fn store_in(dir: &std::path::Path) -> Store {
    Store::open(&dir.join("data"), StoreOptions::default()).unwrap()
}

#[test]
fn setuid_setgid_and_sticky_bits_are_never_restored() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_in(tmp.path());
    let path = tmp.path().join("tool");
    write_random(&path, 5000, 1);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o6755)).unwrap();
    let added = files::add_path(&store, &path, &AddOptions::default(), &|_| {}).unwrap();
    let out = tmp.path().join("out");
    files::get(&store, &added.id, &out, &|_| {}).unwrap();
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o755, "only rwx bits come back: {mode:o}");
}

#[test]
fn a_write_only_file_gets_its_mtime_and_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_in(tmp.path());
    let path = tmp.path().join("drop-box");
    write_random(&path, 300_000, 2);
    let when = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(when)
        .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o200)).unwrap();
    let added = files::add_path(&store, &path, &AddOptions::default(), &|_| {}).unwrap();
    let out = tmp.path().join("out");
    files::get(&store, &added.id, &out, &|_| {}).unwrap();
    let meta = std::fs::metadata(&out).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o200);
    assert_eq!(meta.modified().unwrap(), when);
}

#[test]
fn get_never_writes_through_a_symlink_and_leaves_no_temp_files() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_in(tmp.path());
    let path = tmp.path().join("notes");
    write_random(&path, 1000, 3);
    let added = files::add_path(&store, &path, &AddOptions::default(), &|_| {}).unwrap();
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, b"keep me").unwrap();
    let out_dir = tmp.path().join("outdir");
    std::fs::create_dir(&out_dir).unwrap();
    let link = out_dir.join("out");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let r = files::get(&store, &added.id, &link, &|_| {});
    assert!(matches!(r, Err(files::FilesError::Exists { .. })), "{r:?}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    // A successful get leaves nothing but its output beside it.
    let out = out_dir.join("fresh");
    files::get(&store, &added.id, &out, &|_| {}).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["fresh".to_string(), "out".to_string()]);
}

/// Counts what it is given.
struct Counting(u64);
impl std::io::Write for Counting {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_manifest_that_understates_its_size_is_refused_before_more_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_in(tmp.path());
    // Real chunks: five files' worth, each one chunk of 100 KB.
    let mut chunks: Vec<ChunkRef> = Vec::new();
    for i in 0..5u64 {
        let path = tmp.path().join(format!("part{i}"));
        write_random(&path, 100_000, 10 + i);
        let added = files::add_path(&store, &path, &AddOptions::default(), &|_| {}).unwrap();
        let Manifest::File(f) = files::load_manifest(&store, added.id.root, &added.id.key).unwrap()
        else {
            panic!("a file");
        };
        let Tree::Leaves(v) = f.chunks else {
            panic!("leaves")
        };
        chunks.extend(v);
    }
    // A crafted file manifest: 500 KB of chunks, declaring 10 bytes.
    let crafted = Manifest::File(FileManifest {
        name: "small.txt".into(),
        size: 10,
        mode: None,
        mtime: None,
        chunks: Tree::Leaves(chunks),
    });
    let (address, key, block) = crafted.seal(store.secret()).unwrap();
    let session = store.session(SessionKind::Add, "crafted").unwrap();
    let mut w = session.writer();
    w.put(address, &block).unwrap();
    w.finish().unwrap();
    let id = ContentId::new(address, key);
    let mut out = Counting(0);
    let r = files::cat(&store, &id, &mut out, &|_| {});
    assert!(r.is_err(), "refused");
    assert!(out.0 <= 10, "wrote {} bytes of a 10-byte file", out.0);
    let dest = tmp.path().join("crafted-out");
    assert!(files::get(&store, &id, &dest, &|_| {}).is_err());
    assert!(!dest.exists());
}

#[test]
fn a_data_dir_others_can_read_is_refused_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let r = Store::open(&d, StoreOptions::default());
    assert!(
        matches!(r, Err(StoreError::OpenToOthers { mode: 0o755, .. })),
        "{:?}",
        r.err()
    );
    let mut ls = storgo(&d);
    ls.arg("ls");
    let line = fails(ls);
    assert!(
        line.contains("chmod 700") && line.contains(&*d.to_string_lossy()),
        "{line}"
    );
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    Store::open(&d, StoreOptions::default()).unwrap();
}
