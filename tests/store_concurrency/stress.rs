//! The random-operations engine of the stress tests: several clients send random add, fetch,
//! pin, unpin, gc, verify and cat requests to one node's API at once, each keeping a model of
//! what it owns, and check what the node says against it as they go.
//!
//! Each client owns the items it adds and the source items it fetches, so that its model is
//! exact; the items' contents share long runs (a pool of segments), so the clients' items
//! share blocks and one client's unpin + gc races another's add or fetch of the same blocks.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use storgo::api::client::ApiClient;
use storgo::api::jobs::{Job, JobState};
use storgo::api::{AddRequest, AddResponse};
use storgo::store::{GcReport, PinRecord, Store, StoreOptions, VerifyReport};

/// The seed: `STORGO_STRESS_SEED` or a fresh one, printed so that a failure can be replayed.
pub fn seed() -> u64 {
    let seed = std::env::var("STORGO_STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("stress seed: {seed} (replay with STORGO_STRESS_SEED={seed})");
    seed
}

/// How long the clients run: `STORGO_STRESS_SECS` or `default`.
pub fn duration(default: u64) -> Duration {
    Duration::from_secs(
        std::env::var("STORGO_STRESS_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default),
    )
}

/// Runs of bytes that items are built from, so that different items share blocks.
pub struct Corpus {
    segments: Vec<Vec<u8>>,
}

impl Corpus {
    pub fn new(seed: u64) -> Corpus {
        let mut rng = StdRng::seed_from_u64(seed);
        let segments = (0..8)
            .map(|_| {
                let mut s = vec![0u8; 2 << 20];
                rng.fill_bytes(&mut s);
                s
            })
            .collect();
        Corpus { segments }
    }

    /// A small unique file, or one to three shared segments with a unique tail.
    pub fn item(&self, rng: &mut StdRng) -> Vec<u8> {
        if rng.gen_bool(0.35) {
            let mut v = vec![0u8; rng.gen_range(1..64 << 10)];
            rng.fill_bytes(&mut v);
            return v;
        }
        let mut v = Vec::new();
        for _ in 0..rng.gen_range(1..=3) {
            v.extend_from_slice(&self.segments[rng.gen_range(0..self.segments.len())]);
        }
        let mut tail = vec![0u8; rng.gen_range(0..256 << 10)];
        rng.fill_bytes(&mut tail);
        v.extend_from_slice(&tail);
        v
    }
}

/// An item a client owns.
#[derive(Clone)]
pub struct Owned {
    pub data: Arc<Vec<u8>>,
    pub pinned: bool,
    /// Fetched from the source node (so it can be fetched again after an unpin and a gc).
    pub from_source: bool,
}

/// What the clients did, and what they believe the node holds.
#[derive(Default)]
pub struct Outcome {
    /// Every source item (a fetch a kill interrupted may have pinned one no client had yet).
    pub sources: HashMap<String, Arc<Vec<u8>>>,
    pub items: HashMap<String, Owned>,
    /// Items an operation was under way on when the clients were stopped (a kill): their
    /// state is whatever the node had committed.
    pub in_flight: HashSet<String>,
    /// Adds under way when the clients were stopped, by file name (they have no ID yet).
    pub in_flight_adds: HashMap<String, Arc<Vec<u8>>>,
    pub ops: HashMap<&'static str, u64>,
}

pub struct Setup {
    pub node_dir: PathBuf,
    pub files_dir: PathBuf,
    /// Items held by the source node, by content ID.
    pub sources: Vec<(String, Arc<Vec<u8>>)>,
    pub clients: usize,
    pub seed: u64,
    pub duration: Duration,
    /// Set from outside to stop the clients; failures after it are expected (a kill).
    pub stop: Arc<AtomicBool>,
    /// Counts the operations completed, for a test that waits for work to be under way.
    pub ops_done: Arc<tokio::sync::watch::Sender<u64>>,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Add,
    Fetch,
    Pin,
    Unpin,
    Gc,
    Verify,
    Cat,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Fetch => "fetch",
            Op::Pin => "pin",
            Op::Unpin => "unpin",
            Op::Gc => "gc",
            Op::Verify => "verify",
            Op::Cat => "cat",
        }
    }

    fn pick(rng: &mut StdRng) -> Op {
        match rng.gen_range(0..100) {
            0..25 => Op::Add,
            25..45 => Op::Fetch,
            45..52 => Op::Pin,
            52..67 => Op::Unpin,
            67..82 => Op::Gc,
            82..90 => Op::Verify,
            _ => Op::Cat,
        }
    }
}

