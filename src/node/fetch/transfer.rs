//! Pulling a list of blocks from every provider in parallel, into a store session.
//!
//! Each provider gets a worker with a window of outstanding requests; a chunk that fails or
//! times out goes back in the queue for another provider; a provider that sends bytes not
//! matching the address is dropped; new providers join as discovery finds them. Every block
//! is hashed (on the blocking pool) before it is written through the session, so memory is
//! bounded by the windows and the writer's queue, not by the item's size.
//!
//! Each worker first asks its provider what it holds (`Query`): a striped item's column
//! holder is asked only for its column, and a block no live provider serves is rebuilt from
//! other shards of its stripe (`stripes`, degraded reads).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use libp2p::PeerId;
use tokio::sync::{mpsc, Notify};

use crate::content::stripe::ShardOf;
use crate::content::{BlockAddress, BlockKey, ContentId, MAX_BLOCK_SIZE};
use crate::files::{self, FilesError, Output};
use crate::network::{ChunkRequest, ChunkResponse, ReplicateRequest, ReplicateResponse};
use crate::store::{Holding, Session, Store, StoreError};

use crate::node::fetch::stripes::{Decoder, Serves, StripeCtx, MAX_DECODING};

use crate::node::fetch::output::{Arrivals, EndOnDrop, OUTPUT_BUDGET};
use crate::node::fetch::walk::{walk, ProviderPool, Walked};
use crate::node::swarm::reputation::Offence;
use crate::node::{blocking, Client, FetchProgress, NodeError};

/// One block to bring: its address, its largest length when known, and whether it is only a
/// helper (another shard of a stripe being rebuilt: gathered in memory, not kept).
#[derive(Debug, Clone, Copy)]
struct Job {
    address: BlockAddress,
    len: Option<usize>,
    helper: bool,
}

/// Shared state of the chunk download.
struct Transfer {
    root: BlockAddress,
    queue: Mutex<VecDeque<Job>>,
    changed: Notify,
    /// Blocks wanted (not helpers) not yet brought or rebuilt.
    remaining: AtomicUsize,
    bytes_done: AtomicU64,
    /// Bytes the pull may bring in all (a replica's declared size).
    budget: u64,
    /// Set when a block would take the pull past `budget`: it is not written, and the pull stops.
    over: AtomicBool,
    /// The item's chunk addresses: a stripe map a provider names must list exactly these.
    chunks: HashSet<BlockAddress>,
    /// The item's stripe map, once known (given, or learnt from a provider).
    stripes: OnceLock<Arc<StripeCtx>>,
    /// What each live worker's provider serves, once it said.
    serves: Mutex<HashMap<PeerId, Serves>>,
    /// Workers still asking their provider what it serves.
    learning: AtomicUsize,
    /// Stripes being gathered for a rebuild, and stripes rebuilt.
    decoding: Mutex<HashSet<usize>>,
    rebuilt: Mutex<HashSet<usize>>,
    /// Helper shards asked for so far (each is asked once: a helper that fails goes back in
    /// the queue like any job).
    helpers: Mutex<HashSet<BlockAddress>>,
}

impl Transfer {
    /// What each live worker's provider serves, as a snapshot.
    fn serving(&self) -> Vec<Serves> {
        self.serves
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .copied()
            .collect()
    }

    /// Puts a job back at the front: the queue is in item order, and a fetch writing its
    /// output as chunks arrive waits for the earliest one.
    fn requeue(&self, job: Job) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_front(job);
        self.changed.notify_waiters();
    }

    /// The first queued job this peer serves and is not known to lack; helpers of stripes
    /// already rebuilt are dropped on the way.
    fn take(&self, skip: &HashSet<BlockAddress>, serves: Serves) -> Option<Job> {
        let ctx = self.stripes.get().map(Arc::as_ref);
        let rebuilt = self
            .rebuilt
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if !rebuilt.is_empty() {
            q.retain(|j| {
                !j.helper
                    || ctx
                        .and_then(|c| c.locate(&j.address))
                        .is_none_or(|(s, _)| !rebuilt.contains(&s))
            });
        }
        let i = q
            .iter()
            .position(|j| !skip.contains(&j.address) && serves.covers(ctx, &j.address))?;
        q.remove(i)
    }
}

