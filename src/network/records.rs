//! Kademlia's record store, kept in the store's redb index instead of kad's `MemoryStore`.
//!
//! `MemoryStore` forgets everything on restart and refuses new provider keys past 1024 (local
//! and remote together); a node that provides every pinned root of a large store, and holds
//! provider records for its part of the key space, needs neither limit. Rows are CBOR, with
//! expiry as Unix milliseconds because `Instant` does not survive a restart. Every method runs
//! on the network event loop, so each is one short redb transaction (non-durable writes: the
//! DHT is soft state its owners republish).
//!
//! Limits (what this node accepts from others): [`MAX_PROVIDER_ROWS`] provider records in all,
//! [`MAX_PROVIDERS_PER_KEY`] per key, [`MAX_RECORDS`] value records of at most
//! [`MAX_RECORD_BYTES`] each.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libp2p::kad::store::{Error, RecordStore, Result};
use libp2p::kad::{ProviderRecord, Record, RecordKey};
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use crate::store::{DhtTable, Store};

pub const MAX_PROVIDER_ROWS: u64 = 1_000_000;
pub const MAX_PROVIDERS_PER_KEY: usize = 20;
pub const MAX_RECORDS: u64 = 65_536;
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
const MAX_ADDRS: usize = 16;

#[derive(Serialize, Deserialize)]
struct ProviderRow {
    #[serde(default)]
    expires_ms: Option<u64>,
    #[serde(default)]
    addrs: Vec<serde_bytes::ByteBuf>,
}

#[derive(Serialize, Deserialize)]
struct RecordRow {
    value: serde_bytes::ByteBuf,
    #[serde(default)]
    publisher: Option<serde_bytes::ByteBuf>,
    #[serde(default)]
    expires_ms: Option<u64>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn to_ms(i: Option<Instant>) -> Option<u64> {
    let now = Instant::now();
    i.map(|t| now_ms() + t.saturating_duration_since(now).as_millis() as u64)
}

fn from_ms(ms: Option<u64>) -> Option<Instant> {
    ms.map(|m| Instant::now() + Duration::from_millis(m.saturating_sub(now_ms())))
}

fn expired(ms: Option<u64>) -> bool {
    ms.is_some_and(|m| m <= now_ms())
}

/// A provider row's key: length-prefixed record key, then the provider's PeerId, so that a
/// prefix scan finds every provider of one key.
fn provider_key(key: &RecordKey, peer: &PeerId) -> Vec<u8> {
    let k = key.as_ref();
    let mut out = Vec::with_capacity(2 + k.len() + 40);
    out.extend_from_slice(&(k.len().min(u16::MAX as usize) as u16).to_be_bytes());
    out.extend_from_slice(k);
    out.extend_from_slice(&peer.to_bytes());
    out
}

fn key_prefix(key: &RecordKey) -> Vec<u8> {
    let k = key.as_ref();
    let mut out = Vec::with_capacity(2 + k.len());
    out.extend_from_slice(&(k.len().min(u16::MAX as usize) as u16).to_be_bytes());
    out.extend_from_slice(k);
    out
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Serialising these plain structs into a Vec cannot fail.
    let _ = ciborium::into_writer(v, &mut out);
    out
}

/// The kad record store over the data dir's index.
pub struct DhtStore {
    store: Arc<Store>,
    local: PeerId,
}

impl DhtStore {
    pub fn new(store: Arc<Store>, local: PeerId) -> Self {
        Self { store, local }
    }

    /// Drops expired provider records and value records; returns how many went.
    pub fn remove_expired(&mut self) -> usize {
        let dht = self.store.dht();
        let mut n = 0;
        for table in [DhtTable::Providers, DhtTable::Records] {
            let rows = dht.dht_scan(table, &[], usize::MAX).unwrap_or_default();
            let dead: Vec<Vec<u8>> = rows
                .into_iter()
                .filter(|(_, v)| {
                    let exp = match table {
                        DhtTable::Providers => {
                            ciborium::from_reader::<ProviderRow, _>(&v[..]).map(|r| r.expires_ms)
                        }
                        _ => ciborium::from_reader::<RecordRow, _>(&v[..]).map(|r| r.expires_ms),
                    };
                    exp.map(expired).unwrap_or(true)
                })
                .map(|(k, _)| k)
                .collect();
            n += dead.len();
            let refs: Vec<&[u8]> = dead.iter().map(|k| k.as_slice()).collect();
            if let Err(e) = dht.dht_apply(table, &[], &refs) {
                tracing::warn!(error = %e, "removing expired DHT rows");
            }
        }
        n
    }

