//! Reachability: which of this node's addresses peers can dial, what follows from it, and the
//! relays a node behind a NAT keeps (`protocols/reachability-v1.md`).
//!
//! [`Reach`] is plain state, tested below: addresses confirmed directly (an AutoNAT dial-back,
//! a UPnP mapping AutoNAT then dialled, `--reachability public`, or a node that listens only
//! on loopback), addresses confirmed through a relay (a reservation the relay accepted), the
//! probes that failed, the peers that offer a relay, and the reservations asked for. From it
//! follow the node's [`Status`], whether it serves the DHT, and which relays to ask next. The
//! `EventLoop` methods at the end apply those decisions to the Swarm; nothing here touches the
//! store.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{kad, Multiaddr, PeerId};

use super::EventLoop;
use crate::network::{is_loopback, ReachabilityMode};

/// How long a node whose reachability is still unknown waits for AutoNAT before it takes
/// relay reservations anyway (no peer could test it: no candidate address, no AutoNAT server).
const UNKNOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a relay that refused a reservation or went away is not asked again.
const RELAY_REST: Duration = Duration::from_secs(60);
/// Most relay-offering peers remembered.
const MAX_RELAYS: usize = 64;
/// How long before a peer dialled so that AutoNAT can ask it is dialled again.
const PROBE_DIAL_REST: Duration = Duration::from_secs(60);
/// Closed relayed connections whose relay is remembered for the requests that failed on them.
const MAX_CLOSED_CIRCUITS: usize = 64;
/// AutoNAT v2's request protocol (libp2p keeps its constant private): a peer that lists it
/// dials addresses back.
pub(crate) const AUTONAT_DIAL_REQUEST: &str = "/libp2p/autonat/2/dial-request";

/// Whether peers can dial this node, as `storgo status` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// At least one address peers dialled back (or was declared reachable).
    Public,
    /// Every address tested failed: behind a NAT or firewall, reached through relays.
    Private,
    /// Nothing tested yet.
    Unknown,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Public => "public",
            Status::Private => "private",
            Status::Unknown => "unknown",
        }
    }
}

/// A connection through a relay, as a request that failed on it needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Circuit {
    /// The relay, where the connection's address names it.
    pub relay: Option<PeerId>,
    /// Closed by this node because a hole was punched, or because it crossed another
    /// circuit to the same peer: the request is asked again, and nobody is to blame.
    pub replaced: bool,
    /// This node dialled it (the peer accepted it through its relay).
    pub dialled: bool,
}

/// What this node knows of its own reachability.
pub(crate) struct Reach {
    mode: ReachabilityMode,
    /// A resident node (serves the DHT when reachable, keeps reservations); not a fetch's.
    resident: bool,
    /// Relay reservations to keep while private.
    wanted: usize,
    started: Instant,
    /// Confirmed addresses peers dial directly.
    direct: BTreeSet<Multiaddr>,
    /// Confirmed `/p2p-circuit` addresses, by relay.
    relayed: BTreeMap<Multiaddr, PeerId>,
    /// AutoNAT probes that failed since the last one that succeeded.
    failed_probes: u32,
    /// Peers that offer a relay, with a direct address to reach them at.
    relays: HashMap<PeerId, Multiaddr>,
    bootstrap: HashSet<PeerId>,
    /// Reservations asked for or held: the listener of each, and its relay.
    reservations: HashMap<ListenerId, PeerId>,
    /// Relays not to ask again before the instant given.
    resting: HashMap<PeerId, Instant>,
    /// Open connections that run through a relay, by peer, with when each was made.
    relayed_connections: HashMap<PeerId, Vec<(ConnectionId, Instant)>>,
    /// The relay of every relayed connection open now or closed lately: a request that fails
    /// on one learns that a relay, not the peer, ended it (its failure may come after the
    /// connection's close).
    circuits: BTreeMap<ConnectionId, Circuit>,
    closed_circuits: std::collections::VecDeque<ConnectionId>,
    /// Open direct connections, by peer.
    direct_connections: HashMap<PeerId, HashSet<ConnectionId>>,
    /// Open direct connections this node dialled, by peer: AutoNAT asks only over those.
    outbound: HashMap<PeerId, HashSet<ConnectionId>>,
    /// Connected peers that dial addresses back (AutoNAT v2 servers) and told an address.
    probers: HashSet<PeerId>,
    /// Peers dialled so that AutoNAT could ask them, and when.
    dialled_for_probes: HashMap<PeerId, Instant>,
}

