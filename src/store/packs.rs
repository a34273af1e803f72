//! Pack files: small blocks appended to shared files under `packs/`, so that a folder of
//! course notes does not cost a filesystem block (4 KiB) and an inode per 300-byte manifest
//! and per 10 KB chunk.
//!
//! Blocks shorter than [`PACK_THRESHOLD`] go here; larger ones stay one file each in
//! `blocks/` (a file's last filesystem block wastes at most 6% of them). Each writer appends
//! to packs of its own, never shared, so no two threads write one file. A record is the
//! block's SHA-256 digest, its length (u32 LE) and its bytes; the index names where each
//! packed block lies (`packed` table) once the pack is durable, by the same sync-then-index
//! order as block files, so a kill leaves at worst unindexed records — dead bytes.
//!
//! Packs are append-only: GC drops index rows, and [`Packs`] reclaims the space by rewriting
//! a pack whose live records fill less than three quarters of it (`maintenance`). A pack that
//! a writer still has open is never touched. This module must not decide what is live.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::content::BlockAddress;

use super::rows::PackedAt;
use super::{Result, StoreError};

/// Blocks shorter than this (sealed bytes) are packed.
pub const PACK_THRESHOLD: usize = 64 * 1024;
/// A writer starts a new pack once its current one holds this much.
const PACK_MAX: u64 = 64 * 1024 * 1024;
/// Bytes before each block in a pack: its SHA-256 digest and its length.
pub const RECORD_HEADER: u64 = 36;

/// Where a packed block lies is an index row ([`PackedAt`], declared in `rows`); how much of
/// its pack the record takes is the pack format, kept here.
impl PackedAt {
    /// The record's whole size in its pack.
    pub fn record_len(&self) -> u64 {
        RECORD_HEADER + u64::from(self.len)
    }
}

/// The `packs/` folder and which packs writers have open.
pub struct Packs {
    dir: PathBuf,
    open: Mutex<HashSet<u64>>,
}

impl Packs {
    pub fn open(data_dir: &Path) -> Result<Self> {
        let dir = data_dir.join("packs");
        fs::create_dir_all(&dir).map_err(|e| StoreError::io("creating", &dir, e))?;
        Ok(Self {
            dir,
            open: Mutex::default(),
        })
    }

    fn path(&self, pack: u64) -> PathBuf {
        self.dir.join(format!("{pack:016x}.pack"))
    }

    fn open_set(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new, empty pack for one writer, registered as open until the appender is dropped.
    pub fn create(self: &Arc<Self>) -> Result<PackAppender> {
        loop {
            let pack = rand::random::<u64>();
            // Registered as open *before* the file exists: GC lists the packs and then looks at
            // which are open, so a pack it can see is always one it knows to be open. (Marked
            // after creation, a GC in between took the new, empty pack for garbage and unlinked
            // it while its writer went on appending: the records were lost with the inode.)
            if !self.open_set().insert(pack) {
                continue;
            }
            let path = self.path(pack);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    return Ok(PackAppender {
                        packs: Arc::clone(self),
                        pack,
                        file,
                        len: 0,
                    });
                }
                Err(e) => {
                    self.open_set().remove(&pack);
                    if e.kind() == io::ErrorKind::AlreadyExists {
                        continue;
                    }
                    return Err(StoreError::io("creating", &path, e));
                }
            }
        }
    }

    /// Reads a packed block (at most `limit` bytes). `Missing` when the pack is gone (it was
    /// compacted meanwhile: the caller looks the block up again).
    pub fn read(&self, a: &BlockAddress, at: PackedAt, limit: usize) -> Result<Vec<u8>> {
        let path = self.path(at.pack);
        if at.len as usize > limit {
            return Err(StoreError::Corrupt {
                address: *a,
                path,
                reason: format!("{} bytes, over the {limit}-byte limit", at.len),
            });
        }
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::Missing { address: *a })
            }
            Err(e) => return Err(StoreError::io("opening pack", path, e)),
        };
        let mut buf = vec![0u8; at.len as usize];
        match f.read_exact_at(&mut buf, at.offset) {
            Ok(()) => Ok(buf),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(StoreError::Corrupt {
                address: *a,
                path,
                reason: "its pack is shorter than the index says".into(),
            }),
            Err(e) => Err(StoreError::io("reading pack", path, e)),
        }
    }

    /// Every pack on disk and its size.
    pub fn list(&self) -> Result<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        let entries =
            fs::read_dir(&self.dir).map_err(|e| StoreError::io("listing", &self.dir, e))?;
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".pack"))
                .and_then(|n| u64::from_str_radix(n, 16).ok())
            else {
                continue;
            };
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            out.push((id, len));
        }
        Ok(out)
    }

    /// The packs writers have open now.
    pub fn open_now(&self) -> HashSet<u64> {
        self.open_set().clone()
    }

    pub fn remove(&self, pack: u64) -> Result<()> {
        let path = self.path(pack);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("removing pack", path, e)),
        }
    }
}