/// Adds `n` items to the source node through its API; they share segments with what the
/// clients will add.
pub async fn add_sources(
    node_dir: &Path,
    files_dir: &Path,
    seed: u64,
    n: usize,
) -> Vec<(String, Arc<Vec<u8>>)> {
    let api = ApiClient::discover(node_dir)
        .await
        .expect("source node API");
    let corpus = Corpus::new(seed);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut out = Vec::new();
    for i in 0..n {
        let data = Arc::new(corpus.item(&mut rng));
        let path = files_dir.join(format!("source-{i}"));
        std::fs::write(&path, &*data).expect("write source");
        let req = AddRequest {
            path,
            recursive: false,
            pin: true,
            replicas: None,
            durability: None,
            compress: true,
        };
        let r: AddResponse = api.post("/add", &req).await.expect("add a source item");
        out.push((r.id, data));
    }
    out
}

/// Starts a node with the secret every node of these tests shares, so that items added on
/// the node under test and items fetched from the source node share blocks.
pub fn start_node(dir: &Path, bootstrap: Option<&str>) -> crate::procs::NodeProc {
    let mut args = vec!["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"];
    if let Some(b) = bootstrap {
        args.extend(["--bootstrap", b]);
    }
    let mut cmd = crate::common::storgo(dir);
    cmd.env("STORGO_CONVERGENCE_SECRET", crate::common::SHARED_SECRET);
    crate::procs::NodeProc::start_with(cmd, dir, &args)
}

/// Runs the clients until the duration passes or `stop` is set; merges their models.
pub async fn run_clients(setup: &Setup) -> Outcome {
    let corpus = Arc::new(Corpus::new(setup.seed));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..setup.clients {
        let api = ApiClient::discover(&setup.node_dir)
            .await
            .expect("the node's API answers");
        let mine: Vec<(String, Arc<Vec<u8>>)> = setup
            .sources
            .iter()
            .enumerate()
            .filter(|(i, _)| i % setup.clients == c)
            .map(|(_, s)| s.clone())
            .collect();
        let client = ClientLoop {
            c,
            api,
            rng: StdRng::seed_from_u64(setup.seed.wrapping_add(c as u64 + 1)),
            corpus: Arc::clone(&corpus),
            files_dir: setup.files_dir.clone(),
            node_log: setup.node_dir.with_extension("log"),
            sources: mine,
            stop: Arc::clone(&setup.stop),
            ops_done: Arc::clone(&setup.ops_done),
            seed: setup.seed,
            outcome: Outcome::default(),
            made: 0,
            current_add: None,
        };
        let deadline = Instant::now() + setup.duration;
        tasks.spawn(client.run(deadline));
    }
    let mut all = Outcome {
        sources: setup.sources.iter().cloned().collect(),
        ..Outcome::default()
    };
    while let Some(done) = tasks.join_next().await {
        let o = done.expect("a client panicked (see its message above)");
        all.items.extend(o.items);
        all.in_flight.extend(o.in_flight);
        all.in_flight_adds.extend(o.in_flight_adds);
        for (k, v) in o.ops {
            *all.ops.entry(k).or_default() += v;
        }
    }
    all
}

