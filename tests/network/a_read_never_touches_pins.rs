//! A read through the node (`cat`, the gateway) pins nothing: its store session is its lease.
//! Before, a read shared the user's pin row and, when it ended, deleted a pin made while it
//! streamed, undid an unpin made meanwhile, and made the second of two overlapping reads fail.
//!
//! Each read writes into a gated output: its first write says it has started and then waits
//! for the test to open the gate, so the read ends exactly when the test decides.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use storgo::content::ContentId;
use storgo::files::Output;
use storgo::node::{begin_session, fetch, fetch_in, FetchOptions, Node, NodeError};
use storgo::store::{Holding, PinRecord, SessionKind};
use tokio::sync::watch;

use crate::nodes::*;

const SIZE: usize = 3 << 20;

/// A writer that reports its first write and then holds every write until the gate opens.
struct GatedWriter {
    started: watch::Sender<bool>,
    gate: Arc<(Mutex<bool>, Condvar)>,
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl Write for GatedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.started.send_replace(true);
        let (open, cv) = &*self.gate;
        let mut open = open.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
        self.bytes.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Gate {
    started: watch::Receiver<bool>,
    gate: Arc<(Mutex<bool>, Condvar)>,
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl Gate {
    async fn started(&mut self) {
        tokio::time::timeout(Duration::from_secs(60), self.started.wait_for(|s| *s))
            .await
            .expect("the read to start writing")
            .expect("writer alive");
    }
    fn open(&self) {
        *self.gate.0.lock().unwrap() = true;
        self.gate.1.notify_all();
    }
    fn bytes(&self) -> Vec<u8> {
        self.bytes.lock().unwrap().clone()
    }
}

fn gated_output() -> (Output, Gate) {
    let (tx, rx) = watch::channel(false);
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let bytes = Arc::new(Mutex::new(Vec::new()));
    let w = GatedWriter {
        started: tx,
        gate: Arc::clone(&gate),
        bytes: Arc::clone(&bytes),
    };
    let g = Gate {
        started: rx,
        gate,
        bytes,
    };
    (Output::Stream(Box::new(w)), g)
}

/// A read as `cat` through the node does it: a Read session and a fetch that does not pin.
fn read_through(
    node: &Node,
    id: ContentId,
    output: Output,
) -> tokio::task::JoinHandle<Result<(), NodeError>> {
    let (client, store) = (node.client.clone(), Arc::clone(&node.store));
    tokio::spawn(async move {
        let session = begin_session(&store, SessionKind::Read, id.to_string()).await?;
        let opts = FetchOptions {
            pin: false,
            ..FetchOptions::default()
        };
        fetch_in(&client, &store, &session, &id, &opts, &|_| {}, Some(output)).await?;
        Ok(())
    })
}

async fn pin(node: &Node, id: &ContentId) {
    fetch(
        &node.client,
        &node.store,
        id,
        &FetchOptions::default(),
        &|_| {},
        None,
    )
    .await
    .expect("the pin's fetch");
}

async fn two_nodes(tmp: &std::path::Path, seed: u64) -> (Node, Node, ContentId, Vec<u8>) {
    let server = start_node(&tmp.join("server"), vec![]).await;
    let (id, data) = add_random(&server, tmp, "item", SIZE, seed).await;
    let reader = start_node(&tmp.join("reader"), vec![addr(&server)]).await;
    (server, reader, id, data)
}

/// GC on the reader frees everything once no read holds the item and nothing pins it.
fn gc_frees_all(node: &Node) {
    node.store.gc().expect("gc");
    assert!(
        chunk_files(node.store.dir()).is_empty(),
        "blocks of an item nobody pins were kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_made_during_a_read_survives_the_read() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, reader, id, data) = two_nodes(tmp.path(), 41).await;
    let (out, mut gate) = gated_output();
    let read = read_through(&reader, id, out);
    gate.started().await;
    assert!(
        reader.store.pins().unwrap().is_empty(),
        "a read wrote a pin"
    );
    pin(&reader, &id).await;
    gate.open();
    read.await.unwrap().expect("the read");
    assert_eq!(gate.bytes(), data);
    let p = reader
        .store
        .pin_of(&id.root)
        .unwrap()
        .expect("the pin is kept");
    assert!(!p.partial);
    reader.store.gc().unwrap();
    assert!(reader.store.verify().unwrap().is_clean());
    reader.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpin_during_a_read_is_not_undone() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, reader, id, data) = two_nodes(tmp.path(), 42).await;
    // A partial user pin, as a cancelled `pin` leaves it.
    let session = reader.store.session(SessionKind::Fetch, "pin").unwrap();
    session
        .commit(&Holding::Pin(PinRecord {
            id: id.to_string(),
            name: "item".into(),
            kind: "file".into(),
            size: SIZE as u64,
            pinned_at: 1,
            partial: true,
            for_reading: false,
            replicas: None,
            internal: false,
            durability: None,
            stripe_map: None,
        }))
        .unwrap();
    drop(session);
    let (out, mut gate) = gated_output();
    let read = read_through(&reader, id, out);
    gate.started().await;
    reader.store.unpin(&id).expect("unpin");
    gate.open();
    read.await.unwrap().expect("the read");
    assert_eq!(gate.bytes(), data);
    assert!(
        reader.store.pin_of(&id.root).unwrap().is_none(),
        "the read undid the unpin"
    );
    gc_frees_all(&reader);
    reader.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_overlapping_reads_both_succeed_and_pin_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, reader, id, data) = two_nodes(tmp.path(), 43).await;
    let (out1, mut gate1) = gated_output();
    let first = read_through(&reader, id, out1);
    gate1.started().await;
    let (out2, mut gate2) = gated_output();
    let second = read_through(&reader, id, out2);
    gate2.started().await;
    gate1.open();
    first.await.unwrap().expect("the first read");
    assert!(reader.store.pins().unwrap().is_empty());
    gate2.open();
    second.await.unwrap().expect("the second read");
    assert_eq!((gate1.bytes(), gate2.bytes()), (data.clone(), data));
    assert!(reader.store.pins().unwrap().is_empty());
    gc_frees_all(&reader);
    reader.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_a_read_keeps_the_users_pin() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, reader, id, _) = two_nodes(tmp.path(), 44).await;
    let (out, mut gate) = gated_output();
    let read = read_through(&reader, id, out);
    gate.started().await;
    pin(&reader, &id).await;
    // The node stops with the read still streaming; the read's writer is let go after.
    let store = Arc::clone(&reader.store);
    reader.stop().await;
    read.abort();
    gate.open();
    let _ = read.await;
    let reader = Node::start(Arc::clone(&store), loopback_config(vec![addr(&server)]))
        .await
        .expect("restart");
    let pins = store.pins().unwrap();
    assert_eq!(pins.len(), 1, "the user's pin is kept across the restart");
    assert!(!pins[0].partial);
    store.gc().unwrap();
    assert!(store.verify().unwrap().is_clean());
    reader.stop().await;
    server.stop().await;
}
