//! The index: what the redb database (`index.redb`) says is here, and the transactions that
//! keep it consistent. It names which blocks are held (and where a packed one lies), which
//! roots are pinned or held as replicas for the network, the sessions in progress, and the
//! `bytes` counter, updated in the same transaction as the blocks it counts; the network
//! layer's DHT tables are in [`dht`].
//!
//! Table names and row types live in [`rows`](super::rows); this module only reads and writes
//! them. It must not touch block or pack files, and knows a session only as its row (what a
//! live session protects is [`session`](super::session)'s business).

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::content::BlockAddress;

use super::rows::{
    DhtTable, Holding, PackedAt, PinRecord, ReplicaRecord, SessionKind, SessionRecord, BLOCKS,
    BYTES, META, PACKED, PINS, REPLICAS, SESSIONS,
};
use super::{Result, StoreError};

mod dht;

pub use dht::RowRank;

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
            for t in DhtTable::ALL {
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

    /// Records the stripe map of the whole pin `root`, in one transaction so that an unpin
    /// meanwhile is not undone. Returns whether such a pin exists.
    pub fn set_stripe_map(&self, root: &BlockAddress, map: BlockAddress) -> Result<bool> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let found = {
            let mut t = tx.open_table(PINS).map_err(|e| self.err(e))?;
            let pin = match t.get(root.digest()).map_err(|e| self.err(e))? {
                Some(v) => Some(self.decode_pin(v.value())?),
                None => None,
            };
            match pin {
                Some(mut p) if !p.partial => {
                    p.stripe_map = Some(map);
                    let mut bytes = Vec::new();
                    ciborium::into_writer(&p, &mut bytes).map_err(|e| self.err(e))?;
                    t.insert(root.digest(), bytes.as_slice())
                        .map_err(|e| self.err(e))?;
                    true
                }
                _ => false,
            }
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(found)
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
        self.remove_record(REPLICAS, root, Self::decode_replica)
    }

    /// Removes `root`'s row of a table of CBOR records (pins, replicas), returning it.
    fn remove_record<T>(
        &self,
        table: TableDefinition<'static, [u8; 32], &'static [u8]>,
        root: &BlockAddress,
        decode: fn(&Self, &[u8]) -> Result<T>,
    ) -> Result<Option<T>> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let old = {
            let mut t = tx.open_table(table).map_err(|e| self.err(e))?;
            let v = t.remove(root.digest()).map_err(|e| self.err(e))?;
            match v {
                Some(v) => Some(decode(self, v.value())?),
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
                        kind: SessionKind::Add,
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
        self.remove_record(PINS, root, Self::decode_pin)
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
