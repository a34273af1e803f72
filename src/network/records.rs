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
/// Provider records one peer may have on this node, by default: a generous store's worth of
/// items (only roots are provided, not blocks) and 1% of the table.
pub const MAX_PROVIDERS_PER_PEER: u64 = 10_000;
pub const MAX_RECORDS: u64 = 65_536;
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
const MAX_ADDRS: usize = 16;

/// A provider record another peer sent: `provider` holds the item rooted at `root`.
#[derive(Debug, Clone)]
pub struct RemoteProvider {
    pub root: crate::content::BlockAddress,
    pub provider: PeerId,
    pub addrs: Vec<Multiaddr>,
}

impl RemoteProvider {
    /// The record kad received, if its key is one of storgo's (the multihash of a root,
    /// `dht-v1.md`); anything else is not stored.
    pub fn from_kad(r: &ProviderRecord) -> Option<Self> {
        let k = r.key.as_ref();
        if k.len() != 34 || k[..2] != [0x12, 0x20] {
            return None;
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&k[2..]);
        Some(Self {
            root: crate::content::BlockAddress::from_digest(digest),
            provider: r.provider,
            addrs: r.addresses.clone(),
        })
    }
}

/// Provider records held per providing peer, so that no one peer fills the table.
pub struct ProviderCounts {
    counts: std::collections::HashMap<PeerId, u64>,
    /// Most records one peer may have here.
    pub limit: u64,
    /// New records refused because their peer was at the limit (since start).
    pub refused: u64,
}

impl ProviderCounts {
    pub fn new(counts: std::collections::HashMap<PeerId, u64>, limit: u64) -> Self {
        Self {
            counts,
            limit,
            refused: 0,
        }
    }

    fn admit(&mut self, peer: PeerId) -> bool {
        let n = self.counts.entry(peer).or_insert(0);
        if *n >= self.limit {
            self.refused += 1;
            return false;
        }
        *n += 1;
        true
    }

    pub fn of(&self, peer: &PeerId) -> u64 {
        self.counts.get(peer).copied().unwrap_or(0)
    }
}

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

