//! The event loop that owns the Swarm.
//!
//! It reacts to swarm events (discovery, DHT query progress, inbound chunk requests) and to
//! [`Command`]s from clients, and keeps the bookkeeping that correlates replies with requests
//! (`OutboundRequestId`, `QueryId`). Blocking work — reading blocks for peers — runs on tokio's
//! blocking pool and comes back through a channel, so the loop never waits on the disk.

pub mod reputation;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, kad, mdns, ping, Multiaddr, PeerId, StreamProtocol, Swarm};
use tokio::sync::{mpsc, oneshot, watch};

use crate::network::{
    provider_key, AnnounceResponse, Announcement, Behaviour, BehaviourEvent, ChunkRequest,
    ChunkResponse, DhtStore, NetworkConfig, RefuseReason, ReplicateRequest, ReplicateResponse,
    KAD_PROTOCOL,
};
use crate::store::Store;

use super::replicate::InboundReplicate;
use super::serve::chunks::ChunkService;
use super::serve::records::{Job as IntakeJob, RecordIntake};
use super::serve::Answer;
use super::{now_secs, Closest, Command, Counters, Lookup, NodeError, NodeInfo, PeerInfo};
use crate::network::chunks::ErrorCode;
use crate::network::records::RemoteProvider;
use reputation::{persisted, Ban, Limits, Offence, Reputation};

/// How long a peer counts as "recently seen" for fetches.
const RECENT: Duration = Duration::from_secs(600);
/// Most recently seen peers remembered.
const MAX_RECENT: usize = 256;

/// Longest wait between two attempts to reach an unreachable bootstrap peer.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Where the loop hands inbound work that others do: replicate requests to the replica
/// service, gossiped collection records to the collections service.
pub(crate) struct Handoff {
    pub replica: mpsc::Sender<InboundReplicate>,
    pub gossip: mpsc::Sender<super::GossipIn>,
}

pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    counters: Arc<Counters>,
    /// libp2p's own metrics (swarm, kad, identify, ping), fed every event.
    p2p_metrics: libp2p::metrics::Metrics,
    listen_tx: watch::Sender<Vec<Multiaddr>>,
    inbound_rx: mpsc::Receiver<Answer>,
    /// Peers' chunk requests: a bounded pool of store readers (`serving`).
    chunk_service: ChunkService,
    /// Peers' DHT records: validated here, written by the intake's thread (`record_intake`).
    record_intake: RecordIntake,
    store: Arc<Store>,
    /// Offences booked against peers, and the bans in force.
    reputation: Reputation,
    banned: HashMap<PeerId, Ban>,
    /// Dials refused at the handshake per peer (how many in a row, the last one), for the mDNS
    /// redial backoff.
    dial_failures: HashMap<PeerId, (u32, std::time::Instant)>,
    pending_requests: HashMap<OutboundRequestId, oneshot::Sender<Result<ChunkResponse, NodeError>>>,
    pending_providers: HashMap<kad::QueryId, (mpsc::UnboundedSender<PeerId>, HashSet<PeerId>)>,
    pending_dials: HashMap<PeerId, Vec<oneshot::Sender<Result<(), NodeError>>>>,
    pending_provides: HashMap<kad::QueryId, oneshot::Sender<()>>,
    pending_lookups: HashMap<kad::QueryId, (Lookup, HashSet<PeerId>, oneshot::Sender<Lookup>)>,
    pending_closest: HashMap<kad::QueryId, oneshot::Sender<Closest>>,
    pending_replicate:
        HashMap<OutboundRequestId, oneshot::Sender<Result<ReplicateResponse, NodeError>>>,
    pending_announce:
        HashMap<OutboundRequestId, oneshot::Sender<Result<AnnounceResponse, NodeError>>>,
    pending_puts: HashMap<kad::QueryId, oneshot::Sender<Result<(), String>>>,
    pending_gets: HashMap<kad::QueryId, mpsc::Sender<Vec<u8>>>,
    /// Gossiped collection records go to the collections service (`node::collections`), which
    /// checks them off the loop and answers with a verdict.
    gossip_tx: mpsc::Sender<super::GossipIn>,
    dht_server: bool,
    /// Inbound replicate requests go to the replica service (`node::replicate`).
    replica_tx: mpsc::Sender<InboundReplicate>,
    rtt: HashMap<PeerId, Duration>,
    /// Peers seen lately (disconnected, or found by mDNS), asked first when fetching.
    recent: HashMap<PeerId, std::time::Instant>,
    remote_addr: HashMap<PeerId, Multiaddr>,
    /// How each connected peer was found (`PeerInfo::found_by`).
    found_by: HashMap<PeerId, &'static str>,
    /// Peers mDNS announced (bounded like `recent`).
    on_lan: HashSet<PeerId>,
    bootstrap: Vec<Multiaddr>,
    bootstrap_backoff: Duration,
    bootstrapped: bool,
}