/// Asks `peer` what it holds of the item: a striped item's map is learnt here (fetched from
/// the peer, checked against its address, its item and the item's chunks) the first time a
/// provider names one.
async fn learn(client: &Client, peer: PeerId, t: &Transfer) -> Serves {
    let asked = tokio::time::timeout(
        Duration::from_secs(5),
        client.replicate(peer, ReplicateRequest::Query { root: t.root }),
    )
    .await;
    let Ok(Ok(ReplicateResponse::Holding {
        stripes: Some(held),
        ..
    })) = asked
    else {
        return Serves::Data;
    };
    if t.stripes.get().is_none() {
        let got = tokio::time::timeout(
            Duration::from_secs(30),
            client.request(peer, ChunkRequest::GetChunk(held.map)),
        )
        .await;
        let Ok(Ok(ChunkResponse::Block(bytes))) = got else {
            return Serves::Data;
        };
        let map = if held.map.matches(&bytes) {
            crate::store::stripes::decode_map(&held.map, &t.root, &bytes).ok()
        } else {
            None
        };
        match map.map(|m| StripeCtx::new(m, held.map)) {
            Some(ctx) if ctx.covers(&t.chunks) => {
                let _ = t.stripes.set(Arc::new(ctx));
            }
            _ => {
                tracing::warn!(peer = %peer, cid = %t.root, map = %held.map, "a provider named a stripe map that is not this item's");
                client.report(peer, Offence::BadBlock).await;
                return Serves::Data;
            }
        }
    }
    match (t.stripes.get(), held.column) {
        (Some(ctx), _) if ctx.address != held.map => Serves::Data,
        (_, None) => Serves::All,
        (_, Some(c)) => Serves::Column(c),
    }
}

/// Takes a worker's provider out of [`Transfer::serves`] however the worker ends.
struct Serving<'a> {
    t: &'a Transfer,
    peer: PeerId,
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        self.t
            .serves
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.peer);
        self.t.changed.notify_waiters();
    }
}

/// What one chunk request came to.
enum Outcome {
    Good(Vec<u8>),
    Corrupt,
    NotHere,
    /// The provider is at its limit: not its fault, ask again a little later.
    Busy,
    /// The relayed connection the request went over was closed by the relay (its limits).
    RelayCut(Option<PeerId>),
    /// This node closed the relayed connection for a punched direct one: ask again.
    Rerouted,
    Failed(String),
}

/// What the workers (and the pull) hand to the store writer.
enum ToWriter {
    /// A verified block.
    Block(BlockAddress, Vec<u8>),
    /// A verified helper shard: offered to the decoder, not kept.
    Helper(BlockAddress, Vec<u8>),
    /// Stripe `stripe` is to be rebuilt for these (stripe-local) columns.
    Decode {
        stripe: usize,
        targets: HashSet<usize>,
    },
}

/// Why a provider's worker stopped.
enum WorkerEnd {
    Done,
    Dropped(PeerId, Offence),
    /// The provider was reached only through a relay, which closed the circuit at its limits:
    /// not the provider's fault, and not booked against it.
    RelayCut(PeerId, Option<PeerId>),
}

/// How long a pull waits for providers to be found before it rebuilds blocks nobody it
/// knows serves.
const ORPHANS_AFTER: Duration = Duration::from_secs(2);

/// "Not found" answers after which a provider that has sent nothing in this fetch stops being
/// asked (one that has sent some chunks keeps being asked for the others it may hold).
const NOT_FOUND_BEFORE_DROP: u32 = 3;