impl Reach {
    pub(crate) fn new(mode: ReachabilityMode, resident: bool, wanted: usize, now: Instant) -> Self {
        Self {
            mode,
            resident,
            wanted: if resident { wanted } else { 0 },
            started: now,
            direct: BTreeSet::new(),
            relayed: BTreeMap::new(),
            failed_probes: 0,
            relays: HashMap::new(),
            bootstrap: HashSet::new(),
            reservations: HashMap::new(),
            resting: HashMap::new(),
            relayed_connections: HashMap::new(),
            circuits: BTreeMap::new(),
            closed_circuits: std::collections::VecDeque::new(),
            direct_connections: HashMap::new(),
            outbound: HashMap::new(),
            probers: HashSet::new(),
            dialled_for_probes: HashMap::new(),
        }
    }

    pub(crate) fn resident(&self) -> bool {
        self.resident
    }

    /// Whether peers' reachability is learnt one by one (AutoNAT), not declared at start.
    pub(crate) fn learnt(&self) -> bool {
        self.mode != ReachabilityMode::Public
    }

    pub(crate) fn status(&self) -> Status {
        if self.mode == ReachabilityMode::Public || !self.direct.is_empty() {
            Status::Public
        } else if self.mode == ReachabilityMode::Private
            || self.failed_probes > 0
            || !self.relayed.is_empty()
        {
            Status::Private
        } else {
            Status::Unknown
        }
    }

    /// Serve the DHT: a resident node that peers can reach, directly or through a relay that
    /// holds its reservation (never on an address nobody confirmed).
    pub(crate) fn dht_server(&self) -> bool {
        self.resident && (self.status() == Status::Public || !self.relayed.is_empty())
    }

    /// Whether the node takes relay reservations now.
    fn wants_relays(&self, now: Instant) -> bool {
        self.wanted > 0
            && match self.status() {
                Status::Public => false,
                Status::Private => true,
                Status::Unknown => now.duration_since(self.started) >= UNKNOWN_GRACE,
            }
    }

    pub(crate) fn is_bootstrap(&mut self, peer: PeerId) {
        self.bootstrap.insert(peer);
    }

    /// An address was confirmed (by AutoNAT, a relay, or this node's own rule).
    pub(crate) fn confirmed(&mut self, addr: Multiaddr) {
        match relay_of(&addr) {
            Some(relay) => {
                self.relayed.insert(addr, relay);
            }
            None => {
                self.failed_probes = 0;
                self.direct.insert(addr);
            }
        }
    }

    pub(crate) fn expired(&mut self, addr: &Multiaddr) {
        self.direct.remove(addr);
        self.relayed.remove(addr);
    }

    /// An AutoNAT probe of one of this node's addresses failed.
    pub(crate) fn probe_failed(&mut self) {
        self.failed_probes = self.failed_probes.saturating_add(1);
    }

    /// `peer` offers a relay (identify lists the hop protocol) at `addrs`; the first direct
    /// one is kept. A peer that stopped offering one is forgotten.
    pub(crate) fn relay_offered(&mut self, peer: PeerId, offers: bool, addrs: &[Multiaddr]) {
        let direct = addrs
            .iter()
            .find(|a| relay_of(a).is_none() && !is_circuit(a));
        match direct.filter(|_| offers) {
            Some(a) if self.relays.len() < MAX_RELAYS || self.relays.contains_key(&peer) => {
                self.relays.insert(peer, a.clone());
            }
            Some(_) => {}
            None => {
                self.relays.remove(&peer);
            }
        }
    }

    /// `peer` dials addresses back for others (AutoNAT v2) and can be dialled itself.
    pub(crate) fn prober(&mut self, peer: PeerId, is: bool) {
        if is && self.probers.len() < MAX_RELAYS {
            self.probers.insert(peer);
        } else if !is {
            self.probers.remove(&peer);
        }
    }

