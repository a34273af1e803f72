//! The node: one event loop that owns the libp2p Swarm, and a clonable [`Client`] through
//! which the rest of the program talks to it with typed commands on a bounded channel (the
//! shape of rust-libp2p's file-sharing example). Nothing outside [`event_loop`] touches the
//! Swarm, and nothing holds a lock around it.
//!
//! - [`event_loop`]: swarm events, commands, serving blocks to peers, providing roots.
//! - [`fetch`]: downloading an item by content ID from every provider in parallel, built on
//!   `walk` (an item's manifests, with or without its key) and `transfer` (pulling blocks
//!   from every provider in parallel into a store session).
//!
//! The node must not decode sealed bodies for peers: it serves and stores sealed blocks, and
//! only opens manifests of items the local user asked for.

pub mod event_loop;
pub mod fetch;
pub mod replicate;
mod transfer;
mod walk;

pub use fetch::{begin_session, fetch, fetch_in, FetchOptions, FetchProgress, FetchReport};
pub use replicate::{
    ItemRepair, RepairReport, ReplicationConfig, Replicator, ScrubReport, ScrubTotals,
};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::content::{BlockAddress, ContentError};
use crate::files::FilesError;
use crate::network::{
    self, ChunkRequest, ChunkResponse, NetworkConfig, NetworkError, ReplicateRequest,
    ReplicateResponse,
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerInfo {
    pub peer_id: String,
    pub address: String,
    pub rtt_ms: Option<f64>,
}

/// What `storgo id` and `storgo status` show.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    pub peer_id: String,
    pub listen_addrs: Vec<String>,
    pub connected_peers: usize,
    pub routing_table_size: usize,
    pub records_provided: u64,
    pub provider_records_held: u64,
    pub bytes_served: u64,
    pub bytes_fetched: u64,
    pub dht_mode: String,
}

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
    /// the search ends.
    GetProviders {
        root: BlockAddress,
        reply: mpsc::Sender<PeerId>,
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
    /// The peers the DHT knows closest to `root` (never this node), closest first.
    ClosestPeers {
        root: BlockAddress,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    Info {
        reply: oneshot::Sender<NodeInfo>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    /// Connected peers and peers seen in the last minutes: asked first when fetching.
    NearbyPeers {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    Shutdown,
}

/// The result of a complete provider lookup.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Lookup {
    pub providers: Vec<String>,
    /// Wall time from the first request to the query's end.
    pub duration_ms: u64,
    /// Peers asked, and how many answered: the cost of the walk through the DHT.
    pub requests: u32,
    pub successes: u32,
}

/// Counters shared between the event loop and the client.
#[derive(Debug, Default)]
pub struct Counters {
    pub bytes_served: AtomicU64,
    pub bytes_fetched: AtomicU64,
    /// Replicate-protocol requests sent (queries and holds): the cost of placement and repair.
    pub replicate_requests: AtomicU64,
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
        self.counters
            .replicate_requests
            .fetch_add(1, Ordering::Relaxed);
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
        let (reply, rx) = oneshot::channel();
        self.send(Command::ClosestPeers { root, reply }).await?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    pub async fn providers(&self, root: BlockAddress) -> Result<mpsc::Receiver<PeerId>, NodeError> {
        let (reply, rx) = mpsc::channel(64);
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
        self.send(Command::StartProviding { root, done: None })
            .await
    }

    /// Announces `root` and waits until the DHT has been told (or the query timed out).
    pub async fn provide(&self, root: BlockAddress) -> Result<(), NodeError> {
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

    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NodeError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Dial { addr, reply }).await?;
        rx.await.map_err(|_| NodeError::Stopped)?
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

    /// Bytes this node has fetched from peers, and replicate requests it has sent, so far.
    pub fn traffic(&self) -> (u64, u64) {
        (
            self.counters.bytes_fetched.load(Ordering::Relaxed),
            self.counters.replicate_requests.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn add_fetched(&self, n: u64) {
        self.counters.bytes_fetched.fetch_add(n, Ordering::Relaxed);
    }

    pub async fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown).await;
    }
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
    task: tokio::task::JoinHandle<()>,
    /// The replica service and the repair loop, stopped with the node.
    helpers: Vec<tokio::task::JoinHandle<()>>,
}

impl Node {
    /// Starts a node on `store`: builds the swarm, listens, dials the bootstrap peers, and
    /// re-provides every pinned root. Returns once every listener has an address.
    pub async fn start(store: Arc<Store>, cfg: NetworkConfig) -> Result<Node, NodeError> {
        Self::start_with(store, cfg, ReplicationConfig::default()).await
    }

    /// [`start`](Self::start) with replication settings of its own.
    pub async fn start_with(
        store: Arc<Store>,
        cfg: NetworkConfig,
        replication: ReplicationConfig,
    ) -> Result<Node, NodeError> {
        let keypair = network::identity::load_or_create(store.dir())?;
        let peer_id = keypair.public().to_peer_id();
        let dht = network::DhtStore::new(Arc::clone(&store), peer_id);
        let mut swarm = network::build_swarm(keypair, dht, &cfg)?;
        for addr in &cfg.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NetworkError::Listen {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
        }
        let (tx, rx) = mpsc::channel(256);
        let (listen_tx, listen_rx) = watch::channel(Vec::new());
        let counters = Arc::new(Counters::default());
        let client = Client {
            tx,
            peer_id,
            listen: listen_rx.clone(),
            counters: Arc::clone(&counters),
        };
        let (replica_tx, replica_rx) = mpsc::channel(64);
        let event_loop = event_loop::EventLoop::new(
            swarm,
            rx,
            Arc::clone(&store),
            &cfg,
            listen_tx,
            counters,
            replica_tx,
        );
        let task = tokio::spawn(event_loop.run());
        let replicator = Replicator::new(client.clone(), Arc::clone(&store), replication);
        let helpers = vec![
            tokio::spawn(replicator.clone().serve(replica_rx)),
            tokio::spawn(replicator.clone().repair_loop()),
            tokio::spawn(replicator.clone().scrub_loop()),
        ];
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
        // Re-provide what this node holds whole; partial items are announced when complete.
        for pin in store.pins()?.into_iter().filter(|p| !p.partial) {
            if let Ok(id) = pin.id.parse::<crate::content::ContentId>() {
                client.start_providing(id.root).await?;
            }
        }
        Ok(Node {
            client,
            store,
            replicator,
            task,
            helpers,
        })
    }

    /// Stops the event loop and waits for it.
    pub async fn stop(self) {
        for h in &self.helpers {
            h.abort();
        }
        self.client.shutdown().await;
        let _ = self.task.await;
    }
}
