//! Fetching an item by content ID from the network.
//!
//! 1. Find providers: connected and recently seen peers are asked directly ("have ROOT?") while the DHT is
//!    searched, so a LAN fetch does not wait on the DHT.
//! 2. Walk the manifests from the root, fetching any not held, and list the chunks missing
//!    here — chunks already held are never fetched again, so an interrupted fetch resumes.
//! 3. Pull the missing chunks from every provider in parallel, each with a window of
//!    outstanding requests; a failed or timed-out chunk goes back in the queue for another
//!    provider; a provider that sends bytes not matching the address is dropped.
//! 4. Pin (marked partial until the last chunk lands, so GC keeps what arrived across a
//!    restart) and provide.
//!
//! All of it runs in one store [`Session`]: every manifest and chunk it finds already held is
//! claimed before it relies on it, every block it writes is claimed, and the final pin is the
//! session's commit, which refuses an item that is not whole — so a concurrent `gc` can
//! neither take blocks from under a fetch nor make it report success for an incomplete item.
//!
//! Every block is checked against its address (and its expected length) before it is
//! written; memory is bounded by the windows and the writer's queue, not the item size.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify};

use crate::content::crypto::TAG_LEN;
use crate::content::manifest::MAX_MANIFEST_BLOCK;
use crate::content::{BlockAddress, BlockKey, ContentId, Manifest, Tree};
use crate::network::{ChunkRequest, ChunkResponse};
use crate::store::{PinRecord, Session, SessionKind, Store, StoreError};

use super::{Client, NodeError};

/// How a fetch behaves.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Pin the item when complete (and provide it).
    pub pin: bool,
    /// Outstanding chunk requests per provider.
    pub window: usize,
    /// How long to look for a first provider, and how long the transfer may make no progress.
    pub stall_timeout: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            pin: true,
            window: 8,
            stall_timeout: Duration::from_secs(60),
        }
    }
}

/// Progress of a running fetch.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct FetchProgress {
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub peers: usize,
}

/// What a finished fetch did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchReport {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub size: u64,
    pub chunks_total: usize,
    /// Chunks that had to come from the network (the rest were already here).
    pub chunks_fetched: usize,
    pub bytes_fetched: u64,
    pub peers_used: Vec<String>,
    pub peers_dropped: Vec<String>,
}

/// Providers as they are discovered, and the ones that misbehaved.
struct ProviderPool {
    rx: Option<mpsc::Receiver<PeerId>>,
    known: Vec<PeerId>,
    bad: HashSet<PeerId>,
}

impl ProviderPool {
    /// Starts discovery: direct "have" questions to connected peers, and a DHT search.
    async fn discover(client: &Client, root: BlockAddress) -> Result<Self, NodeError> {
        let (tx, rx) = mpsc::channel(64);
        let mut dht = client.providers(root).await?;
        let fwd = tx.clone();
        tokio::spawn(async move {
            while let Some(p) = dht.recv().await {
                if fwd.send(p).await.is_err() {
                    break;
                }
            }
        });
        for peer in client.nearby_peers().await? {
            let (client, tx) = (client.clone(), tx.clone());
            tokio::spawn(async move {
                let ask = client.request(peer, ChunkRequest::Have(vec![root]));
                if let Ok(Ok(ChunkResponse::Have(bits))) =
                    tokio::time::timeout(Duration::from_secs(5), ask).await
                {
                    if bits.first() == Some(&true) {
                        let _ = tx.send(peer).await;
                    }
                }
            });
        }
        Ok(Self {
            rx: Some(rx),
            known: Vec::new(),
            bad: HashSet::new(),
        })
    }

    fn add(&mut self, p: PeerId) -> bool {
        if self.bad.contains(&p) || self.known.contains(&p) {
            return false;
        }
        self.known.push(p);
        true
    }

