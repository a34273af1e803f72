//! The index: a redb database of which blocks are held, which roots are pinned, and counters.
//!
//! Tables (all keyed by the 32-byte SHA-256 digest of a block):
//! - `blocks`: digest → stored size in bytes. A block is named here only once its file is
//!   complete and synced.
//! - `pins`: root digest → CBOR [`PinRecord`].
//! - `meta`: name → u64 counters (`bytes`: total of `blocks`).
//! - `replicas`: root digest → CBOR [`ReplicaRecord`]: items held for the network (the R
//!   closest peers to an item's root each hold one), apart from the user's pins.
//! - `sessions`: session number → CBOR [`SessionRecord`] of every session in progress
//!   (`session`); rows found at open were left by a crash and are removed.
//!
//! Later tables (replicas held for others, provider records) sit beside these in the same
//! file. This module must not touch block files.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::content::BlockAddress;

use super::packs::PackedAt;
use super::session::SessionRecord;
use super::{Result, StoreError};

const BLOCKS: TableDefinition<[u8; 32], u64> = TableDefinition::new("blocks");
/// Where each packed block lies (`packs`): pack id, offset, length.
const PACKED: TableDefinition<[u8; 32], [u8; 20]> = TableDefinition::new("packed");
const PINS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("pins");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// How little a row (key, value) is worth keeping when its prefix is full: higher goes first.
pub type RowRank<'a> = dyn Fn(&[u8], &[u8]) -> [u8; 33] + 'a;

const SESSIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("sessions");
const REPLICAS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("replicas");

/// Tables the network layer keeps its DHT state in (records, provider records, keys this node
/// provides). Opaque bytes to the store: the network layer owns their format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhtTable {
    Records,
    Providers,
    Provided,
    /// Peers banned for misbehaving (`node::reputation`).
    Bans,
    /// The collections this node publishes or follows (`collections::book`); written durably
    /// ([`Index::kv_write`]): it holds collection keys.
    Collections,
}

impl DhtTable {
    fn def(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        match self {
            DhtTable::Records => TableDefinition::new("dht_records"),
            DhtTable::Providers => TableDefinition::new("dht_providers"),
            DhtTable::Provided => TableDefinition::new("dht_provided"),
            DhtTable::Bans => TableDefinition::new("peer_bans"),
            DhtTable::Collections => TableDefinition::new("collections"),
        }
    }
}
const BYTES: &str = "bytes";

/// A pinned root as `ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PinRecord {
    /// The content ID (read capability) of the item.
    pub id: String,
    pub name: String,
    /// "file" or "dir".
    pub kind: String,
    /// Plaintext bytes of the item.
    pub size: u64,
    /// Unix seconds when it was pinned.
    pub pinned_at: u64,
    /// Still being fetched: the pin protects the blocks already here from GC so that an
    /// interrupted fetch resumes instead of starting over.
    #[serde(default)]
    pub partial: bool,
    /// A partial pin made by a read (`cat` or `get` through the node) in storgo 0.1; let go,
    /// not resumed, after a restart. Reads write no pin now (their session is their lease),
    /// so only rows an older version left carry it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub for_reading: bool,
    /// Copies the network keeps of it (`add --replicas`); `None`: the node's `--replication`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u8>,
}

/// An item held as a replica for the network, as `ls --replicas` shows it. Holders never
/// have the item's key: only its root address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplicaRecord {
    /// The item's root block address (`bafkrei…`).
    #[schema(value_type = String)]
    pub root: BlockAddress,
    /// How many copies the network keeps of it.
    pub replication: u8,
    /// Stored bytes of its blocks, as the pusher declared them.
    pub bytes: u64,
    /// Unix seconds when this node took it in.
    pub since: u64,
    /// Every block is here.
    pub complete: bool,
    /// Unix seconds of the last check of its blocks against their addresses.
    #[serde(default)]
    pub last_verified: Option<u64>,
    /// Unix seconds until which the copy is wanted (`replicate-v1.md`, "Leases"): renewed by
    /// the item's pinners; once it passes, the replica is let go. `None`: a row from before
    /// leases, given the node's default lease at its next repair round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<u64>,
}