async fn worker(
    client: Client,
    peer: PeerId,
    t: Arc<Transfer>,
    writer: mpsc::Sender<ToWriter>,
    window: usize,
    claims_whole: bool,
) -> WorkerEnd {
    t.learning.fetch_add(1, Ordering::AcqRel);
    let serves = learn(&client, peer, &t).await;
    tracing::debug!(peer = %peer, cid = %t.root, serves = ?serves, "provider says what it serves");
    t.serves
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(peer, serves);
    t.learning.fetch_sub(1, Ordering::AcqRel);
    let _serving = Serving { t: &t, peer };
    // A column holder provides the root but holds one column: its "not found" for another
    // column's block would be honest, and it is never asked for one.
    let claims_whole = claims_whole && !matches!(serves, Serves::Column(_));
    let mut inflight = FuturesUnordered::new();
    let mut jobs: HashMap<BlockAddress, Job> = HashMap::new();
    let mut missing_here = HashSet::new();
    let (mut failures, mut not_found, mut delivered) = (0u32, 0u32, 0u64);
    let drop_peer = |jobs: HashMap<BlockAddress, Job>, why| {
        for j in jobs.into_values() {
            t.requeue(j);
        }
        WorkerEnd::Dropped(peer, why)
    };
    loop {
        if t.remaining.load(Ordering::Acquire) == 0 {
            return WorkerEnd::Done;
        }
        while inflight.len() < window {
            let Some(job) = t.take(&missing_here, serves) else {
                break;
            };
            jobs.insert(job.address, job);
            let c = client.clone();
            let a = job.address;
            inflight.push(async move { (a, c.request(peer, ChunkRequest::GetChunk(a)).await) });
        }
        if inflight.is_empty() {
            // Nothing this peer can do now; wait for requeued work or the end.
            let _ = tokio::time::timeout(Duration::from_millis(500), t.changed.notified()).await;
            continue;
        }
        let Some((address, result)) = inflight.next().await else {
            continue;
        };
        let Some(job) = jobs.remove(&address) else {
            continue;
        };
        let len = job.len;
        // Hash on the blocking pool: on a current-thread runtime, hashing here would stall the
        // event loop that is receiving the next chunks.
        let outcome = match result {
            // The largest length is known when the walk opened the manifests; either way the
            // block must hash to its address.
            Ok(ChunkResponse::Block(b)) if len.is_none_or(|l| b.len() <= l) => {
                match tokio::task::spawn_blocking(move || address.matches(&b).then_some(b)).await {
                    Ok(Some(b)) => Outcome::Good(b),
                    Ok(None) => Outcome::Corrupt,
                    Err(_) => Outcome::Failed("verification task failed".into()),
                }
            }
            Ok(ChunkResponse::Block(_)) => Outcome::Corrupt,
            Ok(ChunkResponse::NotFound) => Outcome::NotHere,
            Ok(ChunkResponse::Error {
                code: crate::network::chunks::ErrorCode::Busy,
                ..
            }) => Outcome::Busy,
            Ok(other) => Outcome::Failed(format!("{other:?}")),
            Err(NodeError::RelayClosed { relay, .. }) => Outcome::RelayCut(relay.map(|r| *r)),
            Err(NodeError::Rerouted { .. }) => Outcome::Rerouted,
            Err(e) => Outcome::Failed(e.to_string()),
        };
        match outcome {
            Outcome::Good(b) if job.helper => {
                failures = 0;
                delivered += 1;
                client.add_fetched(b.len() as u64);
                if writer.send(ToWriter::Helper(address, b)).await.is_err() {
                    return WorkerEnd::Done;
                }
            }
            Outcome::Good(b) => {
                failures = 0;
                delivered += 1;
                let n = b.len() as u64;
                // Counted before it is written: a block past the budget never reaches the disk.
                if t.bytes_done
                    .fetch_add(n, Ordering::AcqRel)
                    .saturating_add(n)
                    > t.budget
                {
                    t.over.store(true, Ordering::Release);
                    t.changed.notify_waiters();
                    return WorkerEnd::Done;
                }
                if writer.send(ToWriter::Block(address, b)).await.is_err() {
                    return WorkerEnd::Done;
                }
                client.add_fetched(n);
                t.remaining.fetch_sub(1, Ordering::AcqRel);
                t.changed.notify_waiters();
            }
            Outcome::Corrupt => {
                tracing::warn!(peer = %peer, cid = %address, "peer sent bytes that do not match the chunk address; dropping it");
                jobs.insert(address, job);
                client.report(peer, Offence::BadBlock).await;
                return drop_peer(jobs, Offence::BadBlock);
            }
            Outcome::NotHere => {
                missing_here.insert(address);
                t.requeue(job);
                not_found += 1;
                // A DHT record claims the whole item: lacking a block of it is booked, once
                // per fetch. A "have" answer claims only the root (a peer may still be
                // fetching), so its "not found" is honest.
                if not_found == 1 && claims_whole {
                    client.report(peer, Offence::ClaimedButMissing).await;
                }
                if not_found >= NOT_FOUND_BEFORE_DROP && delivered == 0 {
                    return drop_peer(jobs, Offence::ClaimedButMissing);
                }
            }
            Outcome::Busy => {
                t.requeue(job);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Outcome::Rerouted => t.requeue(job),
            Outcome::RelayCut(relay) => {
                // Every request in flight on the circuit fails with it: the provider is
                // given up at once, its jobs left to others, and the pull says why.
                jobs.insert(address, job);
                for j in jobs.into_values() {
                    t.requeue(j);
                }
                return WorkerEnd::RelayCut(peer, relay);
            }
            Outcome::Failed(why) => {
                tracing::debug!(peer = %peer, cid = %address, error = %why, "chunk request failed");
                failures += 1;
                t.requeue(job);
            }
        }
        if failures >= 3 {
            client.report(peer, Offence::Silent).await;
            return drop_peer(jobs, Offence::Silent);
        }
    }
}

/// What a pull did.
pub(crate) struct Pulled {
    pub blocks: usize,
    pub bytes: u64,
    pub peers_used: Vec<String>,
}

/// How a pull runs: from whom, how hard, and who else sees the blocks.
pub(crate) struct PullPlan<'a> {
    pub root: BlockAddress,
    pub total_chunks: usize,
    pub window: usize,
    pub stall_timeout: Duration,
    pub progress: &'a (dyn Fn(FetchProgress) + Send + Sync),
    /// Gets every block once it is stored (a fetch writing its output as chunks arrive).
    pub arrivals: Option<Arc<Arrivals>>,
    /// Bytes of chunks the pull may bring; past them it stops with `OverDeclared`. Helper
    /// shards gathered to rebuild a block are not counted: they are not kept.
    pub max_bytes: Option<u64>,
    /// The item's chunks (a stripe map a provider names must list exactly these).
    pub chunks: HashSet<BlockAddress>,
    /// The item's stripe map when it is known already (a column intake).
    pub stripes: Option<Arc<StripeCtx>>,
}

