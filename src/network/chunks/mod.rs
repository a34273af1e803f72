//! The chunk exchange, `/storgo/chunks/1.0.0`: ask a peer for a manifest block, a chunk
//! block, or which of a list of blocks it has.
//!
//! Spec: `protocols/chunks-v1.md`. Responses carry sealed blocks only — never keys — and the
//! requester checks every block against its address before keeping it. This module defines
//! the messages and their limits; [`codec`] puts them on the wire. Deciding whom to ask is the
//! node's job (`node::fetch`), not this module's.

pub mod codec;

use crate::content::manifest::MAX_MANIFEST_BLOCK;
use crate::content::{BlockAddress, MAX_BLOCK_SIZE};

pub use codec::ChunkCodec;

/// Protocol name.
pub const PROTOCOL: &str = "/storgo/chunks/1.0.0";
/// Most addresses in one `Have` request.
pub const MAX_HAVE: usize = 1024;
/// Largest request or response header (CBOR).
pub const MAX_HEADER: usize = 64 * 1024;
/// Largest response body: a chunk block of the chunker's maximum.
pub const MAX_BODY: usize = MAX_BLOCK_SIZE;
/// Longest error message carried in a response.
pub const MAX_MESSAGE: usize = 256;
/// How long a responder waits for a whole request header once a stream is open: a request
/// cut off mid-frame is answered "bad request" after this, not held until libp2p's stream
/// timeout.
pub const REQUEST_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What a peer asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkRequest {
    /// A manifest block (at most [`MAX_MANIFEST_BLOCK`] bytes).
    GetManifest(BlockAddress),
    /// A chunk block (at most [`MAX_BLOCK_SIZE`] bytes).
    GetChunk(BlockAddress),
    /// Which of these blocks the peer holds (at most [`MAX_HAVE`]).
    Have(Vec<BlockAddress>),
    /// What arrived was not a valid request (why): it is answered with
    /// [`ErrorCode::BadRequest`], not with a reset stream, so that the asker learns what it
    /// did wrong. Sending one writes a request the responder cannot accept (op 0).
    Invalid(String),
    /// A request that stopped arriving: the stream ended inside the frame, or the header was
    /// not complete within [`REQUEST_READ_TIMEOUT`]. Answered like [`ChunkRequest::Invalid`],
    /// but not held against the peer: a connection that drops mid-request looks the same.
    Incomplete(String),
}

impl ChunkRequest {
    /// The largest body a valid answer to this request can have.
    pub fn max_block(&self) -> usize {
        match self {
            ChunkRequest::GetManifest(_) => MAX_MANIFEST_BLOCK,
            _ => MAX_BLOCK_SIZE,
        }
    }
}

/// Error codes of a [`ChunkResponse::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ErrorCode {
    /// The request was malformed or over a limit.
    BadRequest = 1,
    /// The responder is overloaded; try another peer or later.
    Busy = 2,
    /// The responder failed to read its own store.
    Internal = 3,
}

impl ErrorCode {
    pub fn from_u8(c: u8) -> Self {
        match c {
            1 => ErrorCode::BadRequest,
            2 => ErrorCode::Busy,
            _ => ErrorCode::Internal,
        }
    }
}

/// A peer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkResponse {
    /// The sealed block asked for, unverified until the requester hashes it.
    Block(Vec<u8>),
    /// One entry per requested address, in order.
    Have(Vec<bool>),
    NotFound,
    Error {
        code: ErrorCode,
        message: String,
    },
}
