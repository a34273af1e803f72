//! Block files: one file per sealed block under `blocks/`, named by the hex SHA-256 of its
//! bytes and sharded by the first two hex digits, with `tmp/` for blocks being written and
//! `corrupt/` for bad ones set aside.
//!
//! [`BlockFiles`] reads, lists, removes and sets aside these files and hands out temp names;
//! the batched crash-safe writer that fills them is the session's
//! ([`BlockWriter`](super::BlockWriter), in `session::writer`). This module knows plain files
//! only: it must not import the index, packs or sessions, must not decide what is reachable
//! (that is GC's job in `maintenance`), and never sees keys.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::content::BlockAddress;

use super::{Result, StoreError};

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Where block files live.
pub struct BlockFiles {
    blocks: PathBuf,
    tmp: PathBuf,
    corrupt: PathBuf,
}

impl BlockFiles {
    pub fn open(dir: &Path) -> Result<Self> {
        let me = Self {
            blocks: dir.join("blocks"),
            tmp: dir.join("tmp"),
            corrupt: dir.join("corrupt"),
        };
        for d in [&me.blocks, &me.tmp] {
            fs::create_dir_all(d).map_err(|e| StoreError::io("creating", d, e))?;
        }
        // Temp files are never named by the index: whatever a killed writer left is garbage.
        let entries = fs::read_dir(&me.tmp).map_err(|e| StoreError::io("listing", &me.tmp, e))?;
        for entry in entries.flatten() {
            let _ = fs::remove_file(entry.path());
        }
        Ok(me)
    }

    /// A fresh name under `tmp/` for a block being written. Temp files are never indexed:
    /// whatever a killed writer leaves there is removed at the next open.
    pub fn tmp_path(&self, a: &BlockAddress) -> PathBuf {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.tmp
            .join(format!("{}-{}-{n}", std::process::id(), a.to_hex()))
    }

    pub fn path_of(&self, a: &BlockAddress) -> PathBuf {
        let hex = a.to_hex();
        self.blocks.join(&hex[..2]).join(hex)
    }

    pub fn read(&self, a: &BlockAddress, limit: usize) -> Result<Vec<u8>> {
        let path = self.path_of(a);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::Missing { address: *a })
            }
            Err(e) => return Err(StoreError::io("opening block", path, e)),
        };
        let len = f
            .metadata()
            .map_err(|e| StoreError::io("reading block", &path, e))?
            .len();
        if len > crate::content::MAX_BLOCK_SIZE as u64 {
            return Err(StoreError::Corrupt {
                address: *a,
                path,
                reason: format!("{len} bytes, larger than any block can be"),
            });
        }
        if len > limit as u64 {
            // A real block, only not of the kind asked for (a chunk read as a manifest).
            return Err(StoreError::OverLimit {
                address: *a,
                len,
                limit,
            });
        }
        let mut buf = Vec::with_capacity(len as usize);
        f.read_to_end(&mut buf)
            .map_err(|e| StoreError::io("reading block", &path, e))?;
        Ok(buf)
    }

    /// The stored bytes of a block, checked against its address.
    pub fn read_verified(&self, a: &BlockAddress, limit: usize) -> Result<Vec<u8>> {
        let bytes = self.read(a, limit)?;
        if !a.matches(&bytes) {
            return Err(StoreError::Corrupt {
                address: *a,
                path: self.path_of(a),
                reason: "bytes do not hash to the block's address".into(),
            });
        }
        Ok(bytes)
    }

    /// Every block file on disk, whatever the index says.
    pub fn list(&self) -> Result<Vec<(BlockAddress, PathBuf)>> {
        let mut out = Vec::new();
        let shards =
            fs::read_dir(&self.blocks).map_err(|e| StoreError::io("listing", &self.blocks, e))?;
        for shard in shards.flatten() {
            let Ok(files) = fs::read_dir(shard.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name();
                if let Some(a) = name.to_str().and_then(BlockAddress::from_hex) {
                    out.push((a, f.path()));
                }
            }
        }
        Ok(out)
    }

    pub fn remove(&self, a: &BlockAddress) -> Result<()> {
        let path = self.path_of(a);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("removing block", path, e)),
        }
    }

    /// Moves a bad block file out of `blocks/` so that it is neither served nor trusted,
    /// keeping it for inspection.
    pub fn quarantine(&self, a: &BlockAddress) -> Result<PathBuf> {
        fs::create_dir_all(&self.corrupt)
            .map_err(|e| StoreError::io("creating", &self.corrupt, e))?;
        let from = self.path_of(a);
        let to = self.corrupt.join(a.to_hex());
        fs::rename(&from, &to).map_err(|e| StoreError::io("moving aside", &from, e))?;
        Ok(to)
    }

    /// Makes everything written on the store's filesystem durable (block files and packs).
    pub(crate) fn sync_fs(&self) -> Result<()> {
        let dir =
            File::open(&self.blocks).map_err(|e| StoreError::io("opening", &self.blocks, e))?;
        rustix::fs::syncfs(&dir).map_err(|e| StoreError::io("syncing", &self.blocks, e.into()))?;
        Ok(())
    }
}
