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
//! It talks to the Swarm only through the node's [`Client`]; disk work runs on the blocking
//! pool.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use libp2p::gossipsub::MessageAcceptance;
use libp2p::identity::ed25519;
use tokio::sync::{broadcast, mpsc};

use crate::collections::book::{check_name, Change, Owned};
use crate::collections::record::dht_key;
use crate::collections::search::{Hit, Indexed, SearchIndex};
use crate::collections::version::{NewVersion, MAX_VERSION_BYTES};
use crate::collections::{
    Book, CollectionError, CollectionId, Delegation, Entry, Followed, Latest, Listing, Signer,
    Version,
};
use crate::content::ContentId;
use crate::store::Store;

use super::{blocking, fetch, now_secs, Client, FetchOptions, GossipIn, NodeError};

/// Versions walked back at most when checking that a new version extends the one held.
const MAX_WALK: usize = 10_000;
/// How long a DHT search for a collection's record may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Valid records from this many peers end a search early (the newest of them wins).
const ENOUGH_RECORDS: usize = 3;

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

fn hex_signer(s: Signer) -> String {
    match s {
        Signer::Owner => "owner".into(),
        Signer::Delegate(k) => format!("delegate {}", hex::encode(k)),
    }
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

    async fn refresh_all(&self) {
        let followed = self.book(|b| b.all_followed()).await.unwrap_or_default();
        for f in followed {
            let Ok(id) = f.collection() else { continue };
            if let Err(e) = self.refresh(&id).await {
                tracing::debug!(collection = %id.public(), error = %e, "refresh found nothing new");
            }
        }
    }

    async fn republish_all(&self) {
        let followed = self.book(|b| b.all_followed()).await.unwrap_or_default();
        for f in followed {
            let (Ok(id), Some(record)) = (f.collection(), f.record) else {
                continue;
            };
            let r = libp2p::kad::Record::new(dht_key(&id.key), record.into_vec());
            if let Ok(Err(e)) = self.inner.client.put_record(r).await {
                tracing::debug!(collection = %id.public(), error = %e, "collection record put again: no peer took it");
            }
        }
    }

    /// A gossiped record: checked at once (forwarded only if it is one), then, for a followed
    /// collection, its version fetched and taken.
    async fn on_gossip(&self, msg: GossipIn) {
        let verdict = match Latest::open(&msg.data, &msg.collection) {
            Ok(latest) => {
                let held = self
                    .book(move |b| b.followed(&msg.collection))
                    .await
                    .ok()
                    .flatten();
                match held {
                    Some(f) if f.seq >= latest.seq => MessageAcceptance::Ignore,
                    Some(f) => {
                        let me = self.clone();
                        self.spawn(async move {
                            if let Ok(id) = f.collection() {
                                if let Err(e) = me.take(&id, latest).await {
                                    tracing::warn!(collection = %id.public(), error = %e, "gossiped version refused");
                                }
                            }
                        });
                        MessageAcceptance::Accept
                    }
                    None => MessageAcceptance::Accept,
                }
            }
            Err(e) => {
                tracing::debug!(peer = %msg.source, error = %e, "gossiped record refused");
                MessageAcceptance::Reject
            }
        };
        let _ = self
            .inner
            .client
            .gossip_verdict(msg.id, msg.source, verdict)
            .await;
    }

    // ---- publishing ----------------------------------------------------------------------

    /// Makes a new collection named `name` on this node; with `private`, its listings are
    /// sealed with a read key carried in the ID.
    pub async fn create(&self, name: &str, private: bool) -> Result<CollectionId> {
        check_name(name)?;
        let key = ed25519::Keypair::generate();
        let id = CollectionId {
            key: key.public().to_bytes(),
            read: private.then(rand::random::<[u8; 32]>),
        };
        let owned = Owned {
            name: name.to_owned(),
            id: serde_bytes::ByteBuf::from(id.to_bytes()),
            secret: Some(serde_bytes::ByteBuf::from(key.secret().as_ref().to_vec())),
            delegation: None,
            delegates: Vec::new(),
            pending: Vec::new(),
            old_reads: Vec::new(),
        };
        self.book(move |b| b.create(&owned)).await?;
        self.follow(&id, false).await?;
        Ok(id)
    }

    /// Takes up, as `name`, a collection whose owner delegated to this node's key: it may
    /// publish once a version names the delegation.
    pub async fn adopt(&self, name: &str, id: &CollectionId) -> Result<()> {
        check_name(name)?;
        let owned = Owned {
            name: name.to_owned(),
            id: serde_bytes::ByteBuf::from(id.to_bytes()),
            secret: None,
            delegation: None,
            delegates: Vec::new(),
            pending: Vec::new(),
            old_reads: Vec::new(),
        };
        self.book(move |b| b.create(&owned)).await?;
        self.follow(id, false).await?;
        Ok(())
    }

    async fn change(
        &self,
        name: &str,
        f: impl FnOnce(&mut Owned) -> std::result::Result<(), CollectionError> + Send + 'static,
    ) -> Result<()> {
        let name = name.to_owned();
        self.book(move |b| {
            let mut owned = b.owned(&name)?;
            f(&mut owned)?;
            b.put_owned(&owned)
        })
        .await
    }

    /// Adds (or replaces) an entry in `name`'s draft.
    pub async fn add(&self, name: &str, entry: Entry) -> Result<Entry> {
        let entry = Entry {
            added: if entry.added == 0 {
                now_secs()
            } else {
                entry.added
            },
            ..entry
        }
        .checked()?;
        let e = entry.clone();
        self.change(name, move |o| {
            o.pending.push(Change::Add(e));
            Ok(())
        })
        .await?;
        Ok(entry)
    }

    /// Removes an entry in `name`'s draft.
    pub async fn remove(&self, name: &str, id: &str) -> Result<()> {
        let id = id
            .trim()
            .parse::<ContentId>()
            .map_err(|e| CollectionError::Malformed(format!("entry id: {e}")))?
            .to_string();
        let view = self.view_owned(name).await?;
        if !view.entries.iter().any(|e| e.id == id) {
            return Err(CollectionError::NotListed(id).into());
        }
        self.change(name, move |o| {
            o.pending.push(Change::Remove(id));
            Ok(())
        })
        .await
    }

    /// Lets `delegate` (an Ed25519 public key) publish `name` from its next version on.
    pub async fn delegate(&self, name: &str, delegate: [u8; 32]) -> Result<()> {
        self.change(name, move |o| {
            let key = o.keypair().ok_or(CollectionError::NotAuthorized)?;
            if !o
                .delegates
                .iter()
                .any(|d| d.delegate.as_slice() == delegate)
            {
                if o.delegates.len() >= crate::collections::version::MAX_DELEGATES {
                    return Err(CollectionError::Malformed("too many delegates".into()));
                }
                o.delegates.push(Delegation::new(&key, delegate));
            }
            Ok(())
        })
        .await
    }

    /// Gives a private collection a new read key from its next version on (to remove a
    /// member: share the new ID with everyone else). Versions already published stay sealed
    /// under the old key, readable to whoever has it. Returns the new ID.
    pub async fn rotate(&self, name: &str) -> Result<CollectionId> {
        let n = name.to_owned();
        let id = self
            .book(move |b| {
                let mut o = b.owned(&n)?;
                o.keypair().ok_or(CollectionError::NotAuthorized)?;
                let mut id = o.collection()?;
                let old = id.read.ok_or_else(|| {
                    CollectionError::Malformed(format!(
                        "{n} is not private: it has no read key to rotate"
                    ))
                })?;
                o.old_reads.push(serde_bytes::ByteBuf::from(old.to_vec()));
                id.read = Some(rand::random());
                o.id = serde_bytes::ByteBuf::from(id.to_bytes());
                b.put_owned(&o)?;
                if let Some(mut f) = b.followed(&id.key)? {
                    f.id = serde_bytes::ByteBuf::from(id.to_bytes());
                    b.put_followed(&f)?;
                }
                Ok(id)
            })
            .await?;
        Ok(id)
    }

    /// This node's identity key (what an owner delegates to, as a PeerId or in hex).
    pub fn identity_key(&self) -> [u8; 32] {
        self.inner.identity.public().to_bytes()
    }

    /// Publishes `name`'s draft as its next version: on top of the newest version found.
    pub async fn publish(&self, name: &str) -> Result<Published> {
        let _one_at_a_time = self.inner.publishing.lock().await;
        let n = name.to_owned();
        let owned = self.book(move |b| b.owned(&n)).await?;
        let id = owned.collection()?;
        // Build on the newest version this node has checked: take the newest one the
        // network has if it follows from ours; one that does not (a fork by a removed
        // delegate, a rewritten past) is skipped over by a higher sequence number.
        let newest = self.find_latest(&id).await?;
        if let Some(l) = newest.clone() {
            if let Err(e) = self.take(&id, l).await {
                tracing::warn!(collection = %id.public(), error = %e, "the newest version found does not follow the one held; publishing after the one held");
            }
        }
        let key_ = id.key;
        let held = self.book(move |b| b.followed(&key_)).await?;
        let held = match held.and_then(|f| f.version) {
            Some(v) => {
                let at: ContentId = v.parse().map_err(|e| {
                    CollectionError::Malformed(format!("the node's row for {}: {e}", id.public()))
                })?;
                Some((at, self.version_at(&id, &at).await?))
            }
            None => None,
        };
        let base = held.as_ref().map(|(_, v)| v);
        let (key, delegation, delegates) = match owned.keypair() {
            Some(k) => (k, None, owned.delegates.clone()),
            None => {
                let mine = self.identity_key();
                let prev = base.ok_or(CollectionError::NotAuthorized)?;
                let d = prev
                    .delegates
                    .iter()
                    .find(|d| d.delegate.as_slice() == mine)
                    .cloned()
                    .ok_or(CollectionError::NotAuthorized)?;
                (self.inner.identity.clone(), Some(d), prev.delegates.clone())
            }
        };
        let base_listing = match &held {
            Some((_, v)) if v.listing.is_some() => v.listing.clone().unwrap_or_default(),
            // Sealed under a read key rotated away since: open it with the old ones.
            Some((at, _)) => self
                .listing_under_old_keys(&id, &owned, at)
                .await?
                .unwrap_or_default(),
            None => Listing::default(),
        };
        let listing = owned.draft(&base_listing);
        let seq = base
            .map_or(0, |v| v.seq)
            .max(newest.as_ref().map_or(0, |l| l.seq))
            .checked_add(1)
            .filter(|s| *s <= crate::collections::record::MAX_SEQ)
            .ok_or_else(|| CollectionError::Malformed("the sequence numbers are used up".into()))?;
        let prev = held.as_ref().map(|(at, _)| *at);
        let bytes = NewVersion {
            collection: &id,
            seq,
            prev,
            published: now_secs(),
            delegates,
            listing: &listing,
        }
        .sign(&key, delegation.clone(), rand::random());
        let version = self.store_version(bytes).await?;
        let latest = Latest::sign(id.key, seq, &version, &key, delegation);
        let record = libp2p::kad::Record::new(dht_key(&id.key), latest.bytes.clone());
        let in_dht = matches!(self.inner.client.put_record(record).await?, Ok(()));
        let pushed = matches!(
            self.inner
                .client
                .gossip(id.key, latest.bytes.clone())
                .await?,
            Ok(())
        );
        let pending = owned.pending.len();
        let n = name.to_owned();
        self.book(move |b| {
            let mut o = b.owned(&n)?;
            // Changes made while this publish ran stay for the next one.
            o.pending.drain(..pending.min(o.pending.len()));
            b.put_owned(&o)
        })
        .await?;
        self.take(&id, latest).await?;
        tracing::info!(collection = %id.public(), seq, cid = %version.root, "collection version published");
        Ok(Published {
            collection: id.to_string(),
            seq,
            version: version.to_string(),
            entries: listing.entries.len(),
            in_dht,
            pushed,
        })
    }

    /// The listing of version `at` opened with one of the read keys `owned` rotated away.
    async fn listing_under_old_keys(
        &self,
        id: &CollectionId,
        owned: &Owned,
        at: &ContentId,
    ) -> Result<Option<Listing>> {
        let bytes = self.version_bytes(at).await?;
        for old in owned.old_reads.iter().rev() {
            let Ok(read) = <[u8; 32]>::try_from(old.as_slice()) else {
                continue;
            };
            let with_old = CollectionId {
                key: id.key,
                read: Some(read),
            };
            if let Some(l) = Version::open(&bytes, &with_old)?.listing {
                return Ok(Some(l));
            }
        }
        Ok(None)
    }

    /// Stores a version's bytes as a pinned item and announces it.
    async fn store_version(&self, bytes: Vec<u8>) -> Result<ContentId> {
        let store = Arc::clone(&self.inner.store);
        let added = blocking(move || {
            crate::files::add_reader(
                &store,
                &bytes[..],
                "collection-version",
                &crate::files::AddOptions::default(),
                &|_| {},
            )
        })
        .await?
        .map_err(NodeError::from)?;
        // A version must outlive its publisher like any item: replicas now, not at the next
        // repair round.
        let place = super::items::provide_then_place(
            &self.inner.client,
            &self.inner.replicator,
            added.id.root,
            None,
        )
        .await?;
        self.spawn(place);
        Ok(added.id)
    }

    // ---- resolving and following ---------------------------------------------------------

    /// The newest latest-version record that checks out, from this node and the DHT, and the
    /// version it names (fetched and checked).
    async fn resolve(&self, id: &CollectionId) -> Result<Option<(Latest, Version)>> {
        let Some(latest) = self.find_latest(id).await? else {
            return Ok(None);
        };
        let version = self.load_version(id, &latest).await?;
        Ok(Some((latest, version)))
    }

    /// The newest valid record of `id` this node or the DHT has.
    pub async fn find_latest(&self, id: &CollectionId) -> Result<Option<Latest>> {
        let key = id.key;
        let held = self.book(move |b| b.followed(&key)).await?;
        let mut best = held
            .and_then(|f| f.record)
            .and_then(|r| Latest::open(&r, &id.key).ok());
        let mut found = self.inner.client.get_record(dht_key(&id.key)).await?;
        let mut valid = 0;
        let _ = tokio::time::timeout(RESOLVE_TIMEOUT, async {
            while let Some(value) = found.recv().await {
                match Latest::open(&value, &id.key) {
                    Ok(l) => {
                        valid += 1;
                        if best.as_ref().is_none_or(|b| l.seq > b.seq) {
                            best = Some(l);
                        }
                        if valid >= ENOUGH_RECORDS {
                            break;
                        }
                    }
                    Err(e) => tracing::debug!(collection = %id.public(), error = %e, "record from the DHT refused"),
                }
            }
        })
        .await;
        Ok(best)
    }

    /// The version a record names: from the store, or fetched (and pinned), then checked.
    async fn load_version(&self, id: &CollectionId, latest: &Latest) -> Result<Version> {
        let v = self.version_at(id, &latest.version).await?;
        if v.seq != latest.seq {
            return Err(CollectionError::BrokenChain {
                seq: latest.seq,
                why: format!("the record names a version whose sequence is {}", v.seq),
            }
            .into());
        }
        Ok(v)
    }

    /// Reads and checks the version stored as item `at`, fetching it when it is not here.
    async fn version_at(&self, id: &CollectionId, at: &ContentId) -> Result<Version> {
        let bytes = self.version_bytes(at).await?;
        Ok(Version::open(&bytes, id)?)
    }

    /// The bytes of the version stored as item `at`, fetched (and pinned) when not here.
    async fn version_bytes(&self, at: &ContentId) -> Result<Vec<u8>> {
        let store = Arc::clone(&self.inner.store);
        let root = at.root;
        let held = blocking(move || store.dht().get_pin(&root))
            .await?
            .map_err(NodeError::from)?
            .is_some_and(|p| !p.partial);
        if !held {
            let opts = FetchOptions {
                deadline: Some(Duration::from_secs(60)),
                stall_timeout: Duration::from_secs(20),
                ..FetchOptions::default()
            };
            fetch(
                &self.inner.client,
                &self.inner.store,
                at,
                &opts,
                &|_| {},
                None,
            )
            .await?;
        }
        let store = Arc::clone(&self.inner.store);
        let at = *at;
        let read = blocking(move || -> std::result::Result<Result<Vec<u8>>, NodeError> {
            let stat = crate::files::stat(&store, &at)?;
            if stat.size > MAX_VERSION_BYTES as u64 || stat.kind != "file" {
                return Ok(Err(CollectionError::Malformed(format!(
                    "the version named is a {} of {} bytes, not a collection version",
                    stat.kind, stat.size
                ))
                .into()));
            }
            let mut out = Vec::with_capacity(stat.size as usize);
            crate::files::cat(&store, &at, &mut out, &|_| {})?;
            Ok(Ok(out))
        });
        read.await??
    }

    /// Checks that `newest` extends the version this node had (walking back over any it
    /// missed) and returns the versions in between, newest first.
    async fn walk(
        &self,
        id: &CollectionId,
        newest: (ContentId, Version),
        stop_at: Option<ContentId>,
    ) -> Result<Vec<(ContentId, Version)>> {
        let mut chain = vec![newest];
        loop {
            let (_, cur) = chain.last().expect("chain starts non-empty");
            let Some(prev_id) = cur.prev else {
                if stop_at.is_some() {
                    return Err(CollectionError::BrokenChain {
                        seq: chain[0].1.seq,
                        why: "its history does not contain the version this node had".into(),
                    }
                    .into());
                }
                return Ok(chain);
            };
            if Some(prev_id) == stop_at {
                let prev = self.version_at(id, &prev_id).await?;
                cur.follows(&prev)?;
                return Ok(chain);
            }
            if chain.len() >= MAX_WALK {
                return Err(CollectionError::BrokenChain {
                    seq: cur.seq,
                    why: format!("more than {MAX_WALK} versions to walk"),
                }
                .into());
            }
            let prev = self.version_at(id, &prev_id).await?;
            cur.follows(&prev)?;
            chain.push((prev_id, prev));
        }
    }

    /// Takes a newer record of a followed collection: its version fetched, checked against
    /// the history held, recorded, indexed and announced; with auto-fetch, new items pinned.
    async fn take(&self, id: &CollectionId, latest: Latest) -> Result<bool> {
        let lock = match self.inner.taking.lock() {
            Ok(mut m) => Arc::clone(m.entry(id.key).or_default()),
            Err(_) => return Ok(false),
        };
        let _one_at_a_time = lock.lock().await;
        self.take_now(id, latest).await
    }

    async fn take_now(&self, id: &CollectionId, latest: Latest) -> Result<bool> {
        let key = id.key;
        let Some(mut f) = self.book(move |b| b.followed(&key)).await? else {
            return Ok(false);
        };
        if latest.seq <= f.seq {
            return Ok(false);
        }
        let version = self.load_version(id, &latest).await?;
        let had = match &f.version {
            Some(v) => Some(v.parse::<ContentId>().map_err(|e| {
                CollectionError::Malformed(format!("the node's row for {}: {e}", id.public()))
            })?),
            None => None,
        };
        self.walk(id, (latest.version, version.clone()), had)
            .await?;
        let old: HashSet<String> = f
            .listing
            .as_ref()
            .map(|l| l.entries.iter().map(|e| e.id.clone()).collect())
            .unwrap_or_default();
        let new_entries: Vec<Entry> = version
            .listing
            .as_ref()
            .map(|l| {
                l.entries
                    .iter()
                    .filter(|e| !old.contains(&e.id))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        f.record = Some(serde_bytes::ByteBuf::from(latest.bytes.clone()));
        f.seq = latest.seq;
        f.version = Some(latest.version.to_string());
        f.listing = version.listing.clone();
        f.published = version.published;
        f.seen = now_secs();
        f.new_entries = new_entries.iter().map(|e| e.id.clone()).collect();
        let row = f.clone();
        self.book(move |b| b.put_followed(&row)).await?;
        self.index(id, &f).await;
        // A follower keeps the record alive in the DHT too.
        let record = libp2p::kad::Record::new(dht_key(&id.key), latest.bytes.clone());
        let _ = self.inner.client.put_record(record).await;
        let name = f
            .listing
            .as_ref()
            .map(|l| l.name.clone())
            .unwrap_or_default();
        tracing::info!(collection = %id.public(), seq = latest.seq, new = new_entries.len(), "collection version taken");
        if f.auto_fetch {
            self.fetch_entries(&new_entries);
        }
        let _ = self.inner.events.send(CollectionEvent {
            collection: id.public().to_string(),
            name,
            seq: latest.seq,
            new_entries,
        });
        Ok(true)
    }

    /// Pins entries in the background (auto-fetch).
    fn fetch_entries(&self, entries: &[Entry]) {
        for e in entries {
            let Ok(cid) = e.id.parse::<ContentId>() else {
                continue;
            };
            let me = self.clone();
            self.spawn(async move {
                let opts = FetchOptions::default();
                match fetch(
                    &me.inner.client,
                    &me.inner.store,
                    &cid,
                    &opts,
                    &|_| {},
                    None,
                )
                .await
                {
                    Ok(r) => {
                        tracing::info!(cid = %cid.root, bytes = r.size, "auto-fetched a collection item")
                    }
                    Err(e) => {
                        tracing::warn!(cid = %cid.root, error = %e, "auto-fetch failed; the next refresh tries again")
                    }
                }
            });
        }
    }

    /// Looks for a newer version of `id` in the DHT and takes it.
    pub async fn refresh(&self, id: &CollectionId) -> Result<bool> {
        match self.find_latest(id).await? {
            Some(latest) => self.take(id, latest).await,
            None => Ok(false),
        }
    }

    async fn index(&self, id: &CollectionId, f: &Followed) {
        let Some(listing) = f.listing.clone() else {
            return;
        };
        let me = self.clone();
        let (key, public, seq) = (id.key_hex(), id.public().to_string(), f.seq);
        let r = blocking(move || {
            me.inner.search.replace(&Indexed {
                key: &key,
                collection: &public,
                name: &listing.name,
                seq,
                entries: &listing.entries,
            })
        })
        .await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "search index not updated"),
            Err(e) => tracing::warn!(error = %e, "search index not updated"),
        }
    }

    /// Follows `id`: keeps its newest version, and with `auto_fetch` pins every new item. Looks
    /// for the newest version at once; returns whether one was found.
    pub async fn follow(&self, id: &CollectionId, auto_fetch: bool) -> Result<bool> {
        let key = id.key;
        let row = self.book(move |b| b.followed(&key)).await?;
        let f = match row {
            // Following again may add the read key or change auto-fetch; what is held stays.
            Some(mut f) => {
                f.auto_fetch = auto_fetch;
                if id.read.is_some() {
                    f.id = serde_bytes::ByteBuf::from(id.to_bytes());
                }
                f
            }
            None => Followed {
                id: serde_bytes::ByteBuf::from(id.to_bytes()),
                auto_fetch,
                since: now_secs(),
                record: None,
                seq: 0,
                version: None,
                listing: None,
                published: 0,
                seen: 0,
                new_entries: Vec::new(),
            },
        };
        let row = f.clone();
        self.book(move |b| b.put_followed(&row)).await?;
        self.inner.client.subscribe(id.key, true).await?;
        if auto_fetch {
            if let Some(l) = &f.listing {
                self.fetch_entries(&l.entries);
            }
        }
        self.refresh(id).await
    }

    /// Stops following `id`. A collection published (or adopted as a delegate) here cannot be
    /// unfollowed: the row that follows it holds the version new ones are built on.
    pub async fn unfollow(&self, id: &CollectionId) -> Result<bool> {
        let key = id.key;
        let owned = self.book(|b| b.all_owned()).await?;
        if let Some(o) = owned
            .iter()
            .find(|o| o.collection().is_ok_and(|c| c.key == key))
        {
            return Err(CollectionError::OwnCollection(o.name.clone()).into());
        }
        let had = self.book(move |b| b.unfollow(&key)).await?;
        self.inner.client.subscribe(id.key, false).await?;
        let me = self.clone();
        let hex = id.key_hex();
        let _ = blocking(move || me.inner.search.remove(&hex)).await;
        Ok(had)
    }

    // ---- reading -------------------------------------------------------------------------

    /// Every collection this node follows or publishes.
    pub async fn list(&self) -> Result<Vec<CollectionView>> {
        let (followed, owned) = self
            .book(|b| Ok((b.all_followed()?, b.all_owned()?)))
            .await?;
        let mut out = Vec::new();
        for f in followed {
            let key = f.collection().map(|c| c.key).ok();
            let mine = owned
                .iter()
                .find(|o| o.collection().ok().map(|c| c.key) == key);
            out.push(self.view_of(&f, mine));
        }
        Ok(out)
    }

    fn view_of(&self, f: &Followed, owned: Option<&Owned>) -> CollectionView {
        let id = owned
            .and_then(|o| o.collection().ok())
            .or_else(|| f.collection().ok());
        let listing = f.listing.clone().unwrap_or_default();
        let entries = match owned {
            Some(o) => o.draft(&listing).entries,
            None => listing.entries.clone(),
        };
        CollectionView {
            id: id.map(|i| i.to_string()).unwrap_or_default(),
            name: if listing.name.is_empty() {
                owned.map(|o| o.name.clone()).unwrap_or_default()
            } else {
                listing.name.clone()
            },
            local_name: owned.map(|o| o.name.clone()),
            private: id.is_some_and(|i| i.read.is_some()),
            following: true,
            auto_fetch: f.auto_fetch,
            seq: f.seq,
            version: f.version.clone(),
            published: f.published,
            sealed: f.seq > 0 && f.listing.is_none(),
            entries,
            new_entries: f.new_entries.clone(),
            pending: owned.map_or(0, |o| o.pending.len()),
            can_publish: owned.is_some(),
        }
    }

    async fn view_owned(&self, name: &str) -> Result<CollectionView> {
        let n = name.to_owned();
        let owned = self.book(move |b| b.owned(&n)).await?;
        let id = owned.collection()?;
        let key = id.key;
        let f = self.book(move |b| b.followed(&key)).await?;
        let f = f.ok_or_else(|| CollectionError::NotFollowed(id.public().to_string()))?;
        Ok(self.view_of(&f, Some(&owned)))
    }

    /// A collection by local name or by ID: the newest version this node holds, or (for a
    /// collection it does not follow) the newest found in the network.
    pub async fn show(&self, which: &str) -> Result<CollectionView> {
        if check_name(which).is_ok() && !which.starts_with("sc1") {
            return self.view_owned(which).await;
        }
        let id: CollectionId = which.parse()?;
        let key = id.key;
        if let Some(f) = self.book(move |b| b.followed(&key)).await? {
            let owned = self.book(|b| b.all_owned()).await?;
            let mine = owned
                .iter()
                .find(|o| o.collection().is_ok_and(|c| c.key == id.key));
            let mut v = self.view_of(&f, mine);
            if id.read.is_some() && v.sealed {
                v.id = id.to_string();
            }
            return Ok(v);
        }
        let Some((latest, version)) = self.resolve(&id).await? else {
            return Err(CollectionError::NotFound.into());
        };
        let listing = version.listing.clone();
        Ok(CollectionView {
            id: id.to_string(),
            name: listing.as_ref().map(|l| l.name.clone()).unwrap_or_default(),
            local_name: None,
            private: id.read.is_some(),
            following: false,
            auto_fetch: false,
            seq: latest.seq,
            version: Some(latest.version.to_string()),
            published: version.published,
            sealed: listing.is_none(),
            entries: listing.map(|l| l.entries).unwrap_or_default(),
            new_entries: Vec::new(),
            pending: 0,
            can_publish: false,
        })
    }

    /// The whole history of `id`, newest first, every link and signature checked.
    pub async fn log(&self, which: &str) -> Result<Vec<HistoryEntry>> {
        let id = match which.parse::<CollectionId>() {
            Ok(id) => id,
            Err(e) => {
                if check_name(which).is_err() {
                    return Err(e.into());
                }
                let n = which.to_owned();
                self.book(move |b| b.owned(&n)).await?.collection()?
            }
        };
        let Some((latest, version)) = self.resolve(&id).await? else {
            return Err(CollectionError::NotFound.into());
        };
        let chain = self.walk(&id, (latest.version, version), None).await?;
        Ok(chain
            .into_iter()
            .map(|(at, v)| HistoryEntry {
                seq: v.seq,
                version: at.to_string(),
                published: v.published,
                signer: hex_signer(v.signer),
                entries: v.listing.as_ref().map(|l| l.entries.len()),
            })
            .collect())
    }

    /// Searches every followed collection.
    pub async fn search(&self, words: &str, tag: Option<&str>, limit: usize) -> Result<Vec<Hit>> {
        let me = self.clone();
        let (words, tag) = (words.to_owned(), tag.map(str::to_owned));
        Ok(blocking(move || me.inner.search.search(&words, tag.as_deref(), limit)).await??)
    }

    /// The listing `name` would publish now (its newest version with the draft applied).
    pub async fn draft(&self, name: &str) -> Result<Listing> {
        let v = self.view_owned(name).await?;
        Ok(Listing {
            name: v.name,
            entries: v.entries,
        })
    }
}
