//! The node: one event loop that owns the libp2p Swarm, and a clonable [`Client`] through
//! which the rest of the program talks to it with typed commands on a bounded channel (the
//! shape of rust-libp2p's file-sharing example). Nothing outside [`event_loop`] touches the
//! Swarm, and nothing holds a lock around it.
//!
//! - [`event_loop`]: swarm events, commands, serving blocks to peers, providing roots.
//! - [`replicate`]: replicas on the R closest peers, repair rounds, scrub.
//! - [`republish`]: provider records re-announced in one batched sweep, over a map of the key
//!   space (`regions`) that repair rounds share.
//! - [`collections`]: publishing, resolving and following shared collections (DHT records,
//!   gossipsub, versions fetched as items).
//! - [`fetch`]: downloading an item by content ID from every provider in parallel, built on
//!   `walk` (an item's manifests, with or without its key) and `transfer` (pulling blocks
//!   from every provider in parallel into a store session).
//!
//! The node must not decode sealed bodies for peers: it serves and stores sealed blocks, and
//! only opens manifests of items the local user asked for.

pub mod collections;
pub mod event_loop;
pub mod fetch;
pub mod metrics;
mod output;
mod record_intake;
mod regions;
pub mod replicate;
pub mod republish;
pub mod reputation;
mod resume;
mod serving;
mod transfer;
mod walk;

pub use fetch::{begin_session, fetch, fetch_in, FetchOptions, FetchProgress, FetchReport};
pub use metrics::{Counters, Metrics};
pub use regions::KeyspaceMap;
pub use replicate::{
    ItemRepair, RepairReport, ReplicationConfig, Replicator, ScrubReport, ScrubTotals,
};
pub use republish::{RepublishReport, Republisher};

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::content::{BlockAddress, ContentError};
use crate::files::FilesError;
use crate::network::{
    self, AnnounceResponse, Announcement, ChunkRequest, ChunkResponse, NetworkConfig, NetworkError,
    ReplicateRequest, ReplicateResponse,
};
use crate::store::{Store, StoreError};

/// Errors of the node layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    #[error("the node has stopped")]
    Stopped,
    #[error("request to peer {peer} failed: {reason}")]
    Request { peer: PeerId, reason: String },
    #[error("no peer provides {root} (searched for {secs} s; is a node holding it running and reachable?)")]
    NoProviders { root: BlockAddress, secs: u64 },
    #[error("fetch of {root} incomplete: {missing} of {total} chunks could not be had from any provider; run the same fetch again to resume")]
    Incomplete {
        root: BlockAddress,
        missing: usize,
        total: usize,
    },
    #[error("fetch of {root} stopped: it took longer than its deadline of {secs} s; run it again to resume")]
    DeadlinePassed { root: BlockAddress, secs: u64 },
    #[error("{root} came to more than the {limit} bytes declared for it; stopped taking it in")]
    OverDeclared { root: BlockAddress, limit: u64 },
    #[error("dialing {addr}: {reason}")]
    Dial { addr: Multiaddr, reason: String },
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error(transparent)]
    Content(#[from] ContentError),
}

/// A connected peer, as `storgo peers` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PeerInfo {
    pub peer_id: String,
    pub address: String,
    pub rtt_ms: Option<f64>,
    /// Offences booked against it, not yet forgiven (`reputation`; banned at 100).
    #[serde(default)]
    pub debt: f64,
    /// How this node came to know it: `bootstrap`, `mdns` (found on the LAN), `dht` (dialled
    /// after the DHT named it) or `inbound` (it connected here).
    #[serde(default)]
    pub found_by: String,
}

/// The routing table as the web page's network view draws it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoutingTable {
    pub local_peer_id: String,
    /// Non-empty k-buckets, nearest first.
    pub buckets: Vec<Bucket>,
}

/// One k-bucket: the peers whose XOR distance from this node has its highest bit at `index`
/// (0 is nearest, 255 farthest; a bucket holds at most k = 20).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Bucket {
    pub index: u32,
    pub peers: Vec<BucketPeer>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BucketPeer {
    pub peer_id: String,
    pub addresses: Vec<String>,
    pub connected: bool,
}

/// What `storgo id` and `storgo status` show.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeInfo {
    pub peer_id: String,
    pub listen_addrs: Vec<String>,
    pub connected_peers: usize,
    pub routing_table_size: usize,
    pub records_provided: u64,
    pub provider_records_held: u64,
    /// Provider records from peers written since start (new or refreshed).
    #[serde(default)]
    pub records_taken_in: u64,
    /// Records from peers not kept: not a storgo kind, or their peer over its cap.
    #[serde(default)]
    pub records_refused: u64,
    /// Records from peers dropped because the record writer was behind.
    #[serde(default)]
    pub records_dropped: u64,
    pub bytes_served: u64,
    pub bytes_fetched: u64,
    /// Connections made since start, either way (a bootstrap address in the routing table
    /// says nothing about whether it answered; this does).
    #[serde(default)]
    pub connections_made: u64,
    pub dht_mode: String,
}

