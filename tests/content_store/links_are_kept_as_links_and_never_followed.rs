//! Symbolic links in a folder are stored as link entries (their target as text, what they
//! point to not added) and restored as links with the same target — relative, absolute,
//! dangling, to a folder — and never followed: not when adding, not when restoring, not even
//! for a crafted folder that names a link and a file alike.

use std::path::Path;

use storgo::content::{ContentId, DirEntry, DirManifest, EntryKind, LinkManifest, Manifest, Tree};
use storgo::files::{self, AddOptions};
use storgo::store::{SessionKind, Store, StoreOptions};

use crate::common::*;

#[test]
fn links_round_trip_as_links_with_their_targets() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = write_random(&tmp.path().join("secret.bin"), 300_000, 9);
    let src = tmp.path().join("course");
    std::fs::create_dir_all(src.join("week1")).unwrap();
    let notes = write_random(&src.join("notes.txt"), 5000, 1);
    let links = [
        ("latest", "notes.txt"),
        ("current", "week1"),
        ("system", "/etc/hostname"),
        ("gone", "missing/file.pdf"),
        ("leak", "../secret.bin"),
    ];
    for (name, target) in links {
        std::os::unix::fs::symlink(target, src.join(name)).unwrap();
    }
    let d = tmp.path().join("data");
    let mut add = storgo(&d);
    add.args(["add", "-r"]).arg(&src);
    let out = run(add);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "nothing skipped: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = last_line(&String::from_utf8_lossy(&out.stdout));

    // What a link points to is not added: the item is the size of its one file.
    let mut stat = storgo(&d);
    stat.args(["stat", &id, "--json"]);
    let st: serde_json::Value = serde_json::from_str(ok(stat).trim()).unwrap();
    assert_eq!(st["size"], notes.len(), "{st}");
    let stored = Store::open(&d, StoreOptions::default())
        .unwrap()
        .stats()
        .unwrap()
        .bytes;
    assert!(
        stored < outside.len() as u64,
        "the linked-to file was not stored ({stored} bytes)"
    );

    let back = tmp.path().join("back");
    let mut get = storgo(&d);
    get.args(["get", &id, "-o"]).arg(&back);
    ok(get);
    for (name, target) in links {
        let p = back.join(name);
        assert!(
            std::fs::symlink_metadata(&p)
                .unwrap()
                .file_type()
                .is_symlink(),
            "{name}"
        );
        assert_eq!(std::fs::read_link(&p).unwrap(), Path::new(target), "{name}");
    }
    assert_eq!(
        std::fs::read(back.join("latest")).unwrap(),
        notes,
        "a relative link works"
    );
    assert!(
        std::fs::metadata(back.join("gone")).is_err(),
        "a dangling link stays dangling"
    );

    // The API lists a link with its target.
    let st = Store::open(&d, StoreOptions::default()).unwrap();
    let listed = files::browse::entries(&st, &id.parse().unwrap()).unwrap();
    let latest = listed.iter().find(|e| e.name == "latest").unwrap();
    assert_eq!(
        (latest.kind.as_str(), latest.target.as_deref()),
        ("link", Some("notes.txt"))
    );
}

#[test]
fn a_crafted_folder_naming_a_link_and_a_file_alike_cannot_write_through_the_link() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("data"), StoreOptions::default()).unwrap();
    let victim = tmp.path().join("victim.txt");
    std::fs::write(&victim, b"untouched").unwrap();

    // A file "x" and a link "x" -> victim, the link first.
    let added = files::add_reader(
        &store,
        &b"overwrite!"[..],
        "x",
        &AddOptions::default(),
        &|_| {},
    )
    .unwrap();
    let session = store.session(SessionKind::Add, "crafted").unwrap();
    let mut w = session.writer();
    let link = Manifest::Link(LinkManifest {
        name: "x".into(),
        target: victim.to_str().unwrap().into(),
        mtime: None,
    });
    let (la, lk, lb) = link.seal(store.secret()).unwrap();
    w.put(la, &lb).unwrap();
    let dir = Manifest::Dir(DirManifest {
        name: "crafted".into(),
        size: 10,
        mode: None,
        mtime: None,
        entries: Tree::Leaves(vec![
            DirEntry {
                name: "x".into(),
                kind: EntryKind::Link,
                size: 0,
                address: la,
                key: lk,
            },
            DirEntry {
                name: "x".into(),
                kind: EntryKind::File,
                size: 10,
                address: added.id.root,
                key: added.id.key,
            },
        ]),
    });
    let (da, dk, db) = dir.seal(store.secret()).unwrap();
    w.put(da, &db).unwrap();
    w.finish().unwrap();
    let id = ContentId::new(da, dk);
    let out = tmp.path().join("out");
    let err = files::get(&store, &id, &out, &|_| {}).expect_err("refused");
    assert!(err.to_string().contains("exists"), "{err}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
    assert!(!out.exists(), "nothing appears at the destination");
}