    /// Peers to dial so that AutoNAT can ask them about this node. libp2p's AutoNAT asks only
    /// over connections this node dialled; a node everyone dials (a bootstrap node, the first
    /// node of a LAN) would never be tested and never serve the DHT. Up to two at a time, each
    /// once a minute, only while this node is not known to be public.
    pub(crate) fn dial_for_probes(&mut self, now: Instant) -> Vec<PeerId> {
        if !self.resident
            || self.mode == ReachabilityMode::Public
            || self.status() == Status::Public
            || self.probers.iter().any(|p| self.outbound.contains_key(p))
        {
            return Vec::new();
        }
        let mut pick: Vec<PeerId> = self
            .probers
            .iter()
            .filter(|p| {
                self.dialled_for_probes
                    .get(*p)
                    .is_none_or(|t| now.duration_since(*t) >= PROBE_DIAL_REST)
            })
            .copied()
            .collect();
        pick.sort_by_key(|p| p.to_bytes());
        pick.truncate(2);
        for p in &pick {
            self.dialled_for_probes.insert(*p, now);
        }
        pick
    }

    /// The relays to ask for a reservation now, bootstrap peers first, each once.
    pub(crate) fn relays_to_ask(&self, now: Instant) -> Vec<(PeerId, Multiaddr)> {
        if !self.wants_relays(now) || self.reservations.len() >= self.wanted {
            return Vec::new();
        }
        let asked: HashSet<&PeerId> = self.reservations.values().collect();
        let mut offered: Vec<(&PeerId, &Multiaddr)> = self
            .relays
            .iter()
            .filter(|(p, _)| !asked.contains(p))
            .filter(|(p, _)| self.resting.get(p).is_none_or(|until| now >= *until))
            .collect();
        offered.sort_by_key(|(p, _)| (!self.bootstrap.contains(p), p.to_bytes()));
        offered
            .into_iter()
            .take(self.wanted - self.reservations.len())
            .map(|(p, a)| (*p, a.clone()))
            .collect()
    }

    pub(crate) fn asked(&mut self, listener: ListenerId, relay: PeerId) {
        self.reservations.insert(listener, relay);
    }

    /// A reservation's listener closed (refused, the relay left, or released): the relay
    /// rests before it is asked again. `None` when it was not a reservation.
    pub(crate) fn reservation_ended(
        &mut self,
        listener: ListenerId,
        now: Instant,
    ) -> Option<PeerId> {
        let relay = self.reservations.remove(&listener)?;
        self.resting.insert(relay, now + RELAY_REST);
        self.relayed.retain(|_, r| *r != relay);
        Some(relay)
    }

    /// Reservations to release: all of them once the node is reachable directly.
    pub(crate) fn to_release(&self) -> Vec<ListenerId> {
        if self.status() == Status::Public {
            self.reservations.keys().copied().collect()
        } else {
            Vec::new()
        }
    }

    /// A connection to `peer` opened; `relayed` when it runs through a relay, named by
    /// `relay` where its address names one.
    pub(crate) fn connection_opened(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        (relayed, relay): (bool, Option<PeerId>),
        dialled: bool,
        now: Instant,
    ) {
        if dialled && !relayed {
            self.outbound.entry(peer).or_default().insert(id);
        }
        if relayed {
            self.circuits.insert(
                id,
                Circuit {
                    relay,
                    replaced: false,
                    dialled,
                },
            );
            self.relayed_connections
                .entry(peer)
                .or_default()
                .push((id, now));
        } else {
            self.direct_connections.entry(peer).or_default().insert(id);
        }
    }

    pub(crate) fn connection_closed(&mut self, peer: PeerId, id: ConnectionId) {
        if let Some(set) = self.outbound.get_mut(&peer) {
            set.remove(&id);
            if set.is_empty() {
                self.outbound.remove(&peer);
            }
        }
        if let Some(set) = self.direct_connections.get_mut(&peer) {
            set.remove(&id);
            if set.is_empty() {
                self.direct_connections.remove(&peer);
            }
        }
        if let Some(list) = self.relayed_connections.get_mut(&peer) {
            list.retain(|(c, _)| *c != id);
            if list.is_empty() {
                self.relayed_connections.remove(&peer);
            }
        }
        if self.circuits.contains_key(&id) {
            self.closed_circuits.push_back(id);
            while self.closed_circuits.len() > MAX_CLOSED_CIRCUITS {
                if let Some(old) = self.closed_circuits.pop_front() {
                    self.circuits.remove(&old);
                }
            }
        }
    }