pub use reputation::{Ban, Offence};

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
    tx: mpsc::Sender<Command>,
    peer_id: PeerId,
    listen: watch::Receiver<Vec<Multiaddr>>,
    counters: Arc<Counters>,
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

    pub async fn request(
        &self,
        peer: PeerId,
        request: ChunkRequest,
    ) -> Result<ChunkResponse, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Request {
            peer,
            request,
            reply,
        })
        .await?;
        rx.await.map_err(|_| NodeError::Stopped)?
    }

    pub async fn replicate(
        &self,
        peer: PeerId,
        request: ReplicateRequest,
    ) -> Result<ReplicateResponse, NodeError> {
        self.counters.replicate_requests.inc_by(1);
        let (reply, rx) = oneshot::channel();
        self.send(Command::Replicate {
            peer,
            request,
            reply,
        })
        .await?;
        rx.await.map_err(|_| NodeError::Stopped)?
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
        let (reply, rx) = oneshot::channel();
        self.send(Command::ClosestPeers { key, reply }).await?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// Hands `peer` a batch of provider records for this node.
    pub async fn announce(
        &self,
        peer: PeerId,
        announcement: Announcement,
    ) -> Result<AnnounceResponse, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Announce {
            peer,
            announcement,
            reply,
        })
        .await?;
        rx.await.map_err(|_| NodeError::Stopped)?
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
        let (reply, rx) = oneshot::channel();
        self.send(Command::FindProviders { root, reply }).await?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    pub async fn start_providing(&self, root: BlockAddress) -> Result<(), NodeError> {
        self.counters.provider_records_published.inc();
        self.send(Command::StartProviding { root, done: None })
            .await
    }

    /// Announces `root` and waits until the DHT has been told (or the query timed out).
    pub async fn provide(&self, root: BlockAddress) -> Result<(), NodeError> {
        self.counters.provider_records_published.inc();
        let (done, rx) = oneshot::channel();
        self.send(Command::StartProviding {
            root,
            done: Some(done),
        })
        .await?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    pub async fn stop_providing(&self, root: BlockAddress) -> Result<(), NodeError> {
        self.send(Command::StopProviding { root }).await
    }

    /// Puts a value record into the DHT; an error says no other peer took it.
    pub async fn put_record(
        &self,
        record: libp2p::kad::Record,
    ) -> Result<Result<(), String>, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::PutRecord { record, reply }).await?;
        rx.await.map_err(|_| NodeError::Stopped)
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
        let (reply, rx) = oneshot::channel();
        self.send(Command::Gossip {
            collection,
            data,
            reply,
        })
        .await?;
        rx.await.map_err(|_| NodeError::Stopped)
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
        let (reply, rx) = oneshot::channel();
        self.send(Command::Dial { addr, reply }).await?;
        rx.await.map_err(|_| NodeError::Stopped)?
    }

    /// Books `offence` against `peer`; enough of them ban it.
    pub async fn report(&self, peer: PeerId, offence: Offence) {
        let _ = self.send(Command::Report { peer, offence }).await;
    }

    /// Lifts `peer`'s ban; true when one was in force.
    pub async fn unban(&self, peer: PeerId) -> Result<bool, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Unban { peer, reply }).await?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// The offences booked against `peer` and not yet forgiven.
    pub async fn debt(&self, peer: PeerId) -> Result<f64, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Debt { peer, reply }).await?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// The bans in force, soonest to end first.
    pub async fn banned(&self) -> Result<Vec<Ban>, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Banned { reply }).await?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    pub async fn info(&self) -> Result<NodeInfo, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Info { reply }).await?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Peers { reply }).await?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    pub async fn routing_table(&self) -> Result<RoutingTable, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::RoutingTable { reply }).await?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// Peers connected now or seen recently (by mDNS or an earlier connection).
    pub async fn nearby_peers(&self) -> Result<Vec<PeerId>, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::NearbyPeers { reply }).await?;
        rx.await.map_err(|_| NodeError::Stopped)
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

/// Seconds since the Unix epoch (0 if the clock is before it), for reports and records.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs blocking store work on tokio's blocking pool (never on the node's async thread).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NodeError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        NodeError::Store(StoreError::io(
            "store task",
            "(blocking pool)",
            std::io::Error::other(e),
        ))
    })
}

/// A running node.
pub struct Node {
    pub client: Client,
    pub store: Arc<Store>,
    pub replicator: Replicator,
    pub republisher: Republisher,
    pub collections: collections::Collections,
    pub metrics: Metrics,
    task: tokio::task::JoinHandle<()>,
    /// The replica service and the repair loop, stopped with the node.
    helpers: Vec<tokio::task::JoinHandle<()>>,
}

