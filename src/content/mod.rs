//! The content layer: what a file becomes before it touches a disk or a wire.
//!
//! It owns the byte formats specified in `protocols/` — block addresses
//! ([`BlockAddress`]), sealed blocks ([`crypto`]), chunk blocks ([`chunk`]), manifests ([`Manifest`]) and content IDs
//! ([`ContentId`]) — and the chunker that cuts a byte stream into content-defined chunks.
//! Everything here is a pure function over bytes: it must not do I/O beyond reading the
//! stream it is given, and every decoder takes bounded input and returns an error, never
//! panics.

pub mod address;
pub mod chunk;
pub mod chunker;
pub mod content_id;
pub mod crypto;
pub mod manifest;
pub mod stripe;

pub use address::BlockAddress;
pub use chunk::{open_chunk, seal_chunk, ChunkError};
pub use chunker::{Chunker, CHUNK_AVG, CHUNK_MAX, CHUNK_MIN};
pub use content_id::ContentId;
pub use crypto::{BlockKey, ConvergenceSecret};
pub use manifest::{
    validate_name, ChunkRef, DirEntry, DirManifest, EntryKind, FileManifest, Link, LinkKind,
    LinkManifest, Manifest, PageRef, Tree,
};

/// Largest block of any kind that storgo writes, stores or accepts: a parity block of a
/// stripe whose longest chunk is the chunker's maximum (that chunk's sealed length — the
/// chunk, its codec byte and the AEAD tag — rounded up to even, `stripes-v1.md`). Chunk
/// blocks are at most [`chunk::MAX_CHUNK_BLOCK`], one byte less; manifest blocks are held to
/// the smaller [`manifest::MAX_MANIFEST_BLOCK`].
pub const MAX_BLOCK_SIZE: usize = stripe::MAX_PARITY_BLOCK;

/// Errors of the content layer: malformed input, never an I/O failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContentError {
    #[error("malformed content ID: {0}")]
    MalformedContentId(&'static str),
    #[error("malformed block address: {0}")]
    MalformedAddress(String),
    #[error("block {address} failed to decrypt: wrong key or corrupted bytes")]
    Decrypt { address: BlockAddress },
    #[error("manifest {address} is malformed: {reason}")]
    MalformedManifest {
        address: BlockAddress,
        reason: String,
    },
    #[error("manifest too large: {size} bytes (limit {limit})")]
    ManifestTooLarge { size: usize, limit: usize },
    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("encoding manifest: {0}")]
    Encode(String),
    #[error("reading input: {0}")]
    Read(#[from] std::io::Error),
}
