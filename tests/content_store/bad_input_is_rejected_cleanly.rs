//! Bad input gives one clear line, a non-zero exit, no panic, and an unchanged store.

use std::io::Write;
use std::process::Stdio;

use storgo::content::{BlockKey, ContentId, ConvergenceSecret};
use storgo::files;
use storgo::store::{SessionKind, Store, StoreOptions};

use crate::common::*;

fn add_file(data_dir: &std::path::Path, path: &std::path::Path) -> String {
    let mut add = storgo(data_dir);
    add.arg("add").arg(path);
    last_line(&ok(add))
}

#[test]
fn malformed_unknown_and_missing_inputs_fail_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    let mut c = storgo(&d);
    c.args(["cat", "not-an-id"]);
    assert!(fails(c).contains("malformed content ID"));

    // A real-looking ID with one character changed is caught by the checksum.
    let path = tmp.path().join("f");
    write_random(&path, 1000, 1);
    let id = add_file(&d, &path);
    let mut typo: Vec<char> = id.chars().collect();
    typo[20] = if typo[20] == 'a' { 'b' } else { 'a' };
    let mut c = storgo(&d);
    c.args(["cat", &typo.into_iter().collect::<String>()]);
    assert!(fails(c).contains("checksum"));

    // A well-formed ID for content this store never had.
    let other = ContentId::new(
        storgo::content::BlockAddress::of(b"x"),
        BlockKey::from_bytes([1; 32]),
    );
    // It is named by the ID the user gave, never by a block address they did not see.
    for cmd in ["cat", "stat"] {
        let mut c = storgo(&d);
        c.args([cmd, &other.to_string()]);
        let line = fails(c);
        assert!(
            line.contains(&format!("{} is not held here", other.short())) && !line.contains("bafk"),
            "{line}"
        );
    }
    // A truncated ID says so.
    let mut c = storgo(&d);
    c.args(["cat", &id[..60]]);
    let line = fails(c);
    assert!(line.contains("too short"), "{line}");

    let mut c = storgo(&d);
    c.args(["add"]).arg(tmp.path().join("does-not-exist"));
    let line = fails(c);
    assert!(line.contains("does-not-exist"), "{line}");

    let mut c = storgo(&d);
    c.args(["add"]).arg(tmp.path());
    assert!(fails(c).contains("is a directory"));

    let mut c = storgo(&d);
    c.args(["--max-storage", "lots", "ls"]);
    let out = run(c);
    assert!(!out.status.success());
}

#[test]
fn a_forged_key_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    let path = tmp.path().join("f");
    write_random(&path, 5000, 2);
    let id: ContentId = add_file(&d, &path).parse().unwrap();
    let forged = ContentId::new(id.root, BlockKey::from_bytes([7; 32]));
    let mut c = storgo(&d);
    c.args(["cat", &forged.to_string()]);
    let line = fails(c);
    assert!(line.contains("wrong key"), "{line}");
}

#[test]
fn corrupt_and_truncated_chunks_are_caught_by_cat_and_moved_aside_by_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    let path = tmp.path().join("f");
    write_random(&path, 9 << 20, 3);
    let id = add_file(&d, &path);
    let mut blocks = block_files(&d);
    // The biggest blocks are chunks; flip a byte in one and truncate another.
    blocks.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).unwrap().len()));
    let mut bytes = std::fs::read(&blocks[0]).unwrap();
    bytes[1000] ^= 0x40;
    std::fs::write(&blocks[0], &bytes).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&blocks[1])
        .unwrap();
    f.set_len(100).unwrap();

    let mut cat = storgo(&d);
    cat.args(["cat", &id]).stdout(Stdio::null());
    let line = fails(cat);
    assert!(
        line.contains("corrupt") && line.contains("bafkrei"),
        "{line}"
    );

    let mut verify = storgo(&d);
    verify.args(["verify", "--json"]);
    let out = run(verify);
    assert!(!out.status.success());
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(report["corrupt"].as_array().unwrap().len(), 2);
    assert_eq!(report["damaged_items"].as_array().unwrap().len(), 1);
    assert_eq!(std::fs::read_dir(d.join("corrupt")).unwrap().count(), 2);
    assert!(!blocks[0].exists() && !blocks[1].exists());

    // Re-adding the original heals the item.
    add_file(&d, &path);
    let mut verify = storgo(&d);
    verify.arg("verify");
    ok(verify);
    let mut cat = storgo(&d);
    cat.args(["cat", &id]);
    assert!(run(cat).stdout == std::fs::read(&path).unwrap());
}

#[test]
fn a_manifest_that_does_not_decode_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("data"), StoreOptions::default()).unwrap();
    // A key holder seals garbage as a manifest body.
    let secret = ConvergenceSecret::from_bytes([9; 32]);
    let header = b"SGM1\0\0\0\0".to_vec();
    let mut body = b"definitely not cbor of a manifest".to_vec();
    let key = secret.derive_key(&header, &body);
    key.seal_in_place(&mut body, &header);
    let block = [header, body].concat();
    let address = storgo::content::BlockAddress::of(&block);
    let session = store.session(SessionKind::Add, "test").unwrap();
    let mut w = session.writer();
    w.put(address, &block).unwrap();
    w.finish().unwrap();
    let err = files::cat(
        &store,
        &ContentId::new(address, key),
        &mut Vec::new(),
        &|_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("does not decode"), "{err}");
}

