//! `fetch -o` writes the output while the chunks arrive, in order, and still stores the item.
//!
//! The proof that it streams does not depend on timing: the only provider lacks the second
//! half of the file's chunks, so the fetch can never complete — and yet the output has
//! received exactly the first half, in order, by the time the fetch gives up.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use storgo::content::{ChunkRef, Manifest};
use storgo::files::{self, Output};
use storgo::node::{fetch, FetchOptions, Node};

use crate::common::*;
use crate::nodes::*;

/// An output that records what it was given.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<u8>>>);

impl Write for Recorder {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The chunks of a file item held by `node`, in order.
fn chunks_of(node: &Node, id: &storgo::content::ContentId) -> Vec<ChunkRef> {
    let Manifest::File(f) = files::load_manifest(&node.store, id.root, &id.key).unwrap() else {
        panic!("a file item");
    };
    let mut out = Vec::new();
    files::read::for_each_chunk(&node.store, &f.chunks, 0, &mut |c| {
        out.push(*c);
        Ok(())
    })
    .unwrap();
    out
}

fn block_path(dir: &Path, c: &ChunkRef) -> std::path::PathBuf {
    let hex = c.address.to_hex();
    dir.join("blocks").join(&hex[..2]).join(hex)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_output_has_every_chunk_that_arrived_before_the_fetch_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let a = start_node(&tmp.path().join("a"), vec![]).await;
    let path = tmp.path().join("f");
    let data = write_random(&path, 24 << 20, 11);
    let id = add_and_provide(&a, &path).await;
    let chunks = chunks_of(&a, &id);
    assert!(chunks.len() >= 8, "{} chunks", chunks.len());
    let half = chunks.len() / 2;
    for c in &chunks[half..] {
        std::fs::remove_file(block_path(&tmp.path().join("a"), c)).unwrap();
    }
    let first_half: usize = chunks[..half].iter().map(|c| c.len as usize).sum();

    let c = start_node(&tmp.path().join("c"), vec![addr(&a)]).await;
    let out = Recorder::default();
    let opts = FetchOptions {
        stall_timeout: Duration::from_secs(3),
        ..FetchOptions::default()
    };
    let r = fetch(
        &c.client,
        &c.store,
        &id,
        &opts,
        &|_| {},
        Some(Output::Stream(Box::new(out.clone()))),
    )
    .await;
    assert!(r.is_err(), "half the chunks exist nowhere: {r:?}");
    let written = out.0.lock().unwrap().clone();
    assert_eq!(
        written.len(),
        first_half,
        "the output got every chunk before the first missing one"
    );
    assert!(written == data[..first_half], "in order and intact");
    a.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_fetched_to_a_path_is_written_whole_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let a = start_node(&tmp.path().join("a"), vec![]).await;
    let src = tmp.path().join("course");
    std::fs::create_dir_all(src.join("week1/slides")).unwrap();
    std::fs::create_dir_all(src.join("week2")).unwrap();
    let files = [
        ("week1/notes.txt", 3 << 20),
        ("week1/slides/a.pdf", 9 << 20),
        ("week2/b.bin", 5 << 20),
        ("readme", 1000),
        ("empty", 0),
    ];
    for (i, (name, len)) in files.iter().enumerate() {
        write_random(&src.join(name), *len, 20 + i as u64);
    }
    let store = a.store.clone();
    let added = tokio::task::spawn_blocking(move || {
        let opts = files::AddOptions {
            recursive: true,
            ..Default::default()
        };
        files::add_path(&store, &src, &opts, &|_| {})
    })
    .await
    .unwrap()
    .unwrap();
    let id = added.id;
    a.client.provide(id.root).await.unwrap();
    let src = tmp.path().join("course");
    let c = start_node(&tmp.path().join("c"), vec![addr(&a)]).await;
    let dest = tmp.path().join("fetched");
    let report = fetch(
        &c.client,
        &c.store,
        &id,
        &FetchOptions::default(),
        &|_| {},
        Some(Output::Path(dest.clone())),
    )
    .await
    .expect("fetch");
    assert_eq!(report.chunks_fetched, report.chunks_total);
    for (name, _) in files {
        assert!(
            std::fs::read(src.join(name)).unwrap() == std::fs::read(dest.join(name)).unwrap(),
            "{name} differs"
        );
    }
    // The item is also stored and pinned here, as without -o.
    let st = files::stat(&c.store, &id).unwrap();
    assert_eq!(st.chunks_local, st.chunks);
    assert!(c
        .store
        .pin_of(&id.root)
        .unwrap()
        .is_some_and(|p| !p.partial));
    // A second fetch to the same path refuses, and leaves the first output alone.
    let again = fetch(
        &c.client,
        &c.store,
        &id,
        &FetchOptions::default(),
        &|_| {},
        Some(Output::Path(dest.clone())),
    )
    .await;
    assert!(again.is_err(), "the destination exists");
    assert!(
        std::fs::read(dest.join("readme")).unwrap() == std::fs::read(src.join("readme")).unwrap()
    );
    a.stop().await;
    c.stop().await;
}
