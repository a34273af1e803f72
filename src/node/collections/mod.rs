//! The collections service: publishing, resolving and following collections
//! (`crate::collections` holds the formats and the local rows; this is the work the node does
//! with them over the network).
//!
//! - Publishing stores the new version as an ordinary pinned item, signs the latest-version
//!   record, puts it into the DHT and pushes it to the collection's followers over gossipsub.
//! - Resolving asks the DHT for the record (this node's copy first) and keeps the highest
//!   sequence number that checks out; a version is fetched like any item and checked: its
//!   signature, its sequence number against the record's, and its link to the version this node
//!   had (walking back over any it missed), so a follower never accepts a rewritten past.
//! - Following keeps the newest version (pinned, so that the follower serves it too), puts its
//!   record into the DHT again every republish round (so it outlives the publisher), indexes
//!   it for search and, with auto-fetch, pins every new item.
//!
//! Its rooms, each an `impl Collections` block:
//!
//! - this file: the [`Collections`] service, its shared state and types, and its loop
//!   (gossip, refresh and republish timers, background work ended by [`Collections::stop`]);
//! - `publish`: drafts, delegates, read-key rotation and publishing a new version;
//! - `follow`: following and unfollowing, resolving records, taking in gossiped and DHT
//!   records and checking the versions they name;
//! - `view`: read-only queries (list, show, log, search, draft).
//!
//! It talks to the Swarm only through the node's [`Client`]; disk work runs on the blocking
//! pool.

mod follow;
mod publish;
mod view;

use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::ed25519;
use tokio::sync::{broadcast, mpsc};

use crate::collections::search::SearchIndex;
use crate::collections::{Book, CollectionError, Entry};
use crate::store::Store;

use super::{blocking, Client, GossipIn, NodeError};

/// Errors of the collections service.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Collection(#[from] CollectionError),
    #[error(transparent)]
    Node(#[from] NodeError),
}

type Result<T> = std::result::Result<T, ServiceError>;

/// Something that happened to a followed collection, for the web page and `follow`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CollectionEvent {
    /// The collection's public ID.
    pub collection: String,
    pub name: String,
    pub seq: u64,
    /// Entries new in this version.
    pub new_entries: Vec<Entry>,
}

/// A collection as `collection show` and the page show it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CollectionView {
    /// The ID to share (with the read key of a private collection).
    pub id: String,
    pub name: String,
    /// The local name, for collections this node publishes.
    #[serde(default)]
    pub local_name: Option<String>,
    pub private: bool,
    pub following: bool,
    pub auto_fetch: bool,
    /// The newest version checked, 0 when none was found yet.
    pub seq: u64,
    pub version: Option<String>,
    pub published: u64,
    /// The listing is sealed and this ID has no read key.
    pub sealed: bool,
    pub entries: Vec<Entry>,
    /// IDs of entries new in the newest version.
    pub new_entries: Vec<String>,
    /// Changes waiting for the next publish (publisher only).
    pub pending: usize,
    /// Whether this node publishes it (its key, or taken up as a delegate: a delegate's
    /// publish is refused until a version names its delegation).
    pub can_publish: bool,
}

/// One version of a collection's history, checked.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    pub seq: u64,
    pub version: String,
    pub published: u64,
    /// `owner`, or `delegate` and the delegate's key in hex.
    pub signer: String,
    pub entries: Option<usize>,
}

/// What a publish did.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Published {
    pub collection: String,
    pub seq: u64,
    pub version: String,
    pub entries: usize,
    /// Whether another DHT peer took the record (else it is kept here and put again later).
    pub in_dht: bool,
    /// Whether it was pushed to followers over gossipsub (else they find it in the DHT).
    pub pushed: bool,
}

