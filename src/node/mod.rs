//! The node: one event loop that owns the libp2p Swarm, and a clonable [`Client`] through
//! which the rest of the program talks to it with typed commands on a bounded channel (the
//! shape of rust-libp2p's file-sharing example). Nothing outside [`swarm`] touches the
//! Swarm, and nothing holds a lock around it. Its rooms, by role:
//!
//! - [`swarm`]: the event loop — swarm events, commands, DHT queries, the peer book and bans
//!   (`swarm::reputation`).
//! - [`serve`]: inbound work that needs the disk, off the loop — chunk requests
//!   (`serve::chunks`), DHT records (`serve::records`).
//! - [`fetch`]: downloading an item by content ID from every provider in parallel, built on
//!   `fetch::walk` (an item's manifests, with or without its key), `fetch::transfer` (pulling
//!   blocks into a store session), `fetch::output` and `fetch::resume` (work a stop
//!   interrupted, taken up at the next start).
//! - [`replicate`]: replicas on the R closest peers, repair rounds, scrub.
//! - [`republish`]: provider records re-announced in one batched sweep, over a map of the key
//!   space (`republish::regions`) that repair rounds share.
//! - [`collections`]: publishing, resolving and following shared collections (DHT records,
//!   gossipsub, versions fetched as items).
//! - [`items`]: what follows a new item (provide, then place copies), written once.
//! - [`Role`]: which of these a node runs — all of them for `storgo node`, only the swarm
//!   and fetching for the temporary node of a lone `storgo fetch`.
//!
//! The node must not decode sealed bodies for peers: it serves and stores sealed blocks, and
//! only opens manifests of items the local user asked for.

pub mod client;
pub mod collections;
pub mod fetch;
pub mod items;
pub mod metrics;
pub mod replicate;
pub mod republish;
pub(crate) mod serve;
pub(crate) mod swarm;
mod tasks;

pub use fetch::{begin_session, fetch, fetch_in, FetchOptions, FetchProgress, FetchReport};
pub use metrics::{Counters, Metrics};
pub use replicate::{
    HolderHealth, ItemHealth, ItemRepair, RepairReport, ReplicationConfig, Replicator, ScrubReport,
    ScrubTotals,
};
pub use republish::regions::KeyspaceMap;
pub use republish::{RepublishReport, Republisher};

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::content::{BlockAddress, ContentError, ContentId};
use crate::files::FilesError;
use crate::network::{self, NetworkConfig, NetworkError};
use crate::store::{Store, StoreError};

/// Errors of the node layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    #[error("the node has stopped")]
    Stopped,
    #[error("request to peer {peer} failed: {reason}")]
    Request { peer: PeerId, reason: String },
    /// A request to a peer reached only through a relay was cut off with the relayed
    /// connection: relays carry a circuit only within their limits (time and bytes).
    #[error("the relayed connection to peer {peer}{} closed; {}", through(.relay.as_deref()), relay_limits_note())]
    RelayClosed {
        peer: PeerId,
        relay: Option<Box<PeerId>>,
    },
    /// A request cut off when this node replaced a relayed connection with a punched direct
    /// one: asked again, it goes over the direct connection.
    #[error("the relayed connection to peer {peer} was replaced by a direct one; ask again")]
    Rerouted { peer: PeerId },
    #[error("no peer provides {item} (searched for {secs} s; is a node holding it running and reachable?)")]
    NoProviders { item: Item, secs: u64 },
    #[error("fetch of {item} incomplete: {missing} of {total} chunks could not be had from any provider; run the same fetch again to resume")]
    Incomplete {
        item: Item,
        missing: usize,
        total: usize,
    },
    #[error("fetch of {item} incomplete: {missing} of {total} chunks not had; peer {} could be reached only through a relay{}, which closed the circuit: {}; run the same fetch again to resume over a new circuit", .via.0, through(.via.1.as_ref()), relay_limits_note())]
    RelayLimited {
        item: Item,
        missing: usize,
        total: usize,
        /// The provider, and the relay that carried it.
        via: Box<(PeerId, Option<PeerId>)>,
    },
    #[error("fetch of {item} stopped: it took longer than its deadline of {secs} s; run it again to resume")]
    DeadlinePassed { item: Item, secs: u64 },
    #[error("{item} came to more than the {limit} bytes declared for it; stopped taking it in")]
    OverDeclared { item: Item, limit: u64 },
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

