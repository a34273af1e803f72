//! Peers this node does not dial for a while, because a relay said it could not reach them.
//!
//! A peer behind a NAT is dialled through its relay (`/…/p2p/RELAY/p2p-circuit/p2p/PEER`).
//! When it has left, the relay answers `NO_RESERVATION` — but its circuit addresses stay in
//! routing tables, and every DHT walk is handed them again by peers that have not noticed. A
//! node that redials each of them on every walk spends the relay's per-IP circuit budget
//! (libp2p's relay allows 60 circuit requests a minute from one IP, refused ones included) until
//! the relay refuses even the circuit to a peer that *is* there: seen in `just bench-nat`, where
//! the fifth pair of homes behind one router could not reach each other for minutes.
//! [`DialGate`] refuses such dials locally, before anything leaves the machine: a peer gone
//! from its relay is held off for a minute, doubling to an hour; a peer behind a relay that
//! answered `RESOURCE_LIMIT_EXCEEDED` for 15 s. Any connection with the peer (it dialled us,
//! a punch) lifts the hold. It decides nothing else and never closes a connection.

use std::collections::HashMap;
use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, DialError, FromSwarm, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId, TransportError};

/// Peers held off at once; past it the hold that ends first is dropped.
const MAX_HELD: usize = 4096;
/// First hold of a peer its relay no longer knows; doubles per refusal.
const GONE_FIRST: Duration = Duration::from_secs(60);
/// Longest hold of a peer its relay no longer knows.
const GONE_MAX: Duration = Duration::from_secs(3600);
/// Hold of a peer behind a relay that refused the circuit for its limits.
const LIMITED: Duration = Duration::from_secs(15);

/// What a relay answered when asked for a circuit to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayRefusal {
    /// The peer holds no reservation there: it left (or moved to another relay).
    Gone,
    /// The relay's limits refused the circuit (its rate, its circuit count).
    Limited,
}

/// A dial refused by the gate (the peer is held off).
#[derive(Debug, thiserror::Error)]
#[error("not dialled for another {remaining:?}: its relay said it could not reach the peer")]
pub struct HeldOff {
    pub remaining: Duration,
}

/// Whether a failed dial was refused by this node's own [`DialGate`].
pub fn held_off(error: &DialError) -> bool {
    matches!(error, DialError::Denied { cause } if cause.downcast_ref::<HeldOff>().is_some())
}

/// What the relays said, when every address of a dial was a circuit its relay refused:
/// `Gone` if every one of them had no reservation for the peer, otherwise `Limited`.
/// `None` when any address failed for another reason (a direct address timing out, a relay
/// unreachable): nothing is known of the peer then.
pub fn relay_refusal(error: &DialError) -> Option<(RelayRefusal, Vec<Multiaddr>)> {
    let DialError::Transport(errors) = error else {
        return None;
    };
    let mut all_gone = true;
    for (_, e) in errors {
        let TransportError::Other(io) = e else {
            return None;
        };
        match connect_error(io)? {
            libp2p::relay::outbound::hop::ConnectError::NoReservation => {}
            libp2p::relay::outbound::hop::ConnectError::ResourceLimitExceeded => all_gone = false,
            _ => return None,
        }
    }
    if errors.is_empty() {
        return None;
    }
    let how = if all_gone {
        RelayRefusal::Gone
    } else {
        RelayRefusal::Limited
    };
    Some((how, errors.iter().map(|(a, _)| a.clone()).collect()))
}