/// One writer's current pack.
pub struct PackAppender {
    packs: Arc<Packs>,
    pack: u64,
    file: File,
    len: u64,
}

impl PackAppender {
    /// Appends a record; the block is durable at the next `syncfs`.
    pub fn append(&mut self, a: &BlockAddress, block: &[u8]) -> Result<PackedAt> {
        let len = u32::try_from(block.len()).map_err(|_| StoreError::Corrupt {
            address: *a,
            path: self.packs.path(self.pack),
            reason: "too large to pack".into(),
        })?;
        let mut record = Vec::with_capacity(RECORD_HEADER as usize + block.len());
        record.extend_from_slice(a.digest());
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(block);
        self.file
            .write_all(&record)
            .map_err(|e| StoreError::io("writing", self.packs.path(self.pack), e))?;
        let at = PackedAt {
            pack: self.pack,
            offset: self.len + RECORD_HEADER,
            len,
        };
        self.len += record.len() as u64;
        Ok(at)
    }

    /// Whether it is time for a new pack.
    pub fn full(&self) -> bool {
        self.len >= PACK_MAX
    }
}

impl Drop for PackAppender {
    fn drop(&mut self) {
        self.packs.open_set().remove(&self.pack);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packs() -> (tempfile::TempDir, Arc<Packs>) {
        let dir = tempfile::tempdir().unwrap();
        let packs = Arc::new(Packs::open(dir.path()).unwrap());
        (dir, packs)
    }

    #[test]
    fn records_read_back_and_a_damaged_pack_is_named_not_trusted() {
        let (_dir, packs) = packs();
        let blocks: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 100 + i as usize]).collect();
        let mut w = packs.create().unwrap();
        let places: Vec<(BlockAddress, PackedAt)> = blocks
            .iter()
            .map(|b| {
                let a = BlockAddress::of(b);
                (a, w.append(&a, b).unwrap())
            })
            .collect();
        let pack = places[0].1.pack;
        assert!(packs.open_now().contains(&pack));
        drop(w);
        assert!(
            !packs.open_now().contains(&pack),
            "released with its writer"
        );
        for ((a, at), b) in places.iter().zip(&blocks) {
            assert_eq!(&packs.read(a, *at, 1 << 20).unwrap(), b);
        }
        let listed = packs.list().unwrap();
        let total: u64 = places.iter().map(|(_, at)| at.record_len()).sum();
        assert_eq!(listed, vec![(pack, total)]);

        // An index row claiming more than the caller's limit is not read at all.
        let (a, at) = places[2];
        let err = packs.read(&a, at, 10).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        // A pack cut short (a damaged disk) is corrupt, naming the pack.
        let f = OpenOptions::new()
            .write(true)
            .open(packs.path(pack))
            .unwrap();
        f.set_len(at.offset + 5).unwrap();
        let err = packs.read(&a, at, 1 << 20).unwrap_err();
        assert!(
            err.to_string().contains("shorter than the index says"),
            "{err}"
        );
        assert!(err.to_string().contains(".pack"), "{err}");
        // A pack that is gone (compacted meanwhile) is missing: the reader looks again.
        packs.remove(pack).unwrap();
        packs.remove(pack).unwrap();
        let err = packs.read(&places[0].0, places[0].1, 1 << 20).unwrap_err();
        assert!(matches!(err, StoreError::Missing { .. }), "{err}");
    }

    #[test]
    fn files_that_are_not_packs_are_left_out_of_the_list() {
        let (dir, packs) = packs();
        let w = packs.create().unwrap();
        std::fs::write(dir.path().join("packs").join("notes.txt"), b"x").unwrap();
        std::fs::write(dir.path().join("packs").join("zz.pack"), b"x").unwrap();
        assert_eq!(packs.list().unwrap().len(), 1);
        drop(w);
    }
}