fn through(relay: Option<&PeerId>) -> String {
    relay.map(|r| format!(" through {r}")).unwrap_or_default()
}

/// What a relay allows, for messages about a transfer a relay stopped.
fn relay_limits_note() -> String {
    let limits = network::RelayLimits::default();
    format!(
        "a relay carries each circuit only within its limits (a storgo relay by default: {} and {} per circuit), and no direct connection to the peer could be made",
        bytesize::ByteSize(limits.circuit_bytes),
        humantime::format_duration(limits.circuit_duration)
    )
}

/// What an error names: an item by the content ID the user gave, or a block by its address
/// where only that is known (a replica of someone else's item, a manifest deep in a tree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    Id(ContentId),
    Block(BlockAddress),
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The start of the ID: recognisable, and no read capability in a log line.
            Item::Id(id) => write!(f, "{}", id.short()),
            Item::Block(b) => write!(f, "{b}"),
        }
    }
}

impl From<BlockAddress> for Item {
    fn from(b: BlockAddress) -> Self {
        Item::Block(b)
    }
}

impl NodeError {
    /// The same error naming `id` where it named `id`'s root block: what a user reads is the
    /// ID they gave, not an address they never saw.
    pub fn naming(self, id: &ContentId) -> Self {
        let name = |item: Item| match item {
            Item::Block(b) if b == id.root => Item::Id(*id),
            other => other,
        };
        match self {
            NodeError::NoProviders { item, secs } => NodeError::NoProviders {
                item: name(item),
                secs,
            },
            NodeError::Incomplete {
                item,
                missing,
                total,
            } => NodeError::Incomplete {
                item: name(item),
                missing,
                total,
            },
            NodeError::RelayLimited {
                item,
                missing,
                total,
                via,
            } => NodeError::RelayLimited {
                item: name(item),
                missing,
                total,
                via,
            },
            NodeError::DeadlinePassed { item, secs } => NodeError::DeadlinePassed {
                item: name(item),
                secs,
            },
            NodeError::OverDeclared { item, limit } => NodeError::OverDeclared {
                item: name(item),
                limit,
            },
            other => other,
        }
    }
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
    /// `direct`, or `relayed` while every connection to it runs through a relay.
    #[serde(default)]
    pub via: String,
}

/// Whether peers can dial this node (`protocols/reachability-v1.md`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReachabilityInfo {
    /// `public` (peers dialled an address back), `private` (every probe failed: reached
    /// through relays) or `unknown` (nothing tested yet).
    pub status: String,
    /// Addresses peers dial directly, confirmed.
    pub addresses: Vec<String>,
    /// `/p2p-circuit` addresses through relays that hold a reservation for this node.
    pub relayed_addresses: Vec<String>,
    /// The relays holding those reservations.
    pub relays: Vec<String>,
    /// This node offers a relay to peers behind NATs now (it runs and this node is public).
    pub relay_service: bool,
    /// Reservations peers hold on this node's relay.
    pub relay_reservations_served: u64,
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
    #[serde(default)]
    pub reachability: ReachabilityInfo,
    /// What the node is for: `resident` (`storgo node`) or `temporary` (the node of a lone
    /// `storgo fetch`, which runs nothing but the fetch).
    #[serde(default)]
    pub role: String,
    /// Background tasks running now besides the swarm's loop (`replica service`, `repair`,
    /// `scrub`, `republish`, `collections`, `resume`).
    #[serde(default)]
    pub background_tasks: Vec<String>,
}

pub use swarm::reputation::{Ban, Offence};

pub use client::{Client, Closest, Command, GossipIn, Lookup, Traffic, MAX_PROVIDERS_PER_LOOKUP};

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
    /// What runs besides the swarm's loop (see [`Role`]); stopped with the node.
    helpers: tasks::Tasks,
}

