//! Following: following and unfollowing collections, and taking in their records. A record,
//! gossiped or found in the DHT, is opened and checked first; the version it names is fetched
//! (and pinned), its sequence number matched to the record's, and its chain walked back to the
//! version this node had, every link and signature checked, before it is recorded, indexed
//! for search, announced to subscribers and put into the DHT again. With auto-fetch, new
//! entries are pinned in the background.
//!
//! It must not sign anything (publishing is `publish`'s), nor accept a version that does not
//! extend the one held.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use libp2p::gossipsub::MessageAcceptance;

use crate::collections::record::dht_key;
use crate::collections::search::Indexed;
use crate::collections::version::MAX_VERSION_BYTES;
use crate::collections::{CollectionError, CollectionId, Entry, Followed, Latest, Version};
use crate::content::ContentId;
use crate::node::{blocking, fetch, now_secs, FetchOptions, GossipIn, NodeError};

use super::{CollectionEvent, Collections, Result};

/// Versions walked back at most when checking that a new version extends the one held.
const MAX_WALK: usize = 10_000;
/// How long a DHT search for a collection's record may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Valid records from this many peers end a search early (the newest of them wins).
const ENOUGH_RECORDS: usize = 3;

impl Collections {
    pub(super) async fn refresh_all(&self) {
        let followed = self.book(|b| b.all_followed()).await.unwrap_or_default();
        for f in followed {
            let Ok(id) = f.collection() else { continue };
            if let Err(e) = self.refresh(&id).await {
                tracing::debug!(collection = %id.public(), error = %e, "refresh found nothing new");
            }
        }
    }

    pub(super) async fn republish_all(&self) {
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
    pub(super) async fn on_gossip(&self, msg: GossipIn) {
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

    /// The newest latest-version record that checks out, from this node and the DHT, and the
    /// version it names (fetched and checked).
    pub(super) async fn resolve(&self, id: &CollectionId) -> Result<Option<(Latest, Version)>> {
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
    pub(super) async fn version_at(&self, id: &CollectionId, at: &ContentId) -> Result<Version> {
        let bytes = self.version_bytes(at).await?;
        Ok(Version::open(&bytes, id)?)
    }

    /// The bytes of the version stored as item `at`, fetched (and pinned) when not here.
    pub(super) async fn version_bytes(&self, at: &ContentId) -> Result<Vec<u8>> {
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
                internal: true,
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
    pub(super) async fn walk(
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
    pub(super) async fn take(&self, id: &CollectionId, latest: Latest) -> Result<bool> {
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

    pub(super) async fn index(&self, id: &CollectionId, f: &Followed) {
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
}
