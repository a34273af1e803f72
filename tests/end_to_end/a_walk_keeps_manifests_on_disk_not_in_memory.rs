//! A fetch's walk writes manifests to its session as they arrive (8 MiB at a time) instead of
//! keeping every one in memory until the walk ends: a folder whose manifests come to about
//! 300 MiB (crafted: two folders of 768 sub-folders of 1,024 entries with long random names,
//! all naming one small file) is fetched by a node whose peak resident memory stays far below
//! that.

use std::sync::Arc;

use storgo::content::{ContentId, DirEntry, DirManifest, EntryKind, Manifest, Tree};
use storgo::store::{PinRecord, SessionKind, Store};

use crate::common::*;
use crate::procs::NodeProc;

const MIDS: usize = 2;
const SUBDIRS: usize = 768;
const ENTRIES: usize = storgo::content::manifest::MAX_ENTRIES_PER_PAGE;

/// Peak resident memory of a process (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

/// Writes the crafted folder into the store at `dir` and pins it; returns its ID and the
/// bytes of its manifests.
fn craft(dir: &std::path::Path, leaf_file: &std::path::Path) -> (ContentId, u64) {
    let store = Arc::new(Store::open(dir, Default::default()).expect("open store"));
    let leaf = storgo::files::add_path(&store, leaf_file, &Default::default(), &|_| {})
        .expect("add the leaf")
        .id;
    let session = store.session(SessionKind::Add, "crafted").unwrap();
    let mut w = session.writer();
    let mut manifest_bytes = 0u64;
    let mut mids = Vec::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
    for m in 0..MIDS {
        let mut subdirs = Vec::new();
        for s in 0..SUBDIRS {
            // Names of random letters, so that the manifests do not compress away.
            let mut entries: Vec<DirEntry> = (0..ENTRIES)
                .map(|_| {
                    let name: String = (0..255)
                        .map(|_| {
                            rng ^= rng << 13;
                            rng ^= rng >> 7;
                            rng ^= rng << 17;
                            char::from(LETTERS[(rng % 64) as usize])
                        })
                        .collect();
                    DirEntry {
                        name,
                        kind: EntryKind::File,
                        size: 1000,
                        address: leaf.root,
                        key: leaf.key,
                    }
                })
                .collect();
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            let dir = Manifest::Dir(DirManifest {
                name: format!("part{m}-{s}"),
                size: 1000 * ENTRIES as u64,
                mode: None,
                mtime: None,
                entries: Tree::Leaves(entries),
            });
            let (address, key, block) = dir.seal(store.secret()).expect("seal a sub-folder");
            manifest_bytes += block.len() as u64;
            w.put(address, &block).unwrap();
            subdirs.push(DirEntry {
                name: format!("part{s:04}"),
                kind: EntryKind::Dir,
                size: 1000 * ENTRIES as u64,
                address,
                key,
            });
        }
        let size = 1000 * (ENTRIES * SUBDIRS) as u64;
        let mid = Manifest::Dir(DirManifest {
            name: format!("half{m}"),
            size,
            mode: None,
            mtime: None,
            entries: Tree::Leaves(subdirs),
        });
        let (address, key, block) = mid.seal(store.secret()).expect("seal a half");
        manifest_bytes += block.len() as u64;
        w.put(address, &block).unwrap();
        mids.push(DirEntry {
            name: format!("half{m}"),
            kind: EntryKind::Dir,
            size,
            address,
            key,
        });
    }
    let size = 1000 * (ENTRIES * SUBDIRS * MIDS) as u64;
    let root = Manifest::Dir(DirManifest {
        name: "dataset".into(),
        size,
        mode: None,
        mtime: None,
        entries: Tree::Leaves(mids),
    });
    let (address, key, block) = root.seal(store.secret()).expect("seal the root");
    manifest_bytes += block.len() as u64;
    w.put(address, &block).unwrap();
    w.finish().unwrap();
    let id = ContentId::new(address, key);
    session
        .commit_pin(&PinRecord {
            id: id.to_string(),
            name: "dataset".into(),
            kind: "dir".into(),
            size,
            pinned_at: 0,
            partial: false,
            for_reading: false,
            replicas: None,
            internal: false,
            durability: None,
            stripe_map: None,
        })
        .unwrap();
    (id, manifest_bytes)
}

#[test]
fn a_walk_keeps_manifests_on_disk_not_in_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let leaf = tmp.path().join("leaf.txt");
    write_random(&leaf, 1000, 5);
    let (id, manifest_bytes) = craft(&tmp.path().join("a"), &leaf);
    assert!(
        manifest_bytes > 250 << 20,
        "{manifest_bytes} bytes of manifests"
    );

    let a = NodeProc::start(&tmp.path().join("a"), None);
    let b = NodeProc::start(&tmp.path().join("b"), Some(a.addr()));
    let before = peak_rss(b.child.id());
    let mut fetch = storgo(&b.data_dir);
    fetch.args(["fetch", &id.to_string(), "--timeout", "120s"]);
    ok(fetch);
    let peak = peak_rss(b.child.id());
    eprintln!(
        "walked {} MiB of manifests: the fetching node's peak RSS {} MiB (before the fetch {} MiB)",
        manifest_bytes >> 20,
        peak >> 20,
        before >> 20
    );
    assert!(
        peak < 160 << 20,
        "peak RSS {} MiB while walking {} MiB of manifests",
        peak >> 20,
        manifest_bytes >> 20
    );
    b.stop();
    a.stop();
}