    /// Takes every provider discovered so far without waiting.
    fn drain(&mut self) {
        while let Some(Ok(p)) = self.rx.as_mut().map(|rx| rx.try_recv()) {
            self.add(p);
        }
    }

    /// Waits for the next new provider until `deadline`; `None` when discovery is over.
    async fn next_new(&mut self, deadline: Instant) -> Option<PeerId> {
        loop {
            let rx = self.rx.as_mut()?;
            match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                Ok(Some(p)) => {
                    if self.add(p) {
                        return Some(p);
                    }
                }
                Ok(None) => {
                    self.rx = None;
                    return None;
                }
                Err(_) => return None,
            }
        }
    }
}

/// Fetches a manifest block from the store or from a provider.
async fn manifest_block(
    client: &Client,
    session: &Arc<Session>,
    pool: &mut ProviderPool,
    address: BlockAddress,
    stall: Duration,
    dropped: &mut Vec<String>,
) -> Result<(Vec<u8>, bool), NodeError> {
    let s = Arc::clone(session);
    match blocking(move || s.read_manifest(&address)).await? {
        Ok(b) => return Ok((b, false)),
        Err(StoreError::Missing { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let started = Instant::now();
    let mut tried = HashSet::new();
    loop {
        pool.drain();
        let candidate = pool
            .known
            .iter()
            .find(|p| !tried.contains(*p) && !pool.bad.contains(*p))
            .copied();
        let peer = match candidate {
            Some(p) => p,
            None => match pool.next_new(started + stall).await {
                Some(p) => p,
                None => {
                    return Err(NodeError::NoProviders {
                        root: address,
                        secs: started.elapsed().as_secs(),
                    });
                }
            },
        };
        tried.insert(peer);
        match client
            .request(peer, ChunkRequest::GetManifest(address))
            .await
        {
            Ok(ChunkResponse::Block(b)) if b.len() <= MAX_MANIFEST_BLOCK && address.matches(&b) => {
                return Ok((b, true))
            }
            Ok(ChunkResponse::Block(_)) => {
                tracing::warn!(peer = %peer, cid = %address, "peer sent a manifest that does not match its address; dropping it");
                pool.bad.insert(peer);
                dropped.push(peer.to_string());
            }
            Ok(other) => {
                tracing::debug!(peer = %peer, cid = %address, response = ?other, "manifest not served")
            }
            Err(e) => {
                tracing::debug!(peer = %peer, cid = %address, error = %e, "manifest request failed")
            }
        }
    }
}

struct Walked {
    name: String,
    kind: &'static str,
    size: u64,
    new_manifests: Vec<(BlockAddress, Vec<u8>)>,
    /// Every chunk of the item with its sealed length, deduplicated, in order.
    chunks: Vec<(BlockAddress, usize)>,
}

enum Expect {
    Item,
    ChunkPage,
    EntryPage,
}

async fn walk(
    client: &Client,
    session: &Arc<Session>,
    pool: &mut ProviderPool,
    id: &ContentId,
    stall: Duration,
    dropped: &mut Vec<String>,
) -> Result<Walked, NodeError> {
    let mut out = Walked {
        name: String::new(),
        kind: "file",
        size: 0,
        new_manifests: vec![],
        chunks: vec![],
    };
    let mut seen_chunks = HashSet::new();
    let mut stack: VecDeque<(BlockAddress, BlockKey, Expect)> = VecDeque::new();
    stack.push_back((id.root, id.key, Expect::Item));
    let mut first = true;
    let mut count = 0usize;
    while let Some((address, key, expect)) = stack.pop_front() {
        count += 1;
        if count > 1_000_000 {
            return Err(NodeError::Content(
                crate::content::ContentError::MalformedManifest {
                    address: id.root,
                    reason: "more than a million manifests".into(),
                },
            ));
        }
        let (block, new) = manifest_block(client, session, pool, address, stall, dropped).await?;
        let m = Manifest::open(address, &key, &block)?;
        if new {
            out.new_manifests.push((address, block));
        }
        let ok = matches!(
            (&m, &expect),
            (Manifest::File(_) | Manifest::Dir(_), Expect::Item)
                | (Manifest::ChunkPage(_), Expect::ChunkPage)
                | (Manifest::EntryPage(_), Expect::EntryPage)
        );
        if !ok {
            return Err(NodeError::Content(
                crate::content::ContentError::MalformedManifest {
                    address,
                    reason: "manifest of an unexpected kind".into(),
                },
            ));
        }
        let mut chunk_tree = |t: Tree<crate::content::ChunkRef>, stack: &mut VecDeque<_>| match t {
            Tree::Leaves(v) => {
                for c in v {
                    if seen_chunks.insert(c.address) {
                        out.chunks.push((c.address, c.len as usize + TAG_LEN));
                    }
                }
            }
            Tree::Pages(p) => {
                stack.extend(p.into_iter().map(|p| (p.address, p.key, Expect::ChunkPage)))
            }
        };
        match m {
            Manifest::File(f) => {
                if first {
                    (out.name, out.size, out.kind) = (f.name.clone(), f.size, "file");
                }
                chunk_tree(f.chunks, &mut stack);
            }
            Manifest::ChunkPage(t) => chunk_tree(t, &mut stack),
            Manifest::Dir(d) => {
                if first {
                    (out.name, out.size, out.kind) = (d.name.clone(), d.size, "dir");
                }
                entry_tree(d.entries, &mut stack);
            }
            Manifest::EntryPage(t) => entry_tree(t, &mut stack),
        }
        first = false;
    }
    Ok(out)
}

fn entry_tree(
    t: Tree<crate::content::DirEntry>,
    stack: &mut VecDeque<(BlockAddress, BlockKey, Expect)>,
) {
    match t {
        Tree::Leaves(v) => stack.extend(v.into_iter().map(|e| (e.address, e.key, Expect::Item))),
        Tree::Pages(p) => {
            stack.extend(p.into_iter().map(|p| (p.address, p.key, Expect::EntryPage)))
        }
    }
}

/// Shared state of the chunk download.
struct Transfer {
    queue: Mutex<VecDeque<(BlockAddress, usize)>>,
    changed: Notify,
    remaining: AtomicUsize,
    bytes_done: AtomicU64,
}

impl Transfer {
    fn requeue(&self, job: (BlockAddress, usize)) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(job);
        self.changed.notify_waiters();
    }

    /// The first queued job not known to be missing at this peer.
    fn take(&self, skip: &HashSet<BlockAddress>) -> Option<(BlockAddress, usize)> {
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
    Failed(String),
}

/// Why a provider's worker stopped.
enum WorkerEnd {
    Done,
    Dropped(PeerId, &'static str),
}

async fn worker(
    client: Client,
    peer: PeerId,
    t: Arc<Transfer>,
    writer: mpsc::Sender<(BlockAddress, Vec<u8>)>,
    window: usize,
) -> WorkerEnd {
    let mut inflight = FuturesUnordered::new();
    let mut jobs: HashMap<BlockAddress, usize> = HashMap::new();
    let mut missing_here = HashSet::new();
    let mut failures = 0u32;
    let drop_peer = |jobs: HashMap<BlockAddress, usize>, why| {
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
            Ok(ChunkResponse::Block(b)) if b.len() == len => {
                match tokio::task::spawn_blocking(move || address.matches(&b).then_some(b)).await {
                    Ok(Some(b)) => Outcome::Good(b),
                    Ok(None) => Outcome::Corrupt,
                    Err(_) => Outcome::Failed("verification task failed".into()),
                }
            }
            Ok(ChunkResponse::Block(_)) => Outcome::Corrupt,
            Ok(ChunkResponse::NotFound) => Outcome::NotHere,
            Ok(other) => Outcome::Failed(format!("{other:?}")),
            Err(e) => Outcome::Failed(e.to_string()),
        };
        match outcome {
            Outcome::Good(b) => {
                failures = 0;
                let n = b.len() as u64;
                if writer.send((address, b)).await.is_err() {
                    return WorkerEnd::Done;
                }
                client.add_fetched(n);
                t.bytes_done.fetch_add(n, Ordering::Relaxed);
                t.remaining.fetch_sub(1, Ordering::AcqRel);
                t.changed.notify_waiters();
            }
            Outcome::Corrupt => {
                tracing::warn!(peer = %peer, cid = %address, "peer sent bytes that do not match the chunk address; dropping it");
                jobs.insert(address, len);
                return drop_peer(jobs, "sent corrupt chunks");
            }
            Outcome::NotHere => {
                missing_here.insert(address);
                t.requeue((address, len));
            }
            Outcome::Failed(why) => {
                tracing::debug!(peer = %peer, cid = %address, error = %why, "chunk request failed");
                failures += 1;
                t.requeue((address, len));
            }
        }
        if failures >= 3 {
            return drop_peer(jobs, "stopped answering");
        }
    }
}

/// Runs blocking store work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NodeError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        NodeError::Store(StoreError::io(
            "store task",
            "(blocking pool)",
            std::io::Error::other(e),
        ))
    })
}

