//! Hole punching that runs once per pair of peers: libp2p's DCUtR, with the one start it must
//! not make.
//!
//! DCUtR is started by the peer that *accepted* a relayed connection. When two peers behind
//! NATs dial each other through the relay at the same moment (a fetch one way, a replica push
//! the other), each accepts one circuit and each starts a punch. The two punches dial the same
//! pair of ports: the first one's SYN opens the NAT, the second one's SYN meets that socket, and
//! the TCP simultaneous open joins two dials that both think they are the Noise initiator —
//! "Handshake failed: input error" on both sides, and the retry waits out a 10 s dial timeout
//! (seen in `just bench-nat`: 2 pairs in 100 stayed relayed for their whole fetch). Closing one
//! of the two circuits afterwards (`Reach::crossed_circuit`) is too late: its punch has sent its
//! first message by the time the second circuit opens.
//!
//! [`HolePunch`] decides before anything is sent. Both sides keep the circuit the smaller
//! PeerId dialled, so the smaller peer never starts a punch on a circuit the larger one dialled
//! while it is itself dialling the larger one (or already has a circuit it dialled): that
//! circuit gets no DCUtR handler, and the larger peer's punch on the smaller one's circuit is the
//! only one. If the smaller peer's own dial then fails, it dials again through the relay so
//! that a circuit to punch on exists. It changes nothing else: direct connections and every
//! other relayed connection get libp2p's handler unchanged.

use std::collections::{HashMap, HashSet};
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{dcutr, Multiaddr, PeerId};

use either::Either;

fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p == Protocol::P2pCircuit)
}

/// What this node knows of its dials and circuits per peer: enough to tell whether a circuit
/// the peer dialled has crossed one this node is dialling.
#[derive(Debug)]
struct Crossings {
    me: PeerId,
    /// Dials to a peer not yet connected or failed.
    dialling: HashMap<PeerId, HashSet<ConnectionId>>,
    /// Relayed connections this node dialled, open now.
    circuits_out: HashMap<PeerId, HashSet<ConnectionId>>,
    /// Circuits the peer dialled on which this node starts no punch (the peer will, on ours).
    held_back: HashMap<PeerId, HashSet<ConnectionId>>,
}

impl Crossings {
    fn new(me: PeerId) -> Self {
        Self {
            me,
            dialling: HashMap::new(),
            circuits_out: HashMap::new(),
            held_back: HashMap::new(),
        }
    }

    /// A circuit `peer` dialled was accepted: whether this node starts a punch on it. Not when
    /// this node is the smaller PeerId and is dialling `peer` too, or holds a circuit it dialled
    /// to `peer`: both sides keep that one, and the larger peer punches on it.
    fn punch_on_accepted(&mut self, peer: PeerId, id: ConnectionId) -> bool {
        let crossing = self.dialling.get(&peer).is_some_and(|s| !s.is_empty())
            || self.circuits_out.get(&peer).is_some_and(|s| !s.is_empty());
        if crossing && self.me.to_bytes() < peer.to_bytes() {
            self.held_back.entry(peer).or_default().insert(id);
            return false;
        }
        true
    }

    fn dial_started(&mut self, peer: PeerId, id: ConnectionId) {
        self.dialling.entry(peer).or_default().insert(id);
    }

    fn established(&mut self, peer: PeerId, id: ConnectionId, circuit_out: bool) {
        remove(&mut self.dialling, &peer, &id);
        if circuit_out {
            self.circuits_out.entry(peer).or_default().insert(id);
        }
    }

    /// A dial failed: when it was the one a held-back circuit waited for, and nothing else is
    /// on its way, the peer to dial again through the relay (once).
    fn dial_failed(&mut self, peer: PeerId, id: ConnectionId) -> Option<PeerId> {
        remove(&mut self.dialling, &peer, &id);
        let waiting = self.held_back.get(&peer).is_some_and(|s| !s.is_empty());
        let nothing_coming =
            !self.dialling.contains_key(&peer) && !self.circuits_out.contains_key(&peer);
        if waiting && nothing_coming {
            self.held_back.remove(&peer);
            return Some(peer);
        }
        None
    }

    fn closed(&mut self, peer: PeerId, id: ConnectionId) {
        remove(&mut self.circuits_out, &peer, &id);
        remove(&mut self.held_back, &peer, &id);
    }
}

fn remove(map: &mut HashMap<PeerId, HashSet<ConnectionId>>, peer: &PeerId, id: &ConnectionId) {
    if let Some(set) = map.get_mut(peer) {
        set.remove(id);
        if set.is_empty() {
            map.remove(peer);
        }
    }
}

/// libp2p's DCUtR behaviour, started on at most one of two crossed circuits (module docs).
pub struct HolePunch {
    inner: dcutr::Behaviour,
    crossings: Crossings,
    redial: Vec<PeerId>,
}

impl HolePunch {
    pub fn new(me: PeerId) -> Self {
        Self {
            inner: dcutr::Behaviour::new(me),
            crossings: Crossings::new(me),
            redial: Vec::new(),
        }
    }
}

