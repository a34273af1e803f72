//! Pulling a list of blocks from every provider in parallel, into a store session.
//!
//! Each provider gets a worker with a window of outstanding requests; a chunk that fails or
//! times out goes back in the queue for another provider; a provider that sends bytes not
//! matching the address is dropped; new providers join as discovery finds them. Every block
//! is hashed (on the blocking pool) before it is written through the session, so memory is
//! bounded by the windows and the writer's queue, not by the item's size.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use libp2p::PeerId;
use tokio::sync::{mpsc, Notify};

use crate::content::{BlockAddress, BlockKey, ContentId};
use crate::files::{self, FilesError, Output};
use crate::network::{ChunkRequest, ChunkResponse};
use crate::store::{Holding, Session, Store, StoreError};

use crate::node::fetch::output::{Arrivals, EndOnDrop, OUTPUT_BUDGET};
use crate::node::fetch::walk::{walk, ProviderPool, Walked};
use crate::node::swarm::reputation::Offence;
use crate::node::{blocking, Client, FetchProgress, NodeError};

/// Shared state of the chunk download.
struct Transfer {
    queue: Mutex<VecDeque<(BlockAddress, Option<usize>)>>,
    changed: Notify,
    remaining: AtomicUsize,
    bytes_done: AtomicU64,
    /// Bytes the pull may bring in all (a replica's declared size).
    budget: u64,
    /// Set when a block would take the pull past `budget`: it is not written, and the pull stops.
    over: AtomicBool,
}

impl Transfer {
    /// Puts a job back at the front: the queue is in item order, and a fetch writing its
    /// output as chunks arrive waits for the earliest one.
    fn requeue(&self, job: (BlockAddress, Option<usize>)) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_front(job);
        self.changed.notify_waiters();
    }

    /// The first queued job not known to be missing at this peer.
    fn take(&self, skip: &HashSet<BlockAddress>) -> Option<(BlockAddress, Option<usize>)> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let i = q.iter().position(|(a, _)| !skip.contains(a))?;
        q.remove(i)
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

/// What the workers hand to the store writer.
enum ToWriter {
    /// A verified block.
    Block(BlockAddress, Vec<u8>),
}

/// Why a provider's worker stopped.
enum WorkerEnd {
    Done,
    Dropped(PeerId, Offence),
    /// The provider was reached only through a relay, which closed the circuit at its limits:
    /// not the provider's fault, and not booked against it.
    RelayCut(PeerId, Option<PeerId>),
}

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
    let mut inflight = FuturesUnordered::new();
    let mut jobs: HashMap<BlockAddress, Option<usize>> = HashMap::new();
    let mut missing_here = HashSet::new();
    let (mut failures, mut not_found, mut delivered) = (0u32, 0u32, 0u64);
    let drop_peer = |jobs: HashMap<BlockAddress, Option<usize>>, why| {
        for j in jobs {
            t.requeue(j);
        }
        WorkerEnd::Dropped(peer, why)
    };
    loop {
        if t.remaining.load(Ordering::Acquire) == 0 {
            return WorkerEnd::Done;
        }
        while inflight.len() < window {
            let Some(job) = t.take(&missing_here) else {
                break;
            };
            jobs.insert(job.0, job.1);
            let c = client.clone();
            inflight
                .push(async move { (job.0, c.request(peer, ChunkRequest::GetChunk(job.0)).await) });
        }
        if inflight.is_empty() {
            // Nothing this peer can do now; wait for requeued work or the end.
            let _ = tokio::time::timeout(Duration::from_millis(500), t.changed.notified()).await;
            continue;
        }
        let Some((address, result)) = inflight.next().await else {
            continue;
        };
        let Some(len) = jobs.remove(&address) else {
            continue;
        };
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
                jobs.insert(address, len);
                client.report(peer, Offence::BadBlock).await;
                return drop_peer(jobs, Offence::BadBlock);
            }
            Outcome::NotHere => {
                missing_here.insert(address);
                t.requeue((address, len));
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
                t.requeue((address, len));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Outcome::Rerouted => t.requeue((address, len)),
            Outcome::RelayCut(relay) => {
                // Every request in flight on the circuit fails with it: the provider is
                // given up at once, its jobs left to others, and the pull says why.
                jobs.insert(address, len);
                for j in jobs {
                    t.requeue(j);
                }
                return WorkerEnd::RelayCut(peer, relay);
            }
            Outcome::Failed(why) => {
                tracing::debug!(peer = %peer, cid = %address, error = %why, "chunk request failed");
                failures += 1;
                t.requeue((address, len));
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
    /// Bytes of chunks the pull may bring; past them it stops with `OverDeclared`.
    pub max_bytes: Option<u64>,
}

/// Stores what the workers deliver; hands each block to `arrivals` once it is stored and
/// lands the current batch early when the reader there waits for a block in it.
fn store_blocks(
    session: &Session,
    mut rx: mpsc::Receiver<ToWriter>,
    arrivals: Option<&Arrivals>,
) -> Result<(), StoreError> {
    // What arrived is landed at least this often, so that a killed node resumes from about
    // where it stopped (DESIGN.md, "What a kill costs").
    const LAND_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
    let mut w = session.writer();
    let mut landed = std::time::Instant::now();
    while let Some(ToWriter::Block(a, b)) = rx.blocking_recv() {
        w.put(a, &b)?;
        if landed.elapsed() >= LAND_EVERY {
            w.land()?;
            landed = std::time::Instant::now();
        }
        if let Some(o) = arrivals {
            o.arrived(a, b);
            if o.take_flush_request() {
                w.flush()?;
                o.flushed();
            }
        }
    }
    w.finish().map(|_| ())
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
    } = plan;
    let total_missing = missing.len();
    // Unknown lengths (a keyless walk) count as the largest a chunk may be.
    let bytes_total: u64 = missing.iter().map(|(_, l)| l.unwrap_or(0) as u64).sum();
    let t = Arc::new(Transfer {
        queue: Mutex::new(missing),
        changed: Notify::new(),
        remaining: AtomicUsize::new(total_missing),
        bytes_done: AtomicU64::new(0),
        budget: max_bytes.unwrap_or(u64::MAX),
        over: AtomicBool::new(false),
    });

    let (wtx, wrx) = mpsc::channel::<ToWriter>(8);
    let s = Arc::clone(session);
    let to_output = arrivals.clone();
    let mut writer =
        tokio::task::spawn_blocking(move || store_blocks(&s, wrx, to_output.as_deref()));
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
        }
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
    {
        let s = Arc::clone(session);
        let manifests = std::mem::take(&mut walked.new_manifests);
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
    let addrs: Vec<BlockAddress> = walked.chunks.iter().map(|(a, _)| *a).collect();
    let have = {
        let s = Arc::clone(session);
        blocking(move || s.claim_present(&addrs)).await??
    };
    let missing: VecDeque<(BlockAddress, Option<usize>)> = walked
        .chunks
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
