//! Walking an item's manifests: the one walk that fetch, replica intake and repair share.
//!
//! From the root, each manifest block is taken from the store (claimed by the session) or
//! fetched from a provider and checked against its address. With the item's key (a user's
//! fetch) each manifest is opened, its kind checked and its chunks' lengths learnt; without it
//! (a replica held for someone else) the walk follows the public link list in each
//! manifest's header, which names every block the manifest points to and nothing more.
//! New manifests are written to the session in batches as the walk goes (a crafted tree, or a
//! real folder of a million files, is never held in memory whole); the caller stores the last
//! batch. A walk may be given a byte budget (a replica's declared size): past it, it stops.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use tokio::sync::mpsc;

use crate::content::crypto::TAG_LEN;
use crate::content::manifest::{self, LinkKind, MAX_MANIFEST_BLOCK};
use crate::content::{BlockAddress, BlockKey, ContentError, Manifest, Tree};
use crate::network::{ChunkRequest, ChunkResponse};
use crate::store::{Session, StoreError};

use crate::node::{blocking, Client, NodeError};

/// Most manifests one item may have: a bound on a crafted item's walk.
const MAX_MANIFESTS: usize = 1_000_000;

/// Providers as they are discovered, and the ones that misbehaved.
pub(crate) struct ProviderPool {
    /// Each provider found, and whether it claims the whole item (a DHT provider record)
    /// rather than only its root block (a "have" answer: maybe a peer still fetching it).
    pub(crate) rx: Option<mpsc::Receiver<(PeerId, bool)>>,
    pub(crate) known: Vec<PeerId>,
    pub(crate) bad: HashSet<PeerId>,
    /// Providers whose record claims the whole item: "not found" from them is a lie.
    pub(crate) claim_whole: HashSet<PeerId>,
}

impl ProviderPool {
    /// Starts discovery: direct "have" questions to connected and recently seen peers, and
    /// a DHT search, again and again (1 s doubling to 30 s between attempts) for as long as
    /// the pool lives — a first search that ends empty on a young or churning network is not
    /// the last word; the caller's stall timeout is.
    pub(crate) async fn discover(client: &Client, root: BlockAddress) -> Result<Self, NodeError> {
        let (tx, rx) = mpsc::channel(64);
        // Fail now, not in the background, if the node has stopped.
        client.nearby_peers().await?;
        let client = client.clone();
        tokio::spawn(async move {
            let mut pause = Duration::from_secs(1);
            loop {
                let Ok(nearby) = client.nearby_peers().await else {
                    return;
                };
                for peer in nearby {
                    let (client, tx) = (client.clone(), tx.clone());
                    tokio::spawn(async move {
                        let ask = client.request(peer, ChunkRequest::Have(vec![root]));
                        if let Ok(Ok(ChunkResponse::Have(bits))) =
                            tokio::time::timeout(Duration::from_secs(5), ask).await
                        {
                            if bits.first() == Some(&true) {
                                let _ = tx.send((peer, false)).await;
                            }
                        }
                    });
                }
                let Ok(mut dht) = client.providers(root).await else {
                    return;
                };
                while let Some(p) = dht.recv().await {
                    if tx.send((p, true)).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(30));
            }
        });
        Ok(Self {
            rx: Some(rx),
            known: Vec::new(),
            bad: HashSet::new(),
            claim_whole: HashSet::new(),
        })
    }

    fn add(&mut self, (p, whole): (PeerId, bool)) -> bool {
        if whole {
            self.claim_whole.insert(p);
        }
        if self.bad.contains(&p) || self.known.contains(&p) {
            return false;
        }
        self.known.push(p);
        true
    }

    /// Takes every provider discovered so far without waiting.
    pub(crate) fn drain(&mut self) {
        while let Some(Ok(p)) = self.rx.as_mut().map(|rx| rx.try_recv()) {
            self.add(p);
        }
    }