impl NetworkBehaviour for HolePunch {
    type ConnectionHandler = Either<THandler<dcutr::Behaviour>, dummy::ConnectionHandler>;
    type ToSwarm = dcutr::Event;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(id, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // Only a relayed connection may go without the handler: libp2p's behaviour keeps
        // book of every direct one.
        if is_relayed(local) && !self.crossings.punch_on_accepted(peer, id) {
            tracing::debug!(peer = %peer, "circuits crossed: the peer punches on the one this node dialled");
            return Ok(Either::Right(dummy::ConnectionHandler));
        }
        self.inner
            .handle_established_inbound_connection(id, peer, local, remote)
            .map(Either::Left)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        if let Some(p) = peer {
            self.crossings.dial_started(p, id);
        }
        self.inner
            .handle_pending_outbound_connection(id, peer, addresses, role)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_outbound_connection(id, peer, addr, role, port_use)
            .map(Either::Left)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match &event {
            FromSwarm::ConnectionEstablished(c) => {
                let circuit_out = c.endpoint.is_dialer() && c.endpoint.is_relayed();
                self.crossings
                    .established(c.peer_id, c.connection_id, circuit_out);
            }
            FromSwarm::DialFailure(f) => {
                if let Some(p) = f.peer_id {
                    if let Some(again) = self.crossings.dial_failed(p, f.connection_id) {
                        self.redial.push(again);
                    }
                }
            }
            FromSwarm::ConnectionClosed(c) => self.crossings.closed(c.peer_id, c.connection_id),
            _ => {}
        }
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {
            Either::Left(e) => self.inner.on_connection_handler_event(peer, id, e),
            Either::Right(never) => match never {},
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        if let Some(peer) = self.redial.pop() {
            tracing::debug!(peer = %peer, "dialling again through the relay so that a punch can start");
            // Through whatever addresses the routing table has: its circuit addresses.
            let opts = DialOpts::peer_id(peer)
                .condition(PeerCondition::Always)
                .build();
            return Poll::Ready(ToSwarm::Dial { opts });
        }
        self.inner.poll(cx).map(|e| e.map_in(Either::Left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two peers, smaller first.
    fn pair() -> (PeerId, PeerId) {
        let (a, b) = (PeerId::random(), PeerId::random());
        if a.to_bytes() < b.to_bytes() {
            (a, b)
        } else {
            (b, a)
        }
    }

    #[test]
    fn of_two_crossed_circuits_only_the_larger_peer_punches_on_the_smaller_ones() {
        let (small, large) = pair();
        let mut on_small = Crossings::new(small);
        let mut on_large = Crossings::new(large);
        let (c_small, c_large) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        // Both dial at once; the larger peer's circuit arrives first on both sides.
        on_small.dial_started(large, c_small);
        on_large.dial_started(small, c_large);
        assert!(
            !on_small.punch_on_accepted(large, c_large),
            "the smaller peer is dialling: it leaves the punch to the larger one"
        );
        on_large.established(small, c_large, true);
        // Then the smaller peer's circuit.
        on_small.established(large, c_small, true);
        assert!(
            on_large.punch_on_accepted(small, c_small),
            "the larger peer punches on the circuit the smaller one dialled"
        );
        // The other order on the smaller side: its own circuit first, the crossed one after.
        let mut later = Crossings::new(small);
        later.dial_started(large, c_small);
        later.established(large, c_small, true);
        assert!(!later.punch_on_accepted(large, c_large));
    }

    #[test]
    fn an_accepted_circuit_that_crossed_nothing_is_punched_on() {
        let (small, large) = pair();
        let mut on_small = Crossings::new(small);
        assert!(on_small.punch_on_accepted(large, ConnectionId::new_unchecked(1)));
        let mut on_large = Crossings::new(large);
        on_large.dial_started(small, ConnectionId::new_unchecked(2));
        assert!(
            on_large.punch_on_accepted(small, ConnectionId::new_unchecked(3)),
            "the larger peer always punches on what it accepts"
        );
    }

    #[test]
    fn when_the_smaller_peers_own_dial_fails_it_dials_again_once() {
        let (small, large) = pair();
        let mut on_small = Crossings::new(small);
        let (mine, theirs) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        on_small.dial_started(large, mine);
        assert!(!on_small.punch_on_accepted(large, theirs));
        assert_eq!(on_small.dial_failed(large, mine), Some(large));
        assert_eq!(on_small.dial_failed(large, mine), None, "once");
        // A failure while another dial is still on its way waits for that one.
        let mut other = Crossings::new(small);
        other.dial_started(large, mine);
        other.dial_started(large, ConnectionId::new_unchecked(3));
        assert!(!other.punch_on_accepted(large, theirs));
        assert_eq!(other.dial_failed(large, mine), None);
        // The held-back circuit closing ends the wait.
        other.closed(large, theirs);
        assert_eq!(
            other.dial_failed(large, ConnectionId::new_unchecked(3)),
            None
        );
    }
}
