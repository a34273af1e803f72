//! The store: one data dir on one machine.
//!
//! It owns everything on disk — block files ([`blocks`]), the redb index of blocks, pins and
//! counters ([`index`]), the data-dir lock ([`lock`]) and the convergence secret — and the
//! operations that keep them consistent: batched crash-safe writes, garbage collection and
//! verification ([`maintenance`]). It knows blocks and their public links, never keys or
//! plaintext: opening manifests is the [`files`](crate::files) layer's job.
//!
//! Ordering rule that makes a SIGKILL harmless: a block file is written under `tmp/`, synced,
//! renamed into `blocks/`, synced again, and only then named in the index; a pin is committed
//! only after every block it reaches is in the index. Whatever a kill interrupts is either an
//! unnamed temp file (removed on the next open) or a complete block not yet indexed (adopted
//! by `verify`, removed by `gc` if nothing reaches it).

pub mod blocks;
pub mod index;
pub mod lock;
pub mod maintenance;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::content::{BlockAddress, ContentId, ConvergenceSecret};

pub use blocks::BlockWriter;
pub use index::{DhtTable, PinRecord, StoreStats};
pub use maintenance::{GcReport, VerifyReport};

/// File in the data dir that holds the convergence secret (64 hex digits).
pub const SECRET_FILE: &str = "convergence-secret";

/// Errors of the store layer; each names the path or block it concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("data dir {dir} is in use by PID {pid} (stop that process or use another --data-dir)")]
    InUse { dir: PathBuf, pid: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("index {path}: {message}")]
    Index { path: PathBuf, message: String },
    #[error("block {address} is not held locally")]
    Missing { address: BlockAddress },
    #[error("block {address} is corrupt ({path}): {reason}")]
    Corrupt {
        address: BlockAddress,
        path: PathBuf,
        reason: String,
    },
    #[error("storage quota exceeded: writing {needed} more bytes would pass the limit of {limit} bytes ({used} used)")]
    QuotaExceeded { needed: u64, used: u64, limit: u64 },
    #[error("convergence secret in {path} is not 64 hex digits")]
    BadSecret { path: PathBuf },
    #[error("{0} is not pinned")]
    NotPinned(String),
}

impl StoreError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How a store is opened.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// Refuse writes that would take the block files past this many bytes.
    pub max_storage: Option<u64>,
    /// Use this secret instead of the data dir's own (nodes of a class or lab that share
    /// one dedupe identical files between them).
    pub convergence_secret: Option<ConvergenceSecret>,
}

/// An open data dir. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Store {
    dir: PathBuf,
    blocks: Arc<blocks::BlockFiles>,
    index: Arc<index::Index>,
    secret: ConvergenceSecret,
    max_storage: Option<u64>,
    /// Writers hold it shared, GC holds it exclusively: a GC must not sweep the blocks of an
    /// item whose pin is not yet committed.
    gc_lock: RwLock<()>,
    _lock: lock::DirLock,
}

impl Store {
    /// The data dir used when neither `--data-dir` nor `STORGO_DATA_DIR` is given.
    pub fn default_dir() -> Option<PathBuf> {
        directories::ProjectDirs::from("org", "storgo", "storgo").map(|p| p.data_dir().to_owned())
    }

    /// Opens (creating if needed) the data dir at `dir`, taking its lock.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Self> {
        create_private_dir(dir)?;
        let lock = lock::DirLock::acquire(dir)?;
        let secret = match opts.convergence_secret {
            Some(s) => s,
            None => load_or_create_secret(&dir.join(SECRET_FILE))?,
        };
        let blocks = Arc::new(blocks::BlockFiles::open(dir)?);
        let index = Arc::new(index::Index::open(&dir.join("index.redb"))?);
        Ok(Self {
            dir: dir.to_owned(),
            blocks,
            index,
            secret,
            max_storage: opts.max_storage,
            gc_lock: RwLock::new(()),
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn secret(&self) -> &ConvergenceSecret {
        &self.secret
    }

    pub fn max_storage(&self) -> Option<u64> {
        self.max_storage
    }

    /// Whether the index names this block (it is complete and synced on disk).
    pub fn has_block(&self, address: &BlockAddress) -> Result<bool> {
        self.index.has_block(address)
    }

    /// For each address, whether it is held: the answer to a peer's "have" question.
    pub fn have_blocks(&self, addresses: &[BlockAddress]) -> Result<Vec<bool>> {
        self.index.have_blocks(addresses)
    }

    /// The stored bytes of a block, unverified (readers authenticate with the key, peers with
    /// the address). At most `limit` bytes are read.
    pub fn read_block(&self, address: &BlockAddress, limit: usize) -> Result<Vec<u8>> {
        self.blocks.read(address, limit)
    }

    /// The stored bytes of a block, checked against its address.
    pub fn read_verified(&self, address: &BlockAddress, limit: usize) -> Result<Vec<u8>> {
        let bytes = self.blocks.read(address, limit)?;
        if !address.matches(&bytes) {
            return Err(StoreError::Corrupt {
                address: *address,
                path: self.blocks.path_of(address),
                reason: "bytes do not hash to the block's address".into(),
            });
        }
        Ok(bytes)
    }

    /// Starts a batch of block writes. Blocks become visible in batches, each synced before
    /// it is indexed; drop without `finish` and the unflushed part is discarded.
    pub fn writer(&self) -> BlockWriter<'_> {
        BlockWriter::new(self, self.gc_lock.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Records `record` as a pinned root. Call only after the item's blocks are written.
    pub fn pin(&self, record: &PinRecord) -> Result<()> {
        self.index.put_pin(record)
    }

    /// Removes a pin; its blocks stay until `gc`.
    pub fn unpin(&self, id: &ContentId) -> Result<PinRecord> {
        self.index
            .remove_pin(&id.root)?
            .ok_or_else(|| StoreError::NotPinned(id.to_string()))
    }

    pub fn pin_of(&self, root: &BlockAddress) -> Result<Option<PinRecord>> {
        self.index.get_pin(root)
    }

    /// Every pinned root, sorted by name.
    pub fn pins(&self) -> Result<Vec<PinRecord>> {
        self.index.pins()
    }

    pub fn stats(&self) -> Result<StoreStats> {
        self.index.stats()
    }

    /// The DHT's persistent state; see [`DhtTable`].
    pub fn dht(&self) -> &index::Index {
        &self.index
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| StoreError::io("creating data dir", dir, e))
}

fn load_or_create_secret(path: &Path) -> Result<ConvergenceSecret> {
    match std::fs::read_to_string(path) {
        Ok(s) => ConvergenceSecret::from_hex(&s).ok_or_else(|| StoreError::BadSecret {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let secret = ConvergenceSecret::generate();
            write_private_file(path, format!("{}\n", secret.to_hex()).as_bytes())?;
            Ok(secret)
        }
        Err(e) => Err(StoreError::io("reading convergence secret", path, e)),
    }
}

/// Writes a small secret file atomically with mode 0600.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| StoreError::io("creating", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| StoreError::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| StoreError::io("renaming", path, e))
}