/// What a node is for, which decides what it runs besides its swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `storgo node`: keeps what it holds and its share of the network's copies — the replica
    /// service, repair, scrub, republish, followed collections, and resuming interrupted work.
    Resident,
    /// The node a lone `storgo fetch` starts on a data dir no node runs: one job, then gone.
    /// It fetches and serves while it lives, and runs nothing else (no repair, scrub,
    /// republish, collections or resume: those are the resident node's, on its next start).
    Temporary,
}

impl Role {
    /// As `storgo status` and `storgo_node_role` show it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Resident => "resident",
            Role::Temporary => "temporary",
        }
    }

    /// A node that is no DHT server is a temporary one (`NetworkConfig::dht_server`).
    pub fn of(cfg: &NetworkConfig) -> Self {
        if cfg.dht_server {
            Role::Resident
        } else {
            Role::Temporary
        }
    }
}

impl Node {
    /// Starts a node on `store`: builds the swarm, listens, dials the bootstrap peers, and
    /// starts what its [`Role`] runs. Returns once every listener has an address.
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
        let mut registry = prometheus_client::registry::Registry::default();
        let mut swarm = network::build_swarm(keypair, dht, &cfg, &mut registry)?;
        if cfg.swarm_key.is_some() && cfg.listen.iter().any(|a| !cfg.usable(a)) {
            tracing::info!("private network (swarm key): QUIC is off, pnet works over TCP only");
        }
        network::listen(&mut swarm, &cfg)?;
        let (tx, rx) = mpsc::channel(256);
        let (listen_tx, listen_rx) = watch::channel(Vec::new());
        let (advertised_tx, advertised_rx) = watch::channel(Vec::new());
        let (metrics, loop_metrics) = Metrics::new(registry);
        let counters = Arc::clone(&metrics.counters);
        let client = Client {
            tx,
            peer_id,
            listen: listen_rx.clone(),
            advertised: advertised_rx,
            counters: Arc::clone(&counters),
        };
        let (replica_tx, replica_rx) = mpsc::channel(64);
        let (gossip_tx, gossip_rx) = mpsc::channel(64);
        let event_loop = swarm::EventLoop::new(
            swarm,
            rx,
            Arc::clone(&store),
            &cfg,
            swarm::Addresses {
                listen: listen_tx,
                advertised: advertised_tx,
            },
            loop_metrics,
            swarm::Handoff {
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
        let role = Role::of(&cfg);
        counters.set_role(role.name());
        let mut helpers = tasks::Tasks::new(Arc::clone(&counters));
        if role == Role::Resident {
            let r = &replicator;
            helpers.spawn("replica service", r.clone().serve(replica_rx));
            helpers.spawn("repair", r.clone().repair_loop());
            helpers.spawn("catch-up", r.clone().catch_up_loop());
            helpers.spawn("scrub", r.clone().scrub_loop());
            helpers.spawn("republish", republisher.clone().republish_loop());
            let refresh = cfg
                .republish_interval
                .unwrap_or(cfg.provider_ttl / 4)
                .min(Duration::from_secs(3600));
            helpers.spawn(
                "collections",
                collections
                    .clone()
                    .run(gossip_rx, cfg.collection_refresh, refresh),
            );
            // What the last run left is read now, before anything of this run can pin.
            let left = store.pins()?;
            helpers.spawn(
                "resume",
                fetch::resume::resume(client.clone(), Arc::clone(&store), replicator.clone(), left),
            );
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
        // Background tasks first (they hold the store and ask the loop), then the loop: when
        // this returns, nothing of the node holds the data dir.
        self.helpers.stop().await;
        self.collections.stop().await;
        self.client.shutdown().await;
        let _ = self.task.await;
    }

    /// The background tasks running now besides the swarm's loop, by name: what its [`Role`]
    /// started, less any that has ended.
    pub fn background_tasks(&self) -> Vec<&'static str> {
        self.helpers.names()
    }
}
