//! Publishing: making collections (or taking one up as a delegate), editing the draft,
//! delegating, rotating a private collection's read key, and publishing the draft as the next
//! version: built on the newest version checked, given the next sequence number, signed by
//! the owner or a delegate the previous version names, stored as a pinned item with its
//! replicas placed at once, then its record put into the DHT and gossiped to followers.
//!
//! It must not accept versions from others (checking them is `follow`'s: a publish takes its
//! own new version through the same check), and only one publish runs at a time on a node.

use std::sync::Arc;

use libp2p::identity::ed25519;

use crate::collections::book::{check_name, Change, Owned};
use crate::collections::record::dht_key;
use crate::collections::version::NewVersion;
use crate::collections::{
    CollectionError, CollectionId, Delegation, Entry, Latest, Listing, Version,
};
use crate::content::ContentId;
use crate::node::{blocking, now_secs, NodeError};

use super::{Collections, Published, Result};

impl Collections {
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
                &crate::files::AddOptions {
                    internal: true,
                    ..Default::default()
                },
                &|_| {},
            )
        })
        .await?
        .map_err(NodeError::from)?;
        // A version must outlive its publisher like any item: replicas now, not at the next
        // repair round.
        let place = crate::node::items::provide_then_place(
            &self.inner.client,
            &self.inner.replicator,
            added.id.root,
            None,
            None,
        )
        .await?;
        self.spawn(place);
        Ok(added.id)
    }
}