/// Stores what the workers deliver; hands each block to `arrivals` once it is stored and
/// lands the current batch early when the reader there waits for a block in it.
///
/// Stripes being rebuilt are gathered here too (degraded reads): the blocks of such a stripe
/// that arrive or are stored already, and the helper shards, until K of them rebuild the
/// missing ones, which are then stored like any block.
fn store_blocks(
    session: &Session,
    mut rx: mpsc::Receiver<ToWriter>,
    arrivals: Option<&Arrivals>,
    t: &Transfer,
) -> Result<(), StoreError> {
    // What arrived is landed at least this often, so that a killed node resumes from about
    // where it stopped (DESIGN.md, "What a kill costs").
    const LAND_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
    let mut w = session.writer();
    let mut landed = std::time::Instant::now();
    let mut decoder: Option<Decoder> = None;
    while let Some(msg) = rx.blocking_recv() {
        let (stored, offered) = match msg {
            ToWriter::Block(a, b) => {
                w.put(a, &b)?;
                let offered = match decoder.as_mut() {
                    Some(d) => d.offer(&a, &b).map_err(|e| stripe_error(t, e))?,
                    None => Vec::new(),
                };
                (Some((a, b)), offered)
            }
            ToWriter::Helper(a, b) => match decoder.as_mut() {
                Some(d) => (None, d.offer(&a, &b).map_err(|e| stripe_error(t, e))?),
                None => (None, Vec::new()),
            },
            ToWriter::Decode { stripe, targets } => {
                let Some(ctx) = t.stripes.get() else {
                    continue;
                };
                // What this writer holds back must be readable before it is gathered.
                w.flush()?;
                let d = decoder.get_or_insert_with(|| Decoder::new(Arc::clone(ctx)));
                let parts = session.parts();
                let rebuilt = d
                    .start(stripe, targets, |a| {
                        parts
                            .index
                            .has_block(a)
                            .ok()
                            .filter(|h| *h)
                            .and_then(|_| parts.read_verified(a, MAX_BLOCK_SIZE).ok())
                    })
                    .map_err(|e| stripe_error(t, e))?;
                (None, rebuilt)
            }
        };
        if let Some((a, b)) = stored {
            if let Some(o) = arrivals {
                o.arrived(a, b);
            }
        }
        if !offered.is_empty() {
            let stripes: HashSet<usize> = offered
                .iter()
                .filter_map(|(a, _)| t.stripes.get().and_then(|c| c.locate(a)).map(|(s, _)| s))
                .collect();
            tracing::debug!(cid = %t.root, blocks = offered.len(), "rebuilt blocks from their stripes");
            for (a, b) in offered {
                w.put(a, &b)?;
                t.remaining.fetch_sub(1, Ordering::AcqRel);
                if let Some(o) = arrivals {
                    o.arrived(a, b);
                }
            }
            let mut decoding = t.decoding.lock().unwrap_or_else(|e| e.into_inner());
            let mut rebuilt = t.rebuilt.lock().unwrap_or_else(|e| e.into_inner());
            for s in stripes {
                decoding.remove(&s);
                rebuilt.insert(s);
            }
            drop((decoding, rebuilt));
            t.changed.notify_waiters();
        }
        if landed.elapsed() >= LAND_EVERY {
            w.land()?;
            landed = std::time::Instant::now();
        }
        if let Some(o) = arrivals {
            if o.take_flush_request() {
                w.flush()?;
                o.flushed();
            }
        }
    }
    w.finish().map(|_| ())
}

/// A stripe that cannot be rebuilt from shards that each matched their address: its map lies
/// about them.
fn stripe_error(t: &Transfer, e: crate::content::stripe::StripeError) -> StoreError {
    StoreError::Corrupt {
        address: t.stripes.get().map(|c| c.address).unwrap_or(t.root),
        path: std::path::PathBuf::from("(stripe map)"),
        reason: e.to_string(),
    }
}

