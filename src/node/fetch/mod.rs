//! Fetching an item by content ID from the network.
//!
//! 1. Find providers: connected and recently seen peers are asked directly ("have ROOT?") while the DHT is
//!    searched, so a LAN fetch does not wait on the DHT.
//! 2. Walk the manifests from the root with the item's key ([`walk`](walk)), fetching
//!    any not held, and list the chunks missing here — chunks already held are never fetched
//!    again, so an interrupted fetch resumes.
//! 3. Pull the missing chunks from every provider in parallel
//!    ([`transfer`](transfer)), writing the output meanwhile when there is one
//!    ([`output`](output)): `fetch -o` ends with the file on disk about when the last
//!    chunk lands, not one full pass later.
//! 4. Pin (marked partial until the last chunk lands, so GC keeps what arrived across a
//!    restart) and provide. A read (`cat`, the gateway) pins nothing: its session is its
//!    lease, and pins stay the user's alone.
//!
//! All of it runs in one store [`Session`]: every manifest and chunk it finds already held is
//! claimed before it relies on it, every block it writes is claimed, and the final pin is the
//! session's commit, which refuses an item that is not whole — so a concurrent `gc` can
//! neither take blocks from under a fetch nor make it report success for an incomplete item.
//!
//! Every block is checked against its address (and its expected length) before it is
//! written; memory is bounded by the windows and the writer's queue, not the item size.

pub(crate) mod output;
pub(crate) mod resume;
pub(crate) mod stripes;
pub(crate) mod transfer;
pub(crate) mod walk;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::content::ContentId;
use crate::store::{Holding, PinRecord, Session, SessionKind, Store, StoreError};

use crate::files::Output;

use super::{blocking, now_secs, Client, NodeError};
use transfer::{bring, Bring, Pace, Streaming};

/// How a fetch behaves.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Pin the item when complete (and provide it).
    pub pin: bool,
    /// Outstanding chunk requests per provider.
    pub window: usize,
    /// How long to look for a first provider, and how long the transfer may make no progress.
    pub stall_timeout: Duration,
    /// How long the whole fetch may take; `None`: as long as it makes progress.
    pub deadline: Option<Duration>,
    /// The pin is storgo's own (a followed collection's version), not the user's: kept and
    /// replicated like any, not listed by `ls` or the page.
    pub internal: bool,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            pin: true,
            window: 8,
            stall_timeout: Duration::from_secs(60),
            deadline: None,
            internal: false,
        }
    }
}

/// Progress of a running fetch.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FetchProgress {
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub peers: usize,
}

/// What a finished fetch did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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

/// Fetches the item `id` into `store`, writing it to `output` as its chunks arrive when
/// given; see the module docs.
pub async fn fetch(
    client: &Client,
    store: &Arc<Store>,
    id: &ContentId,
    opts: &FetchOptions,
    progress: &(dyn Fn(FetchProgress) + Send + Sync),
    output: Option<Output>,
) -> Result<FetchReport, NodeError> {
    let session = begin_session(store, SessionKind::Fetch, id.to_string()).await?;
    fetch_in(client, store, &session, id, opts, progress, output).await
}

/// Starts a store session (off the async threads: it writes the index).
pub async fn begin_session(
    store: &Arc<Store>,
    kind: SessionKind,
    label: String,
) -> Result<Arc<Session>, NodeError> {
    let s = Arc::clone(store);
    Ok(Arc::new(blocking(move || s.session(kind, &label)).await??))
}

/// [`fetch`] inside the caller's `session`. Without `opts.pin`, the fetched item is protected
/// by nothing but that session: the caller reads it before dropping the session. Errors name
/// the item by `id`.
pub async fn fetch_in(
    client: &Client,
    store: &Arc<Store>,
    session: &Arc<Session>,
    id: &ContentId,
    opts: &FetchOptions,
    progress: &(dyn Fn(FetchProgress) + Send + Sync),
    output: Option<Output>,
) -> Result<FetchReport, NodeError> {
    // Errors name the item by `id`, once, here: what is below names blocks.
    async {
        let began = std::time::Instant::now();
        // A pin writes its row, partial, once the manifests are here: from then on whatever
        // arrives survives a restart of the node. A read writes no row at all: the caller's
        // session is its lease (its claims keep every block it touches until it ends, and a
        // crash ends it), so a read can neither delete a pin made meanwhile nor undo an unpin.
        let already = if opts.pin {
            store.pin_of(&id.root)?
        } else {
            None
        };
        let pin_partial = opts.pin && already.as_ref().is_none_or(|p| p.partial);
        let pinned_at = already
            .as_ref()
            .map(|p| p.pinned_at)
            .unwrap_or_else(now_secs);
        let record = |w: &walk::Walked| PinRecord {
            id: id.to_string(),
            name: w.name.clone(),
            kind: w.kind.into(),
            size: w.size,
            pinned_at,
            partial: true,
            for_reading: false,
            replicas: already.as_ref().and_then(|p| p.replicas),
            internal: opts.internal && already.as_ref().is_none_or(|p| p.internal),
            durability: already.as_ref().and_then(|p| p.durability),
            stripe_map: already.as_ref().and_then(|p| p.stripe_map),
        };
        let partial = |w: &walk::Walked| pin_partial.then(|| Holding::Pin(record(w)));
        let what = Bring {
            root: id.root,
            key: Some(id.key),
            partial: &partial,
            pace: Pace {
                window: opts.window,
                stall_timeout: opts.stall_timeout,
                deadline: opts.deadline,
                max_bytes: None,
            },
            progress,
            streaming: output.map(|output| Streaming {
                store: Arc::clone(store),
                id: *id,
                output,
            }),
            shard: None,
        };
        let brought = bring(client, session, what).await?;
        let (walked, pulled, mut dropped) = (brought.walked, brought.pulled, brought.dropped);
        let record = record(&walked);

        if opts.pin {
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
            // A read: the caller's session alone keeps the item while it is read.
            let (s, root) = (Arc::clone(session), id.root);
            let missing = blocking(move || s.claim_item(&root)).await??;
            if !missing.is_empty() {
                return Err(StoreError::Incomplete {
                    root: id.root,
                    missing: missing.len() as u64,
                }
                .into());
            }
        }
        dropped.sort();
        dropped.dedup();
        tracing::info!(id = %id.short(), chunks = pulled.blocks, bytes = pulled.bytes, "fetched");
        client
            .counters()
            .fetch_seconds
            .observe(began.elapsed().as_secs_f64());
        Ok(FetchReport {
            id: id.to_string(),
            name: walked.name,
            kind: walked.kind.into(),
            size: walked.size,
            chunks_total: walked.chunks.len(),
            chunks_fetched: pulled.blocks,
            bytes_fetched: pulled.bytes,
            peers_used: pulled.peers_used,
            peers_dropped: dropped,
        })
    }
    .await
    .map_err(|e: NodeError| e.naming(id))
}