impl EventLoop {
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        store: Arc<Store>,
        cfg: &NetworkConfig,
        listen_tx: watch::Sender<Vec<Multiaddr>>,
        metrics: super::metrics::LoopMetrics,
        handoff: Handoff,
    ) -> Self {
        let (inbound_tx, inbound_rx) = mpsc::channel(64);
        let chunk_service = ChunkService::start(Arc::clone(&store), inbound_tx.clone(), &cfg.serve);
        let local = *swarm.local_peer_id();
        let record_intake = RecordIntake::start(
            DhtStore::new(Arc::clone(&store), local),
            cfg.provider_ttl,
            cfg.max_providers_per_peer,
            inbound_tx.clone(),
        );
        let (reputation, banned) = load_bans(&store);
        Self {
            chunk_service,
            record_intake,
            store,
            reputation,
            banned,
            dial_failures: HashMap::new(),
            swarm,
            commands,
            counters: metrics.counters,
            p2p_metrics: metrics.p2p,
            listen_tx,
            inbound_rx,
            pending_requests: HashMap::new(),
            pending_providers: HashMap::new(),
            pending_dials: HashMap::new(),
            pending_provides: HashMap::new(),
            pending_lookups: HashMap::new(),
            pending_closest: HashMap::new(),
            pending_replicate: HashMap::new(),
            pending_announce: HashMap::new(),
            pending_puts: HashMap::new(),
            pending_gets: HashMap::new(),
            gossip_tx: handoff.gossip,
            dht_server: cfg.dht_server,
            replica_tx: handoff.replica,
            rtt: HashMap::new(),
            recent: HashMap::new(),
            remote_addr: HashMap::new(),
            found_by: HashMap::new(),
            on_lan: HashSet::new(),
            bootstrap: cfg.bootstrap.clone(),
            bootstrap_backoff: Duration::from_secs(1),
            bootstrapped: false,
        }
    }

    pub async fn run(mut self) {
        for peer in self.banned.keys() {
            self.swarm.behaviour_mut().blocked.block_peer(*peer);
        }
        let mut lift_bans = tokio::time::interval(Duration::from_secs(60));
        self.dial_bootstrap();
        let mut retry = tokio::time::interval(self.bootstrap_backoff);
        retry.tick().await;
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(c) => self.on_command(c),
                },
                Some(answer) = self.inbound_rx.recv() => self.send_answer(answer),
                _ = lift_bans.tick() => self.lift_ended_bans(),
                _ = retry.tick() => {
                    if !self.bootstrap.is_empty() && !self.bootstrap_connected() {
                        self.bootstrap_backoff = (self.bootstrap_backoff * 2).min(MAX_BACKOFF);
                        retry = tokio::time::interval(self.bootstrap_backoff);
                        retry.tick().await;
                        tracing::info!(backoff_s = self.bootstrap_backoff.as_secs(), "retrying bootstrap peers");
                        self.dial_bootstrap();
                    }
                }
            }
        }
        tracing::info!("node event loop stopped");
    }

    /// Books an offence; a peer that passes the threshold is disconnected, refused and its
    /// ban written to the store (off the loop).
    fn report(&mut self, peer: PeerId, offence: Offence) {
        tracing::debug!(peer = %peer, offence = ?offence, "offence");
        let Some(ban) = self.reputation.report(peer, offence, now_secs()) else {
            return;
        };
        tracing::warn!(peer = %peer, reason = %ban.reason, until = ban.until, bans = ban.count, "peer banned");
        let behaviour = self.swarm.behaviour_mut();
        behaviour.blocked.block_peer(peer);
        behaviour.kad.remove_peer(&peer);
        self.recent.remove(&peer);
        let store = Arc::clone(&self.store);
        let row = ban.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = persisted::save(&store, &peer, &row) {
                tracing::warn!(peer = %peer, error = %e, "cannot write the ban to the store");
            }
        });
        self.banned.insert(peer, ban);
    }

    /// Whether dials to `peer` were refused at the handshake lately: 1 min after the first
    /// refusal, doubling to 1 h.
    fn backing_off(&self, peer: &PeerId) -> bool {
        self.dial_failures.get(peer).is_some_and(|(n, at)| {
            let wait = Duration::from_secs(60 << (n - 1).min(6)).min(Duration::from_secs(3600));
            at.elapsed() < wait
        })
    }

    fn lift_ended_bans(&mut self) {
        let now = now_secs();
        let ended: Vec<PeerId> = self
            .banned
            .iter()
            .filter(|(_, b)| b.until <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in ended {
            self.banned.remove(&peer);
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
            tracing::info!(peer = %peer, "ban ended");
        }
    }

    fn send_answer(&mut self, answer: Answer) {
        let behaviour = self.swarm.behaviour_mut();
        match answer {
            Answer::Chunk(peer, channel, response) => {
                self.chunk_service.done(&peer);
                let (bytes, outcome) = match &response {
                    ChunkResponse::Block(b) => (b.len() as u64, "block"),
                    ChunkResponse::Have(_) => (0, "have"),
                    ChunkResponse::NotFound => (0, "not_found"),
                    ChunkResponse::Error { code, .. } => (
                        0,
                        match code {
                            ErrorCode::BadRequest => "bad_request",
                            ErrorCode::Busy => "busy",
                            ErrorCode::Internal => "internal",
                        },
                    ),
                };
                // Counted only when it goes out: not for a requester that has gone.
                if behaviour.chunks.send_response(channel, response).is_ok() {
                    self.counters.bytes_served.inc_by(bytes);
                    self.counters.inbound("chunks", outcome);
                }
            }
            Answer::Announce(channel, response) => {
                let outcome = match &response {
                    AnnounceResponse::Refused { .. } => "refused",
                    _ => "stored",
                };
                if behaviour.announce.send_response(channel, response).is_ok() {
                    self.counters.inbound("announce", outcome);
                }
            }
        }
    }

    fn remember(&mut self, peer: PeerId) {
        if self.recent.len() >= MAX_RECENT {
            if let Some(oldest) = self.recent.iter().min_by_key(|(_, t)| **t).map(|(p, _)| *p) {
                self.recent.remove(&oldest);
            }
        }
        self.recent.insert(peer, std::time::Instant::now());
    }

    fn bootstrap_connected(&self) -> bool {
        self.bootstrap.iter().any(|a| match a.iter().last() {
            Some(Protocol::P2p(p)) => self.swarm.is_connected(&p),
            // An address without a PeerId (a container's fixed address): connected if some
            // connection goes there.
            _ => self.remote_addr.values().any(|r| r == a),
        })
    }

    fn dial_bootstrap(&mut self) {
        for addr in self.bootstrap.clone() {
            if let Some(Protocol::P2p(peer)) = addr.iter().last() {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, addr.clone());
            }
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::warn!(%addr, error = %e, "cannot dial bootstrap peer");
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        let behaviour = self.swarm.behaviour_mut();
        match command {
            Command::StartProviding { root, done } => {
                match behaviour.kad.start_providing(provider_key(&root)) {
                    Ok(id) => {
                        if let Some(done) = done {
                            self.pending_provides.insert(id, done);
                        }
                    }
                    Err(e) => tracing::warn!(cid = %root, error = %e, "cannot provide"),
                }
            }
            Command::StopProviding { root } => behaviour.kad.stop_providing(&provider_key(&root)),
            Command::GetProviders { root, reply } => {
                let id = behaviour.kad.get_providers(provider_key(&root));
                self.pending_providers.insert(id, (reply, HashSet::new()));
            }
            Command::FindProviders { root, reply } => {
                let id = behaviour.kad.get_providers(provider_key(&root));
                self.pending_lookups
                    .insert(id, (Lookup::default(), HashSet::new(), reply));
            }
            Command::Request {
                peer,
                request,
                reply,
            } => {
                let id = behaviour.chunks.send_request(&peer, request);
                self.pending_requests.insert(id, reply);
            }
            Command::Replicate {
                peer,
                request,
                reply,
            } => {
                let id = behaviour.replicate.send_request(&peer, request);
                self.pending_replicate.insert(id, reply);
            }
            Command::RespondReplicate { channel, response } => {
                let _ = behaviour.replicate.send_response(channel, response);
            }
            Command::ClosestPeers { key, reply } => {
                let id = behaviour.kad.get_closest_peers(key);
                self.pending_closest.insert(id, reply);
            }
            Command::PutRecord { record, reply } => {
                match behaviour.kad.put_record(record, kad::Quorum::One) {
                    Ok(id) => {
                        self.pending_puts.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(format!("{e:?}")));
                    }
                }
            }
            Command::GetRecord { key, found } => {
                let id = behaviour.kad.get_record(key);
                self.pending_gets.insert(id, found);
            }
            Command::Subscribe { collection, on } => {
                let topic = crate::network::collection_topic(&collection);
                if on {
                    if let Err(e) = behaviour.gossip.subscribe(&topic) {
                        tracing::warn!(error = ?e, "cannot join a collection's topic");
                    }
                } else {
                    behaviour.gossip.unsubscribe(&topic);
                }
            }
            Command::Gossip {
                collection,
                data,
                reply,
            } => {
                let topic = crate::network::collection_topic(&collection);
                let r = behaviour.gossip.publish(topic, data);
                let _ = reply.send(r.map(|_| ()).map_err(|e| e.to_string()));
            }
            Command::GossipVerdict {
                id,
                source,
                verdict,
            } => {
                behaviour
                    .gossip
                    .report_message_validation_result(&id, &source, verdict);
            }
            Command::Announce {
                peer,
                announcement,
                reply,
            } => {
                let id = behaviour.announce.send_request(&peer, announcement);
                self.pending_announce.insert(id, reply);
            }
            Command::Dial { addr, reply } => {
                let peer = match addr.iter().last() {
                    Some(Protocol::P2p(p)) => Some(p),
                    _ => None,
                };
                if let Some(p) = peer {
                    behaviour.kad.add_address(&p, addr.clone());
                    if self.swarm.is_connected(&p) {
                        let _ = reply.send(Ok(()));
                        return;
                    }
                }
                match (self.swarm.dial(addr.clone()), peer) {
                    (Err(e), _) => {
                        let _ = reply.send(Err(NodeError::Dial {
                            addr,
                            reason: e.to_string(),
                        }));
                    }
                    (Ok(()), Some(p)) => self.pending_dials.entry(p).or_default().push(reply),
                    (Ok(()), None) => {
                        let _ = reply.send(Ok(()));
                    }
                }
            }
            Command::Report { peer, offence } => self.report(peer, offence),
            Command::Unban { peer, reply } => {
                let was = self.banned.remove(&peer).is_some();
                self.reputation.forgive(&peer);
                self.swarm.behaviour_mut().blocked.unblock_peer(peer);
                let store = Arc::clone(&self.store);
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = persisted::remove(&store, &peer, now_secs()) {
                        tracing::warn!(peer = %peer, error = %e, "cannot remove the ban from the store");
                    }
                });
                tracing::info!(peer = %peer, "unbanned");
                let _ = reply.send(was);
            }
            Command::Debt { peer, reply } => {
                let _ = reply.send(self.reputation.debt(&peer));
            }
            Command::Banned { reply } => {
                let mut bans: Vec<Ban> = self.banned.values().cloned().collect();
                bans.sort_by_key(|b| b.until);
                let _ = reply.send(bans);
            }
            Command::Info { reply } => {
                let routing_table_size = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .kbuckets()
                    .map(|b| b.num_entries())
                    .sum();
                let peer_id = self.swarm.local_peer_id().to_string();
                let connected_peers = self.swarm.connected_peers().count();
                let intake = Arc::clone(&self.record_intake.counters);
                let kad = &mut self.swarm.behaviour_mut().kad;
                let mode = kad.mode();
                let store = kad.store_mut();
                let info = NodeInfo {
                    peer_id,
                    listen_addrs: self
                        .listen_tx
                        .borrow()
                        .iter()
                        .map(|a| a.to_string())
                        .collect(),
                    connected_peers,
                    routing_table_size,
                    records_provided: store.provided_count(),
                    provider_records_held: store.provider_rows(),
                    records_taken_in: intake.stored.load(Ordering::Relaxed),
                    records_refused: intake.refused.load(Ordering::Relaxed),
                    records_dropped: intake.dropped.load(Ordering::Relaxed),
                    bytes_served: self.counters.bytes_served.get(),
                    bytes_fetched: self.counters.bytes_fetched.get(),
                    connections_made: self.counters.connections_made.get(),
                    dht_mode: format!("{mode:?}").to_lowercase(),
                };
                let _ = reply.send(info);
            }
            Command::NearbyPeers { reply } => {
                let cutoff = std::time::Instant::now() - RECENT;
                self.recent.retain(|_, seen| *seen > cutoff);
                let mut peers: HashSet<PeerId> = self.swarm.connected_peers().copied().collect();
                peers.extend(self.recent.keys().copied());
                let _ = reply.send(peers.into_iter().collect());
            }
            Command::Peers { reply } => {
                let mut peers: Vec<PeerInfo> = self
                    .swarm
                    .connected_peers()
                    .map(|p| PeerInfo {
                        peer_id: p.to_string(),
                        address: self
                            .remote_addr
                            .get(p)
                            .map(|a| a.to_string())
                            .unwrap_or_default(),
                        rtt_ms: self.rtt.get(p).map(|d| d.as_secs_f64() * 1000.0),
                        debt: self.reputation.debt(p),
                        found_by: self.found_by.get(p).copied().unwrap_or("dht").to_owned(),
                    })
                    .collect();
                peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
                let _ = reply.send(peers);
            }
            Command::RoutingTable { reply } => {
                let _ = reply.send(self.routing_table());
            }
            Command::Shutdown => {}
        }
    }

    fn routing_table(&mut self) -> super::RoutingTable {
        let connected: HashSet<PeerId> = self.swarm.connected_peers().copied().collect();
        let local_peer_id = self.swarm.local_peer_id().to_string();
        let mut buckets = Vec::new();
        for b in self.swarm.behaviour_mut().kad.kbuckets() {
            let index = b.range().0.ilog2().unwrap_or(0);
            let peers: Vec<super::BucketPeer> = b
                .iter()
                .map(|e| {
                    let peer = *e.node.key.preimage();
                    super::BucketPeer {
                        peer_id: peer.to_string(),
                        addresses: e.node.value.iter().map(|a| a.to_string()).collect(),
                        connected: connected.contains(&peer),
                    }
                })
                .collect();
            if !peers.is_empty() {
                buckets.push(super::Bucket { index, peers });
            }
        }
        buckets.sort_by_key(|b| b.index);
        super::RoutingTable {
            local_peer_id,
            buckets,
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        use libp2p::metrics::Recorder;
        self.p2p_metrics.record(&event);
        match &event {
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.p2p_metrics.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => self.p2p_metrics.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => self.p2p_metrics.record(e),
            _ => {}
        }
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address
                    .clone()
                    .with(Protocol::P2p(*self.swarm.local_peer_id()));
                tracing::info!(address = %full, "listening");
                // Provider records carry only confirmed external addresses; on a LAN or
                // loopback no AutoNAT server will confirm one, so the addresses this node
                // listens on are what peers are told to dial.
                self.swarm.add_external_address(address);
                self.listen_tx.send_modify(|v| v.push(full));
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.swarm.remove_external_address(&address);
                let full = address.with(Protocol::P2p(*self.swarm.local_peer_id()));
                self.listen_tx.send_modify(|v| v.retain(|a| *a != full));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                tracing::debug!(peer = %peer_id, address = %endpoint.get_remote_address(), "connected");
                self.counters.connections_made.inc_by(1);
                self.dial_failures.remove(&peer_id);
                self.remote_addr
                    .insert(peer_id, endpoint.get_remote_address().clone());
                for reply in self.pending_dials.remove(&peer_id).unwrap_or_default() {
                    let _ = reply.send(Ok(()));
                }
                let remote = endpoint.get_remote_address();
                let is_bootstrap = self.bootstrap.iter().any(|a| match a.iter().last() {
                    Some(Protocol::P2p(p)) => p == peer_id,
                    _ => endpoint.is_dialer() && a == remote,
                });
                let found_by = if is_bootstrap {
                    "bootstrap"
                } else if self.on_lan.contains(&peer_id) {
                    "mdns"
                } else if endpoint.is_dialer() {
                    "dht"
                } else {
                    "inbound"
                };
                self.found_by.entry(peer_id).or_insert(found_by);
                if is_bootstrap && !self.bootstrapped {
                    self.bootstrapped = true;
                    self.bootstrap_backoff = Duration::from_secs(1);
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                tracing::debug!(peer = %peer_id, cause = ?cause, "connection closed");
                if num_established == 0 {
                    self.remote_addr.remove(&peer_id);
                    self.found_by.remove(&peer_id);
                    self.remember(peer_id);
                    self.rtt.remove(&peer_id);
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(peer = ?peer_id, error = %error, "dial failed");
                if let Some(p) = peer_id.filter(|_| refused_at_handshake(&error)) {
                    let n = self.dial_failures.get(&p).map_or(0, |(n, _)| *n);
                    if self.dial_failures.len() < MAX_RECENT * 4 || n > 0 {
                        self.dial_failures
                            .insert(p, (n + 1, std::time::Instant::now()));
                    }
                }
                if let Some(p) = peer_id {
                    for reply in self.pending_dials.remove(&p).unwrap_or_default() {
                        let _ = reply.send(Err(NodeError::Dial {
                            addr: Multiaddr::empty().with(Protocol::P2p(p)),
                            reason: error.to_string(),
                        }));
                    }
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Chunks(e) => self.on_chunks_event(e),
            BehaviourEvent::Replicate(e) => self.on_replicate_event(e),
            BehaviourEvent::Announce(e) => self.on_announce_event(e),
            BehaviourEvent::Kad(e) => self.on_kad_event(e),
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                // identify results are not fed to kad automatically; only peers that speak
                // storgo's kad protocol belong in the routing table.
                let kad_proto = StreamProtocol::new(KAD_PROTOCOL);
                if info.protocols.contains(&kad_proto) {
                    for addr in info.listen_addrs {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
            }
            BehaviourEvent::Gossip(libp2p::gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.on_gossip(propagation_source, message_id, message),
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    tracing::info!(peer = %peer, address = %addr, "discovered on the LAN");
                    self.remember(peer);
                    if self.on_lan.len() >= MAX_RECENT * 4 {
                        self.on_lan.clear();
                    }
                    self.on_lan.insert(peer);
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                    // A LAN peer that failed the handshake (another private network, a banned
                    // peer) is announced again and again: redial it only after a backoff.
                    if !self.swarm.is_connected(&peer) && !self.backing_off(&peer) {
                        let _ = self.swarm.dial(addr.with(Protocol::P2p(peer)));
                    }
                }
            }
            BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            }) => {
                self.rtt.insert(peer, rtt);
            }
            _ => {}
        }
    }

    /// A gossiped record: handed to the collections service to check (its verdict comes back
    /// as a command); one for no collection of storgo's, or beyond what the service can take,
    /// is dropped here.
    fn on_gossip(
        &mut self,
        source: PeerId,
        id: libp2p::gossipsub::MessageId,
        message: libp2p::gossipsub::Message,
    ) {
        use libp2p::gossipsub::MessageAcceptance;
        let verdict = match crate::network::topic_collection(&message.topic) {
            None => MessageAcceptance::Reject,
            Some(collection) => {
                let job = super::GossipIn {
                    id: id.clone(),
                    source,
                    collection,
                    data: message.data,
                };
                match self.gossip_tx.try_send(job) {
                    Ok(()) => return,
                    Err(_) => MessageAcceptance::Ignore,
                }
            }
        };
        self.swarm
            .behaviour_mut()
            .gossip
            .report_message_validation_result(&id, &source, verdict);
    }

    fn on_kad_event(&mut self, event: kad::Event) {
        if let kad::Event::InboundRequest { request } = event {
            self.counters.dht_requests_received.inc_by(1);
            self.on_inbound_record(request);
            return;
        }
        let kad::Event::OutboundQueryProgressed {
            id,
            result,
            step,
            stats,
        } = event
        else {
            return;
        };
        if let Some((lookup, found, _)) = self.pending_lookups.get_mut(&id) {
            if let kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                providers,
                ..
            })) = &result
            {
                if found.is_empty() && !providers.is_empty() {
                    // A record in this node's own store comes before any request is sent
                    // (and before the query's clock starts).
                    lookup.first_provider_ms = Some(
                        stats
                            .duration()
                            .map(|d| d.as_secs_f64() * 1e3)
                            .unwrap_or(0.0),
                    );
                    lookup.requests_to_first = Some(stats.num_requests());
                }
                found.extend(providers.iter().copied());
            }
            if step.last {
                if let Some((mut lookup, found, reply)) = self.pending_lookups.remove(&id) {
                    lookup.providers = found.iter().map(|p| p.to_string()).collect();
                    lookup.duration_ms =
                        stats.duration().map(|d| d.as_millis() as u64).unwrap_or(0);
                    lookup.requests = stats.num_requests();
                    lookup.successes = stats.num_successes();
                    let _ = reply.send(lookup);
                }
            }
            return;
        }
        match result {
            kad::QueryResult::GetClosestPeers(r) => {
                if let Some(reply) = self.pending_closest.remove(&id) {
                    let (peers, complete) = match r {
                        Ok(ok) => (ok.peers, true),
                        Err(kad::GetClosestPeersError::Timeout { peers, .. }) => (peers, false),
                    };
                    let _ = reply.send(Closest {
                        peers: peers.into_iter().map(|p| p.peer_id).collect(),
                        requests: stats.num_requests(),
                        complete,
                    });
                }
            }
            kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                providers,
                ..
            })) => {
                let local = *self.swarm.local_peer_id();
                let mut finish = false;
                let mut dial = Vec::new();
                if let Some((tx, seen)) = self.pending_providers.get_mut(&id) {
                    for p in providers {
                        if seen.len() >= super::MAX_PROVIDERS_PER_LOOKUP {
                            finish = true;
                            break;
                        }
                        if p != local && !self.banned.contains_key(&p) && seen.insert(p) {
                            dial.push(p);
                            if tx.send(p).is_err() {
                                finish = true;
                            }
                        }
                    }
                }
                // A provider's addresses came with the record, but kad keeps them only while
                // the query runs: dial now, while it still knows them, or a provider that is
                // in no routing table here could not be reached afterwards.
                for p in dial {
                    if !self.swarm.is_connected(&p) {
                        let _ = self.swarm.dial(p);
                    }
                }
                if finish {
                    self.pending_providers.remove(&id);
                    if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                        q.finish();
                    }
                }
            }
            kad::QueryResult::GetRecord(Ok(kad::GetRecordOk::FoundRecord(found))) => {
                let closed = self.pending_gets.get(&id).is_some_and(|tx| {
                    matches!(
                        tx.try_send(found.record.value),
                        Err(mpsc::error::TrySendError::Closed(_))
                    )
                });
                if closed {
                    self.pending_gets.remove(&id);
                    if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                        q.finish();
                    }
                }
            }
            kad::QueryResult::PutRecord(r) => {
                if let Some(reply) = self.pending_puts.remove(&id) {
                    let _ = reply.send(r.map(|_| ()).map_err(|e| e.to_string()));
                }
            }
            kad::QueryResult::StartProviding(Err(e)) => {
                tracing::debug!(error = ?e, "providing timed out on some peers");
            }
            kad::QueryResult::Bootstrap(Err(e)) => {
                tracing::debug!(error = ?e, "bootstrap query failed");
            }
            _ => {}
        }
        if step.last {
            self.pending_providers.remove(&id);
            self.pending_gets.remove(&id);
            if let Some(done) = self.pending_provides.remove(&id) {
                let _ = done.send(());
            }
        }
    }

    fn on_replicate_event(
        &mut self,
        event: request_response::Event<ReplicateRequest, ReplicateResponse>,
    ) {
        let Some((peer, request, channel)) =
            route_replies(&mut self.pending_replicate, event, "replicate")
        else {
            return;
        };
        // The replica service answers; when it is swamped, say so at once.
        if let Err(e) = self.replica_tx.try_send(InboundReplicate {
            peer,
            request,
            channel,
        }) {
            let refused = ReplicateResponse::Refused {
                reason: RefuseReason::Busy,
                message: "too many replicate requests".into(),
            };
            let channel = match e {
                mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r) => {
                    r.channel
                }
            };
            let _ = self
                .swarm
                .behaviour_mut()
                .replicate
                .send_response(channel, refused);
        }
    }

    fn on_announce_event(
        &mut self,
        event: request_response::Event<Announcement, AnnounceResponse>,
    ) {
        let Some((peer, announcement, channel)) =
            route_replies(&mut self.pending_announce, event, "announce")
        else {
            return;
        };
        self.counters.announcements_received.inc_by(1);
        let refuse = |reason, message: &str| AnnounceResponse::Refused {
            reason,
            message: message.into(),
        };
        let refusal = if !self.dht_server {
            Some(refuse(RefuseReason::BadRequest, "not a DHT server"))
        } else if self.counters.stopping() {
            Some(refuse(RefuseReason::ShuttingDown, "stopping"))
        } else {
            None
        };
        if let Some(answer) = refusal {
            let _ = self
                .swarm
                .behaviour_mut()
                .announce
                .send_response(channel, answer);
            return;
        }
        let records = announcement
            .roots
            .iter()
            .map(|root| RemoteProvider {
                root: *root,
                provider: peer,
                addrs: announcement.addrs.clone(),
            })
            .collect();
        if let Err((channel, answer)) = self
            .record_intake
            .offer(IntakeJob::Announcement { records, channel })
        {
            let _ = self
                .swarm
                .behaviour_mut()
                .announce
                .send_response(channel, answer);
        }
    }

    /// A record a peer sent for this node to keep (kad stores nothing itself: inserts are
    /// filtered). Only provider records with a storgo key and collections' latest-version
    /// records (`collection-v1.md`) are taken in; any other `PUT_VALUE` is not stored.
    fn on_inbound_record(&mut self, request: kad::InboundRequest) {
        let refused = &self.record_intake.counters.refused;
        match request {
            kad::InboundRequest::AddProvider {
                record: Some(record),
            } => match RemoteProvider::from_kad(&record) {
                Some(r) => {
                    let _ = self.record_intake.offer(IntakeJob::Provider(r));
                }
                None => {
                    refused.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(peer = %record.provider, "provider record with a key that is not a storgo root: not stored");
                }
            },
            kad::InboundRequest::PutRecord {
                source,
                record: Some(record),
                ..
            } => {
                // Checked (signature, newer sequence) by the intake's thread, off the loop.
                if crate::collections::record::collection_of(&record.key).is_some() {
                    let _ = self.record_intake.offer(IntakeJob::Value(record));
                } else {
                    refused.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(peer = %source, "value record that is not a collection's: not stored (dht-v1.md)");
                }
            }
            _ => {}
        }
    }

    fn on_chunks_event(&mut self, event: request_response::Event<ChunkRequest, ChunkResponse>) {
        let Some((peer, request, channel)) =
            route_replies(&mut self.pending_requests, event, "chunk")
        else {
            return;
        };
        tracing::trace!(peer = %peer, request = ?request, "serving");
        let (why, malformed) = match request {
            ChunkRequest::Invalid(why) => (why, true),
            ChunkRequest::Incomplete(why) => (why, false),
            request => {
                self.admit_chunk_request(peer, request, channel);
                return;
            }
        };
        // Cheap to answer here: no reader is needed to say what was wrong. Only a request that
        // arrived whole and is wrong counts against the peer.
        tracing::debug!(peer = %peer, reason = %why, "bad chunk request");
        if malformed {
            self.report(peer, Offence::Malformed);
        }
        let answer = super::serve::chunks::bad_request(why);
        let _ = self
            .swarm
            .behaviour_mut()
            .chunks
            .send_response(channel, answer);
    }

    fn admit_chunk_request(
        &mut self,
        peer: PeerId,
        request: ChunkRequest,
        channel: ResponseChannel<ChunkResponse>,
    ) {
        if let Err((channel, busy)) = self.chunk_service.admit(peer, request, channel) {
            self.counters.inbound("chunks", "busy");
            let _ = self
                .swarm
                .behaviour_mut()
                .chunks
                .send_response(channel, busy);
        }
    }
}