#[test]
fn a_second_process_on_the_same_data_dir_is_refused_with_the_owner_pid() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    // An add from stdin holds the store open until its input ends.
    let mut first = storgo(&d);
    first
        .args(["add", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = first.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"some bytes").unwrap();
    let lock = d.join("lock");
    wait_for(
        std::time::Duration::from_secs(30),
        "the first process to take the lock",
        || {
            std::fs::read_to_string(&lock)
                .map(|s| s.trim() == child.id().to_string())
                .unwrap_or(false)
        },
    );
    let mut second = storgo(&d);
    second.arg("ls");
    let line = fails(second);
    assert!(
        line.contains(&format!("in use by PID {}", child.id())),
        "{line}"
    );
    drop(stdin);
    assert!(child.wait_with_output().unwrap().status.success());
    let mut ls = storgo(&d);
    ls.arg("ls");
    // The header, then the one item.
    assert_eq!(ok(ls).lines().count(), 2);
}

#[test]
fn a_quota_refuses_the_write_and_leaves_nothing_pinned_or_broken() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    let path = tmp.path().join("f");
    write_random(&path, 6 << 20, 4);
    let mut add = storgo(&d);
    add.args(["--max-storage", "2MiB", "add"]).arg(&path);
    let line = fails(add);
    assert!(line.contains("quota"), "{line}");
    let mut ls = storgo(&d);
    ls.arg("ls");
    assert_eq!(ok(ls), "");
    let mut verify = storgo(&d);
    verify.arg("verify");
    ok(verify);
    assert!(std::fs::read_dir(d.join("tmp")).unwrap().next().is_none());
    // Within the quota it works.
    let small = tmp.path().join("s");
    write_random(&small, 1 << 20, 5);
    let mut add = storgo(&d);
    add.args(["--max-storage", "2MiB", "add"]).arg(&small);
    ok(add);
}

#[test]
fn a_full_disk_fails_cleanly_and_the_store_reopens() {
    let Some(disk) = SmallDisk::mount("24m") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mnt = disk.path.clone();
    let d = mnt.join("data");
    let path = tmp.path().join("f");
    write_random(&path, 40 << 20, 6);
    let mut add = storgo(&d);
    add.arg("add").arg(&path);
    let line = fails(add);
    let mut verify = storgo(&d);
    verify.arg("verify");
    let verified = run(verify);
    let mut ls = storgo(&d);
    ls.arg("ls");
    let listed = ok(ls);
    assert!(
        line.contains("No space left") || line.contains("space"),
        "{line}"
    );
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert_eq!(listed, "");
}

#[test]
fn a_folder_that_repeats_a_subtree_beyond_its_declared_size_is_refused() {
    use storgo::content::{DirEntry, DirManifest, EntryKind, Manifest, Tree};
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("data"), StoreOptions::default()).unwrap();
    let path = tmp.path().join("f");
    write_random(&path, 100_000, 12);
    let file = files::add_path(&store, &path, &Default::default(), &|_| {}).unwrap();
    // A crafted folder naming the same file many times while declaring a tiny size.
    let entries = (0..50)
        .map(|i| DirEntry {
            name: format!("copy{i}"),
            kind: EntryKind::File,
            size: 1,
            address: file.id.root,
            key: file.id.key,
        })
        .collect();
    let bomb = Manifest::Dir(DirManifest {
        name: "bomb".into(),
        size: 150_000,
        mode: None,
        mtime: None,
        entries: Tree::Leaves(entries),
    });
    let (address, key, block) = bomb.seal(store.secret()).unwrap();
    let session = store.session(SessionKind::Add, "test").unwrap();
    let mut w = session.writer();
    w.put(address, &block).unwrap();
    w.finish().unwrap();
    let out = tmp.path().join("out");
    let err = files::get(&store, &ContentId::new(address, key), &out, &|_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("more than the size its root declares"),
        "{err}"
    );
    assert!(!out.exists(), "nothing appears at the destination");
}

#[test]
fn swarm_keys_are_made_private_and_bad_ones_refused_with_one_line() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let key = tmp.path().join("swarm.key");
    let key_arg = key.to_str().unwrap();
    let mut c = storgo(&data);
    c.args(["keygen", "swarm", key_arg]);
    assert_eq!(ok(c).trim(), key_arg);
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(
        text.starts_with("/key/swarm/psk/1.0.0/\n/base16/\n"),
        "{text}"
    );
    let mut c = storgo(&data);
    c.args(["keygen", "swarm", key_arg]);
    assert!(fails(c).contains("exists"), "a key is never overwritten");

    let node = |extra: &[&str]| {
        let mut c = storgo(&data);
        c.args(["node", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"]);
        c.args(extra);
        fails(c)
    };
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = node(&["--swarm-key", key_arg]);
    assert!(
        err.contains("readable by others") && err.contains(key_arg),
        "{err}"
    );
    std::fs::write(&key, "/key/swarm/psk/1.0.0/\n/base16/\nnot-hex\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = node(&["--swarm-key", key_arg]);
    assert!(
        err.contains("64 hex digits") && err.contains(key_arg),
        "{err}"
    );
    let err = node(&[
        "--swarm-key",
        key_arg,
        "--bootstrap",
        "/ip4/127.0.0.1/udp/4001/quic-v1/p2p/12D3KooWHuG3FY7Qcq5wXi23Y5vHwvZMZeGjVtgjzPhr8GHEiKNH",
    ]);
    assert!(
        err.contains("64 hex digits"),
        "the key is checked first: {err}"
    );
    let err = node(&["--allow-peer", "not-a-peer"]);
    assert!(err.contains("not a PeerId"), "{err}");
}
