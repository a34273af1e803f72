//! The handle the rest of the program talks to the node through: [`Client`], and the
//! [`Command`]s it sends the event loop on a bounded channel, each carrying its reply channel
//! (declared once, with the command). One generic round trip ([`Client::ask`]) serves every
//! query. This module must not touch the Swarm: only `node::swarm` receives commands.

use std::sync::Arc;

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::content::BlockAddress;
use crate::network::{
    self, AnnounceResponse, Announcement, ChunkRequest, ChunkResponse, ReplicateRequest,
    ReplicateResponse,
};

use super::{Ban, Counters, NodeError, NodeInfo, Offence, PeerInfo, RoutingTable};

/// Providers one DHT search reports, at most: the search ends there (a fetch spreads over a
/// handful; more would be a flood of made-up records).
pub const MAX_PROVIDERS_PER_LOOKUP: usize = 256;

/// Commands the event loop carries out. Each carries its reply channel.
#[derive(Debug)]
pub enum Command {
    /// Announces `root`; `done` (if any) fires when the announcement query ends.
    StartProviding {
        root: BlockAddress,
        done: Option<oneshot::Sender<()>>,
    },
    StopProviding {
        root: BlockAddress,
    },
    /// Streams providers of `root` into `reply` as the DHT finds them; the channel closes when
    /// the search ends. Unbounded so that none is lost while the reader is busy: the event loop
    /// sends at most [`MAX_PROVIDERS_PER_LOOKUP`] per search.
    GetProviders {
        root: BlockAddress,
        reply: mpsc::UnboundedSender<PeerId>,
    },
    /// Runs a whole provider lookup and reports what it cost.
    FindProviders {
        root: BlockAddress,
        reply: oneshot::Sender<Lookup>,
    },
    Request {
        peer: PeerId,
        request: ChunkRequest,
        reply: oneshot::Sender<Result<ChunkResponse, NodeError>>,
    },
    /// Sends a replicate-protocol request.
    Replicate {
        peer: PeerId,
        request: ReplicateRequest,
        reply: oneshot::Sender<Result<ReplicateResponse, NodeError>>,
    },
    /// Answers an inbound replicate-protocol request.
    RespondReplicate {
        channel: libp2p::request_response::ResponseChannel<ReplicateResponse>,
        response: ReplicateResponse,
    },
    /// A DHT walk to the peers closest to the point `key` hashes to (never this node).
    ClosestPeers {
        key: Vec<u8>,
        reply: oneshot::Sender<Closest>,
    },
    /// Sends an announce-protocol request (a batch of provider records).
    Announce {
        peer: PeerId,
        announcement: Announcement,
        reply: oneshot::Sender<Result<AnnounceResponse, NodeError>>,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    Info {
        reply: oneshot::Sender<NodeInfo>,
    },
    /// Books an offence against a peer (`reputation`).
    Report {
        peer: PeerId,
        offence: Offence,
    },
    /// Lifts a ban; replies whether one was in force.
    Unban {
        peer: PeerId,
        reply: oneshot::Sender<bool>,
    },
    /// A peer's debt (`reputation`).
    Debt {
        peer: PeerId,
        reply: oneshot::Sender<f64>,
    },
    /// The bans in force.
    Banned {
        reply: oneshot::Sender<Vec<Ban>>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    RoutingTable {
        reply: oneshot::Sender<RoutingTable>,
    },
    /// Connected peers and peers seen in the last minutes: asked first when fetching.
    NearbyPeers {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    /// Puts a value record into the DHT (kad keeps it here too); replies when the put ends,
    /// with an error when no other peer took it.
    PutRecord {
        record: libp2p::kad::Record,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Asks the DHT for a value record: every value found, unchecked, goes to `found` (this
    /// node's own first); the channel closes when the search ends, and dropping the receiver
    /// ends the search.
    GetRecord {
        key: libp2p::kad::RecordKey,
        found: mpsc::Sender<Vec<u8>>,
    },
    /// Joins or leaves a collection's gossipsub topic.
    Subscribe {
        collection: [u8; 32],
        on: bool,
    },
    /// Sends a latest-version record to the followers of its collection over gossipsub;
    /// replies with the error when no follower could be reached.
    Gossip {
        collection: [u8; 32],
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Whether a gossiped record checked out (forwarded), was stale (dropped) or was bad
    /// (dropped, the sender marked down).
    GossipVerdict {
        id: libp2p::gossipsub::MessageId,
        source: PeerId,
        verdict: libp2p::gossipsub::MessageAcceptance,
    },
    Shutdown,
}

/// A latest-version record that arrived over gossipsub, for the collections service to check.
#[derive(Debug)]
pub struct GossipIn {
    pub id: libp2p::gossipsub::MessageId,
    pub source: PeerId,
    pub collection: [u8; 32],
    pub data: Vec<u8>,
}

/// What a walk to the closest peers found, and what it cost.
#[derive(Debug, Clone, Default)]
pub struct Closest {
    /// The live peers closest to the target, in no particular order.
    pub peers: Vec<PeerId>,
    /// Peers asked on the way.
    pub requests: u32,
    /// Whether the walk ended by itself; false when it timed out, and `peers` may be short.
    pub complete: bool,
}

/// The result of a complete provider lookup.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Lookup {
    pub providers: Vec<String>,
    /// Time and peers asked until the first provider record arrived (what a fetch waits for).
    pub first_provider_ms: Option<f64>,
    pub requests_to_first: Option<u32>,
    /// Wall time from the first request to the query's end.
    pub duration_ms: u64,
    /// Peers asked, and how many answered: the cost of the walk through the DHT.
    pub requests: u32,
    pub successes: u32,
}

/// Traffic counters of one node, for status and benchmarks.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Traffic {
    pub bytes_fetched: u64,
    pub replicate_requests_sent: u64,
    pub dht_requests_received: u64,
    pub announcements_received: u64,
}

/// The handle the rest of the program uses to talk to the node.
#[derive(Clone)]
pub struct Client {
    pub(super) tx: mpsc::Sender<Command>,
    pub(super) peer_id: PeerId,
    pub(super) listen: watch::Receiver<Vec<Multiaddr>>,
    /// The confirmed addresses peers are told (direct and relayed), kept by the event loop.
    pub(super) advertised: watch::Receiver<Vec<Multiaddr>>,
    pub(super) counters: Arc<Counters>,
}

impl Client {
    /// The node's counters (its metrics).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn send(&self, c: Command) -> Result<(), NodeError> {
        self.tx.send(c).await.map_err(|_| NodeError::Stopped)
    }

    /// The one round trip: sends the command `make` builds around a reply channel and waits
    /// for the reply (a loop that has stopped answers [`NodeError::Stopped`]).
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.send(make(reply)).await?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    pub async fn request(
        &self,
        peer: PeerId,
        request: ChunkRequest,
    ) -> Result<ChunkResponse, NodeError> {
        self.ask(|reply| Command::Request {
            peer,
            request,
            reply,
        })
        .await?
    }

    pub async fn replicate(
        &self,
        peer: PeerId,
        request: ReplicateRequest,
    ) -> Result<ReplicateResponse, NodeError> {
        self.counters.replicate_requests.inc_by(1);
        self.ask(|reply| Command::Replicate {
            peer,
            request,
            reply,
        })
        .await?
    }

    pub(crate) async fn respond_replicate(
        &self,
        channel: libp2p::request_response::ResponseChannel<ReplicateResponse>,
        response: ReplicateResponse,
    ) -> Result<(), NodeError> {
        self.send(Command::RespondReplicate { channel, response })
            .await
    }

    /// The peers closest to `root` that a DHT walk finds (not this node), closest first.
    pub async fn closest_peers(&self, root: BlockAddress) -> Result<Vec<PeerId>, NodeError> {
        let mut peers = self
            .closest_to(network::provider_key(&root).to_vec())
            .await?
            .peers;
        network::distance_order(&root, &mut peers);
        Ok(peers)
    }

    /// A DHT walk to the peers closest to the point `key` hashes to (as kad hashes record keys
    /// and peer IDs), with its cost.
    pub async fn closest_to(&self, key: Vec<u8>) -> Result<Closest, NodeError> {
        self.ask(|reply| Command::ClosestPeers { key, reply }).await
    }

    /// Hands `peer` a batch of provider records for this node.
    pub async fn announce(
        &self,
        peer: PeerId,
        announcement: Announcement,
    ) -> Result<AnnounceResponse, NodeError> {
        self.ask(|reply| Command::Announce {
            peer,
            announcement,
            reply,
        })
        .await?
    }

    pub async fn providers(
        &self,
        root: BlockAddress,
    ) -> Result<mpsc::UnboundedReceiver<PeerId>, NodeError> {
        let (reply, rx) = mpsc::unbounded_channel();
        self.send(Command::GetProviders { root, reply }).await?;
        Ok(rx)
    }

    /// Looks up every provider of `root` and reports the lookup's cost.
    pub async fn find_providers(&self, root: BlockAddress) -> Result<Lookup, NodeError> {
        self.ask(|reply| Command::FindProviders { root, reply })
            .await
    }

    pub async fn start_providing(&self, root: BlockAddress) -> Result<(), NodeError> {
        self.counters.provider_records_published.inc();
        self.send(Command::StartProviding { root, done: None })
            .await
    }

    /// Announces `root` and waits until the DHT has been told (or the query timed out).
    pub async fn provide(&self, root: BlockAddress) -> Result<(), NodeError> {
        self.counters.provider_records_published.inc();
        self.ask(|done| Command::StartProviding {
            root,
            done: Some(done),
        })
        .await
    }

    pub async fn stop_providing(&self, root: BlockAddress) -> Result<(), NodeError> {
        self.send(Command::StopProviding { root }).await
    }

    /// Puts a value record into the DHT; an error says no other peer took it.
    pub async fn put_record(
        &self,
        record: libp2p::kad::Record,
    ) -> Result<Result<(), String>, NodeError> {
        self.ask(|reply| Command::PutRecord { record, reply }).await
    }

    /// Values found under `key` as the DHT search finds them (unchecked); dropping the
    /// receiver ends the search.
    pub async fn get_record(
        &self,
        key: libp2p::kad::RecordKey,
    ) -> Result<mpsc::Receiver<Vec<u8>>, NodeError> {
        let (found, rx) = mpsc::channel(32);
        self.send(Command::GetRecord { key, found }).await?;
        Ok(rx)
    }

    pub async fn subscribe(&self, collection: [u8; 32], on: bool) -> Result<(), NodeError> {
        self.send(Command::Subscribe { collection, on }).await
    }

    pub async fn gossip(
        &self,
        collection: [u8; 32],
        data: Vec<u8>,
    ) -> Result<Result<(), String>, NodeError> {
        self.ask(|reply| Command::Gossip {
            collection,
            data,
            reply,
        })
        .await
    }

    pub async fn gossip_verdict(
        &self,
        id: libp2p::gossipsub::MessageId,
        source: PeerId,
        verdict: libp2p::gossipsub::MessageAcceptance,
    ) -> Result<(), NodeError> {
        self.send(Command::GossipVerdict {
            id,
            source,
            verdict,
        })
        .await
    }

    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NodeError> {
        self.ask(|reply| Command::Dial { addr, reply }).await?
    }

    /// Books `offence` against `peer`; enough of them ban it.
    pub async fn report(&self, peer: PeerId, offence: Offence) {
        let _ = self.send(Command::Report { peer, offence }).await;
    }

    /// Lifts `peer`'s ban; true when one was in force.
    pub async fn unban(&self, peer: PeerId) -> Result<bool, NodeError> {
        self.ask(|reply| Command::Unban { peer, reply }).await
    }

    /// The offences booked against `peer` and not yet forgiven.
    pub async fn debt(&self, peer: PeerId) -> Result<f64, NodeError> {
        self.ask(|reply| Command::Debt { peer, reply }).await
    }

    /// The bans in force, soonest to end first.
    pub async fn banned(&self) -> Result<Vec<Ban>, NodeError> {
        self.ask(|reply| Command::Banned { reply }).await
    }

    pub async fn info(&self) -> Result<NodeInfo, NodeError> {
        self.ask(|reply| Command::Info { reply }).await
    }

    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NodeError> {
        self.ask(|reply| Command::Peers { reply }).await
    }

    pub async fn routing_table(&self) -> Result<RoutingTable, NodeError> {
        self.ask(|reply| Command::RoutingTable { reply }).await
    }

    /// Peers connected now or seen recently (by mDNS or an earlier connection).
    pub async fn nearby_peers(&self) -> Result<Vec<PeerId>, NodeError> {
        self.ask(|reply| Command::NearbyPeers { reply }).await
    }

    /// The addresses peers can reach this node at, confirmed (`protocols/reachability-v1.md`):
    /// what provider records carry. Empty while nothing is confirmed.
    pub fn advertised_addrs(&self) -> Vec<Multiaddr> {
        self.advertised.borrow().clone()
    }

    /// Full listen addresses, each ending in `/p2p/PEERID`.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.listen.borrow().clone()
    }

    /// What this node has fetched, sent and received so far.
    pub fn traffic(&self) -> Traffic {
        let c = &self.counters;
        Traffic {
            bytes_fetched: c.bytes_fetched.get(),
            replicate_requests_sent: c.replicate_requests.get(),
            dht_requests_received: c.dht_requests_received.get(),
            announcements_received: c.announcements_received.get(),
        }
    }

    /// True once the node has begun to stop.
    pub fn stopping(&self) -> bool {
        self.counters.stopping()
    }

    pub(crate) fn add_fetched(&self, n: u64) {
        self.counters.bytes_fetched.inc_by(n);
    }

    pub async fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown).await;
    }
}