/// Blocks of the queue no live provider serves, taken out to be rebuilt from their stripe:
/// the first such stripe (the earliest in the item, which a streaming output waits for) and
/// its orphaned columns. Only once every worker has said what it serves, and while fewer
/// than [`MAX_DECODING`] stripes are gathered. The caller tells the writer, and only then asks
/// for the helper shards ([`helpers_for`]): a helper that reached the writer before the
/// stripe did would be dropped, and it is asked for once.
fn orphans(t: &Transfer) -> Option<(usize, HashSet<usize>)> {
    let ctx = t.stripes.get()?;
    if t.learning.load(Ordering::Acquire) > 0 {
        return None;
    }
    let serves = t.serving();
    if serves.is_empty() {
        return None;
    }
    let mut decoding = t.decoding.lock().unwrap_or_else(|e| e.into_inner());
    let served = |a: &BlockAddress| serves.iter().any(|s| s.covers(Some(ctx), a));
    let mut q = t.queue.lock().unwrap_or_else(|e| e.into_inner());
    let stripe = q
        .iter()
        .filter(|j| !j.helper && !served(&j.address))
        .filter_map(|j| ctx.locate(&j.address).map(|(s, _)| s))
        .find(|s| decoding.contains(s) || decoding.len() < MAX_DECODING)?;
    let mut targets = HashSet::new();
    q.retain(|j| match ctx.locate(&j.address) {
        Some((s, c)) if s == stripe && !j.helper && !served(&j.address) => {
            targets.insert(c);
            false
        }
        _ => true,
    });
    drop(q);
    if decoding.insert(stripe) {
        // A stripe gathered again (a target of it was in flight at a provider that then left
        // while the rest was rebuilt): its helper shards were not kept, so they are asked for
        // again.
        let mut asked = t.helpers.lock().unwrap_or_else(|e| e.into_inner());
        for (_, a, _) in ctx.shards(stripe) {
            asked.remove(&a);
        }
        t.rebuilt
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&stripe);
    }
    Some((stripe, targets))
}

/// Asks for the helper shards of `stripe` (see [`orphans`]), once the writer knows of it.
fn ask_helpers(t: &Transfer, stripe: usize, targets: &HashSet<usize>) {
    let Some(ctx) = t.stripes.get() else {
        return;
    };
    let serves = t.serving();
    helpers_for(t, ctx, stripe, targets, &serves);
}

/// Asks for the shards of `stripe` (other than `targets`) that a live provider serves, that
/// nothing brings already and that were not asked for before.
fn helpers_for(
    t: &Transfer,
    ctx: &StripeCtx,
    stripe: usize,
    targets: &HashSet<usize>,
    serves: &[Serves],
) {
    let mut asked = t.helpers.lock().unwrap_or_else(|e| e.into_inner());
    let mut q = t.queue.lock().unwrap_or_else(|e| e.into_inner());
    let coming: HashSet<BlockAddress> = q.iter().map(|j| j.address).collect();
    for (c, a, len) in ctx.shards(stripe) {
        let served = serves.iter().any(|s| s.covers(Some(ctx), &a));
        if !targets.contains(&c) && !coming.contains(&a) && served && asked.insert(a) {
            q.push_back(Job {
                address: a,
                len: Some(len as usize),
                helper: true,
            });
        }
    }
}

/// Stripes being gathered ask for the shards of providers that joined since (a holder found
/// late by discovery): a stripe whose helpers were all asked of providers that then left
/// would otherwise wait forever.
fn top_up(t: &Transfer) {
    let Some(ctx) = t.stripes.get() else {
        return;
    };
    let decoding: Vec<usize> = t
        .decoding
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .copied()
        .collect();
    if decoding.is_empty() {
        return;
    }
    let serves = t.serving();
    for s in decoding {
        // Its targets are not known here; they are never queued as helpers because they are
        // not served (that is why they are rebuilt).
        let targets: HashSet<usize> = ctx
            .shards(s)
            .iter()
            .filter(|(_, a, _)| !serves.iter().any(|x| x.covers(Some(ctx), a)))
            .map(|(c, _, _)| *c)
            .collect();
        helpers_for(t, ctx, s, &targets, &serves);
    }
}