/// The relay's answer inside a transport error, however deeply the transports wrapped it.
/// (`io::Error::source` skips the error it wraps, so each layer is unwrapped by hand.)
fn connect_error(io: &std::io::Error) -> Option<&libp2p::relay::outbound::hop::ConnectError> {
    use libp2p::relay::client::transport::Error as ClientError;
    use libp2p::relay::outbound::hop::ConnectError;
    let mut at: &(dyn std::error::Error + 'static) = io.get_ref()?;
    for _ in 0..8 {
        if let Some(c) = at.downcast_ref::<ConnectError>() {
            return Some(c);
        }
        if let Some(ClientError::Connect(c)) = at.downcast_ref::<ClientError>() {
            return Some(c);
        }
        at = match at.downcast_ref::<std::io::Error>() {
            Some(inner) => inner.get_ref()?,
            None => at.source()?,
        };
    }
    None
}

/// The peers held off, and until when (with how many refusals in a row).
#[derive(Default)]
pub struct DialGate {
    held: HashMap<PeerId, (u32, Instant)>,
}

impl DialGate {
    /// A relay refused a circuit to `peer` at `now`: hold it off.
    pub fn refused(&mut self, peer: PeerId, why: RelayRefusal, now: Instant) {
        if self.held.len() >= MAX_HELD && !self.held.contains_key(&peer) {
            self.held.retain(|_, (_, until)| *until > now);
            if self.held.len() >= MAX_HELD {
                if let Some(first) = self
                    .held
                    .iter()
                    .min_by_key(|(_, (_, u))| *u)
                    .map(|(p, _)| *p)
                {
                    self.held.remove(&first);
                }
            }
        }
        let n = self.held.get(&peer).map_or(0, |(n, _)| *n) + 1;
        let wait = match why {
            RelayRefusal::Gone => (GONE_FIRST * (1u32 << (n - 1).min(6))).min(GONE_MAX),
            RelayRefusal::Limited => LIMITED,
        };
        self.held.insert(peer, (n, now + wait));
    }

    /// How much longer `peer` is held off, if it is.
    pub fn holding(&self, peer: &PeerId, now: Instant) -> Option<Duration> {
        self.held
            .get(peer)
            .map(|(_, until)| until.saturating_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// Peers held off now.
    pub fn len(&self, now: Instant) -> usize {
        self.held.values().filter(|(_, u)| *u > now).count()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

impl NetworkBehaviour for DialGate {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: Option<PeerId>,
        _: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        match peer.and_then(|p| self.holding(&p, Instant::now())) {
            Some(remaining) => Err(ConnectionDenied::new(HeldOff { remaining })),
            None => Ok(Vec::new()),
        }
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::ConnectionEstablished(c) = event {
            self.held.remove(&c.peer_id);
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gone_from_its_relay_is_held_off_a_minute_doubling_to_an_hour() {
        let mut gate = DialGate::default();
        let peer = PeerId::random();
        let t0 = Instant::now();
        assert_eq!(gate.holding(&peer, t0), None);
        let mut at = t0;
        for n in 1..=8u32 {
            gate.refused(peer, RelayRefusal::Gone, at);
            let wait = (GONE_FIRST * (1 << (n - 1).min(6))).min(GONE_MAX);
            assert_eq!(gate.holding(&peer, at), Some(wait), "refusal {n}");
            assert_eq!(gate.holding(&peer, at + wait), None, "refusal {n}");
            at += wait;
        }
    }

    #[test]
    fn a_relay_over_its_limits_holds_a_peer_off_for_seconds_only() {
        let mut gate = DialGate::default();
        let peer = PeerId::random();
        let t0 = Instant::now();
        for _ in 0..5 {
            gate.refused(peer, RelayRefusal::Limited, t0);
        }
        assert_eq!(gate.holding(&peer, t0), Some(LIMITED));
        assert_eq!(gate.len(t0), 1);
    }

    #[test]
    fn the_gate_is_bounded_and_drops_the_hold_that_ends_first() {
        let mut gate = DialGate::default();
        let t0 = Instant::now();
        let first = PeerId::random();
        gate.refused(first, RelayRefusal::Limited, t0);
        for _ in 1..MAX_HELD {
            gate.refused(PeerId::random(), RelayRefusal::Gone, t0);
        }
        let newcomer = PeerId::random();
        gate.refused(newcomer, RelayRefusal::Gone, t0);
        assert_eq!(gate.held.len(), MAX_HELD);
        assert!(gate.holding(&first, t0).is_none(), "the shortest hold went");
        assert!(gate.holding(&newcomer, t0).is_some());
    }

    #[test]
    fn refusals_are_read_from_the_relay_transport_errors() {
        use libp2p::relay::client::transport::Error as ClientError;
        use libp2p::relay::outbound::hop::ConnectError;
        let addr: Multiaddr = "/ip4/11.0.0.1/tcp/1/p2p-circuit".parse().unwrap();
        // As the swarm reports them: the relay client's error boxed in io errors twice.
        let wrap = |c: ConnectError| {
            let inner = std::io::Error::other(ClientError::Connect(c));
            TransportError::Other(std::io::Error::other(inner))
        };
        let gone = DialError::Transport(vec![
            (addr.clone(), wrap(ConnectError::NoReservation)),
            (addr.clone(), wrap(ConnectError::NoReservation)),
        ]);
        assert_eq!(
            relay_refusal(&gone).map(|(r, _)| r),
            Some(RelayRefusal::Gone)
        );
        let limited = DialError::Transport(vec![
            (addr.clone(), wrap(ConnectError::NoReservation)),
            (addr.clone(), wrap(ConnectError::ResourceLimitExceeded)),
        ]);
        assert_eq!(
            relay_refusal(&limited).map(|(r, _)| r),
            Some(RelayRefusal::Limited)
        );
        let timed_out = DialError::Transport(vec![
            (addr.clone(), wrap(ConnectError::NoReservation)),
            (
                addr,
                TransportError::Other(std::io::Error::from(std::io::ErrorKind::TimedOut)),
            ),
        ]);
        assert_eq!(
            relay_refusal(&timed_out),
            None,
            "a direct address may still work"
        );
        let ours = DialError::Denied {
            cause: ConnectionDenied::new(HeldOff {
                remaining: Duration::from_secs(1),
            }),
        };
        assert!(held_off(&ours));
        assert!(!held_off(&gone));
    }
}
