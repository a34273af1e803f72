//! Adding and reading files and folders.
//!
//! This layer turns a path or a byte stream into sealed chunks and manifests in a
//! [`Store`](crate::store::Store) and prints a [`ContentId`](crate::content::ContentId)
//! ([`add`]), and turns a content ID back into bytes ([`read`]). It is the only layer that
//! holds keys and plaintext together; it must not talk to the network — a fetch brings the
//! blocks into the store and reads them through here, as they arrive ([`read::ChunkSource`]).
//!
//! Both directions are pipelines over both cores: one thread reads (and, when adding, chunks
//! and hashes the whole stream), worker threads seal or open chunks, and the calling thread
//! writes in order. Every channel between them is bounded, so memory is bounded by the chunks
//! in flight, never by the file size.

pub mod add;
pub mod browse;
pub mod read;

use std::path::PathBuf;

use crate::content::ContentError;
use crate::store::StoreError;

pub use add::{add_path, add_reader, AddOptions, Added, Skipped};
pub use read::{
    cat, get, load_manifest, load_root, pin_complete, sha256, stat, write_output, ChunkSource,
    ItemStat, Output,
};

/// Errors of adding and reading items.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FilesError {
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is a directory (add it with -r)")]
    IsDirectory { path: PathBuf },
    #[error("{path} is not a regular file or directory")]
    Unsupported { path: PathBuf },
    #[error("{path}: file name is not valid UTF-8")]
    NonUtf8Name { path: PathBuf },
    #[error("{id} is a folder: use `storgo get {id} -o DIR`")]
    IsFolder { id: String },
    #[error("{id} is a file, not a folder")]
    NotAFolder { id: String },
    #[error("{path:?} is not in the folder {id}")]
    NoSuchPath { id: String, path: String },
    #[error("{path} already exists; choose another -o path")]
    Exists { path: PathBuf },
    #[error("{what} is corrupt: {reason}")]
    Corrupt { what: String, reason: String },
    #[error("{id} is not complete here ({have} of {total} chunks held); fetch it first")]
    Incomplete { id: String, have: u64, total: u64 },
    #[error("{id} is not held here; `storgo fetch ID` brings it from the network")]
    NotHeld { id: String },
    #[error("writing output: {0}")]
    Output(std::io::Error),
}

impl FilesError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FilesError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// Whether this is a closed output pipe (`storgo cat … | head`), which is not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, FilesError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

pub type Result<T, E = FilesError> = std::result::Result<T, E>;

/// Threads that seal or open chunks beside the reading thread.
pub(crate) fn worker_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8)
}
