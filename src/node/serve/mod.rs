//! The serving side of a node: inbound work that needs the disk, done off the event loop by
//! workers of its own — chunk-exchange requests read from the store ([`chunks`]), provider
//! and value records written to the DHT's tables ([`records`]). A worker prepares an
//! [`Answer`] and hands it back on a channel; only the event loop sends it, so no worker
//! touches the Swarm and the loop never waits on the disk. Fetching (the getting side) lives
//! in `node::fetch`; the two share nothing but the store.

use libp2p::request_response::ResponseChannel;
use libp2p::PeerId;

use crate::network::{AnnounceResponse, ChunkResponse};

pub(crate) mod chunks;
pub(crate) mod records;

/// An answer to an inbound request, prepared off the loop (disk work) and sent from it.
pub(crate) enum Answer {
    Chunk(PeerId, ResponseChannel<ChunkResponse>, ChunkResponse),
    Announce(ResponseChannel<AnnounceResponse>, AnnounceResponse),
}