/// Pulls `missing` blocks into `session` from the providers `pool` finds. Every block that
/// arrives is kept, even when the pull fails: the next attempt resumes.
pub(crate) async fn pull(
    client: &Client,
    session: &Arc<Session>,
    pool: &mut ProviderPool,
    missing: VecDeque<(BlockAddress, Option<usize>)>,
    plan: PullPlan<'_>,
    dropped: &mut Vec<String>,
) -> Result<Pulled, NodeError> {
    let PullPlan {
        root,
        total_chunks,
        window,
        stall_timeout,
        progress,
        arrivals,
        max_bytes,
        chunks,
        stripes,
    } = plan;
    let total_missing = missing.len();
    // Unknown lengths (a keyless walk) count as the largest a chunk may be.
    let bytes_total: u64 = missing.iter().map(|(_, l)| l.unwrap_or(0) as u64).sum();
    let known = OnceLock::new();
    if let Some(ctx) = stripes {
        let _ = known.set(ctx);
    }
    let t = Arc::new(Transfer {
        root,
        queue: Mutex::new(
            missing
                .into_iter()
                .map(|(address, len)| Job {
                    address,
                    len,
                    helper: false,
                })
                .collect(),
        ),
        changed: Notify::new(),
        remaining: AtomicUsize::new(total_missing),
        bytes_done: AtomicU64::new(0),
        budget: max_bytes.unwrap_or(u64::MAX),
        over: AtomicBool::new(false),
        chunks,
        stripes: known,
        serves: Mutex::default(),
        learning: AtomicUsize::new(0),
        decoding: Mutex::default(),
        rebuilt: Mutex::default(),
        helpers: Mutex::default(),
    });

    let (wtx, wrx) = mpsc::channel::<ToWriter>(8);
    let s = Arc::clone(session);
    let to_output = arrivals.clone();
    let tw = Arc::clone(&t);
    let mut writer =
        tokio::task::spawn_blocking(move || store_blocks(&s, wrx, to_output.as_deref(), &tw));
    // Set when the writer stops before the pull ends: it failed (a full disk, say), and the
    // pull stops with its error at once instead of stalling on a closed queue.
    let mut written_early = None;
    let mut used = HashSet::new();
    let mut workers = tokio::task::JoinSet::new();
    let mut last_progress = (Instant::now(), 0usize);
    let mut outcome: Result<(), NodeError> = Ok(());
    let mut relay_cut = None;
    pool.drain();
    for p in pool.known.clone() {
        if used.insert(p) {
            let whole = pool.claim_whole.contains(&p);
            workers.spawn(worker(
                client.clone(),
                p,
                Arc::clone(&t),
                wtx.clone(),
                window,
                whole,
            ));
        }
    }
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let pull_started = Instant::now();
    let mut last_new_provider = Instant::now();
    while t.remaining.load(Ordering::Acquire) > 0 {
        if t.over.load(Ordering::Acquire) {
            outcome = Err(NodeError::OverDeclared {
                item: root.into(),
                limit: t.budget,
            });
            break;
        }
        let remaining = t.remaining.load(Ordering::Acquire);
        if remaining != last_progress.1 {
            last_progress = (Instant::now(), remaining);
        }
        if last_progress.0.elapsed() > stall_timeout || (workers.is_empty() && pool.rx.is_none()) {
            outcome = Err(match relay_cut {
                // What stopped it was a relay: say so, rather than blame the providers.
                Some(via) => NodeError::RelayLimited {
                    item: root.into(),
                    missing: remaining,
                    total: total_chunks,
                    via: Box::new(via),
                },
                None => NodeError::Incomplete {
                    item: root.into(),
                    missing: remaining,
                    total: total_chunks,
                },
            });
            break;
        }
        tokio::select! {
            p = pool.next_new(Instant::now() + Duration::from_secs(3600)), if pool.rx.is_some() => {
                if let Some(p) = p {
                    last_new_provider = Instant::now();
                    if used.insert(p) {
                        let whole = pool.claim_whole.contains(&p);
                        workers.spawn(worker(client.clone(), p, Arc::clone(&t), wtx.clone(), window, whole));
                    }
                }
            }
            Some(end) = workers.join_next(), if !workers.is_empty() => {
                match end {
                    Ok(WorkerEnd::Dropped(p, why)) => {
                        // The worker has booked what was an offence.
                        tracing::warn!(peer = %p, reason = why.describe(), "provider dropped");
                        pool.bad.insert(p);
                        dropped.push(p.to_string());
                    }
                    Ok(WorkerEnd::RelayCut(p, relay)) => {
                        tracing::warn!(peer = %p, relay = ?relay, "the relay carrying a provider's chunks closed the circuit");
                        relay_cut = Some((p, relay));
                    }
                    _ => {}
                }
            }
            w = &mut writer, if written_early.is_none() => {
                written_early = Some(w);
                break;
            }
            _ = tick.tick() => {
                // Once discovery has had its chance to find a provider of everything.
                // Once discovery has had its chance and has gone quiet: holders found late
                // would otherwise have their columns rebuilt for nothing.
                let settled = pool.rx.is_none()
                    || (pull_started.elapsed() > ORPHANS_AFTER
                        && last_new_provider.elapsed() > ORPHANS_AFTER / 2);
                if settled {
                    top_up(&t);
                }
                while let Some((stripe, targets)) = settled.then(|| orphans(&t)).flatten() {
                    tracing::info!(cid = %root, stripe, blocks = targets.len(), "no provider holds these blocks: rebuilding them from their stripe");
                    if wtx
                        .send(ToWriter::Decode {
                            stripe,
                            targets: targets.clone(),
                        })
                        .await
                        .is_err()
                    {
                        break;
                    }
                    ask_helpers(&t, stripe, &targets);
                    t.changed.notify_waiters();
                }
                progress(FetchProgress {
                    bytes_done: t.bytes_done.load(Ordering::Relaxed),
                    bytes_total,
                    peers: workers.len(),
                });
            }
        }
    }
    workers.abort_all();
    drop(wtx);
    let written = match written_early {
        Some(w) => w,
        None => writer.await,
    }
    .map_err(|e| StoreError::io("writing chunks to", "(store)", std::io::Error::other(e)))?;
    if let Some(a) = &arrivals {
        a.end(match (&outcome, &written) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(e), _) => Err(e.to_string()),
            (_, Err(e)) => Err(e.to_string()),
        });
    }
    // The store's error first: it is why the rest could not be had.
    written?;
    outcome?;
    progress(FetchProgress {
        bytes_done: bytes_total,
        bytes_total,
        peers: 0,
    });
    Ok(Pulled {
        blocks: total_missing,
        bytes: t.bytes_done.load(Ordering::Relaxed),
        peers_used: used.iter().map(|p| p.to_string()).collect(),
    })
}

