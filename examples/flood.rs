//! The flood benchmark (`just bench-flood`): a real `storgo node` process holds an item; one
//! peer fetches it unloaded, then a second peer fetches it while a third sends chunk requests
//! for blocks that do not exist as fast as the protocol lets it (200 open at once, for the
//! whole fetch and at least `--requests` of them). Prints one line per run:
//!
//! `unloaded_s loaded_s ratio flood_requests flood_per_s busy not_found node_rss_mib`
//!
//! Usage: `flood BIN SIZE_MIB REQUESTS` (the storgo binary, the item's size, the least number
//! of flood requests). Loopback only, no mDNS.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use rand::RngCore;
use storgo::content::{BlockAddress, ContentId};
use storgo::network::chunks::ErrorCode;
use storgo::network::{ChunkRequest, ChunkResponse, NetworkConfig};
use storgo::node::{fetch, FetchOptions, Node};
use storgo::store::{Store, StoreOptions};

fn config(bootstrap: libp2p::Multiaddr) -> NetworkConfig {
    NetworkConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("constant")],
        bootstrap: vec![bootstrap],
        mdns: false,
        republish_interval: None,
        ..NetworkConfig::default()
    }
}

async fn start(dir: &Path, bootstrap: &libp2p::Multiaddr) -> Node {
    let store = Arc::new(Store::open(dir, StoreOptions::default()).expect("open store"));
    let node = Node::start(store, config(bootstrap.clone()))
        .await
        .expect("start node");
    node.client.dial(bootstrap.clone()).await.expect("dial");
    node
}

/// Fetches `id` into a fresh node's store and `out`; returns the seconds it took.
async fn timed_fetch(dir: &Path, bootstrap: &libp2p::Multiaddr, id: &ContentId) -> f64 {
    let node = start(dir, bootstrap).await;
    let started = Instant::now();
    fetch(
        &node.client,
        &node.store,
        id,
        &FetchOptions::default(),
        &|_| {},
        Some(storgo::files::Output::Path(dir.with_extension("out"))),
    )
    .await
    .expect("fetch");
    let secs = started.elapsed().as_secs_f64();
    node.stop().await;
    secs
}

fn peak_rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bin = args
        .get(1)
        .expect("usage: flood BIN SIZE_MIB REQUESTS")
        .clone();
    let size: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100) << 20;
    let least: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("item");
    let mut data = vec![0u8; size];
    rand::thread_rng().fill_bytes(&mut data);
    std::fs::write(&file, &data).expect("write item");
    drop(data);

    let a_dir = tmp.path().join("a");
    let added = Command::new(&bin)
        .args(["--data-dir"])
        .arg(&a_dir)
        .arg("add")
        .arg(&file)
        .output()
        .expect("storgo add");
    let id: ContentId = String::from_utf8_lossy(&added.stdout)
        .lines()
        .last()
        .expect("an ID")
        .parse()
        .expect("a content ID");
    let mut node_a = Command::new(&bin)
        .args(["--data-dir"])
        .arg(&a_dir)
        .args(["node", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("storgo node");
    let mut lines = std::io::BufReader::new(node_a.stdout.take().expect("stdout")).lines();
    let addr: libp2p::Multiaddr = loop {
        let line = lines.next().expect("node output").expect("line");
        if let Some(a) = line.strip_prefix("listening on ") {
            break a.parse().expect("multiaddr");
        }
    };
    std::thread::spawn(move || for _ in lines {});

    let unloaded = timed_fetch(&tmp.path().join("b1"), &addr, &id).await;

    let flooder = start(&tmp.path().join("f"), &addr).await;
    let target = {
        let info = flooder.client.peers().await.expect("peers");
        info.first()
            .expect("connected to the node")
            .peer_id
            .parse()
            .expect("peer id")
    };
    let (sent, busy, not_found) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let fetched = Arc::new(AtomicBool::new(false));
    let flood = {
        let (c, sent, busy, not_found, fetched) = (
            flooder.client.clone(),
            Arc::clone(&sent),
            Arc::clone(&busy),
            Arc::clone(&not_found),
            Arc::clone(&fetched),
        );
        tokio::spawn(async move {
            let started = Instant::now();
            let asks = stream::iter(0u64..)
                .take_while(|i| {
                    let go = *i < least || !fetched.load(Ordering::Relaxed);
                    async move { go }
                })
                .map(|i| {
                    let c = c.clone();
                    let mut d = [0xffu8; 32];
                    d[..8].copy_from_slice(&i.to_be_bytes());
                    async move {
                        c.request(target, ChunkRequest::GetChunk(BlockAddress::from_digest(d)))
                            .await
                    }
                })
                .buffer_unordered(200);
            futures::pin_mut!(asks);
            while let Some(r) = asks.next().await {
                sent.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(ChunkResponse::Error {
                        code: ErrorCode::Busy,
                        ..
                    }) => busy.fetch_add(1, Ordering::Relaxed),
                    Ok(ChunkResponse::NotFound) => not_found.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
            }
            started.elapsed().as_secs_f64()
        })
    };
    // Let the flood reach full speed before the measured fetch starts.
    while sent.load(Ordering::Relaxed) < 500 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let loaded = timed_fetch(&tmp.path().join("b2"), &addr, &id).await;
    fetched.store(true, Ordering::Relaxed);
    let flood_secs = flood.await.expect("flood task");
    let rss = peak_rss_mib(node_a.id());
    flooder.stop().await;
    let _ = Command::new("kill")
        .args(["-TERM", &node_a.id().to_string()])
        .status();
    let _ = node_a.wait();
    let n = sent.load(Ordering::Relaxed);
    println!(
        "{unloaded:.3} {loaded:.3} {:.2} {n} {:.0} {} {} {rss}",
        unloaded / loaded,
        n as f64 / flood_secs,
        busy.load(Ordering::Relaxed),
        not_found.load(Ordering::Relaxed),
    );
}
