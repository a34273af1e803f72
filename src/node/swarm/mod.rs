//! The event loop: the only owner of the Swarm.
//!
//! It only routes. Swarm events and [`Command`]s from the rest of the node come in; queries and
//! requests go out, remembered with whoever waits for them (`queries`); inbound work leaves on
//! channels to the workers that do it (`inbound`: serving chunks, taking in records and
//! replicas, checking gossip) and their answers come back as [`Answer`]s. Disk, hashing and
//! anything slow run elsewhere: the loop never waits.
//!
//! Rooms: `commands` (what each command does), `queries` (the in-flight tables), `inbound`
//! (peers' requests), `peers` (the peer book, backoffs, bans), `reputation` (offences and the
//! ban rule), `reach` (which addresses peers can dial, the DHT mode, relay reservations, hole
//! punches).

mod commands;
mod inbound;
mod peers;
mod queries;
mod reach;
pub mod reputation;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{
    autonat, dcutr, identify, kad, mdns, ping, relay, upnp, Multiaddr, PeerId, StreamProtocol,
    Swarm,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::network::{
    dial_gate, AnnounceResponse, Behaviour, BehaviourEvent, ChunkResponse, DhtStore, NetworkConfig,
    ReachabilityMode, ReplicateResponse, KAD_PROTOCOL,
};
use crate::store::Store;

use super::replicate::InboundReplicate;
use super::serve::chunks::ChunkService;
use super::serve::records::RecordIntake;
use super::serve::Answer;
use super::{now_secs, Command, Counters, NodeError};
use peers::{refused_at_handshake, Backoff, PeerBook};
use queries::{Queries, Requests};
use reach::Reach;
use reputation::{persisted, Ban, Limits, Reputation};

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
    /// Peers' chunk requests: a bounded pool of store readers (`serve::chunks`).
    chunk_service: ChunkService,
    /// Peers' DHT records: validated here, written by the intake's thread (`serve::records`).
    record_intake: RecordIntake,
    store: Arc<Store>,
    /// Offences booked against peers, and the bans in force.
    reputation: Reputation,
    banned: HashMap<PeerId, Ban>,
    peers: PeerBook,
    /// DHT queries in flight and who waits for each.
    queries: Queries,
    /// Outbound requests in flight, per protocol.
    chunk_requests: Requests<ChunkResponse>,
    replicate_requests: Requests<ReplicateResponse>,
    announce_requests: Requests<AnnounceResponse>,
    /// Callers waiting for a dial to a peer to connect or fail.
    dials: HashMap<PeerId, Vec<oneshot::Sender<Result<(), NodeError>>>>,
    /// Gossiped collection records go to the collections service (`node::collections`), which
    /// checks them off the loop and answers with a verdict.
    gossip_tx: mpsc::Sender<super::GossipIn>,
    dht_server: bool,
    /// Inbound replicate requests go to the replica service (`node::replicate`).
    replica_tx: mpsc::Sender<InboundReplicate>,
    bootstrap: Vec<Multiaddr>,
    bootstrap_backoff: Backoff,
    bootstrapped: bool,
    /// What this node knows of its own reachability (`reach`).
    reach: Reach,
    reachability: ReachabilityMode,
    /// The listen addresses asked for, as configured (`reach::reachable_as_listened`).
    configured_listen: Vec<Multiaddr>,
    /// Kademlia's mode now: server while `reach` says peers can reach this node.
    serving_dht: bool,
    /// The addresses provider records and identify carry: the confirmed ones.
    advertised_tx: watch::Sender<Vec<Multiaddr>>,
    /// Reservations peers hold on this node's relay.
    relay_reservations_served: u64,
    /// Walk the DHT at the next tick: this node began to serve it, or a peer did (a walk
    /// made while they were clients found nothing through them).
    refresh_routing: bool,
    /// Connected peers seen as DHT clients: when one begins to serve, the table is walked.
    dht_clients: std::collections::HashSet<PeerId>,
}

/// The watch channels the loop keeps up to date for the rest of the node.
pub(crate) struct Addresses {
    /// Every address listened on, each ending in `/p2p/PEERID`.
    pub listen: watch::Sender<Vec<Multiaddr>>,
    /// The confirmed external addresses, direct and relayed (without `/p2p/PEERID`).
    pub advertised: watch::Sender<Vec<Multiaddr>>,
}

