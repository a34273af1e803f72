//! Rows: the index's on-disk row types and table names (`index.redb`).
//!
//! Everything redb stores is declared here: each table's name with its key and value types,
//! the serde structs written into tables as CBOR, and the fixed-width bytes of a packed
//! block's place. Changing any of it (a table name, a field's name or serde attribute, a
//! byte order) is a format change: an index an older storgo wrote must still open. This module
//! must do nothing beyond encoding: no transactions (that is [`index`](super::index)), no
//! files, no rule about what a row means for GC (that is [`session`](super::session) and
//! `maintenance`).
//!
//! Tables (keyed by the 32-byte SHA-256 digest of a block unless said otherwise):
//! - `blocks`: digest → stored size in bytes. A block is named here only once its file is
//!   complete and synced.
//! - `packed`: digest → [`PackedAt`] (20 bytes) of a block kept in a pack (`packs`).
//! - `pins`: root digest → CBOR [`PinRecord`].
//! - `meta`: name → u64 counters (`bytes`: total of `blocks`).
//! - `replicas`: root digest → CBOR [`ReplicaRecord`]: items held for the network (the R
//!   closest peers to an item's root each hold one), apart from the user's pins.
//! - `sessions`: session number → CBOR [`SessionRecord`] of every session in progress
//!   (`session`); rows found at open were left by a crash and are removed.
//! - the [`DhtTable`]s: opaque bytes → bytes, whose format the network layer owns.

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use crate::content::BlockAddress;

use super::Result;

pub(super) const BLOCKS: TableDefinition<[u8; 32], u64> = TableDefinition::new("blocks");
/// Where each packed block lies (`packs`): pack id, offset, length.
pub(super) const PACKED: TableDefinition<[u8; 32], [u8; 20]> = TableDefinition::new("packed");
pub(super) const PINS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("pins");
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(super) const SESSIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("sessions");
pub(super) const REPLICAS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("replicas");
/// The `meta` counter of the bytes named in `blocks`.
pub(super) const BYTES: &str = "bytes";

/// Tables the network layer keeps its DHT state in (records, provider records, keys this node
/// provides). Opaque bytes to the store: the network layer owns their format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhtTable {
    Records,
    Providers,
    Provided,
    /// Peers banned for misbehaving (`node::reputation`).
    Bans,
    /// The collections this node publishes or follows (`collections::book`); written durably
    /// ([`Index::kv_write`](super::index::Index::kv_write)): it holds collection keys.
    Collections,
}

impl DhtTable {
    /// Every DHT table, for creating them when the index is opened.
    pub(super) const ALL: [DhtTable; 5] = [
        DhtTable::Records,
        DhtTable::Providers,
        DhtTable::Provided,
        DhtTable::Bans,
        DhtTable::Collections,
    ];

    pub(super) fn def(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        match self {
            DhtTable::Records => TableDefinition::new("dht_records"),
            DhtTable::Providers => TableDefinition::new("dht_providers"),
            DhtTable::Provided => TableDefinition::new("dht_provided"),
            DhtTable::Bans => TableDefinition::new("peer_bans"),
            DhtTable::Collections => TableDefinition::new("collections"),
        }
    }
}

/// A pinned root as `ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PinRecord {
    /// The content ID (read capability) of the item.
    pub id: String,
    pub name: String,
    /// "file" or "dir".
    pub kind: String,
    /// Plaintext bytes of the item.
    pub size: u64,
    /// Unix seconds when it was pinned.
    pub pinned_at: u64,
    /// Still being fetched: the pin protects the blocks already here from GC so that an
    /// interrupted fetch resumes instead of starting over.
    #[serde(default)]
    pub partial: bool,
    /// A partial pin made by a read (`cat` or `get` through the node) in storgo 0.1; let go,
    /// not resumed, after a restart. Reads write no pin now (their session is their lease),
    /// so only rows an older version left carry it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub for_reading: bool,
    /// Copies the network keeps of it (`add --replicas`); `None`: the node's `--replication`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u8>,
    /// Kept by storgo itself (a collection's published or followed version), not by the
    /// user: held, provided and replicated like any pin, but not listed by `ls` or the page.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    /// How the network keeps it (`add --durability`), when not the node's `--durability`.
    /// `replicas` above is the older way of saying `replicas:R` and gives way to this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "ec:10+6")]
    pub durability: Option<crate::content::stripe::Durability>,
    /// Its stripe map (`stripes-v1.md`) once this node has coded it into stripes: the map
    /// and every parity block are kept with the pin, so that this node can hand any column
    /// to a new holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub stripe_map: Option<BlockAddress>,
}