/// Fetches the item `id` into `store`; see the module docs.
pub async fn fetch(
    client: &Client,
    store: &Arc<Store>,
    id: &ContentId,
    opts: &FetchOptions,
    progress: &(dyn Fn(FetchProgress) + Send + Sync),
) -> Result<FetchReport, NodeError> {
    let session = begin_session(store, SessionKind::Fetch, id).await?;
    fetch_in(client, store, &session, id, opts, progress).await
}

/// Starts a store session for work on `id` (off the async threads: it writes the index).
pub async fn begin_session(
    store: &Arc<Store>,
    kind: SessionKind,
    id: &ContentId,
) -> Result<Arc<Session>, NodeError> {
    let (s, label) = (Arc::clone(store), id.to_string());
    Ok(Arc::new(blocking(move || s.session(kind, &label)).await??))
}

/// [`fetch`] inside the caller's `session`. Without `opts.pin`, the fetched item is protected
/// by nothing but that session: the caller reads it before dropping the session.
pub async fn fetch_in(
    client: &Client,
    store: &Arc<Store>,
    session: &Arc<Session>,
    id: &ContentId,
    opts: &FetchOptions,
    progress: &(dyn Fn(FetchProgress) + Send + Sync),
) -> Result<FetchReport, NodeError> {
    let mut pool = ProviderPool::discover(client, id.root).await?;
    let mut dropped = Vec::new();
    let walked = walk(
        client,
        session,
        &mut pool,
        id,
        opts.stall_timeout,
        &mut dropped,
    )
    .await?;

    // Manifests first, then a partial pin: from here on GC keeps whatever arrives, even
    // across a restart of the node (the session's claims keep it until then).
    let already = store.pin_of(&id.root)?;
    let record = PinRecord {
        id: id.to_string(),
        name: walked.name.clone(),
        kind: walked.kind.into(),
        size: walked.size,
        pinned_at: already
            .as_ref()
            .map(|p| p.pinned_at)
            .unwrap_or_else(now_secs),
        partial: true,
    };
    let pin_partial = already.as_ref().is_none_or(|p| p.partial);
    {
        let (s, manifests, record) = (Arc::clone(session), walked.new_manifests, record.clone());
        blocking(move || -> Result<(), StoreError> {
            let mut w = s.writer();
            for (a, b) in &manifests {
                w.put(*a, b)?;
            }
            w.finish()?;
            if pin_partial {
                s.pin_partial(&record)?;
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
    let missing: VecDeque<(BlockAddress, usize)> = walked
        .chunks
        .iter()
        .zip(have)
        .filter(|(_, h)| !h)
        .map(|(c, _)| *c)
        .collect();
    let total_missing = missing.len();
    let bytes_total: u64 = missing.iter().map(|(_, l)| *l as u64).sum();
    let t = Arc::new(Transfer {
        queue: Mutex::new(missing),
        changed: Notify::new(),
        remaining: AtomicUsize::new(total_missing),
        bytes_done: AtomicU64::new(0),
    });

    let (wtx, mut wrx) = mpsc::channel::<(BlockAddress, Vec<u8>)>(16);
    let s = Arc::clone(session);
    let writer = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
        let mut w = s.writer();
        while let Some((a, b)) = wrx.blocking_recv() {
            w.put(a, &b)?;
        }
        w.finish().map(|_| ())
    });
    let mut used = HashSet::new();
    let mut workers = tokio::task::JoinSet::new();
    let mut last_progress = (Instant::now(), 0usize);
    let mut outcome: Result<(), NodeError> = Ok(());
    pool.drain();
    for p in pool.known.clone() {
        if used.insert(p) {
            workers.spawn(worker(
                client.clone(),
                p,
                Arc::clone(&t),
                wtx.clone(),
                opts.window,
            ));
        }
    }
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    while t.remaining.load(Ordering::Acquire) > 0 {
        let remaining = t.remaining.load(Ordering::Acquire);
        if remaining != last_progress.1 {
            last_progress = (Instant::now(), remaining);
        }
        if last_progress.0.elapsed() > opts.stall_timeout
            || (workers.is_empty() && pool.rx.is_none())
        {
            outcome = Err(NodeError::Incomplete {
                root: id.root,
                missing: remaining,
                total: walked.chunks.len(),
            });
            break;
        }
        tokio::select! {
            p = pool.next_new(Instant::now() + Duration::from_secs(3600)), if pool.rx.is_some() => {
                if let Some(p) = p {
                    if used.insert(p) {
                        workers.spawn(worker(client.clone(), p, Arc::clone(&t), wtx.clone(), opts.window));
                    }
                }
            }
            Some(end) = workers.join_next(), if !workers.is_empty() => {
                if let Ok(WorkerEnd::Dropped(p, why)) = end {
                    tracing::warn!(peer = %p, reason = why, "provider dropped");
                    pool.bad.insert(p);
                    dropped.push(p.to_string());
                }
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
    // Keep every chunk that arrived, even when the fetch failed: the next run resumes.
    let written = writer
        .await
        .map_err(|e| StoreError::io("writing chunks to", store.dir(), std::io::Error::other(e)))?;
    outcome?;
    written?;
    progress(FetchProgress {
        bytes_done: bytes_total,
        bytes_total,
        peers: 0,
    });

    if opts.pin || !pin_partial {
        // The session's commit walks the whole item again and refuses it unless every
        // block is here: success is never reported for an incomplete item.
        let (s, record) = (
            Arc::clone(session),
            PinRecord {
                partial: false,
                ..record
            },
        );
        blocking(move || s.commit_pin(&record)).await??;
        client.start_providing(id.root).await?;
    } else {
        // Not pinned: the caller's session alone keeps the item while it is read.
        let (s, root) = (Arc::clone(session), id.root);
        let missing = blocking(move || s.claim_item(&root)).await??;
        if !missing.is_empty() {
            return Err(StoreError::Incomplete {
                root: id.root,
                missing: missing.len() as u64,
            }
            .into());
        }
        store.unpin(id)?;
    }
    dropped.sort();
    dropped.dedup();
    let peers_used: Vec<String> = used.iter().map(|p| p.to_string()).collect();
    tracing::info!(cid = %id.root, chunks = total_missing, bytes = bytes_total, "fetched");
    Ok(FetchReport {
        id: id.to_string(),
        name: walked.name,
        kind: walked.kind.into(),
        size: walked.size,
        chunks_total: walked.chunks.len(),
        chunks_fetched: total_missing,
        bytes_fetched: bytes_total,
        peers_used,
        peers_dropped: dropped,
    })
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