    /// Stores the provider records of an announcement (`announce-v1.md`): `provider` provides
    /// every root in `roots`, reachable at `addrs`, for `ttl`. One transaction for the whole
    /// batch, under the same limits as kad's own inserts. Returns the records stored.
    pub fn add_announced(
        &self,
        provider: &PeerId,
        addrs: &[Multiaddr],
        roots: &[crate::content::BlockAddress],
        ttl: Duration,
    ) -> std::result::Result<u32, crate::store::StoreError> {
        let row = encode(&ProviderRow {
            expires_ms: Some(now_ms() + ttl.as_millis() as u64),
            addrs: addrs
                .iter()
                .take(MAX_ADDRS)
                .map(|a| serde_bytes::ByteBuf::from(a.to_vec()))
                .collect(),
        });
        let rows: Vec<(Vec<u8>, usize, Vec<u8>)> = roots
            .iter()
            .map(|r| {
                let key = super::provider_key(r);
                let prefix = key_prefix(&key).len();
                (provider_key(&key, provider), prefix, row.clone())
            })
            .collect();
        self.store.dht().dht_insert_bounded(
            DhtTable::Providers,
            &rows,
            MAX_PROVIDERS_PER_KEY,
            MAX_PROVIDER_ROWS,
        )
    }

    /// Records that this node provides `roots` (what `start_providing` writes locally), in one
    /// transaction per table.
    pub fn provide_locally(
        &self,
        roots: &[crate::content::BlockAddress],
    ) -> std::result::Result<(), crate::store::StoreError> {
        let row = encode(&ProviderRow {
            expires_ms: None,
            addrs: Vec::new(),
        });
        let keys: Vec<RecordKey> = roots.iter().map(super::provider_key).collect();
        let rows: Vec<Vec<u8>> = keys.iter().map(|k| provider_key(k, &self.local)).collect();
        let dht = self.store.dht();
        let puts: Vec<(&[u8], &[u8])> = rows.iter().map(|k| (k.as_slice(), &row[..])).collect();
        dht.dht_apply(DhtTable::Providers, &puts, &[])?;
        let puts: Vec<(&[u8], &[u8])> = keys.iter().map(|k| (k.as_ref(), &[][..])).collect();
        dht.dht_apply(DhtTable::Provided, &puts, &[])
    }

    /// Makes what this node says it provides exactly `roots` (what it holds whole): marks
    /// left for items unpinned or dropped while the node was down are removed with this
    /// node's own provider rows, then `roots` are provided locally.
    pub fn provide_exactly(
        &self,
        roots: &[crate::content::BlockAddress],
    ) -> std::result::Result<(), crate::store::StoreError> {
        let keep: std::collections::HashSet<Vec<u8>> = roots
            .iter()
            .map(|r| super::provider_key(r).as_ref().to_vec())
            .collect();
        let dht = self.store.dht();
        let stale: Vec<Vec<u8>> = dht
            .dht_scan(DhtTable::Provided, &[], usize::MAX)?
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| !keep.contains(k))
            .collect();
        if !stale.is_empty() {
            let own: Vec<Vec<u8>> = stale
                .iter()
                .map(|k| provider_key(&RecordKey::from(k.clone()), &self.local))
                .collect();
            let own: Vec<&[u8]> = own.iter().map(|k| k.as_slice()).collect();
            dht.dht_apply(DhtTable::Providers, &[], &own)?;
            let stale: Vec<&[u8]> = stale.iter().map(|k| k.as_slice()).collect();
            dht.dht_apply(DhtTable::Provided, &[], &stale)?;
            tracing::info!(
                items = stale.len(),
                "no longer provided: not held since the last start"
            );
        }
        self.provide_locally(roots)
    }

