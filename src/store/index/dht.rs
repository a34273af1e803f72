//! The DHT tables ([`DhtTable`]): opaque key → value rows the network layer keeps its state
//! in (DHT records, provider records, keys this node provides, bans, collections). Their
//! format is the network layer's: this module writes, bounds and scans rows, and must not
//! interpret them beyond the ranking its caller passes in.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use crate::store::rows::DhtTable;
use crate::store::Result;

use super::Index;

/// How little a row (key, value) is worth keeping when its prefix is full: higher goes first.
pub type RowRank<'a> = dyn Fn(&[u8], &[u8]) -> [u8; 33] + 'a;

impl Index {
    /// Writes DHT rows without waiting for the disk: DHT state is soft (republished by its
    /// owners), and this runs on the network event loop.
    pub fn dht_apply(
        &self,
        table: DhtTable,
        puts: &[(&[u8], &[u8])],
        removes: &[&[u8]],
    ) -> Result<()> {
        self.write_rows(table, puts, removes, redb::Durability::None)
    }

    /// Writes rows durably: on return they survive a crash (for state that is nobody else's
    /// to republish, such as a collection's key and draft).
    pub fn kv_write(
        &self,
        table: DhtTable,
        puts: &[(&[u8], &[u8])],
        removes: &[&[u8]],
    ) -> Result<()> {
        self.write_rows(table, puts, removes, redb::Durability::Immediate)
    }

    fn write_rows(
        &self,
        table: DhtTable,
        puts: &[(&[u8], &[u8])],
        removes: &[&[u8]],
        durability: redb::Durability,
    ) -> Result<()> {
        let mut tx = self.db.begin_write().map_err(|e| self.err(e))?;
        tx.set_durability(durability).map_err(|e| self.err(e))?;
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
