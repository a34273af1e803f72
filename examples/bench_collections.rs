//! `just bench-collections`: the three figures of the shared-collections issue, on real
//! in-process nodes on 127.0.0.1 (no mDNS; traffic stays on this machine).
//!
//! 1. Push: a publisher and a follower connected directly (as on a LAN). `--versions`
//!    publishes (default 20); each is timed from the start of `publish` to the follower's
//!    event that it took the version (record pushed over gossipsub, version fetched, checked,
//!    stored, indexed).
//! 2. DHT resolution: `--nodes` nodes (default 30), each joining through a random earlier one;
//!    node 0 publishes a collection; every other node resolves its newest record through the
//!    DHT (`find_latest`: a `GET_VALUE` walk, records checked, three valid records end it),
//!    `--rounds` times (default 3).
//! 3. Search: `--collections` collections (default 100) of `--items` entries each (default
//!    100) indexed, then `--queries` (default 1000) one- and two-word queries and tag filters
//!    over them, one at a time.
//!
//! Prints each figure's median, p95 and max, and one JSON line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use storgo::collections::search::{Indexed, SearchIndex};
use storgo::collections::Entry;
use storgo::content::{BlockAddress, BlockKey, ContentId};
use storgo::network::NetworkConfig;
use storgo::node::{Node, ReplicationConfig};
use storgo::store::{Store, StoreOptions};

struct Args {
    versions: usize,
    nodes: usize,
    rounds: usize,
    collections: usize,
    items: usize,
    queries: usize,
}

fn args() -> Args {
    let mut a = Args {
        versions: 20,
        nodes: 30,
        rounds: 3,
        collections: 100,
        items: 100,
        queries: 1000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let Some(v) = it.next().and_then(|v| v.parse::<usize>().ok()) else {
            eprintln!("usage: bench_collections [--versions N] [--nodes N] [--rounds N] [--collections N] [--items N] [--queries N]");
            std::process::exit(2);
        };
        match flag.as_str() {
            "--versions" => a.versions = v,
            "--nodes" => a.nodes = v,
            "--rounds" => a.rounds = v,
            "--collections" => a.collections = v,
            "--items" => a.items = v,
            "--queries" => a.queries = v,
            _ => {
                eprintln!("unknown flag {flag}");
                std::process::exit(2);
            }
        }
    }
    a
}

fn config(bootstrap: Vec<libp2p::Multiaddr>) -> NetworkConfig {
    NetworkConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")],
        bootstrap,
        mdns: false,
        ..NetworkConfig::default()
    }
}

async fn start(dir: &std::path::Path, bootstrap: Vec<libp2p::Multiaddr>) -> Node {
    let store = Arc::new(Store::open(dir, StoreOptions::default()).expect("open store"));
    let replication = ReplicationConfig {
        repair_interval: None,
        ..ReplicationConfig::default()
    };
    Node::start_with(store, config(bootstrap), replication)
        .await
        .expect("start node")
}

fn addr(n: &Node) -> libp2p::Multiaddr {
    n.client.listen_addrs().into_iter().next().expect("address")
}

/// Median, p95 and max of milliseconds.
fn spread(mut ms: Vec<f64>) -> (f64, f64, f64) {
    if ms.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.95), *ms.last().unwrap_or(&0.0))
}

fn entry(i: usize, rng: &mut impl Rng) -> Entry {
    const WORDS: &[&str] = &[
        "lecture",
        "notes",
        "assignment",
        "solution",
        "exam",
        "slides",
        "lab",
        "reading",
        "sorting",
        "graphs",
        "trees",
        "hashing",
        "proofs",
        "recursion",
        "networks",
        "kernels",
        "matrices",
        "probability",
        "compilers",
        "databases",
        "security",
        "crypto",
        "physics",
        "chemistry",
        "biology",
        "history",
        "essay",
        "project",
        "quiz",
        "tutorial",
    ];
    let pick = |rng: &mut dyn rand::RngCore| WORDS[rng.gen_range(0..WORDS.len())];
    let id = ContentId::new(
        BlockAddress::of(&i.to_le_bytes()),
        BlockKey::from_bytes([7; 32]),
    );
    Entry {
        id: id.to_string(),
        title: format!("{} {} {} {i}", pick(rng), pick(rng), pick(rng)),
        tags: vec![pick(rng).to_owned(), format!("week{}", i % 14)],
        note: format!("{} {} and {}", pick(rng), pick(rng), pick(rng)),
        added: 1_700_000_000 + i as u64,
    }
}