/// What bringing an item into a session did.
pub(crate) struct Brought {
    pub walked: Walked,
    pub pulled: Pulled,
    /// Providers dropped for sending bad blocks or not answering.
    pub dropped: Vec<String>,
}

/// An item's output written while its chunks arrive.
pub(crate) struct Streaming {
    pub store: Arc<Store>,
    pub id: ContentId,
    pub output: Output,
}

/// What [`bring`] brings and how: the item rooted at `root` (its manifests opened with `key`
/// when given), the holding `partial` returns (committed once the manifests are here), the
/// pace, progress reports, and the output to write while chunks arrive, if any.
pub(crate) struct Bring<'a> {
    pub root: BlockAddress,
    pub key: Option<BlockKey>,
    pub partial: &'a (dyn Fn(&Walked) -> Option<Holding> + Sync),
    pub pace: Pace,
    pub progress: &'a (dyn Fn(FetchProgress) + Send + Sync),
    pub streaming: Option<Streaming>,
    /// Bring one column of a striped item (and its manifests and stripe map), not the whole.
    pub shard: Option<ShardOf>,
}

impl<'a> Bring<'a> {
    /// A copy of someone else's item (sealed blocks only: no key, no output, no progress).
    pub fn copy(
        root: BlockAddress,
        partial: &'a (dyn Fn(&Walked) -> Option<Holding> + Sync),
        pace: Pace,
    ) -> Self {
        Self {
            root,
            key: None,
            partial,
            pace,
            progress: &|_| {},
            streaming: None,
            shard: None,
        }
    }

    /// A column of someone else's striped item.
    pub fn column(mut self, shard: Option<ShardOf>) -> Self {
        self.shard = shard;
        self
    }
}

/// Brings an item into `session`: finds providers, walks its manifests, stores the new
/// manifests, commits the holding `partial` returns (so that what arrives survives a restart
/// and is resumed), then pulls every chunk not yet here — writing the output meanwhile, when
/// there is one. The caller commits the whole holding.
pub(crate) async fn bring(
    client: &Client,
    session: &Arc<Session>,
    what: Bring<'_>,
) -> Result<Brought, NodeError> {
    let (root, deadline) = (what.root, what.pace.deadline);
    let bringing = bring_unbounded(client, session, what);
    match deadline {
        None => bringing.await,
        Some(limit) => {
            tokio::time::timeout(limit, bringing)
                .await
                .map_err(|_| NodeError::DeadlinePassed {
                    item: root.into(),
                    secs: limit.as_secs(),
                })?
        }
    }
}

/// The stripe map `address` of `root`: from the store when it is here, else from the first
/// provider that sends it. It must match its address, name `root`, and list exactly the
/// item's `chunks`.
async fn stripe_map(
    client: &Client,
    session: &Arc<Session>,
    pool: &mut ProviderPool,
    root: BlockAddress,
    address: BlockAddress,
    chunks: &HashSet<BlockAddress>,
    stall_timeout: Duration,
) -> Result<StripeCtx, NodeError> {
    let s = Arc::clone(session);
    let local = blocking(move || -> Result<Option<Vec<u8>>, StoreError> {
        if !s.claim_present(&[address])?[0] {
            return Ok(None);
        }
        s.parts()
            .read_verified(&address, crate::content::stripe::MAX_MAP_BLOCK)
            .map(Some)
    })
    .await?
    .ok()
    .flatten();
    let mut bytes = local;
    // The providers known, then each one discovery finds, until one sends it (the records
    // of holders that have left come first as often as not).
    pool.drain();
    let mut asked = HashSet::new();
    let deadline = Instant::now() + stall_timeout;
    while bytes.is_none() {
        let next = match pool.known.iter().find(|p| !asked.contains(*p)) {
            Some(p) => *p,
            None => match pool.next_new(deadline).await {
                Some(p) => p,
                None => break,
            },
        };
        asked.insert(next);
        let got = tokio::time::timeout(
            Duration::from_secs(10),
            client.request(next, ChunkRequest::GetChunk(address)),
        )
        .await;
        match got {
            Ok(Ok(ChunkResponse::Block(b))) if address.matches(&b) => bytes = Some(b),
            Ok(Ok(ChunkResponse::Block(_))) => client.report(next, Offence::BadBlock).await,
            _ => {}
        }
    }
    let bytes = bytes.ok_or(NodeError::NoProviders {
        item: address.into(),
        secs: stall_timeout.as_secs(),
    })?;
    let map = crate::store::stripes::decode_map(&address, &root, &bytes)?;
    let ctx = StripeCtx::new(map, address);
    if !ctx.covers(chunks) {
        return Err(StoreError::Corrupt {
            address,
            path: std::path::PathBuf::from("(stripe map)"),
            reason: format!("it does not list exactly the chunks of {root}"),
        }
        .into());
    }
    Ok(ctx)
}