/// The collections service of one node; clones share it.
#[derive(Clone)]
pub struct Collections {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    store: Arc<Store>,
    book: Book,
    search: SearchIndex,
    /// The node's identity: the key a delegate publishes with.
    identity: ed25519::Keypair,
    events: broadcast::Sender<CollectionEvent>,
    /// One version taken at a time per collection: a gossiped record, a refresh and a publish
    /// arriving together wait for each other (the second then finds nothing newer) instead of
    /// fetching twice or answering "nothing new" while a version is on its way.
    taking: std::sync::Mutex<std::collections::HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>,
    /// Background work (checks, refreshes, auto-fetches), ended and waited for by [`stop`]
    /// so that the store is free once the node has stopped.
    ///
    /// [`stop`]: Collections::stop
    tasks: tokio_util::task::TaskTracker,
    cancel: tokio_util::sync::CancellationToken,
    /// One publish at a time on this node: two at once would both build on the same newest
    /// version and sign two different versions with one sequence number.
    publishing: tokio::sync::Mutex<()>,
    /// Places a new version's replicas at once (the repair rounds keep them).
    replicator: super::Replicator,
}

impl Collections {
    pub fn new(
        client: Client,
        store: Arc<Store>,
        identity: ed25519::Keypair,
        replicator: super::Replicator,
    ) -> std::result::Result<Self, CollectionError> {
        let (events, _) = broadcast::channel(256);
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                book: Book::new(Arc::clone(&store)),
                store,
                search: SearchIndex::new()?,
                identity,
                events,
                taking: Default::default(),
                tasks: tokio_util::task::TaskTracker::new(),
                cancel: tokio_util::sync::CancellationToken::new(),
                publishing: tokio::sync::Mutex::new(()),
                replicator,
            }),
        })
    }

    /// Runs `work` in the background until it ends or the service stops.
    fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        let cancel = self.inner.cancel.clone();
        self.inner.tasks.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = work => {}
            }
        });
    }

    /// Ends the background work and waits for it.
    pub async fn stop(&self) {
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// New versions of followed collections, as they are accepted.
    pub fn subscribe(&self) -> broadcast::Receiver<CollectionEvent> {
        self.inner.events.subscribe()
    }

    async fn book<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Book) -> std::result::Result<T, CollectionError> + Send + 'static,
    ) -> Result<T> {
        let book = self.inner.book.clone();
        Ok(blocking(move || f(&book)).await??)
    }

    /// Joins the topics of every followed collection and indexes them; then, as the node runs,
    /// refreshes them from the DHT every `refresh` and puts their records again every
    /// `republish`; and checks what followers gossip.
    pub async fn run(
        self,
        mut gossip: mpsc::Receiver<GossipIn>,
        refresh: Duration,
        republish: Duration,
    ) {
        let followed = self.book(|b| b.all_followed()).await.unwrap_or_default();
        for f in &followed {
            if let Ok(id) = f.collection() {
                let _ = self.inner.client.subscribe(id.key, true).await;
                self.index(&id, f).await;
            }
        }
        // The first look into the DHT waits for a peer to ask (a follower that was offline
        // during a publish finds the new version as soon as it is back).
        let me = self.clone();
        self.spawn(async move {
            me.wait_for_peers().await;
            me.refresh_all().await;
        });
        let mut refresh_timer = tokio::time::interval(refresh);
        refresh_timer.tick().await;
        let mut republish_timer = tokio::time::interval(republish);
        republish_timer.tick().await;
        loop {
            tokio::select! {
                Some(msg) = gossip.recv() => {
                    let me = self.clone();
                    self.spawn(async move { me.on_gossip(msg).await });
                }
                _ = refresh_timer.tick() => {
                    let me = self.clone();
                    self.spawn(async move { me.refresh_all().await });
                }
                _ = republish_timer.tick() => {
                    let me = self.clone();
                    self.spawn(async move { me.republish_all().await });
                }
            }
        }
    }

    /// Returns once the node has a peer in its routing table (or after a minute).
    async fn wait_for_peers(&self) {
        let mut check = tokio::time::interval(Duration::from_millis(250));
        for _ in 0..240 {
            check.tick().await;
            match self.inner.client.info().await {
                Ok(i) if i.routing_table_size > 0 || i.connected_peers > 0 => return,
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }
}