async fn push(a: &Args, dir: &std::path::Path) -> Vec<f64> {
    let publisher = start(&dir.join("push-p"), vec![]).await;
    let follower = start(&dir.join("push-f"), vec![addr(&publisher)]).await;
    let id = publisher
        .collections
        .create("bench", false)
        .await
        .expect("create");
    let mut news = follower.collections.subscribe();
    follower
        .collections
        .follow(&id, false)
        .await
        .expect("follow");
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut ms = Vec::new();
    for v in 0..a.versions {
        publisher
            .collections
            .add("bench", entry(v, &mut rng))
            .await
            .expect("add");
        let t = Instant::now();
        let p = publisher
            .collections
            .publish("bench")
            .await
            .expect("publish");
        loop {
            let e = tokio::time::timeout(Duration::from_secs(30), news.recv())
                .await
                .expect("the follower takes the version within 30 s")
                .expect("events");
            if e.seq == p.seq {
                break;
            }
        }
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    publisher.stop().await;
    follower.stop().await;
    ms
}

async fn resolve(a: &Args, dir: &std::path::Path) -> (Vec<f64>, Vec<f64>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..a.nodes {
        let boot = if nodes.is_empty() {
            vec![]
        } else {
            vec![addr(&nodes[rng.gen_range(0..nodes.len())])]
        };
        nodes.push(start(&dir.join(format!("dht-{i}")), boot).await);
    }
    // Let the routing tables fill: every node walks the DHT once.
    for n in &nodes {
        let _ = n.client.closest_peers(BlockAddress::of(b"warm-up")).await;
    }
    let id = nodes[0]
        .collections
        .create("course", false)
        .await
        .expect("create");
    nodes[0]
        .collections
        .add("course", entry(0, &mut rng))
        .await
        .expect("add");
    let p = nodes[0]
        .collections
        .publish("course")
        .await
        .expect("publish");
    assert!(p.in_dht, "another node took the record");
    // With k = 20 of 30 nodes, most nodes hold a copy of the record themselves; a lookup
    // still waits for three valid records, so at least two come from other peers. The nodes
    // that hold none are reported apart: theirs is the lookup a newcomer makes.
    let key = storgo::collections::record::dht_key(&id.key);
    let (mut holding, mut not_holding) = (Vec::new(), Vec::new());
    for _ in 0..a.rounds {
        for n in &nodes[1..] {
            let dht = storgo::network::DhtStore::new(n.store.clone(), n.client.peer_id());
            let local = libp2p::kad::store::RecordStore::get(&dht, &key).is_some();
            let t = Instant::now();
            let latest = n.collections.find_latest(&id).await.expect("resolve");
            let ms = t.elapsed().as_secs_f64() * 1e3;
            assert_eq!(
                latest.map(|l| l.seq),
                Some(1),
                "resolved the newest version"
            );
            if local {
                holding.push(ms)
            } else {
                not_holding.push(ms)
            }
        }
    }
    for n in nodes {
        n.stop().await;
    }
    (holding, not_holding)
}

fn search(a: &Args) -> (Vec<f64>, usize) {
    let index = SearchIndex::new().expect("index");
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut n = 0;
    for c in 0..a.collections {
        let entries: Vec<Entry> = (0..a.items)
            .map(|_| {
                n += 1;
                entry(n, &mut rng)
            })
            .collect();
        let key = format!("{c:064x}");
        index
            .replace(&Indexed {
                key: &key,
                collection: &key,
                name: &format!("course {c}"),
                seq: 1,
                entries: &entries,
            })
            .expect("index a collection");
    }
    let mut ms = Vec::new();
    let mut found = 0;
    for q in 0..a.queries {
        let e = entry(q, &mut rng);
        let words: Vec<&str> = e.title.split(' ').take(1 + q % 2).collect();
        let tag = (q % 3 == 0).then(|| e.tags[0].clone());
        let t = Instant::now();
        let hits = index
            .search(&words.join(" "), tag.as_deref(), 20)
            .expect("search");
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        found += hits.len();
    }
    (ms, found)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let tmp = tempfile::tempdir().expect("temp dir");
    let p = spread(push(&a, tmp.path()).await);
    println!(
        "push (publish → follower took it), {} versions: median {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        a.versions, p.0, p.1, p.2
    );
    let (holding, not_holding) = resolve(&a, tmp.path()).await;
    let (nh, nn) = (holding.len(), not_holding.len());
    let all = spread(holding.iter().chain(&not_holding).copied().collect());
    let r = spread(not_holding);
    println!(
        "DHT resolution on {} nodes, {} lookups: median {:.1} ms, p95 {:.1} ms, max {:.1} ms; \
         the {nn} from nodes holding no copy: median {:.1} ms, p95 {:.1} ms, max {:.1} ms ({nh} held one)",
        a.nodes,
        nh + nn,
        all.0,
        all.1,
        all.2,
        r.0,
        r.1,
        r.2
    );
    let (ms, found) = search(&a);
    let s = spread(ms);
    println!(
        "search over {} entries in {} collections, {} queries ({found} hits): median {:.3} ms, p95 {:.3} ms, max {:.3} ms",
        a.collections * a.items,
        a.collections,
        a.queries,
        s.0,
        s.1,
        s.2
    );
    println!(
        "{{\"push_ms\":[{:.1},{:.1},{:.1}],\"resolve_ms\":[{:.1},{:.1},{:.1}],\"resolve_no_copy_ms\":[{:.1},{:.1},{:.1}],\"search_ms\":[{:.3},{:.3},{:.3}]}}",
        p.0, p.1, p.2, all.0, all.1, all.2, r.0, r.1, r.2, s.0, s.1, s.2
    );
}
