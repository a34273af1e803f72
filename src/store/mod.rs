//! The store: one data dir on one machine.
//!
//! It owns everything on disk — block files ([`blocks`]) and packs of small blocks
//! ([`packs`]), the redb index of blocks, pins and counters ([`index`], its row types and table
//! names in [`rows`]), the data-dir lock ([`lock`]) and the convergence secret — and the
//! operations that keep them consistent: batched crash-safe writes, garbage collection and
//! verification ([`maintenance`]). It knows blocks and their public links, never keys or
//! plaintext: opening manifests is the [`files`](crate::files) layer's job.
//!
//! What keeps a block from GC is one mechanism, [`Session`] ([`session`]): every write, every
//! reliance on a block already held, and every commit of a pin happens inside one.
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
pub mod packs;
pub mod rows;
pub mod session;
pub mod stripes;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::content::{BlockAddress, ContentId, ConvergenceSecret};

pub use index::StoreStats;
pub use maintenance::{BlockCheck, CheckedItem, GcReport, VerifyReport};
pub use rows::{DhtTable, Holding, PinRecord, ReplicaRecord, SessionKind, SessionRecord};
pub use session::{BlockWriter, Session};
pub use stripes::StripesHeld;

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
    #[error("data dir {path} can be read by other users (mode {mode:03o}); it holds secrets: run `chmod 700 {path}`")]
    OpenToOthers { path: PathBuf, mode: u32 },
    #[error("block {address} is corrupt ({path}): {reason}")]
    Corrupt {
        address: BlockAddress,
        path: PathBuf,
        reason: String,
    },
    #[error("block {address} is {len} bytes, more than the {limit} bytes expected of it (a chunk where a manifest was expected?)")]
    OverLimit {
        address: BlockAddress,
        len: u64,
        limit: usize,
    },
    #[error("storage quota exceeded: writing {needed} more bytes would pass the limit of {limit} bytes ({used} used)")]
    QuotaExceeded { needed: u64, used: u64, limit: u64 },
    #[error("convergence secret in {path} is not 64 hex digits")]
    BadSecret { path: PathBuf },
    #[error("{0} is not pinned")]
    NotPinned(String),
    #[error("item {root} is not complete here: {missing} of its blocks are missing")]
    Incomplete { root: BlockAddress, missing: u64 },
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
    parts: session::Parts,
    secret: ConvergenceSecret,
    /// One GC or verify at a time: both list and change what is on disk.
    maintenance: Mutex<()>,
    /// Sessions a crash left behind, removed when this store was opened.
    interrupted: Vec<SessionRecord>,
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(error = %e, "ended sessions left in the index (reported at the next start)");
        }
    }
}

impl Store {
    /// The data dir used when neither `--data-dir` nor `STORGO_DATA_DIR` is given.
    pub fn default_dir() -> Option<PathBuf> {
        directories::ProjectDirs::from("org", "storgo", "storgo").map(|p| p.data_dir().to_owned())
    }

    /// Opens (creating if needed) the data dir at `dir`, taking its lock, and removes the
    /// sessions a crash left (their blocks stay until a GC finds nothing holding them).
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Self> {
        create_private_dir(dir)?;
        let lock = Arc::new(lock::DirLock::acquire(dir)?);
        let secret = match opts.convergence_secret {
            Some(s) => s,
            None => load_or_create_secret(&dir.join(SECRET_FILE))?,
        };
        let blocks = Arc::new(blocks::BlockFiles::open(dir)?);
        let packs = Arc::new(packs::Packs::open(dir)?);
        let index = Arc::new(index::Index::open(&dir.join("index.redb"))?);
        let interrupted = index.take_sessions()?;
        for s in &interrupted {
            tracing::warn!(kind = ?s.kind, label = %s.label, started = s.started, "removed a session interrupted by a crash or a stop");
        }
        Ok(Self {
            parts: session::Parts {
                dir: dir.to_owned(),
                blocks,
                packs,
                index,
                registry: Arc::default(),
                max_storage: opts.max_storage,
                _lock: lock,
            },
            secret,
            maintenance: Mutex::new(()),
            interrupted,
        })
    }

    /// Starts a session (see [`session`]): what an add, a fetch, a pin or an unprotected read
    /// does its work in.
    pub fn session(&self, kind: SessionKind, label: &str) -> Result<Session> {
        Session::begin(self.parts.clone(), kind, label)
    }

    /// The sessions a crash (or a stop in their middle) had left in the index, removed when
    /// this store was opened.
    pub fn interrupted_sessions(&self) -> &[SessionRecord] {
        &self.interrupted
    }

    /// Session rows in the index: the sessions in progress (and, before open cleans them,
    /// those a crash interrupted).
    pub fn session_rows(&self) -> Result<u64> {
        self.parts.index.session_rows()
    }

    /// Removes the index rows of the sessions that have ended, so that the next open does not
    /// take them for work a crash interrupted. A session's row is otherwise removed lazily, by
    /// the next session's first write: without this every clean stop after a read looked like
    /// a crash at the next start. Sessions still alive keep their rows (a stop in the middle
    /// of an add did interrupt it). Runs when the store is dropped; callers that stop on
    /// purpose call it first to see its error.
    pub fn close(&self) -> Result<()> {
        let ended = self.parts.registry.take_ended();
        if ended.is_empty() {
            return Ok(());
        }
        self.parts.index.remove_sessions(&ended).inspect_err(|_| {
            self.parts.registry.return_ended(ended.clone());
        })
    }

