//! What goes in comes out: files of every interesting size and whole folders.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, UNIX_EPOCH};

use storgo::content::{CHUNK_MAX, CHUNK_MIN};
use storgo::files::{self, AddOptions};
use storgo::store::{Store, StoreOptions};

use crate::common::*;

fn round_trip(store: &Store, dir: &std::path::Path, len: usize, seed: u64) {
    let path = dir.join(format!("f{len}"));
    let data = write_random(&path, len, seed);
    let added = files::add_path(store, &path, &AddOptions::default(), &|_| {}).unwrap();
    assert_eq!(added.size, len as u64);
    let mut back = Vec::new();
    files::cat(store, &added.id, &mut back, &|_| {}).unwrap();
    assert!(back == data, "round trip of {len} bytes differs");
    let st = files::stat(store, &added.id).unwrap();
    assert_eq!(st.chunks, st.chunks_local);
    assert_eq!(st.size, len as u64);
    let want: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&data).into();
    assert_eq!(
        files::sha256(store, &added.id).unwrap(),
        want,
        "stat --sha256 of {len} bytes"
    );
}

#[test]
fn files_of_boundary_sizes_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("data"), StoreOptions::default()).unwrap();
    for (i, len) in [
        0,
        1,
        CHUNK_MIN - 1,
        CHUNK_MIN,
        CHUNK_MIN + 1,
        CHUNK_MAX - 1,
        CHUNK_MAX,
        CHUNK_MAX + 1,
        3 * CHUNK_MAX + 7,
    ]
    .into_iter()
    .enumerate()
    {
        round_trip(&store, tmp.path(), len, i as u64);
    }
}

/// A file shorter than the smallest chunk is sealed without the pipeline when added from a
/// path, and through it when streamed: both must give the same item (dedup and IDs depend on
/// it), compressible or not, and a file that grows past its listed size still reads whole.
#[test]
fn small_files_seal_alike_from_a_path_and_from_a_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("data"), StoreOptions::default()).unwrap();
    let text: Vec<u8> = b"Week 3: sorting. "
        .iter()
        .copied()
        .cycle()
        .take(9000)
        .collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("one", vec![42]),
        ("text", text),
        ("random", random_bytes(CHUNK_MIN - 1, 9)),
        ("at-min", random_bytes(CHUNK_MIN, 10)),
    ];
    for (name, data) in cases {
        let path = tmp.path().join(name);
        std::fs::write(&path, &data).unwrap();
        // Same mode and mtime as the path add: compare the chunk lists and sizes.
        let from_path = files::add_path(&store, &path, &AddOptions::default(), &|_| {}).unwrap();
        let from_stream =
            files::add_reader(&store, &data[..], name, &AddOptions::default(), &|_| {}).unwrap();
        let chunks = |id| {
            let files::read::ItemStat { chunks, size, .. } = files::stat(&store, id).unwrap();
            (chunks, size)
        };
        assert_eq!(chunks(&from_path.id), chunks(&from_stream.id), "{name}");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        files::cat(&store, &from_path.id, &mut a, &|_| {}).unwrap();
        files::cat(&store, &from_stream.id, &mut b, &|_| {}).unwrap();
        assert!(a == data && b == data, "{name} reads back");
        let (pa, pb) = (
            chunk_addresses(&store, &from_path.id),
            chunk_addresses(&store, &from_stream.id),
        );
        assert_eq!(pa, pb, "{name}: the same chunk blocks");
    }
}

fn chunk_addresses(store: &Store, id: &storgo::content::ContentId) -> Vec<String> {
    let storgo::content::Manifest::File(f) = files::load_manifest(store, id.root, &id.key).unwrap()
    else {
        panic!("a file");
    };
    let mut out = Vec::new();
    files::read::for_each_chunk(store, &f.chunks, 0, &mut |c| {
        out.push(c.address.to_string());
        Ok(())
    })
    .unwrap();
    out
}