impl EventLoop {
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        store: Arc<Store>,
        cfg: &NetworkConfig,
        addresses: Addresses,
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
            peers: PeerBook::default(),
            swarm,
            commands,
            counters: metrics.counters,
            p2p_metrics: metrics.p2p,
            listen_tx: addresses.listen,
            inbound_rx,
            queries: Queries::default(),
            chunk_requests: Requests::new("chunk"),
            replicate_requests: Requests::new("replicate"),
            announce_requests: Requests::new("announce"),
            dials: HashMap::new(),
            gossip_tx: handoff.gossip,
            dht_server: cfg.dht_server,
            replica_tx: handoff.replica,
            bootstrap: cfg.bootstrap.clone(),
            bootstrap_backoff: Backoff::default(),
            bootstrapped: false,
            reach: Reach::new(
                cfg.reachability,
                cfg.dht_server,
                cfg.relay_reservations,
                Instant::now(),
            ),
            reachability: cfg.reachability,
            configured_listen: cfg.listen.clone(),
            serving_dht: cfg.reachable_at_start(),
            advertised_tx: addresses.advertised,
            relay_reservations_served: 0,
            refresh_routing: false,
            dht_clients: std::collections::HashSet::new(),
        }
    }

    pub async fn run(mut self) {
        for peer in self.banned.keys() {
            self.swarm.behaviour_mut().blocked.block_peer(*peer);
        }
        let mut lift_bans = tokio::time::interval(Duration::from_secs(60));
        // Reservations are topped up as events come; this also ends the wait of a node whose
        // reachability stays unknown.
        let mut tend = tokio::time::interval(Duration::from_secs(5));
        let started = Instant::now();
        self.dial_bootstrap();
        self.tend_reachability();
        let mut retry = tokio::time::interval(self.bootstrap_backoff.current());
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
                _ = tend.tick() => {
                    self.tend_reachability();
                    if std::mem::take(&mut self.refresh_routing) || self.young_and_small(started) {
                        let _ = self.swarm.behaviour_mut().kad.bootstrap();
                    }
                }
                _ = retry.tick() => {
                    if !self.bootstrap.is_empty() && !self.bootstrap_connected() {
                        let wait = self.bootstrap_backoff.grow();
                        retry = tokio::time::interval(wait);
                        retry.tick().await;
                        tracing::info!(backoff_s = wait.as_secs(), "retrying bootstrap peers");
                        self.dial_bootstrap();
                    }
                }
            }
        }
        tracing::info!("node event loop stopped");
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        use libp2p::metrics::Recorder;
        self.p2p_metrics.record(&event);
        match &event {
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.p2p_metrics.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => self.p2p_metrics.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => self.p2p_metrics.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Relay(e)) => self.p2p_metrics.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(e)) => self.p2p_metrics.record(e),
            _ => {}
        }
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address
                    .clone()
                    .with(Protocol::P2p(*self.swarm.local_peer_id()));
                tracing::info!(address = %full, "listening");
                // Provider records and identify carry only confirmed addresses: this node
                // confirms an address itself only by `reach`'s rule (`--reachability public`,
                // or loopback alone); others wait for AutoNAT.
                if reach::reachable_as_listened(
                    self.reachability,
                    &self.configured_listen,
                    &address,
                ) && self.serving_dht_allowed()
                {
                    // The Swarm tells its behaviours, not this loop, of an address confirmed
                    // here.
                    self.reach.confirmed(address.clone());
                    self.swarm.add_external_address(address);
                    self.tend_reachability();
                }
                self.listen_tx.send_modify(|v| v.push(full));
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                if !reach::is_circuit(&address) {
                    self.reach.expired(&address);
                    self.swarm.remove_external_address(&address);
                    self.tend_reachability();
                }
                let full = address.with(Protocol::P2p(*self.swarm.local_peer_id()));
                self.listen_tx.send_modify(|v| v.retain(|a| *a != full));
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                if let Some(relay) = self.reach.reservation_ended(listener_id, Instant::now()) {
                    tracing::info!(relay = %relay, reason = ?reason.err(), "relay reservation ended");
                    self.tend_reachability();
                }
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::info!(address = %address, "address confirmed reachable");
                self.reach.confirmed(address);
                self.tend_reachability();
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                tracing::info!(address = %address, "address no longer reachable");
                self.reach.expired(&address);
                self.tend_reachability();
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                connection_id,
                ..
            } => {
                tracing::debug!(peer = %peer_id, address = %endpoint.get_remote_address(), "connected");
                self.counters.connections_made.inc_by(1);
                for reply in self.dials.remove(&peer_id).unwrap_or_default() {
                    let _ = reply.send(Ok(()));
                }
                let remote = endpoint.get_remote_address();
                let is_bootstrap = self.is_bootstrap(&peer_id, remote, endpoint.is_dialer());
                if is_bootstrap {
                    self.reach.is_bootstrap(peer_id);
                }
                // Dialled: the address names the relay; accepted: our circuit listen address.
                let relay = reach::relay_of(match &endpoint {
                    ConnectedPoint::Dialer { address, .. } => address,
                    ConnectedPoint::Listener { local_addr, .. } => local_addr,
                });
                self.reach.connection_opened(
                    peer_id,
                    connection_id,
                    (endpoint.is_relayed(), relay),
                    endpoint.is_dialer(),
                    Instant::now(),
                );
                let me = *self.swarm.local_peer_id();
                if let Some(crossed) = self.reach.crossed_circuit(me, peer_id) {
                    tracing::debug!(peer = %peer_id, "two circuits crossed: closing one so that one hole punch runs");
                    self.swarm.close_connection(crossed);
                }
                self.peers
                    .connected(peer_id, remote.clone(), is_bootstrap, endpoint.is_dialer());
                if is_bootstrap && !self.bootstrapped {
                    self.bootstrapped = true;
                    self.bootstrap_backoff.reset();
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                connection_id,
                ..
            } => {
                tracing::debug!(peer = %peer_id, cause = ?cause, "connection closed");
                self.reach.connection_closed(peer_id, connection_id);
                if num_established == 0 {
                    self.peers.disconnected(peer_id, Instant::now());
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(peer = ?peer_id, error = %error, "dial failed");
                let ours = dial_gate::held_off(&error);
                if let Some(p) = peer_id.filter(|_| !ours && refused_at_handshake(&error)) {
                    self.peers.refused(p, Instant::now());
                }
                if let Some(p) = peer_id.filter(|_| !ours) {
                    self.relay_refused(p, &error);
                }
                if let Some(p) = peer_id {
                    for reply in self.dials.remove(&p).unwrap_or_default() {
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
                let offers_relay = info.protocols.contains(&relay::HOP_PROTOCOL_NAME);
                let probes = info
                    .protocols
                    .contains(&StreamProtocol::new(reach::AUTONAT_DIAL_REQUEST));
                self.reach
                    .prober(peer_id, probes && !info.listen_addrs.is_empty());
                self.reach
                    .relay_offered(peer_id, offers_relay, &info.listen_addrs);
                if info.protocols.contains(&kad_proto) {
                    if self.dht_clients.remove(&peer_id) {
                        self.refresh_routing = true;
                    }
                    for addr in info.listen_addrs {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
                if !info.protocols.contains(&kad_proto) {
                    if self.dht_clients.len() >= peers::MAX_RECENT {
                        self.dht_clients.clear();
                    }
                    self.dht_clients.insert(peer_id);
                }
                if offers_relay || probes {
                    self.tend_reachability();
                }
            }
            BehaviourEvent::Autonat(e) => self.on_probe(e),
            BehaviourEvent::AutonatServer(e) => {
                tracing::debug!(peer = %e.client, address = %e.tested_addr, result = ?e.result, "dialled a peer's address back");
            }
            BehaviourEvent::Relay(e) => self.on_relay_service(e),
            BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal: false,
                ..
            }) => {
                tracing::info!(relay = %relay_peer_id, "relay reservation held");
            }
            BehaviourEvent::Dcutr(e) => self.on_hole_punch(e),
            BehaviourEvent::Upnp(e) => match e {
                upnp::Event::NewExternalAddr { external_addr, .. } => {
                    tracing::info!(address = %external_addr, "the router mapped a port (UPnP)");
                }
                upnp::Event::GatewayNotFound => tracing::debug!("no UPnP router found"),
                upnp::Event::NonRoutableGateway => {
                    tracing::info!("the UPnP router is itself behind another NAT: no mapping")
                }
                upnp::Event::ExpiredExternalAddr { external_addr, .. } => {
                    tracing::info!(address = %external_addr, "the router's port mapping expired");
                }
            },
            BehaviourEvent::Gossip(libp2p::gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.on_gossip(propagation_source, message_id, message),
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    tracing::info!(peer = %peer, address = %addr, "discovered on the LAN");
                    self.peers.found_on_lan(peer, Instant::now());
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                    // A LAN peer that failed the handshake (another private network, a banned
                    // peer) is announced again and again: redial it only after a backoff.
                    if !self.swarm.is_connected(&peer)
                        && !self.peers.backing_off(&peer, Instant::now())
                    {
                        let _ = self.swarm.dial(addr.with(Protocol::P2p(peer)));
                    }
                }
            }
            BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            }) => {
                self.peers.rtt.insert(peer, rtt);
            }
            _ => {}
        }
    }

    /// In its first two minutes, while its routing table is under k, a resident node walks the
    /// DHT every tick (5 s): peers become DHT servers one by one as AutoNAT confirms them, and
    /// a walk made before a peer served found nothing through it. A walk in a table this small
    /// costs a few requests. A node whose reachability is declared (`--reachability public`,
    /// a LAN, the in-process tests) has nothing to wait for.
    fn young_and_small(&mut self, started: Instant) -> bool {
        if !self.reach.resident()
            || !self.reach.learnt()
            || started.elapsed() > Duration::from_secs(120)
        {
            return false;
        }
        let size = self.routing_table_size();
        size > 0 && size < crate::network::DHT_K
    }

    /// Peers in kad's routing table now.
    fn routing_table_size(&mut self) -> usize {
        self.swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .map(|b| b.num_entries())
            .sum()
    }

    /// A resident node confirms its own addresses; a fetch's node never advertises any.
    fn serving_dht_allowed(&self) -> bool {
        self.reach.resident()
    }

    fn on_probe(&mut self, e: autonat::v2::client::Event) {
        let outcome = if e.result.is_ok() {
            "reachable"
        } else {
            "unreachable"
        };
        tracing::info!(address = %e.tested_addr, server = %e.server, outcome, "reachability probe");
        self.counters
            .reachability_probes
            .get_or_create(&super::metrics::Outcome { outcome })
            .inc();
        if e.result.is_err() {
            self.reach.probe_failed();
            self.tend_reachability();
        }
    }

    fn on_relay_service(&mut self, e: relay::Event) {
        match e {
            relay::Event::ReservationReqAccepted {
                src_peer_id,
                renewed: false,
            } => {
                tracing::info!(peer = %src_peer_id, "relaying for a peer (reservation accepted)");
                self.relay_reservations_served += 1;
            }
            relay::Event::ReservationClosed { src_peer_id }
            | relay::Event::ReservationTimedOut { src_peer_id } => {
                self.relay_reservations_served = self.relay_reservations_served.saturating_sub(1);
                // Reachable only through this relay, it no longer is: stop handing its
                // circuit addresses to peers' DHT walks (they would spend this relay's circuit
                // budget on it). It comes back with its next reservation's identify.
                if !self.swarm.is_connected(&src_peer_id) {
                    self.swarm.behaviour_mut().kad.remove_peer(&src_peer_id);
                }
            }
            relay::Event::ReservationReqDenied { src_peer_id, .. } => {
                tracing::info!(peer = %src_peer_id, "relay reservation refused: over the relay's limits");
            }
            relay::Event::CircuitReqAccepted {
                src_peer_id,
                dst_peer_id,
            } => {
                tracing::debug!(from = %src_peer_id, to = %dst_peer_id, "relaying a circuit");
                self.counters.circuits_relayed.inc();
            }
            relay::Event::CircuitReqDenied {
                src_peer_id,
                dst_peer_id,
                ..
            } => {
                tracing::info!(from = %src_peer_id, to = %dst_peer_id, "circuit refused: over the relay's limits or no reservation");
            }
            relay::Event::CircuitClosed {
                src_peer_id,
                dst_peer_id,
                error,
            } => {
                tracing::debug!(from = %src_peer_id, to = %dst_peer_id, error = ?error, "circuit closed");
            }
            _ => {}
        }
        self.counters
            .relay_reservations
            .get_or_create(&super::metrics::Side { side: "served" })
            .set(self.relay_reservations_served as i64);
    }

    /// A dial failed at the relay (`network::dial_gate`): the peer is held off, and a peer its
    /// relays no longer know loses those circuit addresses from the routing table (the last
    /// one takes the peer out), so that walks stop offering it.
    fn relay_refused(&mut self, peer: PeerId, error: &libp2p::swarm::DialError) {
        let Some((why, addrs)) = dial_gate::relay_refusal(error) else {
            return;
        };
        tracing::debug!(peer = %peer, why = ?why, "its relay could not reach the peer: not dialled for a while");
        let behaviour = self.swarm.behaviour_mut();
        behaviour.dial_gate.refused(peer, why, Instant::now());
        if why == dial_gate::RelayRefusal::Gone {
            for mut addr in addrs {
                // Dialled as `…/p2p-circuit/p2p/PEER`; the table may hold either form.
                behaviour.kad.remove_address(&peer, &addr);
                if matches!(addr.iter().last(), Some(Protocol::P2p(p)) if p == peer) {
                    addr.pop();
                    behaviour.kad.remove_address(&peer, &addr);
                }
            }
        }
    }

    /// A hole punch ended. Once a direct connection exists the relayed ones are closed, so
    /// that every request (which request-response spreads over a peer's connections) takes
    /// the direct path and the relay's limits stop counting.
    fn on_hole_punch(&mut self, e: dcutr::Event) {
        let peer = e.remote_peer_id;
        match e.result {
            Ok(_) => {
                let (relayed, took) = self.reach.punched(peer, Instant::now());
                let ms = took.map(|d| d.as_millis() as u64).unwrap_or(0);
                tracing::info!(peer = %peer, after_ms = ms, "hole punched: a direct connection");
                if let Some(d) = took {
                    self.counters.hole_punch_seconds.observe(d.as_secs_f64());
                }
                self.counters
                    .hole_punches
                    .get_or_create(&super::metrics::Outcome { outcome: "direct" })
                    .inc();
                for c in relayed {
                    self.swarm.close_connection(c);
                }
            }
            Err(err) => {
                tracing::info!(peer = %peer, error = %err, "hole punch failed: the connection stays relayed");
                self.counters
                    .hole_punches
                    .get_or_create(&super::metrics::Outcome { outcome: "failed" })
                    .inc();
            }
        }
    }

    fn on_kad_event(&mut self, event: kad::Event) {
        let (id, result, step, stats) = match event {
            kad::Event::InboundRequest { request } => {
                self.counters.dht_requests_received.inc_by(1);
                self.on_inbound_record(request);
                return;
            }
            kad::Event::OutboundQueryProgressed {
                id,
                result,
                step,
                stats,
            } => (id, result, step, stats),
            kad::Event::RoutingUpdated {
                is_new_peer: true, ..
            } => {
                self.counters.peer_joined.notify_one();
                return;
            }
            _ => return,
        };
        match &result {
            kad::QueryResult::StartProviding(Err(e)) => {
                tracing::debug!(error = ?e, "providing timed out on some peers");
            }
            kad::QueryResult::Bootstrap(Err(e)) => {
                tracing::debug!(error = ?e, "bootstrap query failed");
            }
            _ => {}
        }
        let local = *self.swarm.local_peer_id();
        let banned = &self.banned;
        let next = self
            .queries
            .progress(id, result, (&stats).into(), step.last, |p| {
                *p != local && !banned.contains_key(p)
            });
        // A provider's addresses came with the record, but kad keeps them only while the
        // query runs: dial now, while it still knows them, or a provider that is in no
        // routing table here could not be reached afterwards.
        for p in next.dial {
            if !self.swarm.is_connected(&p) {
                let _ = self.swarm.dial(p);
            }
        }
        if next.finish {
            if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                q.finish();
            }
        }
    }
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