    /// Waits for the next new provider until `deadline`; `None` when discovery is over.
    pub(crate) async fn next_new(&mut self, deadline: Instant) -> Option<PeerId> {
        loop {
            let rx = self.rx.as_mut()?;
            match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                Ok(Some(found)) => {
                    if self.add(found) {
                        return Some(found.0);
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
    let deadline = started + stall;
    // A provider that said "not found" is not asked again for this manifest; one that was
    // busy or did not answer is, after a pause that doubles (as chunk workers do): a class
    // fetching from one busy teacher must not fail with "no providers".
    let mut not_here = HashSet::new();
    let mut retry: HashMap<PeerId, (u32, Instant)> = HashMap::new();
    loop {
        pool.drain();
        let now = Instant::now();
        let askable = |p: &PeerId| !not_here.contains(p) && !pool.bad.contains(p);
        let candidate = pool
            .known
            .iter()
            .find(|p| askable(p) && retry.get(*p).is_none_or(|(_, at)| *at <= now))
            .copied();
        let peer = match candidate {
            Some(p) => p,
            None => {
                let next_retry = retry
                    .iter()
                    .filter(|(p, _)| askable(p))
                    .map(|(_, (_, at))| *at)
                    .min()
                    .filter(|at| *at < deadline);
                let wake = next_retry.unwrap_or(deadline);
                if pool.rx.is_none() {
                    // Discovery is over: only a pause before a retry is left to wait for.
                    match next_retry {
                        Some(at) => {
                            tokio::time::sleep_until(at.into()).await;
                            continue;
                        }
                        None => return Err(no_providers(address, started)),
                    }
                }
                match pool.next_new(wake).await {
                    Some(p) => p,
                    None if next_retry.is_some() => continue,
                    None if pool.rx.is_none() && Instant::now() < deadline => continue,
                    None => return Err(no_providers(address, started)),
                }
            }
        };
        let answer = client
            .request(peer, ChunkRequest::GetManifest(address))
            .await;
        match answer {
            Ok(ChunkResponse::Block(b)) if b.len() <= MAX_MANIFEST_BLOCK && address.matches(&b) => {
                return Ok((b, true))
            }
            Ok(ChunkResponse::Block(_)) => {
                tracing::warn!(peer = %peer, cid = %address, "peer sent a manifest that does not match its address; dropping it");
                client.report(peer, crate::node::Offence::BadBlock).await;
                pool.bad.insert(peer);
                dropped.push(peer.to_string());
            }
            Ok(ChunkResponse::NotFound) => {
                not_here.insert(peer);
            }
            other => {
                match &other {
                    Ok(o) => {
                        tracing::debug!(peer = %peer, cid = %address, response = ?o, "manifest not served; asking again later")
                    }
                    Err(e) => {
                        tracing::debug!(peer = %peer, cid = %address, error = %e, "manifest request failed; asking again later")
                    }
                }
                let (tries, at) = retry.entry(peer).or_insert((0, now));
                *tries += 1;
                if *tries > MANIFEST_RETRIES {
                    not_here.insert(peer);
                } else {
                    *at = Instant::now() + RETRY_PAUSE * 2u32.pow(*tries - 1).min(32);
                }
            }
        }
    }
}

/// Times one provider is asked again for a manifest after a busy or missing answer.
const MANIFEST_RETRIES: u32 = 6;
/// The first pause before asking again (doubling up to 32 times this).
const RETRY_PAUSE: Duration = Duration::from_millis(250);

fn no_providers(address: BlockAddress, started: Instant) -> NodeError {
    NodeError::NoProviders {
        item: address.into(),
        secs: started.elapsed().as_secs(),
    }
}

/// What a walk found.
pub(crate) struct Walked {
    /// The item's name, kind and plaintext size (only when walked with its key).
    pub name: String,
    pub kind: &'static str,
    pub size: u64,
    /// Manifest blocks fetched from the network and not yet written, for the caller to store.
    pub new_manifests: Vec<(BlockAddress, Vec<u8>)>,
    /// Bytes of every manifest fetched from the network (written or not).
    pub new_manifest_bytes: u64,
    /// How many there were (the list itself is handed to the writer).
    pub new_manifests_count: usize,
    /// Every chunk of the item, deduplicated, in order, with the largest its sealed block may
    /// be when known (a compressed chunk is smaller).
    pub chunks: Vec<(BlockAddress, Option<usize>)>,
}

enum Expect {
    Item,
    ChunkPage,
    EntryPage,
}

/// Manifest bytes the walk holds before it writes them to the session.
const WRITE_BATCH: usize = 8 << 20;

/// Writes `batch` of new manifests through the session (claimed by it, so GC keeps them).
async fn write_manifests(
    session: &Arc<Session>,
    batch: Vec<(BlockAddress, Vec<u8>)>,
) -> Result<(), NodeError> {
    let s = Arc::clone(session);
    blocking(move || -> Result<(), StoreError> {
        let mut w = s.writer();
        for (a, b) in &batch {
            w.put(*a, b)?;
        }
        w.finish().map(|_| ())
    })
    .await??;
    Ok(())
}

/// Walks the item rooted at `root`, opening manifests with `key` when it is given. `limit`
/// bounds the bytes of manifests fetched from the network.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn walk(
    client: &Client,
    session: &Arc<Session>,
    pool: &mut ProviderPool,
    root: BlockAddress,
    key: Option<BlockKey>,
    stall: Duration,
    limit: Option<u64>,
    dropped: &mut Vec<String>,
) -> Result<Walked, NodeError> {
    let (mut fetched, mut batch) = (0u64, 0usize);
    let mut out = Walked {
        name: String::new(),
        kind: "file",
        size: 0,
        new_manifests: vec![],
        new_manifest_bytes: 0,
        new_manifests_count: 0,
        chunks: vec![],
    };
    let mut seen = HashSet::new();
    let mut seen_chunks = HashSet::new();
    let mut stack: VecDeque<(BlockAddress, Option<BlockKey>, Expect)> = VecDeque::new();
    stack.push_back((root, key, Expect::Item));
    let mut first = true;
    while let Some((address, key, expect)) = stack.pop_front() {
        // A manifest reached twice (shared subtrees) is walked once.
        if !seen.insert(address) {
            continue;
        }
        if seen.len() > MAX_MANIFESTS {
            return Err(malformed(root, "more than a million manifests"));
        }
        let (block, new) = manifest_block(client, session, pool, address, stall, dropped).await?;
        let opened = match &key {
            Some(k) => Ok(Manifest::open(address, k, &block)?),
            None => Err(manifest::parse_links(address, &block)
                .map_err(|e| malformed(address, &e.to_string()))?),
        };
        if new {
            fetched += block.len() as u64;
            if let Some(limit) = limit.filter(|l| fetched > *l) {
                return Err(NodeError::OverDeclared {
                    item: root.into(),
                    limit,
                });
            }
            batch += block.len();
            out.new_manifests.push((address, block));
            out.new_manifests_count += 1;
            if batch >= WRITE_BATCH {
                write_manifests(session, std::mem::take(&mut out.new_manifests)).await?;
                batch = 0;
            }
        }
        let m = match opened {
            Ok(m) => m,
            Err(links) => {
                let mut next = Vec::new();
                for l in links {
                    match l.kind {
                        LinkKind::Manifest => next.push((l.address, None, Expect::Item)),
                        LinkKind::Chunk if seen_chunks.insert(l.address) => {
                            out.chunks.push((l.address, None))
                        }
                        LinkKind::Chunk => {}
                    }
                }
                visit_next(&mut stack, next.into_iter());
                continue;
            }
        };
        let ok = matches!(
            (&m, &expect),
            (
                Manifest::File(_) | Manifest::Dir(_) | Manifest::Link(_),
                Expect::Item
            ) | (Manifest::ChunkPage(_), Expect::ChunkPage)
                | (Manifest::EntryPage(_), Expect::EntryPage)
        );
        if !ok {
            return Err(malformed(address, "manifest of an unexpected kind"));
        }
        let mut chunk_tree = |t: Tree<crate::content::ChunkRef>, stack: &mut VecDeque<_>| match t {
            Tree::Leaves(v) => {
                for c in v {
                    if seen_chunks.insert(c.address) {
                        out.chunks
                            .push((c.address, Some(c.len as usize + 1 + TAG_LEN)));
                    }
                }
            }
            Tree::Pages(p) => visit_next(
                stack,
                p.into_iter()
                    .map(|p| (p.address, Some(p.key), Expect::ChunkPage)),
            ),
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
            // A link names no block: nothing to follow (and it is never followed).
            Manifest::Link(l) => {
                if first {
                    (out.name, out.kind) = (l.name.clone(), "link");
                }
            }
        }
        first = false;
    }
    out.new_manifest_bytes = fetched;
    Ok(out)
}

fn malformed(address: BlockAddress, reason: &str) -> NodeError {
    NodeError::Content(ContentError::MalformedManifest {
        address,
        reason: reason.into(),
    })
}

fn entry_tree(
    t: Tree<crate::content::DirEntry>,
    stack: &mut VecDeque<(BlockAddress, Option<BlockKey>, Expect)>,
) {
    match t {
        Tree::Leaves(v) => visit_next(
            stack,
            v.into_iter()
                .map(|e| (e.address, Some(e.key), Expect::Item)),
        ),
        Tree::Pages(p) => visit_next(
            stack,
            p.into_iter()
                .map(|p| (p.address, Some(p.key), Expect::EntryPage)),
        ),
    }
}

/// Queues a manifest's children ahead of everything else, in order: the walk is depth-first,
/// so chunks are listed in the order `get` writes them, and a fetch writing its output as
/// chunks arrive asks for them in that order.
fn visit_next<T>(stack: &mut VecDeque<T>, children: impl Iterator<Item = T>) {
    let children: Vec<T> = children.collect();
    for c in children.into_iter().rev() {
        stack.push_front(c);
    }
}