#[test]
fn a_300_mib_file_round_trips_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let path = tmp.path().join("big");
    let data = write_random(&path, 300 << 20, 300);
    let mut add = storgo(&data_dir);
    add.arg("add").arg(&path);
    let id = last_line(&ok(add));
    let mut cat = storgo(&data_dir);
    cat.args(["cat", &id]);
    let out = run(cat);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == data, "cat of 300 MiB differs");
    let mut stat = storgo(&data_dir);
    stat.args(["stat", "--sha256", &id]);
    let printed = ok(stat);
    let want = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data));
    assert!(
        printed.contains(&format!("sha256: {want}")),
        "stat --sha256 printed {printed:?}"
    );
    let mut verify = storgo(&data_dir);
    verify.arg("verify");
    ok(verify);
}

#[test]
fn a_folder_round_trips_with_modes_and_mtimes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("notes");
    std::fs::create_dir_all(src.join("week1/slides")).unwrap();
    std::fs::create_dir_all(src.join("empty-dir")).unwrap();
    write_random(&src.join("week1/slides/deck.pdf"), CHUNK_MAX + 123, 1);
    write_random(&src.join("week1/readme.txt"), 1000, 2);
    std::fs::write(src.join("empty.txt"), b"").unwrap();
    write_random(&src.join("run.sh"), 10, 3);
    std::fs::set_permissions(src.join("run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let when = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    std::fs::File::options()
        .write(true)
        .open(src.join("week1/readme.txt"))
        .unwrap()
        .set_modified(when)
        .unwrap();

    let data_dir = tmp.path().join("data");
    let mut add = storgo(&data_dir);
    add.args(["add", "-r"]).arg(&src);
    let id = last_line(&ok(add));
    let out = tmp.path().join("out");
    let mut get = storgo(&data_dir);
    get.args(["get", &id, "-o"]).arg(&out);
    ok(get);

    for rel in [
        "week1/slides/deck.pdf",
        "week1/readme.txt",
        "empty.txt",
        "run.sh",
    ] {
        assert_eq!(
            std::fs::read(src.join(rel)).unwrap(),
            std::fs::read(out.join(rel)).unwrap(),
            "{rel}"
        );
    }
    assert!(out.join("empty-dir").is_dir());
    let mode = std::fs::metadata(out.join("run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o750);
    let mtime = std::fs::metadata(out.join("week1/readme.txt"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(mtime, when);

    // A folder is not something `cat` can print; `ls` shows the folder as one item.
    let mut cat = storgo(&data_dir);
    cat.args(["cat", &id]);
    assert!(fails(cat).contains("is a folder"));
    let mut ls = storgo(&data_dir);
    ls.args(["ls", "--json"]);
    let pins: serde_json::Value = serde_json::from_str(&ok(ls)).unwrap();
    assert_eq!(pins.as_array().unwrap().len(), 1);
    assert_eq!(pins[0]["name"], "notes");
    assert_eq!(pins[0]["kind"], "dir");
}

#[test]
fn stdin_adds_like_a_file_and_the_id_is_the_last_stdout_line() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let data = random_bytes(2 * CHUNK_MAX, 9);
    let mut add = storgo(&data_dir);
    add.args(["add", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = add.spawn().unwrap();
    child.stdin.take().unwrap().write_all(&data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let id = last_line(&String::from_utf8_lossy(&out.stdout));
    let mut cat = storgo(&data_dir);
    cat.args(["cat", &id]);
    assert!(run(cat).stdout == data);
    // Listed by a name, not as nameless.
    let mut ls = storgo(&data_dir);
    ls.args(["ls"]);
    let listed = ok(ls);
    assert!(listed.starts_with("ID\tKIND\tSIZE"), "{listed}");
    let line = listed.lines().find(|l| l.starts_with(&id)).expect("listed");
    assert!(line.ends_with("\tstdin"), "{line}");
    assert!(
        !line.contains(&data.len().to_string()),
        "a size people read: {line}"
    );
}