struct ClientLoop {
    c: usize,
    api: ApiClient,
    rng: StdRng,
    corpus: Arc<Corpus>,
    files_dir: PathBuf,
    /// The node's log, whose end a failure shows.
    node_log: PathBuf,
    sources: Vec<(String, Arc<Vec<u8>>)>,
    stop: Arc<AtomicBool>,
    ops_done: Arc<tokio::sync::watch::Sender<u64>>,
    seed: u64,
    outcome: Outcome,
    made: u64,
    /// The add under way: its file name and bytes.
    current_add: Option<(String, Arc<Vec<u8>>)>,
}

/// Items a client keeps pinned at most: past it an add becomes an unpin, so that a long run
/// keeps the model's memory and the store's disk bounded.
const MAX_PINNED: usize = 24;

/// Each request may take at most this long; a hang is a failure.
const OP_TIMEOUT: Duration = Duration::from_secs(90);

impl ClientLoop {
    async fn run(mut self, deadline: Instant) -> Outcome {
        while Instant::now() < deadline && !self.stop.load(Ordering::Acquire) {
            let mut op = Op::pick(&mut self.rng);
            let pinned = self.outcome.items.values().filter(|o| o.pinned).count();
            if matches!(op, Op::Add) && pinned > MAX_PINNED {
                op = Op::Unpin;
            }
            let target = self.target(op);
            if matches!(op, Op::Pin | Op::Unpin | Op::Cat | Op::Fetch) && target.is_none() {
                continue;
            }
            let result = tokio::time::timeout(OP_TIMEOUT, self.apply(op, target.clone())).await;
            let result = match result {
                Ok(r) => r,
                Err(_) => Err(format!("{} timed out after {OP_TIMEOUT:?}", op.name())),
            };
            if let Err(e) = result {
                if self.stop.load(Ordering::Acquire) {
                    // Stopped by a kill while this was under way.
                    if let Some(t) = target {
                        self.outcome.in_flight.insert(t);
                    }
                    if let (Op::Add, Some(add)) = (op, self.current_add.take()) {
                        self.outcome.in_flight_adds.insert(add.0, add.1);
                    }
                    break;
                }
                let log = std::fs::read_to_string(&self.node_log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                panic!(
                    "client {} (seed {}): {} {:?} failed: {e}\nthe node's log ends:\n{}",
                    self.c,
                    self.seed,
                    op.name(),
                    target,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            *self.outcome.ops.entry(op.name()).or_default() += 1;
            self.ops_done.send_modify(|n| *n += 1);
        }
        self.outcome
    }

    fn target(&mut self, op: Op) -> Option<String> {
        let pick = |rng: &mut StdRng, v: Vec<String>| {
            (!v.is_empty()).then(|| v[rng.gen_range(0..v.len())].clone())
        };
        let items = &self.outcome.items;
        match op {
            Op::Fetch => {
                let v = self
                    .sources
                    .iter()
                    .filter(|(id, _)| !items.get(id).is_some_and(|o| o.pinned))
                    .map(|(id, _)| id.clone())
                    .collect();
                pick(&mut self.rng, v)
            }
            Op::Pin => {
                let v = items
                    .iter()
                    .filter(|(_, o)| o.from_source && !o.pinned)
                    .map(|(id, _)| id.clone())
                    .collect();
                pick(&mut self.rng, v)
            }
            Op::Unpin | Op::Cat => {
                let v = items
                    .iter()
                    .filter(|(_, o)| o.pinned)
                    .map(|(id, _)| id.clone())
                    .collect();
                pick(&mut self.rng, v)
            }
            _ => None,
        }
    }

    async fn apply(&mut self, op: Op, target: Option<String>) -> Result<(), String> {
        let e = |e: storgo::api::client::ApiClientError| e.to_string();
        match op {
            Op::Add => {
                let data = Arc::new(self.corpus.item(&mut self.rng));
                self.made += 1;
                let name = format!("c{}-{}", self.c, self.made);
                let path = self.files_dir.join(&name);
                self.current_add = Some((name, Arc::clone(&data)));
                std::fs::write(&path, &*data).map_err(|e| e.to_string())?;
                let req = AddRequest {
                    path: path.clone(),
                    recursive: false,
                    pin: true,
                    replicas: None,
                    durability: None,
                    compress: true,
                };
                let r: AddResponse = self.api.post("/add", &req).await.map_err(e)?;
                let _ = std::fs::remove_file(&path);
                self.outcome.items.insert(
                    r.id.clone(),
                    Owned {
                        data,
                        pinned: true,
                        from_source: false,
                    },
                );
                self.check_cat(&r.id).await
            }
            Op::Fetch => {
                let id = target.unwrap_or_default();
                let data = self
                    .sources
                    .iter()
                    .find(|(s, _)| *s == id)
                    .map(|(_, d)| Arc::clone(d))
                    .unwrap_or_default();
                let job: Job = self
                    .api
                    .post(&format!("/fetch/{id}?pin=true"), &())
                    .await
                    .map_err(e)?;
                let last = self.api.follow_job(job.job, |_| {}).await.map_err(e)?;
                if last.state != JobState::Done {
                    return Err(format!(
                        "fetch ended {:?}: {:?}",
                        last.state,
                        last.error.map(|e| e.detail)
                    ));
                }
                self.outcome.items.insert(
                    id.clone(),
                    Owned {
                        data,
                        pinned: true,
                        from_source: true,
                    },
                );
                self.check_cat(&id).await
            }
            Op::Pin => {
                let id = target.unwrap_or_default();
                let _: PinRecord = self.api.post(&format!("/pin/{id}"), &()).await.map_err(e)?;
                if let Some(o) = self.outcome.items.get_mut(&id) {
                    o.pinned = true;
                }
                self.check_cat(&id).await
            }
            Op::Unpin => {
                let id = target.unwrap_or_default();
                let _: PinRecord = self
                    .api
                    .post(&format!("/unpin/{id}"), &())
                    .await
                    .map_err(e)?;
                match self.outcome.items.get(&id) {
                    // An unpinned item of this client's own adds has no other source: forget it.
                    Some(o) if !o.from_source => {
                        self.outcome.items.remove(&id);
                    }
                    _ => {
                        if let Some(o) = self.outcome.items.get_mut(&id) {
                            o.pinned = false;
                        }
                    }
                }
                Ok(())
            }
            Op::Gc => {
                let r: GcReport = self.api.post("/gc", &()).await.map_err(e)?;
                if !r.unwalkable_items.is_empty() {
                    return Err(format!(
                        "gc could not walk pinned items: {:?}",
                        r.unwalkable_items
                    ));
                }
                Ok(())
            }
            Op::Verify => {
                let r: VerifyReport = self.api.post("/verify", &()).await.map_err(e)?;
                if !r.is_clean() {
                    return Err(format!(
                        "verify: corrupt {:?}, missing {:?}, damaged {:?}",
                        r.corrupt, r.missing, r.damaged_items
                    ));
                }
                Ok(())
            }
            Op::Cat => self.check_cat(&target.unwrap_or_default()).await,
        }
    }

    /// Reads a pinned item back through the node and compares it with what was added.
    async fn check_cat(&self, id: &str) -> Result<(), String> {
        let Some(o) = self.outcome.items.get(id) else {
            return Ok(());
        };
        let got = cat(&self.api, id).await?;
        if got != *o.data {
            return Err(format!(
                "cat {id}: {} bytes, not the {} added",
                got.len(),
                o.data.len()
            ));
        }
        Ok(())
    }
}

pub async fn cat(api: &ApiClient, id: &str) -> Result<Vec<u8>, String> {
    let mut got = Vec::new();
    api.stream(reqwest::Method::GET, &format!("/cat/{id}"), |b| {
        got.extend_from_slice(b);
        Ok(())
    })
    .await
    .map_err(|e| format!("cat {id}: {e}"))?;
    Ok(got)
}

/// The checks on a quiet store, through the node: every pin the node lists is of an item the
/// clients added or fetched (by ID, or by file name for adds a kill interrupted) and reads
/// back byte for byte from the node's own blocks, and verify is clean.
pub async fn check_through_node(node_dir: &Path, outcome: &Outcome) -> Vec<PinRecord> {
    let known: HashMap<&String, &Arc<Vec<u8>>> = outcome
        .sources
        .iter()
        .chain(outcome.items.iter().map(|(id, o)| (id, &o.data)))
        .collect();
    let by_name = &outcome.in_flight_adds;
    let api = ApiClient::discover(node_dir).await.expect("node API");
    let verify: VerifyReport = api.post("/verify", &()).await.expect("verify");
    assert!(verify.is_clean(), "verify after the run: {verify:?}");
    let pins: Vec<PinRecord> = api.get("/ls").await.expect("ls");
    for p in &pins {
        if p.partial {
            // A fetch a kill interrupted: kept for resuming, not whole yet.
            continue;
        }
        let st: storgo::files::ItemStat = api.get(&format!("/stat/{}", p.id)).await.expect("stat");
        assert_eq!(st.chunks_local, st.chunks, "{} pinned but not whole", p.id);
        let data = known
            .get(&p.id)
            .copied()
            .or_else(|| by_name.get(&p.name))
            .unwrap_or_else(|| {
                panic!(
                    "pin {} ({}) is of no item a client added or fetched",
                    p.id, p.name
                )
            });
        assert!(
            cat(&api, &p.id).await.expect("cat") == **data,
            "{} reads back other bytes",
            p.id
        );
    }
    pins
}

/// The bytes and the number of blocks on disk: block files in `blocks/`, plus the packed
/// blocks the index names, each checked to lie inside a pack file that exists.
fn held_on_disk(store: &Store, node_dir: &Path) -> (u64, usize) {
    let files: Vec<_> = crate::common::block_files(node_dir)
        .into_iter()
        .filter(|p| !p.starts_with(node_dir.join("packs")))
        .collect();
    let mut bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    let packed = store.packed_blocks().expect("packed blocks");
    for (a, at) in &packed {
        let pack = node_dir
            .join("packs")
            .join(format!("{:016x}.pack", at.pack));
        let len = std::fs::metadata(&pack)
            .unwrap_or_else(|e| panic!("pack of {a}: {}: {e}", pack.display()))
            .len();
        assert!(
            at.offset + u64::from(at.len) <= len,
            "{a} lies inside its pack"
        );
        bytes += u64::from(at.len);
    }
    (bytes, files.len() + packed.len())
}

/// The checks on the stopped node's data dir: the byte count is the sum of the block files,
/// and after two GCs nothing is left but the blocks the pins reach.
pub fn check_store_at_rest(node_dir: &Path) {
    let store = Store::open(node_dir, StoreOptions::default()).expect("reopen the store");
    let (on_disk, _) = held_on_disk(&store, node_dir);
    let stats = store.stats().expect("stats");
    // Unindexed files a kill left are not counted until `verify` adopts or `gc` removes them.
    store.gc().expect("gc 1");
    store.gc().expect("gc 2");
    let stats_after = store.stats().expect("stats");
    let (on_disk_after, held) = held_on_disk(&store, node_dir);
    assert_eq!(
        stats_after.bytes, on_disk_after,
        "byte count vs blocks on disk after gc (before: {} vs {on_disk})",
        stats.bytes
    );
    // Holdings are pins and the replicas this node keeps for the other node (each node's
    // adds are replicated to the other).
    let mut reached = HashSet::new();
    for p in store.pins().expect("pins") {
        let id: storgo::content::ContentId = p.id.parse().expect("pin id");
        reached.extend(store.item_blocks(&id.root).expect("walk a pinned item"));
    }
    for r in store.replicas().expect("replicas") {
        reached.extend(store.item_blocks(&r.root).expect("walk a replica"));
    }
    assert_eq!(
        held,
        reached.len(),
        "after two GCs the store holds {held} blocks but the holdings reach {}",
        reached.len()
    );
    assert!(store.verify().expect("verify").is_clean());
}