    /// Two relayed connections to `peer`, one dialled each way — both sides dialled at once
    /// (a fetch one way, a replica push or a DHT query the other): each would start its own
    /// hole punch, and two punches between the same two ports at once both fail (bench-nat:
    /// 2 pairs in 100 stayed relayed). Both sides keep the one the smaller PeerId dialled and
    /// close the other as soon as it opens, before its punch has sent anything; it is marked
    /// replaced, so requests on it are asked again. Returns the connection to close.
    pub(crate) fn crossed_circuit(&mut self, me: PeerId, peer: PeerId) -> Option<ConnectionId> {
        let list = self.relayed_connections.get(&peer)?;
        let by = |dialled: bool| {
            list.iter().map(|(c, _)| *c).find(|c| {
                self.circuits
                    .get(c)
                    .is_some_and(|x| x.dialled == dialled && !x.replaced)
            })
        };
        let (mine, theirs) = (by(true)?, by(false)?);
        let close = if me.to_bytes() < peer.to_bytes() {
            theirs
        } else {
            mine
        };
        if let Some(c) = self.circuits.get_mut(&close) {
            c.replaced = true;
        }
        Some(close)
    }

    /// Whether connection `id` ran through a relay (open or closed lately): which relay, and
    /// whether this node closed it for a punched direct connection.
    pub(crate) fn relay_carrying(&self, id: ConnectionId) -> Option<Circuit> {
        self.circuits.get(&id).copied()
    }

    /// A hole was punched to `peer`: its relayed connections to close (transfers then run on
    /// the direct one alone), and how long after the first of them the punch came.
    pub(crate) fn punched(
        &mut self,
        peer: PeerId,
        now: Instant,
    ) -> (Vec<ConnectionId>, Option<Duration>) {
        let list = self.relayed_connections.remove(&peer).unwrap_or_default();
        for (c, _) in &list {
            if let Some(circuit) = self.circuits.get_mut(c) {
                circuit.replaced = true;
            }
        }
        let first = list.iter().map(|(_, t)| *t).min();
        (
            list.into_iter().map(|(c, _)| c).collect(),
            first.map(|t| now.duration_since(t)),
        )
    }

    /// How this node is connected to `peer` now: `direct`, or `relayed` when every
    /// connection runs through a relay.
    pub(crate) fn via(&self, peer: &PeerId) -> &'static str {
        if !self.direct_connections.contains_key(peer)
            && self.relayed_connections.contains_key(peer)
        {
            "relayed"
        } else {
            "direct"
        }
    }

    pub(crate) fn direct_addresses(&self) -> impl Iterator<Item = &Multiaddr> {
        self.direct.iter()
    }

    pub(crate) fn relayed_addresses(&self) -> impl Iterator<Item = (&Multiaddr, &PeerId)> {
        self.relayed.iter()
    }

    pub(crate) fn reservations_held(&self) -> usize {
        self.relayed.values().collect::<HashSet<_>>().len()
    }
}

/// The relay of a `/p2p-circuit` address (the `/p2p/` before `/p2p-circuit`).
pub(crate) fn relay_of(addr: &Multiaddr) -> Option<PeerId> {
    let mut relay = None;
    for p in addr.iter() {
        match p {
            Protocol::P2p(peer) => relay = Some(peer),
            Protocol::P2pCircuit => return relay,
            _ => {}
        }
    }
    None
}

pub(crate) fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// Whether a listen address is reachable by this node's own rule, without asking peers: every
/// address with `--reachability public`; with `auto`, a loopback address of a node that listens
/// only on loopback (every peer that can reach it at all is on this machine).
pub(crate) fn reachable_as_listened(
    mode: ReachabilityMode,
    configured: &[Multiaddr],
    addr: &Multiaddr,
) -> bool {
    !is_circuit(addr)
        && match mode {
            ReachabilityMode::Public => true,
            ReachabilityMode::Auto | ReachabilityMode::Private => {
                is_loopback(addr) && !configured.is_empty() && configured.iter().all(is_loopback)
            }
        }
}

