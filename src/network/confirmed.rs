//! Which addresses two of libp2p's behaviours take as confirmed, corrected.
//!
//! A port mapped on the home router (UPnP IGD) is only a *candidate* address until AutoNAT has
//! dialled it from outside. libp2p's `upnp` behaviour declares every address it maps as confirmed at once. A router
//! that says it mapped a port has not proved that the port is reachable: a second NAT in front
//! of it (carrier-grade NAT, a campus firewall) or a mapping the router keeps but does not
//! forward would put an address nobody can dial into identify and the provider records.
//! [`Unconfirmed`] wraps a behaviour and turns every address it *confirms* into a *candidate*
//! instead, which AutoNAT then tests by a dial-back (`protocols/reachability-v1.md`).
//!
//! A relay must be reachable *directly*. libp2p's relay service starts to offer itself as soon
//! as the node has any confirmed address, a `/p2p-circuit` one included: a node behind a NAT,
//! reachable only through its own relay, would then offer to relay for others (circuits over
//! circuits, which relay v2 refuses), and libp2p 0.57's relay panics when it hands a request to
//! a relayed connection's handler (seen in the NAT tests). [`DirectOnly`] hides relayed
//! addresses from the behaviour it wraps. Neither wrapper may change anything else the inner
//! behaviour does.

use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

/// `B`, with its confirmed external addresses offered as candidates.
pub struct Unconfirmed<B>(pub B);

impl<B: NetworkBehaviour> NetworkBehaviour for Unconfirmed<B> {
    type ConnectionHandler = B::ConnectionHandler;
    type ToSwarm = B::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.0.handle_pending_inbound_connection(id, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.0
            .handle_established_inbound_connection(id, peer, local, remote)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.0
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
        self.0
            .handle_established_outbound_connection(id, peer, addr, role, port_use)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.0.on_swarm_event(event)
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.0.on_connection_handler_event(peer, id, event)
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.0.poll(cx) {
            Poll::Ready(ToSwarm::ExternalAddrConfirmed(addr)) => {
                tracing::info!(address = %addr, "port mapped on the router: asking peers to confirm it");
                Poll::Ready(ToSwarm::NewExternalAddrCandidate(addr))
            }
            other => other,
        }
    }
}

/// `B`, told only of confirmed addresses that are not relayed.
pub struct DirectOnly<B>(pub B);

fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter()
        .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2pCircuit))
}

impl<B: NetworkBehaviour> NetworkBehaviour for DirectOnly<B> {
    type ConnectionHandler = B::ConnectionHandler;
    type ToSwarm = B::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.0.handle_pending_inbound_connection(id, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.0
            .handle_established_inbound_connection(id, peer, local, remote)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.0
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
        self.0
            .handle_established_outbound_connection(id, peer, addr, role, port_use)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match &event {
            FromSwarm::ExternalAddrConfirmed(e) if is_relayed(e.addr) => {}
            FromSwarm::ExternalAddrExpired(e) if is_relayed(e.addr) => {}
            _ => self.0.on_swarm_event(event),
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.0.on_connection_handler_event(peer, id, event)
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.0.poll(cx)
    }
}