/// How little a provider row is worth keeping when its key is full (higher goes first): an
/// expired row ranks above all, then by the provider's XOR distance to the key (kad's metric:
/// SHA-256 of the key's bytes and of the PeerId's). The closest providers are the replica
/// holders a fetch most needs, and a full key must not refuse a new one for an old record of
/// a peer long gone. `value` may be empty (a row not yet written: never expired).
fn provider_rank(row_key: &[u8], value: &[u8], now_ms: u64) -> [u8; 33] {
    use sha2::Digest;
    let expired = !value.is_empty()
        && ciborium::from_reader::<ProviderRow, _>(value)
            .ok()
            .and_then(|r| r.expires_ms)
            .is_some_and(|e| e <= now_ms);
    if expired || row_key.len() < 2 {
        return [0xff; 33];
    }
    let at = (2 + u16::from_be_bytes([row_key[0], row_key[1]]) as usize).min(row_key.len());
    let key = sha2::Sha256::digest(&row_key[2..at]);
    let peer = sha2::Sha256::digest(&row_key[at..]);
    // The first byte stays 0 for a live row: an expired one outranks even the farthest.
    let mut d = [0u8; 33];
    for (i, b) in d[1..].iter_mut().enumerate() {
        *b = key[i] ^ peer[i];
    }
    d
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
#[derive(Clone)]
pub struct DhtStore {
    store: Arc<Store>,
    local: PeerId,
}

impl DhtStore {
    pub fn new(store: Arc<Store>, local: PeerId) -> Self {
        Self { store, local }
    }

    /// Drops expired provider records and value records; returns how many went.
    pub fn remove_expired(&self) -> usize {
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

    /// Stores provider records received from other peers, in one transaction, under the
    /// limits: [`MAX_PROVIDERS_PER_KEY`] per key, [`MAX_PROVIDER_ROWS`] in all, and
    /// `counts.limit` per providing peer. `ttl` is this node's provider TTL (never the
    /// sender's). Returns the records stored (refreshed or new).
    pub fn add_remote(
        &self,
        records: &[RemoteProvider],
        ttl: Duration,
        counts: &mut ProviderCounts,
    ) -> std::result::Result<u32, crate::store::StoreError> {
        let expires_ms = Some(now_ms() + ttl.as_millis() as u64);
        let rows: Vec<(Vec<u8>, usize, Vec<u8>)> = records
            .iter()
            .filter(|r| r.provider != self.local)
            .map(|r| {
                let key = super::provider_key(&r.root);
                let prefix = key_prefix(&key).len();
                let row = encode(&ProviderRow {
                    expires_ms,
                    addrs: r
                        .addrs
                        .iter()
                        .take(MAX_ADDRS)
                        .map(|a| serde_bytes::ByteBuf::from(a.to_vec()))
                        .collect(),
                });
                (provider_key(&key, &r.provider), prefix, row)
            })
            .collect();
        let prefix_len = |k: &[u8]| 2 + u16::from_be_bytes([k[0], k[1]]) as usize;
        let now = now_ms();
        self.store.dht().dht_insert_bounded(
            DhtTable::Providers,
            &rows,
            MAX_PROVIDERS_PER_KEY,
            MAX_PROVIDER_ROWS,
            &mut |row_key| match PeerId::from_bytes(&row_key[prefix_len(row_key)..]) {
                Ok(peer) => counts.admit(peer),
                Err(_) => false,
            },
            &|row_key, value| provider_rank(row_key, value, now),
        )
    }

    /// How many provider rows each peer has here (this node's own excluded).
    pub fn count_by_provider(
        &self,
    ) -> std::result::Result<std::collections::HashMap<PeerId, u64>, crate::store::StoreError> {
        let mut out = std::collections::HashMap::new();
        for (k, _) in self
            .store
            .dht()
            .dht_scan(DhtTable::Providers, &[], usize::MAX)?
        {
            if k.len() < 2 {
                continue;
            }
            let at = 2 + u16::from_be_bytes([k[0], k[1]]) as usize;
            if let Some(Ok(peer)) = k.get(at..).map(PeerId::from_bytes) {
                if peer != self.local {
                    *out.entry(peer).or_insert(0) += 1;
                }
            }
        }
        Ok(out)
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
                    // Full: as kad's MemoryStore does, a provider closer to the key takes the
                    // place of the farthest (an expired row goes first).
                    let now = now_ms();
                    let worst = existing
                        .iter()
                        .map(|(k, v)| (provider_rank(k, v, now), k))
                        .max();
                    match worst {
                        Some((w, victim)) if provider_rank(&row_key, &[], now) < w => {
                            dht.dht_apply(DhtTable::Providers, &[], &[victim.as_slice()])
                                .map_err(|_| Error::MaxProvidedKeys)?;
                        }
                        _ => return Ok(()),
                    }
                } else if dht.dht_len(DhtTable::Providers).unwrap_or(0) >= MAX_PROVIDER_ROWS {
                    return Err(Error::MaxProvidedKeys);
                }
            } else if dht.dht_len(DhtTable::Providers).unwrap_or(0) >= MAX_PROVIDER_ROWS {
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

    fn dht_store() -> (tempfile::TempDir, DhtStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("data"), Default::default()).unwrap());
        (dir, DhtStore::new(store, PeerId::random()))
    }

    fn root_key(i: u8) -> crate::content::BlockAddress {
        crate::content::BlockAddress::of(&[i])
    }

    #[test]
    fn value_records_are_kept_bounded_and_expire() {
        let (_dir, mut s) = dht_store();
        let key = RecordKey::new(&b"k");
        let mut r = Record::new(key.clone(), b"v".to_vec());
        r.publisher = Some(PeerId::random());
        r.expires = Some(Instant::now() + Duration::from_secs(3600));
        s.put(r.clone()).unwrap();
        let got = s.get(&key).unwrap();
        assert_eq!(
            (got.value.clone(), got.publisher),
            (r.value.clone(), r.publisher)
        );
        assert_eq!(s.records().count(), 1);
        assert!(matches!(
            s.put(Record::new(key.clone(), vec![0; MAX_RECORD_BYTES])),
            Err(Error::ValueTooLarge)
        ));
        s.remove(&key);
        assert!(s.get(&key).is_none());

        // An expired record is neither returned nor listed, and the sweep removes it.
        let mut old = Record::new(RecordKey::new(&b"old"), b"x".to_vec());
        old.expires = Some(Instant::now());
        s.put(old).unwrap();
        assert!(s.get(&RecordKey::new(&b"old")).is_none());
        assert_eq!(s.records().count(), 0);
        assert_eq!(s.remove_expired(), 1);
        assert_eq!(s.remove_expired(), 0);
    }

    #[test]
    fn remote_providers_are_capped_per_peer_counted_and_swept_when_expired() {
        let (_dir, s) = dht_store();
        let (greedy, other) = (PeerId::random(), PeerId::random());
        let offers: Vec<RemoteProvider> = (0..10u8)
            .map(|i| RemoteProvider {
                root: root_key(i),
                provider: if i < 8 { greedy } else { other },
                addrs: vec!["/ip4/127.0.0.1/tcp/1".parse().unwrap()],
            })
            .collect();
        let mut counts = ProviderCounts::new(s.count_by_provider().unwrap(), 5);
        let stored = s
            .add_remote(&offers, Duration::from_secs(3600), &mut counts)
            .unwrap();
        assert_eq!(
            stored, 7,
            "five of the greedy peer's eight, both of the other's"
        );
        assert_eq!(
            (counts.of(&greedy), counts.of(&other), counts.refused),
            (5, 2, 3)
        );
        let by_peer = s.count_by_provider().unwrap();
        assert_eq!((by_peer[&greedy], by_peer[&other]), (5, 2));
        assert_eq!(
            s.providers(&crate::network::provider_key(&root_key(9)))
                .len(),
            1
        );

        // Records that have had their time are swept, and no longer counted.
        let mut counts = ProviderCounts::new(Default::default(), 100);
        let late = [RemoteProvider {
            root: root_key(50),
            provider: other,
            addrs: vec![],
        }];
        s.add_remote(&late, Duration::ZERO, &mut counts).unwrap();
        assert_eq!(s.remove_expired(), 1);
        assert_eq!(s.count_by_provider().unwrap()[&other], 2);
    }

    #[test]
    fn only_keys_that_are_root_multihashes_come_from_kad() {
        let root = root_key(1);
        let ok = ProviderRecord::new(
            crate::network::provider_key(&root),
            PeerId::random(),
            vec![],
        );
        assert_eq!(RemoteProvider::from_kad(&ok).map(|r| r.root), Some(root));
        for key in [&b"short"[..], &[0x13, 0x20].repeat(17)[..]] {
            let bad = ProviderRecord::new(RecordKey::new(&key), PeerId::random(), vec![]);
            assert!(RemoteProvider::from_kad(&bad).is_none(), "{key:?}");
        }
    }
}
