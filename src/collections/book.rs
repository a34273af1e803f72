//! This node's collections: the ones it publishes (their keys and drafts) and the ones it
//! follows (the latest version seen), kept durably in the store's index.
//!
//! A draft is the list of changes made since the last publish, not a copy of the items: at
//! publish they are applied on top of the newest version found in the network, so a delegate
//! and the owner publishing in turn never undo each other's additions. Rows are CBOR under
//! `own/NAME` and `follow/KEYHEX`. Every function here does disk work: call it off the event
//! loop.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::signed::Delegation;
use super::version::{Entry, Listing};
use super::{CollectionError, CollectionId};
use crate::store::{DhtTable, Store};

/// One change to a collection, waiting for the next publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    Add(Entry),
    Remove(String),
}

/// A collection this node publishes, as owner or as a delegate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Owned {
    pub name: String,
    /// The collection ID, with the read key of a private collection.
    pub id: ByteBuf,
    /// The collection's secret key; `None` when this node publishes as a delegate, with its
    /// own identity key and the owner's `delegation`.
    pub secret: Option<ByteBuf>,
    #[serde(default)]
    pub delegation: Option<Delegation>,
    /// Keys the owner lets publish: named in every version it publishes.
    #[serde(default)]
    pub delegates: Vec<Delegation>,
    #[serde(default)]
    pub pending: Vec<Change>,
    /// Read keys rotated away (`collection rotate`), newest last: they open older versions.
    #[serde(default)]
    pub old_reads: Vec<ByteBuf>,
}

impl Owned {
    pub fn collection(&self) -> Result<CollectionId, CollectionError> {
        CollectionId::from_bytes(&self.id)
    }

    /// The signing key of an owned collection.
    pub fn keypair(&self) -> Option<libp2p::identity::ed25519::Keypair> {
        let mut secret = self.secret.as_ref()?.to_vec();
        let sk = libp2p::identity::ed25519::SecretKey::try_from_bytes(&mut secret).ok()?;
        Some(sk.into())
    }

    /// `base` with the pending changes applied: what the next version will list.
    pub fn draft(&self, base: &Listing) -> Listing {
        let mut out = base.clone();
        if out.name.is_empty() {
            out.name = self.name.clone();
        }
        for change in &self.pending {
            match change {
                Change::Add(e) => {
                    out.entries.retain(|x| x.id != e.id);
                    out.entries.push(e.clone());
                }
                Change::Remove(id) => out.entries.retain(|x| &x.id != id),
            }
        }
        out
    }
}

/// A collection this node follows, and the newest version it has checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Followed {
    pub id: ByteBuf,
    /// Pin every item of every new version.
    pub auto_fetch: bool,
    /// Unix seconds when following began.
    pub since: u64,
    /// The latest-version record as signed (to put again into the DHT).
    #[serde(default)]
    pub record: Option<ByteBuf>,
    #[serde(default)]
    pub seq: u64,
    #[serde(default)]
    pub version: Option<String>,
    /// The newest version's listing (`None` until one was found, or when it is sealed and the
    /// ID has no read key).
    #[serde(default)]
    pub listing: Option<Listing>,
    /// Unix seconds when the newest version was published and when this node saw it.
    #[serde(default)]
    pub published: u64,
    #[serde(default)]
    pub seen: u64,
    /// Entries new in the newest version (for the page to highlight).
    #[serde(default)]
    pub new_entries: Vec<String>,
}

impl Followed {
    pub fn collection(&self) -> Result<CollectionId, CollectionError> {
        CollectionId::from_bytes(&self.id)
    }
}

/// A collection's local name: 1 to 64 of letters, digits, `-`, `_`, `.`.
pub fn check_name(name: &str) -> Result<(), CollectionError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(CollectionError::BadName)
    }
}

/// The collections table of one store.
#[derive(Clone)]
pub struct Book {
    store: std::sync::Arc<Store>,
}

fn cbor<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = ciborium::into_writer(v, &mut out);
    out
}

impl Book {
    pub fn new(store: std::sync::Arc<Store>) -> Self {
        Self { store }
    }

    fn get<T: for<'de> Deserialize<'de>>(&self, key: &str) -> Result<Option<T>, CollectionError> {
        let Some(bytes) = self
            .store
            .dht()
            .dht_get(DhtTable::Collections, key.as_bytes())?
        else {
            return Ok(None);
        };
        ciborium::from_reader(&bytes[..])
            .map(Some)
            .map_err(|e| CollectionError::Malformed(format!("the node's row {key}: {e}")))
    }

    fn scan<T: for<'de> Deserialize<'de>>(&self, prefix: &str) -> Result<Vec<T>, CollectionError> {
        let rows =
            self.store
                .dht()
                .dht_scan(DhtTable::Collections, prefix.as_bytes(), usize::MAX)?;
        Ok(rows
            .into_iter()
            .filter_map(|(k, v)| match ciborium::from_reader(&v[..]) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(row = %String::from_utf8_lossy(&k), error = %e, "unreadable collection row skipped");
                    None
                }
            })
            .collect())
    }

    fn put<T: Serialize>(&self, key: &str, v: &T) -> Result<(), CollectionError> {
        let bytes = cbor(v);
        Ok(self
            .store
            .dht()
            .kv_write(DhtTable::Collections, &[(key.as_bytes(), &bytes)], &[])?)
    }

    pub fn owned(&self, name: &str) -> Result<Owned, CollectionError> {
        check_name(name)?;
        self.get(&format!("own/{name}"))?
            .ok_or_else(|| CollectionError::UnknownName(name.to_owned()))
    }

    pub fn all_owned(&self) -> Result<Vec<Owned>, CollectionError> {
        self.scan("own/")
    }

    /// Records a new collection of this node; fails if the name is taken.
    pub fn create(&self, owned: &Owned) -> Result<(), CollectionError> {
        check_name(&owned.name)?;
        if self.get::<Owned>(&format!("own/{}", owned.name))?.is_some() {
            return Err(CollectionError::NameTaken(owned.name.clone()));
        }
        self.put_owned(owned)
    }

    pub fn put_owned(&self, owned: &Owned) -> Result<(), CollectionError> {
        self.put(&format!("own/{}", owned.name), owned)
    }

    pub fn followed(&self, collection: &[u8; 32]) -> Result<Option<Followed>, CollectionError> {
        self.get(&format!("follow/{}", hex::encode(collection)))
    }

    pub fn all_followed(&self) -> Result<Vec<Followed>, CollectionError> {
        self.scan("follow/")
    }

    pub fn put_followed(&self, f: &Followed) -> Result<(), CollectionError> {
        let id = f.collection()?;
        self.put(&format!("follow/{}", id.key_hex()), f)
    }

    pub fn unfollow(&self, collection: &[u8; 32]) -> Result<bool, CollectionError> {
        let key = format!("follow/{}", hex::encode(collection));
        let had = self.get::<Followed>(&key)?.is_some();
        self.store
            .dht()
            .kv_write(DhtTable::Collections, &[], &[key.as_bytes()])?;
        Ok(had)
    }
}