impl EventLoop {
    /// Applies what [`Reach`] decided: the DHT mode, reservations released and asked, and the
    /// metrics and advertised addresses that show it.
    pub(super) fn tend_reachability(&mut self) {
        let now = Instant::now();
        let server = self.reach.dht_server();
        if server != self.serving_dht {
            self.serving_dht = server;
            let mode = if server {
                kad::Mode::Server
            } else {
                kad::Mode::Client
            };
            tracing::info!(mode = ?mode, reachability = self.reach.status().as_str(), "DHT mode changed");
            self.swarm.behaviour_mut().kad.set_mode(Some(mode));
            // Peers that walked the DHT before this node served it did not find it.
            self.refresh_routing = server;
        }
        for listener in self.reach.to_release() {
            self.swarm.remove_listener(listener);
        }
        for peer in self.reach.dial_for_probes(now) {
            tracing::debug!(peer = %peer, "dialling a peer so that AutoNAT can ask it about this node");
            let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                .condition(libp2p::swarm::dial_opts::PeerCondition::Always)
                .build();
            let _ = self.swarm.dial(opts);
        }
        for (relay, addr) in self.reach.relays_to_ask(now) {
            let circuit = addr.with(Protocol::P2p(relay)).with(Protocol::P2pCircuit);
            match self.swarm.listen_on(circuit.clone()) {
                Ok(listener) => {
                    tracing::info!(relay = %relay, address = %circuit, "asking a relay for a reservation");
                    self.reach.asked(listener, relay);
                }
                Err(e) => {
                    tracing::debug!(relay = %relay, error = %e, "cannot ask the relay");
                    self.reach.relay_offered(relay, false, &[]);
                }
            }
        }
        let c = &self.counters;
        for s in [Status::Public, Status::Private, Status::Unknown] {
            c.reachability
                .get_or_create(&crate::node::metrics::ReachLabel { status: s.as_str() })
                .set(i64::from(s == self.reach.status()));
        }
        c.relay_reservations
            .get_or_create(&crate::node::metrics::Side { side: "held" })
            .set(self.reach.reservations_held() as i64);
        let advertised: Vec<Multiaddr> = self.swarm.external_addresses().cloned().collect();
        self.advertised_tx.send_if_modified(|v| {
            let changed = *v != advertised;
            *v = advertised;
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    fn circuit(relay: PeerId) -> Multiaddr {
        addr("/ip4/11.0.0.1/tcp/4815")
            .with(Protocol::P2p(relay))
            .with(Protocol::P2pCircuit)
    }

    #[test]
    fn crossed_circuits_are_settled_the_same_way_on_both_sides() {
        let t0 = Instant::now();
        let (a, b, relay) = (PeerId::random(), PeerId::random(), PeerId::random());
        let (ab, ba) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        // `ab`: a dialled b; `ba`: b dialled a. Each side sees both.
        let mut on_a = Reach::new(ReachabilityMode::Auto, true, 2, t0);
        on_a.connection_opened(b, ab, (true, Some(relay)), true, t0);
        assert_eq!(
            on_a.crossed_circuit(a, b),
            None,
            "one circuit: nothing to settle"
        );
        on_a.connection_opened(b, ba, (true, Some(relay)), false, t0);
        let mut on_b = Reach::new(ReachabilityMode::Auto, true, 2, t0);
        on_b.connection_opened(a, ab, (true, Some(relay)), false, t0);
        on_b.connection_opened(a, ba, (true, Some(relay)), true, t0);
        let closed_by_a = on_a.crossed_circuit(a, b).unwrap();
        let closed_by_b = on_b.crossed_circuit(b, a).unwrap();
        assert_eq!(closed_by_a, closed_by_b, "both close the same connection");
        let kept_dialler = if a.to_bytes() < b.to_bytes() { ab } else { ba };
        assert_ne!(
            closed_by_a, kept_dialler,
            "the smaller PeerId's circuit stays"
        );
        assert!(on_a.relay_carrying(closed_by_a).unwrap().replaced);
        assert_eq!(on_a.crossed_circuit(a, b), None, "settled once");
    }

    #[test]
    fn a_node_declared_private_asks_relays_at_once_and_a_confirmed_address_still_counts() {
        let t0 = Instant::now();
        let mut r = Reach::new(ReachabilityMode::Private, true, 2, t0);
        assert_eq!(r.status(), Status::Private);
        assert!(!r.dht_server(), "no reservation yet: a client");
        let relay = PeerId::random();
        r.relay_offered(relay, true, &[addr("/ip4/11.0.0.1/tcp/4815")]);
        assert_eq!(r.relays_to_ask(t0).len(), 1, "no wait for AutoNAT");
        r.confirmed(addr("/ip4/12.0.0.7/tcp/4815"));
        assert_eq!(
            r.status(),
            Status::Public,
            "a port forward a peer confirmed"
        );
        assert!(r.relays_to_ask(t0).is_empty());
    }

    #[test]
    fn a_node_behind_a_nat_is_a_dht_client_until_a_relay_holds_its_reservation() {
        let t0 = Instant::now();
        let mut r = Reach::new(ReachabilityMode::Auto, true, 2, t0);
        assert_eq!(r.status(), Status::Unknown);
        assert!(!r.dht_server(), "nothing confirmed: a client");
        let (relay, other) = (PeerId::random(), PeerId::random());
        r.relay_offered(relay, true, &[addr("/ip4/11.0.0.1/tcp/4815")]);
        assert!(
            r.relays_to_ask(t0).is_empty(),
            "unknown: AutoNAT is given its chance first"
        );
        r.probe_failed();
        assert_eq!(r.status(), Status::Private);
        assert!(!r.dht_server(), "a failed probe confirms nothing");
        let ask = r.relays_to_ask(t0);
        assert_eq!(ask.len(), 1);
        r.asked(ListenerId::next(), relay);
        r.confirmed(circuit(relay));
        assert_eq!(r.status(), Status::Private);
        assert!(r.dht_server(), "reachable through its relay: a server");
        r.relay_offered(other, true, &[circuit(relay), addr("/ip4/11.0.0.2/tcp/1")]);
        let ask = r.relays_to_ask(t0);
        assert_eq!(
            ask,
            vec![(other, addr("/ip4/11.0.0.2/tcp/1"))],
            "the direct address, not a circuit"
        );
    }

    #[test]
    fn bootstrap_relays_come_first_and_a_relay_that_left_rests() {
        let t0 = Instant::now();
        let mut r = Reach::new(ReachabilityMode::Auto, true, 1, t0);
        r.probe_failed();
        let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        for (i, p) in peers.iter().enumerate() {
            r.relay_offered(*p, true, &[addr(&format!("/ip4/11.0.0.{i}/tcp/1"))]);
        }
        r.is_bootstrap(peers[2]);
        assert_eq!(r.relays_to_ask(t0)[0].0, peers[2]);
        let l = ListenerId::next();
        r.asked(l, peers[2]);
        assert!(r.relays_to_ask(t0).is_empty(), "one wanted, one asked");
        assert_eq!(r.reservation_ended(l, t0), Some(peers[2]));
        let next = r.relays_to_ask(t0);
        assert_ne!(next[0].0, peers[2], "the relay that left rests");
        assert_eq!(
            r.relays_to_ask(t0 + RELAY_REST)[0].0,
            peers[2],
            "and is asked again later"
        );
    }

    #[test]
    fn a_confirmed_direct_address_makes_it_public_and_releases_relays() {
        let t0 = Instant::now();
        let mut r = Reach::new(ReachabilityMode::Auto, true, 2, t0);
        let relay = PeerId::random();
        r.probe_failed();
        let l = ListenerId::next();
        r.asked(l, relay);
        r.confirmed(circuit(relay));
        assert!(r.to_release().is_empty());
        r.confirmed(addr("/ip4/11.0.0.9/tcp/4815"));
        assert_eq!(r.status(), Status::Public);
        assert_eq!(r.to_release(), vec![l]);
        r.expired(&addr("/ip4/11.0.0.9/tcp/4815"));
        assert_eq!(r.status(), Status::Private, "the mapping went away");
    }

    #[test]
    fn unknown_for_long_takes_reservations_and_a_fetch_node_never_does() {
        let t0 = Instant::now();
        let mut r = Reach::new(ReachabilityMode::Auto, true, 2, t0);
        r.relay_offered(PeerId::random(), true, &[addr("/ip4/11.0.0.1/tcp/1")]);
        assert!(r.relays_to_ask(t0).is_empty());
        assert_eq!(r.relays_to_ask(t0 + UNKNOWN_GRACE).len(), 1);
        let mut fetch = Reach::new(ReachabilityMode::Auto, false, 2, t0);
        fetch.probe_failed();
        fetch.relay_offered(PeerId::random(), true, &[addr("/ip4/11.0.0.1/tcp/1")]);
        assert!(fetch.relays_to_ask(t0 + UNKNOWN_GRACE).is_empty());
        fetch.confirmed(addr("/ip4/11.0.0.9/tcp/4815"));
        assert!(!fetch.dht_server(), "a fetch's node never serves the DHT");
    }

    #[test]
    fn only_loopback_listeners_and_public_mode_confirm_themselves() {
        let lo = vec![addr("/ip4/127.0.0.1/tcp/0")];
        let any = vec![addr("/ip4/0.0.0.0/tcp/0")];
        let a = addr("/ip4/127.0.0.1/tcp/5000");
        assert!(reachable_as_listened(ReachabilityMode::Auto, &lo, &a));
        assert!(!reachable_as_listened(ReachabilityMode::Auto, &any, &a));
        assert!(!reachable_as_listened(
            ReachabilityMode::Auto,
            &any,
            &addr("/ip4/192.168.1.5/tcp/5000")
        ));
        assert!(reachable_as_listened(
            ReachabilityMode::Public,
            &any,
            &addr("/ip4/192.168.1.5/tcp/5000")
        ));
        let relay = PeerId::random();
        assert!(!reachable_as_listened(
            ReachabilityMode::Public,
            &any,
            &circuit(relay)
        ));
        assert_eq!(relay_of(&circuit(relay)), Some(relay));
        assert_eq!(relay_of(&a), None);
    }

    #[test]
    fn a_node_only_dialled_by_others_dials_one_so_that_autonat_can_ask() {
        let t0 = Instant::now();
        let mut r = Reach::new(ReachabilityMode::Auto, true, 2, t0);
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        r.connection_opened(a, ConnectionId::new_unchecked(1), (false, None), false, t0);
        r.prober(a, true);
        r.prober(b, true);
        r.prober(c, true);
        let first = r.dial_for_probes(t0);
        assert_eq!(first.len(), 2, "two at a time");
        assert!(r.dial_for_probes(t0).len() <= 1, "each once a minute");
        r.connection_opened(
            first[0],
            ConnectionId::new_unchecked(2),
            (false, None),
            true,
            t0,
        );
        assert!(
            r.dial_for_probes(t0 + PROBE_DIAL_REST).is_empty(),
            "an outbound connection to a prober exists"
        );
        r.confirmed("/ip4/10.0.0.1/tcp/1".parse().unwrap());
        r.connection_closed(first[0], ConnectionId::new_unchecked(2));
        assert!(
            r.dial_for_probes(t0 + PROBE_DIAL_REST).is_empty(),
            "public: nothing to ask"
        );
    }

    #[test]
    fn a_punch_closes_the_relayed_connections_and_says_how_long_it_took() {
        let t0 = Instant::now();
        let mut r = Reach::new(ReachabilityMode::Auto, true, 2, t0);
        let p = PeerId::random();
        let (c1, c2) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        let relay = PeerId::random();
        r.connection_opened(p, c1, (true, Some(relay)), false, t0);
        r.connection_opened(p, c2, (false, None), false, t0);
        assert_eq!(r.via(&p), "direct", "one connection of two is direct");
        let (close, took) = r.punched(p, t0 + Duration::from_millis(300));
        assert_eq!(close, vec![c1]);
        assert_eq!(took, Some(Duration::from_millis(300)));
        assert!(
            r.relay_carrying(c1).is_some_and(|c| c.replaced),
            "requests cut with it are asked again, no one blamed"
        );
        r.connection_closed(p, c2);
        r.connection_opened(p, c1, (true, Some(relay)), false, t0);
        assert_eq!(r.via(&p), "relayed", "every connection through a relay");
    }

    #[test]
    fn a_closed_circuit_still_names_its_relay_for_a_while() {
        let t0 = Instant::now();
        let mut r = Reach::new(ReachabilityMode::Auto, true, 2, t0);
        let (p, relay) = (PeerId::random(), PeerId::random());
        let circuit = ConnectionId::new_unchecked(7);
        r.connection_opened(p, circuit, (true, Some(relay)), true, t0);
        r.connection_opened(p, ConnectionId::new_unchecked(8), (false, None), true, t0);
        r.connection_closed(p, circuit);
        assert_eq!(
            r.relay_carrying(circuit),
            Some(Circuit {
                relay: Some(relay),
                replaced: false,
                dialled: true,
            }),
            "a failure after the close"
        );
        assert_eq!(
            r.relay_carrying(ConnectionId::new_unchecked(8)),
            None,
            "direct"
        );
        for n in 100..100 + MAX_CLOSED_CIRCUITS {
            let c = ConnectionId::new_unchecked(n);
            r.connection_opened(p, c, (true, Some(relay)), true, t0);
            r.connection_closed(p, c);
        }
        assert_eq!(
            r.relay_carrying(circuit),
            None,
            "forgotten: the memory is bounded"
        );
    }
}
