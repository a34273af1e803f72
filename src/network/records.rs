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
    /// Set on the store kad owns: its writes go to a thread of their own (see [`WriteBehind`]).
    behind: Option<Arc<WriteBehind>>,
}

/// A write kad asked for, in the order it asked.
enum Write {
    Put(Record),
    Remove(RecordKey),
    AddProvider(ProviderRecord),
    RemoveProvider(RecordKey, PeerId),
}

/// Writes not yet in the index, by row, with the sequence number of the last one: reads merge
/// them, so kad sees its own writes at once.
#[derive(Default)]
struct Pending {
    records: std::collections::HashMap<Vec<u8>, (u64, Option<Record>)>,
    providers: std::collections::HashMap<Vec<u8>, (u64, Option<ProviderRecord>)>,
}

/// Kad calls its record store on the event loop, and every index write waits for the index's
/// single writer, which a GC batch or a durable session commit may hold for a while: the loop
/// must not wait with it. So the store kad owns hands its writes to a thread (in order, on a
/// bounded queue) and keeps them in [`Pending`] until they land. A write that finds the queue
/// full is dropped with a warning: the DHT is soft state its owners republish.
struct WriteBehind {
    tx: Option<crossbeam_channel::Sender<(u64, Write)>>,
    pending: Arc<std::sync::Mutex<Pending>>,
    next: std::sync::atomic::AtomicU64,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Writes queued behind the index at most.
const WRITE_QUEUE: usize = 65_536;

impl WriteBehind {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, write: Write) {
        let seq = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut p = self.pending();
        match &write {
            Write::Put(r) => {
                p.records.insert(r.key.to_vec(), (seq, Some(r.clone())));
            }
            Write::Remove(k) => {
                p.records.insert(k.to_vec(), (seq, None));
            }
            Write::AddProvider(r) => {
                p.providers
                    .insert(provider_key(&r.key, &r.provider), (seq, Some(r.clone())));
            }
            Write::RemoveProvider(k, peer) => {
                p.providers.insert(provider_key(k, peer), (seq, None));
            }
        }
        drop(p);
        let Some(tx) = &self.tx else { return };
        if let Err(crossbeam_channel::TrySendError::Full((seq, w))) = tx.try_send((seq, write)) {
            tracing::warn!("DHT writes are queued behind a busy index; one is dropped");
            settle(&mut self.pending(), seq, &w);
        }
    }
}

impl Drop for WriteBehind {
    /// Lets the queued writes land, so that the store is released when the node has stopped.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Forgets a pending write once it has landed (or been dropped), unless a later one replaced it.
fn settle(p: &mut Pending, seq: u64, w: &Write) {
    fn forget<T>(map: &mut std::collections::HashMap<Vec<u8>, (u64, T)>, key: Vec<u8>, seq: u64) {
        if map.get(&key).is_some_and(|(s, _)| *s == seq) {
            map.remove(&key);
        }
    }
    match w {
        Write::Put(r) => forget(&mut p.records, r.key.to_vec(), seq),
        Write::Remove(k) => forget(&mut p.records, k.to_vec(), seq),
        Write::AddProvider(r) => forget(&mut p.providers, provider_key(&r.key, &r.provider), seq),
        Write::RemoveProvider(k, peer) => forget(&mut p.providers, provider_key(k, peer), seq),
    }
}

impl DhtStore {
    pub fn new(store: Arc<Store>, local: PeerId) -> Self {
        Self {
            store,
            local,
            behind: None,
        }
    }