    /// Keys this node provides.
    pub fn provided_count(&self) -> u64 {
        self.store.dht().dht_len(DhtTable::Provided).unwrap_or(0)
    }

    /// Provider records held for the network, this node's own included.
    pub fn provider_rows(&self) -> u64 {
        self.store.dht().dht_len(DhtTable::Providers).unwrap_or(0)
    }
}

impl RecordStore for DhtStore {
    type RecordsIter<'a> = std::vec::IntoIter<Cow<'a, Record>>;
    type ProvidedIter<'a> = std::vec::IntoIter<Cow<'a, ProviderRecord>>;

    fn get(&self, k: &RecordKey) -> Option<Cow<'_, Record>> {
        let bytes = self
            .store
            .dht()
            .dht_get(DhtTable::Records, k.as_ref())
            .ok()??;
        let row: RecordRow = ciborium::from_reader(&bytes[..]).ok()?;
        if expired(row.expires_ms) {
            return None;
        }
        Some(Cow::Owned(Record {
            key: k.clone(),
            value: row.value.into_vec(),
            publisher: row.publisher.and_then(|p| PeerId::from_bytes(&p).ok()),
            expires: from_ms(row.expires_ms),
        }))
    }

    fn put(&mut self, r: Record) -> Result<()> {
        if r.value.len() >= MAX_RECORD_BYTES {
            return Err(Error::ValueTooLarge);
        }
        let dht = self.store.dht();
        let exists = dht
            .dht_get(DhtTable::Records, r.key.as_ref())
            .ok()
            .flatten()
            .is_some();
        if !exists && dht.dht_len(DhtTable::Records).unwrap_or(0) >= MAX_RECORDS {
            return Err(Error::MaxRecords);
        }
        let row = encode(&RecordRow {
            value: serde_bytes::ByteBuf::from(r.value),
            publisher: r
                .publisher
                .map(|p| serde_bytes::ByteBuf::from(p.to_bytes())),
            expires_ms: to_ms(r.expires),
        });
        dht.dht_apply(DhtTable::Records, &[(r.key.as_ref(), &row)], &[])
            .map_err(|_| Error::MaxRecords)
    }

    fn remove(&mut self, k: &RecordKey) {
        let _ = self
            .store
            .dht()
            .dht_apply(DhtTable::Records, &[], &[k.as_ref()]);
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        let rows = self
            .store
            .dht()
            .dht_scan(DhtTable::Records, &[], MAX_RECORDS as usize)
            .unwrap_or_default();
        rows.into_iter()
            .filter_map(|(k, v)| {
                let row: RecordRow = ciborium::from_reader(&v[..]).ok()?;
                (!expired(row.expires_ms)).then(|| {
                    Cow::Owned(Record {
                        key: RecordKey::from(k),
                        value: row.value.into_vec(),
                        publisher: row.publisher.and_then(|p| PeerId::from_bytes(&p).ok()),
                        expires: from_ms(row.expires_ms),
                    })
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn add_provider(&mut self, record: ProviderRecord) -> Result<()> {
        let dht = self.store.dht();
        let row_key = provider_key(&record.key, &record.provider);
        let is_new = dht
            .dht_get(DhtTable::Providers, &row_key)
            .ok()
            .flatten()
            .is_none();
        if is_new {
            if record.provider != self.local {
                let existing = dht
                    .dht_scan(
                        DhtTable::Providers,
                        &key_prefix(&record.key),
                        MAX_PROVIDERS_PER_KEY + 1,
                    )
                    .unwrap_or_default();
                if existing.len() >= MAX_PROVIDERS_PER_KEY {
                    // Like kad's MemoryStore: enough providers are known for this key.
                    return Ok(());
                }
            }
            if dht.dht_len(DhtTable::Providers).unwrap_or(0) >= MAX_PROVIDER_ROWS {
                return Err(Error::MaxProvidedKeys);
            }
        }
        let row = encode(&ProviderRow {
            expires_ms: to_ms(record.expires),
            addrs: record
                .addresses
                .iter()
                .take(MAX_ADDRS)
                .map(|a| serde_bytes::ByteBuf::from(a.to_vec()))
                .collect(),
        });
        dht.dht_apply(DhtTable::Providers, &[(&row_key, &row)], &[])
            .map_err(|_| Error::MaxProvidedKeys)?;
        if record.provider == self.local {
            dht.dht_apply(DhtTable::Provided, &[(record.key.as_ref(), &[])], &[])
                .map_err(|_| Error::MaxProvidedKeys)?;
        }
        Ok(())
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        let prefix = key_prefix(key);
        let rows = self
            .store
            .dht()
            .dht_scan(DhtTable::Providers, &prefix, MAX_PROVIDERS_PER_KEY * 2)
            .unwrap_or_default();
        rows.into_iter()
            .filter_map(|(k, v)| {
                let row: ProviderRow = ciborium::from_reader(&v[..]).ok()?;
                if expired(row.expires_ms) {
                    return None;
                }
                let provider = PeerId::from_bytes(&k[prefix.len()..]).ok()?;
                Some(ProviderRecord {
                    key: key.clone(),
                    provider,
                    expires: from_ms(row.expires_ms),
                    addresses: row
                        .addrs
                        .iter()
                        .filter_map(|a| Multiaddr::try_from(a.to_vec()).ok())
                        .collect(),
                })
            })
            .take(MAX_PROVIDERS_PER_KEY)
            .collect()
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        let rows = self
            .store
            .dht()
            .dht_scan(DhtTable::Provided, &[], usize::MAX)
            .unwrap_or_default();
        rows.into_iter()
            .map(|(k, _)| {
                Cow::Owned(ProviderRecord::new(
                    RecordKey::from(k),
                    self.local,
                    Vec::new(),
                ))
            })
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn remove_provider(&mut self, k: &RecordKey, p: &PeerId) {
        let dht = self.store.dht();
        let _ = dht.dht_apply(DhtTable::Providers, &[], &[&provider_key(k, p)]);
        if *p == self.local {
            let _ = dht.dht_apply(DhtTable::Provided, &[], &[k.as_ref()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_records_survive_reopen_and_are_bounded_per_key() {
        let dir = tempfile::tempdir().unwrap();
        let local = PeerId::random();
        let key = RecordKey::new(&b"root");
        {
            let store =
                Arc::new(Store::open(&dir.path().join("data"), Default::default()).unwrap());
            let mut s = DhtStore::new(store, local);
            for _ in 0..(MAX_PROVIDERS_PER_KEY + 5) {
                let mut r = ProviderRecord::new(key.clone(), PeerId::random(), vec![]);
                r.expires = Some(Instant::now() + Duration::from_secs(3600));
                s.add_provider(r).unwrap();
            }
            s.add_provider(ProviderRecord::new(key.clone(), local, vec![]))
                .unwrap();
            assert_eq!(s.provided().count(), 1);
        }
        let store = Arc::new(Store::open(&dir.path().join("data"), Default::default()).unwrap());
        let s = DhtStore::new(store, local);
        let ps = s.providers(&key);
        assert_eq!(ps.len(), MAX_PROVIDERS_PER_KEY);
        assert_eq!(s.provided().count(), 1);
        assert_eq!(s.provider_rows(), MAX_PROVIDERS_PER_KEY as u64 + 1);
    }

    #[test]
    fn more_than_1024_keys_can_be_provided() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("data"), Default::default()).unwrap());
        let local = PeerId::random();
        let mut s = DhtStore::new(store, local);
        for i in 0u32..2000 {
            s.add_provider(ProviderRecord::new(
                RecordKey::new(&i.to_be_bytes()),
                local,
                vec![],
            ))
            .unwrap();
        }
        assert_eq!(s.provided().count(), 2000);
    }
}