/// How a transfer paces itself and when it gives up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    /// Outstanding chunk requests per provider.
    pub window: usize,
    /// How long the transfer may go without progress (or without a first provider).
    pub stall_timeout: Duration,
    /// How long the whole transfer, manifests included, may take: a bound on a crafted item
    /// whose blocks each arrive just before the stall timeout.
    pub deadline: Option<Duration>,
    /// Bytes of blocks (manifests and chunks) the transfer may bring from the network: a
    /// replica's declared size. Past it, the transfer stops with `OverDeclared`.
    pub max_bytes: Option<u64>,
}

async fn bring_unbounded(
    client: &Client,
    session: &Arc<Session>,
    what: Bring<'_>,
) -> Result<Brought, NodeError> {
    let Bring {
        root,
        key,
        partial,
        pace,
        progress,
        streaming,
        shard,
    } = what;
    let Pace {
        window,
        stall_timeout,
        ..
    } = pace;
    let mut pool = ProviderPool::discover(client, root).await?;
    let mut dropped = Vec::new();
    let mut walked = walk(
        client,
        session,
        &mut pool,
        root,
        key,
        stall_timeout,
        pace.max_bytes,
        &mut dropped,
    )
    .await?;
    let chunks: HashSet<BlockAddress> = walked.chunks.iter().map(|(a, _)| *a).collect();
    // A column: its stripe map first, kept with the manifests before the partial holding
    // names it.
    let stripes = match &shard {
        Some(s) => Some(Arc::new(
            stripe_map(
                client,
                session,
                &mut pool,
                root,
                s.map,
                &chunks,
                stall_timeout,
            )
            .await?,
        )),
        None => None,
    };
    {
        let s = Arc::clone(session);
        let mut manifests = std::mem::take(&mut walked.new_manifests);
        if let Some(ctx) = &stripes {
            manifests.push((ctx.address, ctx.map.encode()));
        }
        let holding = partial(&walked);
        blocking(move || -> Result<(), StoreError> {
            let mut w = s.writer();
            for (a, b) in &manifests {
                w.put(*a, b)?;
            }
            w.finish()?;
            if let Some(h) = holding {
                s.commit(&h)?;
            }
            Ok(())
        })
        .await??;
    }
    // What to bring: the chunks, or one column's blocks (data or parity).
    let wanted: Vec<(BlockAddress, Option<usize>)> = match (&shard, &stripes) {
        (Some(s), Some(ctx)) => ctx
            .map
            .column(s.column as usize)
            .map(|(_, a, len)| (a, Some(len as usize)))
            .collect(),
        _ => walked.chunks.clone(),
    };
    let addrs: Vec<BlockAddress> = wanted.iter().map(|(a, _)| *a).collect();
    let have = {
        let s = Arc::clone(session);
        blocking(move || s.claim_present(&addrs)).await??
    };
    let missing: VecDeque<(BlockAddress, Option<usize>)> = wanted
        .iter()
        .zip(have)
        .filter(|(_, h)| !h)
        .map(|(c, _)| *c)
        .collect();
    let arrivals = streaming
        .as_ref()
        .map(|s| Arc::new(Arrivals::new(Arc::clone(&s.store), OUTPUT_BUDGET)));
    let plan = PullPlan {
        root,
        total_chunks: walked.chunks.len(),
        window,
        stall_timeout,
        progress,
        arrivals: arrivals.clone(),
        max_bytes: pace
            .max_bytes
            .map(|m| m.saturating_sub(walked.new_manifest_bytes)),
        chunks,
        stripes,
    };
    let pulling = pull(client, session, &mut pool, missing, plan, &mut dropped);
    let pulled = match (streaming, arrivals) {
        (Some(s), Some(arrivals)) => {
            let _ended = EndOnDrop(Arc::clone(&arrivals));
            let mut writing = tokio::task::spawn_blocking(move || {
                files::write_output(&s.store, &*arrivals, &s.id, s.output, &|_| {})
            });
            tokio::pin!(pulling);
            let written = |w: Result<crate::files::Result<()>, tokio::task::JoinError>| {
                w.unwrap_or_else(|e| Err(FilesError::Output(std::io::Error::other(e))))
            };
            tokio::select! {
                p = &mut pulling => {
                    // The pull has said how it ended: the output finishes or fails with it.
                    let w = written(writing.await);
                    let pulled = p?;
                    w?;
                    pulled
                }
                // An output that fails (a full disk, a reader gone) ends the fetch; the
                // chunks already stored stay for the next attempt.
                w = &mut writing => {
                    written(w)?;
                    pulling.await?
                }
            }
        }
        _ => pulling.await?,
    };
    Ok(Brought {
        walked,
        pulled,
        dropped,
    })
}