/// What keeps an item here: the user's pin, or a replica held for the network.
#[derive(Debug, Clone)]
pub enum Holding {
    Pin(PinRecord),
    Replica(ReplicaRecord),
}

impl Holding {
    pub fn root(&self) -> Result<BlockAddress, crate::content::ContentError> {
        match self {
            Holding::Pin(p) => p.id.parse::<crate::content::ContentId>().map(|id| id.root),
            Holding::Replica(r) => Ok(r.root),
        }
    }

    /// Whether the item is still arriving (the holding keeps what has come, for resuming).
    pub fn is_partial(&self) -> bool {
        match self {
            Holding::Pin(p) => p.partial,
            Holding::Replica(r) => !r.complete,
        }
    }
}

/// Counts for `status` and quotas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoreStats {
    pub blocks: u64,
    pub bytes: u64,
    pub pins: u64,
    #[serde(default)]
    pub replicas: u64,
}

pub struct Index {
    db: Database,
    path: PathBuf,
}

impl Index {
    pub fn open(path: &Path) -> Result<Self> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create_atomically(path)?,
            Err(e) => return Err(StoreError::io("reading", path, e)),
            // redb would quietly make an empty index of it, and every item it listed would be
            // forgotten (and its blocks collected): storgo never leaves an empty index (it is
            // created under another name and renamed whole), so an empty one is damage.
            Ok(m) if m.len() == 0 => {
                return Err(StoreError::Index {
                    path: path.to_owned(),
                    message: "is empty (0 bytes): damaged; restore it from a backup, or move it \
                              aside to start an empty store (the items it listed are then lost)"
                        .into(),
                })
            }
            Ok(_) => {}
        }
        let db = Database::create(path).map_err(|e| StoreError::Index {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let me = Self {
            db,
            path: path.to_owned(),
        };
        // Create the tables up front so that readers never see "table does not exist".
        let tx = me.db.begin_write().map_err(|e| me.err(e))?;
        {
            tx.open_table(BLOCKS).map_err(|e| me.err(e))?;
            tx.open_table(PACKED).map_err(|e| me.err(e))?;
            tx.open_table(PINS).map_err(|e| me.err(e))?;
            tx.open_table(META).map_err(|e| me.err(e))?;
            tx.open_table(SESSIONS).map_err(|e| me.err(e))?;
            tx.open_table(REPLICAS).map_err(|e| me.err(e))?;
            for t in [
                DhtTable::Records,
                DhtTable::Providers,
                DhtTable::Provided,
                DhtTable::Bans,
                DhtTable::Collections,
            ] {
                tx.open_table(t.def()).map_err(|e| me.err(e))?;
            }
        }
        tx.commit().map_err(|e| me.err(e))?;
        Ok(me)
    }

    /// Creates a new index under a temporary name and renames it into place, so that a kill
    /// during creation leaves either no index or a whole one — never a file redb cannot open.
    fn create_atomically(path: &Path) -> Result<()> {
        let tmp = path.with_extension("redb.new");
        let err = |e: &dyn std::fmt::Display| StoreError::Index {
            path: tmp.clone(),
            message: e.to_string(),
        };
        let _ = std::fs::remove_file(&tmp);
        {
            let db = Database::create(&tmp).map_err(|e| err(&e))?;
            let tx = db.begin_write().map_err(|e| err(&e))?;
            tx.open_table(META).map_err(|e| err(&e))?;
            tx.commit().map_err(|e| err(&e))?;
        }
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| StoreError::io("syncing", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| StoreError::io("renaming", path, e))?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| StoreError::io("syncing", dir, e))?;
        }
        Ok(())
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Index {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    pub fn has_block(&self, a: &BlockAddress) -> Result<bool> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(BLOCKS).map_err(|e| self.err(e))?;
        Ok(t.get(a.digest()).map_err(|e| self.err(e))?.is_some())
    }

    pub fn have_blocks(&self, addrs: &[BlockAddress]) -> Result<Vec<bool>> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(BLOCKS).map_err(|e| self.err(e))?;
        addrs
            .iter()
            .map(|a| Ok(t.get(a.digest()).map_err(|e| self.err(e))?.is_some()))
            .collect()
    }

    /// The stored size of each block, `None` where it is not held.
    pub fn block_sizes(&self, addrs: &[BlockAddress]) -> Result<Vec<Option<u64>>> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(BLOCKS).map_err(|e| self.err(e))?;
        addrs
            .iter()
            .map(|a| {
                Ok(t.get(a.digest())
                    .map_err(|e| self.err(e))?
                    .map(|v| v.value()))
            })
            .collect()
    }

    /// Names blocks as held; sizes of blocks already named are not counted twice.
    pub fn add_blocks(&self, blocks: &[(BlockAddress, u64)]) -> Result<()> {
        let placed: Vec<_> = blocks.iter().map(|(a, s)| (*a, *s, None)).collect();
        self.add_placed_blocks(&placed)
    }

    /// Names blocks as held, with where each packed one lies (`None`: its own file).
    pub fn add_placed_blocks(
        &self,
        blocks: &[(BlockAddress, u64, Option<PackedAt>)],
    ) -> Result<()> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(BLOCKS).map_err(|e| self.err(e))?;
            let mut p = tx.open_table(PACKED).map_err(|e| self.err(e))?;
            let mut added = 0u64;
            for (a, size, at) in blocks {
                if t.insert(a.digest(), size)
                    .map_err(|e| self.err(e))?
                    .is_none()
                {
                    added += size;
                }
                match at {
                    Some(at) => {
                        p.insert(a.digest(), at.to_bytes())
                            .map_err(|e| self.err(e))?;
                    }
                    None => {
                        p.remove(a.digest()).map_err(|e| self.err(e))?;
                    }
                }
            }
            let mut m = tx.open_table(META).map_err(|e| self.err(e))?;
            let cur = m
                .get(BYTES)
                .map_err(|e| self.err(e))?
                .map(|v| v.value())
                .unwrap_or(0);
            m.insert(BYTES, cur + added).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    pub fn remove_blocks(&self, addrs: &[BlockAddress]) -> Result<u64> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let mut freed = 0u64;
        {
            let mut t = tx.open_table(BLOCKS).map_err(|e| self.err(e))?;
            let mut p = tx.open_table(PACKED).map_err(|e| self.err(e))?;
            for a in addrs {
                if let Some(v) = t.remove(a.digest()).map_err(|e| self.err(e))? {
                    freed += v.value();
                }
                p.remove(a.digest()).map_err(|e| self.err(e))?;
            }
            let mut m = tx.open_table(META).map_err(|e| self.err(e))?;
            let cur = m
                .get(BYTES)
                .map_err(|e| self.err(e))?
                .map(|v| v.value())
                .unwrap_or(0);
            m.insert(BYTES, cur.saturating_sub(freed))
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(freed)
    }

    /// Where a packed block lies (`None`: not packed, or not held).
    pub fn packed_at(&self, a: &BlockAddress) -> Result<Option<PackedAt>> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(PACKED).map_err(|e| self.err(e))?;
        Ok(t.get(a.digest())
            .map_err(|e| self.err(e))?
            .map(|v| PackedAt::from_bytes(v.value())))
    }

    /// Every packed block and where it lies.
    pub fn packed(&self) -> Result<Vec<(BlockAddress, PackedAt)>> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(PACKED).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            out.push((
                BlockAddress::from_digest(k.value()),
                PackedAt::from_bytes(v.value()),
            ));
        }
        Ok(out)
    }

    /// Points packed blocks at their new places (after a pack was rewritten), each only if
    /// it still lies where the rewrite read it.
    pub fn move_packed(&self, moves: &[(BlockAddress, PackedAt, PackedAt)]) -> Result<()> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(PACKED).map_err(|e| self.err(e))?;
            for (a, from, to) in moves {
                let current = t
                    .get(a.digest())
                    .map_err(|e| self.err(e))?
                    .map(|v| PackedAt::from_bytes(v.value()));
                if current == Some(*from) {
                    t.insert(a.digest(), to.to_bytes())
                        .map_err(|e| self.err(e))?;
                }
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Every indexed block and its size.
    pub fn blocks(&self) -> Result<Vec<(BlockAddress, u64)>> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(BLOCKS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            out.push((BlockAddress::from_digest(k.value()), v.value()));
        }
        Ok(out)
    }

    /// Writes a holding and, in the same durable transaction, removes the rows of the
    /// sessions given (the one that produced it, and others ended since the last write): the
    /// session *becomes* the holding, so a crash leaves one or the other.
    pub fn put_holding(&self, h: &Holding, sessions: &[u64]) -> Result<()> {
        let root = h.root().map_err(|e| self.err(e))?;
        let mut bytes = Vec::new();
        match h {
            Holding::Pin(r) => ciborium::into_writer(r, &mut bytes),
            Holding::Replica(r) => ciborium::into_writer(r, &mut bytes),
        }
        .map_err(|e| self.err(e))?;
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let table = match h {
                Holding::Pin(_) => PINS,
                Holding::Replica(_) => REPLICAS,
            };
            let mut t = tx.open_table(table).map_err(|e| self.err(e))?;
            t.insert(root.digest(), bytes.as_slice())
                .map_err(|e| self.err(e))?;
            let mut s = tx.open_table(SESSIONS).map_err(|e| self.err(e))?;
            for id in sessions {
                s.remove(id).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Extends the lease of the replica `root` to `until` (never shortens it), in one
    /// transaction so that a renewal and an intake's commit cannot undo each other. Returns
    /// whether the replica exists.
    pub fn renew_replica(&self, root: &BlockAddress, until: u64) -> Result<bool> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let found = {
            let mut t = tx.open_table(REPLICAS).map_err(|e| self.err(e))?;
            let held = match t.get(root.digest()).map_err(|e| self.err(e))? {
                Some(v) => Some(self.decode_replica(v.value())?),
                None => None,
            };
            match held {
                Some(mut r) => {
                    if r.lease_until.is_none_or(|l| l < until) {
                        r.lease_until = Some(until);
                        let mut bytes = Vec::new();
                        ciborium::into_writer(&r, &mut bytes).map_err(|e| self.err(e))?;
                        t.insert(root.digest(), bytes.as_slice())
                            .map_err(|e| self.err(e))?;
                    }
                    true
                }
                None => false,
            }
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(found)
    }

    pub fn get_replica(&self, root: &BlockAddress) -> Result<Option<ReplicaRecord>> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(REPLICAS).map_err(|e| self.err(e))?;
        match t.get(root.digest()).map_err(|e| self.err(e))? {
            Some(v) => Ok(Some(self.decode_replica(v.value())?)),
            None => Ok(None),
        }
    }

    fn decode_replica(&self, bytes: &[u8]) -> Result<ReplicaRecord> {
        ciborium::from_reader(bytes).map_err(|e| self.err(format!("replica record: {e}")))
    }

    /// Every replica held, by root.
    pub fn replicas(&self) -> Result<Vec<ReplicaRecord>> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(REPLICAS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in t.iter().map_err(|e| self.err(e))? {
            let (_, v) = row.map_err(|e| self.err(e))?;
            out.push(self.decode_replica(v.value())?);
        }
        Ok(out)
    }

    pub fn remove_replica(&self, root: &BlockAddress) -> Result<Option<ReplicaRecord>> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let old = {
            let mut t = tx.open_table(REPLICAS).map_err(|e| self.err(e))?;
            let v = t.remove(root.digest()).map_err(|e| self.err(e))?;
            match v {
                Some(v) => Some(self.decode_replica(v.value())?),
                None => None,
            }
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(old)
    }

    /// Records a session before it touches any block (durably: a crash must leave a trace),
    /// removing the rows of sessions that have ended since the last write.
    pub fn put_session(&self, id: u64, r: &SessionRecord, ended: &[u64]) -> Result<()> {
        let mut bytes = Vec::new();
        ciborium::into_writer(r, &mut bytes).map_err(|e| self.err(e))?;
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(SESSIONS).map_err(|e| self.err(e))?;
            for old in ended {
                t.remove(old).map_err(|e| self.err(e))?;
            }
            t.insert(id, bytes.as_slice()).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Removes the rows of sessions that have ended (at a clean stop).
    pub fn remove_sessions(&self, ended: &[u64]) -> Result<()> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(SESSIONS).map_err(|e| self.err(e))?;
            for old in ended {
                t.remove(old).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Removes every session row and returns them: called at open, when no session of this
    /// process exists yet, so every row is one a crash interrupted.
    pub fn take_sessions(&self) -> Result<Vec<SessionRecord>> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        {
            let mut t = tx.open_table(SESSIONS).map_err(|e| self.err(e))?;
            for row in t.iter().map_err(|e| self.err(e))? {
                let (_, v) = row.map_err(|e| self.err(e))?;
                match ciborium::from_reader::<SessionRecord, _>(v.value()) {
                    Ok(r) => out.push(r),
                    Err(e) => out.push(SessionRecord {
                        kind: super::session::SessionKind::Add,
                        label: format!("(unreadable session row: {e})"),
                        started: 0,
                    }),
                }
            }
            t.retain(|_, _| false).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(out)
    }

    /// How many session rows exist (for tests and `status`).
    pub fn session_rows(&self) -> Result<u64> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(SESSIONS).map_err(|e| self.err(e))?;
        t.len().map_err(|e| self.err(e))
    }

    pub fn remove_pin(&self, root: &BlockAddress) -> Result<Option<PinRecord>> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let old = {
            let mut t = tx.open_table(PINS).map_err(|e| self.err(e))?;
            let v = t.remove(root.digest()).map_err(|e| self.err(e))?;
            match v {
                Some(v) => Some(self.decode_pin(v.value())?),
                None => None,
            }
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(old)
    }

    fn decode_pin(&self, bytes: &[u8]) -> Result<PinRecord> {
        ciborium::from_reader(bytes).map_err(|e| self.err(format!("pin record: {e}")))
    }

    pub fn get_pin(&self, root: &BlockAddress) -> Result<Option<PinRecord>> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(PINS).map_err(|e| self.err(e))?;
        match t.get(root.digest()).map_err(|e| self.err(e))? {
            Some(v) => Ok(Some(self.decode_pin(v.value())?)),
            None => Ok(None),
        }
    }

    pub fn pins(&self) -> Result<Vec<PinRecord>> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(PINS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in t.iter().map_err(|e| self.err(e))? {
            let (_, v) = row.map_err(|e| self.err(e))?;
            out.push(self.decode_pin(v.value())?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// A value kept in the index's small key → number table (`None`: never set).
    pub fn meta(&self, key: &str) -> Result<Option<u64>> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let meta = tx.open_table(META).map_err(|e| self.err(e))?;
        Ok(meta.get(key).map_err(|e| self.err(e))?.map(|v| v.value()))
    }

    pub fn set_meta(&self, key: &str, value: u64) -> Result<()> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        tx.open_table(META)
            .map_err(|e| self.err(e))?
            .insert(key, value)
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    pub fn stats(&self) -> Result<StoreStats> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let blocks = tx.open_table(BLOCKS).map_err(|e| self.err(e))?;
        let pins = tx.open_table(PINS).map_err(|e| self.err(e))?;
        let replicas = tx.open_table(REPLICAS).map_err(|e| self.err(e))?;
        let meta = tx.open_table(META).map_err(|e| self.err(e))?;
        Ok(StoreStats {
            blocks: blocks.len().map_err(|e| self.err(e))?,
            bytes: meta
                .get(BYTES)
                .map_err(|e| self.err(e))?
                .map(|v| v.value())
                .unwrap_or(0),
            pins: pins.len().map_err(|e| self.err(e))?,
            replicas: replicas.len().map_err(|e| self.err(e))?,
        })
    }

    /// Writes DHT rows without waiting for the disk: DHT state is soft (republished by its
    /// owners), and this runs on the network event loop.
    pub fn dht_apply(
        &self,
        table: DhtTable,
        puts: &[(&[u8], &[u8])],
        removes: &[&[u8]],
    ) -> Result<()> {
        let mut tx = self.db.begin_write().map_err(|e| self.err(e))?;
        tx.set_durability(redb::Durability::None)
            .map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(table.def()).map_err(|e| self.err(e))?;
            for (k, v) in puts {
                t.insert(*k, *v).map_err(|e| self.err(e))?;
            }
            for k in removes {
                t.remove(*k).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Writes rows durably: on return they survive a crash (for state that is nobody else's
    /// to republish, such as a collection's key and draft).
    pub fn kv_write(
        &self,
        table: DhtTable,
        puts: &[(&[u8], &[u8])],
        removes: &[&[u8]],
    ) -> Result<()> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(table.def()).map_err(|e| self.err(e))?;
            for (k, v) in puts {
                t.insert(*k, *v).map_err(|e| self.err(e))?;
            }
            for k in removes {
                t.remove(*k).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Writes many rows in one transaction (without waiting for the disk, as [`dht_apply`]),
    /// each row `(key, prefix_len, value)`: an existing row is overwritten; a new one is
    /// skipped when its key's first `prefix_len` bytes already start `per_prefix` rows or the
    /// table holds `max_rows`, or when `admit_new` (asked last, about new rows only) says no.
    /// Returns how many rows were written.
    ///
    /// [`dht_apply`]: Self::dht_apply
    /// `rank` (see [`RowRank`]) orders rows of one prefix by how little they are worth keeping (given the row's
    /// key and value; higher goes first): when a prefix is full, a new row takes the place of
    /// the highest-ranked one if it ranks lower itself.
    pub fn dht_insert_bounded(
        &self,
        table: DhtTable,
        rows: &[(Vec<u8>, usize, Vec<u8>)],
        per_prefix: usize,
        max_rows: u64,
        admit_new: &mut dyn FnMut(&[u8]) -> bool,
        rank: &RowRank<'_>,
    ) -> Result<u32> {
        let mut tx = self.db.begin_write().map_err(|e| self.err(e))?;
        tx.set_durability(redb::Durability::None)
            .map_err(|e| self.err(e))?;
        let mut written = 0u32;
        {
            let mut t = tx.open_table(table.def()).map_err(|e| self.err(e))?;
            let mut len = t.len().map_err(|e| self.err(e))?;
            for (key, prefix_len, value) in rows {
                let exists = t.get(key.as_slice()).map_err(|e| self.err(e))?.is_some();
                if !exists {
                    let prefix = &key[..(*prefix_len).min(key.len())];
                    let mut same = 0;
                    let mut worst: Option<([u8; 33], Vec<u8>)> = None;
                    for row in t.range(prefix..).map_err(|e| self.err(e))? {
                        let (k, v) = row.map_err(|e| self.err(e))?;
                        if !k.value().starts_with(prefix) || same >= per_prefix {
                            break;
                        }
                        same += 1;
                        let r = rank(k.value(), v.value());
                        if worst.as_ref().is_none_or(|(w, _)| r > *w) {
                            worst = Some((r, k.value().to_vec()));
                        }
                    }
                    let replaces = match worst {
                        Some((w, victim)) if same >= per_prefix => {
                            if rank(key, value) >= w {
                                continue;
                            }
                            Some(victim)
                        }
                        _ => None,
                    };
                    if (replaces.is_none() && len >= max_rows) || !admit_new(key) {
                        continue;
                    }
                    match replaces {
                        Some(victim) => {
                            t.remove(victim.as_slice()).map_err(|e| self.err(e))?;
                        }
                        None => len += 1,
                    }
                }
                t.insert(key.as_slice(), value.as_slice())
                    .map_err(|e| self.err(e))?;
                written += 1;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(written)
    }

    pub fn dht_get(&self, table: DhtTable, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(table.def()).map_err(|e| self.err(e))?;
        Ok(t.get(key)
            .map_err(|e| self.err(e))?
            .map(|v| v.value().to_vec()))
    }

    /// Rows whose key starts with `prefix` (all rows for an empty prefix), at most `limit`.
    pub fn dht_scan(
        &self,
        table: DhtTable,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(table.def()).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in t.range(prefix..).map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            if !k.value().starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    pub fn dht_len(&self, table: DhtTable) -> Result<u64> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = tx.open_table(table.def()).map_err(|e| self.err(e))?;
        t.len().map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_half_created_index_left_by_a_kill_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        // What a kill during creation leaves: a partial file under the temporary name only.
        std::fs::write(path.with_extension("redb.new"), b"partial").unwrap();
        let idx = Index::open(&path).unwrap();
        assert_eq!(idx.stats().unwrap(), StoreStats::default());
        assert!(!path.with_extension("redb.new").exists());
    }
}
