//! The replicate protocol, `/storgo/replicate/1.0.0`: ask a peer to hold an item as one of
//! its replicas, and ask whether it holds one whole.
//!
//! Spec: `protocols/replicate-v1.md`. Only an item's root address, the replication factor and
//! the item's stored size travel — never a key: a holder walks the item through the public
//! links of its manifests and fetches its blocks with the chunk exchange. This module defines
//! the messages and their limits; [`codec`] puts them on the wire. Choosing holders and
//! repairing is the node's job (`node::replicate`, `node::repair`).

pub mod codec;

use crate::content::stripe::ShardOf;
use crate::content::BlockAddress;

pub use codec::ReplicateCodec;

/// Protocol name.
pub const PROTOCOL: &str = "/storgo/replicate/1.0.0";
/// Largest frame (CBOR map) in either direction.
pub const MAX_FRAME: usize = 4096;
/// Largest replication factor a request may carry.
pub const MAX_REPLICATION: u8 = 16;
/// Longest refusal message.
pub const MAX_MESSAGE: usize = 256;

/// What a peer asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicateRequest {
    /// Hold the item rooted at `root` as one of `replication` copies; it stores `bytes`
    /// bytes of blocks (the holder's quota check; the store enforces the real limit).
    /// `lease_until` (Unix seconds) is how long the copy is wanted: a pinner grants it and
    /// renews it; a holder re-pushing the item passes on its own lease, never a longer one.
    /// `None` (a peer of before leases): the holder's default lease from now.
    /// `shard`: hold one column of the striped item (`replication` is then its K + M), not a
    /// whole copy.
    Hold {
        root: BlockAddress,
        replication: u8,
        bytes: u64,
        lease_until: Option<u64>,
        shard: Option<ShardOf>,
    },
    /// Do you hold the item rooted at `root`, and is it whole?
    Query { root: BlockAddress },
}

/// Why a peer refuses to hold an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RefuseReason {
    /// Holding it would pass the peer's storage quota.
    OverQuota = 1,
    /// The peer is stopping.
    ShuttingDown = 2,
    /// Too many items are being taken in now; ask another peer or later.
    Busy = 3,
    /// The request was malformed or over a limit.
    BadRequest = 4,
}

impl RefuseReason {
    pub fn from_u8(c: u8) -> Option<Self> {
        Some(match c {
            1 => RefuseReason::OverQuota,
            2 => RefuseReason::ShuttingDown,
            3 => RefuseReason::Busy,
            4 => RefuseReason::BadRequest,
            _ => return None,
        })
    }
}

/// What a holder of a striped item holds of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldStripes {
    pub map: BlockAddress,
    /// One column, or every column (`None`).
    pub column: Option<u8>,
}

/// A peer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicateResponse {
    /// `Hold`: the peer will fetch the item (or already holds it); ask with `Query` to learn
    /// when it is whole.
    Accepted,
    /// `Hold`: the peer will not hold it.
    Refused {
        reason: RefuseReason,
        message: String,
    },
    /// `Query`: the peer holds the item; `complete` once every block is there; `pinned` when
    /// its own user pinned it (a pin is kept whatever the network needs, so it does not count
    /// as one of the item's R replicas).
    /// `stripes`: the item's stripe map, and the column held (`None`: every column — the
    /// pinner that coded it).
    Holding {
        complete: bool,
        pinned: bool,
        stripes: Option<HeldStripes>,
    },
    /// `Query`: the peer does not hold it.
    NotHeld,
}
