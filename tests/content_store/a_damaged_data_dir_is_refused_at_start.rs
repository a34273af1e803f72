//! A data dir that is missing, read-only or damaged is refused at start with one line naming
//! the file — never opened as a new, empty store, never given a new identity silently.

use std::path::Path;

use crate::common::*;
use crate::procs;

const NODE: [&str; 4] = ["node", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"];

fn node(data_dir: &Path) -> std::process::Command {
    let mut c = storgo(data_dir);
    c.args(NODE);
    c
}

/// A data dir with one item added and a node identity made.
fn used_data_dir(d: &Path, scratch: &Path) -> String {
    let f = scratch.join("f");
    write_random(&f, 300_000, 9);
    let mut add = storgo(d);
    add.arg("add").arg(&f);
    let id = last_line(&ok(add));
    let mut who = storgo(d);
    who.arg("id");
    let out = run(who);
    assert!(out.status.success());
    id
}

#[test]
fn a_data_dir_whose_parent_is_missing_is_not_made() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("unmounted-disk").join("storgo");
    let mut c = storgo(&d);
    c.arg("ls");
    let line = fails(c);
    assert!(line.contains(&*d.to_string_lossy()), "{line}");
    assert!(line.contains("does not exist"), "{line}");
    assert!(!tmp.path().join("unmounted-disk").exists());
    // Its last folder alone is made, as on a first start.
    let d = tmp.path().join("storgo");
    let mut c = storgo(&d);
    c.arg("ls");
    ok(c);
    assert!(d.join("index.redb").exists());
}

#[test]
fn a_read_only_data_dir_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    // Root writes through permission bits, so as root a read-only mount stands in.
    let disk = if is_root() {
        SmallDisk::mount("8m")
    } else {
        None
    };
    let d = match &disk {
        Some(disk) => disk.path.join("data"),
        None => tmp.path().join("data"),
    };
    let id = used_data_dir(&d, tmp.path());
    match &disk {
        Some(disk) => disk.make_read_only(),
        None => {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o500)).unwrap();
        }
    }
    for cmd in [vec!["ls"], vec!["cat", &id], NODE.to_vec()] {
        let mut c = storgo(&d);
        c.args(&cmd);
        let line = fails(c);
        assert!(line.contains(&*d.to_string_lossy()), "{cmd:?}: {line}");
        assert!(
            line.contains("Read-only") || line.contains("Permission denied"),
            "{cmd:?}: {line}"
        );
    }
    if disk.is_none() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
}

#[test]
fn a_corrupt_or_empty_index_is_refused_and_left_as_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    for (case, damage) in [
        ("random bytes", random_bytes(8192, 3)),
        // Cut to nothing, as a filesystem losing the file's data leaves it.
        ("empty", Vec::new()),
    ] {
        let d = tmp.path().join(case.replace(' ', "-"));
        used_data_dir(&d, tmp.path());
        let index = d.join("index.redb");
        let damaged = damage;
        std::fs::write(&index, &damaged).unwrap();
        for cmd in [vec!["ls"], NODE.to_vec()] {
            let mut c = storgo(&d);
            c.args(&cmd);
            let line = fails(c);
            assert!(
                line.contains(&*index.to_string_lossy()),
                "{case} {cmd:?}: {line}"
            );
            // The damaged index is left for the user to look at, not replaced by an empty one.
            assert_eq!(std::fs::read(&index).unwrap(), damaged, "{case}");
        }
    }
    // A cut-off redb file (its header kept) is refused as well.
    let d = tmp.path().join("cut");
    used_data_dir(&d, tmp.path());
    let index = d.join("index.redb");
    let whole = std::fs::read(&index).unwrap();
    std::fs::write(&index, &whole[..100]).unwrap();
    let mut c = storgo(&d);
    c.arg("ls");
    let line = fails(c);
    assert!(line.contains(&*index.to_string_lossy()), "{line}");
}

#[test]
fn a_damaged_or_lost_identity_is_never_silently_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    used_data_dir(&d, tmp.path());
    let key = d.join("identity");
    let whole = std::fs::read(&key).unwrap();

    for cut in [whole.len() / 2, 0] {
        std::fs::write(&key, &whole[..cut]).unwrap();
        let line = fails(node(&d));
        assert!(line.contains(&*key.to_string_lossy()), "{line}");
        assert!(line.contains("damaged or truncated"), "{line}");
        assert_eq!(std::fs::read(&key).unwrap(), &whole[..cut]);
    }

    std::fs::remove_file(&key).unwrap();
    let line = fails(node(&d));
    assert!(line.contains(&*key.to_string_lossy()), "{line}");
    assert!(line.contains("--new-identity"), "{line}");
    assert!(!key.exists());
    let mut who = storgo(&d);
    who.arg("id");
    fails(who);

    // Restored from a backup: the same node again.
    std::fs::write(&key, &whole).unwrap();
    let old = procs::NodeProc::start(&d, None);
    let old_peer = old.peer_id.clone();
    assert!(old.stop().success());

    // Asked for: a new node.
    std::fs::remove_file(&key).unwrap();
    let new = procs::NodeProc::start_with(
        std::process::Command::new(bin()),
        &d,
        &[
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--new-identity",
        ],
    );
    assert_ne!(new.peer_id, old_peer);
    assert!(!new.peer_id.is_empty());
    assert!(new.stop().success());
}