/// An item held as a replica for the network, as `ls --replicas` shows it. Holders never
/// have the item's key: only its root address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplicaRecord {
    /// The item's root block address (`bafkrei…`).
    #[schema(value_type = String)]
    pub root: BlockAddress,
    /// How many copies the network keeps of it.
    pub replication: u8,
    /// Stored bytes of its blocks, as the pusher declared them.
    pub bytes: u64,
    /// Unix seconds when this node took it in.
    pub since: u64,
    /// Every block is here.
    pub complete: bool,
    /// Unix seconds of the last check of its blocks against their addresses.
    #[serde(default)]
    pub last_verified: Option<u64>,
    /// Unix seconds until which the copy is wanted (`replicate-v1.md`, "Leases"): renewed by
    /// the item's pinners; once it passes, the replica is let go. `None`: a row from before
    /// leases, given the node's default lease at its next repair round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<u64>,
    /// A column of a striped item rather than a whole copy: which column (data columns
    /// first, then parity) and the stripe map that lists its blocks. `replication` is then
    /// the item's K + M.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub shard: Option<crate::content::stripe::ShardOf>,
}

/// What keeps an item here: the user's pin, or a replica held for the network.
#[derive(Debug, Clone)]
pub enum Holding {
    Pin(PinRecord),
    Replica(ReplicaRecord),
}

impl Holding {
    pub fn root(&self) -> Result<BlockAddress, crate::content::ContentError> {
        match self {
            Holding::Pin(p) => p.id.parse::<crate::content::ContentId>().map(|id| id.root),
            Holding::Replica(r) => Ok(r.root),
        }
    }

    /// Whether the item is still arriving (the holding keeps what has come, for resuming).
    pub fn is_partial(&self) -> bool {
        match self {
            Holding::Pin(p) => p.partial,
            Holding::Replica(r) => !r.complete,
        }
    }
}

/// What a session is doing, for the log line a crash leaves and for `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    /// A local add.
    Add,
    /// A fetch from the network.
    Fetch,
    /// Pinning an item already held.
    Pin,
    /// Reading an item no holding protects (`cat` of an unpinned item through a node).
    Read,
    /// Taking an item in as a replica held for the network.
    Replica,
}

/// A session's row in the index: enough to say what a crash interrupted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub kind: SessionKind,
    /// A path, a content ID, or whatever names the work for a person.
    pub label: String,
    /// Unix seconds.
    pub started: u64,
}

/// Where a packed block lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedAt {
    pub pack: u64,
    /// Offset of the block's bytes (after the record header).
    pub offset: u64,
    pub len: u32,
}

impl PackedAt {
    pub(crate) fn to_bytes(self) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[..8].copy_from_slice(&self.pack.to_le_bytes());
        b[8..16].copy_from_slice(&self.offset.to_le_bytes());
        b[16..].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    pub(crate) fn from_bytes(b: [u8; 20]) -> Self {
        let u64_at = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(x)
        };
        let mut l = [0u8; 4];
        l.copy_from_slice(&b[16..]);
        Self {
            pack: u64_at(0),
            offset: u64_at(8),
            len: u32::from_le_bytes(l),
        }
    }
}

#[cfg(test)]
mod tests {
    use redb::TableHandle;

    use super::*;

    #[test]
    fn table_names_are_the_on_disk_format() {
        let names = [
            BLOCKS.name().to_owned(),
            PACKED.name().to_owned(),
            PINS.name().to_owned(),
            META.name().to_owned(),
            SESSIONS.name().to_owned(),
            REPLICAS.name().to_owned(),
        ];
        assert_eq!(
            names,
            ["blocks", "packed", "pins", "meta", "sessions", "replicas"]
        );
        let dht: Vec<String> = DhtTable::ALL
            .iter()
            .map(|t| t.def().name().to_owned())
            .collect();
        assert_eq!(
            dht,
            [
                "dht_records",
                "dht_providers",
                "dht_provided",
                "peer_bans",
                "collections"
            ]
        );
    }

    #[test]
    fn a_session_row_is_the_cbor_map_older_versions_wrote() {
        let row = SessionRecord {
            kind: SessionKind::Add,
            label: "x".into(),
            started: 1,
        };
        let mut bytes = Vec::new();
        ciborium::into_writer(&row, &mut bytes).unwrap();
        // {"kind": "add", "label": "x", "started": 1}
        let want = "a3646b696e6463616464656c6162656c6178677374617274656401";
        assert_eq!(hex::encode(&bytes), want);
        assert_eq!(
            ciborium::from_reader::<SessionRecord, _>(&bytes[..]).unwrap(),
            row
        );
    }

    #[test]
    fn a_place_round_trips_through_its_index_bytes() {
        let at = PackedAt {
            pack: 0x0123_4567_89ab_cdef,
            offset: 77,
            len: 4000,
        };
        assert_eq!(PackedAt::from_bytes(at.to_bytes()), at);
    }
}