impl Node {
    /// Starts a node on `store`: builds the swarm, listens, dials the bootstrap peers, and
    /// starts the replica service, repair, scrub and republish. Returns once every listener
    /// has an address.
    pub async fn start(store: Arc<Store>, cfg: NetworkConfig) -> Result<Node, NodeError> {
        Self::start_with(store, cfg, ReplicationConfig::default()).await
    }

    /// [`start`](Self::start) with replication settings of its own.
    pub async fn start_with(
        store: Arc<Store>,
        cfg: NetworkConfig,
        replication: ReplicationConfig,
    ) -> Result<Node, NodeError> {
        let keypair = network::identity::load_or_create(&store, cfg.identity)?;
        let peer_id = keypair.public().to_peer_id();
        let identity = keypair
            .clone()
            .try_into_ed25519()
            .map_err(|_| NetworkError::Identity {
                path: store.dir().join(network::identity::IDENTITY_FILE),
                reason: "not an Ed25519 key".into(),
            })?;
        let dht = network::DhtStore::written_behind(Arc::clone(&store), peer_id);
        let mut swarm = network::build_swarm(keypair, dht, &cfg)?;
        if cfg.swarm_key.is_some() && cfg.listen.iter().any(|a| !cfg.usable(a)) {
            tracing::info!("private network (swarm key): QUIC is off, pnet works over TCP only");
        }
        network::listen(&mut swarm, &cfg)?;
        let (tx, rx) = mpsc::channel(256);
        let (listen_tx, listen_rx) = watch::channel(Vec::new());
        let (metrics, loop_metrics) = Metrics::new();
        let counters = Arc::clone(&metrics.counters);
        let client = Client {
            tx,
            peer_id,
            listen: listen_rx.clone(),
            counters: Arc::clone(&counters),
        };
        let (replica_tx, replica_rx) = mpsc::channel(64);
        let (gossip_tx, gossip_rx) = mpsc::channel(64);
        let event_loop = event_loop::EventLoop::new(
            swarm,
            rx,
            Arc::clone(&store),
            &cfg,
            listen_tx,
            loop_metrics,
            event_loop::Handoff {
                replica: replica_tx,
                gossip: gossip_tx,
            },
        );
        let task = tokio::spawn(event_loop.run());
        let republisher =
            Republisher::new(client.clone(), Arc::clone(&store), cfg.republish_interval);
        let replicator = Replicator::new(
            client.clone(),
            Arc::clone(&store),
            replication,
            republisher.clone(),
        );
        let collections = collections::Collections::new(
            client.clone(),
            Arc::clone(&store),
            identity,
            replicator.clone(),
        )
        .map_err(|e| NetworkError::Build(e.to_string()))?;
        let mut helpers = vec![
            tokio::spawn(replicator.clone().serve(replica_rx)),
            tokio::spawn(replicator.clone().repair_loop()),
            tokio::spawn(replicator.clone().scrub_loop()),
            tokio::spawn(republisher.clone().republish_loop()),
        ];
        if cfg.dht_server {
            // Followed collections are kept by a long-running node; a temporary fetch node
            // (same data dir, one job) neither refreshes nor republishes them.
            helpers.push(tokio::spawn(
                collections.clone().run(
                    gossip_rx,
                    cfg.collection_refresh,
                    cfg.republish_interval
                        .unwrap_or(cfg.provider_ttl / 4)
                        .min(Duration::from_secs(3600)),
                ),
            ));
            // A long-running node takes up what it was doing; a temporary fetch node (same
            // data dir, one job) leaves that to the node.
            helpers.push(tokio::spawn(resume::resume(
                client.clone(),
                Arc::clone(&store),
                replicator.clone(),
            )));
        }
        let mut watch = listen_rx;
        let wanted = cfg.listen.len();
        let ready = tokio::time::timeout(Duration::from_secs(10), async {
            while watch.borrow().len() < wanted {
                if watch.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        if ready.is_err() {
            tracing::warn!("not every listener reported an address within 10 s");
        }
        // What this node holds is announced by the republish sweep once peers are known;
        // locally it is findable at once.
        let held = republish::held_roots(&store)?;
        network::DhtStore::new(Arc::clone(&store), peer_id).provide_exactly(&held)?;
        Ok(Node {
            client,
            store,
            replicator,
            republisher,
            collections,
            metrics,
            task,
            helpers,
        })
    }

    /// Stops the event loop and waits for it. From the first moment, holds and announcements
    /// from peers are refused as "shutting down".
    pub async fn stop(self) {
        self.client.counters.stopping.store(true, Ordering::Relaxed);
        for h in &self.helpers {
            h.abort();
        }
        self.collections.stop().await;
        self.client.shutdown().await;
        let _ = self.task.await;
        // An aborted task is dropped (with its hold on the store) only when the runtime gets
        // to it: wait for that, so that the data dir is free once `stop` returns.
        for h in self.helpers {
            let _ = h.await;
        }
    }
}
