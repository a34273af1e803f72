//! The announce protocol, `/storgo/announce/1.0.0`: a node hands a peer, in one message, the
//! provider records of many roots that the peer is among the closest to — the wire half of
//! the batched ("sweep") republish (DESIGN.md, "Republishing provider records").
//!
//! Spec: `protocols/announce-v1.md`. A record names no provider: the provider is always the
//! peer that sent the message (the connection's authenticated identity), so a peer can
//! announce only itself. This module defines the messages and their limits; [`codec`] puts
//! them on the wire. Which roots go to which peer is the node's job (`node::republish`); the
//! receiving side stores them in the Kademlia record store (`network::records`).

pub mod codec;

use libp2p::Multiaddr;

use crate::content::BlockAddress;

pub use super::replicate::RefuseReason;
pub use codec::AnnounceCodec;

/// Protocol name.
pub const PROTOCOL: &str = "/storgo/announce/1.0.0";
/// Most roots in one announcement.
pub const MAX_ROOTS: usize = 4096;
/// Most addresses of the provider in one announcement.
pub const MAX_ADDRS: usize = 16;
/// Longest address (bytes of its binary multiaddr).
pub const MAX_ADDR_BYTES: usize = 128;
/// Largest frame (CBOR map) in either direction: `MAX_ROOTS` keys of 34 bytes and
/// `MAX_ADDRS` addresses fit with room for CBOR's headers.
pub const MAX_FRAME: usize = 192 * 1024;
/// Longest refusal message.
pub const MAX_MESSAGE: usize = 256;

/// "I provide these roots; reach me at these addresses."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub roots: Vec<BlockAddress>,
    pub addrs: Vec<Multiaddr>,
}

/// The receiver's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnnounceResponse {
    /// `count` records were stored or refreshed (fewer than announced when a key already has
    /// as many providers as the receiver keeps).
    Stored { count: u32 },
    /// Nothing was stored.
    Refused {
        reason: RefuseReason,
        message: String,
    },
}