/// What every request-response protocol handles alike: an answer to one of our requests goes
/// to the caller waiting in `pending`, an outbound failure fails that caller, an inbound
/// failure is logged. An inbound request is returned for the protocol's own handler.
fn route_replies<Req, Resp>(
    pending: &mut HashMap<OutboundRequestId, oneshot::Sender<Result<Resp, NodeError>>>,
    event: request_response::Event<Req, Resp>,
    protocol: &'static str,
) -> Option<(PeerId, Req, ResponseChannel<Resp>)> {
    match event {
        request_response::Event::Message { peer, message, .. } => match message {
            request_response::Message::Request {
                request, channel, ..
            } => return Some((peer, request, channel)),
            request_response::Message::Response {
                request_id,
                response,
            } => {
                if let Some(reply) = pending.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
        },
        request_response::Event::OutboundFailure {
            peer,
            request_id,
            error,
            ..
        } => {
            if let Some(reply) = pending.remove(&request_id) {
                let _ = reply.send(Err(NodeError::Request {
                    peer,
                    reason: error.to_string(),
                }));
            }
        }
        request_response::Event::InboundFailure { peer, error, .. } => {
            tracing::debug!(peer = %peer, error = %error, protocol, "inbound request failed");
        }
        _ => {}
    }
    None
}

/// The bans remembered in the store: those in force, and the books that know how often each
/// peer was banned before. Read once, when the node starts.
fn load_bans(store: &Store) -> (Reputation, HashMap<PeerId, Ban>) {
    let mut reputation = Reputation::new(Limits::default());
    let mut banned = HashMap::new();
    let now = now_secs();
    match persisted::load(store, now) {
        Ok(bans) => {
            for (peer, ban) in bans {
                reputation.remember_ban(peer, ban.count);
                if ban.until > now {
                    banned.insert(peer, ban);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the bans from the store"),
    }
    (reputation, banned)
}

/// Whether a dial reached the peer and was refused there (another private network's key, a
/// failed Noise handshake, the wrong PeerId, a block list) rather than failing to reach it: a
/// peer that is down or cut off must be redialled as soon as it is seen again, one that
/// refuses would only refuse again.
fn refused_at_handshake(error: &libp2p::swarm::DialError) -> bool {
    use libp2p::swarm::DialError;
    use libp2p::TransportError;
    use std::io::ErrorKind::*;
    match error {
        DialError::WrongPeerId { .. } | DialError::Denied { .. } => true,
        DialError::Transport(errors) => {
            !errors.is_empty()
                && errors.iter().all(|(_, e)| match e {
                    TransportError::Other(io) => !matches!(
                        io.kind(),
                        ConnectionRefused
                            | ConnectionReset
                            | ConnectionAborted
                            | TimedOut
                            | HostUnreachable
                            | NetworkUnreachable
                            | AddrNotAvailable
                            | NotConnected
                    ),
                    TransportError::MultiaddrNotSupported(_) => false,
                })
        }
        _ => false,
    }
}