    /// Sessions alive in this process now.
    pub fn live_sessions(&self) -> usize {
        self.parts.registry.live_sessions()
    }

    pub fn dir(&self) -> &Path {
        &self.parts.dir
    }

    pub fn secret(&self) -> &ConvergenceSecret {
        &self.secret
    }

    pub fn max_storage(&self) -> Option<u64> {
        self.parts.max_storage
    }

    /// The data dir's filesystem: bytes available to this user, and its whole size.
    pub fn disk_space(&self) -> Result<(u64, u64)> {
        let dir = self.dir();
        let st = rustix::fs::statvfs(dir)
            .map_err(|e| StoreError::io("checking free space of", dir, e.into()))?;
        let unit = st.f_frsize;
        Ok((st.f_bavail * unit, st.f_blocks * unit))
    }

    /// Whether the index names this block (it is complete and synced on disk).
    pub fn has_block(&self, address: &BlockAddress) -> Result<bool> {
        self.parts.index.has_block(address)
    }

    /// For each address, whether it is held: the answer to a peer's "have" question.
    pub fn have_blocks(&self, addresses: &[BlockAddress]) -> Result<Vec<bool>> {
        self.parts.index.have_blocks(addresses)
    }

    /// The stored bytes of a block, unverified (readers authenticate with the key, peers with
    /// the address). At most `limit` bytes are read.
    pub fn read_block(&self, address: &BlockAddress, limit: usize) -> Result<Vec<u8>> {
        self.parts.read_block(address, limit)
    }

    /// The stored bytes of a block, checked against its address.
    pub fn read_verified(&self, address: &BlockAddress, limit: usize) -> Result<Vec<u8>> {
        self.parts.read_verified(address, limit)
    }

    /// Removes a pin; its blocks stay until `gc`.
    pub fn unpin(&self, id: &ContentId) -> Result<PinRecord> {
        self.parts
            .index
            .remove_pin(&id.root)?
            .ok_or_else(|| StoreError::NotPinned(id.to_string()))
    }

    /// Every replica held for the network.
    pub fn replicas(&self) -> Result<Vec<ReplicaRecord>> {
        self.parts.index.replicas()
    }

    pub fn replica_of(&self, root: &BlockAddress) -> Result<Option<ReplicaRecord>> {
        self.parts.index.get_replica(root)
    }

    /// Drops a replica (its blocks go at the next GC unless something else holds them).
    /// Extends the replica `root`'s lease to `until` (never shortens it); false when this node
    /// holds no replica of it.
    pub fn renew_replica(&self, root: &BlockAddress, until: u64) -> Result<bool> {
        self.parts.index.renew_replica(root, until)
    }

    pub fn drop_replica(&self, root: &BlockAddress) -> Result<Option<ReplicaRecord>> {
        self.parts.index.remove_replica(root)
    }

    pub fn pin_of(&self, root: &BlockAddress) -> Result<Option<PinRecord>> {
        self.parts.index.get_pin(root)
    }

    /// Every pinned root, sorted by name.
    /// The pins a user made (what `ls` lists): every pin but storgo's own.
    pub fn user_pins(&self) -> Result<Vec<PinRecord>> {
        Ok(self.pins()?.into_iter().filter(|p| !p.internal).collect())
    }

    pub fn pins(&self) -> Result<Vec<PinRecord>> {
        self.parts.index.pins()
    }

    /// Stored sizes of `blocks` (`None` for one not held).
    pub fn block_sizes(&self, blocks: &[BlockAddress]) -> Result<Vec<Option<u64>>> {
        self.parts.index.block_sizes(blocks)
    }

    pub fn stats(&self) -> Result<StoreStats> {
        self.parts.index.stats()
    }

    /// The blocks kept in packs rather than in files of their own, and where each lies.
    pub fn packed_blocks(&self) -> Result<Vec<(BlockAddress, rows::PackedAt)>> {
        self.parts.index.packed()
    }

    /// The DHT's persistent state; see [`DhtTable`].
    pub fn dht(&self) -> &index::Index {
        &self.parts.index
    }
}

/// Creates the data dir owner-only, or checks that an existing one is: like ssh with its
/// keys, storgo refuses a data dir others can read or enter, since it holds the convergence
/// secret, the node's identity key and the API token.
fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| StoreError::io("creating data dir", dir, e))?;
    let mode = std::fs::metadata(dir)
        .map_err(|e| StoreError::io("reading data dir", dir, e))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(StoreError::OpenToOthers {
            path: dir.to_owned(),
            mode,
        });
    }
    Ok(())
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
    std::fs::rename(&tmp, path).map_err(|e| StoreError::io("renaming", path, e))?;
    // The rename is durable only once the folder holding it is: without this a crash soon
    // after could leave the old file (or none) behind a write that reported success.
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("syncing the folder of", path, e))
}