    /// The store for kad's behaviour: reads as [`new`](Self::new)'s, writes off the caller's
    /// thread (see [`WriteBehind`]).
    pub fn written_behind(store: Arc<Store>, local: PeerId) -> Self {
        let direct = Self::new(store.clone(), local);
        let (tx, rx) = crossbeam_channel::bounded::<(u64, Write)>(WRITE_QUEUE);
        let pending = Arc::new(std::sync::Mutex::new(Pending::default()));
        let landed = Arc::clone(&pending);
        let thread = std::thread::Builder::new()
            .name("dht-writes".into())
            .spawn(move || {
                let mut direct = direct;
                for (seq, w) in rx {
                    let done = match &w {
                        Write::Put(r) => direct.put_now(r.clone()).map_err(|e| format!("{e:?}")),
                        Write::Remove(k) => {
                            direct.remove_now(k);
                            Ok(())
                        }
                        Write::AddProvider(r) => direct
                            .add_provider_now(r.clone())
                            .map_err(|e| format!("{e:?}")),
                        Write::RemoveProvider(k, p) => {
                            direct.remove_provider_now(k, p);
                            Ok(())
                        }
                    };
                    if let Err(why) = done {
                        tracing::debug!(reason = %why, "DHT write refused");
                    }
                    settle(
                        &mut landed.lock().unwrap_or_else(|e| e.into_inner()),
                        seq,
                        &w,
                    );
                }
            });
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                // No thread: write on the caller's, as before.
                tracing::warn!(error = %e, "cannot start the DHT writer thread; kad writes inline");
                return Self::new(store, local);
            }
        };
        Self {
            store,
            local,
            behind: Some(Arc::new(WriteBehind {
                tx: Some(tx),
                pending,
                next: std::sync::atomic::AtomicU64::new(0),
                thread: Some(thread),
            })),
        }
    }

    /// Waits until every write queued so far has landed (tests, and a caller about to read
    /// the index directly).
    pub fn flush(&self) {
        let Some(b) = &self.behind else { return };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            {
                let p = b.pending();
                if p.records.is_empty() && p.providers.is_empty() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
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
        if let Some(b) = &self.behind {
            if let Some((_, r)) = b.pending().records.get(k.as_ref()) {
                return r
                    .as_ref()
                    .filter(|r| !r.is_expired(Instant::now()))
                    .map(|r| Cow::Owned(r.clone()));
            }
        }
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
        match &self.behind {
            Some(b) => {
                b.send(Write::Put(r));
                Ok(())
            }
            None => self.put_now(r),
        }
    }

    fn remove(&mut self, k: &RecordKey) {
        match &self.behind {
            Some(b) => b.send(Write::Remove(k.clone())),
            None => self.remove_now(k),
        }
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        let mut out: std::collections::BTreeMap<Vec<u8>, Record> = self
            .records_now()
            .into_iter()
            .map(|r| (r.key.to_vec(), r))
            .collect();
        if let Some(b) = &self.behind {
            let now = Instant::now();
            for (k, (_, r)) in &b.pending().records {
                match r {
                    Some(r) if !r.is_expired(now) => out.insert(k.clone(), r.clone()),
                    _ => out.remove(k),
                };
            }
        }
        out.into_values()
            .map(Cow::Owned)
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn add_provider(&mut self, record: ProviderRecord) -> Result<()> {
        match &self.behind {
            Some(b) => {
                b.send(Write::AddProvider(record));
                Ok(())
            }
            None => self.add_provider_now(record),
        }
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        let mut out = self.providers_now(key);
        if let Some(b) = &self.behind {
            let prefix = key_prefix(key);
            let now = Instant::now();
            for (row, (_, r)) in &b.pending().providers {
                if !row.starts_with(&prefix) {
                    continue;
                }
                let Ok(peer) = PeerId::from_bytes(&row[prefix.len()..]) else {
                    continue;
                };
                out.retain(|p| p.provider != peer);
                if let Some(r) = r.as_ref().filter(|r| !r.is_expired(now)) {
                    out.push(r.clone());
                }
            }
            out.truncate(MAX_PROVIDERS_PER_KEY);
        }
        out
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        let mut keys: std::collections::BTreeSet<Vec<u8>> = self.provided_now();
        if let Some(b) = &self.behind {
            for (row, (_, r)) in &b.pending().providers {
                let mine = row.ends_with(&self.local.to_bytes());
                if !mine || row.len() < 2 {
                    continue;
                }
                let at = (2 + u16::from_be_bytes([row[0], row[1]]) as usize).min(row.len());
                let key = row[2..at].to_vec();
                match r {
                    Some(_) => keys.insert(key),
                    None => keys.remove(&key),
                };
            }
        }
        keys.into_iter()
            .map(|k| {
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
        match &self.behind {
            Some(b) => b.send(Write::RemoveProvider(k.clone(), *p)),
            None => self.remove_provider_now(k, p),
        }
    }
}

/// The index itself, without the write-behind layer.
impl DhtStore {
    fn put_now(&mut self, r: Record) -> Result<()> {
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

    fn remove_now(&mut self, k: &RecordKey) {
        let _ = self
            .store
            .dht()
            .dht_apply(DhtTable::Records, &[], &[k.as_ref()]);
    }

    fn records_now(&self) -> Vec<Record> {
        let rows = self
            .store
            .dht()
            .dht_scan(DhtTable::Records, &[], MAX_RECORDS as usize)
            .unwrap_or_default();
        rows.into_iter()
            .filter_map(|(k, v)| {
                let row: RecordRow = ciborium::from_reader(&v[..]).ok()?;
                (!expired(row.expires_ms)).then(|| Record {
                    key: RecordKey::from(k),
                    value: row.value.into_vec(),
                    publisher: row.publisher.and_then(|p| PeerId::from_bytes(&p).ok()),
                    expires: from_ms(row.expires_ms),
                })
            })
            .collect()
    }

    fn add_provider_now(&mut self, record: ProviderRecord) -> Result<()> {
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

    fn providers_now(&self, key: &RecordKey) -> Vec<ProviderRecord> {
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

    fn provided_now(&self) -> std::collections::BTreeSet<Vec<u8>> {
        self.store
            .dht()
            .dht_scan(DhtTable::Provided, &[], usize::MAX)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    fn remove_provider_now(&mut self, k: &RecordKey, p: &PeerId) {
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
    fn writes_behind_are_seen_at_once_and_land_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("data"), Default::default()).unwrap());
        let local = PeerId::random();
        let mut kad_side = DhtStore::written_behind(Arc::clone(&store), local);
        let direct = DhtStore::new(Arc::clone(&store), local);
        let key = RecordKey::new(&b"root");
        let other = PeerId::random();
        let mut theirs = ProviderRecord::new(key.clone(), other, vec![]);
        theirs.expires = Some(Instant::now() + Duration::from_secs(3600));
        kad_side.add_provider(theirs).unwrap();
        kad_side
            .add_provider(ProviderRecord::new(key.clone(), local, vec![]))
            .unwrap();
        kad_side
            .put(Record::new(key.clone(), b"v".to_vec()))
            .unwrap();
        // Seen by kad before they land...
        assert_eq!(kad_side.providers(&key).len(), 2);
        assert_eq!(kad_side.provided().count(), 1);
        assert!(kad_side.get(&key).is_some());
        // ...and in the index once they have, in the order asked.
        kad_side.remove_provider(&key, &local);
        kad_side.remove(&key);
        assert_eq!(kad_side.provided().count(), 0);
        assert!(kad_side.get(&key).is_none());
        kad_side.flush();
        assert_eq!(direct.providers(&key).len(), 1);
        assert_eq!(direct.provided().count(), 0);
        assert!(direct.get(&key).is_none());
        assert_eq!(kad_side.providers(&key).len(), 1);
        drop(kad_side);
        drop(direct);
        // The writer thread let go of the store: it reopens.
        drop(store);
        Store::open(&dir.path().join("data"), Default::default()).unwrap();
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
